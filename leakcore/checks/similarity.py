"""The similarity check (the paper's): an evaluation image whose nearest training neighbour is at least as
similar as the soft threshold leaks; at the hard threshold it is (almost) the same picture.

The check is configured with a score (`leakcore.scores`: the raw similarity or the fused score, the workspace's
`score` setting): its thresholds, degrees, findings, review rows and removals read the score in force (the pairs'
`score` column), never `similarity` (always the raw cosine) blindly."""
from __future__ import annotations

import numpy as np
import pandas as pd

from leakcore import leakage, scores
from leakcore.checks.base import CONFIRMING, FINDING_COLUMNS, REMOVAL_COLUMNS, Check, CheckInputs, Words, register_check


@register_check
class SimilarityCheck(Check):
    name = "similarity"
    kind = "pairs"
    description = "nearest training neighbours at or above the soft threshold (hard: near-identical)"
    words = Words(title="Near-duplicates in training", hard="the same picture", soft="a near-duplicate in training", score="similarity", strong="high",
                  hard_title="Hard leakage", soft_title="Soft leakage",
                  caption="Share of each evaluation split (columns) found in each training source (rows) at hard ≥ "
                          "{hard:.4f} and soft ≥ {soft:.4f}.",
                  verdict="have a near-duplicate in training", review="pairs of near-duplicates")
    review = "pairs"
    export_default = True

    def score(self, ws) -> scores.Score:
        """The score this check runs on in a workspace (its `score` setting)."""
        return scores.get_score(ws.score)

    def _pairs(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        """The pairs scored by the score in force (a caller's table, when it holds one, is scored already)."""
        return leakage.load_pairs(ws, inputs.encoder) if inputs.pairs is None else inputs.pairs

    def findings(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        pairs = self._pairs(ws, inputs)
        in_force = pairs.attrs.get(scores.SCORE) or self.score(ws).name
        word = scores.label(in_force)  # "fused score 0.9904 ≥ hard 0.9714"
        p = leakage.with_degrees(pairs, inputs.hard, inputs.soft, inputs.decisions)
        p = p[p["degree"] != leakage.NONE]
        value = scores.in_force(p).to_numpy(dtype=np.float64)
        auto = np.where(value >= inputs.hard, f"hard {inputs.hard:.4f}", f"soft {inputs.soft:.4f}")
        decision = p["decision"].astype(object).where(p["decision"].notna(), None).to_numpy()
        reason = [f"curator: {d} ({word} {s:.4f})" if d is not None else f"{word} {s:.4f} ≥ {a}"
                  for s, a, d in zip(value, auto, decision)]
        out = pd.DataFrame({
            "check": self.name, "eval_split": p["eval_split"], "train_split": p["train_split"],
            "eval_item_id": p["eval_item_id"], "train_item_id": p["train_item_id"], "score": value,
            "degree": p["degree"], "decision": p["decision"], "reason": reason,
        })
        return out.astype(FINDING_COLUMNS).reset_index(drop=True)

    def rates(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        table = leakage.rates(ws, inputs.hard, inputs.soft, encoder=inputs.encoder, decisions=inputs.decisions,
                              pairs=inputs.pairs)
        table.insert(0, "check", self.name)
        return table

    def _gate_words(self, degree: str) -> str:
        return f"{degree} leakage"

    def review_rows(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        from leakcore.review import build_queue

        pairs = self._pairs(ws, inputs)
        in_force = pairs.attrs.get(scores.SCORE) or self.score(ws).name
        return build_queue(scores.as_similarity(pairs, in_force), ws.items(), inputs.hard, inputs.soft, check=self.name,
                           confirmed=inputs.decisions)

    def removals(self, ws, eval_split: str, inputs: CheckInputs, policy) -> pd.DataFrame:
        """Confirmed pairs always remove their evaluation item, automatic flags at the policy's level, and with
        `dedupe_within` every within-split duplicate but the first (by item id) of its group; a duplicate within the
        split that a curator confirmed is always removed but the first of its group (README: "confirmed leaks are
        always removed"; a new user's six confirmed duplicates stayed in without the option). A pair called one source
        (a group's K, `same_source`) confirms its evaluation item's leak as well: a new user's K on two groups took
        their flagged images out of the cleaned split, which the automatic flags had removed."""
        pairs = self._pairs(ws, inputs)
        pairs = pairs[pairs["eval_split"] == eval_split]
        cross = leakage.with_degrees(pairs[~pairs["within"]], inputs.hard, inputs.soft, inputs.decisions)
        confirmed = cross[cross["decision"].isin(CONFIRMING)]
        rejected = set(cross.loc[cross["decision"] == "not_leak", "eval_item_id"])
        level = {"hard": [leakage.HARD], "soft": [leakage.HARD, leakage.SOFT], "none": []}[policy.flags]
        auto = cross[(cross["decision"].isna() | (cross["decision"] == "unsure")) & cross["auto_degree"].isin(level)]
        evidence = pd.concat([confirmed, auto])
        evidence = evidence.assign(_score=scores.in_force(evidence)).sort_values("_score", ascending=False,
                                                                                kind="stable")
        # an export records the score in force of its evidence (the Export page calls it "fused score" then)
        ev = evidence.groupby("eval_item_id", sort=True).agg(similarity=("_score", "max"),
                                                             degree=("degree", "first"), decision=("decision", "first"))
        ev["matches"] = _joined_matches(evidence).reindex(ev.index)
        is_confirmed = ev.index.isin(set(confirmed["eval_item_id"]))
        reason = np.where(is_confirmed, "confirmed leak", "automatic " + ev["degree"].fillna("").astype(str) + " flag")
        reason = np.where(~is_confirmed & ev.index.isin(rejected), np.char.add(reason.astype(str), " (another pair was rejected)"),
                          reason)
        out = pd.DataFrame({"item_id": ev.index.to_numpy(), "check": self.name, "reason": reason,
                            "matches": ev["matches"].to_numpy(), "similarity": ev["similarity"].to_numpy(),
                            "degree": ev["degree"].to_numpy(), "decision": ev["decision"].to_numpy(),
                            "confirmed": is_confirmed}, columns=REMOVAL_COLUMNS)
        within = pairs[pairs["within"]]
        strongest = None  # each within-split item's strongest pair: made once, where a duplicate is removed
        for confirmed_only in (True, False) if policy.dedupe_within else (True,):
            heads = _within_groups(within, inputs.soft, inputs.decisions, confirmed_only=confirmed_only)
            removed = set(out["item_id"])  # once, not once per item of the groups
            dup = {i: h for i, h in heads.items() if i != h and i not in removed}
            if dup:
                what = "confirmed within-split duplicate" if confirmed_only else "within-split duplicate"
                strongest = _strongest_within(within, inputs) if strongest is None else strongest
                best = strongest.reindex(list(dup))
                out = pd.concat([out, pd.DataFrame({
                    "item_id": list(dup), "check": f"{self.name} (within split)",
                    "reason": [f"{what} of {h}" for h in dup.values()], "matches": list(dup.values()),
                    "similarity": best["score"].to_numpy(), "degree": best["degree"].to_numpy(),
                    "decision": best["decision"].to_numpy(), "confirmed": confirmed_only})],
                    ignore_index=True)
        return out


def _strongest_within(within: pd.DataFrame, inputs: CheckInputs) -> pd.DataFrame:
    """Per item of a within-split pair (either end), its strongest such pair's score in force, degree and decision
    in force: what the Export page and removed.csv show beside a within-split duplicate (they showed nothing)."""
    w = leakage.with_degrees(within, inputs.hard, inputs.soft, inputs.decisions)
    score = scores.in_force(w).to_numpy(float)
    ends = pd.DataFrame({"item_id": np.concatenate([w["eval_item_id"].to_numpy(str), w["train_item_id"].to_numpy(str)]),
                         "score": np.tile(score, 2), "degree": np.tile(w["degree"].to_numpy(object), 2),
                         "decision": np.tile(w["decision"].to_numpy(object), 2)})
    return ends.sort_values("score", ascending=False, kind="stable").drop_duplicates("item_id").set_index("item_id")


def _within_groups(pairs: pd.DataFrame, soft: float, decisions: pd.DataFrame | None, *,
                   confirmed_only: bool = False) -> dict[str, str]:
    """item -> the first item id of its within-split duplicate group (connected components of duplicate pairs;
    `confirmed_only`: of the pairs a curator confirmed as leaks)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if confirmed_only and (decisions is None or decisions.empty):
        return {}
    p = leakage.with_degrees(pairs, soft, soft, decisions)
    p = p[p["decision"].isin(["hard", "soft"])] if confirmed_only else p[p["degree"] != leakage.NONE]
    if p.empty:
        return {}
    ids, codes = np.unique(np.concatenate([p["eval_item_id"].to_numpy(str), p["train_item_id"].to_numpy(str)]),
                           return_inverse=True)
    a, b = codes[:len(p)], codes[len(p):]
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(ids), len(ids)))
    _, component = connected_components(graph, directed=False)
    first = pd.Series(ids).groupby(component).transform("min")  # ids are sorted: the smallest id heads its group
    return dict(zip(ids, first))


def _joined_matches(evidence: pd.DataFrame) -> pd.Series:
    """{eval item: its training matches joined by ";", most similar first, each once}: a sort and one split of the
    arrays (a per-group lambda in pandas took seconds on 100,000 pairs)."""
    ev = evidence.drop_duplicates(["eval_item_id", "train_item_id"])  # already most similar first
    ids = ev["eval_item_id"].to_numpy(dtype=object)
    train = ev["train_item_id"].to_numpy(dtype=object)
    order = np.argsort(ids, kind="stable")  # stable: the similarity order survives within an item
    ids, train = ids[order], train[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.array([], int)
    return pd.Series([";".join(g) for g in np.split(train, starts[1:])] if len(ids) else [],
                     index=pd.Index(ids[starts], name="eval_item_id"), dtype=object)
