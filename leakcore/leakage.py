"""Degrees and rates from stored similarities and the thresholds in force (nothing is re-searched).

Degree of an evaluation item against a training source = the strongest of its neighbour pairs: hard when
similarity >= hard threshold, soft when >= soft threshold (soft includes hard, as in the paper). Curator
decisions, when used, override the automatic degree of the pairs they cover.
"""
from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from leakcore import scores
from leakcore.errors import UnknownName
from leakcore.schema import Decision, SplitId, split_column

log = logging.getLogger(__name__)

HARD, SOFT, NONE = "hard", "soft", "none"
WITHIN = "(within split)"
ALL_SOURCES = "(all training sources)"
# Curator decisions as stored by leakcore.review
DECISION_DEGREE = {Decision.HARD.value: HARD, Decision.SOFT.value: SOFT, Decision.NOT_LEAK.value: NONE}


def load_pairs(ws, encoder: str | None = None, *, raw: bool = False) -> pd.DataFrame:
    """Every stored neighbour row: eval_split, train_split, eval_item_id, rank, train_item_id, within, similarity
    (always the raw cosine) and `score`, the score in force (`ws.score`, named in `attrs["score"]`; the fused score
    adds its own `fused` and `verified` columns). `raw=True` scores by the raw similarity whatever the setting."""
    encoder = encoder or ws.encoder
    pairs = load_pair_tables(ws.neighbors_dir(encoder))
    return scores.scored(ws, pairs, encoder, scores.RAW if raw else ws.score)


def load_pair_tables(root) -> pd.DataFrame:
    """The neighbour tables stored under one folder (<query split>/<collection split>.parquet + sidecars)."""
    frames = []
    for meta_file in sorted(root.glob("*/*.json")) if root.exists() else []:
        meta = json.loads(meta_file.read_text())
        df = pd.read_parquet(meta_file.with_suffix(".parquet"))
        df.insert(0, "train_split", meta["train_split"])
        df.insert(0, "eval_split", meta["eval_split"])
        frames.append(df)
    if not frames:
        return pd.DataFrame({
            "eval_split": pd.Series(dtype=str), "train_split": pd.Series(dtype=str),
            "eval_item_id": pd.Series(dtype=str), "rank": pd.Series(dtype=np.int16),
            "train_item_id": pd.Series(dtype=str), "similarity": pd.Series(dtype=np.float32),
            "within": pd.Series(dtype=bool),
        })
    pairs = pd.concat(frames, ignore_index=True)
    pairs["within"] = pairs["eval_split"] == pairs["train_split"]
    return pairs


def degree_of(similarity, hard: float, soft: float) -> np.ndarray:
    """'hard' / 'soft' / 'none' per similarity."""
    s = np.asarray(similarity, dtype=np.float64)
    return np.where(s >= hard, HARD, np.where(s >= soft, SOFT, NONE))


def one_way(pairs: pd.DataFrame) -> np.ndarray:
    """Rows to keep so that a pair within one split found from both ends (b among a's nearest, a among b's) is
    listed once, from the end with the lower item id (`fused.candidates` verifies it from that end too). Only such
    a pair has its other way in the tables: a training split is never searched as an evaluation split."""
    if "within" in pairs and not pairs["within"].to_numpy(dtype=bool).any():
        return np.ones(len(pairs), bool)
    forward = pd.MultiIndex.from_arrays([pairs["eval_item_id"], pairs["train_item_id"]])
    backward = pd.MultiIndex.from_arrays([pairs["train_item_id"], pairs["eval_item_id"]])
    later = (pairs["eval_item_id"].astype(str) > pairs["train_item_id"].astype(str)).to_numpy()
    return ~(backward.isin(forward) & later)


def both_ways(decisions: pd.DataFrame) -> pd.DataFrame:
    """The decisions with each one also said of its pair the other way round (b, a), the later decision winning
    where both ways were decided: a pair within one split is one pair, whichever end it was decided from (a pair
    across splits has no other way in the tables, so its mirror matches nothing)."""
    if decisions.empty:
        return decisions
    d = decisions.reset_index(drop=True)
    swapped = d.rename(columns={"eval_item_id": "train_item_id", "train_item_id": "eval_item_id"})
    both = pd.concat([d, swapped]).sort_index(kind="stable")  # each decision, then its mirror, in the order made
    return both.drop_duplicates(["eval_item_id", "train_item_id"], keep="last").reset_index(drop=True)


def closest(pairs: pd.DataFrame, leave_out: set, n: int) -> pd.DataFrame:
    """The `n` evaluation images not in `leave_out` whose nearest training image scores highest by the score in
    force (the raw similarity breaking ties), one row each: what was not flagged, nearest the threshold first (the
    Review page's near misses and the report's). Pairs within a split are left out: they are the queue's."""
    if pairs.empty:
        return pairs
    p = pairs[~pairs["within"].to_numpy(dtype=bool) & ~pairs["eval_item_id"].astype(str).isin(leave_out)]
    p = p.assign(score=scores.in_force(p))
    best = p.sort_values(["score", "similarity"], ascending=False, kind="stable", na_position="last")
    return best.drop_duplicates("eval_item_id").head(n)


def with_degrees(pairs: pd.DataFrame, hard: float, soft: float, decisions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Pairs plus `auto_degree` (of the score in force), `decision` and `degree` (the decision where one exists,
    else automatic; a pair within a split takes the decision made from either end, `both_ways`)."""
    out = pairs.copy()
    out["auto_degree"] = degree_of(scores.in_force(out), hard, soft)
    out["decision"] = pd.Series(pd.NA, index=out.index, dtype="string")
    if decisions is not None and not decisions.empty:
        d = both_ways(decisions[["eval_item_id", "train_item_id", "decision"]])
        out = out.drop(columns="decision").merge(d, on=["eval_item_id", "train_item_id"], how="left")
        out["decision"] = out["decision"].astype("string")
    reviewed = out["decision"].map(DECISION_DEGREE)
    out["degree"] = reviewed.where(reviewed.notna(), out["auto_degree"])
    return out


_RANK = {NONE: 0, SOFT: 1, HARD: 2}


def item_degrees(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per (eval item, train split): the strongest degree and the best match by the score in force (`score`), with
    its raw `similarity`."""
    cols = ["eval_split", "train_split", "eval_item_id", "degree", scores.SCORE, "similarity", "train_item_id"]
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    p = pairs.assign(_r=pairs["degree"].map(_RANK), **{scores.SCORE: scores.in_force(pairs)})
    p = p.sort_values(["_r", scores.SCORE], ascending=[False, False], kind="stable")
    best = p.drop_duplicates(["eval_split", "train_split", "eval_item_id"])
    return best[cols].reset_index(drop=True)


def eval_counts(ws) -> pd.Series:
    """Readable items per eval split (the denominators)."""
    items = ws.items()
    ev = items[(items["role"] == "eval") & (items["status"] == "ok")]
    return split_column(ev).value_counts()


def rates(ws, hard: float | None = None, soft: float | None = None, *, encoder: str | None = None,
          decisions: pd.DataFrame | None = None, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Hard and soft counts and rates per (eval split x train split), over all sources, and within split."""
    encoder = encoder or ws.encoder
    if hard is None or soft is None:
        hard, soft = ws.thresholds(encoder)
    pairs = load_pairs(ws, encoder) if pairs is None else pairs
    degrees = item_degrees(with_degrees(pairs, hard, soft, decisions))
    totals = eval_counts(ws)
    rows = []
    cross = degrees[degrees["eval_split"] != degrees["train_split"]]
    within = degrees[degrees["eval_split"] == degrees["train_split"]]
    for (ev, tr), grp in cross.groupby(["eval_split", "train_split"], sort=True):
        rows.append(_row(ev, tr, grp["degree"], totals.get(ev, 0)))
    for ev, grp in cross.groupby("eval_split", sort=True):
        per_item = grp.assign(_r=grp["degree"].map(_RANK)).groupby("eval_item_id")["_r"].max()
        rows.append(_row(ev, ALL_SOURCES, per_item.map({0: NONE, 1: SOFT, 2: HARD}), totals.get(ev, 0)))
    for ev, grp in within.groupby("eval_split", sort=True):
        rows.append(_row(ev, WITHIN, grp["degree"], totals.get(ev, 0)))
    cols = ["eval_split", "train_split", "n_eval", "hard", "soft", "hard_rate", "soft_rate"]
    return pd.DataFrame(rows, columns=cols)


def _row(eval_split: str, train_split: str, degrees: pd.Series, n: int) -> dict:
    hard_n = int((degrees == HARD).sum())
    soft_n = int(degrees.isin([HARD, SOFT]).sum())
    return {
        "eval_split": eval_split, "train_split": train_split, "n_eval": int(n), "hard": hard_n, "soft": soft_n,
        "hard_rate": hard_n / n if n else 0.0, "soft_rate": soft_n / n if n else 0.0,
    }


def flagged_items(ws, hard: float | None = None, soft: float | None = None, *, encoder: str | None = None,
                  decisions: pd.DataFrame | None = None, include_within: bool = False) -> pd.DataFrame:
    """Eval items with their strongest training match over all sources (the export and impact input)."""
    encoder = encoder or ws.encoder
    if hard is None or soft is None:
        hard, soft = ws.thresholds(encoder)
    pairs = load_pairs(ws, encoder)
    if not include_within:
        pairs = pairs[~pairs["within"]] if "within" in pairs else pairs
    degrees = item_degrees(with_degrees(pairs, hard, soft, decisions))
    degrees = degrees.assign(_r=degrees["degree"].map(_RANK)).sort_values(["_r", scores.SCORE], ascending=False)
    return degrees.drop_duplicates("eval_item_id").drop(columns="_r").reset_index(drop=True)


def report_dict(ws, table: pd.DataFrame) -> dict:
    hard, soft = ws.thresholds()
    return {
        "workspace": str(ws.path), "encoder": ws.encoder, "hard_threshold": hard, "soft_threshold": soft,
        "rates": table.to_dict("records"),
    }


def exceeds(table: pd.DataFrame, fail_above_hard: float | None, fail_above_soft: float | None, *,
            check: str = "similarity") -> list[str]:
    """Messages for every eval split whose overall rate (percent) of one check is above a bound (the similarity
    check speaks of hard and soft leakage; another check's bound is on its soft rate, i.e. every finding)."""
    overall = table[table["train_split"] == ALL_SOURCES]
    if "check" in overall.columns:
        overall = overall[overall["check"] == check]
    out = []
    if check != "similarity":
        for r in overall.itertuples():
            if fail_above_soft is not None and 100 * r.soft_rate > fail_above_soft:
                out.append(f"{r.eval_split}: {check} leakage {100 * r.soft_rate:.2f}% > {fail_above_soft}%")
        return out
    for r in overall.itertuples():
        if fail_above_hard is not None and 100 * r.hard_rate > fail_above_hard:
            out.append(f"{r.eval_split}: hard leakage {100 * r.hard_rate:.2f}% > {fail_above_hard}%")
        if fail_above_soft is not None and 100 * r.soft_rate > fail_above_soft:
            out.append(f"{r.eval_split}: soft leakage {100 * r.soft_rate:.2f}% > {fail_above_soft}%")
    return out


__all__ = [
    "ALL_SOURCES", "HARD", "NONE", "SOFT", "WITHIN", "degree_of", "eval_counts", "exceeds", "flagged_items",
    "item_degrees", "load_pairs", "rates", "report_dict", "with_degrees",
]


def best_similarity(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per eval item: its best score in force to any training source and to its own split (threshold-free)."""
    if pairs.empty:
        return pd.DataFrame(columns=["eval_split", "eval_item_id", "train", "within"])
    p = pairs.assign(kind=np.where(pairs["within"], "within", "train"), **{scores.SCORE: scores.in_force(pairs)})
    best = p.groupby(["eval_split", "eval_item_id", "kind"], observed=True)[scores.SCORE].max().unstack("kind")
    for col in ("train", "within"):
        if col not in best:
            best[col] = np.nan
    return best.reset_index()


def counts_at(best: pd.DataFrame, hard: float, soft: float, totals: pd.Series) -> pd.DataFrame:
    """Flagged evaluation items per split at (hard, soft), from `best_similarity` (fast: no re-grouping of pairs)."""
    rows = []
    for split, grp in best.groupby("eval_split", sort=True):
        s = grp["train"].to_numpy(dtype=float)
        n = int(totals.get(split, len(grp)))
        rows.append({"eval_split": split, "n_eval": n, "hard": int((s >= hard).sum()), "soft": int((s >= soft).sum()),
                     "within_soft": int((grp["within"].to_numpy(dtype=float) >= soft).sum())})
    out = pd.DataFrame(rows, columns=["eval_split", "n_eval", "hard", "soft", "within_soft"])
    out["hard_rate"] = out["hard"] / out["n_eval"].clip(lower=1)
    out["soft_rate"] = out["soft"] / out["n_eval"].clip(lower=1)
    return out


def matrices(table: pd.DataFrame, order: str = "name", check: str = "similarity") -> dict[str, pd.DataFrame]:
    """The paper's picture from a `rates` table: rows = training sources, columns = evaluation splits.

    Returns hard_rate, soft_rate, hard, soft (counts) and n_eval matrices, plus `intra` (same dataset), for one
    check. `order` is "name" or "total" (rows and columns by total soft leakage, highest first).
    """
    if "check" in table.columns:
        table = table[table["check"] == check]
    cross = table[~table["train_split"].isin([ALL_SOURCES, WITHIN])]
    if cross.empty:
        empty = pd.DataFrame()
        return {k: empty for k in ("hard_rate", "soft_rate", "hard", "soft", "n_eval", "intra")}
    out = {k: cross.pivot(index="train_split", columns="eval_split", values=k)
           for k in ("hard_rate", "soft_rate", "hard", "soft", "n_eval")}
    if order == "total":
        rows = out["soft_rate"].sum(axis=1).sort_values(ascending=False).index
        cols = out["soft_rate"].sum(axis=0).sort_values(ascending=False).index
    elif order == "name":
        rows, cols = sorted(out["soft_rate"].index), sorted(out["soft_rate"].columns)
    else:
        raise UnknownName(f"order must be 'name' or 'total', got {order!r}")
    out = {k: v.reindex(index=rows, columns=cols) for k, v in out.items()}
    out["intra"] = pd.DataFrame([[SplitId.parse(r).dataset == SplitId.parse(c).dataset for c in cols] for r in rows],
                                index=rows, columns=cols)
    return out


def matrix_csv(mats: dict[str, pd.DataFrame]) -> str:
    """Long-form CSV of the matrices (one row per training source x evaluation split)."""
    parts = []
    for key in ("hard", "soft", "n_eval", "hard_rate", "soft_rate", "intra"):
        parts.append(mats[key].stack().rename(key))
    df = pd.concat(parts, axis=1)
    df.index.names = ["training_source", "evaluation_split"]
    df = df.reset_index()
    return df.to_csv(index=False)
