"""Coverage and contamination audit: how one image set covers another in feature space, and which images do
not belong.

Set-to-set metrics on the workspace's L2-normalised embeddings, with each set's k-NN balls as its manifold:
- improved precision and recall (Kynkäänniemi et al., 2019): the share of B inside A's manifold, and of A
  inside B's;
- density and coverage (Naeem et al., 2020): how many of A's balls hold each B image on average (over k),
  and the share of A's balls that hold at least one B image.
A is the reference ("real") set and B the one measured against it, as in the papers. On unit vectors,
"inside the ball of radius r_k(a)" is "cosine to a >= the cosine of a's k-th neighbour", so every test is a
comparison of dot products; they are computed exactly, block by block, with BLAS matrix products (faiss for
the k-NN radii), so a 10,000 x 50,000 audit never holds the whole distance matrix.

Intervals are percentile bootstrap intervals (scipy) over the per-image indicators with the radii held
fixed: they say how much the figure depends on which images were drawn, not how the radii would move.

The spectral fingerprint is separate and needs pixels: the azimuthally averaged power spectrum of each image's
central crop at a fixed working size. Upsampling, heavy compression and some generators leave a deficit or a
bump at high spatial frequencies that embeddings ignore. It cannot tell what an image shows, nor that an image
was generated when the generator left no spectral trace.
"""
from __future__ import annotations

import ast
import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from leakcore import catalog, images, search
from leakcore.errors import InvalidInput, as_code
from leakcore.schema import SplitId, split_column

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
DEFAULT_K = 5


# ---- filters a user types ------------------------------------------------------------------------------------
FILTER_METHODS = {"str": ("contains", "startswith", "endswith", "match", "fullmatch", "lower", "upper", "len"),
                  "": ("isna", "notna", "isin", "between")}
_FILTER_NODES = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.Invert, ast.USub, ast.BinOp,
                 ast.BitAnd, ast.BitOr, ast.Compare, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In,
                 ast.NotIn, ast.Name, ast.Load, ast.Constant, ast.List, ast.Tuple, ast.Call, ast.Attribute, ast.keyword)


FILTER_KEYWORDS = ("case", "na", "regex", "inclusive")  # no `flags`: with flags pandas leaves RE2 (linear time) for
# Python's backtracking `re`, and `uri.str.contains('^(.+)+Z', flags=2)` held a server's only thread for minutes


def check_filter(where: str, columns) -> None:
    """Refuse a filter that is more than comparisons of columns with constants (and, or, not, in, a few string and
    missing-value methods): pandas' query runs any Python it is given (a web user's filter reached `os.system`
    through a column's `__class__`), so only this small grammar, checked on Python's own parse, reaches it."""
    hint = ("a filter compares columns with constants: label != 'cat', label in ['cat', 'dog'], "
            "uri.str.contains('/bees/'), timestamp >= '2024-01-01', joined by and / or / not")
    try:
        tree = ast.parse(where.strip(), mode="eval")
    except SyntaxError:
        raise InvalidInput(f"cannot read the filter {as_code(where)}; {hint}") from None
    columns = {str(c) for c in columns}
    for node in ast.walk(tree):
        if not isinstance(node, _FILTER_NODES):
            raise InvalidInput(f"the filter {as_code(where)} uses {type(node).__name__}, which a filter may not; {hint}")
        if isinstance(node, ast.Name) and node.id not in columns:
            raise InvalidInput(f"the filter {as_code(where)} names {as_code(node.id)}, not a column; columns: "
                               f"{', '.join(sorted(columns))}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (str, int, float, bool, type(None))):
            raise InvalidInput(f"the filter {as_code(where)} holds a constant of an unsupported kind; {hint}")
        if isinstance(node, ast.Attribute) and not _allowed_attribute(node):
            raise InvalidInput(f"the filter {as_code(where)} uses {as_code('.' + node.attr)}, which a filter may not; {hint}")
        if isinstance(node, ast.keyword) and node.arg not in FILTER_KEYWORDS:
            raise InvalidInput(f"the filter {as_code(where)} passes {as_code(str(node.arg))}; a filter's methods take only "
                               f"{', '.join(FILTER_KEYWORDS)}")
        if isinstance(node, ast.Call):
            f = node.func
            if not isinstance(f, ast.Attribute) or not _allowed_attribute(f) or f.attr == "str" or not all(
                    isinstance(a, (ast.Constant, ast.List, ast.Tuple)) for a in [*node.args, *(k.value for k in node.keywords)]):
                raise InvalidInput(f"the filter {as_code(where)} calls something a filter may not; {hint}")


def _allowed_attribute(node: ast.Attribute) -> bool:
    """`col.str`, `col.str.METHOD`, `col.METHOD` for the methods of FILTER_METHODS, and nothing else."""
    base = node.value
    if isinstance(base, ast.Name):
        return node.attr == "str" or node.attr in FILTER_METHODS[""]
    return (isinstance(base, ast.Attribute) and base.attr == "str" and isinstance(base.value, ast.Name)
            and node.attr in FILTER_METHODS["str"])


# ---- which images are a set ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageSet:
    """A set of workspace images: a dataset ("cifar10") or a split ("cifar10/test"), optionally narrowed by a
    filter over the item table in the grammar of `check_filter` (e.g. "label not in ['cat', 'dog']", "uri.str.contains('/bees/')",
    "timestamp >= '2024-01-01'")."""

    source: str
    where: str | None = None

    def __str__(self) -> str:
        return self.source + (f" where {self.where}" if self.where else "")

    def select(self, items: pd.DataFrame) -> pd.DataFrame:
        """The readable items of the set, in item-id order; an error names the valid datasets and splits."""
        if "/" in self.source:
            sid = SplitId.parse(self.source)
            mask = (items["dataset"] == sid.dataset) & (items["split"] == sid.split)
        else:
            mask = items["dataset"] == self.source
        sub = items[mask & (items["status"] == "ok")]
        if sub.empty:
            valid = sorted(set(items["dataset"].astype(str)) | set(split_column(items)))
            raise InvalidInput(f"no readable images in {self.source!r}; valid sets: {', '.join(valid)}")
        if self.where:
            check_filter(self.where, items.columns)
            try:
                sub = sub.query(self.where, engine="python")
            except Exception as exc:  # noqa: BLE001 - pandas raises many kinds for a bad expression
                raise InvalidInput(f"cannot apply the filter {as_code(self.where)}: {type(exc).__name__}: {exc}. Columns: "
                                   f"{', '.join(items.columns)}") from None
            if sub.empty:
                raise InvalidInput(f"the filter {as_code(self.where)} leaves no image of {self.source}")
        return sub.sort_values("item_id").reset_index(drop=True)


# ---- the metrics ---------------------------------------------------------------------------------------------
def kth_neighbour_similarity(vectors: np.ndarray, k: int) -> np.ndarray:
    """Cosine similarity of each vector's k-th nearest other vector in its own set (its ball's radius)."""
    if len(vectors) <= k:
        raise InvalidInput(f"a set needs more than k={k} images for k-NN balls, it has {len(vectors)}")
    sim, _ = search.knn(vectors, vectors, k, self_index=np.arange(len(vectors)))
    return sim[:, k - 1].astype(np.float32)


def _ball_stats(queries: np.ndarray, centres: np.ndarray, radius_sim: np.ndarray, *, query_block: int = 4096,
                centre_block: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per query: how many centres' balls hold it, and its best realism score max_c r_k(c) / d(q, c).

    Distances on unit vectors: d = sqrt(2 - 2 cos)."""
    counts = np.zeros(len(queries), dtype=np.int64)
    realism = np.zeros(len(queries), dtype=np.float32)
    radius = np.sqrt(np.maximum(2.0 - 2.0 * radius_sim, 0.0)).astype(np.float32)
    for q0 in range(0, len(queries), query_block):
        q = queries[q0:q0 + query_block]
        best = np.zeros(len(q), dtype=np.float32)
        for c0 in range(0, len(centres), centre_block):
            s = q @ centres[c0:c0 + centre_block].T
            counts[q0:q0 + len(q)] += (s >= radius_sim[None, c0:c0 + centre_block]).sum(axis=1)
            d = np.sqrt(np.maximum(2.0 - 2.0 * s, 1e-12))
            np.maximum(best, (radius[None, c0:c0 + centre_block] / d).max(axis=1), out=best)
        realism[q0:q0 + len(q)] = best
    return counts, realism


def _interval(values: np.ndarray, n_resamples: int, seed: int) -> tuple[float, float]:
    from scipy.stats import bootstrap

    values = np.asarray(values, dtype=np.float64)
    if n_resamples <= 0 or len(values) < 2 or np.all(values == values[0]):
        m = float(values.mean()) if len(values) else float("nan")
        return m, m
    res = bootstrap((values,), np.mean, n_resamples=n_resamples, method="percentile", vectorized=True,
                    batch=max(1, 20_000_000 // len(values)), random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@dataclass
class CoverageResult:
    """Set-to-set metrics (with intervals) and per-image scores of A and of B."""

    a: str
    b: str
    k: int
    metrics: pd.DataFrame  # metric, value, low, high, meaning
    a_scores: pd.DataFrame  # per A image: item_id, inside_b, realism, nearest_similarity, nearest_item_id
    b_scores: pd.DataFrame  # per B image: the same against A
    settings: dict = field(default_factory=dict)
    map: pd.DataFrame | None = None  # 2-D coordinates of a sample of both sets (x, y, set, item_id, method)


def set_metrics(a_vectors: np.ndarray, b_vectors: np.ndarray, *, k: int = DEFAULT_K, n_resamples: int = 1000,
                seed: int = 0) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Precision, recall, density and coverage of B against reference A, with bootstrap intervals, and the
    per-image arrays they came from."""
    a = np.ascontiguousarray(a_vectors, dtype=np.float32)
    b = np.ascontiguousarray(b_vectors, dtype=np.float32)
    ra, rb = kth_neighbour_similarity(a, k), kth_neighbour_similarity(b, k)
    b_in_a, b_realism = _ball_stats(b, a, ra)  # B images inside A's balls
    a_in_b, a_realism = _ball_stats(a, b, rb)  # A images inside B's balls
    nn_ab, idx_ab = search.knn(a, b, 1)  # each A image's nearest B image
    nn_ba, idx_ba = search.knn(b, a, 1)
    per = {
        "precision": (b_in_a > 0).astype(np.float64),
        "recall": (a_in_b > 0).astype(np.float64),
        "density": b_in_a / k,
        "coverage": (nn_ab[:, 0] >= ra).astype(np.float64),
    }
    meaning = {
        "precision": "share of B inside A's manifold (B looks like A)",
        "recall": "share of A inside B's manifold (B reaches all of A)",
        "density": "A-balls holding each B image, over k (1 = as dense as A itself)",
        "coverage": "share of A images with a B image inside their ball (A's modes that B covers)",
    }
    rows = []
    for i, (name, values) in enumerate(per.items()):
        low, high = _interval(values, n_resamples, seed + i)
        rows.append({"metric": name, "value": float(values.mean()), "low": low, "high": high, "meaning": meaning[name]})
    arrays = {"b_in_a": b_in_a, "b_realism": b_realism, "a_in_b": a_in_b, "a_realism": a_realism,
              "a_nn_sim": nn_ab[:, 0], "a_nn_idx": idx_ab[:, 0], "b_nn_sim": nn_ba[:, 0], "b_nn_idx": idx_ba[:, 0],
              "a_radius_sim": ra, "b_radius_sim": rb}
    return pd.DataFrame(rows), arrays


def audit(ws, a: ImageSet, b: ImageSet, *, k: int = DEFAULT_K, n_resamples: int = 1000, seed: int = 0,
          encoder=None, progress: Progress | None = None) -> CoverageResult:
    """Embed both sets with the workspace's encoder (cached vectors are reused) and measure B against A."""
    from leakcore.embed import embed_items
    from leakcore.encoders import create_encoder

    items = ws.items()
    a_items, b_items = a.select(items), b.select(items)
    encoder = encoder or create_encoder(ws.encoder, **ws.encoder_options)
    vecs = []
    for name, sub in (("A", a_items), ("B", b_items)):
        v, have = embed_items(ws, sub, encoder, progress=(lambda d, t, n=name: progress(f"embed {n}", d, t)) if progress else None)
        vecs.append((sub[have].reset_index(drop=True), v[have]))
    (a_items, av), (b_items, bv) = vecs
    if progress:
        progress("measure", 0, 1)
    metrics, arr = set_metrics(av, bv, k=k, n_resamples=n_resamples, seed=seed)
    if progress:
        progress("measure", 1, 1)

    def scores(own: pd.DataFrame, other: pd.DataFrame, inside, realism, nn_sim, nn_idx) -> pd.DataFrame:
        return pd.DataFrame({
            "item_id": own["item_id"].astype(str).to_numpy(), "inside_other": inside > 0, "balls": inside,
            "realism": realism, "nearest_similarity": nn_sim,
            "nearest_distance": np.sqrt(np.maximum(2 - 2 * nn_sim, 0)),
            "nearest_item_id": other["item_id"].astype(str).to_numpy()[nn_idx],
        })

    a_scores = scores(a_items, b_items, arr["a_in_b"], arr["a_realism"], arr["a_nn_sim"], arr["a_nn_idx"])
    a_scores["covered"] = arr["a_nn_sim"] >= arr["a_radius_sim"]  # A's own ball holds a B image
    b_scores = scores(b_items, a_items, arr["b_in_a"], arr["b_realism"], arr["b_nn_sim"], arr["b_nn_idx"])
    settings = {"encoder": encoder.name, "fingerprint": encoder.fingerprint, "a_images": int(len(a_items)),
                "b_images": int(len(b_items)), "bootstrap": int(n_resamples), "seed": seed}
    picture = map_2d(av, bv, seed=seed)
    ids = np.concatenate([a_items["item_id"].astype(str).to_numpy(), b_items["item_id"].astype(str).to_numpy()])
    picture["item_id"] = ids[np.where(picture["set"] == "A", 0, len(a_items)) + picture["row"].to_numpy()]
    return CoverageResult(str(a), str(b), k, metrics, a_scores, b_scores, settings, picture.drop(columns="row"))


# ---- spectra -------------------------------------------------------------------------------------------------
def radial_power_spectrum(grey: np.ndarray) -> np.ndarray:
    """log10 of the azimuthally averaged power spectrum of one square greyscale image (DC removed, Hann window);
    bin r is spatial frequency r cycles per image, from 1 to size / 2."""
    n = grey.shape[0]
    x = grey.astype(np.float64)
    x = (x - x.mean()) * np.outer(np.hanning(n), np.hanning(n))
    power = np.abs(np.fft.fftshift(np.fft.fft2(x))) ** 2
    yy, xx = np.indices(power.shape)
    r = np.hypot(yy - n // 2, xx - n // 2).round().astype(int)
    sums = np.bincount(r.ravel(), power.ravel())
    counts = np.bincount(r.ravel())
    radial = sums[1:n // 2 + 1] / np.maximum(counts[1:n // 2 + 1], 1)
    return np.log10(radial + 1e-12)


def _grey_crop(data: bytes | None, size: int) -> np.ndarray | None:
    from PIL import Image

    decoded = images.decode(data)
    if not decoded.ok:
        return None
    img = decoded.image.convert("L")
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    img = img.crop((left, top, left + side, top + side))
    if side > size:  # the central size x size pixels at native resolution: resampling would hide what we look for
        off = (side - size) // 2
        img = img.crop((off, off, off + size, off + size))
    elif side < size:
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32)


def spectra(items: pd.DataFrame, *, size: int = 128, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """One row per readable item: item_id and its radial log-power spectrum (columns f1..f{size/2})."""
    rows, ids = [], []
    total = len(items)
    for n, (pos, data) in enumerate(catalog.iter_item_bytes(items), 1):
        grey = _grey_crop(data, size)
        if grey is not None:
            rows.append(radial_power_spectrum(grey))
            ids.append(str(items["item_id"].iloc[pos]))
        if progress and (n % 500 == 0 or n == total):
            progress(n, total)
    cols = [f"f{i}" for i in range(1, size // 2 + 1)]
    out = pd.DataFrame(np.vstack(rows) if rows else np.zeros((0, len(cols))), columns=cols)
    out.insert(0, "item_id", ids)
    return out


@dataclass
class SpectralResult:
    """Mean spectra of A and B, their deviation per frequency, and per-image outlier scores against A."""

    frequencies: np.ndarray  # cycles per image
    a_mean: np.ndarray
    b_mean: np.ndarray
    deviation: np.ndarray  # (B - A) in standard deviations of A, per frequency
    a_scores: pd.DataFrame  # item_id, spectral_score (mean |z| over the upper half of frequencies), high_band
    b_scores: pd.DataFrame
    summary: dict


def spectral_audit(ws, a: ImageSet, b: ImageSet, *, size: int = 128, progress: Progress | None = None) -> SpectralResult:
    """Spectral fingerprints of two sets, and each image's distance from A's, in the high-frequency half."""
    items = ws.items()
    sa = spectra(a.select(items), size=size, progress=(lambda d, t: progress("spectra A", d, t)) if progress else None)
    sb = spectra(b.select(items), size=size, progress=(lambda d, t: progress("spectra B", d, t)) if progress else None)
    xa, xb = sa.drop(columns="item_id").to_numpy(), sb.drop(columns="item_id").to_numpy()
    mu, sd = xa.mean(axis=0), xa.std(axis=0) + 1e-6
    high = slice(xa.shape[1] // 2, None)  # the upper half of the frequencies: where resampling and generators show

    def scored(frame, x):
        z = (x - mu) / sd
        return pd.DataFrame({"item_id": frame["item_id"], "spectral_score": np.abs(z[:, high]).mean(axis=1),
                             "high_band": z[:, high].mean(axis=1)})

    deviation = (xb.mean(axis=0) - mu) / sd
    summary = {"size": size, "a_images": int(len(sa)), "b_images": int(len(sb)),
               "high_band_deviation": float(deviation[high].mean()),
               "mean_abs_deviation": float(np.abs(deviation).mean())}
    return SpectralResult(np.arange(1, xa.shape[1] + 1), xa.mean(axis=0), xb.mean(axis=0), deviation,
                          scored(sa, xa), scored(sb, xb), summary)


def map_2d(a_vectors: np.ndarray, b_vectors: np.ndarray, *, max_points: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A 2-D picture of both sets: UMAP when installed, else PCA (scikit-learn), on at most `max_points` each."""
    rng = np.random.default_rng(seed)
    pick = [rng.choice(len(v), size=min(len(v), max_points), replace=False) for v in (a_vectors, b_vectors)]
    x = np.vstack([a_vectors[pick[0]], b_vectors[pick[1]]])
    try:
        import umap  # noqa: F401  (optional)

        xy = umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
        method = "UMAP"
    except ImportError:
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=seed).fit_transform(x)
        method = "PCA"
    return pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "set": ["A"] * len(pick[0]) + ["B"] * len(pick[1]),
                         "row": np.concatenate(pick), "method": method})


__all__ = ["CoverageResult", "DEFAULT_K", "ImageSet", "SpectralResult", "audit", "kth_neighbour_similarity", "map_2d",
           "radial_power_spectrum", "set_metrics", "spectra", "spectral_audit"]
