"""Leak checks: named plug-ins that turn the workspace into findings with a reason.

A finding is one row: which check made it, the evaluation item, what it leaks to (a training item for pair
checks, a group for group checks), a score, a degree and a reason in words. Because every finding names its
check, the review queue, the rates, the heatmaps and the export can show and filter any check, not only visual
pairs. `similarity` (the paper's nearest-neighbour check) is the first; group, temporal, shortcut and coverage
checks register the same way. Implementations are imported explicitly, not found by scanning files.
"""
from __future__ import annotations

from leakcore.checks.base import _REGISTRY, FINDING_COLUMNS, Check, CheckInputs, empty_findings, register_check
from leakcore.errors import UnknownName

def _load() -> None:
    # the order they are listed and reported in
    from leakcore.checks import similarity  # noqa: F401, I001  (each registers itself)
    from leakcore.checks import group, temporal  # noqa: F401, I001
    from leakcore.checks import shortcut, coverage  # noqa: F401, I001


def check_names() -> list[str]:
    _load()
    return list(_REGISTRY)


def get_check(name: str) -> Check:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownName(f"unknown check {name!r}; valid checks: {', '.join(_REGISTRY)}") from None


def list_checks() -> list[dict]:
    """name, kind and description of every registered check."""
    _load()
    return [{"name": c.name, "kind": c.kind, "description": c.description, "in_rates": c.in_rates}
            for c in _REGISTRY.values()]


def rate_check_names() -> list[str]:
    """The checks whose rates every report and page shows (the others run on request)."""
    _load()
    return [c.name for c in _REGISTRY.values() if c.in_rates]


__all__ = ["Check", "CheckInputs", "FINDING_COLUMNS", "check_names", "empty_findings", "get_check", "list_checks",
           "register_check"]
