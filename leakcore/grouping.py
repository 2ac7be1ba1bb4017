"""Groups of images that come from one source (one patient, one video, one large image cut into patches), across
all splits: explicit groups from the sources' metadata, united with links whose pixels agree and with curator
decisions.

A stored neighbour pair (eval x train, eval x eval and, when grouping is on, train x train) at or above a loose
candidate threshold is only a candidate: it becomes an edge when the two images share a region. ORB features
(OpenCV) are found once per image at a working size of 512 px, matched with Lowe's ratio test, and verified by
RANSAC under one similarity transform (rotation, scale, shift); enough inliers spread over both images make an
edge (patches of one photo, frames of one shoot). Identical contents link as they are; images too small for local
features are aligned by the verification stage instead. What each pair measured is kept per pair of contents
(sha256) in the workspace, so a rerun measures nothing. Explicit ids and curator decisions (hard, soft, one
source) are edges as they are; pairs a curator called unrelated are cut. Groups are the connected components
(scipy) of these edges only, so look-alikes that merely score alike cannot chain. Each group keeps its evidence.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from PIL import Image
from scipy.sparse.csgraph import connected_components

from leakcore import leakage
from leakcore.encoders import get_spec
from leakcore.errors import ThresholdsUncalibrated
from leakcore.schema import Decision, split_column

log = logging.getLogger(__name__)

LINKING = (Decision.HARD.value, Decision.SOFT.value, Decision.SAME_SOURCE.value)
CANDIDATE_SHARE = 0.6  # default candidate threshold = this x the encoder's same-source similarity (sscd-distilled:
# 0.31; on hymenoptera patches and frames of one photo were linked down to 0.32, other photos up to 0.51)


def group_threshold(ws) -> float:
    """The candidate threshold in force: the project's, else a loose share (CANDIDATE_SHARE) of the encoder's measured
    "same source" similarity. A candidate links nothing until its pixels agree, so it is set for recall."""
    own = ws.group_settings["threshold"]
    if own is not None:
        return float(own)
    spec = get_spec(ws.encoder)
    if spec.group_threshold is None:
        raise ThresholdsUncalibrated(
            f"{ws.encoder} has no measured group threshold", cli="set one with `leakcore groups WS --threshold T`",
            page="Set a group threshold on the Groups settings")
    return round(CANDIDATE_SHARE * float(spec.group_threshold), 4)


def load_group_pairs(ws, encoder: str | None = None) -> pd.DataFrame:
    """The training-split searches made for grouping (groups/<encoder>/), shaped like `leakage.load_pairs`."""
    return leakage.load_pair_tables(ws.paths.group_pairs(encoder or ws.encoder))


# ---- geometry: a candidate link is an edge only when the two images share a region -----------------------------
GEOMETRY_VERSION = 3  # measurements of another version are kept apart (groups/geometry-v<VERSION>); 3: a pair
# that shares no region as it is is measured again with one image mirrored (`MIRRORED`)
MIRRORED = "mirrored"  # the reason of an edge found with the first image mirrored: ORB is not mirror-invariant, and a
# new user's two flipped copies were linked by nothing but a curator's decision
MIRROR_SHARE = 0.9  # ... tried where a pair's similarity is at least this x the encoder's same-source similarity
# (sscd-distilled: 0.46): mirrored 60-70% crops of cats_and_dogs photos score 0.48-0.75 (p10 0.57-0.67), the candidates
# that share no region a median 0.33 (99th percentile 0.55); tried on every one, the measurement took 40% longer
WORK_SIDE = 512  # local features are found with the longer side at this size
MIN_SIDE = 40  # shorter side (decoded pixels) below which local features are not tried (CIFAR: 32 px): aligned instead
N_FEATURES = 500  # ORB keypoints per image
RATIO = 0.8  # Lowe's ratio test on the two nearest descriptors
RANSAC_PX = 5.0  # reprojection error (working pixels) of an inlier
MIN_INLIERS = 8  # RANSAC inliers (at distinct places) under one similarity transform (hymenoptera: other photos <= 4)
MIN_NCC = 0.7  # NCC of the two images' luminance on the overlap that transform gives (hymenoptera: crops of one photo
# >= 0.96 for 99% of pairs, other photos <= 0.29); leaves room for motion and exposure between frames of one shoot
DISTINCT_PX = 4.0  # inliers closer than this (working pixels) count once
MIN_SPREAD = 0.001  # the inliers' convex hull covers at least this share of each image (else a degenerate fit)
NARROW_SPREAD, NARROW_NCC = 0.03, 0.95  # inliers within a hull under 3% of an image link only where the overlap's
# pixels agree as a copy's do: two look-alike cats aligned on their faces (12-14 inliers over 0.5-1.3% of the image)
# checked at NCC 0.73-0.84 and chained different photos into one group, while patches of one photo with their
# inliers that close check at 0.975 and above (cats_and_dogs seed 0, and a new user's cats_and_dogs)
MAX_SCALE = 4.0  # the transform's scale stays within [1/MAX_SCALE, MAX_SCALE]
MAX_CANDIDATES = 8  # candidate links tried per image, most similar first
CHUNK = 512  # pairs measured (and written) at once: an interrupted run loses at most one chunk
FEATURE_MEMO = 4096  # images whose local features are kept in memory during one run
GEOMETRY_COLUMNS = ("sha_a", "sha_b", "method", "inliers", "matches", "spread", "scale", "ncc", "overlap", "reason")
CHECK_SIDE = 192  # the alignment found by RANSAC is checked on luminance at this longer side


@dataclass(frozen=True)
class Features:
    """ORB keypoints (working pixels), their descriptors, the working size of one image and a small copy of its
    luminance (CHECK_SIDE, the same scale for every image) on which an alignment is checked."""

    points: np.ndarray  # (N, 2) float32
    descriptors: np.ndarray | None  # (N, 32) uint8
    size: tuple[int, int]  # (width, height) at the working size
    small: np.ndarray | None = None  # float32 luminance with the longer side CHECK_SIDE


def local_features(img) -> Features:
    """ORB features of an image whose longer side is brought to WORK_SIDE (found once per image, matched per pair).
    The edge threshold is small: the region two overlapping crops share lies along their borders."""
    import cv2

    if min(img.size) < MIN_SIDE:  # ORB on a blown-up thumbnail finds blur: such pairs are aligned instead
        return Features(np.zeros((0, 2), np.float32), None, img.size)
    g = img.convert("L")
    scale = WORK_SIDE / max(g.size)
    if abs(scale - 1) > 1e-3:
        g = g.resize((max(1, round(g.width * scale)), max(1, round(g.height * scale))), Image.Resampling.BILINEAR,
                     reducing_gap=2.0 if scale < 1 else None)
    arr = np.asarray(g)
    orb = cv2.ORB_create(nfeatures=N_FEATURES, fastThreshold=5, edgeThreshold=15, patchSize=31)
    kps, desc = orb.detectAndCompute(arr, None)
    pts = cv2.KeyPoint_convert(kps).reshape(-1, 2) if kps else np.zeros((0, 2), np.float32)
    f = CHECK_SIDE / WORK_SIDE
    small = cv2.resize(arr, (max(1, round(arr.shape[1] * f)), max(1, round(arr.shape[0] * f))),
                       interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return Features(pts, desc, (arr.shape[1], arr.shape[0]), small)


def overlap_ncc(fa: Features, fb: Features, model: np.ndarray) -> tuple[float, float]:
    """(NCC, share of b covered) of a's small luminance moved onto b's by the fitted transform, on their overlap
    (eroded by two pixels): two crops of one photo agree pixel for pixel, two look-alikes aligned on their eyes
    do not."""
    import cv2

    from leakcore import verify

    m = model.astype(np.float64).copy()
    m[:, 2] *= CHECK_SIDE / WORK_SIDE  # the same linear part, the shift at the small scale
    h, w = fb.small.shape
    moved = cv2.warpAffine(fa.small, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inside = cv2.warpAffine(np.ones_like(fa.small), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0)
    inside = cv2.erode(inside, np.ones((5, 5), np.uint8)) > 0.5
    share = float(inside.mean())
    if inside.sum() < 64:
        return 0.0, share
    return verify.ncc(moved[inside], fb.small[inside]), share


def _hull_share(points: np.ndarray, size: tuple[int, int]) -> float:
    import cv2

    if len(points) < 3:
        return 0.0
    return float(cv2.contourArea(cv2.convexHull(points.astype(np.float32)))) / float(size[0] * size[1])


def match_features(fa: Features, fb: Features) -> dict:
    """Inliers (at distinct places) of the ratio-tested ORB matches under one similarity transform (rotation, scale,
    shift: RANSAC), the share of each image their convex hull covers (the smaller), and the transform's scale."""
    import cv2

    from leakcore import verify

    out = {"method": "orb", "inliers": 0, "matches": 0, "spread": 0.0, "scale": 0.0, "ncc": np.nan, "overlap": 0.0,
           "reason": ""}
    if fa.descriptors is None or fb.descriptors is None or len(fa.points) < 8 or len(fb.points) < 8:
        return {**out, "reason": "too few local features"}
    knn = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(fa.descriptors, fb.descriptors, k=2)
    good = {}
    for m in knn:  # ratio-tested, then one match per keypoint of b (the closest)
        if len(m) == 2 and m[0].distance < RATIO * m[1].distance and \
                (m[0].trainIdx not in good or m[0].distance < good[m[0].trainIdx].distance):
            good[m[0].trainIdx] = m[0]
    good = list(good.values())
    out["matches"] = len(good)
    if len(good) < 4:
        return {**out, "reason": "too few matches"}
    src = fa.points[[m.queryIdx for m in good]]
    dst = fb.points[[m.trainIdx for m in good]]
    model, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX,
                                             maxIters=2000, confidence=0.995)
    if model is None or inl is None:
        return {**out, "reason": "no consistent transform"}
    keep = inl.ravel().astype(bool)
    # ORB finds one spot at several scales: inliers count once per place
    out["inliers"] = min(verify.distinct_places(src[keep], DISTINCT_PX), verify.distinct_places(dst[keep], DISTINCT_PX))
    out["scale"] = float(np.hypot(model[0, 0], model[1, 0]))
    out["spread"] = min(_hull_share(src[keep], fa.size), _hull_share(dst[keep], fb.size))
    if fa.small is not None and fb.small is not None:
        out["ncc"], out["overlap"] = overlap_ncc(fa, fb, model)
    return out


def geometry_edge(m: pd.DataFrame) -> np.ndarray:
    """Whether each measured pair shares a region: identical content; enough RANSAC inliers spread over both images
    under a plausible scale, whose alignment the pixels confirm (NCC on the overlap); or (images too small for local
    features) an alignment as good as a copy's."""
    from leakcore import verify

    m = m.reset_index(drop=True)
    ncc = m["ncc"].fillna(0)
    orb = (m["method"] == "orb") & (m["inliers"] >= MIN_INLIERS) & (m["spread"] >= MIN_SPREAD) & \
        (m["scale"] >= 1 / MAX_SCALE) & (m["scale"] <= MAX_SCALE) & (ncc >= MIN_NCC) & \
        ((m["spread"] >= NARROW_SPREAD) | (ncc >= NARROW_NCC))
    aligned = (m["method"] == "aligned") & (m["ncc"].fillna(0) >= verify.TWIN_NCC)
    return (orb | aligned | (m["method"] == "identical")).to_numpy(dtype=bool)


class GeometryStore:
    """groups/geometry-v<VERSION>/part-<hash>.parquet: one row per unordered pair of contents (sha_a < sha_b) with
    what the local features measured. Parts are written atomically and never rewritten, so a rerun is free and an
    interrupted run loses at most one chunk."""

    def __init__(self, ws):
        self.ws = ws
        self.folder = ws.paths.geometry(GEOMETRY_VERSION)

    def frame(self) -> pd.DataFrame:
        stamp = self.ws.stamp("geometry")  # parts are written whole and never rewritten: a new one is a new stamp

        def read():
            frames = [pd.read_parquet(p[0]) for p in stamp if p is not None]
            if not frames:
                return pd.DataFrame({c: pd.Series(dtype=object if c in ("sha_a", "sha_b", "method", "reason")
                                                  else float) for c in GEOMETRY_COLUMNS})
            return pd.concat(frames, ignore_index=True).drop_duplicates(["sha_a", "sha_b"])

        return self.ws.cache("geometry", stamp, read)

    def add(self, rows: pd.DataFrame) -> None:
        from leakcore import verify
        from leakcore.io import write_parquet

        rows = rows[list(GEOMETRY_COLUMNS)].reset_index(drop=True)
        name = verify.content_pair_hash(rows["sha_a"], rows["sha_b"], f"g{GEOMETRY_VERSION}")
        write_parquet(rows, self.folder / f"part-{name}.parquet")


def _decode_for_geometry(items: pd.DataFrame, reader=None) -> list:
    """(image or None, reason) per item row, decoded at about the working size (JPEG draft)."""
    from leakcore import catalog, images

    out: list = [(None, images.MISSING)] * len(items)
    for pos, data in catalog.iter_item_bytes(items.reset_index(drop=True), reader=reader):
        dec = images.decode(data, draft_size=(WORK_SIDE, WORK_SIDE))
        out[pos] = (dec.image, None) if dec.ok else (None, dec.reason)
    return out


def measure_geometry(ws, pairs: pd.DataFrame, *, features: dict | None = None) -> int:
    """Measure every (sha_a, sha_b, id_a, id_b) pair the geometry store lacks, CHUNK pairs per stored part; returns
    how many were measured. `features` (item id -> Features) is a memo the caller may keep across calls. Unreadable
    images are skipped with their reason (kept, so they are not tried again). Images too small for local features
    are aligned by the verification stage, only where the pair's similarity reaches the encoder's soft threshold
    (a copy's): aligning every look-alike pair of a 32 px collection would cost minutes."""
    from leakcore import verify

    store = GeometryStore(ws)
    have = store.frame()
    done = set(zip(have["sha_a"], have["sha_b"]))
    todo = pairs[np.array([(a, b) not in done for a, b in zip(pairs["sha_a"], pairs["sha_b"])], dtype=bool)]
    todo = todo.drop_duplicates(["sha_a", "sha_b"]).reset_index(drop=True)
    if todo.empty:
        return 0
    features = {} if features is None else features
    items = ws.items().drop_duplicates("item_id").set_index("item_id")
    spec = get_spec(ws.encoder)
    soft = spec.soft_threshold  # tiny images are aligned only when they score like a copy
    align_from = -np.inf if soft is None else float(soft)
    mirror_from = -np.inf if spec.group_threshold is None else MIRROR_SHARE * float(spec.group_threshold)
    for start in range(0, len(todo), CHUNK):
        part = todo.iloc[start:start + CHUNK]
        ids = pd.unique(pd.concat([part["id_a"], part["id_b"]]))
        decoded = dict(zip(ids, _decode_for_geometry(items.loc[ids].reset_index(), ws.sources)))
        for i, (img, _) in decoded.items():
            if img is not None and i not in features:
                features[i] = local_features(img)
        while len(features) > FEATURE_MEMO:  # oldest first (dicts keep insertion order)
            features.pop(next(iter(features)))
        rows, small = [], []
        for r in part.itertuples(index=False):
            (ia, why_a), (ib, why_b) = decoded[r.id_a], decoded[r.id_b]
            base = {"sha_a": r.sha_a, "sha_b": r.sha_b}
            fa, fb = features.get(r.id_a), features.get(r.id_b)
            if ia is None or ib is None:
                rows.append({**base, "method": "skipped", "inliers": 0, "matches": 0, "spread": 0.0, "scale": 0.0,
                             "ncc": np.nan, "overlap": 0.0, "reason": f"unreadable: {why_a or why_b}"})
            elif (fa is None or fb is None or fa.descriptors is None or fb.descriptors is None) and \
                    getattr(r, "similarity", np.inf) < align_from:
                rows.append({**base, "method": "skipped", "inliers": 0, "matches": 0, "spread": 0.0, "scale": 0.0,
                             "ncc": np.nan, "overlap": 0.0,
                             "reason": "too small for local features, and less similar than a copy: not aligned"})
            elif fa is None or fb is None or fa.descriptors is None or fb.descriptors is None:
                small.append(len(rows))
                rows.append({**base, "method": "aligned", "inliers": 0, "matches": 0, "spread": 0.0, "scale": 0.0,
                             "ncc": np.nan, "overlap": 0.0, "reason": "too small for local features: aligned instead"})
            else:
                row = {**base, **match_features(fa, fb)}
                if getattr(r, "similarity", np.inf) >= mirror_from and not geometry_edge(pd.DataFrame([row]))[0]:
                    # one of them mirrored (a flipped copy or frame)
                    key = (r.id_a, MIRRORED)
                    if key not in features:
                        features[key] = local_features(ia.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
                    turned = {**base, **match_features(features[key], fb)}
                    if geometry_edge(pd.DataFrame([turned]))[0]:
                        row = {**turned, "reason": MIRRORED}
                rows.append(row)
        if small:  # the verification stage's alignment on the whole image (copies of tiny images)
            sub = [part.iloc[i] for i in small]
            ev = verify.evidence([decoded[s.id_a][0] for s in sub], [decoded[s.id_b][0] for s in sub])
            for i, ncc in zip(small, ev["ncc"]):
                rows[i]["ncc"] = float(ncc)
        store.add(pd.DataFrame(rows, columns=list(GEOMETRY_COLUMNS)))
    return len(todo)


def candidate_links(ws, items: pd.DataFrame, pairs: pd.DataFrame, threshold: float,
                    max_per_image: int = MAX_CANDIDATES) -> pd.DataFrame:
    """Unordered pairs of stored neighbours at or above the (loose) candidate threshold, each image keeping its
    `max_per_image` most similar (a pair stays when one of its images keeps it): a, b (item ids, a < b),
    similarity, sha_a, sha_b, id_a, id_b (the ids in sha order, for the store)."""
    p = pairs[(pairs["similarity"] >= threshold) & (pairs["eval_item_id"] != pairs["train_item_id"])]
    a = np.minimum(p["eval_item_id"].astype(str).to_numpy(), p["train_item_id"].astype(str).to_numpy())
    b = np.maximum(p["eval_item_id"].astype(str).to_numpy(), p["train_item_id"].astype(str).to_numpy())
    c = pd.DataFrame({"a": a, "b": b, "similarity": p["similarity"].to_numpy(np.float64)})
    c = c.sort_values("similarity", ascending=False).drop_duplicates(["a", "b"])
    ok = set(items["item_id"].astype(str))
    c = c[c["a"].isin(ok) & c["b"].isin(ok)]
    if max_per_image and len(c):  # each image keeps its most similar candidates; a pair stays if one image keeps it
        c = c.reset_index(drop=True)
        ends = pd.DataFrame({"pair": np.tile(np.arange(len(c)), 2), "image": np.concatenate([c["a"], c["b"]]),
                             "similarity": np.tile(c["similarity"].to_numpy(), 2)})
        ends["rank"] = ends.sort_values("similarity", ascending=False, kind="stable").groupby("image").cumcount()
        c = c[ends.groupby("pair")["rank"].min().sort_index().to_numpy() < max_per_image]
    sha = items.drop_duplicates("item_id").set_index("item_id")["sha256"].astype(str)
    sa, sb = sha.reindex(c["a"]).to_numpy(), sha.reindex(c["b"]).to_numpy()
    swap = sa > sb
    c = c.assign(sha_a=np.where(swap, sb, sa), sha_b=np.where(swap, sa, sb),
                 id_a=np.where(swap, c["b"], c["a"]), id_b=np.where(swap, c["a"], c["b"]))
    return c.reset_index(drop=True)


class _Links:
    """Union-find over item ids: which candidates would add nothing because their images are already linked."""

    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b) -> None:
        self.parent[self.find(a)] = self.find(b)


def verified_candidates(ws, candidates: pd.DataFrame, *, linked: pd.DataFrame | None = None,
                        progress=None) -> pd.DataFrame:
    """The candidates with their geometry and `edge` (bool). Pairs the store lacks are measured now, most similar
    first, skipping a pair whose images are already linked (by `linked`: a, b edges such as explicit ids and
    curator decisions, by identical content, or by pairs verified before): it cannot change a group, so it is left
    unmeasured (reason "already linked") until a cut makes it matter."""
    c = candidates.sort_values("similarity", ascending=False).reset_index(drop=True)
    same = (c["sha_a"] == c["sha_b"]).to_numpy()
    links = _Links()
    if linked is not None:
        for a, b in zip(linked["a"].astype(str), linked["b"].astype(str)):
            links.union(a, b)
    for a, b in zip(c.loc[same, "a"], c.loc[same, "b"]):
        links.union(a, b)

    def looked_up():
        m = GeometryStore(ws).frame()
        out = c.merge(m, on=["sha_a", "sha_b"], how="left")
        out.loc[same, ["method", "inliers", "matches", "spread", "scale", "overlap", "reason"]] = \
            ["identical", 0, 0, 1.0, 1.0, 1.0, "identical content"]
        return out

    out = looked_up()
    measured = out["method"].notna().to_numpy()
    edge = geometry_edge(out) if len(out) else np.zeros(0, bool)
    for a, b in zip(out.loc[edge, "a"], out.loc[edge, "b"]):
        links.union(a, b)
    pending = [i for i in np.flatnonzero(~measured) if links.find(out.at[i, "a"]) != links.find(out.at[i, "b"])]
    total, features = len(pending), {}
    while pending:
        still, pick, trial = [], [], _Links()
        trial.parent = dict(links.parent)
        for i in pending:
            a, b = out.at[i, "a"], out.at[i, "b"]
            if links.find(a) == links.find(b):
                continue  # already linked: nothing to measure
            still.append(i)
            if len(pick) < CHUNK and trial.find(a) != trial.find(b):
                pick.append(i)
                trial.union(a, b)  # as if it holds: its parallel pairs wait for the result
        if not pick:
            break
        measure_geometry(ws, out.loc[pick], features=features)
        fresh = looked_up().loc[pick]
        for col in GEOMETRY_COLUMNS[2:]:
            out.loc[pick, col] = fresh[col].to_numpy()
        for i in np.asarray(pick)[geometry_edge(fresh)]:
            links.union(out.at[i, "a"], out.at[i, "b"])
        picked = set(pick)
        pending = [i for i in still if i not in picked]
        if progress:
            progress("verify group links", total - len(pending), total)
    if progress and total:
        progress("verify group links", total, total)
    unmeasured = out["method"].isna()
    out.loc[unmeasured, ["method", "reason"]] = ["unmeasured", "already linked"]
    out["edge"] = geometry_edge(out) if len(out) else np.zeros(0, bool)
    differ = ~out["edge"] & (out["reason"].fillna("") == "") & (out["inliers"] >= MIN_INLIERS) & \
        (out["ncc"].fillna(0) < MIN_NCC)
    out.loc[differ, "reason"] = "aligned, but the pixels differ"
    narrow = ~out["edge"] & (out["reason"].fillna("") == "") & (out["inliers"] >= MIN_INLIERS) & \
        (out["spread"] >= MIN_SPREAD) & (out["spread"] < NARROW_SPREAD) & (out["ncc"].fillna(0) < NARROW_NCC)
    out.loc[narrow, "reason"] = "matches in one small area, and the pixels there differ"
    out.loc[~out["edge"] & (out["reason"].fillna("") == ""), "reason"] = "no shared region"
    return out


@dataclass(frozen=True)
class Groups:
    """membership: item_id, group_id (the smallest member id), strict_group_id (explicit and curator links only),
    split, role; groups: one row per group of two or more, with `links` (the evidence that links it, in words);
    evidence: the edges that link each group (a, b, kind, similarity, inliers); candidates: every candidate link
    with its geometry, `edge` and, where rejected, the reason."""

    membership: pd.DataFrame
    groups: pd.DataFrame
    evidence: pd.DataFrame
    threshold: float  # the candidate threshold: similarity at which a link is tried on its pixels
    train_searched: bool  # whether train x train pairs were available (grouping on when scanned)
    items: int = 0  # readable items of the workspace (grouped or not)
    candidates: pd.DataFrame | None = None

    @property
    def percolated(self) -> bool:
        """One group holds over 5% of the images: links chain unrelated images (look at its evidence)."""
        n = self.items
        return bool(len(self.groups)) and int(self.groups["size"].max()) > max(50, 0.05 * max(n, 1))

    @property
    def guard(self) -> str | None:
        """The percolation guard in words (None when no group is that large), for the CLI and the pages alike."""
        if not self.percolated:
            return None
        big = self.groups.sort_values("size", ascending=False).iloc[0]
        return (f"one group holds {int(big['size'])} of {self.items} images (linked by {big['links']}): a chain may "
                "link unrelated images; look at its evidence and cut wrong links (Unrelated)")


def _components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


EDGE_KINDS = {"orb": "geometry", "aligned": "aligned", "identical": "identical"}


def _links_in_words(ev: pd.DataFrame) -> str:
    """The kinds of evidence of one group's edges, with the inlier range of the geometric ones."""
    words = []
    for kind in sorted(set(ev["kind"])):
        if kind == "geometry":
            inl = ev.loc[ev["kind"] == kind, "inliers"]
            lo, hi = int(inl.min()), int(inl.max())
            words.append(f"geometry ({lo} inliers)" if lo == hi else f"geometry ({lo}-{hi} inliers)")
        else:
            words.append(kind)
    return ", ".join(words)


def recover_groups(ws, *, threshold: float | None = None, decisions: pd.DataFrame | None = None,
                   pairs: pd.DataFrame | None = None, progress=None) -> Groups:
    """Explicit groups, united with candidate links (stored neighbours at or above the candidate threshold) whose
    pixels share a region (geometry, measured once per pair of contents and kept) and with curator decisions.
    Similarity alone never links two images, so look-alikes cannot chain."""
    threshold = group_threshold(ws) if threshold is None else float(threshold)
    items = ws.items()
    items = items[items["status"] == "ok"].reset_index(drop=True)
    ids = items["item_id"].astype(str).to_numpy()
    index = pd.Index(ids)
    columns = ["a", "b", "kind", "similarity", "inliers"]
    edges = []
    explicit = items[items["group"].notna()]
    if not explicit.empty:
        key = explicit["dataset"].astype(str) + "\x00" + explicit["group"].astype(str)
        first = explicit.groupby(key)["item_id"].transform("min").astype(str)
        e = pd.DataFrame({"a": first.to_numpy(), "b": explicit["item_id"].astype(str).to_numpy(), "kind": "explicit",
                          "similarity": np.nan, "inliers": np.nan})
        edges.append(e[e["a"] != e["b"]])
    stored = leakage.load_pairs(ws, raw=True) if pairs is None else pairs  # candidates are on the raw similarity
    if "raw_similarity" in stored.columns:  # pairs scored by the fused score keep the raw one apart
        stored = stored.assign(similarity=stored["raw_similarity"])
    train_pairs = load_group_pairs(ws)
    all_pairs = pd.concat([stored, train_pairs], ignore_index=True)[["eval_item_id", "train_item_id", "similarity"]]
    cut = set()
    if decisions is not None and not decisions.empty:
        unrelated = decisions[decisions["decision"] == Decision.NOT_LEAK.value]
        cut = set(zip(unrelated["eval_item_id"], unrelated["train_item_id"]))
        cut |= {(b, a) for a, b in cut}
        conf = decisions[decisions["decision"].isin(LINKING)]
        edges.append(pd.DataFrame({"a": conf["eval_item_id"], "b": conf["train_item_id"], "kind": "curator",
                                   "similarity": np.nan, "inliers": np.nan}))
    candidates = candidate_links(ws, items, all_pairs, threshold) if np.isfinite(threshold) else \
        candidate_links(ws, items, all_pairs.iloc[:0], 0.0)
    if cut and len(candidates):
        candidates = candidates[np.array([(a, b) not in cut for a, b in zip(candidates["a"], candidates["b"])], bool)]
    strong = pd.concat([e[["a", "b"]] for e in edges if not e.empty] or [pd.DataFrame(columns=["a", "b"])])
    checked = verified_candidates(ws, candidates.reset_index(drop=True), linked=strong, progress=progress)
    linked = checked[checked["edge"]]
    edges.append(pd.DataFrame({"a": linked["a"], "b": linked["b"], "kind": linked["method"].map(EDGE_KINDS),
                               "similarity": linked["similarity"], "inliers": linked["inliers"].astype(float)}))
    edges = [e for e in edges if not e.empty]
    ev = pd.concat(edges, ignore_index=True)[columns] if edges else pd.DataFrame(columns=columns)
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
    kinds = ev.groupby("group_id")[["kind", "inliers"]].apply(_links_in_words) if len(ev) else pd.Series(dtype=str)
    groups["links"] = groups["group_id"].map(kinds).fillna("")
    groups["cross_split"] = groups["n_splits"] > 1
    groups["leaks"] = (groups["n_eval"] > 0) & (groups["n_train"] > 0)
    checked["group_id"] = pd.Series(label, index=ids).reindex(checked["a"]).to_numpy() if len(checked) else []
    return Groups(membership, groups.sort_values(["leaks", "size"], ascending=False).reset_index(drop=True),
                  ev, threshold, not train_pairs.empty, len(ids), checked)


def groups_in_force(ws, *, decisions: pd.DataFrame | None = None, pairs: pd.DataFrame | None = None,
                    progress=None) -> Groups:
    """`recover_groups` at the candidate threshold in force; without one (an uncalibrated encoder), explicit groups
    and curator decisions alone link items, and the log says so."""
    try:
        return recover_groups(ws, decisions=decisions, pairs=pairs, progress=progress)
    except ThresholdsUncalibrated:
        log.warning("no group threshold for %s: only explicit groups and curator decisions link items", ws.encoder)
        return recover_groups(ws, threshold=float("inf"), decisions=decisions, pairs=pairs, progress=progress)


def group_reach(groups: Groups, *, strict: bool = False) -> pd.DataFrame:
    """Per (evaluation item, training split) its group reaches: eval_split, train_split, eval_item_id, group_id."""
    col = "strict_group_id" if strict else "group_id"
    m = groups.membership
    ev, tr = m[m["role"] == "eval"], m[m["role"] == "train"]
    reach = ev[["item_id", "split", col]].merge(tr[[col, "split"]].drop_duplicates(), on=col, suffixes=("", "_train"))
    return reach.rename(columns={"item_id": "eval_item_id", "split": "eval_split", "split_train": "train_split",
                                 col: "group_id"})[["eval_split", "train_split", "eval_item_id", "group_id"]]


__all__ = ["GeometryStore", "Groups", "candidate_links", "group_reach", "group_threshold", "groups_in_force",
           "load_group_pairs", "local_features", "match_features", "measure_geometry", "recover_groups",
           "verified_candidates"]


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
    source is its negative. The threshold keeps the false-positive rate at most `target_fpr`; the candidate
    threshold (what grouping uses: the pixels decide) is lower where needed, so that 99.5% of the links reach it."""
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
        img = images.decode(catalog.read_bytes(row["uri"], int(row["row"]), reader=ws.sources)).image
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
    candidate = min(threshold, float(np.quantile(positives, 0.005))) if len(positives) else threshold
    return {"threshold": threshold, "candidate_threshold": round(candidate, 4), "encoder": encoder.name,
            "collection": collection, "sources": int(len(pick)),
            "negatives": int(len(negatives)), "target_fpr": target_fpr,
            "false_positive_rate": float((negatives >= threshold).mean()),
            "patch_recall": float((positives[pos_kind == "patch"] >= threshold).mean()),
            "frame_recall": float((positives[pos_kind == "frame"] >= threshold).mean()),
            "positive_median": float(np.median(positives)), "hardest_negative": float(negatives.max())}
