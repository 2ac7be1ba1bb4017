"""The raw score: the cosine similarity of the two images' embeddings, as the scan stored it (the paper's)."""
from __future__ import annotations

import pandas as pd

from leakcore.scores.base import RAW, Score


class RawSimilarity(Score):
    name = RAW
    column = RAW

    def add(self, ws, pairs: pd.DataFrame, encoder: str) -> pd.DataFrame:
        return pairs
