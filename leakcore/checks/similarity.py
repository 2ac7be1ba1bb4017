"""The similarity check (the paper's): an evaluation image whose nearest training neighbour is at least as
similar as the soft threshold leaks; at the hard threshold it is (almost) the same picture."""
from __future__ import annotations

import numpy as np
import pandas as pd

from leakcore import leakage
from leakcore.checks.base import FINDING_COLUMNS, Check, CheckInputs, register_check


@register_check
class SimilarityCheck(Check):
    name = "similarity"
    kind = "pairs"
    description = "nearest training neighbours at or above the soft threshold (hard: near-identical)"

    def _pairs(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        return leakage.load_pairs(ws, inputs.encoder) if inputs.pairs is None else inputs.pairs

    def findings(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        p = leakage.with_degrees(self._pairs(ws, inputs), inputs.hard, inputs.soft, inputs.decisions)
        p = p[p["degree"] != leakage.NONE]
        sim = p["similarity"].to_numpy(dtype=np.float64)
        auto = np.where(sim >= inputs.hard, f"hard {inputs.hard:.4f}", f"soft {inputs.soft:.4f}")
        decision = p["decision"].astype(object).where(p["decision"].notna(), None).to_numpy()
        reason = [f"curator: {d} (similarity {s:.4f})" if d is not None else f"similarity {s:.4f} ≥ {a}"
                  for s, a, d in zip(sim, auto, decision)]
        out = pd.DataFrame({
            "check": self.name, "eval_split": p["eval_split"], "train_split": p["train_split"],
            "eval_item_id": p["eval_item_id"], "train_item_id": p["train_item_id"], "score": p["similarity"],
            "degree": p["degree"], "decision": p["decision"], "reason": reason,
        })
        return out.astype(FINDING_COLUMNS).reset_index(drop=True)

    def rates(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        table = leakage.rates(ws, inputs.hard, inputs.soft, encoder=inputs.encoder, decisions=inputs.decisions,
                              pairs=inputs.pairs)
        table.insert(0, "check", self.name)
        return table
