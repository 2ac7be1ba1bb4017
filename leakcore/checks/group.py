"""The group check: an evaluation image whose group (one patient, one video, one image's patches) has members in
training data. Hard: the link is explicit (the sources' group metadata) or confirmed by a curator; soft: any
link, recovered links included (candidate neighbours whose pixels share a region, see `leakcore.grouping`). The
reason names the evidence that links the group."""
from __future__ import annotations

import logging

import pandas as pd

from leakcore import leakage
from leakcore.checks.base import (FINDING_COLUMNS, REMOVAL_COLUMNS, Check, CheckInputs, Words, empty_findings,
                                  empty_removals, register_check)

log = logging.getLogger(__name__)


def groups_for(ws, inputs: CheckInputs):
    """The workspace's groups, or None when it has neither group metadata nor grouping switched on; computed once
    per set of inputs (the group and the temporal check both read them)."""
    from leakcore.grouping import groups_in_force

    if "groups" not in inputs.memo:
        wanted = ws.grouping or ws.items()["group"].notna().any()
        inputs.memo["groups"] = groups_in_force(ws, decisions=inputs.decisions, pairs=inputs.pairs) if wanted else None
    return inputs.memo["groups"]


def reach_rates(name: str, ws, hard: pd.DataFrame, soft: pd.DataFrame) -> pd.DataFrame:
    """Rates rows from (eval_split, train_split, eval_item_id) reach tables: per pair, then over all sources."""
    totals = leakage.eval_counts(ws)
    rows = []
    keys = sorted(set(map(tuple, soft[["eval_split", "train_split"]].drop_duplicates().to_numpy())))
    for ev, tr in keys:
        h = hard[(hard["eval_split"] == ev) & (hard["train_split"] == tr)]["eval_item_id"].nunique()
        s = soft[(soft["eval_split"] == ev) & (soft["train_split"] == tr)]["eval_item_id"].nunique()
        rows.append((ev, tr, h, s))
    for ev in sorted(set(soft["eval_split"])):
        rows.append((ev, leakage.ALL_SOURCES, hard[hard["eval_split"] == ev]["eval_item_id"].nunique(),
                     soft[soft["eval_split"] == ev]["eval_item_id"].nunique()))
    out = pd.DataFrame([{"check": name, "eval_split": ev, "train_split": tr, "n_eval": int(totals.get(ev, 0)),
                         "hard": int(h), "soft": int(s)} for ev, tr, h, s in rows],
                       columns=["check", "eval_split", "train_split", "n_eval", "hard", "soft"])
    out["hard_rate"] = out["hard"] / out["n_eval"].clip(lower=1)
    out["soft_rate"] = out["soft"] / out["n_eval"].clip(lower=1)
    return out


@register_check
class GroupCheck(Check):
    name = "group"
    kind = "groups"
    description = "evaluation images whose group (explicit, verified by geometry or confirmed) has members in training data"
    words = Words(title="Group leakage", hard="explicit or confirmed group link", soft="its group reaches training data (any link)", score="",
                  hard_title="Group leakage: explicit or confirmed", soft_title="Group leakage: any link",
                  caption="Share of each evaluation split (columns) whose group (patient, video, image) has members "
                          "in each training source (rows).",
                  verdict="belong to a group (patient, video, source image) with members in training",
                  review="images of one source (patient, video, large image) across splits")
    review = "groups"

    def _reach(self, ws, inputs):
        from leakcore.grouping import group_reach

        groups = groups_for(ws, inputs)
        if groups is None:
            return None, None, None
        return groups, group_reach(groups, strict=True), group_reach(groups)

    def findings(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        groups, hard, soft = self._reach(ws, inputs)
        if groups is None or soft.empty:
            return empty_findings()
        info = groups.groups.set_index("group_id")
        strict = set(zip(hard["eval_item_id"], hard["train_split"]))
        degree = ["hard" if (e, t) in strict else "soft" for e, t in zip(soft["eval_item_id"], soft["train_split"])]
        reason = [f"group of {info.at[g, 'size']} across {info.at[g, 'splits']} (linked by {info.at[g, 'links']})"
                  for g in soft["group_id"]]
        return pd.DataFrame({"check": self.name, "eval_split": soft["eval_split"], "train_split": soft["train_split"],
                             "eval_item_id": soft["eval_item_id"], "train_item_id": soft["group_id"],
                             "score": 1.0, "degree": degree, "decision": pd.NA,
                             "reason": reason}).astype(FINDING_COLUMNS)

    def rates(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        groups, hard, soft = self._reach(ws, inputs)
        if groups is None:
            return pd.DataFrame()
        return reach_rates(self.name, ws, hard, soft)

    def removals(self, ws, eval_split: str, inputs: CheckInputs, policy) -> pd.DataFrame:
        """Every evaluation item whose group reaches training data, by any link (a group is one source: the
        policy's level of automatic similarity flags does not apply to it)."""
        from leakcore.grouping import group_reach

        groups = groups_for(ws, inputs)
        if groups is None:
            return empty_removals()
        reach = group_reach(groups)
        reach = reach[reach["eval_split"] == eval_split].drop_duplicates("eval_item_id")
        return pd.DataFrame({"item_id": reach["eval_item_id"].to_numpy(), "check": self.name,
                             "reason": [f"group reaches training data (group {g})" for g in reach["group_id"]],
                             "matches": reach["train_split"].to_numpy(), "similarity": float("nan"), "degree": None,
                             "decision": None, "confirmed": False}, columns=REMOVAL_COLUMNS)
