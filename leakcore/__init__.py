"""leakcore: find, review and remove data leakage between evaluation and training images."""

__version__ = "0.1.0"
