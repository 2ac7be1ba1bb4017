"""Leak checks: named plug-ins that turn the workspace into findings with a reason.

A finding is one row: which check made it, the evaluation item, what it leaks to (a training item for pair
checks, a group for group checks), a score, a degree and a reason in words. Because every finding names its
check, the review queue, the rates, the heatmaps and the export can show and filter any check, not only visual
pairs. `similarity` (the paper's nearest-neighbour check) is the first; group, temporal, shortcut and coverage
checks register the same way. Implementations are imported explicitly, not found by scanning files.
"""
from __future__ import annotations

from leakcore.checks.base import (_REGISTRY, FINDING_COLUMNS, REMOVAL_COLUMNS, Check, CheckInputs, Words,
                                  empty_findings, empty_removals, register_check)
from leakcore.errors import InvalidInput, UnknownName

def _load() -> None:
    # the order they are listed and reported in
    from leakcore.checks import similarity  # noqa: F401, I001  (each registers itself)
    from leakcore.checks import group, temporal  # noqa: F401, I001
    from leakcore.checks import label_conflict  # noqa: F401, I001
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


def reviewable_checks() -> list[Check]:
    """The checks whose findings the Review page shows one by one (as pairs or as groups), in registry order."""
    _load()
    return [c for c in _REGISTRY.values() if c.review]


def review_queue(ws, hard: float, soft: float, *, pairs=None):
    """The Review page's queue of pairs: every check reviewed as pairs (`Check.review == "pairs"`) adds its rows
    (`Check.review_rows`), in registry order, each row naming its check; built with the decisions that confirm a
    leak only, so that a confirmed pair stays queued whatever its score (the others are merged in by
    `review.with_decisions`, so one decision shows on every row of its pair, whichever check queued it)."""
    import pandas as pd

    from leakcore import leakage
    from leakcore.checks.base import CONFIRMING
    from leakcore.review import CATEGORICAL, build_queue, latest_decisions

    _load()
    pairs = leakage.load_pairs(ws) if pairs is None else pairs
    decisions = latest_decisions(ws)
    inputs = CheckInputs(hard, soft, decisions=decisions[decisions["decision"].isin(CONFIRMING)], pairs=pairs)
    frames = [c.review_rows(ws, inputs) for c in _REGISTRY.values() if c.review == "pairs"]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return build_queue(pairs.iloc[0:0], ws.items(), hard, soft)
    if len(frames) == 1:
        return frames[0]
    q = pd.concat([f.astype({c: "object" for c in CATEGORICAL}) for f in frames], ignore_index=True)
    for col in CATEGORICAL:
        q[col] = q[col].astype("category")
    for col in q.columns:  # one chunk per Arrow column: taking a few rows of a chunked one costs ~2 ms a column
        arrow = getattr(q[col].array, "_pa_array", None)
        if arrow is not None and arrow.num_chunks > 1:
            q[col] = pd.Series(pd.array(arrow.combine_chunks(), dtype=q[col].dtype), index=q.index)
    return q


def exportable_checks() -> list[Check]:
    """The checks whose findings an export can remove; `export_default` ones do unless asked not to."""
    _load()
    return [c for c in _REGISTRY.values() if c.exportable]


def parse_bounds(specs) -> dict[str, dict[str, float]]:
    """`CHECK=PCT` or `CHECK:hard=PCT` (soft, every finding, when no degree is named) -> {check: {degree: pct}};
    the CI gate's `--fail-above`. Unknown checks and degrees are refused with the valid ones named."""
    _load()
    out: dict[str, dict[str, float]] = {}
    for spec in specs or ():
        name, eq, pct = str(spec).partition("=")
        name, _, degree = name.strip().partition(":")
        degree = degree.strip() or "soft"
        if not eq or not name:
            raise InvalidInput(f"a bound reads CHECK=PCT or CHECK:hard=PCT, got {spec!r}",
                               cli="e.g. --fail-above similarity=1 --fail-above group:hard=0.5")
        if name not in _REGISTRY:  # only the checks a bound can apply to are worth naming here
            raise UnknownName(f"unknown check {name!r} in {spec!r}; checks a bound applies to: "
                              f"{', '.join(rate_check_names())}")
        if not get_check(name).in_rates:
            raise InvalidInput(f"the {name} check has no rates a bound could apply to; checks with rates: "
                               f"{', '.join(rate_check_names())}", cli="for a stored shortcut audit use --fail-on-shortcut")
        if degree not in ("hard", "soft"):
            raise UnknownName(f"a bound's degree is hard or soft, got {degree!r} in {spec!r}")
        try:
            value = float(pct)
        except ValueError:
            raise InvalidInput(f"a bound is a percentage, got {pct!r} in {spec!r}") from None
        if not 0 <= value <= 100:  # -1 was taken, and failed every split whatever it held
            raise InvalidInput(f"a bound is a percentage from 0 to 100, got {pct!r} in {spec!r}",
                               cli="--fail-above similarity=0 fails on any leak at all")
        out.setdefault(name, {})[degree] = value
    return out


def gate(table, bounds: dict[str, dict[str, float]]) -> list[str]:
    """Every bound broken by a rates table (`Project.checks.rates`), in words; empty when the gate passes."""
    _load()
    out: list[str] = []
    if bounds and table.empty:  # not scanned: a gate with nothing measured must not pass
        return ["nothing measured: the workspace has no rates yet (run `leakcore scan` first)"]
    for name, by_degree in bounds.items():
        out += get_check(name).gate(table, by_degree)
    return out


__all__ = ["Check", "CheckInputs", "FINDING_COLUMNS", "REMOVAL_COLUMNS", "Words", "check_names", "empty_findings",
           "empty_removals", "exportable_checks", "gate", "get_check", "list_checks", "parse_bounds", "register_check",
           "review_queue", "reviewable_checks"]
