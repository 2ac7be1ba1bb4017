"""The coverage check: evaluation images that lie outside their training set's k-NN manifold (no training image
holds them in its ball). Not a leak, the opposite: a test image nothing in training resembles. Run on request
(`leakcore coverage`, the Coverage page), since it measures whole sets."""
from __future__ import annotations

import numpy as np
import pandas as pd

from leakcore.checks.base import FINDING_COLUMNS, Check, CheckInputs, empty_findings, register_check


@register_check
class CoverageCheck(Check):
    name = "coverage"
    kind = "sets"
    description = "evaluation images outside their dataset's training manifold (k-NN balls, k = 5)"
    in_rates = False
    exportable = False  # not a leak: an export keeps these images

    def findings(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        from leakcore.coverage import ImageSet, audit

        frames = [empty_findings()]
        items = ws.items()
        for sid in ws.split_ids("eval"):
            if not ((items["dataset"] == sid.dataset) & (items["role"] == "train")).any():
                continue
            result = audit(ws, ImageSet(sid.dataset, "role == 'train'"), ImageSet(str(sid)), n_resamples=0)
            out = result.b_scores[~result.b_scores["inside_other"]]
            frames.append(pd.DataFrame({
                "check": self.name, "eval_split": str(sid), "train_split": f"{sid.dataset} (training splits)",
                "eval_item_id": out["item_id"], "train_item_id": out["nearest_item_id"],
                "score": out["realism"].astype(np.float32), "degree": "outside",
                "decision": pd.NA, "reason": [f"outside the training manifold (realism {r:.2f} < 1; nearest "
                                              f"training image at similarity {s:.3f})"
                                              for r, s in zip(out["realism"], out["nearest_similarity"])],
            }))
        return pd.concat(frames, ignore_index=True).astype(FINDING_COLUMNS)

    def rates(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        return pd.DataFrame()
