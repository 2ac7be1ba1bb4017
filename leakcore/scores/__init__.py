"""What pairs are scored by: a strategy the similarity check is configured with (the workspace's `score` setting).

A score takes the stored neighbour pairs (whose `similarity` is always the raw cosine of the embeddings) and adds
its own column; `scored` then names the one in force: a `score` column holding its values, and
`pairs.attrs["score"]` holding its name. Thresholds, degrees, rates, the review queue and exports read `score`;
`similarity` stays the raw cosine everywhere. Implementations are one file each (`raw`, `fused`), listed in `_load`
and imported there, explicitly: nothing registers itself when imported, so any import order finds every score.
"""
from __future__ import annotations

from typing import Callable

import pandas as pd

from leakcore.errors import UnknownName
from leakcore.scores.base import RAW, SCORE, Score, as_similarity, in_force


def _raw() -> Score:
    from leakcore.scores.raw import RawSimilarity

    return RawSimilarity()


def _fused() -> Score:
    from leakcore.scores.fused import FusedScore  # the model's module (scikit-learn, the evidence): seconds to import

    return FusedScore()


def _load() -> dict[str, Callable[[], Score]]:
    """Every score by name, in the order they are offered; each is imported when it is asked for."""
    return {RAW: _raw, "fused": _fused}


def get_score(name: str) -> Score:
    scores = _load()
    if name not in scores:
        raise UnknownName(f"unknown score {name!r}; valid scores: {', '.join(scores)}")
    score = scores[name]()
    assert score.name == name, (score.name, name)
    return score


def label(name: str) -> str:
    """How a score reads in findings and reports: "similarity" for the raw cosine, "fused score" for the fused one."""
    return "similarity" if name == RAW else f"{name} score"


def scored(ws, pairs: pd.DataFrame, encoder: str, name: str) -> pd.DataFrame:
    """`pairs` scored by the score `name`: its column added, and `score` (and `attrs["score"]`) naming it in force."""
    score = get_score(name)
    out = score.add(ws, pairs, encoder).copy(deep=False)  # the caller's table is left as it was
    out[SCORE] = out[score.column]
    out.attrs[SCORE] = score.name
    return out


__all__ = ["RAW", "SCORE", "Score", "as_similarity", "get_score", "in_force", "label", "scored"]
