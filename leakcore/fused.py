"""The fused leak score: the embedding similarity and the verification evidence combined by a calibrated
scikit-learn model into the probability that two images are one photograph.

Fitting set: the extended transformation suite on the workspace's own training images, and the collection's own
look-alikes. Suite positives are an edited copy against its original (each query image gets a few of the suite's
edits); its negative is the same edited copy against the most similar *other* training image that is not an
in-collection twin of the original (below the raw soft threshold against it; a same-label one that aligns nearly
pixel for pixel or matches many local features is left out). The collection's look-alikes (`lookalike_pairs`)
are the nearest other training images of training images drawn at random: real look-alikes of the user's data,
another label's nearest or the same label's nearest whose pixels do not say "one photograph". Soft is set on them
(`soft_from_lookalikes`): where, out of fold, 95% of the pairs above it are leaks, never below SOFT_FLOOR (on
photos the suite's 0.1% false-positive point was 0.008), on photos never below even odds (`soft_floor`): there a
copy under strong edits is decided by its local matches (`decided_by_matches`), whatever soft is. Curator decisions
join the fitting set once there are enough of them (`MIN_DECISIONS` with both kinds), weighted above the synthetic
pairs, since they are the real distribution.

A second copy-detection model's similarity joins the features (`SecondOpinion`: the other SSCD model at a
small input size): on the pairs judged by eye on CIFAR-10 it separates same shots from look-alikes better than
the workspace's encoder does in the band where the two are mixed, and the two err on different pairs. It is used
only where the training images are too small for local features (`small_images`); on photos ORB carries that
evidence, and the second model cost about as much per image as the scan's own embedding.

With `DECISIONS_ALONE` decided pairs or more, the model is fitted on the decisions alone: on CIFAR-10 the
suite's easy negatives pulled a fit on suite plus decisions away from the real look-alikes (cross-validated
AUC on the decided pairs 0.936 with the suite, 0.958 without).

The model is a logistic regression on standardised features inside `CalibratedClassifierCV` (sigmoid),
chosen over gradient boosting because every score decomposes into per-feature contributions, which the
Review page shows ("which features decided"). Hard is chosen on the suite by the same rule as the raw thresholds
(`calibrate.ThresholdCalibrator`), soft on the collection's look-alikes (above); once decisions join the fit, soft is raised
where needed so that `DECIDED_PRECISION` of the decided pairs above it are leaks, judged on out-of-fold
scores (the suite's negatives are edited other images, far fewer and easier than a real collection's
look-alikes); fitted on the decisions alone, hard comes from them too (`DECIDED_HARD_PRECISION`). The fused
score is stored *beside* the raw similarity: neighbour tables are never rewritten; it is one of the scores of
`leakcore.scores` (`FusedScore`), and `leakage.load_pairs` adds its `fused` column beside `similarity` (always the
raw cosine) when the workspace's score is "fused".
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import pandas as pd
from threadpoolctl import ThreadpoolController, threadpool_limits

from leakcore import leakage, search, verify
from leakcore.errors import InvalidInput
from leakcore.project import MIN_FIT_IMAGES
from leakcore.scores.fused import (  # noqa: F401  (the fitted model and scoring pairs with it live there)
    MATCH_RULE, SECOND_FEATURE, SECOND_INPUT_SIZE, TWIN_CROP_DETAIL, TWIN_CROP_NCC, TWIN_ORB_INLIERS, TWIN_ORB_RATIO,
    TWIN_TILES_AGREE, FusedModel, SecondOpinion, _estimator, _folds, decided_by_crop, decided_by_matches,
    decided_by_pixels, floor_matched, load, outdated, second_encoder_name, small_images, was_rescued, with_fused)
from leakcore.io import atomic_write_text, plain, write_parquet
from leakcore.scores.base import DECIDED_HARD_PRECISION, DECIDED_PRECISION
from leakcore.scores.logistic import grouped_folds, held_out_proba, stratified_folds

log = logging.getLogger(__name__)

MIN_DECISIONS = 30  # decided pairs (with at least MIN_EACH of each kind) before decisions join the fit
MIN_EACH = 5
DECISION_WEIGHT = 5  # one curator decision counts as this many synthetic pairs (its row is repeated)
CANDIDATE_FPR = 0.05  # candidate threshold: the raw similarity that 5% of the fitting negatives reach
DECISIONS_ALONE = 200  # with this many decided pairs (and MIN_ALONE of each kind) the fit uses them alone
MIN_ALONE = 30
CANDIDATE_RANK = 3  # each eval image's nearest three above the candidate threshold are verified, and beyond them the
# pairs the raw score flags: on CIFAR-10, 2 of 43 decided pairs past the third were leaks and no flag changed
# the fitting set (issue #32: on photos the fit on 200 queries x 26 edits x 3 pairs cost 19x the scan)
TRANSFORMS_PER_QUERY = 4  # each query image gets this many of the suite's edits (every edit used alike: twice with
# MIN_QUERIES); on hymenoptera 4 instead of 6 found the same planted copies and flagged no other photo (issue #32)
QUERIES_PER, MIN_QUERIES, MAX_QUERIES = 24, 12, 64  # one query per 24 training images, within these bounds (8 queries
# on hymenoptera left 48 suite negatives and raised the candidate threshold past a planted crop's raw similarity)
EVIDENCE_EVERY = 2  # the pixel evidence of every second query's pairs is computed and fitted on; every query's hardest
# negative sets the candidate threshold (its raw similarity costs an embedding, its evidence two images' ORB and a
# crop search: on cats_and_dogs the 821 fitting pairs' evidence was 10 s of a 47 s scan)
LOOKALIKES_PER, MIN_LOOKALIKE_IMAGES, MAX_LOOKALIKE_IMAGES = 20, 24, 80  # training images whose nearest are negatives
# (one per 20 training images: on hymenoptera 45 look-alike pairs instead of 87 set the same soft, at its floor, and
# on cats_and_dogs 158 instead of 309 the same soft, at its floor)
PHOTO_FITTED_QUERIES, PHOTO_LOOKALIKE_IMAGES = 16, 40  # on photos (local features computed, `small_images` not), the
# evidence of at most this many queries' pairs (every third or fourth query then; the rest still set the candidate
# threshold), and at most this many look-alike images: there a pair's evidence costs twice what it does on 32 px
# images, and soft sits at its floor of even odds. On cats_and_dogs 208 fitting pairs instead of 414 flag the same
# planted copies on four draws, with no other photo, and `scan --verify` took 1.43x the scan instead of 1.50x.
# Halving the queries themselves lowered the candidate threshold from 0.325 to 0.30, and its 288 more candidate pairs
# cost what the fit saved. On CIFAR-10 (judged samples rescored) these limits moved soft from 0.645 to 0.79: flags
# that are leaks 99%, but listed images flagged 85% instead of 92%, so they do not apply to small images
LOOKALIKE_RANK = 2  # each such image's nearest two other training images
FITTING_SET = 5  # the fitting set's layout (a stored suite of another layout is built again); 3: 4 edits a query,
# one look-alike image per 10 training images; 4: evidence of every second query's pairs, one look-alike image per 20;
# 5: on photos within PHOTO_FITTED_QUERIES and PHOTO_LOOKALIKE_IMAGES
MIN_LOOKALIKES = 20  # the collection's look-alike pairs it takes to set soft on them
LOOKALIKE_PRECISION = 0.95  # soft: where this share of the pairs above it are leaks (out of fold)
LEAK_SHARE = 0.1  # ... with one candidate pair in ten taken to be a leak
SOFT_FLOOR = 0.1  # with look-alikes to judge by, soft is never below this (the suite's 0.1% false-positive point was
# 0.008 on photos) ...
SOFT_FLOOR_MATCHED = 0.5  # ... and on photos, where local matches decide strong edits (`decided_by_matches`), never
# below even odds (`soft_floor`): on hymenoptera 119 of 120 planted copies are decided by their matches, and any soft
# from 0.2 to 0.5 finds the same copies with no other flag; on cats_and_dogs the look-alike rule's 0.12 let 8 other
# photos of the same kind of animal through (0.13-0.35), and 0.5 none, at 3 more planted crops missed (195 of 200)


RESCUE_NCC = 0.95  # an evaluation image's nearest image under the candidate threshold is checked too where their 32 px
# canvases agree this well (`verify.canvas_agreement`): a new user's JPEG copy at quality 8, which the embedding scored
# 0.29 against a candidate threshold of 0.31, agreed at 1.000; the best other such pair 0.70 on hymenoptera, 0.81 on
# cats_and_dogs (1,200 evaluation photos), none above 0.9 (`bench/verify_below_candidate.py`)
RESCUE_SIDE = 32  # the images are decoded for it at a JPEG's reduced scale keeping this (a 500 px photo at 1/8)


def model_dir(ws, encoder: str):
    """verify/<encoder>/: where the fused score of an encoder is stored (the workspace's layout says)."""
    return ws.paths.fused(encoder)


def verify_pairs(ws, pairs: pd.DataFrame, fm: "FusedModel", *, progress=None, should_stop=None,
                 stage: str = "verify pairs") -> int:
    """The second stage for stored pairs: the pixel evidence (verify.compute_evidence, reported as `stage`; a pair
    the match rule decides is aligned by its local matches' map, `verify.evidence(by_matches=True)`) and, when the
    model has one, the second model's vectors. Both are cached; an interrupted run resumes. Returns pairs verified
    now."""
    n = verify.compute_evidence(ws, pairs, progress=progress, should_stop=should_stop, stage=stage, by_matches=True)
    if fm.second and not (should_stop is not None and should_stop()):
        SecondOpinion.of_model(ws, fm).embed(pairs, progress=progress)
    return n


# ---- the fitting set -------------------------------------------------------------------------------------------
def fitting_size(n_collection: int, photos: bool = False) -> tuple[int, int]:
    """(queries of the suite, look-alike images of the collection) for a collection of n training images: the fit
    grows with the collection, as the scan does, so that it stays a fraction of the scan's cost (on `photos` within
    PHOTO_LOOKALIKE_IMAGES)."""
    queries = int(np.clip(n_collection // QUERIES_PER, MIN_QUERIES, MAX_QUERIES))
    lookalikes = int(np.clip(n_collection // LOOKALIKES_PER, MIN_LOOKALIKE_IMAGES, MAX_LOOKALIKE_IMAGES))
    return queries, min(lookalikes, PHOTO_LOOKALIKE_IMAGES) if photos else lookalikes


def evidence_every(n_queries: int, photos: bool = False) -> int:
    """The suite's pairs get evidence for every this-many-th query (EVIDENCE_EVERY; on `photos` for at most
    PHOTO_FITTED_QUERIES queries)."""
    return max(EVIDENCE_EVERY, -(-n_queries // PHOTO_FITTED_QUERIES)) if photos else EVIDENCE_EVERY


def _collection(ws, encoder):
    """The deduplicated readable training images and their vectors (from the scan's cache)."""
    from leakcore.embed import embed_items

    coll = pd.concat([ws.split_items(s) for s in ws.split_ids("train")], ignore_index=True)
    coll = coll[(coll["status"] == "ok") & coll["sha256"].notna()].drop_duplicates("sha256").reset_index(drop=True)
    if len(coll) < MIN_FIT_IMAGES:
        raise InvalidInput(f"fitting the fused score needs at least {MIN_FIT_IMAGES} readable training images",
                           cli="add a training split with images first", page="Add a training split with images first")
    vectors, have = embed_items(ws, coll, encoder)
    return coll[have].reset_index(drop=True), vectors[have]


def suite_pairs(ws, *, encoder=None, queries: int | None = None, seed: int = 0, transforms=None,
                per_query: int | None = TRANSFORMS_PER_QUERY, lookalikes: int | None = None,
                progress: Callable[[str, int, int], None] | None = None) -> pd.DataFrame:
    """The fitting set: scored pairs of the extended suite on the workspace's training images (each query image
    edited by `per_query` of the suite's edits, every edit used alike; one positive and the hardest negative per
    edit), plus the collection's own look-alikes (`lookalike_pairs`), with the raw similarity and the
    verification evidence. `queries` and `lookalikes` default to `fitting_size` of the collection."""
    from leakcore.calibrate import extended_suite
    from leakcore.encoders import create_encoder
    from leakcore.encoders.base import usable_cores

    encoder = encoder or create_encoder(ws.encoder, **ws.encoder_options)
    coll, vectors = _collection(ws, encoder)
    photos = not small_images(ws)
    auto_q, auto_l = fitting_size(len(coll), photos)
    queries, lookalikes = queries or auto_q, auto_l if lookalikes is None else lookalikes
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(coll), size=min(queries, len(coll)), replace=False))
    every = evidence_every(len(pick), photos)
    # read as the evidence reads them (a large JPEG at the scale keeping both sides at least ORB_SIDE): edited and
    # embedded at 4,000 px, camera photos made the fit 20 s of a 43 s scan of 517 photos
    originals = verify.load_images(coll.iloc[pick], side=verify.ORB_SIDE)
    labels = coll["label"].astype("string") if "label" in coll and coll["label"].notna().any() else None
    soft = ws.thresholds_or_none(encoder.name)
    soft = soft.soft if soft is not None else 1.0
    transforms = [t for t in (transforms or extended_suite()) if t.name != "invert"]
    per_query = min(per_query or len(transforms), len(transforms))
    # which edits each query gets: every edit equally often, a random subset per query
    order = np.concatenate([rng.permutation(len(transforms)) for _ in range(-(-len(pick) * per_query // len(transforms)))])
    assigned = {t: [] for t in range(len(transforms))}
    for j in range(len(pick)):
        for t in order[j * per_query:(j + 1) * per_query]:
            assigned[int(t)].append(j)
    mirrored = encoder.mirrored() if ws.flip_queries else None
    own_sim = vectors[pick] @ vectors.T  # originals against the collection (to keep in-collection twins out)
    rows, eval_imgs, train_idx = [], [], []
    pools = ThreadpoolController()  # the thread pools, found once (threadpool_limits looks for them at each call: 12 ms)
    made = []  # (edit, query rows, their edited copies): every copy is made first and embedded in one call (per
    # view) below; embedded per edit, a call's overhead was most of the cost of its two copies (the same vectors)
    # the edits on a thread per core (Pillow lets go of Python's lock while it draws and filters; each edit draws
    # from its own seed, so the copies are the same in any order)
    tasks = [(n, j) for n in range(len(transforms)) for j in assigned[n] if originals[j] is not None]
    with ThreadPoolExecutor(usable_cores()) as pool:
        copies = dict(zip(tasks, pool.map(
            lambda t: transforms[t[0]](originals[t[1]], seed=seed * 100_003 + int(pick[t[1]])), tasks)))
    for n in range(len(transforms)):
        keep = [j for j in assigned[n] if copies.get((n, j)) is not None]
        if keep:
            made.append((n, keep, [copies[(n, j)] for j in keep]))
    # a mirrored query helps only where the edit turns or flips (on the other edits the scan's mirrored query scores
    # lower than the unmirrored one)
    turned = [m for m in made if mirrored is not None and transforms[m[0]].family == "geometric"]
    sizes = [len(m[1]) for m in made]
    embedded = encoder.encode_images([im for m in made for im in m[2]])
    # every copy searched in one call, and every mirrored copy in another: searched per edit, CIFAR-10's 50,000
    # training vectors were read 31 times (1.7 s of a 10 s fit)
    found = list(zip(*(_in_parts(x, sizes) for x in _few_knn(embedded, vectors, 20, pools)))) if made else []
    embedded = _in_parts(embedded, sizes)
    flipped = {}
    if turned:
        back = _few_knn(mirrored.encode_images([im for m in turned for im in m[2]]), vectors, 20, pools)
        flipped = dict(zip([m[0] for m in turned], zip(*(_in_parts(x, [len(m[1]) for m in turned]) for x in back))))
    for (n, keep, copies), q, (sim, idx) in zip(made, embedded, found):
        tf, edited = transforms[n], dict(zip(keep, copies))
        if n in flipped:
            sim, idx = search.merge_results([(sim, idx), flipped[n]], 20)
        for r, j in enumerate(keep):
            p = int(pick[j])
            own = float(max(q[r] @ vectors[p], sim[r][idx[r] == p].max() if (idx[r] == p).any() else -1.0))
            hardest = None  # the most similar other image that is not an in-collection twin of the original
            for s_, i in zip(sim[r], idx[r]):
                if i < 0 or i == p or own_sim[j, i] >= soft:
                    continue
                kind = "other label" if labels is not None and labels.iloc[i] != labels.iloc[p] else "look-alike"
                hardest = (float(s_), int(i), kind)
                break
            base = {"query": coll.at[p, "item_id"], "transform": tf.name, "family": tf.family,
                    "fitted": j % every == 0}
            if base["fitted"]:
                rows.append({**base, "train_item_id": coll.at[p, "item_id"], "label": 1, "similarity": own,
                             "is_copy": tf.family == "copy", "negative": ""})
                eval_imgs.append(edited[j]); train_idx.append(p)
            if hardest is not None:
                rows.append({**base, "train_item_id": coll.at[hardest[1], "item_id"], "label": 0,
                             "similarity": hardest[0], "is_copy": False, "negative": hardest[2]})
                eval_imgs.append(edited[j] if base["fitted"] else None); train_idx.append(hardest[1])
        if progress:
            progress("edit and search", n + 1, len(transforms))
    # the rows of the queries not fitted on keep their raw similarity only (`fitted` False): they set the candidate
    # threshold with the rest, and their evidence is not computed
    keep = [n for n, r in enumerate(rows) if r["fitted"]]
    raw_only = pd.DataFrame([r for r in rows if not r["fitted"]])
    rows, eval_imgs, train_idx = [rows[n] for n in keep], [eval_imgs[n] for n in keep], [train_idx[n] for n in keep]
    frame = pd.DataFrame(rows)
    uniq = sorted(set(train_idx))
    loaded = dict(zip(uniq, verify.image_inputs(ws, coll.iloc[uniq])))  # kept for the verification's evidence
    train_imgs = [loaded[i] for i in train_idx]
    evs = []
    step = 256
    for start in range(0, len(frame), step):
        told = None if progress is None else (
            lambda done, start=start: progress("verify fitting pairs", start + done, len(frame)))
        evs.append(verify.evidence(eval_imgs[start:start + step], train_imgs[start:start + step], progress=told))
    frame = pd.concat([frame, pd.concat(evs, ignore_index=True)], axis=1)
    second = SecondOpinion.for_workspace(ws, encoder.name)
    if second is not None:
        if progress:
            progress("second model", 0, 1)
        tv, _ = second.vectors(coll.iloc[uniq].reset_index(drop=True))
        row_of = {i: n for n, i in enumerate(uniq)}
        edits = {id(im): im for im in eval_imgs}  # one edited copy is paired with its original and its negative
        at_edit = {k: n for n, k in enumerate(edits)}
        ev_vecs = second.encoder().encode_images(list(edits.values()))
        at = np.array([at_edit[id(im)] for im in eval_imgs])
        frame[SECOND_FEATURE] = (ev_vecs[at] * tv[[row_of[i] for i in train_idx]]).sum(1)
        if progress:
            progress("second model", 1, 1)
    # a look-alike that aligns nearly pixel for pixel is more likely an in-collection twin than a negative
    twin = (frame["negative"] == "look-alike") & _pixels_agree(frame, ws)
    frame = pd.concat([frame[~twin], raw_only], ignore_index=True)
    if lookalikes:
        alike = lookalike_pairs(ws, coll, vectors, n_images=lookalikes, seed=seed, second=second, progress=progress)
        frame = pd.concat([frame, alike], ignore_index=True)
    return frame


def _in_parts(rows: np.ndarray | None, sizes: list[int]) -> list[np.ndarray]:
    """`rows` cut into consecutive parts of these sizes."""
    return np.split(rows, np.cumsum(sizes)[:-1]) if sizes else []


def _few_knn(queries: np.ndarray, vectors: np.ndarray, k: int, pools: ThreadpoolController):
    """`search.knn` of the suite's copies on one thread: with faiss's OpenMP threads a search of one edit's copies
    cost 28 ms of CPU on 2 busy cores, against 0.2 ms on one (the same results)."""
    with pools.limit(limits=1):
        return search.knn(queries, vectors, k)


def pixel_rule(ws) -> list[float] | None:
    """The pixel rule a model of this workspace floors at hard (`decided_by_pixels`): on photos aligned at the canvas
    and agreeing at four times it; none on small images."""
    return None if small_images(ws) else [verify.TWIN_NCC, verify.TWIN_SSIM, verify.TWIN_CROP_AGREES]


def _pixels_agree(ev: pd.DataFrame, ws) -> pd.Series:
    """Pairs whose pixels say "one photograph" (verified copies): aligned nearly pixel for pixel (on photos by the
    pixel rule's three parts), or many local features matched under one geometric map, or found as a crop."""
    aligned = decided_by_pixels(ev, pixel_rule(ws) or (verify.TWIN_NCC, verify.TWIN_SSIM))
    return pd.Series(aligned | decided_by_matches(ev) | decided_by_crop(ev), index=ev.index)


def lookalike_pairs(ws, coll: pd.DataFrame, vectors: np.ndarray, *, n_images: int, seed: int = 0,
                    second: "SecondOpinion | None" = None, progress=None) -> pd.DataFrame:
    """Negatives from the collection itself: for n_images training images drawn at random, their LOOKALIKE_RANK
    nearest other training images, which are real look-alikes of the user's data (another label's nearest, and
    the same label's nearest where the pixels do not say they are one photograph: verified copies and twins are
    left out). Their evidence goes through the evidence store (computed once, cached), the second model's vectors
    through its cache."""
    rng = np.random.default_rng(seed + 1)
    pick = np.sort(rng.choice(len(coll), size=min(n_images, len(coll)), replace=False))
    sim = vectors[pick] @ vectors.T
    sim[np.arange(len(pick)), pick] = -np.inf
    rank = min(LOOKALIKE_RANK, len(coll) - 1)
    nearest = np.argsort(-sim, axis=1)[:, :rank]
    labels = coll["label"].astype("string") if "label" in coll and coll["label"].notna().any() else None
    rows = []
    seen = set()
    for r, p in enumerate(pick):
        for i in nearest[r]:
            key = tuple(sorted((int(p), int(i))))
            if key in seen:  # a pair drawn from both ends once
                continue
            seen.add(key)
            other = labels is not None and labels.iloc[int(i)] != labels.iloc[int(p)]
            rows.append({"query": coll.at[int(p), "item_id"], "transform": "", "family": "collection", "fitted": True,
                         "eval_item_id": coll.at[int(p), "item_id"], "train_item_id": coll.at[int(i), "item_id"],
                         "label": 0, "similarity": float(sim[r, i]), "is_copy": False,
                         "negative": "collection, other label" if other else "collection"})
    pairs = pd.DataFrame(rows)
    if pairs.empty:
        return pairs
    verify.compute_evidence(ws, pairs, progress=progress, stage="verify look-alike pairs (fitting set)")
    ev = verify.searched_evidence_for(ws, pairs[["eval_item_id", "train_item_id"]])
    pairs = pd.concat([pairs.reset_index(drop=True), ev.drop(columns=["eval_item_id", "train_item_id"])], axis=1)
    if second is not None:
        second.embed(pairs, progress=progress)
        pairs[SECOND_FEATURE] = second.similarity(pairs)
    twin = _pixels_agree(pairs, ws) & (pairs["negative"] == "collection")  # the same label's verified copies
    return pairs[~twin].drop(columns=["eval_item_id"]).reset_index(drop=True)


def decision_pairs(ws, pairs: pd.DataFrame | None = None, second: SecondOpinion | None = None) -> pd.DataFrame:
    """Curator-decided pairs with their raw similarity, evidence and label (leak = 1, not a leak = 0)."""
    from leakcore import review
    from leakcore.schema import Decision

    d = review.latest_decisions(ws)
    if d.empty:
        return pd.DataFrame()
    positive = {Decision.HARD.value, Decision.SOFT.value}  # same_source is a group link, not one photograph
    d = d[d["decision"].isin(positive | {Decision.NOT_LEAK.value})]
    pairs = leakage.load_pairs(ws, raw=True) if pairs is None else pairs
    p = pairs[["eval_item_id", "train_item_id", "similarity"]].drop_duplicates(["eval_item_id", "train_item_id"])
    d = d.merge(p, on=["eval_item_id", "train_item_id"], how="inner")
    if d.empty:
        return d
    verify.compute_evidence(ws, d)
    d = verify.searched_evidence_for(ws, d)  # a pair the scan aligned by its matches' map, searched as the fit's are
    if second is not None:
        second.embed(d)
        d[SECOND_FEATURE] = second.similarity(d)
    d["label"] = d["decision"].isin(positive).astype(int)
    return d


# ---- fitting ---------------------------------------------------------------------------------------------------
def fit(ws, *, encoder_name: str | None = None, queries: int | None = None, seed: int = 0, use_decisions: bool = True,
        progress: Callable[[str, int, int], None] | None = None, suite: pd.DataFrame | None = None,
        encoder=None) -> FusedModel:
    """Fit the fused score on the suite (reused when stored) plus enough curator decisions, or on the decisions
    alone once there are DECISIONS_ALONE; store it and its thresholds (the workspace's thresholds for "fused").
    `encoder`: the workspace's encoder already built (a scan's), else the suite builds one (about 2 s of CPU for
    an ONNX model)."""
    from leakcore.calibrate import ThresholdCalibrator, roc_auc

    encoder_name = encoder_name or ws.encoder
    suite_file, suite_meta = ws.paths.fused_file(encoder_name, "suite.parquet"), ws.paths.fused_file(encoder_name,
                                                                                                        "suite.json")
    second = SecondOpinion.for_workspace(ws, encoder_name)
    wanted = {"queries": queries, "seed": seed, "version": verify.VERSION, "fitting_set": FITTING_SET,
              "second": f"{second.name}@{SECOND_INPUT_SIZE}" if second else None,
              "photos": not small_images(ws)}  # the layout of the fitting set depends on it (`fitting_size`)
    if suite is None and suite_file.exists() and suite_meta.exists() and json.loads(suite_meta.read_text()) == wanted:
        suite = pd.read_parquet(suite_file)  # the suite is the slow part; decisions change, it does not
    if suite is None:
        suite = suite_pairs(ws, encoder=encoder, queries=queries, seed=seed, progress=progress)
        write_parquet(suite, suite_file)
        atomic_write_text(suite_meta, json.dumps(wanted))
    # every query's hardest negative sets the candidate threshold; the rows with evidence are the fitting set
    neg_raw = suite.loc[_clean(suite) & (suite["label"] == 0) & ~collection_rows(suite), "similarity"].to_numpy()
    suite = fitted_rows(suite)
    features = list(verify.FEATURES) + ([SECOND_FEATURE] if second and SECOND_FEATURE in suite else [])
    x = suite[features].to_numpy(np.float64)
    y = suite["label"].to_numpy(int)
    decided, alone = pd.DataFrame(), False
    if use_decisions:
        decided = decision_pairs(ws, second=second)
        counts = decided["label"].value_counts() if not decided.empty else pd.Series(dtype=int)
        if len(decided) >= MIN_DECISIONS and counts.get(0, 0) >= MIN_EACH and counts.get(1, 0) >= MIN_EACH:
            decided = decided.dropna(subset=features)
            xd, yd = decided[features].to_numpy(np.float64), decided["label"].to_numpy(int)
            alone = bool(len(decided) >= DECISIONS_ALONE and min(counts.get(0, 0), counts.get(1, 0)) >= MIN_ALONE)
            if alone:  # the real distribution, enough of it: the suite's easy negatives would only pull the fit away
                x, y = xd, yd
            else:  # repeated rows, not sample weights: the pipeline inside the calibration does not route weights
                x, y = np.vstack([x] + [xd] * DECISION_WEIGHT), np.concatenate([y] + [yd] * DECISION_WEIGHT)
        else:
            decided = pd.DataFrame()
    with threadpool_limits(1):  # small fits: BLAS threads on a busy machine made them 20x slower (3.3 s vs 0.14 s)
        model = FusedModel(encoder_name, features=tuple(features)).fit(x, y)
    fused = model.predict_proba(suite[features].to_numpy(np.float64))[:, 1]
    # the suite's thresholds on the negatives that are certainly negatives: another label where there are labels
    # (a look-alike may be an unrecognised twin; it teaches the model but does not set the false-positive rate)
    clean = _clean(suite)
    cal = ThresholdCalibrator(0.001).fit(fused[clean], suite["label"].to_numpy(bool)[clean],
                                         suite["is_copy"].to_numpy(bool)[clean])
    raw = ws.thresholds_or_none(encoder_name, score="similarity")  # the raw similarity's, whatever score is in force
    candidate = float(np.quantile(neg_raw, 1 - CANDIDATE_FPR)) if len(neg_raw) else 0.5
    if raw is not None:
        candidate = min(candidate, raw.soft)
    hard, soft, rule = float(cal.hard_), float(cal.soft_), "suite"
    collection = suite["family"] == "collection"
    lookalike_soft, matched_lookalikes, suite_held = None, None, None
    if not alone and int(collection.sum()) >= MIN_LOOKALIKES:
        # the collection's own look-alikes set soft: out of fold (every pair of one query image held out together),
        # where LOOKALIKE_PRECISION of the pairs above it are leaks with one candidate pair in 1 / LEAK_SHARE a leak
        held = suite_held = _suite_out_of_fold(suite, features, seed)
        # a look-alike the local matches (or a crop search) decide is flagged whatever soft is: it does not move soft
        # (it is counted)
        matched_lookalikes = collection.to_numpy() & (decided_by_matches(suite) | decided_by_crop(suite))
        real = ((suite["label"] == 1) | collection).to_numpy() & ~matched_lookalikes
        lookalike_soft = soft_from_lookalikes(held[real], suite.loc[real, "label"].to_numpy(int))
        floor = soft_floor(ws)
        if lookalike_soft is not None:
            soft = max(lookalike_soft, floor)
            rule = (f"look-alikes: >= {LOOKALIKE_PRECISION:.0%} of pairs above soft are leaks, out of fold, against "
                    f"{int(collection.sum())} pairs of the collection's own nearest neighbours (a leak taken as one "
                    f"candidate pair in {round(1 / LEAK_SHARE)}; soft at least {floor})")
        else:
            soft = max(soft, floor)
            rule = (f"look-alikes: no fused score has {LOOKALIKE_PRECISION:.0%} leaks above it among the collection's "
                    f"look-alikes; soft at the floor {floor} or the suite's, whichever is higher")
        hard = max(hard, soft)
    rule_text = f"decisions: >= {DECIDED_PRECISION:.0%} of the decided pairs above soft are leaks"
    if alone:
        # fitted on the decisions: judged on them out of fold, not on the scores they were fitted to
        with threadpool_limits(1):
            held = held_out_proba(x, y, stratified_folds(y, _folds(y)), _folds(y))
        chosen = soft_from_decisions(held, y)
        if chosen is not None:
            soft, rule = chosen, rule_text + " (out of fold; the model is fitted on the decisions alone)"
            # hard from the same decisions: the suite's hard, on a model that never saw the suite, fell below
            # soft on CIFAR-10 and left no soft band
            surest = soft_from_decisions(held, y, precision=DECIDED_HARD_PRECISION)
            hard = max(soft, surest if surest is not None else hard)
            rule += f"; hard where {DECIDED_HARD_PRECISION:.0%} are"
    elif not decided.empty:
        # the suite's negatives are other images edited the same way: on real data the look-alikes are many more,
        # and the curator's decisions are the only sample of them; soft moves up to where they say it should be,
        # judged out of fold too (every copy of a decided row held out with it)
        n_suite, n_decided = len(suite), len(decided)
        groups = np.concatenate([np.arange(n_suite)] + [n_suite + np.arange(n_decided)] * DECISION_WEIGHT)
        test = grouped_folds(y, groups, _folds(decided["label"].to_numpy(int)), seed)
        with threadpool_limits(1):
            held = held_out_proba(x, y, test, _folds(y))
        raised = soft_from_decisions(held[n_suite:n_suite + n_decided], decided["label"].to_numpy(int))
        if raised is not None and raised > soft:
            soft, rule = raised, rule_text + " (out of fold)"
            hard = max(hard, soft)
    pixels = pixel_rule(ws)
    crop = None if small_images(ws) else [TWIN_CROP_NCC, TWIN_CROP_DETAIL]
    # what the model says of the fitting pairs it was not fitted on: each query image's edits and negatives scored
    # by a model fitted without them (fitted on the decisions alone, the model never saw these pairs). In sample a
    # small fitting set is told apart perfectly (AUC 1.000 on hymenoptera), which says nothing
    oof = fused if alone else suite_held if suite_held is not None else _suite_out_of_fold(suite, features, seed)
    raw_hard = float(raw.hard) if raw is not None else None  # hard: the same picture by the raw similarity too
    floored = floor_matched(suite, oof, hard, MATCH_RULE, pixels, crop, soft=soft, raw_hard=raw_hard)
    per_family = (suite.assign(fused=floored)[clean].groupby(["family", "label"])["fused"]
                  .apply(lambda s: float((s >= soft).mean())).unstack("label"))
    positive = clean & (suite["label"] == 1).to_numpy()
    # the shares of edited copies caught at soft and hard by the score the pairs get (decided pairs floored at hard)
    soft_tpr = float((floored[positive] >= soft).mean()) if positive.any() else None
    hard_tpr = float((floored[positive] >= hard).mean()) if positive.any() else None
    meta = {
        # the training images edited (the look-alike pairs' images are not)
        "encoder": encoder_name, "version": verify.VERSION,
        "queries": int(suite.loc[~collection.to_numpy(), "query"].nunique()),
        "features": features, "second_encoder": second.name if SECOND_FEATURE in features else None,
        "second_input_size": SECOND_INPUT_SIZE if SECOND_FEATURE in features else None,
        "second_caches": [second.cache()] if SECOND_FEATURE in features else None,
        "candidate_rank": CANDIDATE_RANK, "verify_beyond_rank_above": raw.soft if raw is not None else None,
        "suite_pairs": int(len(suite)), "decisions_used": int(len(decided)), "fitted_on_decisions_alone": alone,
        "seed": seed, "auc": roc_auc(suite["label"].to_numpy()[clean], floored[clean]), "auc_in_sample": cal.auc_,
        "raw_auc": roc_auc(suite["label"], suite["similarity"]),
        "soft_tpr": soft_tpr, "hard_tpr": hard_tpr, "threshold_rule": rule,
        "suite_soft": float(cal.soft_), "suite_hard": float(cal.hard_), "lookalike_pairs": int(collection.sum()),
        "lookalike_soft": lookalike_soft, "leak_share": LEAK_SHARE,
        "decisive_matches": list(MATCH_RULE), "decisive_pixels": pixels, "decisive_crop": crop,
        "hard_needs_raw": raw_hard,
        "lookalikes_decided_by_matches": int(matched_lookalikes.sum()) if matched_lookalikes is not None else None,
        "flagged_by_family": {str(k): float(v) for k, v in per_family.get(1, pd.Series(dtype=float)).items()
                              if v == v},  # a family with no copies (the collection's look-alikes) has no rate
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    meta["key"] = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:16]
    fm = model.set_thresholds(hard, soft, candidate, meta)
    save(ws, fm)
    return fm


def soft_floor(ws) -> float:
    """The lowest soft the look-alike rule may set: even odds (SOFT_FLOOR_MATCHED) on photos, where local matches
    decide the strong edits on their own; SOFT_FLOOR where the images are too small for them (`small_images`)."""
    return SOFT_FLOOR if small_images(ws) else SOFT_FLOOR_MATCHED


def fitted_rows(suite: pd.DataFrame) -> pd.DataFrame:
    """The fitting set's rows with evidence (a query not fitted on keeps only its hardest negative's raw similarity,
    for the candidate threshold; `evidence_every`)."""
    if "fitted" not in suite:
        return suite
    return suite[suite["fitted"].fillna(True).astype(bool)].reset_index(drop=True)


def collection_rows(suite: pd.DataFrame) -> np.ndarray:
    """The fitting set's rows from the collection's own look-alikes (not the suite's edits)."""
    return (suite["family"] == "collection").to_numpy()


def _clean(suite: pd.DataFrame) -> np.ndarray:
    """Rows whose label is certain: the edited copies, and negatives with another label (where there are labels)
    or from the collection; every row where there are no labels."""
    neg = suite["negative"].astype(str)
    if not (neg == "other label").any():
        return np.ones(len(suite), bool)
    return ((suite["label"] == 1) | (neg == "other label") | neg.str.startswith("collection")).to_numpy()


def _suite_out_of_fold(suite: pd.DataFrame, features: list[str], seed: int) -> np.ndarray:
    """`_out_of_fold` over the fitting pairs, a query image's pairs held out together (0 for a row missing a
    feature)."""
    x = suite[features].to_numpy(np.float64)
    ok = ~np.isnan(x).any(axis=1)
    out = np.zeros(len(suite))
    if ok.any():
        out[ok] = _out_of_fold(x[ok], suite["label"].to_numpy(int)[ok], suite["query"].astype(str).to_numpy()[ok],
                               seed)
    return out


def _out_of_fold(x: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each row's fused score from a model fitted without its group (a query image's edits and negatives)."""
    with threadpool_limits(1):
        return held_out_proba(x, y, grouped_folds(y, groups, _folds(y), seed), _folds(y))


def soft_from_lookalikes(scores: np.ndarray, labels: np.ndarray, *, leak_share: float | None = None,
                         precision: float | None = None) -> float | None:
    """The lowest fused score at which at least `precision` of the pairs scoring that much or more are leaks, with
    the leaks (label 1) weighted to `leak_share` of all pairs and the look-alikes to the rest (the fitting set's
    own balance is arbitrary: so many edits per query, so many neighbours per image); None where no score gets
    there. Like `soft_from_decisions`, it ends on a leak and sits halfway to the next lower pair."""
    leak_share = LEAK_SHARE if leak_share is None else leak_share
    precision = LOOKALIKE_PRECISION if precision is None else precision
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    n_pos, n_neg = int(labels.sum()), int((labels == 0).sum())
    if n_pos < MIN_EACH or n_neg == 0:
        return None
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    w = np.where(y == 1, leak_share / n_pos, (1 - leak_share) / n_neg)
    above = np.cumsum(w * y) / np.cumsum(w)
    ok = np.flatnonzero((above >= precision) & (np.cumsum(y) >= MIN_EACH) & (y == 1))
    if not len(ok):
        return None
    last = ok[-1]
    return float(s[last] if last + 1 == len(s) else (s[last] + s[last + 1]) / 2)


def soft_from_decisions(scores: np.ndarray, labels: np.ndarray, precision: float = DECIDED_PRECISION) -> float | None:
    """The lowest fused score at which at least `precision` of the decided pairs scoring that much or more are
    leaks (and at least MIN_EACH of them are), or None when no score gets there. (Hard, fitted on the decisions
    alone, is chosen by the same rule at DECIDED_HARD_PRECISION.)"""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    above = np.cumsum(y) / np.arange(1, len(y) + 1)  # precision of the top i + 1
    ok = np.flatnonzero((above >= precision) & (np.cumsum(y) >= MIN_EACH) & (y == 1))  # end on a leak
    if not len(ok):
        return None
    last = ok[-1]
    # between two scores: halfway to the next lower decided pair, so that the pair at `last` stays above
    return float(s[last] if last + 1 == len(s) else (s[last] + s[last + 1]) / 2)


def save(ws, fm: FusedModel) -> None:
    ws.paths.fused(fm.encoder).mkdir(parents=True, exist_ok=True)
    atomic_write_text(ws.paths.fused_file(fm.encoder, "model.json"), json.dumps(plain(fm.to_stored()), indent=2,
                                                                                allow_nan=False))
    ws.set_thresholds(fm.hard_, max(fm.soft_, 1e-6), encoder=fm.encoder, score="fused", source="fused model")


def fitting_scores(ws, encoder: str | None = None) -> pd.DataFrame | None:
    """The fitting set's pairs the thresholds were chosen on (edited copies and clean negatives), each with its
    fused score and raw similarity: what the Thresholds page draws the fused ROC from (None without a model)."""
    encoder = encoder or ws.encoder
    fm = load(ws, encoder)
    suite_file = ws.paths.fused_file(encoder, "suite.parquet")
    if fm is None or not suite_file.exists():
        return None
    suite = fitted_rows(pd.read_parquet(suite_file))
    scores = held_out_scores(fm, suite)
    clean = _clean(suite)
    suite = suite[clean].reset_index(drop=True)
    return pd.DataFrame({"fused": scores[clean], "similarity": suite["similarity"], "label": suite["label"] == 1,
                         "is_copy": suite["is_copy"].astype(bool), "family": suite["family"]})


def held_out_scores(fm: FusedModel, suite: pd.DataFrame) -> np.ndarray:
    """The fused score of each fitting pair from a model fitted without its query image's pairs (as `fit` judges
    them; the model itself where it was fitted on the decisions alone and never saw the suite), floored as the
    model floors decided pairs."""
    if fm.meta_.get("fitted_on_decisions_alone"):
        return fm.predict(suite)
    return fm.floor(suite, _suite_out_of_fold(suite, list(fm.features), int(fm.meta_.get("seed", 0))))


def rescued(ws, table: pd.DataFrame, fm: FusedModel) -> np.ndarray:
    """Per row of one neighbour table: whether it is an evaluation image's nearest pair under the candidate threshold
    whose two images' canvases agree as one photograph in one framing (RESCUE_NCC): a copy the embedding ranks first
    but scores low (heavy recompression) is checked on its pixels too. On small images (`small_images`) none: their
    search and second model stand in."""
    out = np.zeros(len(table), bool)
    if table.empty or small_images(ws):
        return out
    t = table.reset_index(drop=True)
    nearest = t.sort_values("similarity", ascending=False, kind="stable").drop_duplicates("eval_item_id")
    nearest = nearest[nearest["similarity"].to_numpy(float) < fm.candidate_]
    if nearest.empty:
        return out
    items = ws.items().drop_duplicates("item_id").set_index("item_id")
    ids = [i for i in pd.unique(pd.concat([nearest["eval_item_id"], nearest["train_item_id"]])) if i in items.index]
    # each image's canvas (8 KB) kept by content for the workspace's next tables (an evaluation split against several
    # training sources asks for its images again), the most recent INPUTS_KEPT; an item without a real content hash
    # (a synthetic table's) is not kept
    sha = {i: h for i, h in items["sha256"].items() if isinstance(h, str) and len(h) == 64}
    kept = ws.cache("rescue canvases", ws.stamp("items"), lambda: verify._Recent(verify.INPUTS_KEPT))
    here = {}
    new = []
    for i in ids:
        if i in sha and sha[i] in kept:
            here[i] = kept[sha[i]]
        else:
            new.append(i)
    for i, image in zip(new, verify.load_images(items.loc[new].reset_index(), ws.sources, side=RESCUE_SIDE, gray=True)):
        here[i] = None if image is None else verify.canvas(image)
        if i in sha:
            kept[sha[i]] = here[i]
    for row, e, tr in zip(nearest.index, nearest["eval_item_id"], nearest["train_item_id"]):
        a, b = here.get(e), here.get(tr)
        out[row] = a is not None and b is not None and verify.canvas_agreement(a, b) >= RESCUE_NCC
    return out


def rescue_current(path, fm: FusedModel) -> bool:
    """Whether the neighbour table at `path` holds its `rescued` column for this model (`rescue_table`)."""
    try:
        return json.loads(path.with_suffix(".json").read_text()).get("rescued_for") == fm.meta_.get("key")
    except (OSError, ValueError):
        return False


def rescue_table(ws, path, fm: FusedModel) -> pd.DataFrame:
    """The neighbour table at `path` with its `rescued` column (`rescued`; none in an evaluation split's table against
    itself) for this model: computed once per model and stored in the table (its sidecar names the model; the table
    first, so an interrupted write is done again)."""
    table = pd.read_parquet(path)
    if "rescued" in table.columns and rescue_current(path, fm):
        return table
    meta = json.loads(path.with_suffix(".json").read_text())
    # across splits only: a copy under another split is the leak; an evaluation split's search against itself would
    # cost as much again (on hymenoptera 0.1-0.2 s more of a 7.6 s scan) for duplicates inside it
    within = meta.get("eval_split") == meta.get("train_split")
    table = table.assign(rescued=np.zeros(len(table), bool) if within else rescued(ws, table, fm))
    write_parquet(table, path)
    atomic_write_text(path.with_suffix(".json"), json.dumps({**meta, "rescued_for": fm.meta_.get("key")}))
    return table


def candidates(pairs: pd.DataFrame, fm: FusedModel) -> pd.DataFrame:
    """The stored pairs the verification stage checks: raw similarity at or above the candidate threshold, among
    each eval image's CANDIDATE_RANK nearest or at least the raw soft threshold of the fit (an image with many
    copies keeps all of them; every rank when the fit had no raw thresholds), and the pairs `rescued` below it. A
    model fitted before the rank limit checks every rank. A pair within a split found from both ends is listed
    once."""
    keep = pairs["similarity"] >= fm.candidate_
    rank, beyond = fm.meta_.get("candidate_rank"), fm.meta_.get("verify_beyond_rank_above")
    if rank is not None and "rank" in pairs:
        keep &= (pairs["rank"] <= rank) | (pairs["similarity"] >= (beyond if beyond is not None else fm.candidate_))
    keep |= was_rescued(pairs)
    out = pairs[keep]
    # a pair within one split found from both ends (b among a's nearest, a among b's) is verified once, from the
    # end with the lower item id; `verify.evidence_for` gives the other direction that evidence (on hymenoptera
    # 68 of the 74 candidate pairs within the evaluation split were such halves)
    return out[leakage.one_way(out)]
