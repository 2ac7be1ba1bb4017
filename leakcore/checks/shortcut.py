"""The shortcut check (target leakage): images carrying a marker that gives their label away, from the stored
shortcut audit (`leakcore shortcuts`; the audit embeds image regions, so it runs on request)."""
from __future__ import annotations

import pandas as pd

from leakcore.checks.base import FINDING_COLUMNS, Check, CheckInputs, Words, empty_findings, register_check


@register_check
class ShortcutCheck(Check):
    name = "shortcut"
    kind = "sets"
    description = "images that carry a label-revealing marker (region probe and occlusion of the shortcut audit)"
    in_rates = False
    exportable = False  # a marker is fixed by cleaning the images, not by dropping the evaluation items
    words = Words(hard="", soft="", score="class-score drop when masked", strong="high")

    def findings(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        from leakcore import shortcuts

        frames = [empty_findings()]
        for dataset, a in shortcuts.load(ws).items():
            regions = a.get("regions") or {}
            if not regions.get("marker"):
                continue
            c = pd.DataFrame(regions["carriers"])
            c = c[c["drop"] > 0.05]
            frames.append(pd.DataFrame({
                "check": self.name, "eval_split": f"{dataset}/{a['train_split']}", "train_split": "",
                "eval_item_id": c["item_id"], "train_item_id": "", "score": c["drop"], "degree": "marker",
                "decision": pd.NA,
                "reason": [f"{lab}: its class score drops {d:.2f} when the {regions['marker']} marker cell is masked"
                           for lab, d in zip(c["label"], c["drop"])]}))
        return pd.concat(frames, ignore_index=True).astype(FINDING_COLUMNS)

    def rates(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        return pd.DataFrame()
