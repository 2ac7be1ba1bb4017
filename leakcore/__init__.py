"""leakcore: find, review and remove data leakage between evaluation and training images.

`leakcore.Project` is the facade (see `leakcore.api`); it is imported on first use so that `import leakcore`
stays light.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("Project", "ImpactRequest", "LeakSource"):
        from leakcore import api

        return getattr(api, name)
    raise AttributeError(f"module 'leakcore' has no attribute {name!r}")
