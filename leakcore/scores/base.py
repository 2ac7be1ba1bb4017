"""What a score is (the base class) and the column that names the score in force; see `leakcore.scores`."""
from __future__ import annotations

from typing import ClassVar

import pandas as pd

SCORE = "score"  # the column of a pairs table that holds the score in force
RAW = "similarity"  # the raw score's name (and column): the cosine similarity of the embeddings
DECIDED_PRECISION = 0.95  # fused score, with decisions: soft is raised until this share of the decided pairs above it
# are leaks; fitted on the decisions alone, hard is where DECIDED_HARD_PRECISION of those above it are (leakcore.fused)
DECIDED_HARD_PRECISION = 0.99


class Score:
    """One way of scoring pairs. Subclasses set `name` and `column` and implement `add`."""

    name: ClassVar[str]
    column: ClassVar[str]  # the column `add` fills (and keeps beside the raw `similarity`)

    def add(self, ws, pairs: pd.DataFrame, encoder: str) -> pd.DataFrame:
        """`pairs` with this score's column (and any evidence it keeps, e.g. `verified`)."""
        raise NotImplementedError


def in_force(pairs: pd.DataFrame) -> pd.Series:
    """The score in force of a pairs table: its `score` column; `similarity` for a table made without one (a
    table built by hand or by grouping, which holds the raw similarity only)."""
    return pairs[SCORE] if SCORE in pairs.columns else pairs["similarity"]


def as_similarity(pairs: pd.DataFrame, name: str) -> pd.DataFrame:
    """Pairs in the review queue's terms (`review.build_queue` thresholds, orders and shows `similarity`): the
    score in force (named `name`) as `similarity`, and the raw cosine as `raw_similarity` where they differ
    (the Review page shows both, and explains a pair from the raw one)."""
    if SCORE not in pairs.columns or name == RAW:
        return pairs
    return pairs.assign(raw_similarity=pairs["similarity"], similarity=pairs[SCORE])
