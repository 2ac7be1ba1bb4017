"""The temporal check: an evaluation image taken within a time window (default 60 s) of a training image of the
same source: the same group (hard when explicit or confirmed; soft when recovered), or the same camera (EXIF
body serial) in the same burst (hard). One recording split across train and test. Training on the future,
training images later than a cutoff the user sets, is reported beside it (`future_training`)."""
from __future__ import annotations

import pandas as pd

from leakcore.checks.base import FINDING_COLUMNS, Check, CheckInputs, Words, empty_findings, register_check
from leakcore.checks.group import groups_for, reach_rates


def _nearest_in_time(ev: pd.DataFrame, tr: pd.DataFrame, key: str, window_s: float) -> pd.DataFrame:
    """Each eval row's nearest training row in time with the same `key`, when within the window."""
    ev = ev[ev[key].notna() & ev["time"].notna()].sort_values("time")
    tr = tr[tr[key].notna() & tr["time"].notna()].sort_values("time")
    if ev.empty or tr.empty:
        return pd.DataFrame(columns=["eval_item_id", "train_item_id", "eval_split", "train_split", "seconds"])
    m = pd.merge_asof(ev[["item_id", "split", "time", key]], tr[["item_id", "split", "time", key]].rename(
        columns={"item_id": "train_item_id", "split": "train_split", "time": "train_time"}),
        left_on="time", right_on="train_time", by=key, direction="nearest",
        tolerance=pd.Timedelta(seconds=window_s))
    m = m[m["train_item_id"].notna()]
    return pd.DataFrame({"eval_item_id": m["item_id"], "train_item_id": m["train_item_id"], "eval_split": m["split"],
                         "train_split": m["train_split"],
                         "seconds": (m["time"] - m["train_time"]).dt.total_seconds().abs()})


def temporal_pairs(ws, inputs: CheckInputs) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """(hard, soft) eval -> training matches within the window; None when no item has a time."""
    items = ws.items()
    if not items["time"].notna().any():
        return None
    window = ws.group_settings["window_s"]
    groups = groups_for(ws, inputs)
    from leakcore.schema import split_column

    base = pd.DataFrame({"item_id": items["item_id"].astype(str), "split": split_column(items), "role": items["role"],
                         "time": items["time"], "camera": items["camera"]})
    if groups is not None:
        m = groups.membership.set_index("item_id")
        base["group_id"] = base["item_id"].map(m["group_id"])
        base["strict_group_id"] = base["item_id"].map(m["strict_group_id"])
    else:
        base["group_id"] = pd.NA
        base["strict_group_id"] = pd.NA
    ev, tr = base[base["role"] == "eval"], base[base["role"] == "train"]
    hard = pd.concat([_nearest_in_time(ev, tr, "strict_group_id", window), _nearest_in_time(ev, tr, "camera", window)])
    soft = pd.concat([hard, _nearest_in_time(ev, tr, "group_id", window)])
    return hard.reset_index(drop=True), soft.drop_duplicates(["eval_item_id", "train_split"]).reset_index(drop=True)


def future_training(ws, cutoff: str | None = None) -> pd.DataFrame:
    """Training images dated after the cutoff (the project's when not given): training on the future."""
    cutoff = cutoff or ws.group_settings["cutoff"]
    items = ws.items()
    if not cutoff:
        return items.iloc[0:0]
    when = pd.Timestamp(cutoff)
    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    return items[(items["role"] == "train") & (items["time"] > when)].reset_index(drop=True)


@register_check
class TemporalCheck(Check):
    name = "temporal"
    kind = "pairs"
    description = "evaluation images within the time window of a training image of the same group or camera"
    words = Words(title="Same recording", hard="same group or camera, explicit", soft="same recording (any link)", score="seconds apart",
                  strong="low", hard_title="Same recording: explicit group or camera",
                  soft_title="Same recording: any link",
                  caption="Share of each evaluation split (columns) taken within the time window of a training image "
                          "of the same source (rows).",
                  verdict="were taken within the time window of a training image of the same source")

    def findings(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        got = temporal_pairs(ws, inputs)
        if got is None or got[1].empty:
            return empty_findings()
        hard, soft = got
        strict = set(zip(hard["eval_item_id"], hard["train_split"]))
        return pd.DataFrame({
            "check": self.name, "eval_split": soft["eval_split"], "train_split": soft["train_split"],
            "eval_item_id": soft["eval_item_id"], "train_item_id": soft["train_item_id"], "score": soft["seconds"],
            "degree": ["hard" if (e, t) in strict else "soft" for e, t in zip(soft["eval_item_id"], soft["train_split"])],
            "decision": pd.NA,
            "reason": [f"{s:.0f} s from a training image of the same source" for s in soft["seconds"]],
        }).astype(FINDING_COLUMNS)

    def rates(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        got = temporal_pairs(ws, inputs)
        if got is None:
            return pd.DataFrame()
        return reach_rates(self.name, ws, *got)
