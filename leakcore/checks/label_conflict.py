"""The label-conflict check (fastdup's headline finding): one picture carrying two labels.

A conflict is a pair of images with different labels that are the same picture: identical bytes (the same
content hash, in any two splits, training splits included), a neighbour pair at or above the hard threshold, or
a near-duplicate a curator confirmed. These are hard. A neighbour pair between soft and hard that nobody has
decided on yet is a soft conflict (a candidate to review); one a curator rejected is none. Pairs come from the
scan's neighbours (evaluation -> training, and within an evaluation split), so a conflict between two training
images is found when their bytes are identical.

Across splits the evaluation image carries the conflict (its label disagrees with training data, and a model
trained on that data is marked wrong on it or rewarded for a wrong label); within a split both images do. Rates
count evaluation images in a conflict per training source, within their own split, and over all of them.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from leakcore import leakage, scores
from leakcore.checks.base import FINDING_COLUMNS, Check, CheckInputs, Words, empty_findings, register_check

_PAIR = ["eval_split", "train_split", "eval_item_id", "train_item_id"]


def _keys(a, b) -> pd.Index:
    """One string per (a, b) pair of ids, to compare pairs as a whole with vectorised set operations."""
    return pd.Index(pd.Series(a, dtype="str").to_numpy(dtype=object) + "\t" + pd.Series(b, dtype="str").to_numpy(dtype=object))


def _identical(items: pd.DataFrame) -> pd.DataFrame:
    """Pairs of readable items with the same content hash and different labels: within each hash, every item is
    paired with the first item (by id) of each other label, so a file copied a thousand times under one label
    makes a thousand pairs, not a million."""
    ok = items[(items["status"] == "ok") & items["sha256"].notna() & items["label"].notna()]
    ok = ok[ok["sha256"].duplicated(keep=False)][["item_id", "sha256", "label"]]
    if ok.empty:
        return pd.DataFrame(columns=["a", "b"])
    mixed = ok.groupby("sha256")["label"].transform("nunique") > 1
    ok = ok[mixed].sort_values("item_id")
    heads = ok.drop_duplicates(["sha256", "label"])  # the first item of each label of each picture
    m = ok.merge(heads, on="sha256", suffixes=("_a", "_b"))
    m = m[m["label_a"] != m["label_b"]]
    a, b = m["item_id_a"].to_numpy(), m["item_id_b"].to_numpy()
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    return pd.DataFrame({"a": lo, "b": hi}).drop_duplicates().reset_index(drop=True)


def conflict_pairs(ws, inputs: CheckInputs) -> pd.DataFrame:
    """Every conflicting pair with `similarity`, `degree` (hard/soft), `decision`, the two labels and `how`, in
    the pairs table's orientation (an evaluation image first where there is one); within an evaluation split
    each pair appears once from each side."""
    items = ws.items()
    info = items.set_index("item_id")
    label, role = info["label"], info["role"]
    from leakcore.schema import split_column

    split = pd.Series(split_column(items).to_numpy(), index=items["item_id"])
    pairs = leakage.load_pairs(ws, inputs.encoder) if inputs.pairs is None else inputs.pairs
    p = leakage.with_degrees(pairs, inputs.hard, inputs.soft, inputs.decisions)
    # the score in force (raw or fused) as `similarity`, as the similarity check reads it, the raw cosine beside it
    p = scores.as_similarity(p, pairs.attrs.get(scores.SCORE) or ws.score)
    p = p.assign(eval_label=p["eval_item_id"].map(label), train_label=p["train_item_id"].map(label))
    p = p[p["eval_label"].notna() & p["train_label"].notna() & (p["eval_label"] != p["train_label"])]
    confirmed = p["decision"].isin(["hard", "soft"])
    # an undecided pair's decision is missing (NA): `!=` on it is NA, which a mask reads as False
    p = p[(p["degree"] != leakage.NONE) & ~p["decision"].eq("not_leak").fillna(False).to_numpy(dtype=bool)]
    confirmed = confirmed.reindex(p.index)
    # the degree the curator gave where there is one (a colour-graded copy confirmed soft was reported as a hard
    # conflict, "the same picture as it is"), else the score's
    said_hard = p["decision"].eq("hard").fillna(False).to_numpy(dtype=bool)
    auto_hard = (p["auto_degree"] == leakage.HARD).to_numpy()
    p = p.assign(degree=np.where(said_hard | (~confirmed.to_numpy(dtype=bool) & auto_hard), "hard", "soft"),
                 how=np.where(said_hard, "confirmed the same picture",
                              np.where(confirmed, "confirmed near-duplicate or edited copy",
                                       np.where(auto_hard, "scored as the same picture",
                                                "near-duplicate or edited copy, unconfirmed"))))
    # a neighbour pair whose two files are the same bytes says so, whatever its score or decision says
    sha = info["sha256"]
    same_bytes = (p["eval_item_id"].map(sha) == p["train_item_id"].map(sha)).fillna(False).to_numpy(dtype=bool)
    p = p.assign(how=np.where(same_bytes, "identical bytes", p["how"]),
                 degree=np.where(same_bytes, "hard", p["degree"]))
    found = p[_PAIR + ["similarity", "degree", "decision", "eval_label", "train_label", "how", "within", "rank"]
              + (["raw_similarity"] if "raw_similarity" in p.columns else [])]
    same = _identical(items)
    if not same.empty:
        # an evaluation image first, as the neighbour pairs are; two training images in id order
        a_eval = same["a"].map(role).eq("eval").to_numpy()
        b_eval = same["b"].map(role).eq("eval").to_numpy()
        first = np.where(~a_eval & b_eval, same["b"], same["a"])
        second = np.where(~a_eval & b_eval, same["a"], same["b"])
        bytes_ = pd.DataFrame({"eval_item_id": first, "train_item_id": second})
        bytes_["eval_split"] = bytes_["eval_item_id"].map(split).to_numpy()
        bytes_["train_split"] = bytes_["train_item_id"].map(split).to_numpy()
        bytes_ = bytes_.assign(similarity=1.0, raw_similarity=1.0, degree="hard", decision=pd.NA,
                               eval_label=bytes_["eval_item_id"].map(label).to_numpy(),
                               train_label=bytes_["train_item_id"].map(label).to_numpy(), how="identical bytes",
                               rank=np.int16(0),  # not among the scan's neighbours: no rank
                               within=bytes_["eval_split"] == bytes_["train_split"])
        known = [_keys(found["eval_item_id"], found["train_item_id"]), _keys(found["train_item_id"], found["eval_item_id"])]
        d = inputs.decisions
        if d is not None and not d.empty:  # a curator who rejected the pair has the last word, bytes or not
            no = d[d["decision"] == "not_leak"]
            known += [_keys(no["eval_item_id"], no["train_item_id"]), _keys(no["train_item_id"], no["eval_item_id"])]
        seen = pd.Index(np.concatenate(known)) if known else pd.Index([])
        bytes_ = bytes_[~_keys(bytes_["eval_item_id"], bytes_["train_item_id"]).isin(seen)]
        found = pd.concat([found, bytes_[found.columns]], ignore_index=True)
    # within an evaluation split both images carry the conflict: add the other side where the scan has one only
    within = found[found["within"] & found["eval_item_id"].map(role).eq("eval").to_numpy()]
    mirror = within.rename(columns={"eval_item_id": "train_item_id", "train_item_id": "eval_item_id",
                                    "eval_label": "train_label", "train_label": "eval_label"})[found.columns]
    found = pd.concat([found, mirror], ignore_index=True)
    found = found.sort_values(["degree", "similarity"], ascending=[True, False], kind="stable")
    return found.drop_duplicates(["eval_item_id", "train_item_id"]).reset_index(drop=True)


@register_check
class LabelConflictCheck(Check):
    name = "label_conflict"
    kind = "pairs"
    description = "the same picture, or a confirmed near-duplicate, carrying different labels (across and within splits)"
    # hard and soft as the similarity's (a curator's where one decided): an edited copy (a crop, a banner) is mostly
    # soft. A new user read "2 are the same picture under a different label" beside "hard 0 (the same picture)", and
    # another "the same picture as it is" for a mirrored crop the score calls hard, and "not confirmed" for two
    # copies they had confirmed
    words = Words(title="Label conflicts",
                  hard="the same picture (hard by the score, or confirmed hard), under another label",
                  soft="the same picture edited, or a near-duplicate, under another label",
                  score="similarity", strong="high", hard_title="Label conflicts: the same picture",
                  soft_title="Label conflicts: any near-duplicate",
                  caption="Share of each evaluation split (columns) that is the same picture as an image of each "
                          "training source (rows) under another label.",
                  verdict="match an image under a different label (the same picture, as it is or edited)",
                  review="one picture under two labels")
    review = "pairs"

    def findings(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        c = conflict_pairs(ws, inputs)
        if c.empty:
            return empty_findings()
        scored = "similarity" if ws.score == "similarity" else f"{ws.score} score"  # the score in force, named
        reason = [f"labelled {a!r} here, {b!r} in {t} ({how}, {scored} {s:.3f})"
                  for a, b, t, how, s in zip(c["eval_label"], c["train_label"], c["train_split"], c["how"],
                                             c["similarity"])]
        return pd.DataFrame({"check": self.name, "eval_split": c["eval_split"], "train_split": c["train_split"],
                             "eval_item_id": c["eval_item_id"], "train_item_id": c["train_item_id"],
                             "score": c["similarity"], "degree": c["degree"], "decision": c["decision"],
                             "reason": reason}).astype(FINDING_COLUMNS)

    def rates(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        items = ws.items()
        if not items["label"].notna().any():
            return pd.DataFrame()  # nothing to check: no image has a label
        f = self.findings(ws, inputs)
        evals = set(items.loc[items["role"] == "eval", "item_id"])
        f = f[f["eval_item_id"].isin(evals)]
        f = f.assign(train_split=np.where(f["eval_split"] == f["train_split"], leakage.WITHIN, f["train_split"]))
        totals = leakage.eval_counts(ws)
        rows = []

        def row(ev, tr, g):
            n = int(totals.get(ev, 0))
            h = g.loc[g["degree"] == "hard", "eval_item_id"].nunique()
            s = g["eval_item_id"].nunique()
            rows.append({"check": self.name, "eval_split": ev, "train_split": tr, "n_eval": n, "hard": int(h),
                         "soft": int(s), "hard_rate": h / n if n else 0.0, "soft_rate": s / n if n else 0.0})

        for (ev, tr), g in f.groupby(["eval_split", "train_split"], sort=True):
            row(ev, tr, g)
        for ev in sorted(totals.index):  # every evaluation split, conflicts or not
            row(ev, leakage.ALL_SOURCES, f[f["eval_split"] == ev])
        return pd.DataFrame(rows, columns=["check", "eval_split", "train_split", "n_eval", "hard", "soft",
                                           "hard_rate", "soft_rate"])

    def review_rows(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        from leakcore.review import build_queue

        c = conflict_pairs(ws, inputs)
        if c.empty:
            return pd.DataFrame()
        pairs = c[_PAIR + ["similarity", "within", "rank"] + (["raw_similarity"] if "raw_similarity" in c else [])]
        pairs = pairs.astype({"rank": np.int16})  # the scan's rank; 0: none
        q = build_queue(pairs, ws.items(), inputs.hard, inputs.soft, margin=np.inf, check=self.name)
        # the conflict's own degree for each queued row (pairs are unique in `c`)
        at = _keys(c["eval_item_id"], c["train_item_id"]).get_indexer(q["pair"])  # build_queue made the same keys
        q["degree"] = pd.Categorical(c["degree"].to_numpy()[at])
        return q
