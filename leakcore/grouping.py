"""Groups of images that come from one source (one patient, one video, one large image cut into patches), across
all splits: explicit groups from the sources' metadata, united with groups recovered from the near-duplicate
graph at a "same source" threshold and with curator decisions.

Recovered groups are the connected components (scipy) of a graph whose nodes are items and whose edges are:
explicit group membership, stored neighbour pairs (eval x train, eval x eval and, when grouping is on,
train x train) at or above the group threshold, and pairs a curator confirmed (hard, soft, one source); pairs a
curator called unrelated (not a leak) are cut. Each group keeps its evidence: which edges link it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from leakcore import leakage
from leakcore.encoders import get_spec
from leakcore.errors import ThresholdsUncalibrated
from leakcore.schema import Decision, split_column

log = logging.getLogger(__name__)

LINKING = (Decision.HARD.value, Decision.SOFT.value, Decision.SAME_SOURCE.value)


def group_threshold(ws) -> float:
    """The "same source" similarity threshold in force: the project's, else the encoder's measured default."""
    own = ws.group_settings["threshold"]
    if own is not None:
        return float(own)
    spec = get_spec(ws.encoder)
    if spec.group_threshold is None:
        raise ThresholdsUncalibrated(
            f"{ws.encoder} has no measured group threshold", cli="set one with `leakcore groups WS --threshold T`",
            page="Set a group threshold on the Groups settings")
    return float(spec.group_threshold)


def load_group_pairs(ws, encoder: str | None = None) -> pd.DataFrame:
    """The training-split searches made for grouping (groups/<encoder>/), shaped like `leakage.load_pairs`."""
    return leakage.load_pair_tables(ws.path / "groups" / (encoder or ws.encoder))


@dataclass(frozen=True)
class Groups:
    """membership: item_id, group_id (the smallest member id), strict_group_id (explicit and curator links only),
    split, role; groups: one row per group of two or more; evidence: the edges that link each group."""

    membership: pd.DataFrame
    groups: pd.DataFrame
    evidence: pd.DataFrame
    threshold: float
    train_searched: bool  # whether train x train pairs were available (grouping on when scanned)
    items: int = 0  # readable items of the workspace (grouped or not)

    @property
    def percolated(self) -> bool:
        """One group holds over 5% of the images: the threshold chains look-alikes (calibrate on this data)."""
        n = self.items
        return bool(len(self.groups)) and int(self.groups["size"].max()) > max(50, 0.05 * max(n, 1))


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def recover_groups(ws, *, threshold: float | None = None, decisions: pd.DataFrame | None = None,
                   pairs: pd.DataFrame | None = None) -> Groups:
    """Explicit groups, united with near-duplicate components at the group threshold and curator decisions."""
    threshold = group_threshold(ws) if threshold is None else float(threshold)
    items = ws.items()
    items = items[items["status"] == "ok"].reset_index(drop=True)
    ids = items["item_id"].astype(str).to_numpy()
    index = pd.Index(ids)
    edges = []  # (a, b, kind, similarity)
    explicit = items[items["group"].notna()]
    if not explicit.empty:
        key = explicit["dataset"].astype(str) + "\x00" + explicit["group"].astype(str)
        first = explicit.groupby(key)["item_id"].transform("min").astype(str)
        e = pd.DataFrame({"a": first.to_numpy(), "b": explicit["item_id"].astype(str).to_numpy(), "kind": "explicit",
                          "similarity": np.nan})
        edges.append(e[e["a"] != e["b"]])
    stored = leakage.load_pairs(ws, raw=True) if pairs is None else pairs  # the group threshold is on the raw one
    train_pairs = load_group_pairs(ws)
    all_pairs = pd.concat([stored, train_pairs], ignore_index=True)[["eval_item_id", "train_item_id", "similarity"]]
    all_pairs = all_pairs[all_pairs["eval_item_id"] != all_pairs["train_item_id"]]
    cut, confirm = set(), pd.DataFrame(columns=["a", "b", "kind", "similarity"])
    if decisions is not None and not decisions.empty:
        keyed = decisions["eval_item_id"] + "\t" + decisions["train_item_id"]
        cut = set(keyed[decisions["decision"] == Decision.NOT_LEAK.value])
        conf = decisions[decisions["decision"].isin(LINKING)]
        confirm = pd.DataFrame({"a": conf["eval_item_id"], "b": conf["train_item_id"], "kind": "curator",
                                "similarity": np.nan})
    near = all_pairs[all_pairs["similarity"] >= threshold]
    if cut:
        near = near[~(near["eval_item_id"] + "\t" + near["train_item_id"]).isin(cut)]
    edges.append(pd.DataFrame({"a": near["eval_item_id"], "b": near["train_item_id"], "kind": "similarity",
                               "similarity": near["similarity"]}))
    edges.append(confirm)
    ev = pd.concat([e for e in edges if not e.empty], ignore_index=True) if any(not e.empty for e in edges) else \
        pd.DataFrame(columns=["a", "b", "kind", "similarity"])
    ai, bi = index.get_indexer(ev["a"].astype(str)), index.get_indexer(ev["b"].astype(str))
    known = (ai >= 0) & (bi >= 0)
    ev, ai, bi = ev[known].reset_index(drop=True), ai[known], bi[known]
    comp = _components(len(ids), ai, bi)
    strict = ev["kind"].isin(["explicit", "curator"]).to_numpy()
    comp_strict = _components(len(ids), ai[strict], bi[strict])
    label = pd.Series(ids).groupby(comp).transform("min").to_numpy()  # ids sorted within: the smallest names it
    label_strict = pd.Series(ids).groupby(comp_strict).transform("min").to_numpy()
    membership = pd.DataFrame({"item_id": ids, "group_id": label, "strict_group_id": label_strict,
                               "dataset": items["dataset"].astype(str).to_numpy(),
                               "split": split_column(items).to_numpy(), "role": items["role"].astype(str).to_numpy(),
                               "explicit_group": items["group"].to_numpy(), "time": items["time"].to_numpy(),
                               "camera": items["camera"].to_numpy()})
    size = membership.groupby("group_id")["item_id"].transform("size")
    membership = membership[size > 1].reset_index(drop=True)
    ev["group_id"] = label[ai]
    g = membership.groupby("group_id")
    groups = pd.DataFrame({
        "size": g.size(), "splits": g["split"].agg(lambda s: ", ".join(sorted(set(s)))),
        "n_splits": g["split"].nunique(), "n_eval": g["role"].agg(lambda r: int((r == "eval").sum())),
        "n_train": g["role"].agg(lambda r: int((r == "train").sum())),
    }).reset_index()
    kinds = ev.groupby("group_id")["kind"].agg(lambda k: ", ".join(sorted(set(k))))
    groups["links"] = groups["group_id"].map(kinds).fillna("")
    groups["cross_split"] = groups["n_splits"] > 1
    groups["leaks"] = (groups["n_eval"] > 0) & (groups["n_train"] > 0)
    return Groups(membership, groups.sort_values(["leaks", "size"], ascending=False).reset_index(drop=True),
                  ev, threshold, not train_pairs.empty, len(ids))


def groups_in_force(ws, *, decisions: pd.DataFrame | None = None, pairs: pd.DataFrame | None = None) -> Groups:
    """`recover_groups` at the threshold in force; without one (an uncalibrated encoder), explicit groups and
    curator decisions alone link items, and the log says so."""
    try:
        return recover_groups(ws, decisions=decisions, pairs=pairs)
    except ThresholdsUncalibrated:
        log.warning("no group threshold for %s: only explicit groups and curator decisions link items", ws.encoder)
        return recover_groups(ws, threshold=float("inf"), decisions=decisions, pairs=pairs)


def group_reach(groups: Groups, *, strict: bool = False) -> pd.DataFrame:
    """Per (evaluation item, training split) its group reaches: eval_split, train_split, eval_item_id, group_id."""
    col = "strict_group_id" if strict else "group_id"
    m = groups.membership
    ev, tr = m[m["role"] == "eval"], m[m["role"] == "train"]
    reach = ev[["item_id", "split", col]].merge(tr[[col, "split"]].drop_duplicates(), on=col, suffixes=("", "_train"))
    return reach.rename(columns={"item_id": "eval_item_id", "split": "eval_split", "split_train": "train_split",
                                 col: "group_id"})[["eval_split", "train_split", "eval_item_id", "group_id"]]


__all__ = ["Groups", "group_reach", "group_threshold", "groups_in_force", "load_group_pairs", "recover_groups"]


# ---- calibrating the "same source" threshold ----------------------------------------------------------------
def overlapping_patches(img, grid: int = 2, side: float = 0.65) -> list:
    """A grid of overlapping patches of one image (side as a fraction of the image), as a tiled scan is cut."""
    w, h = img.size
    pw, ph = int(w * side), int(h * side)
    xs = np.linspace(0, w - pw, grid).astype(int)
    ys = np.linspace(0, h - ph, grid).astype(int)
    return [img.crop((x, y, x + pw, y + ph)) for y in ys for x in xs]


def pan_frames(img, n: int = 6, width: float = 0.7) -> list:
    """Frames of a camera panning across one image left to right, each `width` of it wide (a video's frames)."""
    w, h = img.size
    fw = int(w * width)
    return [img.crop((x, 0, x + fw, h)) for x in np.linspace(0, w - fw, n).astype(int)]


def calibrate_group_threshold(ws, collection: str, *, queries: int = 100, target_fpr: float = 0.001, seed: int = 0,
                              encoder=None, progress=None) -> dict:
    """The similarity above which two images are one source: overlapping patches and neighbouring pan frames of
    `queries` images of a collection are the positives; each derived image's most similar image of another
    source is its negative. The threshold keeps the false-positive rate at most `target_fpr`."""
    from leakcore import catalog, images
    from leakcore.encoders import create_encoder
    from leakcore.schema import split_items

    encoder = encoder or create_encoder(ws.encoder, **ws.encoder_options)
    coll = split_items(ws.items(), collection)
    coll = coll[coll["status"] == "ok"].reset_index(drop=True)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(coll), size=min(queries, len(coll)), replace=False))
    derived, source, kind = [], [], []
    for n, pos in enumerate(pick):
        row = coll.iloc[pos]
        img = images.decode(catalog.read_bytes(row["uri"], int(row["row"]))).image
        if img is None:
            continue
        for part, name in ((overlapping_patches(img), "patch"), (pan_frames(img), "frame")):
            derived += part
            source += [n] * len(part)
            kind += [name] * len(part)
        if progress:
            progress("derive", n + 1, len(pick))
    vecs = encoder.encode_images(derived)
    source, kind = np.asarray(source), np.asarray(kind)
    sim = vecs @ vecs.T
    same = source[:, None] == source[None, :]
    np.fill_diagonal(sim, -np.inf)
    negatives = np.where(same, -np.inf, sim).max(axis=1)  # each image's hardest other-source match
    positives, pos_kind = [], []
    for s in np.unique(source):
        for k in ("patch", "frame"):
            idx = np.flatnonzero((source == s) & (kind == k))
            if k == "frame":  # neighbouring frames: a video links frame to frame
                positives += [sim[a, b] for a, b in zip(idx[:-1], idx[1:])]
            else:  # every patch's best other patch of the same image: what links it into the component
                positives += list(sim[np.ix_(idx, idx)].max(axis=1))
            pos_kind += [k] * (len(idx) - 1 if k == "frame" else len(idx))
    positives, pos_kind = np.asarray(positives), np.asarray(pos_kind)
    allowed = int(np.floor(target_fpr * len(negatives)))
    threshold = float(np.sort(negatives)[::-1][allowed] + 1e-6) if len(negatives) > allowed else float(negatives.min())
    return {"threshold": threshold, "encoder": encoder.name, "collection": collection, "sources": int(len(pick)),
            "negatives": int(len(negatives)), "target_fpr": target_fpr,
            "false_positive_rate": float((negatives >= threshold).mean()),
            "patch_recall": float((positives[pos_kind == "patch"] >= threshold).mean()),
            "frame_recall": float((positives[pos_kind == "frame"] >= threshold).mean()),
            "positive_median": float(np.median(positives)), "hardest_negative": float(negatives.max())}
