"""The Review page's pieces that need no browser: the aligned view at display resolution, display-sized JPEGs
cached per item, and the queue read back from the address bar."""
from __future__ import annotations

import base64
import dataclasses
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

from leakcore import verify
from leakcore.ingest import add_dataset
from leakcore.api import Project
from leakcore.project import Workspace

from conftest import photo


def _ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


@pytest.mark.parametrize("edit", ["identity", "mirrored", "cropped and enlarged", "turned 90 degrees"])
def test_aligned_at_moves_the_full_photo_onto_the_training_photo(edit):
    """The alignment found on the 32 px canvas, scaled to the photos' own pixels: the moved evaluation photo
    agrees with the training photo at 320 px, and better than with the alignment's shift off by one working
    pixel (the transform is chained the right way round)."""
    train = photo(3, (400, 300))
    ev = {"identity": train, "mirrored": ImageOps.mirror(train),
          "cropped and enlarged": train.crop((30, 20, 390, 290)).resize((720, 540)),
          "turned 90 degrees": train.rotate(90, expand=True)}[edit]
    x = verify.explain(ev, train)
    moved, shown_train, both = verify.aligned_at(x, ev, train, 320)
    assert moved.shape == shown_train.shape == (320, 320, 3) and both.shape == (320, 320)
    assert both.mean() > 0.4  # most of the training photo's frame (300/400 of it holds pixels)
    lum = lambda a: a.astype(np.float32).mean(-1)  # noqa: E731
    fit = _ncc(lum(moved), lum(shown_train), both)
    assert fit > 0.9, fit
    off = dataclasses.replace(x, alignment=dataclasses.replace(x.alignment, dx=x.alignment.dx + 2))
    moved_off, _, both_off = verify.aligned_at(off, ev, train, 320)
    assert fit > _ncc(lum(moved_off), lum(shown_train), both & both_off)


def test_display_transform_of_the_identity_is_the_fit_of_the_training_photo():
    train = photo(1, (400, 300))
    x = verify.explain(train, train)
    m = verify.display_transform(x, train.size, train.size, 448)
    np.testing.assert_allclose(m, verify._fit_matrix(400, 300, 448), atol=0.05)


@pytest.fixture
def photo_ws(tmp_path):
    root = tmp_path / "photos"
    for split in ("train", "test"):
        (root / split / "x").mkdir(parents=True)
    photo(0, (900, 600)).save(root / "train" / "x" / "big.jpg", quality=95)
    photo(1, (300, 200)).save(root / "test" / "x" / "small.jpg", quality=95)
    ws = Workspace.create(tmp_path / "ws", encoder="phash")
    add_dataset(ws, "photos", root)
    return ws


def test_a_photo_is_sent_as_a_display_sized_jpeg_cached_in_the_workspace(photo_ws):
    from ui import display

    items = photo_ws.items().set_index("item_id", drop=False)
    big, small = (items[items["uri"].str.endswith(n)].index[0] for n in ("big.jpg", "small.jpg"))
    src_big, src_small = display.sources(Project(photo_ws), items, [big, small])
    uri, width, reason = display.picture(src_big, 576)
    assert reason is None and uri.startswith("data:image/jpeg;base64,")
    img = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert img.size == (576, 384) == (width, 384)  # fitted into 576 x 576, never the 900 px original
    display._WRITER.submit(lambda: None).result()  # the cache file is written in the background
    sha = items.at[big, "sha256"]
    (cached,) = (photo_ws.path / "cache" / "display" / sha[:2]).glob(f"{sha}-*-576.jpg")
    assert not list(cached.parent.glob("*.tmp"))
    photo_ws.clear_caches("pictures")  # the memory cache lives on the workspace
    assert display.picture(src_big, 576)[0] == uri  # read back from the workspace, same bytes
    assert display.picture(src_small, 576)[1] == 300  # smaller than the box: never enlarged
    # the file cut short after the scan: its picture is read again and said unreadable, not the one made before
    # (the Review page showed a truncated photo whole, where the HTML report said "no picture")
    path = items.at[big, "uri"]
    data = open(path, "rb").read()
    open(path, "wb").write(data[:200])
    src_now = display.sources(Project(photo_ws), items, [big])[0]
    assert src_now.cache != src_big.cache
    uri_now, _, reason = display.picture(src_now, 576)
    assert uri_now is None and reason


def test_pictures_without_a_content_hash_stay_in_memory_and_outside_the_roots_are_refused(photo_ws, tmp_path):
    from ui import display

    items = photo_ws.items().set_index("item_id", drop=False)
    item_id = items.index[0]
    items.loc[item_id, "sha256"] = "x"  # a table without real hashes (the synthetic benchmark's)
    src = display.sources(Project(photo_ws), items, [item_id])[0]
    assert src.cache is None and display.picture(src, 128)[0].startswith("data:image/jpeg")
    outside = tmp_path / "elsewhere.jpg"
    photo(5, (500, 400)).save(outside)
    items = items.copy()  # tables are read-only once looked up (display.facts keeps one lookup per table)
    items.loc[item_id, "uri"] = str(outside)
    uri, _, reason = display.picture(display.sources(Project(photo_ws), items, [item_id])[0], 128)
    assert uri is None and reason


def test_aligned_at_shows_a_small_image_enlarged_pixel_by_pixel():
    a = photo(2, (32, 32))
    x = verify.explain(ImageOps.mirror(a), a)
    moved, train, both = verify.aligned_at(x, ImageOps.mirror(a), a, 448)
    assert x.transform == "mirrored" and both.mean() > 0.9
    assert np.array_equal(moved[both], train[both])  # the same 32 px, each shown as a 14 x 14 block


OPTIONS = {"check": ["similarity", "label_conflict"], "split": ["photos/test", "cifar/test"], "source": ["photos/train"], "degree": ["hard", "soft", "borderline"],
           "state": ["unreviewed", "confirmed", "rejected", "unsure"], "labels": ["any", "same", "different"],
           "sort": ["similarity", "closeness to a threshold"], "compare": ["side by side", "aligned"]}


def test_the_address_bar_gives_back_the_queue_it_names():
    from ui.review_ui import parse_url

    state, ignored = parse_url({"check": ["label_conflict"], "split": ["photos/test"], "degree": ["soft", "hard"],
                                "state": ["all"],
                                "labels": ["same"], "sort": ["closeness to a threshold"], "compare": ["aligned"],
                                "pos": ["16"], "eval": ["photos/test/a.jpg"], "train": ["photos/train/a.jpg"]}, OPTIONS)
    assert ignored == []
    assert state == {"review_check": "label_conflict", "f_eval_splits": ["photos/test"], "f_degrees": ["soft", "hard"],
                     "f_states": [],
                     "f_labels": "same", "f_sort": "closeness to a threshold", "compare_mode": "aligned",
                     "review_pos": 15, "review_current": ("photos/test/a.jpg", "photos/train/a.jpg")}


@pytest.mark.parametrize("params, kept", [
    ({"degree": ["bogus", "hard"]}, {"f_degrees": ["hard"]}),
    ({"degree": ["<script>"]}, {}),  # nothing valid: the filter keeps what it was
    ({"sort": ["model uncertainty"]}, {}),  # not offered on this queue (no fused score)
    ({"check": ["groups"]}, {}),  # a check the page does not offer here
    ({"pos": ["-3"]}, {}), ({"pos": ["abc"]}, {}), ({"pos": ["99999999999"]}, {}),
    ({"split": ["photos/test", "photos/test"]}, {"f_eval_splits": ["photos/test"]}),
    ({"eval": ["photos/test/a.jpg"]}, {}),  # half a pair names no pair
])
def test_values_a_link_cannot_mean_are_ignored_and_named(params, kept):
    from ui.review_ui import parse_url

    state, ignored = parse_url(params, OPTIONS)
    assert state == kept
    bad = {f"{k}={v}" for k, vs in params.items() for v in vs
           if k in ("check", "degree", "sort", "pos") and not (k == "degree" and v == "hard")}
    assert set(ignored) == bad


def test_refine_warp_is_the_map_refine_applies():
    """The aligned view chains the refinement's map; it must be the one `refine` fits (same settings): warping the
    coarse canvas with it gives refine's canvas exactly."""
    import cv2

    train = photo(4, (400, 300))
    ev = train.crop((30, 20, 390, 290)).resize((720, 540))
    x = verify.explain(ev, train)
    size, s = verify.REFINE_SIZE, x.train.shape[0]
    up = cv2.resize(x.aligned, (size, size), interpolation=cv2.INTER_LINEAR)
    warped = cv2.warpAffine(up, x.refine_warp, (size, size), flags=cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP)
    down = cv2.resize(warped, (s, s), interpolation=cv2.INTER_AREA)
    inside = x.refined_mask > 0.5
    assert inside.sum() > 100 and not np.allclose(x.refine_warp, np.eye(2, 3))
    np.testing.assert_allclose(down[inside], x.refined_aligned[inside], atol=1e-5)


def test_the_fused_scores_shares_are_listed_by_plain_names_with_the_inliers_counted():
    """A new user read `orb_inliers` 5.613 beside "ORB + RANSAC inliers 273": the model reads log(1 + n)."""
    import math

    from ui.review_ui import contributions_shown

    c = pd.DataFrame({"feature": ["orb_inliers", "ncc", "similarity_2", "overlap_refined"],
                      "value": [math.log1p(273), 0.99612, 0.7, 0.28], "contribution": [1.094, 0.694, 0.1, -0.16]})
    shown = contributions_shown(c)
    assert shown["feature"].tolist() == ["ORB + RANSAC inliers", "NCC (luminance)", "similarity (second model)",
                                         "overlap after refinement (canvas)"]
    assert shown["value"].tolist() == [273, 0.996, 0.7, 0.28] and shown["log-odds share"].tolist()[:2] == [1.09, 0.69]
    # one set of words for every feature, the Review page's and the HTML report's
    from leakcore import verify
    from leakcore.schema import FEATURE_WORDS
    from leakcore.scores.fused import SECOND_FEATURE

    assert set(FEATURE_WORDS) == {*verify.FEATURES, SECOND_FEATURE}


def test_a_refinement_that_fitted_worse_is_said_to():
    """A mirrored copy's fine detail went from 0.998 to 0.963 under ECC, and the page said "then refined" as if
    better; it now says the refinement fitted worse where any row after it is lower."""
    from types import SimpleNamespace

    from leakcore.api import refined_worse as _refined_worse

    def x(ncc, detail, diff, r_ncc, r_detail, r_diff):
        return SimpleNamespace(alignment=SimpleNamespace(ncc=ncc), ncc_detail=detail, abs_diff=diff,
                               refined={"ncc_refined": r_ncc, "detail_refined": r_detail, "diff_refined": r_diff})

    assert _refined_worse(x(0.99, 0.998, 1 / 255, 0.99, 0.963, 4.5 / 255))
    assert not _refined_worse(x(0.90, 0.70, 6 / 255, 0.95, 0.85, 3 / 255))
    assert _refined_worse(x(0.95, 0.80, 3 / 255, 0.90, 0.80, 3 / 255))
