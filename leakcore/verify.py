"""The second stage: check candidate pairs on their pixels.

An embedding says "these look alike"; it cannot say "this is the same photograph" in the band where shifted,
re-cropped or recoloured copies score like look-alikes. For every candidate pair this module measures
evidence that the two images are one photograph:

- alignment: the eval image is transformed (the 8 flips and quarter turns; scales and small rotations for the
  unturned and mirrored image) and, for every transform, every translation up to a quarter of the image is
  scored at once by masked normalised cross-correlation (Padfield 2012, "Masked object registration in the
  Fourier domain"), computed with FFTs over batches of pairs in torch. Luminance and gradient magnitude are
  both correlated; the best transform and shift by their mean is the alignment.
- refinement: the coarse alignment is a grid (whole pixels, five scales, two angles); a re-cropped CIFAR-10
  copy is zoomed by 1.4 or moved by half a pixel. OpenCV's ECC (`findTransformECC`, Evangelidis and Psarakis
  2008) then fits an affine map from the aligned eval canvas onto the training canvas on their overlap, with a
  few iterations only (more let two look-alikes warp towards each other), and the NCC, detail NCC, difference
  and overlap are measured again on the refined overlap. On the 1,052 CIFAR-10 pairs judged by eye this lifted
  the recall at 95% precision of the fused model from 0.83 to 0.91 (10 x 10-fold out of fold).
- on the aligned overlap: NCC of luminance and of gradients, SSIM (scikit-image's, on OpenCV's box filter), the
  overlap fraction, the
  NCC of the fine detail (luminance minus its Gaussian blur, scipy) away from the overlap's edge, and the median
  absolute luminance difference. At 32 px two look-alike scenes align their large blobs about as well as two
  copies do; their fine detail does not (on eye-judged CIFAR-10 pairs the detail NCC and the difference added
  to the embedding what the whole-image NCC did not);
- for photos large enough: ORB features matched and verified with RANSAC (OpenCV, a partial affine model),
  so crops, overlays and watermarks still match: inlier count and ratio; where they are many, the share of the
  overlap's textured tiles that agree under their map (two photos under one banner match on the banner only);
- for photos: a crop search, each image slid over the other at a range of scales (OpenCV's `matchTemplate`), for
  strong crops with too few corners for local features.

Why not a library for the alignment: scikit-image's masked `phase_cross_correlation` does one pair and one
transform per call and returns the peak only; here a candidate pair needs ~16 transforms x all shifts, for
tens of thousands of pairs, so the same formulas are written once over batched FFTs (no per-pixel loops).
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # torch is imported where it is used: the dashboard and the CLI open without it (3 s)
    import pandas as pd
    import torch

VERSION = 16  # evidence of another version is kept apart (verify/evidence-v<VERSION>); 6: ORB at 512 px, 400 features;
# 7: 1,000 features on the training image, matches kept by the ratio test, the mirror matched only where aligned;
# 8: FAST threshold 20 (ORB_FAST_THRESHOLD); 9: a JPEG decoded at the smallest scale that keeps both sides at least
# ORB_SIDE (`image_inputs`, and the fit's originals before they are edited), not at full size: the same evidence
# where the shorter side is under 1,024 px (every benchmark set here), and a 4,000 x 3,000 photo read in 34 ms
# instead of 110 ms; 10: ORB detects on the image with its border reflected outwards (`_orb`: it finds no feature
# within its patch of a border, so a crop a few hundred pixels wide kept too few), from 64 px (ORB_MIN_SIDE);
# 11: the crop search (`crop_search`: crop_ncc, crop_detail); 12: the share of textured tiles that agree under the
# local matches' map (`away_agreement`: tiles_agree, tiles_textured); 13: no crop search where the local matches
# decide a pair (crop_ncc, crop_detail NaN: `_matches_decide`), and the second way round only where the first does
# not decide it (`crop_either_way`); 14: no tiles agree where the matches' map puts less than half of the smaller
# image inside the other (`away_agreement`, AWAY_MIN_COVER); 15: ORB's pyramid of 5 levels 1.4 apart (ORB_LEVELS,
# ORB_SCALE), not OpenCV's 8 levels 1.2 apart; 16: a JPEG read as its stored luma (`image_inputs`, `images.decode`
# with gray), not decoded in colour and converted: within a grey level but at saturated colours. Within version 16,
# a scan's candidate pair whose local matches as is decide it is aligned by their map (`evidence(by_matches=True)`,
# its `variant` BY_MATCHES), not searched for; the fit reads every pair searched (`searched_evidence_for`)
WORK_SIZE = 32  # working resolution of the alignment (longer side, pixels)
MAX_SHIFT = 0.25  # translations searched, as a fraction of the working size
MIN_OVERLAP = 0.5  # an alignment must overlap at least this fraction of the smaller image
ORB_MIN_SIDE = 64  # both images at least this large (shorter side) for local features: twice ORB's patch
ORB_SIDE = 512  # local features are found at this longer side at most: a crop keeping a quarter of a photo matched its
# original with >= 15 inliers in 18 of 20 planted hymenoptera crops at 512 px (400 features), 12 of 20 at 256 px (300)
ORB_FEATURES = 400  # at most this many on the eval image: matching 500 cost 19 ms a pair on photos, 300 cost 5 ms
ORB_TRAIN_FEATURES = 1000  # ... and on the training image: a strong crop (45-60% of each side) holds only a
# quarter of the original's features; with 400 on both sides 5 of 20 planted hymenoptera crops had <= 20 inliers,
# with 1,000 on the training side 19 of 20 had >= 31 (look-alikes at most 11)
ORB_DISTINCT_PX = 4.0  # inliers closer than this (pixels at ORB_SIDE) are one place (as `grouping.DISTINCT_PX`)
ORB_PAD = 31  # ORB's patch (and edge threshold): the margin reflected around an image before detection
ORB_FAST_THRESHOLD = 20  # corners weaker than this are not features: on hymenoptera 10 found the same matches
# (planted crops >= 34 inliers, look-alikes <= 11 at 20) at 1.25x the cost
ORB_LEVELS, ORB_SCALE = 5, 1.4  # ORB's pyramid: 5 levels 1.4 apart span the scales (3.8x) that OpenCV's default 8
# levels 1.2 apart do (3.6x) on 62% of the pixels. A detection cost 2.7-3.1 ms instead of 3.7-4.4, and more planted
# copies were decided by their matches: 119 and 119 of 120 hymenoptera copies instead of 114 and 117, 194 and 197 of
# 200 cats_and_dogs copies instead of 189 and 189 (no look-alike above 12 inliers); with the 1,000 features spread
# over fewer levels, more are at the finer ones (6 levels 1.25 apart, 5 at 1.3 and 4 at 1.5 lost banner copies)
ORB_RATIO_TEST = 0.8  # a match is kept where its distance is under this share of the second nearest (Lowe 2004): on
# those pairs as discriminating as cross-checking, at half its cost against 1,000 features
FLAT_STD = 4.0 / 255  # overlaps flatter than this (std of luminance) count as flat: NCC is damped there
FLAT_GRAD_STD = 1.0 / 255  # the same for gradient magnitudes, which are smaller
REFINE_SIZE = 48  # the refinement runs on the canvases upsampled to this: ECC wants smooth gradients (48 and 64 px
# separated the judged CIFAR-10 pairs alike, 32 px less well, 96 px no better and slower)
REFINE_ITERATIONS = 15  # at most; 30 and 60 separated the judged pairs worse (look-alikes warp further) and cost more
REFINE_EPS = 1e-3

# (dihedral element, scale, angle in degrees); dihedral k: quarter turns k % 4, mirrored when k >= 4
SCALES = (0.8, 0.9, 1.0, 1.12, 1.25)
ANGLES = (-6.0, 6.0)
TWIN_NCC, TWIN_SSIM = 0.9, 0.8  # two images aligning at least this well are one photograph (a "negative" like this is left out)
# The rules by which a pair's evidence decides it on its own, whatever the model says (`scores.fused`:
# `decided_by_matches`, `decided_by_crop`; a decided pair's fused score is at least hard):
TWIN_ORB_INLIERS, TWIN_ORB_RATIO = 25, 0.5  # this many local features under one map, this share of the matches that
# pass the ratio test: one photograph. Such a pair's fused score is at least hard (`decided_by_matches`). Inliers
# count at distinct places (`orb_pair`): cats_and_dogs' look-alikes reach 16 (two cats' eyes), two different
# photos under one banner's text 21, hymenoptera's look-alikes 3.
# A pair aligned nearly pixel for pixel (TWIN_NCC, TWIN_SSIM) is one photograph too, on photos: there
# every such pair of hymenoptera (67) and cats_and_dogs (120) is a planted copy, and no look-alike reaches SSIM 0.76.
# A copy too small for local features (a 60 px photo halved and recompressed) scored 0.40 by the model, which has
# few such pairs to learn from. Not on images too small for local features (`small_images`, CIFAR-10's 32 px),
# where aligned twins were not judged by this rule
TWIN_CROP_AGREES = 0.9  # ... and on photos the pixels must agree at four times the canvas too: the crop search's NCC at
# CROP_SIDE (128 px) at least this, where it ran (a model fitted before keeps the two-part rule). On smooth pictures
# another part, mirrored or turned, aligns that well at 32 px: in the demo, tiles of a clock's grey background, a
# horse's white one, a retina's rim and a colour wheel (crop NCC -0.11 to 0.88), decided as one photograph against 17
# planted leaks (0.97-1.00); on the eight draws of planted photos five of the six copies the rule alone decided had
# 0.96-0.98, and the bannered one 0.79 (its model score, 0.88, flags it). Held out: bench/verify_smooth_tiles.py
TWIN_TILES_AGREE = 0.6  # the local matches decide only where at least this share of the overlap's textured tiles
# agree under their map (`away_agreement`, evidence version 12; a model fitted before it keeps the two-part
# rule), or where there are too few textured tiles to tell. Set on seed 11 of bench/verify_overlay_pairs.py (94 pairs
# of two photos under one banner or watermark that the matches decided by two parts: at most 0.553; 290 copies under
# six edits: at least 0.635) and confirmed on seeds 12 and 13 (132 of 135 such pairs no longer decided, 573 of 574
# copies still decided; the misses are photos with little texture outside the banner)
TWIN_TILES_FROM = 20  # ... and from this many inliers (AWAY_FROM_INLIERS) where the tiles are there to tell and agree
# (not NaN): a bannered copy in a new user's draw had 22 inliers (a sunflower under a red band, 74% of its 161
# textured tiles agreeing) and fell under soft by the model; the look-alikes of the eight draws reach 16 inliers
MATCH_RULE = (TWIN_ORB_INLIERS, TWIN_ORB_RATIO, TWIN_TILES_AGREE, TWIN_TILES_FROM)
TWIN_CROP_NCC, TWIN_CROP_DETAIL = 0.95, 0.6  # one image found in the other as a crop (`crop_search`) at
# least this well, with its fine detail agreeing at least this well: one photograph (`decided_by_crop`). Over eight
# draws of planted copies the 17 strong crops no other evidence decided were found at NCC 0.97-1.00 and detail
# 0.74-0.97; no other of the 3,221 candidate pairs reached NCC 0.92, nor detail 0.29 (photos only, as above)


@dataclass(frozen=True)
class Variant:
    dihedral: int
    scale: float = 1.0
    angle: float = 0.0

    @property
    def label(self) -> str:
        turn, mirror = self.dihedral % 4, self.dihedral >= 4
        parts = (["mirrored"] if mirror else []) + ([f"turned {90 * turn} degrees"] if turn else [])
        if self.scale != 1.0:
            parts.append(f"scaled x{self.scale:g}")
        if self.angle:
            parts.append(f"rotated {self.angle:+g} degrees")
        return ", ".join(parts) or "as is"


def variants() -> tuple[Variant, ...]:
    out = [Variant(d, s) for d in (0, 4) for s in SCALES]
    out += [Variant(d, 1.0, a) for d in (0, 4) for a in ANGLES]
    out += [Variant(d) for d in (1, 2, 3, 5, 6, 7)]
    return tuple(out)


VARIANTS = variants()
FEATURES = ("similarity", "ncc", "ncc_grad", "ssim", "overlap", "orb_inliers", "orb_ratio", "orb_used", "ncc_detail",
            "abs_diff", "ncc_refined", "detail_refined", "diff_refined", "overlap_refined")
REFINED = FEATURES[-4:]
BY_MATCHES = -2  # the `variant` of a pair aligned by its local matches' map (`_align_by_map`), not by one of VARIANTS:
# a scan's candidate pair the matches decide (`evidence(by_matches=True)`), whatever the model says of it
_NO_REFINED = {"ncc_refined": 0.0, "detail_refined": 0.0, "diff_refined": 1.0, "overlap_refined": 0.0}
_NO_EVIDENCE = {"ncc": 0.0, "ncc_grad": 0.0, "ssim": 0.0, "overlap": 0.0, "orb_inliers": 0.0, "orb_ratio": 0.0,
                "orb_used": 0.0, "ncc_detail": 0.0, "abs_diff": 1.0, **_NO_REFINED, "crop_ncc": 0.0, "crop_detail": 0.0,
                "tiles_agree": float("nan"), "tiles_textured": 0.0, "variant": -1, "dy": 0, "dx": 0}
DETAIL_SIGMA = 1.0  # the fine detail: luminance minus its Gaussian blur at this sigma (working pixels)
CROP = ("crop_ncc", "crop_detail")  # one image of a pair found inside the other as a crop (`crop_search`):
# evidence that decides a pair (`scores.fused.decided_by_crop`), not features of the model
AWAY = ("tiles_agree", "tiles_textured")  # where the local matches are many, the share of the overlap's textured
# tiles that agree under their map (`away_agreement`): what tells a copy from two photos under one banner or
# watermark (`scores.fused.decided_by_matches`)
EVIDENCE = FEATURES[1:] + CROP + AWAY
AWAY_FROM_INLIERS = 20  # the tiles are compared where the matches have this many inliers (the matches decide from 25,
# TWIN_ORB_INLIERS)
AWAY_TILE = 32  # tile side (pixels at ORB_SIDE)
AWAY_TEXTURE = 8.0  # a tile is textured where the luminance of both sides varies this much (std, grey levels)
AWAY_TILE_NCC = 0.5  # ... and agrees where its NCC is at least this (0.7 failed heavily recompressed copies: 0.42)
AWAY_MIN_TILES = 8  # fewer textured tiles than this: nothing to tell (NaN)
AWAY_MIN_COVER = 0.5  # under the matches' map the smaller image lies at least this much inside the other, else the
# tiles agree nowhere (0): a copy, a strong crop included, lies wholly inside its photo; one banner line matched to
# the same words at the other edge of another photo maps the two a banner's height apart (a new user's pair: an ant
# and a bee under "LOOK AT THIS", 31 inliers, the overlap a sixth of each, 70% of its textured tiles the banner's)
CROP_SIDE = 128  # the longer side (pixels) of the image searched in (`crop_search`: each of a pair, in turn)
CROP_QUERY_SIDE = 256  # ... and of the image searched for, before it is scaled onto the other
CROP_MIN_SIDE = 24  # a crop this small (shorter side) is searched for, in an image at least ORB_MIN_SIDE: a planted
# 45% crop of a 120 px pet photo is 54 px, too small for local features
CROP_FRACTIONS = tuple(float(f) for f in 0.36 * 1.1 ** np.arange(11))  # the crop's longer side over the other
# image's: 0.36 to 0.93. Smaller crops (a 0.3 crop is 38 px here) matched other photos' smooth regions at NCC 0.91
CROP_REFINE = (0.95, 0.975, 1.0, 1.025, 1.05)  # around the best fraction at half size, these at full size
CROP_COARSE_MIN = 0.75  # ... where the half size found a place at least this good: every pair the rule decided on two
# draws of planted copies (179 of 1,632 searches) was at least 0.81 there, and 69% of the searches stop here
CROP_DETAIL_SIGMA = 1.5  # the detail compared at the crop's place: luminance minus its blur at this sigma


# ---- images onto a working canvas ----------------------------------------------------------------------------
def canvas(img: Image.Image, size: int = WORK_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(luminance in [0, 1], validity mask), size x size: the image fitted by its longer side and centred."""
    g = img.convert("L")
    scale = size / max(g.size)
    w, h = max(1, round(g.width * scale)), max(1, round(g.height * scale))
    g = g.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=2.0)
    lum = np.zeros((size, size), np.float32)
    mask = np.zeros((size, size), np.float32)
    y0, x0 = (size - h) // 2, (size - w) // 2
    lum[y0:y0 + h, x0:x0 + w] = np.asarray(g, np.float32) / 255.0
    mask[y0:y0 + h, x0:x0 + w] = 1.0
    return lum, mask


def canvas_agreement(a: "Image.Image | tuple", b: "Image.Image | tuple") -> float:
    """The NCC of two images' canvases (WORK_SIZE, each fitted by its longer side; an image, or its `canvas` made
    before) where both hold pixels, as they are or the first mirrored, the better of the two; 0 where either is flat.
    A cheap test of "one photograph, the same framing": a JPEG copy at quality 8 of a pet photo scored 1.000, the
    best other pair of three photo sets 0.81."""
    ca, ma = a if isinstance(a, tuple) else canvas(a)
    cb, mb = b if isinstance(b, tuple) else canvas(b)

    def ncc(x: np.ndarray, m: np.ndarray) -> float:
        inside = (m * mb) > 0
        if int(inside.sum()) < 16:
            return 0.0
        u, v = x[inside] - x[inside].mean(), cb[inside] - cb[inside].mean()
        d = float(np.sqrt((u * u).sum() * (v * v).sum()))
        return float((u * v).sum() / d) if d > 1e-9 else 0.0

    return max(ncc(ca, ma), ncc(ca[:, ::-1], ma[:, ::-1]))


def _dihedral_matrix(k: int) -> torch.Tensor:
    import torch
    c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][k % 4]
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float32)
    if k >= 4:
        rot = rot @ torch.tensor([[-1.0, 0.0], [0.0, 1.0]])
    return rot


def _thetas(vs: tuple[Variant, ...]) -> torch.Tensor:
    """affine_grid matrices (output -> input sampling) of each variant."""
    import torch
    out = []
    for v in vs:
        a = math.radians(v.angle)
        rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float32)
        forward = v.scale * rot @ _dihedral_matrix(v.dihedral)
        out.append(torch.cat([torch.linalg.inv(forward), torch.zeros(2, 1)], dim=1))
    return torch.stack(out)


def transformed(lum: torch.Tensor, mask: torch.Tensor, vs: tuple[Variant, ...] = VARIANTS) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, S, S) images and masks -> (P, V, S, S) of each variant."""
    import torch
    p, s, _ = lum.shape
    theta = _thetas(vs).repeat(p, 1, 1)
    x = torch.stack([lum, mask], 1).repeat_interleave(len(vs), 0)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    y = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    m = (y[:, 1] > 0.999).float()
    return (y[:, 0] * m).reshape(p, len(vs), s, s), m.reshape(p, len(vs), s, s)


def gradient(lum: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient magnitude (central differences) and the mask eroded by one pixel, over the last two dimensions."""
    import torch
    gx = torch.zeros_like(lum)
    gy = torch.zeros_like(lum)
    gx[..., :, 1:-1] = (lum[..., :, 2:] - lum[..., :, :-2]) / 2
    gy[..., 1:-1, :] = (lum[..., 2:, :] - lum[..., :-2, :]) / 2
    m = torch.zeros_like(mask)
    m[..., 1:-1, 1:-1] = (mask[..., 1:-1, 1:-1] * mask[..., :-2, 1:-1] * mask[..., 2:, 1:-1]
                          * mask[..., 1:-1, :-2] * mask[..., 1:-1, 2:])
    return torch.sqrt(gx * gx + gy * gy) * m, m


# ---- masked normalised cross-correlation over all shifts -----------------------------------------------------
def _corr(fx: torch.Tensor, fy: torch.Tensor, inverse: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The circular cross-correlation of two spectra (`rfft2` at n x n) at the searched shifts only: the inverse
    transform evaluated there as two matrix products (`inverse`: `_inverse_at`). On batches of 64 pairs x 20
    variants this took a third of the time of inverse FFTs over every shift followed by picking 17 of 40 rows and
    columns (the same correlations within float32 rounding: 2e-4 of 284)."""
    import torch

    rows, cols = inverse
    y = torch.matmul(rows, torch.conj(fx) * fy)  # (..., shifts, n // 2 + 1): the inverse DFT of the columns
    return torch.matmul(torch.cat([y.real, y.imag], -1), cols)  # the inverse real DFT of the rows


def _inverse_at(n: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The matrices of the inverse DFT at the shifts `idx` for n x n spectra halved by `rfft2`: (shifts, n) complex,
    applied to the columns (`ifft`), and (2 (n // 2 + 1), shifts) real, applied to the real and imaginary parts of
    the rows (`irfft`: the half spectrum's bins other than 0 and n / 2 count twice)."""
    import torch

    at = idx.to(torch.float64)
    rows = torch.exp(2j * math.pi * at[:, None] * torch.arange(n, dtype=torch.float64)[None, :] / n) / n
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    weight = torch.where((k == 0) | (2 * k == n), 1.0, 2.0)[:, None] / n
    angle = 2 * math.pi * k[:, None] * at[None, :] / n
    cols = torch.cat([weight * torch.cos(angle), -weight * torch.sin(angle)], 0)
    return rows.to(torch.complex64), cols.to(torch.float32)


def masked_ncc(a: torch.Tensor, ma: torch.Tensor, b: torch.Tensor, mb: torch.Tensor, max_shift: int,
               flat_std: float = FLAT_STD, rows_a: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """NCC of a (P, V, S, S) against b (P, 1, S, S) over their masks for every shift within `max_shift`.

    Returns (ncc, overlap count), each (P, V, 2m+1, 2m+1), index [m + dy, m + dx] for b shifted by (dy, dx)
    relative to a. Flat overlaps are damped (their variance is floored at flat_std**2 per pixel). With `rows_a`
    (P,), a holds each eval image once (U, V, S, S) and pair i is a[rows_a[i]] against b[i]."""
    import torch
    s = a.shape[-1]
    n = s + max_shift  # zero padding: shifts up to max_shift never wrap around
    rf = lambda x: torch.fft.rfft2(x, s=(n, n))  # noqa: E731
    fa, fa2, fma = rf(a * ma), rf(a * a * ma), rf(ma)
    if rows_a is not None:
        fa, fa2, fma = fa[rows_a], fa2[rows_a], fma[rows_a]
    fb, fb2, fmb = rf(b * mb), rf(b * b * mb), rf(mb)
    idx = torch.cat([torch.arange(n - max_shift, n), torch.arange(0, max_shift + 1)])
    inv = _inverse_at(n, idx)  # made for each call (0.1 ms): no module-level cache (`test_architecture`)
    cnt = _corr(fma, fmb, inv)
    sa, sb = _corr(fa, fmb, inv), _corr(fma, fb, inv)
    sab, saa, sbb = _corr(fa, fb, inv), _corr(fa2, fmb, inv), _corr(fma, fb2, inv)
    # in place where a result is not read again (the same numbers, with fewer temporary tensors)
    cnt = cnt.round_().clamp_(min=0)
    safe = cnt.clamp(min=1)
    floor = safe * flat_std ** 2
    va = torch.maximum(saa.sub_(sa * sa / safe).clamp_(min=0), floor)
    vb = torch.maximum(sbb.sub_(sb * sb / safe).clamp_(min=0), floor)
    ncc = sab.sub_(sa * sb / safe).div_(va.mul_(vb).sqrt_())
    return ncc.clamp_(-1, 1), cnt


@dataclass
class Alignment:
    """The best transform of the eval image onto the training image and the evidence on their overlap."""

    variant: int
    dy: int
    dx: int
    ncc: float
    ncc_grad: float
    overlap: float


def align(lum_a: np.ndarray, mask_a: np.ndarray, lum_b: np.ndarray, mask_b: np.ndarray,
          vs: tuple[Variant, ...] = VARIANTS) -> list[Alignment]:
    """Align each eval canvas (P, S, S) onto its training canvas: best variant and shift by mean NCC of
    luminance and gradients, over shifts whose overlap is at least MIN_OVERLAP of the smaller image."""
    return _align(lum_a, mask_a, lum_b, mask_b, vs)[0]


def _align(lum_a, mask_a, lum_b, mask_b, vs=VARIANTS, rows_a=None) -> tuple[list[Alignment], np.ndarray, np.ndarray]:
    """`align`, plus each eval canvas moved by its alignment onto the training canvas ((P, S, S) luminance and
    mask, in training coordinates): the variants are transformed here once, not again per pair. With `rows_a`
    (P,), the eval canvases are each image once (U, S, S) and pair i's is row rows_a[i]: an eval image's variants
    and their transforms are computed once however many pairs it is in (the same numbers)."""
    import torch
    la, ma = torch.from_numpy(np.ascontiguousarray(lum_a)), torch.from_numpy(np.ascontiguousarray(mask_a))
    lb, mb = torch.from_numpy(np.ascontiguousarray(lum_b)), torch.from_numpy(np.ascontiguousarray(mask_b))
    rows = torch.arange(len(la)) if rows_a is None else torch.as_tensor(np.asarray(rows_a), dtype=torch.long)
    s = la.shape[-1]
    m = max(1, int(round(MAX_SHIFT * s)))
    ta, tma = transformed(la, ma, vs)
    ga, gma = gradient(ta, tma)
    gb, gmb = gradient(lb, mb)
    with torch.no_grad():
        ncc, cnt = masked_ncc(ta, tma, lb[:, None], mb[:, None], m, rows_a=rows)
        nccg, _ = masked_ncc(ga, gma, gb[:, None], gmb[:, None], m, FLAT_GRAD_STD, rows_a=rows)
    smaller = torch.minimum(tma.sum((-2, -1))[rows], mb.sum((-2, -1))[:, None]).clamp(min=1)  # (P, V)
    frac = cnt / smaller[..., None, None]
    score = torch.where(frac >= MIN_OVERLAP, (ncc + nccg) / 2, torch.full_like(ncc, -2.0))
    p = score.shape[0]
    flat = score.reshape(p, -1)
    best = flat.argmax(1)
    w = 2 * m + 1
    v, rest = best // (w * w), best % (w * w)
    dy, dx = rest // w - m, rest % w - m
    get = lambda x: x.reshape(p, -1).gather(1, best[:, None])[:, 0]  # noqa: E731
    n1, n2, fr = get(ncc), get(nccg), get(frac)
    ok = get(score) > -2
    als = [Alignment(int(v[i]), int(dy[i]), int(dx[i]), float(n1[i]) if ok[i] else 0.0,
                     float(n2[i]) if ok[i] else 0.0, float(fr[i]) if ok[i] else 0.0) for i in range(p)]
    chosen, chosen_mask = ta[rows, v].numpy(), tma[rows, v].numpy()
    for i, al in enumerate(als):  # shifted in place of the chosen canvases (copies out of the torch tensors)
        chosen[i], chosen_mask[i] = _shift(chosen[i], al.dy, al.dx), _shift(chosen_mask[i], al.dy, al.dx)
    return als, chosen, chosen_mask


def _shift(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """out[q] = x[q - (dy, dx)], zero outside."""
    out = np.zeros_like(x)
    h, w = x.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = x[ys, xs]
    return out


def overlap_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM over the 7 x 7 windows that lie wholly inside the overlap. The map is scikit-image's
    `structural_similarity(a, b, data_range=1, win_size=7, full=True)` (uniform windows, the sample covariance,
    reflected borders), computed with OpenCV's box filter: the same values within 2e-7, in an eighth of the time
    (1.7 ms a pair, most of the SSIM's share of the evidence)."""
    import cv2

    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)

    def mean(x):
        return cv2.boxFilter(x, cv2.CV_32F, (7, 7), borderType=cv2.BORDER_REFLECT)

    ua, ub = mean(a), mean(b)
    n = 49 / 48  # the sample covariance over a window's 49 pixels
    va, vb, cov = n * (mean(a * a) - ua * ua), n * (mean(b * b) - ub * ub), n * (mean(a * b) - ua * ub)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    smap = ((2 * ua * ub + c1) * (2 * cov + c2)) / ((ua * ua + ub * ub + c1) * (va + vb + c2))
    inside = cv2.erode((mask > 0.5).astype(np.uint8), np.ones((7, 7), np.uint8), borderType=cv2.BORDER_CONSTANT,
                       borderValue=1) > 0  # a window wholly inside (the canvas's edge is no edge of the overlap)
    return float(smap[inside].mean()) if inside.any() else 0.0


def detail_and_difference(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(NCC of the fine detail, median absolute luminance difference) of two aligned canvases on their overlap.
    The detail is each image minus its Gaussian blur, compared two pixels inside the overlap's edge where the blur
    does not mix in the zeros outside; (0, 1) when the overlap is too small to say. The erosion and the blur are
    OpenCV's with scipy.ndimage's defaults (a cross, zeros outside; a kernel to 4 sigma, reflected borders): the
    same values within 2e-7, in a fifth of the time (this runs twice a pair, holding Python's lock between calls)."""
    import cv2

    inside = mask > 0.5
    if inside.sum() < 16:
        return 0.0, 1.0
    diff = float(np.median(np.abs(a - b)[inside]))
    core = cv2.erode(inside.astype(np.uint8), _CROSS, iterations=2, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
    if core.sum() < 16:
        return 0.0, diff
    k = 2 * int(4 * DETAIL_SIGMA + 0.5) + 1  # scipy's kernel: out to 4 sigma
    blur = lambda x: cv2.GaussianBlur(x, (k, k), DETAIL_SIGMA, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    am, bm = np.asarray(a * mask, np.float32), np.asarray(b * mask, np.float32)
    x, y = (am - blur(am))[core], (bm - blur(bm))[core]
    x, y = x - x.mean(), y - y.mean()
    floor = core.sum() * (FLAT_STD / 4) ** 2  # flat detail (an empty sky) correlates with nothing
    return float((x * y).sum() / np.sqrt(max((x * x).sum(), floor) * max((y * y).sum(), floor))), diff


_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)  # scipy.ndimage's default structuring element


def _on_overlap(a: np.ndarray, b: np.ndarray, mask: np.ndarray, al: Alignment) -> tuple[float, float, float]:
    """(SSIM, detail NCC, median difference) of an aligned pair on its overlap: what `evidence` stores and
    `explain` shows, computed in one place."""
    if al.overlap <= 0:
        return 0.0, 0.0, 1.0
    return (overlap_ssim(a * mask, b * mask, mask), *detail_and_difference(a, b, mask))


def refine(train: np.ndarray, moved: np.ndarray, mask: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """Refine an alignment: the eval canvas `moved` (already aligned onto `train` by `_align`, `mask` their
    overlap) warped by the affine map that ECC fits from the identity at REFINE_SIZE. Returns the evidence on the
    refined overlap (`REFINED`: NCC at REFINE_SIZE; detail NCC, median difference and the overlap's share of the
    canvas at working size) and the warped canvas and mask at working size. Where ECC does not converge the
    identity stands (the evidence is then that of the coarse alignment, resampled). Callers skip pairs with no
    coarse alignment (overlap 0): they get no refined evidence either."""
    import cv2

    s = train.shape[0]
    t, a, m, warp = _ecc(train, moved, mask)
    flags = cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP
    wa = cv2.warpAffine(a, warp, (REFINE_SIZE, REFINE_SIZE), flags=flags)
    wm = (cv2.warpAffine(m.astype(np.float32), warp, (REFINE_SIZE, REFINE_SIZE), flags=flags) > 0.999).astype(np.float32)
    inside = wm > 0.5
    if inside.sum() < 16:
        return dict(_NO_REFINED), np.zeros_like(moved), np.zeros_like(mask)
    x, y = wa[inside] - wa[inside].mean(), t[inside] - t[inside].mean()
    ncc = float((x * y).sum() / np.sqrt(max(float((x * x).sum()), 1e-9) * max(float((y * y).sum()), 1e-9)))
    down = lambda x: cv2.resize(x, (s, s), interpolation=cv2.INTER_AREA)  # noqa: E731
    wa, wm = down(wa), (down(wm) > 0.999).astype(np.float32)
    detail, diff = detail_and_difference(wa, train, wm)
    out = {"ncc_refined": ncc, "detail_refined": detail, "diff_refined": diff, "overlap_refined": float(inside.mean())}
    return out, wa * wm, wm


def _orb_size(size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of an image as the local features read it: its longer side at most ORB_SIDE."""
    scale = min(1.0, ORB_SIDE / max(size))
    return (max(1, round(size[0] * scale)), max(1, round(size[1] * scale))) if scale < 1 else tuple(size)


def _orb_gray(img: Image.Image) -> np.ndarray:
    g = img.convert("L")
    size = _orb_size(g.size)
    return np.asarray(g.resize(size, Image.Resampling.BILINEAR) if size != g.size else g)


def _orb(gray: np.ndarray, n_features: int):
    """(keypoint positions, descriptors) of one grey image, or None where too few. The image is detected on with
    its border reflected ORB_PAD pixels outwards and the features found in that margin dropped: ORB finds none within
    its patch of a border, which on a crop a few hundred pixels wide is most of the picture."""
    import cv2

    h, w = gray.shape
    padded = cv2.copyMakeBorder(gray, ORB_PAD, ORB_PAD, ORB_PAD, ORB_PAD, cv2.BORDER_REFLECT_101)
    kp, des = cv2.ORB_create(nfeatures=n_features, scaleFactor=ORB_SCALE, nlevels=ORB_LEVELS,
                             fastThreshold=ORB_FAST_THRESHOLD).detectAndCompute(padded, None)
    if des is None:
        return None
    pts = cv2.KeyPoint_convert(kp) - ORB_PAD  # the same as [k.pt for k in kp], without a Python loop over 1,000
    inside = (pts[:, 0] >= 0) & (pts[:, 1] >= 0) & (pts[:, 0] < w) & (pts[:, 1] < h)
    return (pts[inside], des[inside]) if int(inside.sum()) >= 8 else None


def orb_features(img: Image.Image, mirrored: bool = False, n_features: int = ORB_FEATURES, *,
                 as_is: bool = True) -> list:
    """ORB (keypoint positions, descriptors) of an image at ORB_SIDE, of its mirror too when asked (only the
    mirror's with `as_is=False`), None where too few: found once per image, however many pairs it is in. An eval
    image gets ORB_FEATURES, a training image ORB_TRAIN_FEATURES (`n_features`)."""
    return _orb_views(_orb_gray(img), mirrored, n_features, as_is)


def _orb_views(g: np.ndarray, mirrored: bool, n_features: int, as_is: bool) -> list:
    """`orb_features` of an image already grey at ORB_SIDE."""
    views = ((g,) if as_is else ()) + ((np.ascontiguousarray(g[:, ::-1]),) if mirrored else ())
    return [_orb(v, n_features) for v in views]


def _luminance_at(gray: Image.Image, side: int) -> np.ndarray:
    scale = side / max(gray.size)
    size = (max(1, round(gray.width * scale)), max(1, round(gray.height * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    return np.asarray(gray.resize(size, resample), np.uint8)


class CropViews:
    """One image's luminance for the crop search, uint8: at CROP_SIDE on its longer side (`target`, where other
    images are searched for) and its half, and at CROP_QUERY_SIDE (`query`, searched for in others), with the
    query's scaled copies kept (the targets all have a longer side of CROP_SIDE, so one copy serves every pair)."""

    def __init__(self, gray: Image.Image):
        import cv2

        self.target = _luminance_at(gray, CROP_SIDE)
        self.half = cv2.resize(self.target, (max(1, self.target.shape[1] // 2), max(1, self.target.shape[0] // 2)),
                               interpolation=cv2.INTER_AREA)
        self.query = _luminance_at(gray, CROP_QUERY_SIDE)
        self.query_half = cv2.resize(self.query, (max(1, self.query.shape[1] // 2), max(1, self.query.shape[0] // 2)),
                                     interpolation=cv2.INTER_AREA)
        self._scaled: dict = {}

    def scaled(self, longer: float) -> np.ndarray | None:
        """The query with `longer` pixels on its longer side (made from the query at half size where that is at
        least twice as large: a quarter of the pixels to average); None where under 12 px on a side or flat."""
        import cv2

        key = round(longer, 3)
        if key not in self._scaled:
            source = self.query_half if 2 * longer <= max(self.query_half.shape) else self.query
            scale = longer / max(source.shape)
            h, w = round(source.shape[0] * scale), round(source.shape[1] * scale)
            crop = cv2.resize(source, (w, h), interpolation=cv2.INTER_AREA) if min(h, w) >= 12 else None
            self._scaled[key] = crop if crop is not None and float(crop.std()) >= 255 * FLAT_STD else None
        return self._scaled[key]


def locate_crop(query: CropViews, target: CropViews) -> tuple[float, float, tuple[float, float, float, float] | None]:
    """(NCC, detail NCC, place) of one image (`query`) found as a crop of another (`target`): scaled so that its longer
    side is each of CROP_FRACTIONS of the other's, and slid over it (OpenCV's normalised cross-correlation) at half
    size, then at full size around the best fraction (CROP_REFINE) where that found a place (CROP_COARSE_MIN); the
    best place's NCC, and there the NCC of the fine detail (luminance minus its blur), which smooth regions of two
    different photos do not share (0 where not refined); the place is (x, y, width, height) as fractions of the
    target's sides (None where not refined).

    A strong crop of a photo (a fur, a flank, a leaf: 45-60% of each side) has too few corners for local features
    and is too small for the alignment's scales (0.8-1.25); here such crops were found at NCC 0.97-1.00 (the planted
    copies of bench/verify_crops.py)."""
    import cv2

    coarse = max(((_place(query.scaled(f * max(target.half.shape)), target.half)[0], f) for f in CROP_FRACTIONS),
                 default=(-1.0, None))
    if coarse[1] is None or coarse[0] <= -1.0:
        return 0.0, 0.0, None
    if coarse[0] < CROP_COARSE_MIN:  # no crop here: the half-size NCC is returned as it is
        return coarse[0], 0.0, None
    side = max(target.target.shape)
    top, crop, place, at = max((_place(query.scaled(coarse[1] * r * side), target.target) for r in CROP_REFINE),
                               key=lambda t: t[0])
    if crop is None:
        return 0.0, 0.0, None
    detail = [x - cv2.GaussianBlur(x, (0, 0), CROP_DETAIL_SIGMA) for x in (crop / 255.0, place / 255.0)]
    h, w = target.target.shape
    box = (at[0] / w, at[1] / h, crop.shape[1] / w, crop.shape[0] / h)
    return float(top), ncc(*detail), box


def _place(crop: np.ndarray | None, target: np.ndarray):
    """(best NCC, the crop, the target's patch there, its (x, y)); (-1, None, None, None) where there is no crop or it
    does not fit."""
    import cv2

    if crop is None or crop.shape[0] > target.shape[0] or crop.shape[1] > target.shape[1]:
        return -1.0, None, None, None
    _, top, _, (x, y) = cv2.minMaxLoc(cv2.matchTemplate(target, crop, cv2.TM_CCOEFF_NORMED))
    return float(top), crop, target[y:y + crop.shape[0], x:x + crop.shape[1]], (x, y)


@dataclass
class CropFound:
    """One image of a pair searched for inside the other (`crop_either_way`): `inside` is "eval" (the evaluation image
    searched for in the training image) or "train"; `ncc` and `detail` as `locate_crop`'s; `box` (x, y, width,
    height) as fractions of the other image's sides, None where the search found no place to refine."""

    inside: str
    ncc: float
    detail: float
    box: tuple[float, float, float, float] | None


def crop_decides(ncc_: float, detail: float) -> bool:
    """Whether a crop search's place decides its pair by the crop rule (TWIN_CROP_NCC, TWIN_CROP_DETAIL: what
    `scores.fused.decided_by_crop` reads from stored evidence)."""
    return ncc_ >= TWIN_CROP_NCC and detail >= TWIN_CROP_DETAIL


def crop_either_way(eval_views: CropViews, train_views: CropViews) -> CropFound:
    """`locate_crop` either way round (the eval image a crop of the training image, or the training image a crop of
    the eval image): the first way where it decides the pair (`crop_decides`; the second is then not searched),
    else the better by (NCC, detail NCC). What `evidence` stores and the Review page outlines (`find_crop`)."""
    first = CropFound("eval", *locate_crop(eval_views, train_views))
    if crop_decides(first.ncc, first.detail):
        return first
    return max(first, CropFound("train", *locate_crop(train_views, eval_views)), key=lambda f: (f.ncc, f.detail))


def find_crop(eval_image: Image.Image, train_image: Image.Image) -> CropFound | None:
    """The crop search of `evidence` for display (`crop_either_way`), or None where neither image was refined as a
    crop of the other."""
    found = crop_either_way(CropViews(eval_image.convert("L")), CropViews(train_image.convert("L")))
    return found if found.box is not None else None


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """The normalised cross-correlation of two arrays of one shape; 0 where either is flat. Shared with
    `grouping.overlap_ncc`."""
    a, b = a - a.mean(), b - b.mean()
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / norm) if norm > 1e-9 else 0.0


@dataclass
class OrbMatch:
    """The local matches of a pair under their best map: inliers at distinct places, the share of the kept matches
    that are inliers, which of the eval image's views matched (0 as is, 1 mirrored) and the map (2 x 3, eval view ->
    training image, ORB_SIDE pixels)."""

    inliers: int = 0
    ratio: float = 0.0
    view: int = 0
    transform: np.ndarray | None = None


def orb_pair(eval_features: list, train_features: list) -> tuple[int, float]:
    """(RANSAC inliers, inlier ratio) of ORB matches under a partial affine model (rotation, scale, shift), the
    eval image's views (as is, mirrored: `orb_features(.., mirrored=True)`) against the training image's features
    (`orb_map` with the map left out)."""
    m = orb_map(eval_features, train_features)
    return m.inliers, m.ratio


def orb_map(eval_features: list, train_features: list) -> OrbMatch:
    """The best of the eval image's views against the training image's features. A match is kept where it passes
    the ratio test (ORB_RATIO_TEST); inliers are counted at distinct places (`distinct_places`, the fewer of the two
    images'), the ratio is all inliers over kept matches."""
    import cv2

    tb = train_features[0]
    if tb is None:
        return OrbMatch()
    best = OrbMatch()
    for view, ta in enumerate(eval_features):
        if ta is None:
            continue
        query, train = _ratio_matches(ta[1], tb[1])
        if len(query) < 8:
            continue
        src, dst = ta[0][query], tb[0][train]
        fit, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=4.0,
                                               maxIters=2000, confidence=0.99)
        keep = inl.ravel().astype(bool) if inl is not None else np.zeros(len(query), bool)
        # ORB finds one spot at several scales (an eye, a corner): inliers count once per place, in both images
        n = min(distinct_places(src[keep], ORB_DISTINCT_PX), distinct_places(dst[keep], ORB_DISTINCT_PX))
        if n > best.inliers:
            best = OrbMatch(n, int(keep.sum()) / len(query), view, fit)
    return best


def away_agreement(eval_gray: np.ndarray, train_gray: np.ndarray, match: OrbMatch) -> tuple[float, float]:
    """(share of the textured tiles that agree, textured tiles) of the eval image moved onto the training image by
    the local matches' map: the overlap cut into AWAY_TILE px tiles (at ORB_SIDE), a tile textured where both sides'
    luminance varies (std at least AWAY_TEXTURE grey levels), agreeing where its NCC is at least AWAY_TILE_NCC;
    (NaN, tiles) with fewer than AWAY_MIN_TILES textured tiles; (0, 0) where the map puts less than AWAY_MIN_COVER
    of the smaller image inside the other. Both images are grey at ORB_SIDE, the eval image in
    the view that matched. A copy's photo agrees over most of the overlap, as its matches do (a bannered copy's
    banner is the part that does not); two photos under one banner or watermark match on the overlay alone and agree
    there only. On the draw the rule was set on (seed 11 of bench/verify_overlay_pairs.py), at most 0.553 of the tiles
    agreed for the 94 overlay pairs the matches decided by two parts, and at least 0.635 for 290 copies."""
    import cv2

    if match.transform is None:
        return float("nan"), 0.0
    a = np.ascontiguousarray(eval_gray, np.float32)
    b = np.ascontiguousarray(train_gray, np.float32)
    h, w = b.shape
    moved = cv2.warpAffine(a, match.transform, (w, h), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones_like(a), match.transform, (w, h), flags=cv2.INTER_NEAREST, borderValue=0) > 0
    t = AWAY_TILE
    rows, cols = h // t, w // t
    if not rows or not cols:
        return float("nan"), 0.0

    def tiled(x):  # (rows, cols, t * t)
        return x[:rows * t, :cols * t].reshape(rows, t, cols, t).swapaxes(1, 2).reshape(rows, cols, t * t)

    # the share of the smaller image inside the other under the map (the eval view's area scaled by the map)
    smaller = min(abs(float(np.linalg.det(match.transform[:, :2]))) * a.size, float(b.size))
    if float(inside.sum()) < AWAY_MIN_COVER * smaller:
        return 0.0, 0.0
    u, v, full = tiled(moved), tiled(b), tiled(inside).all(axis=2)
    u, v = u - u.mean(axis=2, keepdims=True), v - v.mean(axis=2, keepdims=True)
    su, sv = np.sqrt((u * u).mean(axis=2)), np.sqrt((v * v).mean(axis=2))
    textured = full & (su >= AWAY_TEXTURE) & (sv >= AWAY_TEXTURE)
    n = int(textured.sum())
    if n < AWAY_MIN_TILES:
        return float("nan"), float(n)
    corr = (u * v).mean(axis=2)[textured] / (su[textured] * sv[textured])
    return float((corr >= AWAY_TILE_NCC).mean()), float(n)


def distinct_places(points: np.ndarray, px: float = 4.0) -> int:
    """The distinct places among keypoint positions (n, 2): those closer than `px` count once (ORB finds one spot
    at several scales). Shared with `grouping.match_features`."""
    if not len(points):
        return 0
    q = np.round(points / px).astype(np.int64)
    q -= q.min(axis=0)
    # each row as one integer: np.unique(axis=0) sorts rows as structured values, at a tenth of the speed
    return len(np.unique(q[:, 0] * (int(q[:, 1].max()) + 1) + q[:, 1]))


def _ratio_matches(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query rows, train rows) of the matches that pass the ratio test, from ORB descriptors (n, 32 bytes): each
    eval descriptor's nearest training descriptor by Hamming distance, kept where its distance is under
    ORB_RATIO_TEST of the second nearest's. faiss's binary flat index finds the two nearest (0.9 ms a pair for
    400 x 1,000 descriptors, against 2.3 ms for XOR and popcount in numpy and 7 ms for OpenCV's brute-force
    `knnMatch(k=2)`, with the same matches: where the two nearest tie the ratio test fails whichever comes first)."""
    import faiss

    if len(a) == 0 or len(b) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    index = faiss.IndexBinaryFlat(8 * b.shape[1])
    index.add(np.ascontiguousarray(b))
    dist, nearest = index.search(np.ascontiguousarray(a), 2)
    keep = dist[:, 0] < ORB_RATIO_TEST * dist[:, 1]
    return np.flatnonzero(keep), nearest[keep, 0].astype(np.int64)


def orb_match(img_a: Image.Image, img_b: Image.Image) -> tuple[int, float]:
    """(RANSAC inliers, inlier ratio) of ORB matches under a partial affine model (rotation, scale, shift),
    trying the eval image as is and mirrored; (0, 0) when too few features."""
    return orb_pair(orb_features(img_a, mirrored=True), orb_features(img_b, n_features=ORB_TRAIN_FEATURES))


class _OneThread:
    """Torch, OpenCV and faiss on one thread while evidence is computed: the FFTs and matches are small, and on a busy
    machine (two cores shared with an embedding scan) torch's thread pool made the alignment 8x slower
    (88 against 11 ms per pair)."""

    def __enter__(self):
        import cv2
        import faiss
        import torch

        self.torch, self.cv2, self.faiss = torch.get_num_threads(), cv2.getNumThreads(), faiss.omp_get_max_threads()
        _one_thread()

    def __exit__(self, *exc):
        import cv2
        import faiss
        import torch

        torch.set_num_threads(self.torch)
        cv2.setNumThreads(self.cv2)
        faiss.omp_set_num_threads(self.faiss)


class ImageInputs:
    """What the evidence reads from one image, each part made from its pixels on first use and then kept: its
    size, the working canvas and ORB features (as is or mirrored, so many features). `image_inputs` keeps them by
    content hash on the workspace, so the fit's and the verification's evidence calls compute each image's parts
    once (on hymenoptera 17% of the ORB detections and 31% of the decodes were of images seen in an earlier call).
    With `load`, the decoded image is let go after each call of `evidence` (`release`) and decoded again only
    where a part not made yet is asked for (an eval image's mirror once an alignment mirrors it)."""

    def __init__(self, image: Image.Image, load: Callable[[], Image.Image | None] | None = None):
        self._image, self._load = image, load
        self._gray: Image.Image | None = None
        self.size = image.size
        self._canvas: tuple[np.ndarray, np.ndarray] | None = None
        self._orb_side: np.ndarray | None = None
        self._orb: dict = {}

    def gray(self) -> Image.Image:
        """The image in luminance, which the canvas and the features both start from (converted once)."""
        if self._gray is None:
            if self._image is None:
                self._image = self._load()
            self._gray = self._image if self._image.mode == "L" else self._image.convert("L")
        return self._gray

    def canvas(self) -> tuple[np.ndarray, np.ndarray]:
        if self._canvas is None:
            self._canvas = canvas(self.gray())
        return self._canvas

    def orb_gray(self) -> np.ndarray:
        """The luminance at ORB_SIDE that the local features and the tiles under their map read (kept until
        `release`)."""
        if self._orb_side is None:
            self._orb_side = _orb_gray(self.gray())
        return self._orb_side

    def orb(self, mirrored: bool = False, n_features: int = ORB_FEATURES):
        key = (mirrored, n_features)
        if key not in self._orb:
            self._orb[key] = _orb_views(self.orb_gray(), mirrored, n_features, as_is=not mirrored)[0]
        return self._orb[key]

    def crop_views(self) -> "CropViews":
        """The crop search's views of the image (about 80 KB with its scaled copies)."""
        if "crop" not in self._orb:
            self._orb["crop"] = CropViews(self.gray())
        return self._orb["crop"]

    def release(self) -> None:
        """Let the decoded image go where it can be loaded again (its parts stay)."""
        if self._load is not None:
            self._image = self._gray = self._orb_side = None


INPUTS_KEPT = 2048  # images whose evidence inputs a workspace keeps (at most ~160 KB each: canvas, 1,000 + 2 x 400
# ORB features, the crop search's views), the least recently used let go first


class _Recent:
    """A mapping that keeps its `size` most recently used entries."""

    def __init__(self, size: int):
        self.size, self._kept = size, OrderedDict()

    def __contains__(self, key) -> bool:
        return key in self._kept

    def __getitem__(self, key):
        self._kept.move_to_end(key)
        return self._kept[key]

    def __setitem__(self, key, value) -> None:
        self._kept[key] = value
        self._kept.move_to_end(key)
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)


def image_inputs(ws, items: "pd.DataFrame") -> list:
    """`ImageInputs` (None where unreadable) for item rows, in order, kept by content hash (`sha256`) on the
    workspace while its items do not change: only the images not kept yet are decoded."""
    kept = ws.cache("evidence inputs", (VERSION, ws.stamp("items")), lambda: _Recent(INPUTS_KEPT))
    rows = items.reset_index(drop=True)
    shas = rows["sha256"].tolist()
    first = {sha: n for n, sha in reversed(list(enumerate(shas)))}
    # this call's images are held here: with more distinct images than the workspace keeps (a chunk of CIFAR-10's
    # pairs holds up to 2,048), the last ones kept let the first ones go before the list below was made
    found = {sha: kept[sha] for sha in first if sha in kept}
    new = sorted(n for sha, n in first.items() if sha not in found)
    uris, places = rows["uri"].to_numpy(), rows["row"].to_numpy()
    # the evidence reads an image at ORB_SIDE at most (its canvas is 32 px): a large JPEG is decoded at a reduced
    # scale (its DCT's 1/2, 1/4 or 1/8) that keeps both sides at least that
    # and in luminance only, which is all the evidence reads (a JPEG's stored luma, its colour not decoded)
    for n, img in zip(new, load_images(rows.iloc[new], ws.sources, side=ORB_SIDE, gray=True)):
        again = lambda uri=str(uris[n]), row=int(places[n]): _decode(  # noqa: E731
            ws.sources.read(uri, row), ORB_SIDE, True)
        found[shas[n]] = kept[shas[n]] = None if img is None else ImageInputs(img, again)
    return [found[sha] for sha in shas]


def _decode(data: bytes | None, side: int | None = None, gray: bool = False) -> Image.Image | None:
    """The image, or None where unreadable; with `side`, a JPEG at the smallest scale of its DCT (1/2, 1/4, 1/8)
    that keeps both sides at least `side` (an image that small or smaller is decoded as it is); with `gray`, its
    luminance (`images.decode`)."""
    from leakcore import images

    dec = images.decode(data, draft_size=(side, side) if side else None, gray=gray) if data is not None else None
    return dec.image if dec is not None and dec.ok else None


def evidence(eval_images: list, train_images: list, *, batch: int = 64,
             progress: Callable[[int], None] | None = None, by_matches: bool = False) -> "pd.DataFrame":
    """Per pair: ncc, ncc_grad, ssim, overlap, orb_inliers (log1p), orb_ratio, orb_used, ncc_detail, abs_diff, the
    evidence after refinement (`REFINED`) and the coarse alignment (variant, dy, dx in working pixels). Images
    (PIL images, or `ImageInputs` kept from earlier calls) that could not be read are passed as None (no
    evidence). An image in several pairs (the same object) has its canvas and local features computed once.
    `progress(done)` is told, on the calling thread, how many pairs are done as batches finish (on photos a call
    of 537 pairs takes 5 s).

    With `by_matches`, a pair whose local matches (the eval image as it is) decide it by the match rule is aligned by
    their map (`_align_by_map`, its `variant` BY_MATCHES) instead of searched for: the scan's candidate pairs, where
    that rule decides the pair whatever the model says (0.5 ms a pair against 3-5 ms for the search and ECC). The
    fit's pairs are searched, every one: the model is used on the pairs no rule decides, and map-aligned copies in
    its fitting set (NCC 0.99 where the search found 0.83) moved it (the demo's fit lost a planted tile and flagged
    two more)."""
    import pandas as pd

    wrapped: dict = {}

    def inputs(img):
        if img is None or isinstance(img, ImageInputs):
            return img
        if id(img) not in wrapped:
            wrapped[id(img)] = ImageInputs(img)
        return wrapped[id(img)]

    eval_images, train_images = [inputs(i) for i in eval_images], [inputs(i) for i in train_images]
    cores = _cores()
    size = _batch_size(len(eval_images), batch, cores)
    starts = range(0, len(eval_images), size)
    with _OneThread():
        # batches on a thread each, as many at once as there are cores: the FFTs, ORB and the matching release
        # Python's lock, and each pair's evidence is its own (the same numbers in any order)
        workers = min(len(starts), cores)
        one = lambda s: _evidence_batch(eval_images[s:s + size], train_images[s:s + size], by_matches)  # noqa: E731
        parts: list = []
        done = 0
        with ThreadPoolExecutor(workers, initializer=_one_thread) if workers > 1 else nullcontext() as pool:
            for part in (pool.map(one, starts) if pool is not None else map(one, starts)):  # in order, as they finish
                parts.append(part)
                done += len(part)
                if progress is not None:
                    progress(done)
    rows = [row for part in parts for row in part]
    for img in (*eval_images, *train_images):
        if img is not None:
            img.release()
    cols = list(EVIDENCE) + ["variant", "dy", "dx"]
    return pd.DataFrame(rows, columns=cols).astype({"variant": np.int16, "dy": np.int16, "dx": np.int16})


def _batch_size(n: int, batch: int, cores: int) -> int:
    """Pairs per batch: at most `batch`, in a number of batches that the cores share evenly (74 pairs in batches
    of 64 kept one of two cores busy for 10 pairs; in two of 37 both work throughout)."""
    count = -(-n // batch)
    if cores > 1:
        count = min(n, -(-count // cores) * cores)
    return max(1, -(-n // max(1, count)))


def _one_thread() -> None:
    """Torch, OpenCV and faiss on one thread, in this thread (OpenMP's setting is each thread's own, so the evidence's
    worker threads set it too)."""
    import cv2
    import faiss
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    faiss.omp_set_num_threads(1)  # the matcher's search


def _cores() -> int:
    """The cores this process may run on, at most OMP_NUM_THREADS where that is set (Ray sets it for its workers;
    a user pins it to leave cores free)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    pinned = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cores, int(pinned))) if pinned.isdigit() else cores


def _evidence_batch(ea: list, tb: list, by_matches: bool = False) -> list[dict]:
    """`evidence` of one batch of pairs (`ImageInputs` or None each)."""
    ok = [i for i, (a, b) in enumerate(zip(ea, tb)) if a is not None and b is not None]
    out = [dict(_NO_EVIDENCE) for _ in ea]
    if not ok:
        return out
    # the local matches as is first: with `by_matches`, a pair they decide is aligned by their map (`_align_by_map`)
    first = {i: _matches_as_is(ea[i], tb[i]) for i in ok}
    for i in ok:
        if by_matches and first[i] is not None and _matches_decide(first[i][0].inliers, first[i][0].ratio,
                                                                   first[i][1][0]):
            out[i] = _settled_evidence(ea[i], tb[i], *first[i])
    ok = [i for i in ok if out[i]["variant"] != BY_MATCHES]
    if not ok:
        return out
    once: dict = {}  # each eval image once (its variants are transformed once), in order
    for i in ok:
        once.setdefault(id(ea[i]), ea[i])
    row_of = {key: n for n, key in enumerate(once)}
    ca = [img.canvas() for img in once.values()]
    cb = [tb[i].canvas() for i in ok]
    la, ma = np.stack([c[0] for c in ca]), np.stack([c[1] for c in ca])
    lb, mb = np.stack([c[0] for c in cb]), np.stack([c[1] for c in cb])
    als, moved, moved_mask = _align(la, ma, lb, mb, rows_a=[row_of[id(ea[i])] for i in ok])
    for j, (i, al) in enumerate(zip(ok, als)):
        ssim, detail, diff = _on_overlap(moved[j], lb[j], moved_mask[j] * mb[j], al)
        refined = refine(lb[j], moved[j], moved_mask[j] * mb[j])[0] if al.overlap > 0 else dict(_NO_REFINED)
        use_orb = min(ea[i].size) >= ORB_MIN_SIDE and min(tb[i].size) >= ORB_MIN_SIDE
        # the eval image's mirror is matched only where the alignment mirrored it (a crop too strong to align is
        # matched as is): on photos the mirror's features were a third of the ORB work
        inl, ratio, away = 0, 0.0, (float("nan"), 0.0)
        if use_orb:
            match, away = first[i]
            if VARIANTS[al.variant].dihedral >= 4:  # as `orb_map` over both views: the mirror where it finds more
                mirror = orb_map([None, ea[i].orb(mirrored=True)], [tb[i].orb(n_features=ORB_TRAIN_FEATURES)])
                if mirror.inliers > match.inliers:
                    match, away = mirror, (float("nan"), 0.0)
                    if mirror.inliers >= AWAY_FROM_INLIERS:
                        ga = ea[i].orb_gray()
                        away = away_agreement(np.ascontiguousarray(ga[:, ::-1]), tb[i].orb_gray(), mirror)
            inl, ratio = match.inliers, match.ratio
        crop_ncc, crop_detail = 0.0, 0.0
        sides = sorted((min(ea[i].size), min(tb[i].size)))
        if _matches_decide(inl, ratio, away[0]):
            crop_ncc, crop_detail = float("nan"), float("nan")  # not searched: the local matches decide the pair
        elif sides[0] >= CROP_MIN_SIDE and sides[1] >= ORB_MIN_SIDE:  # not on CIFAR-10's 32 px
            found = crop_either_way(ea[i].crop_views(), tb[i].crop_views())
            crop_ncc, crop_detail = found.ncc, found.detail
        out[i] = {"ncc": al.ncc, "ncc_grad": al.ncc_grad, "ssim": ssim, "overlap": al.overlap,
                  "orb_inliers": float(np.log1p(inl)), "orb_ratio": ratio, "orb_used": float(use_orb),
                  "ncc_detail": detail, "abs_diff": diff, **refined, "crop_ncc": crop_ncc, "crop_detail": crop_detail,
                  "tiles_agree": away[0], "tiles_textured": away[1], "variant": al.variant, "dy": al.dy, "dx": al.dx}
    return out


def _matches_decide(inliers: int, ratio: float, tiles_agree: float) -> bool:
    """Whether a pair's local matches decide it by the fused score's rule (MATCH_RULE, which every
    model of this evidence version applies): its crop search would change nothing, so it is not run (on
    hymenoptera half of the candidate pairs, each a planted copy whose crop search refines at full size)."""
    return (inliers >= MATCH_RULE[0] and ratio >= MATCH_RULE[1]
            and (math.isnan(tiles_agree) or tiles_agree >= MATCH_RULE[2]))


def _matches_as_is(ea: "ImageInputs", tb: "ImageInputs") -> "tuple[OrbMatch, tuple[float, float]] | None":
    """(the local matches of the eval image as it is against the training image, the tiles that agree under their
    map: `away_agreement`, where the matches are AWAY_FROM_INLIERS or more), or None where an image is too small for
    local features."""
    if min(ea.size) < ORB_MIN_SIDE or min(tb.size) < ORB_MIN_SIDE:
        return None
    match = orb_map([ea.orb()], [tb.orb(n_features=ORB_TRAIN_FEATURES)])
    away = (float("nan"), 0.0)
    if match.inliers >= AWAY_FROM_INLIERS:
        away = away_agreement(ea.orb_gray(), tb.orb_gray(), match)
    return match, away


def _settle_by_matches(ea: "ImageInputs", tb: "ImageInputs") -> "tuple[OrbMatch, tuple[float, float]] | None":
    """`_matches_as_is` where those matches decide the pair (`_matches_decide`), else None."""
    found = _matches_as_is(ea, tb)
    if found is None or not _matches_decide(found[0].inliers, found[0].ratio, found[1][0]):
        return None
    return found


def _measured_on_map(ea: "ImageInputs", tb: "ImageInputs", match: "OrbMatch"):
    """(alignment, moved eval canvas, overlap mask, training canvas, SSIM, detail NCC, median difference, refined
    evidence) of a pair measured where its local matches' map puts the eval image: what `evidence` stores and
    `explain` shows of such a pair, computed in one place."""
    la, ma = ea.canvas()
    lb, mb = tb.canvas()
    al, moved, moved_mask = _align_by_map(la, ma, lb, mb, match, ea.size, tb.size)
    m = moved_mask * mb
    ssim, detail, diff = _on_overlap(moved, lb, m, al)
    return al, moved, m, lb, ssim, detail, diff, _on_map(al, detail, diff, m)


def _settled_evidence(ea: "ImageInputs", tb: "ImageInputs", match: "OrbMatch", away: tuple[float, float]) -> dict:
    """The evidence of a pair its local matches as is decide: the pixels compared where their map puts the eval
    image (`_measured_on_map`), no crop search (NaN, as version 13)."""
    al, _, _, _, ssim, detail, diff, refined = _measured_on_map(ea, tb, match)
    return {"ncc": al.ncc, "ncc_grad": al.ncc_grad, "ssim": ssim, "overlap": al.overlap,
            "orb_inliers": float(np.log1p(match.inliers)), "orb_ratio": match.ratio, "orb_used": 1.0,
            "ncc_detail": detail, "abs_diff": diff, **refined, "crop_ncc": float("nan"), "crop_detail": float("nan"),
            "tiles_agree": away[0], "tiles_textured": away[1], "variant": BY_MATCHES, "dy": 0, "dx": 0}


def _on_map(al: Alignment, detail: float, diff: float, overlap_mask: np.ndarray) -> dict:
    """The refined evidence (`REFINED`) of a pair aligned by its local matches' map: the evidence on that map, which
    needs no refinement (ECC at REFINE_SIZE fits an affine map from 48 px canvases; the matches' map was found at
    ORB_SIDE). No refined evidence where the map leaves too little overlap, as `refine` is skipped there."""
    if al.overlap <= 0:
        return dict(_NO_REFINED)
    return {"ncc_refined": al.ncc, "detail_refined": detail, "diff_refined": diff,
            "overlap_refined": float((overlap_mask > 0.5).mean())}


def _align_by_map(lum_a: np.ndarray, mask_a: np.ndarray, lum_b: np.ndarray, mask_b: np.ndarray, match: "OrbMatch",
                  eval_size: tuple[int, int], train_size: tuple[int, int]) -> tuple[Alignment, np.ndarray, np.ndarray]:
    """The eval canvas (S, S) moved onto the training canvas by the local matches' map (`matches_transform` at the
    canvas's size), and the alignment's evidence there as `_align` measures it at its best shift: the masked NCC of
    luminance and of gradients, and the overlap's share of the smaller image (0 for all three under MIN_OVERLAP).
    Where the matches decide a pair their map is found at ORB_SIDE, sixteen times the canvas: the search among 20
    variants and 33 x 33 shifts at 32 px, and ECC after it, would only approximate it (they cost 5 ms a pair)."""
    import cv2
    import torch

    s = lum_a.shape[-1]
    to_eval = (np.linalg.inv(_fit_matrix(*eval_size, s)) @ matches_transform(match, eval_size, train_size, s))[:2]
    flags = cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP
    mask = (cv2.warpAffine(np.asarray(mask_a, np.float32), to_eval.astype(np.float32), (s, s), flags=flags)
            > 0.999).astype(np.float32)
    moved = cv2.warpAffine(np.asarray(lum_a, np.float32), to_eval.astype(np.float32), (s, s), flags=flags) * mask
    both = float((mask * mask_b).sum())
    if both < MIN_OVERLAP * max(1.0, min(float(mask.sum()), float(mask_b.sum()))):
        return Alignment(BY_MATCHES, 0, 0, 0.0, 0.0, 0.0), moved, mask
    ga, gma = gradient(torch.from_numpy(moved), torch.from_numpy(mask))
    gb, gmb = gradient(torch.from_numpy(np.asarray(lum_b, np.float32)), torch.from_numpy(np.asarray(mask_b, np.float32)))
    ncc = _masked_ncc_here(moved, mask, lum_b, mask_b, FLAT_STD)
    ncc_grad = _masked_ncc_here(ga.numpy(), gma.numpy(), gb.numpy(), gmb.numpy(), FLAT_GRAD_STD)
    return (Alignment(BY_MATCHES, 0, 0, ncc, ncc_grad, both / max(1.0, min(float(mask.sum()), float(mask_b.sum())))),
            moved, mask)


def _masked_ncc_here(a: np.ndarray, ma: np.ndarray, b: np.ndarray, mb: np.ndarray, flat_std: float) -> float:
    """`masked_ncc` at the one shift (0, 0), in numpy: the NCC of a and b over both masks, flat overlaps damped."""
    a, ma, b, mb = (np.asarray(x, np.float64) for x in (a, ma, b, mb))
    am, bm = a * ma, b * mb
    cnt = max(0.0, float(np.round((ma * mb).sum())))
    safe = max(cnt, 1.0)
    sa, sb, sab = float((am * mb).sum()), float((ma * bm).sum()), float((am * bm).sum())
    saa, sbb = float((a * am * mb).sum()), float((ma * b * bm).sum())
    floor = safe * flat_std ** 2
    va = max(max(saa - sa * sa / safe, 0.0), floor)
    vb = max(max(sbb - sb * sb / safe, 0.0), floor)
    return float(np.clip((sab - sa * sb / safe) / math.sqrt(va * vb), -1.0, 1.0))


@dataclass
class Explanation:
    """What the second stage saw for one pair, for a curator: the alignment it found and both images on the
    working canvas in the training image's coordinates (the eval image moved by that alignment)."""

    alignment: Alignment
    transform: str  # the variant in words ("mirrored, scaled x1.12")
    train: np.ndarray  # training luminance (S, S)
    aligned: np.ndarray  # the eval luminance moved onto it by the coarse alignment (S, S)
    overlap_mask: np.ndarray  # where both have pixels (S, S)
    ssim: float
    ncc_detail: float
    abs_diff: float
    refined: dict  # the evidence after refinement (`REFINED`)
    refined_aligned: np.ndarray  # the eval luminance after refinement (S, S), zero outside refined_mask
    refined_mask: np.ndarray
    # the refinement's affine map (2 x 3, output -> input, in REFINE_SIZE pixels); the identity when none
    refine_warp: np.ndarray = field(default_factory=lambda: np.eye(2, 3, dtype=np.float32))
    # whether the pictures show the refinement (`display_transform`): not where it lowered the overlap's NCC (ECC
    # can turn and shrink a copy that the coarse alignment already placed, as a bannered copy "as is")
    refine_shown: bool = True
    # where the local matches as is decide the pair: their map, which aligned it (`_align_by_map`); else None
    matches: "OrbMatch | None" = None


def refined_worse(x: "Explanation") -> bool:
    """Whether ECC's refinement lowered the overlap's agreement (its NCC or its fine detail's, or raised the median
    difference): a mirrored copy's detail went from 0.998 to 0.963 under it. `Explanation.refine_shown` asks the NCC
    alone, for the pictures."""
    r = x.refined
    return bool(r["ncc_refined"] < x.alignment.ncc - 0.005 or r["detail_refined"] < x.ncc_detail - 0.01
                or r["diff_refined"] > x.abs_diff + 1 / 255)


def explain(eval_image: Image.Image, train_image: Image.Image, *, by_matches: bool = False) -> Explanation:
    """The alignment and aligned canvases of one pair (the same computation as `evidence`, kept for display): the
    search among the variants refined by ECC, or with `by_matches` (a pair its stored evidence aligned so), the local
    matches' map where they decide the pair as is."""
    ea, tb = ImageInputs(eval_image), ImageInputs(train_image)
    settled = _settle_by_matches(ea, tb) if by_matches else None
    if settled is not None:
        al, a, m, lb, ssim, detail, diff, refined = _measured_on_map(ea, tb, settled[0])
        return Explanation(al, f"aligned by its {settled[0].inliers} local matches' map", lb, a, m, ssim, detail, diff,
                           refined, a * m, m, matches=settled[0])
    la, ma = ea.canvas()
    lb, mb = tb.canvas()
    (al,), moved, moved_mask = _align(la[None], ma[None], lb[None], mb[None])
    a, m = moved[0], moved_mask[0] * mb
    ssim, detail, diff = _on_overlap(a, lb, m, al)
    refined, ra, rm = refine(lb, a, m) if al.overlap > 0 else (dict(_NO_REFINED), np.zeros_like(a), np.zeros_like(m))
    warp = refine_warp(lb, a, m) if al.overlap > 0 and rm.any() else np.eye(2, 3, dtype=np.float32)
    shown = bool(refined["ncc_refined"] >= al.ncc)  # the pictures show the alignment that fits better
    return Explanation(al, VARIANTS[al.variant].label, lb, a, m, ssim, detail, diff, refined, ra, rm, warp, shown)


def _ecc(train: np.ndarray, moved: np.ndarray, mask: np.ndarray):
    """(train, moved, mask at REFINE_SIZE, the affine map ECC fits from the identity): the one fit `refine` measures
    on and `refine_warp` shows; the identity where ECC does not converge (a flat or tiny overlap)."""
    import cv2

    up = lambda x, how: cv2.resize(x, (REFINE_SIZE, REFINE_SIZE), interpolation=how)  # noqa: E731
    t, a = up(train, cv2.INTER_LINEAR), up(moved, cv2.INTER_LINEAR)
    m = up(mask, cv2.INTER_NEAREST) > 0.5
    warp = np.eye(2, 3, dtype=np.float32)
    try:
        _, warp = cv2.findTransformECC(t, a, warp, cv2.MOTION_AFFINE,
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, REFINE_ITERATIONS, REFINE_EPS),
                                       m.astype(np.uint8), 3)
    except cv2.error:
        pass
    return t, a, m, warp


def refine_warp(train: np.ndarray, moved: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The affine map `refine` fits, for display: 2 x 3, from refined output pixels to `moved`'s pixels at
    REFINE_SIZE; the identity where ECC does not converge."""
    return _ecc(train, moved, mask)[3]


# ---- the alignment at display resolution: the transform found on the working canvas, applied to the photos ------
def _fit_matrix(width: int, height: int, side: int) -> np.ndarray:
    """3 x 3: a pixel of the side x side canvas -> the pixel of the width x height image that `canvas` puts there
    (fitted by its longer side, centred; pixel centres at +0.5, as resizing does)."""
    scale = side / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    x0, y0 = (side - w) // 2, (side - h) // 2
    sx, sy = width / w, height / h
    return np.array([[sx, 0, (0.5 - x0) * sx - 0.5], [0, sy, (0.5 - y0) * sy - 0.5], [0, 0, 1]], dtype=np.float64)


def _regrid(n_from: int, n_to: int) -> np.ndarray:
    """3 x 3: a pixel of an n_from grid -> the same place on an n_to grid over the same square."""
    r = n_to / n_from
    return np.array([[r, 0, 0.5 * r - 0.5], [0, r, 0.5 * r - 0.5], [0, 0, 1]], dtype=np.float64)


def display_transform(x: Explanation, eval_size: tuple[int, int], train_size: tuple[int, int], side: int) -> np.ndarray:
    """3 x 3: a pixel of the training image's side x side display canvas -> the pixel of the evaluation image
    (full resolution) that the alignment puts there: the canvas fits, the variant (flip, turn, scale), the shift
    and the refinement's affine map, all found at WORK_SIZE, chained and scaled to the photos' own pixels."""
    if x.matches is not None:  # aligned by the local matches' map (`_align_by_map`)
        return matches_transform(x.matches, eval_size, train_size, side)
    s = x.train.shape[0]
    theta = _thetas((VARIANTS[x.alignment.variant],))[0].double().numpy()  # output -> input, normalised coordinates
    norm = np.array([[2 / s, 0, 1 / s - 1], [0, 2 / s, 1 / s - 1], [0, 0, 1]], dtype=np.float64)
    variant = np.linalg.inv(norm) @ np.vstack([theta, [0, 0, 1]]) @ norm
    shift = np.array([[1, 0, -x.alignment.dx], [0, 1, -x.alignment.dy], [0, 0, 1]], dtype=np.float64)
    shown = x.refine_warp if x.refine_shown else np.eye(2, 3)  # a refinement that fitted worse is left out
    warp = np.vstack([np.asarray(shown, dtype=np.float64), [0, 0, 1]])
    refined = _regrid(REFINE_SIZE, s) @ warp @ _regrid(s, REFINE_SIZE)
    train_to_work = np.linalg.inv(_fit_matrix(*train_size, s)) @ _fit_matrix(*train_size, side)
    return _fit_matrix(*eval_size, s) @ variant @ shift @ refined @ train_to_work


def _warp_rgb(img: np.ndarray, to_image: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(side x side x 3 image, validity mask) sampled from `img` through `to_image` (output pixel -> image pixel),
    the image first shrunk by area averaging when the map shrinks it (no aliasing on large photos)."""
    import cv2

    shrink = float(np.sqrt(abs(np.linalg.det(to_image[:2, :2]))))
    if shrink > 1.5:
        h, w = img.shape[:2]
        small = (max(1, round(w / shrink)), max(1, round(h / shrink)))
        img = cv2.resize(img, small, interpolation=cv2.INTER_AREA)
        to_image = np.array([[small[0] / w, 0, 0.5 * small[0] / w - 0.5], [0, small[1] / h, 0.5 * small[1] / h - 0.5],
                             [0, 0, 1]]) @ to_image
    flags = cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP
    # a small image (CIFAR's 32 px) enlarged many times: its pixels as they are, as the rest of Review shows them
    pixels = cv2.INTER_NEAREST + cv2.WARP_INVERSE_MAP if shrink < 0.25 else flags
    out = cv2.warpAffine(img, to_image[:2].astype(np.float32), (side, side), flags=pixels)
    ones = np.ones(img.shape[:2], np.float32)
    valid = cv2.warpAffine(ones, to_image[:2].astype(np.float32), (side, side), flags=flags) > 0.999
    return out, valid


def crop_transform(found: "CropFound", eval_size: tuple[int, int], train_size: tuple[int, int], side: int
                   ) -> np.ndarray:
    """3 x 3: a pixel of the training image's side x side display canvas -> the pixel of the evaluation image that
    the crop search's place (`CropFound.box`, a share of the outer image's sides) puts there: the evaluation image
    scaled into its box in the training image, or the training image's box in the evaluation image scaled to the
    whole training image (pixel centres at +0.5, as `_fit_matrix`)."""
    (we, he), (wt, ht) = eval_size, train_size
    x, y, w, h = found.box
    if found.inside == "eval":  # training pixel centre U -> (U - x Wt) We / (w Wt) in the evaluation image
        sx, sy = we / (w * wt), he / (h * ht)
        m = [[sx, 0, (0.5 - x * wt) * sx - 0.5], [0, sy, (0.5 - y * ht) * sy - 0.5]]
    else:  # the training image is the evaluation image's box: U -> x We + U w We / Wt
        sx, sy = w * we / wt, h * he / ht
        m = [[sx, 0, 0.5 * sx + x * we - 0.5], [0, sy, 0.5 * sy + y * he - 0.5]]
    return np.vstack([np.array(m, dtype=np.float64), [0, 0, 1]]) @ _fit_matrix(wt, ht, side)


def find_matches(eval_image: Image.Image, train_image: Image.Image) -> OrbMatch:
    """The local matches of a pair for display, as `evidence` finds them (the evaluation image as it is and
    mirrored, against the training image's features), with their map."""
    ea, tb = ImageInputs(eval_image), ImageInputs(train_image)
    if min(ea.size) < ORB_MIN_SIDE or min(tb.size) < ORB_MIN_SIDE:
        return OrbMatch()
    return orb_map([ea.orb(), ea.orb(mirrored=True)], [tb.orb(n_features=ORB_TRAIN_FEATURES)])


def _scaled(k: tuple[float, float]) -> np.ndarray:
    """3 x 3: a pixel of an image -> the same place in that image scaled by (kx, ky) (pixel centres at +0.5)."""
    kx, ky = k
    return np.array([[kx, 0, 0.5 * kx - 0.5], [0, ky, 0.5 * ky - 0.5], [0, 0, 1]], dtype=np.float64)


def matches_transform(match: OrbMatch, eval_size: tuple[int, int], train_size: tuple[int, int], side: int
                      ) -> np.ndarray:
    """3 x 3: a pixel of the training image's side x side display canvas -> the pixel of the evaluation image that
    the local matches' map (`OrbMatch.transform`, the evaluation view at ORB_SIDE -> the training image at ORB_SIDE)
    puts there, through the mirror where the mirrored view matched."""
    (we, he), (wt, ht) = eval_size, train_size
    (oe_w, oe_h), (ot_w, ot_h) = _orb_size(eval_size), _orb_size(train_size)
    to_orb_train = np.linalg.inv(_scaled((wt / ot_w, ht / ot_h)))
    back = np.linalg.inv(np.vstack([np.asarray(match.transform, dtype=np.float64), [0, 0, 1]]))
    mirror = np.array([[-1, 0, oe_w - 1], [0, 1, 0], [0, 0, 1]], dtype=np.float64) if match.view == 1 else np.eye(3)
    return _scaled((we / oe_w, he / oe_h)) @ mirror @ back @ to_orb_train @ _fit_matrix(wt, ht, side)


def aligned_at(x: Explanation, eval_image: Image.Image, train_image: Image.Image, side: int,
               crop: "CropFound | None" = None, matches: OrbMatch | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(evaluation image moved onto the training image, training image, where both have pixels) at side x side
    from the full-resolution photos: what the alignment found at WORK_SIZE matched, as a curator can see it; with
    `crop`, where the crop search placed one image inside the other instead (`crop_transform`), and with `matches`,
    where the local matches' map puts it (`matches_transform`)."""
    a = np.asarray(eval_image.convert("RGB"))
    b = np.asarray(train_image.convert("RGB"))
    if crop is not None:
        to_eval = crop_transform(crop, eval_image.size, train_image.size, side)
    elif matches is not None and matches.transform is not None:
        to_eval = matches_transform(matches, eval_image.size, train_image.size, side)
    else:
        to_eval = display_transform(x, eval_image.size, train_image.size, side)
    moved, valid_a = _warp_rgb(a, to_eval, side)
    train, valid_b = _warp_rgb(b, _fit_matrix(*train_image.size, side), side)
    return moved, train, valid_a & valid_b



# ---- the evidence store: keyed by the two images' content, so every encoder and every re-scan shares it ------

def aligned_views(x: Explanation, eval_image: Image.Image, train_image: Image.Image, side: int,
                  crop: "CropFound | None" = None, matches: OrbMatch | None = None):
    """(evaluation moved onto the training image, training image, overlay, difference) as pictures of `side` px
    from the full-resolution photos, by the alignment found at the working size, or by the crop search's place or the
    local matches' map (`aligned_at`). Overlay: red = evaluation, cyan = training, so where they agree it is grey and where they differ
    it is coloured; outside the overlap everything is dimmed."""
    moved, train, both = aligned_at(x, eval_image, train_image, side, crop, matches)
    dim = (0.35 + 0.65 * both[..., None]).astype(np.float32)
    lum = lambda a: a.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # noqa: E731
    la, lb = lum(moved), lum(train)
    overlay = np.stack([la, lb, lb], -1) * dim
    diff = np.clip(np.abs(moved.astype(np.float32) - train.astype(np.float32)) * 4, 0, 255) * both[..., None]
    img = lambda a: Image.fromarray(np.asarray(a).clip(0, 255).astype(np.uint8))  # noqa: E731
    return img(moved * dim), img(train * dim), img(overlay), img(diff)

def content_pair_hash(shas_a, shas_b, salt: str | None = None) -> str:
    """A short name for a set of (content, content) pairs and the version that measured them (a store's part file)."""
    import hashlib

    h = hashlib.sha256((salt or f"v{VERSION}").encode())
    for a, b in zip(shas_a, shas_b):
        h.update(f"{a}:{b}\n".encode())
    return h.hexdigest()[:24]


def item_shas(ws) -> "pd.Series":
    """sha256 by item id, made again only when the item table changes (kept on the workspace): every load of
    the pairs with the fused score asks, for the evidence and for the second model."""
    return ws.cache("item shas", ws.stamp("items"),
                    lambda: ws.items().drop_duplicates("item_id").set_index("item_id")["sha256"])


class EvidenceStore:
    """verify/evidence-v<VERSION>/part-<hash>.parquet: one row per (eval sha256, train sha256) with the evidence.

    A part is written atomically when its chunk of pairs is done and named by the pairs it holds, so an
    interrupted verification loses at most one chunk and a re-run computes only the pairs no part holds."""

    def __init__(self, ws):
        self.ws = ws
        self.folder = ws.paths.evidence(VERSION)

    def frame(self) -> "pd.DataFrame":
        """Every stored row; read once per set of parts (every load of the pairs with the fused score asks)."""
        import pandas as pd

        stamp = self.ws.stamp("evidence")  # parts are written whole and never rewritten: a new one is a new stamp

        def read():
            frames = [pd.read_parquet(p[0]) for p in stamp if p is not None]
            if not frames:
                return pd.DataFrame(columns=["sha_a", "sha_b", *EVIDENCE, "variant", "dy", "dx"])
            return pd.concat(frames, ignore_index=True).drop_duplicates(["sha_a", "sha_b"])

        return self.ws.cache("evidence", stamp, read)

    def missing(self, shas_a, shas_b) -> np.ndarray:
        have = set(zip(self.frame()["sha_a"], self.frame()["sha_b"]))
        return np.array([(a, b) not in have for a, b in zip(shas_a, shas_b)], dtype=bool)

    def add(self, ev: "pd.DataFrame") -> None:
        from leakcore.io import write_parquet

        write_parquet(ev.reset_index(drop=True), self.folder / f"part-{content_pair_hash(ev['sha_a'], ev['sha_b'])}.parquet")


def load_images(items: "pd.DataFrame", reader=None, *, side: int | None = None, gray: bool = False) -> list:
    """PIL images (or None when unreadable) for item rows, in order (`reader`: the workspace's `sources`; `side`: a
    large JPEG at a reduced scale keeping both sides at least this, as `_decode`; `gray`: luminance only). The images
    are decoded on a thread per core (Pillow lets go of Python's lock while it decodes), a few files read ahead of
    them: decoded in turn, the verification's 350 hymenoptera photos held a core for 0.5 s with the other idle."""
    from leakcore import catalog

    out: list = [None] * len(items)
    workers = _cores()
    stream = catalog.iter_item_bytes(items.reset_index(drop=True), reader=reader)  # (position, bytes), read lazily
    with ThreadPoolExecutor(workers) as pool:  # the bytes of a few images in flight, not of the whole table
        decoded = catalog.bounded_map(pool, lambda pair: (pair[0], _decode(pair[1], side, gray)), stream,
                                      window=4 * workers)
        for pos, image in decoded:
            out[pos] = image
    return out


def compute_evidence(ws, pairs: "pd.DataFrame", *, chunk: int = 1024, progress=None,
                     should_stop=None, stage: str = "verify pairs", by_matches: bool = False) -> int:
    """Evidence for every (eval_item_id, train_item_id) pair the store lacks; returns how many were computed.
    `progress(stage, done, total)` is told as chunks finish; `by_matches` as `evidence`'s (the scan's candidate
    pairs)."""
    import pandas as pd

    items = ws.items().drop_duplicates("item_id").set_index("item_id")
    shas = items["sha256"]
    p = pairs[["eval_item_id", "train_item_id"]].drop_duplicates()
    p = p.assign(sha_a=shas.reindex(p["eval_item_id"]).to_numpy(),
                 sha_b=shas.reindex(p["train_item_id"]).to_numpy()).dropna(subset=["sha_a", "sha_b"])
    p = p.drop_duplicates(["sha_a", "sha_b"]).sort_values(["sha_a", "sha_b"]).reset_index(drop=True)
    store = EvidenceStore(ws)
    todo = p[store.missing(p["sha_a"], p["sha_b"])].reset_index(drop=True)
    for start in range(0, len(todo), chunk):
        if should_stop is not None and should_stop():
            break
        part = todo.iloc[start:start + chunk]
        ids = pd.unique(pd.concat([part["eval_item_id"], part["train_item_id"]]))  # each image decoded once
        loaded = dict(zip(ids, image_inputs(ws, items.loc[ids].reset_index())))
        told = (lambda done, start=start: progress(stage, start + done, len(todo))) if progress else None
        ev = evidence([loaded[i] for i in part["eval_item_id"]], [loaded[i] for i in part["train_item_id"]],
                      progress=told, by_matches=by_matches)
        # `evidence` reported the chunk done: a second report would open a finished stage's bar anew
        store.add(pd.concat([part[["sha_a", "sha_b"]].reset_index(drop=True), ev], axis=1))
    return len(todo)


def evidence_for(ws, pairs: "pd.DataFrame") -> "pd.DataFrame":
    """`pairs` with the stored evidence columns joined (NaN where a pair was not verified). A pair not verified in
    its own direction takes the evidence of the reverse pair where that was verified: a pair within one split
    found from both ends is verified once (`fused.candidates`)."""
    items = item_shas(ws)
    out = pairs.assign(sha_a=items.reindex(pairs["eval_item_id"]).to_numpy(),
                       sha_b=items.reindex(pairs["train_item_id"]).to_numpy())
    ev = EvidenceStore(ws).frame()
    joined = out.merge(ev, on=["sha_a", "sha_b"], how="left")
    cols = [c for c in ev.columns if c not in ("sha_a", "sha_b")]
    missing = joined["ncc"].isna().to_numpy()
    if "within" in pairs:  # only a pair within a split is verified from one end (a load of every pair: 200,000)
        missing = missing & pairs["within"].to_numpy(dtype=bool)
    if missing.any() and len(ev):
        reverse = out.loc[missing, ["sha_a", "sha_b"]].merge(
            ev.rename(columns={"sha_a": "sha_b", "sha_b": "sha_a"}), on=["sha_a", "sha_b"], how="left")
        joined.loc[missing, cols] = reverse[cols].to_numpy()
    return joined.drop(columns=["sha_a", "sha_b"])


def searched_evidence_for(ws, pairs: "pd.DataFrame") -> "pd.DataFrame":
    """`evidence_for`, with each pair a scan aligned by its local matches' map (`variant` BY_MATCHES) searched for now,
    in memory (the stored row stays the scan's): what the fit reads, as the model sees the pairs it scores."""
    import pandas as pd

    out = evidence_for(ws, pairs)
    by_map = (pd.to_numeric(out["variant"], errors="coerce") == BY_MATCHES).to_numpy()
    if not by_map.any():
        return out
    items = ws.items().drop_duplicates("item_id").set_index("item_id")
    sub = out.loc[by_map]
    ids = pd.unique(pd.concat([sub["eval_item_id"], sub["train_item_id"]]))
    loaded = dict(zip(ids, image_inputs(ws, items.loc[ids].reset_index())))
    ev = evidence([loaded[i] for i in sub["eval_item_id"]], [loaded[i] for i in sub["train_item_id"]])
    cols = [*EVIDENCE, "variant", "dy", "dx"]
    out.loc[by_map, cols] = ev[cols].to_numpy()
    return out
