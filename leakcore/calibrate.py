"""Threshold calibration as in the paper: non-semantic edits of real images, a robustness table, ROC curves,
and hard/soft thresholds chosen on them (`ThresholdCalibrator`), plus a second ROC from curator decisions.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter, ImageOps

from leakcore import catalog, images, search
from leakcore.embed import embed_items
from leakcore.encoders import Encoder, create_encoder
from leakcore.errors import CalibrationStopped, InvalidInput
from leakcore.io import atomic_write_text, write_parquet
from leakcore.schema import Decision, SplitId, split_items
from leakcore.scores import in_force

log = logging.getLogger(__name__)

REFERENCE_SIDE = 500  # crop sizes are for ~500 px photos (the paper's); smaller images get proportionally less


# ---- the transformation suite -------------------------------------------------------------------------
@dataclass(frozen=True)
class Transform:
    """One named, documented non-semantic edit. `fn(image, rng)` must be deterministic given the rng."""

    name: str
    family: str
    description: str
    fn: Callable[[Image.Image, np.random.Generator], Image.Image]

    def __call__(self, image: Image.Image, seed: int = 0) -> Image.Image:
        return self.fn(image.convert("RGB"), np.random.default_rng(seed)).convert("RGB")


def _crop(pixels: int):
    def fn(img: Image.Image, rng) -> Image.Image:
        side = min(img.size)
        n = max(1, round(pixels * min(1.0, side / REFERENCE_SIDE)))
        n = min(n, (side - 8) // 2) if side > 16 else 0
        return img.crop((n, n, img.width - n, img.height - n))

    return fn


def _downsample(target: int):
    def fn(img: Image.Image, rng) -> Image.Image:
        scale = target / max(img.size)
        if scale >= 1:
            return img
        return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BILINEAR)

    return fn


def _noise(img: Image.Image, rng) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0.0, 12.0, size=(img.height, img.width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _overlay(rgb):
    def fn(img: Image.Image, rng) -> Image.Image:
        return Image.blend(img, Image.new("RGB", img.size, rgb), 0.3)

    return fn


def _jpeg(quality: int):
    def fn(img: Image.Image, rng) -> Image.Image:
        import io

        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")

    return fn


def transformation_suite() -> list[Transform]:
    """The paper's four families (geometric, cropping, pixelization, colour) plus identity and JPEG copies."""
    t = Transform
    return [
        t("identity", "copy", "the image as it is", lambda im, r: im),
        t("jpeg_q75", "copy", "JPEG re-encode at quality 75", _jpeg(75)),
        t("jpeg_q30", "copy", "JPEG re-encode at quality 30", _jpeg(30)),
        t("hflip", "geometric", "horizontal flip", lambda im, r: ImageOps.mirror(im)),
        t("vflip", "geometric", "vertical flip", lambda im, r: ImageOps.flip(im)),
        t("rot90", "geometric", "rotation by 90 degrees", lambda im, r: im.transpose(Image.Transpose.ROTATE_90)),
        t("rot180", "geometric", "rotation by 180 degrees", lambda im, r: im.transpose(Image.Transpose.ROTATE_180)),
        t("rot270", "geometric", "rotation by 270 degrees", lambda im, r: im.transpose(Image.Transpose.ROTATE_270)),
        t("crop20", "cropping", f"remove 20 px from each edge (scaled for images under {REFERENCE_SIDE} px)", _crop(20)),
        t("crop50", "cropping", f"remove 50 px from each edge (scaled for images under {REFERENCE_SIDE} px)", _crop(50)),
        t("crop100", "cropping", f"remove 100 px from each edge (scaled for images under {REFERENCE_SIDE} px)", _crop(100)),
        t("blur", "pixelization", "Gaussian blur, radius 2", lambda im, r: im.filter(ImageFilter.GaussianBlur(2))),
        t("noise", "pixelization", "added Gaussian noise, sigma 12 grey levels", _noise),
        t("down128", "pixelization", "downsample so the longer side is 128 px", _downsample(128)),
        t("down256", "pixelization", "downsample so the longer side is 256 px", _downsample(256)),
        t("greyscale", "colour", "greyscale", lambda im, r: ImageOps.grayscale(im)),
        t("invert", "colour", "colour inversion", lambda im, r: ImageOps.invert(im)),
        t("red", "colour", "red overlay at 30%", _overlay((255, 0, 0))),
        t("green", "colour", "green overlay at 30%", _overlay((0, 255, 0))),
        t("blue", "colour", "blue overlay at 30%", _overlay((0, 0, 255))),
    ]


COPY_TRANSFORMS = ("identity", "jpeg_q75", "jpeg_q30")


def _translate(fraction: float):
    """Shift the content by `fraction` of the size (right and down), the uncovered edge repeating its border
    row and column, as a copy re-framed by a few pixels looks."""
    def fn(img: Image.Image, rng) -> Image.Image:
        arr = np.asarray(img)
        dy, dx = max(1, round(fraction * img.height)), max(1, round(fraction * img.width))
        arr = np.pad(arr, ((dy, 0), (dx, 0), (0, 0)), mode="edge")[: img.height, : img.width]
        return Image.fromarray(arr)

    return fn


def _recrop(keep: float):
    """Crop a window of `keep` of each side at a random place and scale it back to the original size."""
    def fn(img: Image.Image, rng) -> Image.Image:
        w, h = max(1, round(img.width * keep)), max(1, round(img.height * keep))
        x, y = int(rng.integers(0, img.width - w + 1)), int(rng.integers(0, img.height - h + 1))
        return img.crop((x, y, x + w, y + h)).resize(img.size, Image.Resampling.BICUBIC)

    return fn


def _text(img: Image.Image, rng) -> Image.Image:
    """A caption in white with a dark outline across the lower part of the image."""
    from PIL import ImageDraw, ImageFont

    out = img.copy()
    size = max(6, img.height // 7)
    font = ImageFont.load_default(size=size)
    words = "".join(rng.choice(list("ABCDEFGHKLMNPRSTUVWXYZ0123456789"), size=10))
    ImageDraw.Draw(out).text((img.width // 20, img.height - 2 * size), words, fill="white", font=font,
                             stroke_width=max(1, size // 8), stroke_fill="black")
    return out


def _logo(img: Image.Image, rng) -> Image.Image:
    """A semi-opaque logo (a ring and a bar) in a random corner, a fifth of the shorter side."""
    from PIL import ImageDraw

    side = max(6, min(img.size) // 5)
    mark = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    d = ImageDraw.Draw(mark)
    d.ellipse((0, 0, side - 1, side - 1), outline=(255, 255, 255, 200), width=max(1, side // 6))
    d.rectangle((side // 4, side // 2 - side // 10, 3 * side // 4, side // 2 + side // 10), fill=(255, 40, 40, 200))
    corner = int(rng.integers(4))
    x = 2 if corner % 2 == 0 else img.width - side - 2
    y = 2 if corner < 2 else img.height - side - 2
    out = img.convert("RGBA")
    out.alpha_composite(mark, (max(0, x), max(0, y)))
    return out.convert("RGB")


def extended_suite() -> list[Transform]:
    """The paper's suite plus the edits it lacks, which copies on the web carry: translations, re-crops with
    re-scaling, text and logo overlays, and re-compression at low quality (the verification stage's training
    and measurement set)."""
    t = Transform
    return transformation_suite() + [
        t("jpeg_q10", "compression", "JPEG re-encode at quality 10", _jpeg(10)),
        t("shift8", "translation", "content shifted by 8% right and down, border repeated", _translate(0.08)),
        t("shift15", "translation", "content shifted by 15% right and down, border repeated", _translate(0.15)),
        t("recrop85", "recrop", "85% window at a random place, scaled back to full size", _recrop(0.85)),
        t("recrop70", "recrop", "70% window at a random place, scaled back to full size", _recrop(0.70)),
        t("text", "overlay", "a ten-character caption across the lower part", _text),
        t("logo", "overlay", "a semi-opaque logo in a corner, a fifth of the shorter side", _logo),
    ]


# ---- the estimator ------------------------------------------------------------------------------------
class ThresholdCalibrator:
    """Choose hard and soft thresholds from scored pairs (scikit-learn style: learned values end in `_`).

    hard_: the lowest threshold that still catches every exact or re-encoded copy (`is_copy`) while no
           negative reaches it; if some negative does, just above the strongest negative (and
           `hard_missed_copies_` says how many copies fall below).
    soft_: the lowest threshold whose false-positive rate over all negatives is at most `target_fpr`.
    """

    def __init__(self, target_fpr: float = 0.001):
        self.target_fpr = target_fpr

    def fit(self, scores, labels, is_copy=None) -> "ThresholdCalibrator":
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels, dtype=bool)
        if not 0 < self.target_fpr < 1:
            raise InvalidInput(f"target_fpr must be in (0, 1), got {self.target_fpr}")
        if labels.all() or not labels.any():
            raise InvalidInput("calibration needs both positive and negative scores")
        is_copy = labels if is_copy is None else (np.asarray(is_copy, dtype=bool) & labels)
        neg = np.sort(scores[~labels])
        max_neg = neg[-1]
        copies = scores[is_copy]
        min_copy = copies.min() if copies.size else max_neg
        above = np.nextafter(max_neg, np.inf)
        self.hard_ = float(min_copy if min_copy > max_neg else above)
        self.hard_missed_copies_ = int((copies < self.hard_).sum())
        # lowest t with mean(neg >= t) <= target: t just above the negative at rank ceil(n * (1 - target)).
        allowed = int(np.floor(self.target_fpr * neg.size))
        self.soft_ = float(np.nextafter(neg[neg.size - allowed - 1], np.inf))
        self.soft_ = min(self.soft_, self.hard_)
        fpr, tpr, thr = roc(labels, scores)
        self.roc_ = pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr})
        self.auc_ = float(np.trapezoid(tpr, fpr))
        self.soft_tpr_ = float((scores[labels] >= self.soft_).mean())
        self.hard_tpr_ = float((scores[labels] >= self.hard_).mean())
        return self


def roc(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, highest first, from (0, 0) at an infinite threshold: scikit-
    learn's `roc_curve(..., drop_intermediate=False)`, in numpy (the verification's fit runs in a scan, where
    importing scikit-learn cost 0.65-1.0 s)."""
    labels, scores = np.asarray(labels, bool), np.asarray(scores, float)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last row of each distinct score
    tps = np.cumsum(y)[last]
    fps = last + 1 - tps
    tpr = np.r_[0.0, tps / max(1, int(labels.sum()))]
    fpr = np.r_[0.0, fps / max(1, int((~labels).sum()))]
    return fpr, tpr, np.r_[np.inf, s[last]]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The area under `roc` (ties counted half, as scikit-learn's `roc_auc_score`)."""
    fpr, tpr, _ = roc(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def roc_points(scores, labels) -> pd.DataFrame:
    """ROC curve points (fpr, tpr, threshold) for plotting."""
    fpr, tpr, thr = roc(np.asarray(labels, bool), np.asarray(scores, float))
    return pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": thr})


# ---- the protocol ------------------------------------------------------------------------------------
@dataclass
class CalibrationResult:
    encoder: str
    collection: str
    scores: pd.DataFrame  # one row per (query, transform): positive, hardest negative, hit
    robustness: pd.DataFrame  # top-1 accuracy per transform and family
    auc: pd.DataFrame  # AUC per family and overall
    hard: float
    soft: float
    settings: dict = field(default_factory=dict)


def calibrate(
    ws,
    collection: str,
    *,
    encoder_name: str | None = None,
    queries: int = 1000,
    target_fpr: float = 0.001,
    seed: int = 0,
    transforms: list[Transform] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    encoder: Encoder | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> CalibrationResult:
    """Run the robustness protocol on `collection` ("dataset/split") and choose thresholds; store the results.

    The hardest negative of a query is the most similar other image of the collection, except the query's own
    near-duplicates there (most photo collections hold some): they would be "negatives" that are the same
    photograph, and push the thresholds up. `should_stop()` is asked between steps; a stopped run stores nothing
    and raises CalibrationStopped."""
    encoder_name = encoder_name or ws.encoder
    if encoder is None:
        opts = ws.encoder_options if encoder_name == ws.encoder else {}
        encoder = create_encoder(encoder_name, **opts)
    coll = split_items(ws.items(), collection)
    collection = str(SplitId.parse(collection))
    vectors, have = embed_items(ws, coll, encoder, progress=(lambda d, t: progress("embed collection", d, t)) if progress else None)
    coll, vectors = coll[have].reset_index(drop=True), vectors[have]
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(coll), size=min(queries, len(coll)), replace=False))
    transforms = transforms or transformation_suite()
    originals = []
    for pos in pick:
        row = coll.iloc[pos]
        originals.append(images.decode(catalog.read_bytes(row["uri"], int(row["row"]), reader=ws.sources)).image)
    twins = collection_twins(coll, vectors, pick, originals, should_stop=should_stop,
                             progress=(lambda d, t: progress("find the collection's own near-duplicates", d, t))
                             if progress else None)
    excluded = [np.array(sorted(twins.get(int(p), ())), dtype=np.int64) for p in pick]
    k = 2 + max((len(e) for e in excluded), default=0)
    rows = []
    for n, tf in enumerate(transforms):
        if should_stop is not None and should_stop():
            raise CalibrationStopped("the calibration was stopped; nothing was stored")
        edited = [tf(img, seed=seed * 100_003 + int(p)) for img, p in zip(originals, pick)]
        q = encoder.encode_images(edited)
        sim, idx = search.knn(q, vectors, min(k, len(vectors)))
        own = np.einsum("ij,ij->i", q, vectors[pick])
        hardest = np.full(len(pick), -1.0)
        for j, p in enumerate(pick):  # the best neighbour that is neither the query nor one of its twins
            ok = (idx[j] != p) & ~np.isin(idx[j], excluded[j]) & (idx[j] >= 0)
            if ok.any():
                hardest[j] = sim[j][ok][0]
        for j, p in enumerate(pick):
            rows.append({"query": coll.iloc[p]["item_id"], "transform": tf.name, "family": tf.family,
                         "positive": float(own[j]), "hardest_negative": float(hardest[j]), "hit": bool(idx[j, 0] == p)})
        if progress:
            progress("transforms", n + 1, len(transforms))
    scores = pd.DataFrame(rows)
    result = _summarise(scores, encoder_name, collection, target_fpr)
    result.settings = {"encoder": encoder_name, "fingerprint": encoder.fingerprint, "collection": collection,
                       "queries": int(len(pick)), "collection_size": int(len(coll)), "target_fpr": target_fpr,
                       "seed": seed, "transforms": [t.name for t in transforms],
                       "negatives": "the most similar other image of the collection, leaving out the query's own "
                                    "near-duplicates in it (the same photograph on its pixels)",
                       "twins_excluded": int(sum(len(e) for e in excluded)),
                       "queries_with_twins": int(sum(len(e) > 0 for e in excluded)),
                       "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    save(ws, result)
    return result


TWIN_CANDIDATES = 4  # neighbours of each query's original checked on their pixels for being its twin
TWIN_QUANTILE = 0.9  # ...when their similarity is in the top 10% of the queries' nearest-neighbour similarities


def collection_twins(coll: pd.DataFrame, vectors: np.ndarray, pick: np.ndarray, originals: list,
                     *, progress=None, should_stop=None) -> dict[int, set[int]]:
    """{query row: rows of the collection that are the same photograph}: each query's nearest neighbours whose
    similarity is in the top tail are checked on their pixels (the verification stage's alignment, NCC and
    SSIM); those that align as the same photograph are twins, not negatives."""
    from leakcore import verify

    if len(vectors) < 3 or len(pick) == 0:
        return {}
    sim, idx = search.knn(vectors[pick], vectors, min(TWIN_CANDIDATES + 1, len(vectors)), self_index=pick)
    cut = float(np.quantile(sim[:, 0], TWIN_QUANTILE))
    cand = [(j, int(i)) for j in range(len(pick)) for s_, i in zip(sim[j], idx[j]) if i >= 0 and s_ >= cut]
    twins: dict[int, set[int]] = {}
    for start in range(0, len(cand), 256):
        if should_stop is not None and should_stop():
            raise CalibrationStopped("the calibration was stopped; nothing was stored")
        part = cand[start:start + 256]
        others = verify.load_images(coll.iloc[[i for _, i in part]])
        ev = verify.evidence([originals[j] for j, _ in part], others)
        for (j, i), ncc, ssim in zip(part, ev["ncc"], ev["ssim"]):
            if ncc >= verify.TWIN_NCC and ssim >= verify.TWIN_SSIM:
                twins.setdefault(int(pick[j]), set()).add(i)
        if progress:
            progress(min(start + 256, len(cand)), len(cand))
    return twins


def _summarise(scores: pd.DataFrame, encoder: str, collection: str, target_fpr: float) -> CalibrationResult:
    per_tf = scores.groupby(["family", "transform"], sort=False)["hit"].mean().rename("top1").reset_index()
    per_family = scores.groupby("family", sort=False)["hit"].mean().rename("top1").reset_index()
    per_family["transform"] = "(family)"
    robustness = pd.concat([per_tf, per_family], ignore_index=True)

    s, y, copy = pair_scores(scores)
    cal = ThresholdCalibrator(target_fpr).fit(s, y, copy)
    aucs = []
    for family, grp in scores.groupby("family", sort=False):
        fs, fy, _ = pair_scores(grp)
        aucs.append({"family": family, "auc": roc_auc(fy, fs)})
    aucs.append({"family": "overall", "auc": cal.auc_})
    return CalibrationResult(encoder, collection, scores, robustness, pd.DataFrame(aucs), cal.hard_, cal.soft_)


def pair_scores(scores: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(similarities, is_positive, is_copy) with one positive and one hardest negative per row."""
    s = np.concatenate([scores["positive"].to_numpy(), scores["hardest_negative"].to_numpy()])
    y = np.concatenate([np.ones(len(scores), bool), np.zeros(len(scores), bool)])
    copy = np.concatenate([scores["transform"].isin(COPY_TRANSFORMS).to_numpy(), np.zeros(len(scores), bool)])
    return s, y, copy


def save(ws, result: CalibrationResult) -> None:
    folder = ws.calibration_dir(result.encoder)
    write_parquet(result.scores, folder / "scores.parquet")
    write_parquet(result.robustness, folder / "robustness.parquet")
    atomic_write_text(folder / "thresholds.json", json.dumps({
        "hard": result.hard, "soft": result.soft, "auc": result.auc.to_dict("records"), "settings": result.settings,
    }, indent=2))


def load(ws, encoder: str | None = None) -> CalibrationResult | None:
    """The stored calibration of an encoder, or None."""
    encoder = encoder or ws.encoder
    folder = ws.calibration_dir(encoder)
    if not (folder / "thresholds.json").exists():
        return None
    meta = json.loads((folder / "thresholds.json").read_text())
    return CalibrationResult(encoder, meta["settings"].get("collection", ""), pd.read_parquet(folder / "scores.parquet"),
                             pd.read_parquet(folder / "robustness.parquet"), pd.DataFrame(meta["auc"]),
                             meta["hard"], meta["soft"], meta["settings"])


def apply(ws, result: CalibrationResult) -> None:
    """Make the calibrated thresholds the project's; every page and `leakcore report` use them at once."""
    s = result.settings
    ws.set_thresholds(result.hard, result.soft, encoder=result.encoder,
                      source=f"calibrated on {s.get('collection')} ({s.get('queries')} queries, target FPR {s.get('target_fpr')})")


MIN_DECISIONS_FOR_ROC = 20  # fewer decided pairs (or only one kind) make no useful curve


def decision_scores(pairs: pd.DataFrame, decisions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """The score in force (`scores.in_force`: the fused score where pairs are scored by it) and the label (confirmed
    leak = 1, rejected = 0) of decided pairs; None under 20 decisions."""
    d = decisions[decisions["decision"].isin([Decision.HARD, Decision.SOFT, Decision.NOT_LEAK])]
    sims = (pairs.assign(similarity=in_force(pairs)).groupby(["eval_item_id", "train_item_id"])["similarity"].max()
            .reset_index())
    m = d.merge(sims, on=["eval_item_id", "train_item_id"], how="inner")
    rejected = m["decision"].eq(Decision.NOT_LEAK)
    if len(m) < MIN_DECISIONS_FOR_ROC or rejected.all() or (~rejected).all():
        return None
    return m["similarity"].to_numpy(), (~rejected).to_numpy()


def robustness_table(result: CalibrationResult) -> pd.DataFrame:
    """The paper's table: top-1 accuracy per transform, with family rows."""
    return result.robustness.pivot_table(index=["family", "transform"], values="top1", sort=False).reset_index()


def curve(scores, labels, max_points: int = 2000) -> pd.DataFrame:
    """ROC points thinned to at most `max_points` for drawing (threshold-independent: compute once)."""
    roc = roc_points(scores, labels)
    if len(roc) > max_points:
        keep = np.unique(np.linspace(0, len(roc) - 1, max_points).astype(int))
        roc = roc.iloc[keep].reset_index(drop=True)
    return roc


class OperatingPoints:
    """Sorted positive and negative scores, so (fpr, tpr) at any threshold is two binary searches."""

    def __init__(self, scores, labels):
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels, dtype=bool)
        self.pos = np.sort(scores[labels])
        self.neg = np.sort(scores[~labels])

    def at(self, threshold: float) -> tuple[float, float]:
        """(false-positive rate, true-positive rate) of `similarity >= threshold`."""
        fpr = 1 - np.searchsorted(self.neg, threshold, side="left") / max(len(self.neg), 1)
        tpr = 1 - np.searchsorted(self.pos, threshold, side="left") / max(len(self.pos), 1)
        return float(fpr), float(tpr)

    def histogram(self, bins: int = 80) -> pd.DataFrame:
        """Counts of positive and negative similarities in shared bins (for the histogram, precomputed)."""
        lo = float(min(self.pos.min(initial=1), self.neg.min(initial=1)))
        edges = np.linspace(lo, 1.0, bins + 1)
        return pd.DataFrame({"left": edges[:-1], "right": edges[1:],
                             "positives": np.histogram(self.pos, edges)[0], "negatives": np.histogram(self.neg, edges)[0]})
