"""Target leakage: a shortcut audit that finds what gives the label away other than the content.

Two probes, each a cross-validated scikit-learn classifier whose balanced accuracy is set against chance with
a sequential permutation test that stops as soon as the verdict is settled (Besag and Clifford's rule: ten
shuffled labellings scored at least as well, so the p-value is clearly large; or, the other way, the one-sided 95%
Clopper-Pearson bound on the p-value fell below 0.05: 59 shuffled labellings in a row scored worse), each model
on one thread:
- the metadata probe reads only what carries no content: size, aspect, file size, format, colour mode, the JPEG
  quality estimated from the quantisation tables, EXIF camera / software / date, the uniformity and colour of
  the border, and tokens of the path other than the class folder. Permutation importance, summed per family of
  columns, says which carry the label.
- the region probe embeds each image with its centre masked (border only) and each corner alone with the
  workspace's encoder; a logistic-regression probe per region says how well that region alone predicts the
  label, against the whole image. A corner that predicts the label far better than the rest of the border is a
  marker. An occlusion map per class (the mean drop of the whole-image probe's class score when each cell of a
  grid is masked) shows where it sits.
Fit on the training split and scored on the evaluation split, a shortcut that transfers inflates the
benchmark; one that does not is only a quirk of the training data.
"""
from __future__ import annotations

import io
import logging
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image

from leakcore import catalog, images
from leakcore.errors import InvalidInput

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]

# libjpeg's standard luminance quantisation table (quality 50), for the quality estimate
_STD_LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                      14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                      92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)
REGIONS = ("whole", "border", "top-left", "top-right", "bottom-left", "bottom-right")


def jpeg_quality(img: Image.Image) -> float:
    """The IJG quality (1-100) whose scaled standard table is closest to the image's luminance table; NaN if none."""
    tables = getattr(img, "quantization", None)
    if not tables or 0 not in tables:
        return float("nan")
    q = np.asarray(tables[0], dtype=np.float64)[:64]
    best, best_err = float("nan"), np.inf
    for quality in range(1, 101):
        scale = 5000 / quality if quality < 50 else 200 - 2 * quality
        table = np.clip(np.floor((_STD_LUMA * scale + 50) / 100), 1, 255)
        err = np.abs(np.sort(table) - np.sort(q)).mean()  # sorted: robust to zig-zag vs natural order
        if err < best_err:
            best, best_err = float(quality), err
    return best


def _border_stats(rgb: Image.Image) -> dict:
    """How uniform the outer 4% frame is, and its colour (a burnt-in border or frame gives labels away)."""
    a = np.asarray(rgb.resize((64, 64)), dtype=np.float32)
    b = np.concatenate([a[:3].reshape(-1, 3), a[-3:].reshape(-1, 3), a[:, :3].reshape(-1, 3), a[:, -3:].reshape(-1, 3)])
    return {"border_std": float(b.std(axis=0).mean()), "border_r": float(b[:, 0].mean()),
            "border_g": float(b[:, 1].mean()), "border_b": float(b[:, 2].mean())}


def item_metadata(data: bytes | None) -> dict:
    """Content-free facts of one image file."""
    out = {"width": np.nan, "height": np.nan, "aspect": np.nan, "file_kb": np.nan, "format": "unreadable",
           "mode": "unreadable", "jpeg_quality": np.nan, "camera": "", "software": "", "has_date": 0.0,
           "border_std": np.nan, "border_r": np.nan, "border_g": np.nan, "border_b": np.nan}
    if not data:
        return out
    out["file_kb"] = len(data) / 1024
    try:
        with Image.open(io.BytesIO(data)) as img:
            out.update(width=float(img.width), height=float(img.height), aspect=img.width / max(img.height, 1),
                       format=img.format or "?", mode=img.mode, jpeg_quality=jpeg_quality(img))
            exif = img.getexif()
            out["software"] = str(exif.get(0x0131, "")).strip("\x00 ")
            out["has_date"] = float(bool(exif.get(0x0132)) or bool(exif.get_ifd(0x8769).get(0x9003)))
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return out
    facts = images.exif_facts(data)
    out["camera"] = facts["camera"] or ""
    decoded = images.decode(data, draft_size=(64, 64))
    if decoded.ok:
        out.update(_border_stats(decoded.image))
    return out


def metadata_table(items: pd.DataFrame, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row of content-free facts per item (row-aligned with `items`), plus the path tokens."""
    rows = [None] * len(items)
    for n, (pos, data) in enumerate(catalog.iter_item_bytes(items), 1):
        rows[pos] = item_metadata(data)
        if progress and (n % 200 == 0 or n == len(items)):
            progress(n, len(items))
    df = pd.DataFrame(rows, index=items.index)
    labels = items["label"].astype(str).str.lower()
    keys = items["key"].astype(str).str.lower()
    # the path inside the split, without the class folder itself and without tokens equal to a class name
    names = set(labels.unique())
    df["path_tokens"] = [" ".join(t for t in re.split(r"[^a-z0-9]+", k) if t and t not in names and t not in
                                  ("jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff"))
                         for k in keys]
    return df


def _encode(meta: pd.DataFrame, fit_on: pd.DataFrame | None = None):
    """Numeric matrix and the family of each column (one-hots and tokens grouped), via scikit-learn encoders."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.preprocessing import OneHotEncoder

    fit_on = meta if fit_on is None else fit_on
    numeric = ["width", "height", "aspect", "file_kb", "jpeg_quality", "has_date", "border_std", "border_r",
               "border_g", "border_b"]
    cats = ["format", "mode", "camera", "software"]
    onehot = OneHotEncoder(handle_unknown="ignore", min_frequency=2, sparse_output=False).fit(fit_on[cats].astype(str))
    X = [meta[numeric].to_numpy(dtype=np.float64), onehot.transform(meta[cats].astype(str))]
    families = list(numeric) + [name.split("_", 1)[0] for name in onehot.get_feature_names_out(cats)]
    try:
        vec = CountVectorizer(binary=True, min_df=2, max_features=50, token_pattern=r"[a-z0-9]+").fit(fit_on["path_tokens"])
        X.append(vec.transform(meta["path_tokens"]).toarray())
        families += [NAMES] * len(vec.vocabulary_)
    except ValueError:  # no token occurs twice
        pass
    return np.hstack(X), families


@dataclass
class ProbeResult:
    name: str
    balanced_accuracy: float
    chance: float
    p_value: float
    n: int
    classes: int
    importance: pd.DataFrame = field(default_factory=pd.DataFrame)  # family, importance (drop in balanced accuracy)
    transfer: dict = field(default_factory=dict)  # fit on train, score on eval
    permutations: int = 0


NAMES = "path tokens"  # the metadata family of the words in the file and folder names
ALPHA = 0.05  # the verdict's level: a shortcut needs p <= ALPHA (and a balanced accuracy 10 points above chance)


def _classifier(n: int):
    """A random forest (scikit-learn) with leaves small enough for a small dataset to split at all: about a quarter
    of the cost per fit of gradient-boosted trees at the same accuracy here, which matters a hundred fits over.
    25 trees: on a few hundred images a fit is scikit-learn's per-tree bookkeeping (cloning, target checks) far
    more than tree building, so the cost is the count of trees; 50 found the same planted shortcuts at twice it."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=25, min_samples_leaf=max(1, min(5, n // 40)), random_state=0)


def settled(reached: int, tried: int, alpha: float = ALPHA, enough: int = 10) -> bool:
    """Whether `tried` shuffled labellings, `reached` of which scored at least as well as the real one, settle the
    verdict p <= alpha either way: `enough` reached it (Besag and Clifford, 1991: p is then clearly large), or the
    one-sided 95% Clopper-Pearson upper bound on p is below alpha (the verdict would hardly change with more)."""
    from scipy.stats import beta

    if reached >= enough:
        return True
    return bool(beta.ppf(0.95, reached + 1, tried - reached) < alpha) if tried > reached else False


def permutation_test(model, X: np.ndarray, y: np.ndarray, cv, *, permutations: int, seed: int,
                     progress: Callable[[int, int], None] | None = None, enough: int = 10,
                     n_jobs: int | None = None) -> tuple[float, float, np.ndarray]:
    """(cross-validated balanced accuracy, p-value, the shuffled labellings' scores): scikit-learn's
    `permutation_test_score`, run a batch of labellings at a time (one per core, through joblib) so that it reports
    progress and stops early once the verdict is settled (`settled`): p = enough / tried when `enough` shuffled
    labellings reached the real score (Besag and Clifford, 1991), else (reached + 1) / (tried + 1). The labellings
    are drawn in one sequence and the verdict read in that order, so the result is the same on any number of cores
    (a batch's labellings past the stopping point are computed and dropped)."""
    from joblib import Parallel, delayed
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    def one(labels):
        return float(cross_val_score(clone(model), X, labels, cv=cv, scoring="balanced_accuracy").mean())

    n_jobs = _permutation_jobs() if n_jobs is None else max(1, n_jobs)
    score = one(y)
    rng = np.random.default_rng(seed)
    labellings = [rng.permutation(y) for _ in range(permutations)]
    scores: list[float] = []
    reached = 0
    with Parallel(n_jobs=n_jobs, prefer="processes") as parallel:
        for first in range(0, permutations, n_jobs):
            batch = labellings[first:first + n_jobs]
            for value in parallel(delayed(one)(b) for b in batch):  # one process: joblib runs it here
                scores.append(value)
                reached += value >= score
                if progress:
                    progress(len(scores), permutations)
                if reached >= enough:
                    return score, reached / len(scores), np.array(scores)
                if settled(reached, len(scores), enough=enough):
                    if progress:
                        progress(permutations, permutations)
                    return score, (reached + 1) / (len(scores) + 1), np.array(scores)
    return score, (reached + 1) / (len(scores) + 1), np.array(scores)


def _permutation_jobs() -> int:
    """Processes for the permutation test: the cores this process may use (at most 16; `verify._cores`)."""
    from leakcore.verify import _cores

    return min(16, _cores())


def metadata_probe(meta: pd.DataFrame, labels: pd.Series, *, permutations: int = 100, max_items: int = 2000,
                   seed: int = 0, progress: Callable[[int, int], None] | None = None) -> ProbeResult:
    """Cross-validated balanced accuracy of predicting the label from metadata alone, its permutation p-value,
    and permutation importance per family of features."""
    from sklearn.inspection import permutation_importance
    from sklearn.model_selection import StratifiedKFold, train_test_split

    y = labels.astype(str).to_numpy()
    if len(set(y)) < 2:
        raise InvalidInput("a shortcut audit needs at least two labels")
    rng = np.random.default_rng(seed)
    idx = np.arange(len(y)) if len(y) <= max_items else np.sort(rng.choice(len(y), max_items, replace=False))
    X, families = _encode(meta.iloc[idx])
    y = y[idx]
    cv = StratifiedKFold(n_splits=min(5, int(pd.Series(y).value_counts().min())), shuffle=True, random_state=seed)
    if len(y) * len(set(y)) > 20_000 and permutations > 30:  # many classes and rows: each fit costs seconds
        log.info("metadata probe: %d permutations instead of %d (p-values down to 0.03)", 30, permutations)
        permutations = 30
    score, p, perm_scores = permutation_test(_classifier(len(y)), X, y, cv, permutations=permutations, seed=seed,
                                             progress=progress)
    Xa, Xb, ya, yb = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    model = _classifier(len(ya)).fit(Xa, ya)
    imp = permutation_importance(model, Xb, yb, scoring="balanced_accuracy", n_repeats=5, random_state=seed)
    importance = (pd.DataFrame({"family": families, "importance": imp.importances_mean})
                  .groupby("family", sort=False)["importance"].sum().sort_values(ascending=False).reset_index())
    return ProbeResult("metadata", score, float(np.mean(perm_scores)), float(p), len(y), len(set(y)), importance,
                       permutations=len(perm_scores))


def metadata_transfer(meta_train: pd.DataFrame, y_train: pd.Series, meta_eval: pd.DataFrame, y_eval: pd.Series) -> dict:
    """Fit the metadata probe on the training split, score it on the evaluation split."""
    from sklearn.metrics import balanced_accuracy_score

    Xt, _ = _encode(meta_train)
    Xe, _ = _encode(meta_eval, fit_on=meta_train)
    model = _classifier(len(Xt)).fit(Xt, y_train.astype(str))
    pred = model.predict(Xe)
    chance = 1 / max(y_train.nunique(), 1)
    return {"balanced_accuracy": float(balanced_accuracy_score(y_eval.astype(str), pred)), "chance": chance,
            "n_eval": int(len(y_eval))}


# ---- the region probe ----------------------------------------------------------------------------------------------
def _corner_size(w: int, h: int, corner: float) -> tuple[int, int]:
    """The (width, height) of a corner region, and of the border's ring, of a w x h image."""
    return max(1, int(w * corner)), max(1, int(h * corner))


def region_images(img: Image.Image, corner: float = 0.25) -> dict[str, Image.Image]:
    """The whole image, its border only (centre masked with the image's mean colour), and each corner alone."""
    w, h = img.size
    cw, ch = _corner_size(w, h, corner)
    mean = tuple(int(v) for v in np.asarray(img, dtype=np.float32).reshape(-1, 3).mean(axis=0))
    border = img.copy()
    if w > 2 * cw and h > 2 * ch:  # an image of a pixel or two has no centre to mask
        border.paste(Image.new("RGB", (w - 2 * cw, h - 2 * ch), mean), (cw, ch))
    return {"whole": img, "border": border, "top-left": img.crop((0, 0, cw, ch)), "top-right": img.crop((w - cw, 0, w, ch)),
            "bottom-left": img.crop((0, h - ch, cw, h)), "bottom-right": img.crop((w - cw, h - ch, w, h))}


def occluded(img: Image.Image, grid: int = 4) -> list[Image.Image]:
    """The image with each cell of a grid x grid raster masked in turn (row-major)."""
    w, h = img.size
    mean = tuple(int(v) for v in np.asarray(img, dtype=np.float32).reshape(-1, 3).mean(axis=0))
    out = []
    for r in range(grid):
        for c in range(grid):
            x0, y0, x1, y1 = w * c // grid, h * r // grid, w * (c + 1) // grid, h * (r + 1) // grid
            m = img.copy()
            m.paste(Image.new("RGB", (max(1, x1 - x0), max(1, y1 - y0)), mean), (x0, y0))
            out.append(m)
    return out


def _load(items: pd.DataFrame) -> list[Image.Image | None]:
    out = [None] * len(items)
    for pos, data in catalog.iter_item_bytes(items):
        d = images.decode(data)
        out[pos] = d.image if d.ok else None
    return out


def _probe_scores(X: np.ndarray, y: np.ndarray, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    cv = StratifiedKFold(n_splits=min(5, int(pd.Series(y).value_counts().min())), shuffle=True, random_state=seed)
    return float(cross_val_score(LogisticRegression(max_iter=2000, C=1.0), X, y, cv=cv, scoring="balanced_accuracy").mean())


@dataclass
class RegionResult:
    regions: pd.DataFrame  # region, balanced_accuracy, chance
    occlusion: dict[str, np.ndarray]  # class -> grid x grid mean drop of its class score
    carriers: pd.DataFrame  # item_id, label, drop at the strongest cell of its class
    marker: str | None  # the region that predicts the label far better than the rest, if any
    transfer: dict = field(default_factory=dict)


REGION_MIN_SIDE = 96  # the smallest side a region is embedded at (a corner of a CIFAR-10 image is 8 px)


def region_encoders(encoder, sizes: list[tuple[int, int]], corner: float = 0.25) -> dict:
    """The encoder for each region of images of these (width, height) sizes: at the region's own pixel size (its
    median longer side, rounded up to a multiple of 32, at least `REGION_MIN_SIDE`, at most the encoder's input
    size) where the model takes any size, so that a corner of a 160 px image is embedded at 96 px, not blown up to
    288 (a ninth of the pixels; the probe compares embeddings of one region with each other only); else the encoder
    as it is. The whole image and the border have the image's size, a corner `corner` of each side
    (`region_images`)."""
    out = {}
    for r in REGIONS:
        sides = [max(size if r in ("whole", "border") else _corner_size(*size, corner)) for size in sizes] or [
            encoder.spec.input_size]
        side = int(min(encoder.spec.input_size, max(REGION_MIN_SIDE, 32 * int(np.ceil(np.median(sides) / 32)))))
        out[r] = encoder.at_size(side)
    return out


def region_probe(ws, items: pd.DataFrame, *, encoder=None, max_items: int = 1000, occlusion_items: int = 16,
                 occlusion_total: int = 64, grid: int = 4, seed: int = 0, eval_items: pd.DataFrame | None = None,
                 progress: Progress | None = None) -> RegionResult:
    """How well each region alone predicts the label (cross-validated linear probes on embeddings of the region),
    an occlusion map per class, and the images that carry the strongest cell most. Each map averages up to
    `occlusion_items` images of its class and about `occlusion_total` in all (at least 2 a class): an occluded image
    costs about 32 embeddings (every cell masked in turn, each changed region embedded again), so with many classes
    the maps would otherwise cost more than the probes: a 100-class dataset occluded 1,600 images."""
    from sklearn.linear_model import LogisticRegression

    from leakcore.encoders import create_encoder

    encoder = encoder or create_encoder(ws.encoder, **ws.encoder_options)
    rng = np.random.default_rng(seed)
    items = items[(items["status"] == "ok") & items["label"].notna()]
    if len(items) > max_items:
        items = items.iloc[np.sort(rng.choice(len(items), max_items, replace=False))]
    items = items.reset_index(drop=True)
    pics = _load(items)
    keep = [i for i, p in enumerate(pics) if p is not None]
    items, pics = items.iloc[keep].reset_index(drop=True), [pics[i] for i in keep]
    y = items["label"].astype(str).to_numpy()
    encoders = region_encoders(encoder, [p.size for p in pics])
    embedded: dict[str, np.ndarray] = {}
    for n, region in enumerate(REGIONS):
        embedded[region] = encoders[region].encode_images([region_images(p)[region] for p in pics])
        if progress:
            progress("regions", n + 1, len(REGIONS))
    chance = 1 / len(set(y))
    rows = [{"region": r, "balanced_accuracy": _probe_scores(embedded[r], y, seed), "chance": chance} for r in REGIONS]
    table = pd.DataFrame(rows)
    acc = table.set_index("region")["balanced_accuracy"]
    corners = acc[["top-left", "top-right", "bottom-left", "bottom-right"]]
    best = corners.idxmax()
    others = corners.drop(best).mean()
    marker = best if (corners[best] - others > 0.15 and corners[best] > chance + 0.2) else None
    # occlusion: one probe on all regions together (whole, border, corners: a marker is seen where it is large),
    # its class score with each cell of the grid masked in turn; only the regions a mask changes are re-embedded
    joint = np.hstack([embedded[r] for r in REGIONS])
    probe = LogisticRegression(max_iter=3000).fit(joint, y)
    classes = list(probe.classes_)
    occl: dict[str, np.ndarray] = {}
    carriers = []
    per_class = min(occlusion_items, max(2, occlusion_total // len(classes)))
    for ci, cls in enumerate(classes):
        members = np.flatnonzero(y == cls)
        if len(members) > per_class:
            members = np.sort(rng.choice(members, per_class, replace=False))
        base = probe.predict_proba(joint[members])[:, ci]
        drops = np.zeros((len(members), grid * grid))
        for j, m in enumerate(members):
            # every masked region of one image is embedded in one call per embedding size (a call per mask paid
            # the encoder's per-call overhead sixteen times per image)
            original = region_images(pics[m])
            rows, todo, where = [], [], []
            for masked in occluded(pics[m], grid):
                parts = region_images(masked)
                for r in REGIONS:
                    if not np.array_equal(np.asarray(parts[r]), np.asarray(original[r])):
                        todo.append(parts[r])
                        where.append((len(rows), r))
                rows.append({r: embedded[r][m] for r in REGIONS})
            for side in sorted({e.spec.input_size for e in encoders.values()}):
                at = [k for k, (_, r) in enumerate(where) if encoders[r].spec.input_size == side]
                if at:
                    same = encoders[where[at[0]][1]]
                    for k, v in zip(at, same.encode_images([todo[k] for k in at])):
                        rows[where[k][0]][where[k][1]] = v
            drops[j] = base[j] - probe.predict_proba(np.vstack([np.concatenate([v[r] for r in REGIONS])
                                                                 for v in rows]))[:, ci]
        occl[cls] = drops.mean(axis=0).reshape(grid, grid)
        cell = int(np.argmax(occl[cls]))
        for j, m in enumerate(members):
            carriers.append({"item_id": items["item_id"].iloc[m], "label": cls, "cell": cell, "drop": float(drops[j, cell])})
        if progress:
            progress("occlusion", ci + 1, len(classes))
    result = RegionResult(table, occl, pd.DataFrame(carriers).sort_values("drop", ascending=False).reset_index(drop=True),
                          marker)
    if eval_items is not None and marker is not None:
        ev = eval_items[(eval_items["status"] == "ok") & eval_items["label"].notna()].reset_index(drop=True)
        ev_pics = _load(ev)
        ok = [i for i, p in enumerate(ev_pics) if p is not None]
        from sklearn.metrics import balanced_accuracy_score

        model = LogisticRegression(max_iter=2000).fit(embedded[marker], y)
        ev_vecs = encoders[marker].encode_images([region_images(ev_pics[i])[marker] for i in ok])
        pred = model.predict(ev_vecs)
        result.transfer = {"region": marker, "balanced_accuracy": float(balanced_accuracy_score(
            ev["label"].astype(str).to_numpy()[ok], pred)), "chance": chance, "n_eval": len(ok)}
    return result


# ---- the audit ------------------------------------------------------------------------------------------------
@dataclass
class ShortcutAudit:
    dataset: str
    train_split: str
    eval_split: str | None
    metadata: ProbeResult
    regions: RegionResult | None
    examples: pd.DataFrame  # per class, the items most typical of the strongest metadata family
    seconds: dict = field(default_factory=dict)

    @property
    def verdict(self) -> list[str]:
        """What the audit found, in sentences."""
        out = []
        m = self.metadata
        if m.p_value <= ALPHA and m.balanced_accuracy > m.chance + 0.1:
            top = m.importance.iloc[0]["family"] if not m.importance.empty else "?"
            line = (f"metadata predicts the label: balanced accuracy {m.balanced_accuracy:.3f} vs chance {m.chance:.3f} "
                    f"(p = {m.p_value:.3f}); mostly through {top}")
            if top == NAMES:  # cats_and_dogs' cat.12.jpg: a new user read "a shortcut the benchmark rewards" as a risk
                line += (" (the file and folder names carry the label: a model that reads only the pixels cannot use "
                         "them; they matter where the names reach a model, as text or metadata)")
            if m.transfer:
                t = m.transfer
                line += ("; it transfers to the evaluation split " if t["balanced_accuracy"] > t["chance"] + 0.1 else
                         "; it does not transfer to the evaluation split ") + f"({t['balanced_accuracy']:.3f}): " + \
                        ("the benchmark rewards it" if t["balanced_accuracy"] > t["chance"] + 0.1 else "a quirk of training")
            out.append(line)
        else:
            why = (f"p = {m.p_value:.3f}, above {ALPHA}" if m.p_value > ALPHA else
                   f"p = {m.p_value:.3f}, but less than 0.1 over chance")
            line = (f"no metadata shortcut on training: balanced accuracy {m.balanced_accuracy:.3f} vs chance "
                    f"{m.chance:.3f} ({why})")
            t = m.transfer
            if _scores_on_evaluation(m):  # not settled on training, yet it scores on eval
                line += (f"; but fit on training it scores {t['balanced_accuracy']:.3f} on the evaluation split "
                         f"(chance {t['chance']:.3f}, {t.get('n_eval', '?')} images): worth a look")
            out.append(line)
        if self.regions is not None:
            if self.regions.marker:
                acc = self.regions.regions.set_index("region")["balanced_accuracy"]
                line = (f"a marker in the {self.regions.marker} corner: that corner alone predicts the label at "
                        f"{acc[self.regions.marker]:.3f}, the other corners at "
                        f"{acc.drop(['whole', 'border', self.regions.marker]).mean():.3f}")
                t = self.regions.transfer
                if t:
                    line += (f"; on the evaluation split the corner alone scores {t['balanced_accuracy']:.3f} "
                             + ("(the benchmark rewards it)" if t["balanced_accuracy"] > t["chance"] + 0.1 else
                                "(it does not transfer)"))
                out.append(line)
            else:
                acc = self.regions.regions.set_index("region")["balanced_accuracy"]
                corners = acc.drop([r for r in ("whole", "border") if r in acc.index])
                seen = (f" (corners {corners.min():.3f}-{corners.max():.3f}"
                        + (f", the border alone {acc['border']:.3f}" if "border" in acc.index else "")
                        + (f", the whole image {acc['whole']:.3f}" if "whole" in acc.index else "")
                        + ": what the picture itself shows, not a marker)") if len(corners) else ""
                out.append("no corner predicts the label much better than the others" + seen)
        return out


def audit(ws, dataset: str, *, train_split: str | None = None, eval_split: str | None = None, regions: bool = True,
          permutations: int = 100, max_items: int = 4000, region_items: int = 1000, progress: Progress | None = None,
          seed: int = 0) -> ShortcutAudit:
    """Both probes on a dataset's training split (and their transfer to its evaluation split), every model on one
    thread: on two busy cores the forests' and torch's thread pools fought each other (ten minutes for 90 images)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        return _audit(ws, dataset, train_split=train_split, eval_split=eval_split, regions=regions,
                      permutations=permutations, max_items=max_items, region_items=region_items, progress=progress,
                      seed=seed)


def _audit(ws, dataset: str, *, train_split, eval_split, regions, permutations, max_items, region_items, progress,
           seed) -> ShortcutAudit:
    import time

    from leakcore.schema import split_items

    splits = {s.split: s for s in ws.split_ids() if s.dataset == dataset}
    if not splits:
        raise InvalidInput(f"no dataset {dataset!r}; datasets: {', '.join(sorted(ws.datasets))}")
    items = ws.items()
    roles = items[items["dataset"] == dataset].drop_duplicates("split").set_index("split")["role"]
    train_split = train_split or next((s for s, r in roles.items() if r == "train"), None)
    eval_split = eval_split or next((s for s, r in roles.items() if r == "eval"), None)
    if train_split is None:
        raise InvalidInput(f"{dataset} has no training split to audit")
    tr = split_items(items, f"{dataset}/{train_split}")
    tr = tr[(tr["status"] == "ok") & tr["label"].notna()].reset_index(drop=True)
    if tr["label"].nunique() < 2:
        raise InvalidInput(f"{dataset}/{train_split} needs at least two labels for a shortcut audit")
    seconds = {}
    t0 = time.perf_counter()
    if len(tr) > max_items:
        tr = tr.iloc[np.sort(np.random.default_rng(seed).choice(len(tr), max_items, replace=False))].reset_index(drop=True)
    meta = metadata_table(tr, progress=(lambda d, t: progress("metadata", d, t)) if progress else None)
    probe = metadata_probe(meta, tr["label"], permutations=permutations, max_items=max_items, seed=seed,
                           progress=(lambda d, t: progress("permutations", d, t)) if progress else None)
    ev = None
    if eval_split is not None:
        ev = split_items(items, f"{dataset}/{eval_split}")
        ev = ev[(ev["status"] == "ok") & ev["label"].notna()].reset_index(drop=True)
        if len(ev) > max_items:
            ev = ev.iloc[np.sort(np.random.default_rng(seed).choice(len(ev), max_items, replace=False))].reset_index(drop=True)
        if len(ev):
            probe.transfer = metadata_transfer(meta, tr["label"], metadata_table(ev), ev["label"])
    seconds["metadata"] = round(time.perf_counter() - t0, 1)
    examples = pd.DataFrame()
    if not probe.importance.empty:
        fam = probe.importance.iloc[0]["family"]
        col = fam if fam in meta.columns else None
        if col is not None:
            frame = tr[["item_id", "label"]].assign(value=pd.to_numeric(meta[col], errors="coerce").to_numpy())
            overall = frame["value"].mean()
            parts = []
            for _, g in frame.groupby("label", sort=True):  # per class, its most typical values of that feature
                parts.append(g.sort_values("value", ascending=bool(g["value"].mean() < overall)).head(6))
            examples = pd.concat(parts, ignore_index=True).assign(feature=col)
    reg = None
    if regions:
        t0 = time.perf_counter()
        reg = region_probe(ws, tr, max_items=region_items, seed=seed, eval_items=ev, progress=progress)
        seconds["regions"] = round(time.perf_counter() - t0, 1)
    return ShortcutAudit(dataset, train_split, eval_split, probe, reg, examples, seconds)


__all__ = ["ProbeResult", "REGIONS", "RegionResult", "ShortcutAudit", "audit", "item_metadata", "jpeg_quality",
           "metadata_probe", "metadata_table", "occluded", "permutation_test", "region_images", "region_probe",
           "timing_words"]


# ---- stored results -------------------------------------------------------------------------------------------
def _path(ws, dataset: str):
    return ws.paths.shortcut_audit(dataset)


def save(ws, result: ShortcutAudit) -> None:
    """Keep the audit in the workspace (shortcuts/<dataset>.json): the report and the page read it back."""
    import datetime as dt
    import json

    from leakcore.io import atomic_write_text

    m = result.metadata
    data = {
        "dataset": result.dataset, "train_split": result.train_split, "eval_split": result.eval_split,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "seconds": result.seconds,
        "timing": timing_words(result.seconds),
        "metadata": {"balanced_accuracy": m.balanced_accuracy, "chance": m.chance, "p_value": m.p_value, "n": m.n,
                     "classes": m.classes, "importance": m.importance.to_dict("records"), "transfer": m.transfer},
        "examples": result.examples.to_dict("records"),
        "regions": None if result.regions is None else {
            "table": result.regions.regions.to_dict("records"), "marker": result.regions.marker,
            "transfer": result.regions.transfer,
            "occlusion": {k: v.tolist() for k, v in result.regions.occlusion.items()},
            "carriers": result.regions.carriers.head(200).to_dict("records")},
        "verdict": result.verdict, "found": found(result),
    }
    atomic_write_text(_path(ws, result.dataset), json.dumps(data, indent=2, default=float) + "\n")


def timing_words(seconds: dict) -> str:
    """How long each probe took, in words: "metadata probe 12 s, region probe 1 min 5 s"."""
    def words(t: float) -> str:
        t = float(t)
        return f"{t:.1f} s" if t < 10 else f"{t:.0f} s" if t < 60 else f"{int(t // 60)} min {t % 60:.0f} s"

    names = {"metadata": "metadata probe", "regions": "region probe"}
    return ", ".join(f"{names.get(k, k)} {words(v)}" for k, v in (seconds or {}).items()) or "time not recorded"


def _scores_on_evaluation(m: "ProbeResult") -> bool:
    """Whether the metadata probe, fit on training, scores on the evaluation split more than 0.1 over chance."""
    t = m.transfer
    return bool(t) and t["balanced_accuracy"] > t["chance"] + 0.1


def found(result: ShortcutAudit) -> dict:
    """{"metadata": bool, "marker": region or None, "transfers": bool, "names": bool, "on_evaluation": bool}: what a
    gate checks. "names": the metadata finding is mostly the file and folder names (`NAMES`), which a model reading
    pixels never sees; "on_evaluation": the metadata probe scores on the evaluation split whether or not it is settled
    on training (the verdict's "worth a look")."""
    m = result.metadata
    meta = bool(m.p_value <= ALPHA and m.balanced_accuracy > m.chance + 0.1)
    marker = result.regions.marker if result.regions is not None else None
    transfers = bool((meta and m.transfer and m.transfer["balanced_accuracy"] > m.transfer["chance"] + 0.1) or
                     (marker and result.regions.transfer and
                      result.regions.transfer["balanced_accuracy"] > result.regions.transfer["chance"] + 0.1))
    names = bool(meta and not m.importance.empty and m.importance.iloc[0]["family"] == NAMES)
    return {"metadata": meta, "marker": marker, "transfers": transfers, "names": names,
            "on_evaluation": _scores_on_evaluation(m)}


def load(ws, dataset: str | None = None) -> dict[str, dict]:
    """Stored audits by dataset (all, or one)."""
    import json

    root = ws.paths.shortcuts
    files = [_path(ws, dataset)] if dataset else sorted(root.glob("*.json")) if root.exists() else []
    out = {}
    for f in files:
        if f.exists():
            data = json.loads(f.read_text())
            out[data["dataset"]] = data
    return out
