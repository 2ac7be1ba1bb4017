"""What a check is (the base class and the findings table) and the registry checks enter; see `leakcore.checks`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import pandas as pd

FINDING_COLUMNS = {
    "check": "string", "eval_split": "string", "train_split": "string", "eval_item_id": "string",
    "train_item_id": "string", "score": "float32", "degree": "string", "decision": "string", "reason": "string",
}


def empty_findings() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in FINDING_COLUMNS.items()})


@dataclass(frozen=True)
class CheckInputs:
    """What a check reads besides the workspace: thresholds in force, decisions (None: automatic only),
    and tables a caller already holds (so a page does not read them twice)."""

    hard: float
    soft: float
    decisions: pd.DataFrame | None = None
    pairs: pd.DataFrame | None = None
    encoder: str | None = None
    memo: dict = field(default_factory=dict, compare=False, repr=False)  # what several checks derive alike


class Check:
    """A leak check. Subclasses set `name`, `kind`, `description` and implement `findings` and `rates`."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "pairs": eval item -> training item; "groups": eval item -> a group reaching training data
    description: ClassVar[str]
    in_rates: ClassVar[bool] = True  # False: findings on request only (an audit too costly for every page load)

    def findings(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        """Every eval item (or pair) this check flags, with FINDING_COLUMNS."""
        raise NotImplementedError

    def rates(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        """Counts and rates per (eval split x training source), with a `check` column."""
        raise NotImplementedError


_REGISTRY: dict[str, Check] = {}


def register_check(cls: type[Check]) -> type[Check]:
    """Class decorator: register one instance of a check under its name."""
    if cls.name in _REGISTRY:
        raise ValueError(f"check {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls()
    return cls
