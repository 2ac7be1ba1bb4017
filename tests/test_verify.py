"""The verification stage and the fused score: alignment, the masked NCC against a direct computation, the
evidence store's resumability, and the fused score used by rates (on a small phash workspace)."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from leakcore import checks, fused, leakage, review, verify
from leakcore.api import Project
from leakcore.calibrate import extended_suite
from leakcore.errors import InvalidInput, ThresholdsUncalibrated, UnknownName
from leakcore.project import Workspace

from conftest import make_folder_dataset, make_photo_folder, photo


def _canvas(img):
    lum, mask = verify.canvas(img)
    return lum[None], mask[None]


def _align(a, b):
    la, ma = _canvas(a)
    lb, mb = _canvas(b)
    return verify.align(la, ma, lb, mb)[0]


def test_masked_ncc_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.random((1, 1, 12, 12)).astype(np.float32))
    b = torch.from_numpy(rng.random((1, 1, 12, 12)).astype(np.float32))
    ma = torch.ones_like(a)
    ma[..., :2, :] = 0  # a masked band, as a rotated or letterboxed image has
    mb = torch.ones_like(b)
    ncc, cnt = verify.masked_ncc(a, ma, b, mb, 3)
    A, MA, B, MB = (t[0, 0].numpy().astype(np.float64) for t in (a, ma, b, mb))
    for dy, dx in ((0, 0), (2, -1), (-3, 3), (1, 2)):
        xs, ys = [], []
        for y in range(12):
            for x in range(12):
                y2, x2 = y + dy, x + dx
                if 0 <= y2 < 12 and 0 <= x2 < 12 and MA[y, x] and MB[y2, x2]:
                    xs.append(A[y, x]), ys.append(B[y2, x2])
        direct = np.corrcoef(xs, ys)[0, 1]
        assert cnt[0, 0, 3 + dy, 3 + dx] == len(xs)
        assert ncc[0, 0, 3 + dy, 3 + dx].item() == pytest.approx(direct, abs=1e-4)


def test_the_correlation_at_the_searched_shifts_is_the_inverse_fft_at_them():
    """`_corr` evaluates the inverse transform at the searched shifts only, as matrix products: the same values as
    the inverse FFTs over every shift, picked at those shifts (float32 rounding apart), at the working canvas's size
    (40: 32 px and 8 px of shift) and at an odd size."""
    rng = np.random.default_rng(3)
    for side, shift in ((32, 8), (13, 4)):
        n = side + shift
        idx = torch.cat([torch.arange(n - shift, n), torch.arange(0, shift + 1)])
        x, y = (torch.fft.rfft2(torch.from_numpy(rng.random((2, 5, side, side)).astype(np.float32)), s=(n, n))
                for _ in range(2))
        full = torch.fft.irfft(torch.fft.ifft(torch.conj(x) * y, n=n, dim=-2), n=n, dim=-1)
        expected = full.index_select(-2, idx).index_select(-1, idx)
        got = verify._corr(x, y, verify._inverse_at(n, idx))
        assert torch.allclose(got, expected, rtol=1e-4, atol=1e-3 * float(expected.abs().max()))


def test_alignment_finds_shifts_flips_turns_and_rescaled_crops():
    big = photo(3, (80, 80))
    train = big.crop((16, 16, 64, 64))
    shifted = big.crop((12, 20, 60, 68))
    al = _align(shifted, train)
    assert al.ncc > 0.97 and verify.VARIANTS[al.variant].dihedral == 0
    # eval pixel p shows big[20 + y, 12 + x] = train pixel p + (4, -4), times the working scale 32/48
    assert (al.dy, al.dx) in {(3, -3), (3, -2), (2, -3), (2, -2)}
    for edit, dihedral in ((ImageOps.mirror, 4), (lambda im: im.transpose(Image.Transpose.ROTATE_90), 1),
                           (lambda im: im.transpose(Image.Transpose.ROTATE_180), 2)):
        al = _align(edit(train), train)
        assert al.ncc > 0.97, edit
        assert verify.VARIANTS[al.variant].dihedral % 4 == dihedral % 4 or dihedral == 4
    recrop = train.crop((4, 4, 44, 44)).resize((48, 48), Image.Resampling.BICUBIC)
    assert _align(recrop, train).ncc > 0.9
    other = _align(photo(99, (48, 48)), train)  # smooth blobs: luminance alone correlates; gradients do not
    assert (other.ncc + other.ncc_grad) / 2 < 0.6


def test_evidence_separates_edited_copies_from_other_images_and_keeps_unreadable_pairs():
    originals = [photo(s, (64, 48)) for s in range(6)]
    suite = {t.name: t for t in extended_suite()}
    edits = [suite[n](im, seed=1) for n, im in zip(["shift8", "recrop85", "text", "logo", "jpeg_q10", "hflip"], originals)]
    same = verify.evidence(edits, originals)
    different = verify.evidence(edits, originals[1:] + originals[:1])
    both = lambda e: (e["ncc"] + e["ncc_grad"]) / 2  # noqa: E731
    # each copy above the same edit against another image (smooth synthetic blobs correlate a little anywhere)
    assert (both(same) > both(different) + 0.05).all() and (same["ssim"] > different["ssim"]).all()
    assert same["ncc"].min() > 0.85
    none = verify.evidence([None, edits[0]], [originals[0], originals[0]])
    assert none.loc[0, "ncc"] == 0 and none.loc[0, "variant"] == -1 and none.loc[1, "ncc"] > 0.8


def test_fine_detail_tells_a_copy_from_a_scene_with_the_same_layout():
    """Two pictures with the same large blobs and different fine texture align as well as a copy on luminance;
    their detail NCC is near 0 and a copy's (recompressed, shifted) near 1, and the difference is larger."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:32, 0:32] / 32
    layout = 0.5 + 0.3 * np.sin(3 * xx) * np.cos(2 * yy)  # the scene's layout: large, smooth
    texture = lambda seed: 0.06 * np.random.default_rng(seed).standard_normal((32, 32))  # noqa: E731
    a = np.clip(layout + texture(1), 0, 1).astype(np.float32)
    copy = np.clip(a + 0.01 * rng.standard_normal((32, 32)), 0, 1).astype(np.float32)
    other = np.clip(layout + texture(2), 0, 1).astype(np.float32)
    mask = np.ones((32, 32), np.float32)
    d_copy, diff_copy = verify.detail_and_difference(copy, a, mask)
    d_other, diff_other = verify.detail_and_difference(other, a, mask)
    assert d_copy > 0.9 and abs(d_other) < 0.3 and diff_other > 3 * diff_copy
    assert verify.detail_and_difference(a, a, np.zeros_like(mask)) == (0.0, 1.0)  # no overlap: nothing to say


def _scene(seed: int, size=(640, 480)) -> Image.Image:
    """A picture with corners (random boxes and ellipses), as photos have and smooth blobs do not."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 255, 3)))
    d = ImageDraw.Draw(img)
    for _ in range(80):
        x0, y0 = rng.integers(0, size[0]), rng.integers(0, size[1])
        x1, y1 = x0 + rng.integers(10, 120), y0 + rng.integers(10, 120)
        box = (int(x0), int(y0), int(x1), int(y1))
        fill = tuple(int(v) for v in rng.integers(0, 255, 3))
        (d.rectangle if rng.random() < 0.5 else d.ellipse)(box, fill=fill)
    return img


def test_orb_matches_a_watermarked_crop_of_a_photo():
    big = _scene(5)
    crop = big.crop((60, 40, 560, 420))
    ImageDraw.Draw(crop).text((20, 300), "WATERMARK", fill="white")
    inl_same, _ = verify.orb_match(crop, big)
    inl_other, _ = verify.orb_match(crop, _scene(6))
    assert inl_same >= 20 and inl_same > 3 * max(inl_other, 1)


def test_a_large_jpeg_is_read_at_the_scale_the_evidence_needs_and_still_matches_its_crop():
    """The evidence reads a JPEG no larger than it needs (both sides at least ORB_SIDE, by the decoder's DCT
    scaling): a 2,400 x 1,800 photo is read at 1,200 x 900; a photo already small, or a PNG, as it is. A strong crop
    of the large photo still matches it by local features, and not another photo."""
    import io

    def jpeg(img):
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=92)
        return buf.getvalue()

    big = _scene(5, (640, 480)).resize((2400, 1800), Image.Resampling.LANCZOS)
    assert verify._decode(jpeg(big), verify.ORB_SIDE).size == (1200, 900)
    assert verify._decode(jpeg(big)).size == (2400, 1800)
    small = _scene(6, (900, 700))
    assert verify._decode(jpeg(small), verify.ORB_SIDE).size == (900, 700)
    png = io.BytesIO()
    big.save(png, "PNG")
    assert verify._decode(png.getvalue(), verify.ORB_SIDE).size == (2400, 1800)
    crop = big.crop((300, 200, 1500, 1100))
    ImageDraw.Draw(crop).text((40, 800), "WATERMARK", fill="white")
    read = [verify._decode(jpeg(x), verify.ORB_SIDE) for x in (crop, big, _scene(7, (2400, 1800)))]
    ev = verify.evidence([read[0], read[0]], [read[1], read[2]])
    same, other = np.expm1(ev["orb_inliers"]).round()  # 38 and 1 places (the same read at full size)
    assert same >= fused.TWIN_ORB_INLIERS and same > 10 * other


def test_ratio_matches_are_opencvs_brute_force_matches():
    """The Hamming matcher keeps the same matches as OpenCV's `knnMatch(k=2)` and the ratio test, equal distances
    included (the nearest is the first of equals), on real ORB features and on descriptors full of ties."""
    import cv2

    rng = np.random.default_rng(0)
    real = verify.orb_features(_scene(5))[0][1], verify.orb_features(_scene(5).rotate(8), n_features=1000)[0][1]
    few_bits = rng.integers(0, 2, (300, 32)).astype(np.uint8), rng.integers(0, 2, (500, 32)).astype(np.uint8)
    for a, b in (real, few_bits, (few_bits[0], few_bits[1][:2])):
        want = [(m[0].queryIdx, m[0].trainIdx) for m in cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a, b, k=2)
                if len(m) == 2 and m[0].distance < verify.ORB_RATIO_TEST * m[1].distance]
        query, train = verify._ratio_matches(a, b)
        assert list(zip(query.tolist(), train.tolist())) == want


def test_an_images_inputs_are_kept_across_evidence_calls_and_give_the_same_evidence():
    """Evidence from kept `ImageInputs` equals evidence from the images; the decoded image is let go after a call
    and decoded again only for a part not made yet; an eval image repeated in one batch (aligned once) gives the
    same rows as alone."""
    crop = _scene(5).crop((100, 80, 540, 400))
    imgs = [ImageOps.mirror(crop), crop, _scene(6), _scene(5)]
    loads = []

    def kept(img):
        return verify.ImageInputs(img, lambda: loads.append(1) or img)

    inputs = [kept(im) for im in imgs]
    eval_at, train_at = [0, 0, 1, 2], [3, 2, 3, 3]
    want = verify.evidence([imgs[i] for i in eval_at], [imgs[j] for j in train_at])
    one_by_one = pd.concat([verify.evidence([imgs[i]], [imgs[j]]) for i, j in zip(eval_at, train_at)], ignore_index=True)
    pd.testing.assert_frame_equal(want, one_by_one)
    first = verify.evidence([inputs[i] for i in eval_at[2:]], [inputs[j] for j in train_at[2:]])
    pd.testing.assert_frame_equal(first, want.iloc[2:].reset_index(drop=True))
    assert loads == [] and [x._image is None for x in inputs] == [False, True, True, True]  # let go after the call
    again = verify.evidence([inputs[i] for i in eval_at], [inputs[j] for j in train_at])
    pd.testing.assert_frame_equal(again, want)
    # decoded again: the other scene, an eval image before, for its training-side features, and the crop and the
    # scene it was cut from, for the tiles under their many matches' map (`verify.away_agreement`)
    assert len(loads) == 3 and (want["tiles_textured"] > 0).sum() == 2


def test_refinement_takes_up_a_zoom_the_coarse_grid_leaves_over():
    """A re-crop zoomed by 1.4 or 1.5 (past the grid's largest scale, 1.25) aligns coarsely at NCC 0.65-0.8 and
    its fine detail does not line up; ECC's affine refinement brings both up, and another scene stays low."""
    scene = _scene(5, (256, 256)).resize((64, 64), Image.Resampling.LANCZOS)
    train = scene.resize((32, 32), Image.Resampling.LANCZOS)
    other = verify.evidence([_scene(6, (256, 256)).resize((32, 32), Image.Resampling.LANCZOS)], [train]).iloc[0]
    for zoom in (1.4, 1.5):
        w = 64 / zoom
        o = (64 - w) / 2 + 3
        copy = scene.crop((o, o - 2, o + w, o - 2 + w)).resize((32, 32), Image.Resampling.LANCZOS)
        ev = verify.evidence([copy], [train]).iloc[0]
        assert ev["ncc"] < 0.85 and ev["ncc_refined"] > 0.9 and ev["detail_refined"] > ev["ncc_detail"] + 0.2
        assert ev["detail_refined"] > 0.7 > other["ncc_refined"] and other["detail_refined"] < 0.4
        x = verify.explain(copy, train)  # what the Review page shows is the same computation
        assert x.refined["ncc_refined"] == pytest.approx(ev["ncc_refined"], abs=1e-5)
        assert x.refined_mask.sum() > 0 and (x.refined_aligned[x.refined_mask == 0] == 0).all()


def test_the_aligned_view_leaves_out_a_refinement_that_fits_worse():
    """A bannered copy sits "as is"; ECC's affine refinement can turn and shrink it and lower the overlap's NCC (a new
    user saw banner copies skewed on the Review page). The pictures then show the coarse alignment (the identity
    warp), while both measurements stay in the evidence; a zoom the refinement takes up is still shown refined."""
    import dataclasses

    from PIL import ImageDraw, ImageFont

    photo = _scene(7)
    copy = photo.copy()
    draw, font = ImageDraw.Draw(copy), ImageFont.load_default(size=photo.height // 9)
    for line, y in (("WHEN YOU SEE IT", 18), ("BEST FRIENDS", photo.height - 80)):
        draw.text((photo.width // 12, y), line, fill=(255, 230, 0), font=font, stroke_width=8, stroke_fill="black")
    x = verify.explain(copy, photo)
    assert x.transform == "as is" and x.refined["ncc_refined"] < x.alignment.ncc
    assert not x.refine_shown and not np.allclose(x.refine_warp, np.eye(2, 3))
    coarse = dataclasses.replace(x, refine_warp=np.eye(2, 3, dtype=np.float32), refine_shown=True)
    np.testing.assert_allclose(verify.display_transform(x, copy.size, photo.size, 320),
                               verify.display_transform(coarse, copy.size, photo.size, 320))
    scene = _scene(5, (256, 256)).resize((64, 64), Image.Resampling.LANCZOS)
    zoomed = scene.crop((14.1, 12.1, 59.9, 57.9)).resize((32, 32), Image.Resampling.LANCZOS)  # 1.4x, off centre
    z = verify.explain(zoomed, scene.resize((32, 32), Image.Resampling.LANCZOS))
    assert z.refine_shown and not np.allclose(z.refine_warp, np.eye(2, 3))


@pytest.fixture
def scanned(tmp_path):
    root = make_folder_dataset(tmp_path / "data", n_train=24, n_test=8, leaks=(0, 1, 2))
    project = Project.create(tmp_path / "ws", encoder="phash")
    project.add("toy", root)
    project.scan()
    return project


def test_evidence_is_cached_by_content_and_an_interrupted_run_resumes_identically(scanned):
    pairs = leakage.load_pairs(scanned.workspace, raw=True)
    stops = iter([False, True])
    first = verify.compute_evidence(scanned.workspace, pairs, chunk=5, should_stop=lambda: next(stops, True))
    store = verify.EvidenceStore(scanned.workspace)
    partial = len(store.frame())
    assert 0 < partial < first
    left = verify.compute_evidence(scanned.workspace, pairs, chunk=5)
    assert left == first - partial
    assert verify.compute_evidence(scanned.workspace, pairs) == 0
    whole = verify.EvidenceStore(scanned.workspace).frame().sort_values(["sha_a", "sha_b"]).reset_index(drop=True)
    again_ws = scanned.path / "verify"
    import shutil
    shutil.rmtree(again_ws)
    verify.compute_evidence(scanned.workspace, pairs)
    fresh = verify.EvidenceStore(scanned.workspace).frame().sort_values(["sha_a", "sha_b"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(whole, fresh)


def test_a_chunk_with_more_images_than_the_workspace_keeps_is_verified_in_full(scanned, monkeypatch):
    """A chunk of pairs can hold more distinct images than the workspace keeps inputs for (2 x 1,024 on CIFAR-10,
    against INPUTS_KEPT 2,048): every pair still gets its evidence, the same as with room for all (a chunk once
    let its own first images go and failed with a KeyError)."""
    pairs = leakage.load_pairs(scanned.workspace, raw=True)
    items = scanned.workspace.items().drop_duplicates("item_id").set_index("item_id")
    ids = pd.unique(pd.concat([pairs["eval_item_id"], pairs["train_item_id"]]))
    assert len(ids) > 6
    monkeypatch.setattr(verify, "INPUTS_KEPT", 3)
    kept = verify.image_inputs(scanned.workspace, items.loc[ids].reset_index())
    assert len(kept) == len(ids) and all(k is not None for k in kept)
    assert verify.compute_evidence(scanned.workspace, pairs) > 0
    small = verify.EvidenceStore(scanned.workspace).frame().sort_values(["sha_a", "sha_b"]).reset_index(drop=True)
    import shutil

    shutil.rmtree(scanned.path / "verify")
    monkeypatch.setattr(verify, "INPUTS_KEPT", 2048)
    fresh = Project.open(scanned.path).workspace  # its own kept inputs, with room for all
    verify.compute_evidence(fresh, pairs)
    whole = verify.EvidenceStore(fresh).frame().sort_values(["sha_a", "sha_b"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(small, whole)


def test_the_fused_score_is_fitted_stored_and_used_by_rates_beside_the_raw_similarity(scanned):
    with pytest.raises(Exception):
        scanned.configure(score="fused")  # no model yet
    fm = scanned.verify(queries=12)
    assert 0 < fm.soft <= fm.hard <= 1 and fm.meta["auc"] > fm.meta["raw_auc"] - 0.05
    assert set(fm.contributions(dict.fromkeys(fm.features, 0.5))["feature"]) == set(fm.features)
    raw_rates = scanned.checks.rates(["similarity"])
    scanned.configure(score="fused")
    assert scanned.scores.thresholds() == (fm.hard, fm.soft)
    pairs = leakage.load_pairs(scanned.workspace)
    # each score keeps its own column: similarity is the raw cosine, fused the model's, score the one in force
    assert {"fused", "verified", "score"} <= set(pairs.columns) and "raw_similarity" not in pairs.columns
    assert pairs.attrs["score"] == "fused" and (pairs["score"] == pairs["fused"]).all()
    pd.testing.assert_series_equal(pairs["similarity"], leakage.load_pairs(scanned.workspace, raw=True)["similarity"])
    _load_pairs_needs_no_other_import(scanned, pairs)
    assert pairs.loc[pairs["verified"], "fused"].between(0, 1).all()
    flagged = pairs[(~pairs["within"]) & (pairs["fused"] >= fm.soft)]
    leaked = {f"toy/test/{c}/test_{i:03d}.jpg" for i, c in ((0, "cat"), (1, "dog"), (2, "cat"))}
    assert leaked <= set(flagged["eval_item_id"])  # the three copies are flagged by the fused score
    fused_rates = scanned.checks.rates(["similarity"])
    assert len(fused_rates) == len(raw_rates)
    found = scanned.checks.findings("similarity")
    assert len(found) and found["reason"].str.startswith("fused score ").all()  # the score the findings were flagged by, by name

    # what the Review page shows of a pair: the alignment, the stored evidence, each feature's share
    top = flagged.sort_values("fused", ascending=False).iloc[0]
    e = scanned.review.evidence(top["eval_item_id"], top["train_item_id"])
    assert e.explanation.alignment.ncc > 0.9 and e.stored is not None
    assert e.fused == pytest.approx(float(top["fused"]), abs=1e-4)
    assert set(e.contributions["feature"]) == set(fm.features)
    assert e.contributions["contribution"].abs().is_monotonic_decreasing
    # the review queue orders by the model's uncertainty (P nearest 0.5 first); the raw score cannot
    q = checks.review_queue(scanned.workspace, fm.hard, fm.soft)
    s = q[q["check"] == "similarity"]  # the queue thresholds, orders and shows the score in force
    assert len(s) and (s["similarity"] == s["fused"]).all() and (s["raw_similarity"] != s["fused"]).any()
    queued = s.loc[s["degree"] != review.BORDERLINE]
    assert set(zip(queued["eval_item_id"], queued["train_item_id"])) == set(
        zip(*pairs.loc[pairs["fused"] >= fm.soft, ["eval_item_id", "train_item_id"]].to_numpy().T))
    u = review.filter_queue(s, sort=review.UNCERTAINTY_SORT)
    assert len(u) == len(s) and (np.diff(np.abs(u["fused"].to_numpy() - 0.5)) >= 0).all()
    raw_q = review.build_queue(leakage.load_pairs(scanned.workspace, raw=True), scanned.workspace.items(), 0.9, 0.7)
    with pytest.raises(UnknownName, match="fused score"):
        review.filter_queue(raw_q, sort=review.UNCERTAINTY_SORT)
    _review_page_shows_the_evidence(scanned, top)
    scanned.configure(score="similarity")
    assert not {"raw_similarity", "fused"} & set(leakage.load_pairs(scanned.workspace).columns)
    with pytest.raises(ThresholdsUncalibrated):
        scanned.scores.thresholds(score="fused", encoder="sscd")


def _load_pairs_needs_no_other_import(project, pairs):
    """A fresh interpreter that imports only leakcore.leakage gets the same pairs from a workspace scored by the
    fused score (no import of the facade or of leakcore.fused first)."""
    import subprocess
    import sys

    out = project.path / "pairs-alone.parquet"
    code = ("import sys\nfrom leakcore import leakage\nfrom leakcore.project import Workspace\n"
            "assert 'leakcore.fused' not in sys.modules and 'leakcore.api' not in sys.modules\n"
            "leakage.load_pairs(Workspace.open(sys.argv[1])).to_parquet(sys.argv[2])\n")
    done = subprocess.run([sys.executable, "-c", code, str(project.path), str(out)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert done.returncode == 0, done.stderr
    alone = pd.read_parquet(out)
    assert alone.attrs["score"] == "fused"
    pd.testing.assert_frame_equal(alone, pairs, check_like=True)


def test_scan_with_verification_plans_fit_and_verify_jobs_and_skips_them_when_done(scanned):
    plan = scanned.configure(verify=True) and scanned.scan(plan_only=True)
    names = [j.name for j in plan.todo]
    assert "fit fused score" in names and any(n.startswith("verify ") for n in names)
    import leakcore.fused as f
    f_fit = f.fit

    def small_fit(ws, **kw):
        return f_fit(ws, **{**kw, "queries": 12})

    f.fit = small_fit
    stages = set()
    try:
        scanned.scan(progress=lambda stage, done, total: stages.add(stage))  # as the CLI's bars and the page report
    finally:
        f.fit = f_fit
    second = fused.SecondOpinion.for_workspace(scanned.workspace, "phash")  # None where its weights are not installed
    assert any(stage.startswith("verify pairs ") and " -> " in stage for stage in stages)  # which table, by name
    assert ("second model" in stages) == (second is not None)
    assert (fused.load(scanned.workspace).second is None) == (second is None)
    assert scanned.scan(plan_only=True).todo == []


def _review_page_shows_the_evidence(project, pair):
    """The Review page in its "aligned" mode on a workspace scored by the fused score, and its Order choice."""
    import os

    from streamlit.testing.v1 import AppTest

    os.environ["LEAKCORE_WORKSPACE"] = str(project.path)
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
        at.session_state["reviewer"] = "tester"
        at.run()
        at.switch_page("pages/1_Review.py").run()
        assert review.UNCERTAINTY_SORT in at.button_group(key="f_sort").options
        at.button_group(key="f_sort").set_value(review.UNCERTAINTY_SORT).run()
        at.button_group(key="compare_mode").set_value("aligned").run()
        assert not at.exception and not at.warning
        text = " ".join(m.value for m in at.markdown)
        assert "Best alignment" in text and "Fused score" in text
        assert len(at.dataframe) >= 2  # the evidence and the features' shares
        shares = at.dataframe[1].value  # the model's features by the evidence table's plain names, inliers counted
        assert "NCC (luminance)" in set(shares["feature"]) and not set(shares["feature"]) & set(verify.FEATURES)
        # a second click on the mode already chosen keeps it (Streamlit's control cleared it: side by side again)
        at.button_group(key="compare_mode").set_value(None).run()
        assert at.button_group(key="compare_mode").value == "aligned" and "Fused score" in " ".join(
            m.value for m in at.markdown)
        # the Thresholds page opens on the fused score: its ROC, its thresholds, the raw ROC beside it
        at.switch_page("pages/2_Thresholds.py").run()
        assert not at.exception and at.button_group(key="th_score").value == "fused"
        fm = fused.load(project.workspace)
        assert (at.session_state["th_hard"], at.session_state["th_soft"]) == (round(fm.hard, 4), round(fm.soft, 4))
        assert "Fused score" in " ".join(c.value for c in at.caption)
        at.button_group(key="th_score").set_value("similarity").run()  # the raw score's page, not applied yet
        assert not at.exception and at.session_state["th_loaded_for"][2] == "similarity"
        assert any("scores pairs by the **fused** score" in i.value for i in at.info)
    finally:
        del os.environ["LEAKCORE_WORKSPACE"]


def test_decisions_raise_the_fused_soft_threshold_to_where_the_flags_they_saw_are_leaks():
    scores = np.array([0.99, 0.97, 0.95, 0.93, 0.9, 0.88, 0.85, 0.8, 0.7, 0.6, 0.55])
    labels = np.array([1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 0])
    # the top 7 are all leaks; with the 8th (a look-alike) the share is 7/8 < 95%: soft between 0.85 and 0.8
    assert fused.soft_from_decisions(scores, labels) == pytest.approx(0.825)
    assert fused.soft_from_decisions(scores, labels, precision=0.8) == pytest.approx(0.65)  # 8 of 10 above 0.6
    assert fused.soft_from_decisions(scores[::-1], labels[::-1]) == pytest.approx(0.825)  # order does not matter
    assert fused.soft_from_decisions(scores, 1 - labels) is None  # no score where the leaks are 95%
    assert fused.soft_from_decisions(scores[:3], labels[:3]) is None  # fewer than MIN_EACH leaks: no say


def test_a_model_fitted_by_an_older_version_is_fitted_again_by_the_next_scan(scanned):
    """A model whose second model ran at another size (or mirrored), or fitted on evidence of an older version,
    cannot be scored by this version: it counts as none, and a scan with verification plans the fit again
    instead of verifying for ever."""
    import json

    scanned.configure(verify=True)
    fm = scanned.verify(queries=12)
    meta_file = fused.model_dir(scanned.workspace, fm.encoder) / "model.json"
    stored = json.loads(meta_file.read_text())
    stored["meta"].update(second_encoder="sscd", second_input_size=160,
                          second_caches=[["sscd", "a", 512], ["sscd", "b", 512]])
    meta_file.write_text(json.dumps(stored))
    assert fused.load(scanned.workspace) is None
    assert "fit fused score" in [j.name for j in scanned.scan(plan_only=True).todo]
    fm = scanned.verify(queries=12)  # fitted again; then one fitted on evidence of an older version
    stored = json.loads(meta_file.read_text())
    stored["meta"]["version"] = verify.VERSION - 1
    meta_file.write_text(json.dumps(stored))
    assert fused.load(scanned.workspace) is None and "version" in fused.outdated(stored["meta"])


def test_the_fused_model_is_an_estimator_stored_as_numbers_and_refuses_a_pickle_or_a_newer_layout(scanned, caplog):
    import json

    from sklearn.base import clone

    fm = scanned.verify(queries=12)
    assert fm.get_params() == {"encoder": "phash", "features": fm.features, "cv": None}
    twin = clone(fm)  # the parameters only: nothing learned comes along
    assert not hasattr(twin, "model_") and not hasattr(twin, "soft_") and twin.set_params(cv=3) is twin
    with pytest.raises(ValueError, match="no parameter"):
        twin.set_params(folds=3)
    suite = fused.fitted_rows(pd.read_parquet(fused.model_dir(scanned.workspace, "phash") / "suite.parquet"))
    x, y = suite[list(fm.features)], suite["label"].to_numpy(int)
    assert twin.fit(x, y) is twin and twin.n_features_in_ == len(fm.features) and list(twin.classes_) == [0, 1]
    p = twin.predict_proba(x)
    assert p.shape == (len(x), 2) and np.allclose(p.sum(axis=1), 1) and twin.model_.folds == 3
    assert fm.hard_ >= fm.soft_ > 0 and fm.meta_["auc"] > 0.5
    # model.json holds the fitted numbers: nothing beside it is unpickled (a file a writer of the workspace planted
    # where older versions kept the model is never opened)
    folder = fused.model_dir(scanned.workspace, "phash")
    meta_file = folder / "model.json"
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    stored = json.loads(meta_file.read_text(), parse_constant=refuse)  # no NaN: jq and browsers read it too
    assert stored["format"] == 3 and stored["params"]["features"] == list(fm.features) and stored["model"]["members"]
    scored = fused.fitting_scores(scanned.workspace)  # what the Thresholds page reads: the floored scores
    copies = scored[scored["label"]]
    assert fm.meta_["hard_tpr"] == pytest.approx(float((copies["fused"] >= fm.hard_).mean()))
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "suite.json", "suite.parquet"]
    (folder / "model.joblib").write_bytes(b"not a pickle: opening it would fail")
    meta_file.write_text(json.dumps(stored))  # a new stamp: read again
    again = fused.load(scanned.workspace)
    np.testing.assert_allclose(again.predict(suite), fm.predict(suite))
    # a model stored by an older version (its numbers in model.joblib, format 2 or none) is fitted again
    meta_file.write_text(json.dumps({k: stored[k] for k in ("format", "params", "hard", "soft", "candidate", "meta")}
                                    | {"format": 2}))
    with caplog.at_level("WARNING"):
        assert fused.load(scanned.workspace) is None
    assert "pickle" in caplog.text and "fit it again" in caplog.text
    from leakcore import leakage
    from leakcore.errors import ThresholdsUncalibrated

    scanned.workspace.set_score("fused")  # the pages and the report say why, and that a scan fits it again
    with pytest.raises(ThresholdsUncalibrated, match="fitted by an older version") as older:
        leakage.load_pairs(scanned.workspace)
    assert "leakcore scan" in older.value.for_terminal()
    scanned.workspace.set_score("similarity")
    meta_file.write_text(json.dumps({**stored, "format": 99}))  # a newer layout than this version reads
    with pytest.raises(InvalidInput, match="newer than this version reads") as refused:
        fused.load(scanned.workspace)
    assert "leakcore verify DIR --refit" in refused.value.for_terminal()


def test_stored_evidence_under_the_candidate_threshold_is_not_scored(scanned):
    """Evidence stored for a pair under the model's candidate threshold (verified under an earlier model with a lower
    one, or for a curator's decision) does not score it: the fused flags are those a scan from empty would give."""
    fm = scanned.verify(queries=12)
    pairs = leakage.load_pairs(scanned.workspace, raw=True)
    ws = scanned.workspace
    scored = fused.with_fused(ws, pairs, fm)
    pair = scored[scored["verified"]].sort_values("similarity").iloc[[0]]  # the least similar pair verified
    assert fused.with_fused(ws, pairs.loc[pair.index], fm)["verified"].all()
    sim = float(pair["similarity"].iloc[0])
    fm.set_thresholds(fm.hard, fm.soft, np.nextafter(sim, 1.0), fm.meta)  # a model whose candidates start above it
    again = fused.with_fused(ws, pairs.loc[pair.index], fm)
    assert not again["verified"].any() and (again["fused"] == 0).all()
    assert verify.evidence_for(ws, pairs.loc[pair.index])["ncc"].notna().all()  # the evidence is still stored


def test_on_photos_the_fit_has_evidence_for_a_few_queries_while_every_query_sets_the_candidate_threshold(
        scanned, monkeypatch):
    """On photos (images large enough for local features) the fitting suite computes evidence for at most
    PHOTO_FITTED_QUERIES queries and PHOTO_LOOKALIKE_IMAGES look-alike images; every query's hardest negative still
    sets the candidate threshold. On small images every second query is fitted, as before."""
    fitted_queries = {}
    for photos in (False, True):
        monkeypatch.setattr(fused, "small_images", lambda ws, photos=photos: not photos)
        monkeypatch.setattr(fused, "PHOTO_FITTED_QUERIES", 4)
        monkeypatch.setattr(fused, "PHOTO_LOOKALIKE_IMAGES", 5)
        fm = scanned.verify(refit=True, queries=12)
        stored = pd.read_parquet(fused.model_dir(scanned.workspace, "phash") / "suite.parquet")
        suite, alike = stored[stored["family"] != "collection"], stored[stored["family"] == "collection"]
        fitted_queries[photos] = suite.loc[suite["fitted"], "query"].nunique()
        assert suite["query"].nunique() == 12  # every query's hardest negative is kept (raw similarity only if unfitted)
        negatives = suite.loc[fused._clean(suite) & (suite["label"] == 0).to_numpy(), "similarity"].to_numpy()
        raw = scanned.workspace.thresholds_or_none("phash")
        expected = float(np.quantile(negatives, 1 - fused.CANDIDATE_FPR))
        assert fm.candidate == pytest.approx(min(expected, raw.soft) if raw is not None else expected)
        assert alike["query"].nunique() <= (5 if photos else fused.MIN_LOOKALIKE_IMAGES)
        assert photos or alike["query"].nunique() > 5
    assert fitted_queries == {False: 6, True: 4}  # 12 queries: every second; on photos every third (0, 3, 6, 9)


def test_every_second_querys_pairs_are_fitted_on_and_every_querys_hardest_negative_sets_the_candidate_threshold(
        scanned):
    fm = scanned.verify(queries=12)
    stored = pd.read_parquet(fused.model_dir(scanned.workspace, "phash") / "suite.parquet")
    suite = stored[stored["family"] != "collection"]
    fitted, raw_only = suite[suite["fitted"]], suite[~suite["fitted"]]
    assert fitted["query"].nunique() == 6 and raw_only["query"].nunique() == 6  # 12 queries, every second fitted
    assert fm.meta["queries"] == 6  # the training images edited for the fit (the look-alikes' are not edited)
    assert fitted["ncc"].notna().all() and raw_only["ncc"].isna().all() and (raw_only["label"] == 0).all()
    assert set(fitted["label"]) == {0, 1} and fm.meta["suite_pairs"] == len(fused.fitted_rows(stored))
    negatives = suite.loc[fused._clean(suite) & (suite["label"] == 0).to_numpy(), "similarity"].to_numpy()
    assert len(negatives) > len(fitted[fitted["label"] == 0])
    raw = scanned.workspace.thresholds_or_none("phash")
    expected = float(np.quantile(negatives, 1 - fused.CANDIDATE_FPR))
    assert fm.candidate == pytest.approx(min(expected, raw.soft) if raw is not None else expected)


def test_candidates_are_each_images_nearest_few_and_beyond_them_the_raw_flags():
    pairs = pd.DataFrame({"eval_item_id": ["e"] * 6 + ["f"] * 2, "rank": [1, 2, 3, 4, 5, 6, 1, 2],
                          "train_item_id": list("abcdefgh"),
                          "similarity": [0.9, 0.88, 0.87, 0.86, 0.6, 0.4, 0.58, 0.57]})
    meta = {"candidate_rank": 3, "verify_beyond_rank_above": 0.7}
    fm = fused.FusedModel("phash").set_thresholds(0.9, 0.8, 0.55, meta)
    # e's nearest three, then its fourth copy (raw flags it) but not its fifth (below raw soft, past the third)
    assert list(fused.candidates(pairs, fm)["train_item_id"]) == list("abcdgh")
    old = fused.FusedModel("phash").set_thresholds(0.9, 0.8, 0.55, {})  # fitted before the limit
    assert list(fused.candidates(pairs, old)["train_item_id"]) == list("abcdegh")


def test_a_pair_within_a_split_found_from_both_ends_is_verified_once_and_read_both_ways(scanned):
    """b among a's nearest and a among b's (a pair within one split) is one candidate, from the lower item id's
    end; the other direction reads the evidence stored for it, and a pair verified neither way reads none."""
    pairs = pd.DataFrame({"eval_item_id": ["a", "b", "a", "c"], "train_item_id": ["b", "a", "c", "d"],
                          "rank": [1, 1, 2, 1], "similarity": [0.9, 0.9, 0.8, 0.7]})
    fm = fused.FusedModel("phash").set_thresholds(0.95, 0.9, 0.5, {"candidate_rank": 3})
    listed = fused.candidates(pairs, fm)
    assert list(zip(listed["eval_item_id"], listed["train_item_id"])) == [("a", "b"), ("a", "c"), ("c", "d")]

    ws = scanned.workspace
    stored = leakage.load_pairs(ws, raw=True)
    one = stored.iloc[[0]][["eval_item_id", "train_item_id"]]
    assert verify.compute_evidence(ws, one) == 1
    back = one.rename(columns={"eval_item_id": "train_item_id", "train_item_id": "eval_item_id"})
    other = stored[(stored["eval_item_id"] != one["eval_item_id"].iloc[0])
                   & (stored["train_item_id"] != one["train_item_id"].iloc[0])].iloc[[0]]
    got = verify.evidence_for(ws, pd.concat([one, back[one.columns], other[one.columns]], ignore_index=True))
    cols = list(verify.EVIDENCE)
    assert got[list(verify.FEATURES[1:] + verify.CROP)].iloc[0].notna().all()  # AWAY: only where matches are many
    pd.testing.assert_series_equal(got[cols].iloc[0], got[cols].iloc[1], check_names=False)
    assert got[cols].iloc[2].isna().all()


def test_evidence_batches_are_shared_evenly_by_the_cores():
    assert verify._batch_size(74, 64, 2) == 37  # two batches of 37, not 64 and 10
    assert verify._batch_size(186, 64, 2) == 47  # four of at most 47
    assert verify._batch_size(186, 64, 1) == 62  # one core: the fewest batches of at most 64
    assert verify._batch_size(3, 64, 4) == 1 and verify._batch_size(0, 64, 2) == 1


def test_a_second_model_and_enough_decisions_alone_make_the_fused_score(scanned, monkeypatch):
    """The other SSCD model's similarity is a feature, read from the embedding cache (the same as embedding the
    two images now); with enough decisions the model is fitted on them alone and soft is chosen out of fold."""
    fm = scanned.verify(queries=12)
    if fm.second is None:
        pytest.skip("no second copy-detection model installed here")
    assert fm.second == fused.second_encoder_name("phash") and fused.SECOND_FEATURE in fm.features
    pairs = fused.with_fused(scanned.workspace, leakage.load_pairs(scanned.workspace, raw=True), fm)
    top = pairs[pairs["verified"]].sort_values("fused", ascending=False).iloc[0]
    cached = fused.SecondOpinion.of_model(scanned.workspace, fm).similarity(top.to_frame().T)[0]
    items = scanned.workspace.items().drop_duplicates("item_id").set_index("item_id")
    a, b = verify.load_images(items.loc[[top["eval_item_id"], top["train_item_id"]]].reset_index())
    from leakcore.encoders import create_encoder

    enc = create_encoder(fm.second, input_size=fused.SECOND_INPUT_SIZE)
    assert cached == pytest.approx(float(enc.encode_images([a])[0] @ enc.encode_images([b])[0]), abs=1e-4)
    assert scanned.review.evidence(top["eval_item_id"], top["train_item_id"]).fused == pytest.approx(top["fused"], abs=1e-4)

    cross = pairs[~pairs["within"]].sort_values("similarity", ascending=False)
    leaks, others = cross.drop_duplicates("eval_item_id").head(6), cross.iloc[-10:]
    reviewer = "judge"
    review.decide_many(scanned.workspace, list(zip(leaks["eval_item_id"], leaks["train_item_id"])), "soft", reviewer=reviewer)
    review.decide_many(scanned.workspace, list(zip(others["eval_item_id"], others["train_item_id"])), "not_leak",
                       reviewer=reviewer)
    for name, value in (("MIN_DECISIONS", 12), ("MIN_EACH", 5), ("DECISIONS_ALONE", 12), ("MIN_ALONE", 5)):
        monkeypatch.setattr(fused, name, value)
    rule = fused.soft_from_decisions
    asked = []  # soft and hard come from the rule on the decisions' out-of-fold scores (forced to known values)
    monkeypatch.setattr(fused, "soft_from_decisions",
                        lambda scores, labels, precision=fused.DECIDED_PRECISION:
                        asked.append((len(scores), precision)) or (0.61 if precision == fused.DECIDED_PRECISION else 0.93))
    alone = fused.fit(scanned.workspace, queries=12)
    assert alone.meta["fitted_on_decisions_alone"] and alone.meta["decisions_used"] == 16
    assert asked == [(16, fused.DECIDED_PRECISION), (16, fused.DECIDED_HARD_PRECISION)]
    assert (alone.soft, alone.hard) == (0.61, 0.93)
    assert alone.meta["threshold_rule"].startswith("decisions:") and "out of fold" in alone.meta["threshold_rule"]
    monkeypatch.setattr(fused, "soft_from_decisions", lambda *a, **kw: None)  # no score gets there: the suite's stay
    suite_only = fused.fit(scanned.workspace, queries=12)
    assert suite_only.meta["threshold_rule"] == "suite" and suite_only.hard >= suite_only.soft
    monkeypatch.setattr(fused, "soft_from_decisions", rule)
    fitted_rows = alone.model_.members_[0]["rows"]
    assert fitted_rows == 16  # the decisions, not the suite's hundreds of pairs
    monkeypatch.setattr(fused, "DECISIONS_ALONE", 100)
    seen = []  # the decided pairs' scores that soft is raised on: held out, not the ones the model was fitted to
    monkeypatch.setattr(fused, "soft_from_decisions", lambda scores, labels, **kw: seen.append(scores) or 0.999)
    mixed = fused.fit(scanned.workspace, queries=12)
    assert not mixed.meta["fitted_on_decisions_alone"] and mixed.meta["decisions_used"] == 16
    assert mixed.soft == 0.999 and mixed.meta["threshold_rule"].endswith("(out of fold)")
    decided = fused.decision_pairs(scanned.workspace, second=fused.SecondOpinion.of_model(scanned.workspace, mixed))
    in_sample = mixed.predict(decided)
    assert len(seen[0]) == len(in_sample) == 16 and not np.allclose(np.sort(seen[0]), np.sort(in_sample))


def _weighted_precision(scores, labels, threshold, leak_share):
    above = scores >= threshold
    pos, neg = labels == 1, labels == 0
    tp = leak_share * (above & pos).sum() / pos.sum()
    fp = (1 - leak_share) * (above & neg).sum() / neg.sum()
    return tp / (tp + fp)


def test_soft_from_lookalikes_is_where_95_percent_of_pairs_above_are_leaks_out_of_fold():
    """A synthetic fitting set: edited copies and real look-alikes whose features overlap. Soft is chosen on the
    out-of-fold scores so that, with leaks weighted to LEAK_SHARE of the pairs, >= 95% of the pairs above it are
    leaks, and it is the lowest such leak score (one leak lower breaks the rule)."""
    rng = np.random.default_rng(0)
    n_pos, n_neg = 300, 600
    x = np.vstack([rng.normal(1.5, 1.0, (n_pos, 4)), rng.normal(0.0, 1.0, (n_neg, 4))])
    y = np.r_[np.ones(n_pos, int), np.zeros(n_neg, int)]
    groups = np.r_[np.arange(n_pos) // 6, 1000 + np.arange(n_neg) // 2].astype(str)  # a query's edits held out together
    held = fused._out_of_fold(x, y, groups)
    in_sample = fused._estimator(5).fit(x, y).predict_proba(x)[:, 1]
    assert not np.allclose(held, in_sample)  # scores of models that did not see the pair
    soft = fused.soft_from_lookalikes(held, y)
    assert soft is not None and 0 < soft < 1
    assert _weighted_precision(held, y, soft, fused.LEAK_SHARE) >= fused.LOOKALIKE_PRECISION
    lower = np.sort(held[(y == 1) & (held < soft)])[::-1]
    assert len(lower) and _weighted_precision(held, y, lower[0], fused.LEAK_SHARE) < fused.LOOKALIKE_PRECISION
    # more leaks among the candidates: a lower soft; fewer: a higher one
    assert fused.soft_from_lookalikes(held, y, leak_share=0.5) < soft < fused.soft_from_lookalikes(held, y, leak_share=0.02)
    assert fused.soft_from_lookalikes(held[y == 1], y[y == 1]) is None  # no look-alikes: no say


def test_the_fit_sets_soft_on_the_collections_own_look_alikes_never_below_the_floor(scanned, monkeypatch):
    """Look-alike negatives come from the collection itself (nearest neighbours of training images, verified copies
    left out); soft is set on them out of fold, and a rule that asks for less than SOFT_FLOOR gets the floor."""
    monkeypatch.setattr(fused, "MIN_LOOKALIKES", 5)
    rule = fused.soft_from_lookalikes
    seen = []
    monkeypatch.setattr(fused, "soft_from_lookalikes", lambda s, y, **kw: seen.append((s, y)) or rule(s, y, **kw))
    fm = fused.fit(scanned.workspace, queries=12)
    suite = fused.fitted_rows(pd.read_parquet(fused.model_dir(scanned.workspace, "phash") / "suite.parquet"))
    alike = suite[suite["family"] == "collection"]
    assert fm.meta["lookalike_pairs"] == len(alike) >= 5 and (alike["label"] == 0).all()
    assert (alike["train_item_id"] != alike["query"]).all()
    assert not fused._pixels_agree(alike[alike["negative"] == "collection"], scanned.workspace).any()  # copies left out
    (scores, labels), = seen
    assert len(scores) == int((suite["label"] == 1).sum()) + len(alike) and labels.sum() == (suite["label"] == 1).sum()
    assert fm.soft >= fused.SOFT_FLOOR and fm.hard >= fm.soft and fm.meta["threshold_rule"].startswith("look-alikes")
    assert fused.small_images(scanned.workspace) and fm.meta["decisive_pixels"] is None  # 64 x 48 px: no such rule
    assert fm.meta["decisive_crop"] is None  # nor a crop rule
    if fm.meta["lookalike_soft"] is not None and fm.meta["lookalike_soft"] >= fused.SOFT_FLOOR:
        assert _weighted_precision(scores, labels, fm.soft, fused.LEAK_SHARE) >= fused.LOOKALIKE_PRECISION
    # a rule that would put soft at the suite's kind of value (0.008) is overruled by the floor
    monkeypatch.setattr(fused, "soft_from_lookalikes", lambda s, y, **kw: 0.008)
    low = fused.fit(scanned.workspace, queries=12)
    assert low.soft == fused.SOFT_FLOOR and low.meta["lookalike_soft"] == 0.008
    monkeypatch.setattr(fused, "soft_from_lookalikes", lambda s, y, **kw: None)  # no score gets there
    none = fused.fit(scanned.workspace, queries=12)
    assert none.soft >= fused.SOFT_FLOOR and "no fused score" in none.meta["threshold_rule"]
    monkeypatch.setattr(fused, "MIN_LOOKALIKES", 10_000)  # without enough look-alikes the suite's rule stays
    assert fused.fit(scanned.workspace, queries=12).meta["threshold_rule"] == "suite"


def test_a_second_scan_computes_no_evidence_again(scanned, monkeypatch):
    """Evidence is computed once per pair and cached: a second scan computes none, and a refit (the model gone)
    reuses the stored fitting set and the collection's look-alike pairs from the evidence store."""
    computed = []
    real = verify.evidence

    def spy(eval_images, train_images, **kw):
        computed.append(len(eval_images))
        return real(eval_images, train_images, **kw)

    monkeypatch.setattr(verify, "evidence", spy)
    scanned.configure(verify=True)
    scanned.scan()
    first = sum(computed)
    assert first > 0 and fused.load(scanned.workspace) is not None
    computed.clear()
    scanned.scan()
    assert computed == []
    folder = fused.model_dir(scanned.workspace, "phash")
    (folder / "model.json").unlink()
    assert "fit fused score" in [j.name for j in scanned.scan(plan_only=True).todo]
    scanned.scan()  # fitted again on the stored fitting set
    assert computed == [] and fused.load(scanned.workspace) is not None
    (folder / "suite.parquet").unlink()  # the suite's edits are made again; the collection's pairs are not
    (folder / "model.json").unlink()
    scanned.scan()
    suite = fused.fitted_rows(pd.read_parquet(folder / "suite.parquet"))
    edits = int((suite["label"] == 1).sum())  # one positive and at most one negative per edit (twins dropped after)
    assert int((suite["family"] != "collection").sum()) <= sum(computed) <= 2 * edits


def test_a_crop_of_a_small_photo_keeps_local_features_up_to_its_border():
    """ORB finds no feature within its patch (31 px) of a border; on a 150 x 110 px crop that is most of the picture
    (0, 0 and 0 inliers with its 320 x 240 px original at evidence version 15 before the border is reflected
    outwards; 14, 21 and 8 with it)."""
    for seed in (5, 8, 11):
        small = _scene(seed, (320, 240))
        crop = small.crop((90, 70, 240, 180))
        points = verify.orb_features(crop)[0][0]
        near = (points < verify.ORB_PAD) | (points >= np.array(crop.size) - verify.ORB_PAD)
        assert near.any(axis=1).sum() >= 5  # features near the border, inside the image
        assert (points >= 0).all() and (points < crop.size).all()
        inliers, ratio = verify.orb_match(crop, small)
        assert inliers >= 8 and ratio >= 0.7
        assert verify.orb_match(crop, _scene(seed + 1, (320, 240)))[0] <= 2


def test_local_matches_at_one_place_count_once():
    """ORB finds one spot (an eye, a corner) at several scales: thirty matches piled on one place under one map are
    one inlier, the same thirty spread over the picture are thirty."""
    rng = np.random.default_rng(0)
    des = rng.integers(0, 256, (30, 32), dtype=np.uint8)
    jitter = rng.uniform(-1, 1, (30, 2)).astype(np.float32)
    spot = np.float32([100, 80]) + jitter
    assert verify.orb_pair([(spot, des)], [(spot + 40, des)])[0] <= 1
    spread = rng.uniform(0, 400, (30, 2)).astype(np.float32)
    inliers, ratio = verify.orb_pair([(spread, des)], [(spread + 40, des)])
    assert inliers == 30 and ratio == 1.0


def test_a_strong_crop_is_decided_by_its_local_matches():
    """A crop keeping a quarter of a photo (half of each side, at its own size) matches its original with many
    local features under one map; another scene does not, and neither does the crop against it. (The flat shapes of
    this scene give 38 inliers; planted crops of real photos gave a median of 112-162 at evidence version 15.)"""
    big = _scene(5)
    crop = big.crop((200, 150, 520, 390))
    ev = verify.evidence([crop, crop], [big, _scene(6)])
    assert np.expm1(ev.loc[0, "orb_inliers"]) >= fused.TWIN_ORB_INLIERS + 10
    assert np.expm1(ev.loc[1, "orb_inliers"]) <= 5
    assert list(fused.decided_by_matches(ev)) == [True, False]


class _Unsure:
    """A stand-in for the fitted model: every pair at 0.05."""

    def predict_proba(self, x):
        return np.column_stack([np.full(len(x), 0.95), np.full(len(x), 0.05)])


DECIDED = 0.9 + (1 - 0.9) * 0.05  # a decided pair of _Unsure's (0.05) under hard 0.9: hard + (1 - hard) x its score


def test_decided_pairs_score_between_hard_and_one_in_the_models_order():
    """Raised to hard itself, every planted copy of a photo set tied at one value (a new user could not sort or
    triage 60 flags at 0.9841): a decided pair scores hard + (1 - hard) x its model score, at least hard and at least
    its own score, in the model's order; an undecided pair keeps its score."""
    ev = pd.DataFrame({"orb_inliers": np.log1p([200, 200, 200, 0]), "orb_ratio": [1.0, 1.0, 1.0, 0.0]})
    out = fused.floor_matched(ev, np.array([0.2, 0.8, 0.95, 0.6]), 0.9, (fused.TWIN_ORB_INLIERS, fused.TWIN_ORB_RATIO))
    assert out == pytest.approx([0.92, 0.98, 0.995, 0.6])
    assert (out[:3] >= np.maximum([0.2, 0.8, 0.95], 0.9)).all() and list(np.argsort(out[:3])) == [0, 1, 2]


def test_decisive_local_matches_floor_the_fused_score_at_hard():
    rows = pd.DataFrame({f: [0.5, 0.5, 0.5] for f in verify.FEATURES})
    rows["orb_inliers"] = np.log1p([fused.TWIN_ORB_INLIERS, fused.TWIN_ORB_INLIERS - 1, 200])
    rows["orb_ratio"] = [fused.TWIN_ORB_RATIO, 0.9, fused.TWIN_ORB_RATIO - 0.01]
    meta = {"decisive_matches": [fused.TWIN_ORB_INLIERS, fused.TWIN_ORB_RATIO]}
    fm = fused.FusedModel("phash").set_thresholds(0.9, 0.3, 0.5, meta)
    fm.model_ = _Unsure()
    assert list(fm.predict(rows)) == pytest.approx([DECIDED, 0.05, 0.05])  # both at least, or the model decides
    before = fused.FusedModel("phash").set_thresholds(0.9, 0.3, 0.5, {})  # fitted before the rule
    before.model_ = _Unsure()
    assert list(before.predict(rows)) == pytest.approx([0.05] * 3)


def _at_a_two_part_rule(key: str, columns: tuple[str, str], rule: tuple[float, float]):
    """Three pairs scored 0.05 by the model: at both parts of a decisive rule, just under its first part, just
    under its second; and a model (hard 0.9) whose meta holds that rule under `key`."""
    rows = pd.DataFrame({f: [0.0, 0.0, 0.0] for f in verify.FEATURES})
    rows[columns[0]] = [rule[0], rule[0] - 0.01, 0.99]
    rows[columns[1]] = [rule[1], 0.99, rule[1] - 0.01]
    fm = fused.FusedModel("phash").set_thresholds(0.9, 0.3, 0.5, {key: list(rule)})
    fm.model_ = _Unsure()
    return rows, fm


def test_a_pair_aligned_pixel_for_pixel_is_floored_at_hard_on_photos_only(monkeypatch):
    """On photos a pair whose overlap aligns as a twin's (verify.TWIN_NCC, verify.TWIN_SSIM) is at least hard, as
    one decided by its local matches (a copy too small for them scored 0.40 by the model). The fit stores that rule
    only for photos (`test_the_fit_sets_soft_on_the_collections_own_look_alikes_never_below_the_floor`: none on
    64 x 48 px images)."""
    rows, fm = _at_a_two_part_rule("decisive_pixels", ("ncc", "ssim"), (verify.TWIN_NCC, verify.TWIN_SSIM))
    assert list(fm.predict(rows)) == pytest.approx([DECIDED, 0.05, 0.05])
    assert fused.floor_matched(rows, np.full(3, 0.05), 0.9) == pytest.approx([0.05] * 3)  # no rule, no floor


def test_on_photos_the_pixel_rule_holds_only_where_the_pixels_agree_at_four_times_the_canvas_too(tmp_path):
    """Smooth pictures align at 32 px with other parts of themselves (the demo's tiles of a clock's grey background, a
    horse's white one, a retina's rim: NCC >= 0.9, SSIM >= 0.8, floored at hard as one photograph). On photos the
    pixel rule's third part asks the crop search's NCC at 128 px for verify.TWIN_CROP_AGREES too, where the search
    ran (NaN: the local matches decided the pair and it was not run); a model fitted with the two-part rule is fitted
    again."""
    rows, fm = _at_a_two_part_rule("decisive_pixels", ("ncc", "ssim"), (verify.TWIN_NCC, verify.TWIN_SSIM))
    aligned = pd.concat([rows.iloc[[0]]] * 3, ignore_index=True)
    aligned["crop_ncc"] = [verify.TWIN_CROP_AGREES, verify.TWIN_CROP_AGREES - 0.01, np.nan]
    fm.meta_["decisive_pixels"] = [verify.TWIN_NCC, verify.TWIN_SSIM, verify.TWIN_CROP_AGREES]
    assert list(fm.predict(aligned)) == pytest.approx([DECIDED, 0.05, DECIDED])
    assert fused.outdated({"version": verify.VERSION, "decisive_pixels": [verify.TWIN_NCC, verify.TWIN_SSIM]})
    assert fused.outdated({"version": verify.VERSION, "decisive_pixels": fm.meta_["decisive_pixels"],
                           "hard_needs_raw": 0.9}) is None
    assert "raw similarity's hard" in fused.outdated({"version": verify.VERSION,  # fitted before hard asked for it
                                                     "decisive_pixels": fm.meta_["decisive_pixels"]})
    big, small = _workspace_of_size(tmp_path / "big", 500), _workspace_of_size(tmp_path / "small", 32)
    assert fused.pixel_rule(big) == fm.meta_["decisive_pixels"] and fused.pixel_rule(small) is None


def _fur(seed: int, size=(400, 300)) -> Image.Image:
    """A coat of fur: fine grain with soft light and no corners strong enough for ORB's FAST test."""
    rng = np.random.default_rng(seed)
    grain = np.asarray(Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8)).filter(
        ImageFilter.GaussianBlur(2.5)), float)
    yy, xx = np.mgrid[0:size[1], 0:size[0]] / max(size)
    light = 90 + 40 * np.sin(3 * xx + rng.uniform(0, 6)) * np.cos(2 * yy + rng.uniform(0, 6))
    grey = np.clip(light + 0.8 * (grain - grain.mean()), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([grey, (grey * 0.9).astype(np.uint8), (grey * 0.75).astype(np.uint8)], -1))


def test_a_strong_crop_with_few_corners_is_found_as_a_crop_either_way_round():
    """A crop of half of each side of a coat of fur has too few corners for local features and is too small for the
    alignment's scales; the crop search finds it in its original (and the original around it) at NCC and detail
    NCC above `decided_by_crop`'s rule (0.96-0.98 and 0.88 here), and not in another coat (at most 0.57 and 0)."""
    for seed in (1, 3, 4):
        original = _fur(seed)
        crop = original.crop((130, 60, 330, 210))
        assert verify.orb_match(crop, original)[0] < fused.TWIN_ORB_INLIERS  # the local matches do not decide
        ev = verify.evidence([crop, original, crop], [original, crop, _fur(seed + 10)])
        assert fused.decided_by_crop(ev).tolist() == [True, True, False], ev[["crop_ncc", "crop_detail"]]
        assert ev["crop_ncc"].iloc[2] < 0.9 and ev["crop_detail"].iloc[2] < 0.3


def test_no_crop_search_where_the_local_matches_decide_and_the_flags_stay_the_same():
    """A pair the local matches decide is not searched for a crop (its crop evidence is NaN, it is decided all the
    same); a pair they do not decide is, and the crop search still decides a fur crop (evidence version 13)."""
    big = _scene(5)
    crop = big.crop((200, 150, 520, 390))
    original = _fur(1)
    fur = original.crop((130, 60, 330, 210))
    ev = verify.evidence([crop, fur, crop], [big, original, _scene(6)])
    assert fused.decided_by_matches(ev).tolist() == [True, False, False]
    assert np.isnan(ev.loc[0, "crop_ncc"]) and np.isnan(ev.loc[0, "crop_detail"])
    assert not ev.loc[1:, ["crop_ncc", "crop_detail"]].isna().any().any()
    assert fused.decided_by_crop(ev).tolist() == [False, True, False]
    rows = ev.assign(similarity=0.5)
    fm = fused.FusedModel("phash").set_thresholds(0.9, 0.3, 0.5, {"decisive_matches": list(fused.MATCH_RULE),
                                                                   "decisive_crop": [fused.TWIN_CROP_NCC,
                                                                                     fused.TWIN_CROP_DETAIL]})
    fm.model_ = _Unsure()
    assert list(fm.predict(rows)) == pytest.approx([DECIDED, DECIDED, 0.05])


def test_a_candidate_pair_its_local_matches_decide_is_aligned_by_their_map_and_explained_the_same_way():
    """A scan's candidate pair whose local matches as is decide it is measured where their map puts the eval image
    (`evidence(by_matches=True)`: no search among the variants, no ECC): a crop of a photo, rescaled, aligns there as a
    copy does; the Review page's explanation of such a pair is the same computation and its pictures show the map. A
    pair they do not decide is searched for as before, and so is every pair without `by_matches` (the fit's)."""
    big = _scene(5)
    crop = big.crop((100, 80, 560, 425)).resize((368, 276), Image.Resampling.BILINEAR)
    look_alike = _scene(6)
    ev = verify.evidence([crop, look_alike], [big, big], by_matches=True)
    settled, other = ev.iloc[0], ev.iloc[1]
    assert settled["variant"] == verify.BY_MATCHES and fused.decided_by_matches(ev).tolist() == [True, False]
    assert settled["ncc"] > 0.95 and settled["ssim"] > 0.8 and settled["overlap"] > 0.95
    assert settled["ncc_refined"] > 0.95 and settled["detail_refined"] > 0.6 and np.isnan(settled["crop_ncc"])
    searched = verify.evidence([crop, look_alike], [big, big])
    assert searched["variant"].tolist()[0] >= 0 and searched["ncc"].iloc[0] < settled["ncc"]
    # the pairs no rule decides (and the local matches' own evidence) are the same either way
    pd.testing.assert_series_equal(searched.iloc[1], ev.iloc[1], check_names=False)
    assert searched.loc[0, ["orb_inliers", "orb_ratio", "tiles_agree", "tiles_textured"]].tolist() == \
        ev.loc[0, ["orb_inliers", "orb_ratio", "tiles_agree", "tiles_textured"]].tolist()
    assert other["variant"] >= 0 and other["ncc"] < 0.6
    x = verify.explain(crop, big, by_matches=True)
    assert x.matches is not None and x.alignment.variant == verify.BY_MATCHES
    for got, stored in ((x.alignment.ncc, "ncc"), (x.alignment.ncc_grad, "ncc_grad"), (x.ssim, "ssim"),
                        (x.ncc_detail, "ncc_detail"), (x.refined["ncc_refined"], "ncc_refined"),
                        (x.refined["detail_refined"], "detail_refined")):
        assert got == pytest.approx(settled[stored], abs=1e-5), stored
    np.testing.assert_allclose(verify.display_transform(x, crop.size, big.size, 320),
                               verify.matches_transform(x.matches, crop.size, big.size, 320))
    assert verify.explain(crop, big).matches is None and verify.explain(crop, big).alignment.variant >= 0


def test_the_fit_reads_a_pair_the_scan_aligned_by_its_matches_map_as_searched(tmp_path):
    """The scan stores a decided candidate pair aligned by its matches' map; the fit (look-alikes, decisions) reads
    every pair searched for, as the model sees the pairs it scores (`searched_evidence_for`), and the stored row
    stays the scan's."""
    big = _scene(5)
    for split, img in (("train", big), ("test", big.crop((100, 80, 560, 425)).resize((368, 276)))):
        (tmp_path / "data" / split / "x").mkdir(parents=True)
        img.save(tmp_path / "data" / split / "x" / "a.png")
    project = Project.create(tmp_path / "ws", encoder="phash")
    project.add("toy", tmp_path / "data")
    ws = project.workspace
    ids = ws.items().drop_duplicates("item_id").set_index("split")["item_id"]
    pair = pd.DataFrame({"eval_item_id": [ids.filter(like="test").iloc[0]],
                         "train_item_id": [ids.filter(like="train").iloc[0]]})
    assert verify.compute_evidence(ws, pair, by_matches=True) == 1
    stored = verify.evidence_for(ws, pair).iloc[0]
    read = verify.searched_evidence_for(ws, pair).iloc[0]
    assert stored["variant"] == verify.BY_MATCHES and read["variant"] >= 0
    items = ws.items().drop_duplicates("item_id").set_index("item_id")
    a, b = verify.load_images(items.loc[[pair.at[0, "eval_item_id"], pair.at[0, "train_item_id"]]].reset_index(),
                              side=verify.ORB_SIDE, gray=True)
    searched = verify.evidence([a], [b])
    assert read["ncc"] == pytest.approx(searched["ncc"].iloc[0]) and read["ncc"] < stored["ncc"]
    assert verify.evidence_for(ws, pair).iloc[0]["variant"] == verify.BY_MATCHES


def test_the_ncc_at_one_shift_is_the_masked_ncc_at_that_shift():
    """`_align_by_map` measures the alignment's NCC with `_masked_ncc_here`: the search's masked NCC (flat overlaps
    damped the same way) at shift (0, 0)."""
    import torch

    rng = np.random.default_rng(3)
    for flat in (verify.FLAT_STD, verify.FLAT_GRAD_STD, 0.5):
        a, b = rng.random((32, 32), np.float32), rng.random((32, 32), np.float32)
        b = (0.7 * a + 0.3 * b).astype(np.float32)
        ma, mb = np.zeros((32, 32), np.float32), np.zeros((32, 32), np.float32)
        ma[2:30, 4:28], mb[0:26, 1:32] = 1, 1
        ncc, _ = verify.masked_ncc(torch.from_numpy(a * ma)[None, None], torch.from_numpy(ma)[None, None],
                                   torch.from_numpy(b)[None, None], torch.from_numpy(mb)[None, None], 2, flat)
        assert verify._masked_ncc_here(a * ma, ma, b, mb, flat) == pytest.approx(float(ncc[0, 0, 2, 2]), abs=1e-5)


def test_no_crop_search_on_cifar_sized_images():
    """At 32 px a crop is a blur: no crop search (its evidence stays 0, and the fit stores no crop rule there)."""
    tiny = _fur(4, (32, 32))
    ev = verify.evidence([tiny.crop((4, 4, 28, 28))], [tiny])
    assert ev["crop_ncc"].iloc[0] == 0.0 and ev["crop_detail"].iloc[0] == 0.0


def test_a_score_floored_at_hard_is_stored_at_or_above_hard():
    """Fused scores are stored as float32, and a pair floored at hard (float64) must not round below it: a hard
    of 0.9900670346514342 rounded to nearest is 3e-8 under it, and every decided copy then counted as soft."""
    from leakcore.scores.fused import _float32_up

    for hard in (0.9900670346514342, 0.95, 1 / 3, 0.7171):
        stored = _float32_up(np.array([hard, hard - 1e-3, 0.0]))
        assert stored.dtype == np.float32 and stored[0] >= hard and stored[1] < hard
        assert leakage.degree_of(stored, hard, hard / 2).tolist() == ["hard", "soft", "none"]


def test_a_pair_found_as_a_crop_is_floored_at_hard_where_the_model_has_the_rule():
    rows, fm = _at_a_two_part_rule("decisive_crop", verify.CROP, (fused.TWIN_CROP_NCC, fused.TWIN_CROP_DETAIL))
    assert list(fm.predict(rows)) == pytest.approx([DECIDED, 0.05, 0.05])
    fm.meta_ = {}  # a model fitted before the rule (or on CIFAR-sized images)
    assert list(fm.predict(rows)) == pytest.approx([0.05] * 3)


def _workspace_of_size(root: Path, width: int) -> Workspace:
    """A workspace whose three training images are `width` px wide (and 3/4 as high)."""
    folder = root / "data" / "train" / "x"
    folder.mkdir(parents=True)
    for i in range(3):
        photo(i, (width, width * 3 // 4)).save(folder / f"{i}.png")
    project = Project.create(root / "ws", encoder="phash")
    project.add("toy", root / "data")
    return project.workspace


def test_soft_is_at_least_even_odds_where_local_matches_decide(tmp_path):
    big, small = _workspace_of_size(tmp_path / "big", 500), _workspace_of_size(tmp_path / "small", 32)
    assert big.photos() and not small.photos()
    assert fused.soft_floor(big) == fused.SOFT_FLOOR_MATCHED == 0.5  # photos: matches decide strong edits
    assert fused.soft_floor(small) == fused.SOFT_FLOOR < 0.5  # CIFAR-sized: no local features, the low floor


def test_evidence_on_a_thread_per_core_is_the_same_as_on_one(monkeypatch):
    """The evidence's batches run on a thread per core: the same numbers, in the same order, as on one thread."""
    from conftest import photo

    originals = [photo(s, (160, 128)) for s in range(12)]
    edited = [im.crop((10, 8, 150, 120)).rotate(3 * (i % 3)) for i, im in enumerate(originals)]
    evals, trains = edited + edited[:6], originals + originals[6:]  # copies, then other photos
    monkeypatch.setattr(verify, "_cores", lambda: 1)
    one = verify.evidence(evals, trains, batch=4)
    monkeypatch.setattr(verify, "_cores", lambda: 3)
    many = verify.evidence(evals, trains, batch=4)
    pd.testing.assert_frame_equal(one, many)
    assert (one["ncc"].iloc[:12] > one["ncc"].iloc[12:].max()).all()  # the copies align, the others do not


def test_scan_with_verification_says_what_it_did_and_which_score_the_rates_use(tmp_path, capsys):
    """`scan --verify` printed the same table as a plain scan: a new user could not tell that verification ran, nor
    that the rates still use the raw similarity until `verify --use fused`."""
    from leakcore.cli import main

    root = make_folder_dataset(tmp_path / "data", n_train=24, n_test=4, leaks=(0, 1))
    Project.create(tmp_path / "ws", encoder="phash").add("toy", root)
    assert main(["scan", str(tmp_path / "ws"), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "(verification included)" in out.splitlines()[0]
    line = next(x for x in out.splitlines() if x.startswith("verification:"))
    assert "checked on their pixels" in line
    assert "flagged (raw soft)" in out and "flagged (fused soft)" in out  # what the fused score would change
    assert "the rates below use the raw similarity" in out and "--use fused" in out
    assert main(["verify", str(tmp_path / "ws"), "--use", "fused"]) == 0
    capsys.readouterr()
    assert main(["scan", str(tmp_path / "ws")]) == 0  # verification stays on (a workspace setting)
    assert "the rates below use the fused score" in capsys.readouterr().out
    assert main(["scan", str(tmp_path / "ws"), "--no-verify"]) == 0
    assert "verification:" not in capsys.readouterr().out


def test_a_scan_verifies_photos_by_default_and_flags_by_the_fused_score_unless_told_otherwise(tmp_path, capsys):
    """Verification is the default where it was measured to help (issue #32): on photos (median shorter side at least
    64 px, and the 20 training images the fit needs) a plain `leakcore scan` fits the fused score and the flags use it;
    on small images (CIFAR-10's 32 px; here 64 x 48) it stays opt-in and the raw similarity flags. A choice
    (`--no-verify`, `verify --use similarity`) is kept by later scans."""
    from leakcore.cli import main

    Project.create(tmp_path / "ws", encoder="phash").add("toy", make_photo_folder(tmp_path / "photos", 22))
    assert main(["scan", str(tmp_path / "ws")]) == 0
    out = capsys.readouterr().out
    assert "(verification included)" in out.splitlines()[0] and "the rates below use the fused score" in out
    ws = Workspace.open(tmp_path / "ws")
    assert ws.photos() and ws.verification and not ws.verification_chosen and ws.score == "fused"
    assert main(["export", str(tmp_path / "ws"), "--split", "toy/test", "--policy", "soft"]) == 0
    capsys.readouterr()
    removed = pd.read_csv(ws.exports_dir / "toy-test-soft" / "removed.csv")  # the score named, the raw cosine beside it
    assert len(removed) and {"fused_score", "raw_similarity"} <= set(removed.columns) and "similarity" not in removed
    assert removed["raw_similarity"].notna().all() and (removed["fused_score"] >= ws.thresholds().soft).all()
    assert json.loads((ws.exports_dir / "toy-test-soft" / "provenance.json").read_text())["score"] == "fused"
    assert main(["verify", str(tmp_path / "ws"), "--use", "similarity"]) == 0
    assert main(["scan", str(tmp_path / "ws")]) == 0  # the chosen score stays
    assert "the rates below use the raw similarity" in capsys.readouterr().out
    assert main(["scan", str(tmp_path / "ws"), "--no-verify"]) == 0
    assert "verification:" not in capsys.readouterr().out
    assert main(["scan", str(tmp_path / "ws")]) == 0  # and so does the choice not to verify
    assert "verification:" not in capsys.readouterr().out
    assert Workspace.open(tmp_path / "ws").verification_chosen

    small = make_folder_dataset(tmp_path / "small", n_train=24, n_test=4, leaks=(0, 1))
    few = make_photo_folder(tmp_path / "few", 12)
    for name, root in (("small", small), ("few", few)):
        Project.create(tmp_path / name / "ws", encoder="phash").add("toy", root)
        assert main(["scan", str(tmp_path / name / "ws")]) == 0
        out = capsys.readouterr().out
        assert "verification:" not in out and "similarity: hard" in out, name
        ws = Workspace.open(tmp_path / name / "ws")
        assert not ws.verification and ws.score == "similarity" and not ws.score_chosen, name


def test_photos_beside_many_more_small_images_are_said_to_go_unverified(tmp_path, capsys):
    """A new user's hymenoptera and cats_and_dogs photos beside 5,000 CIFAR-10 images: the median training image was
    32 px, so verification was off for the photos too, and no scan, plan, page or report said so (two strong crops
    of photos were missed). It stays off (on CIFAR-10 the fused score flags fewer listed duplicates), and is said,
    with what to do."""
    from leakcore.cli import main

    project = Project.create(tmp_path / "ws", encoder="phash")
    project.add("small", make_folder_dataset(tmp_path / "small", n_train=24, n_test=4, leaks=(0, 1)))
    project.add("few", make_photo_folder(tmp_path / "few", 12))
    ws = Workspace.open(tmp_path / "ws")
    assert not ws.photos() and not ws.verification and ws.photos_apart() == ["few"]
    for args in (["--plan"], []):
        assert main(["scan", str(tmp_path / "ws"), *args]) == 0
        out = capsys.readouterr().out
        assert "Verification is off: the training images' median shorter side is 48 px" in out, args
        assert "the pairs of few, whose images are photos, are not checked on their pixels" in out and "--verify" in out
    page = Project.open(tmp_path / "ws").scores.verification_off_note(page=True)
    assert "tick “Verify pairs on their pixels”" in page and "--verify" not in page
    assert Project.open(tmp_path / "ws").report_document().data["provenance"]["scan"]["verification_off_note"]
    assert main(["scan", str(tmp_path / "ws"), "--verify"]) == 0  # chosen: checked, and nothing to say
    assert "Verification is off" not in capsys.readouterr().out
    assert Workspace.open(tmp_path / "ws").photos_apart() == []


def test_the_overlaps_ssim_is_scikit_images_over_windows_wholly_inside():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    for n in (32, 64, 128):
        a = rng.random((n, n)).astype(np.float32)
        b = (0.7 * a + 0.3 * rng.random((n, n))).astype(np.float32)
        mask = np.zeros((n, n), np.float32)
        mask[n // 5:, : 3 * n // 4] = 1
        _, smap = structural_similarity(a * mask, b * mask, data_range=1.0, win_size=7, full=True)
        inside = np.zeros_like(mask, bool)
        inside[n // 5 + 3:, : 3 * n // 4 - 3] = True  # 3 px from the overlap's edges; the canvas's edges are none
        assert verify.overlap_ssim(a * mask, b * mask, mask) == pytest.approx(float(smap[inside].mean()), abs=1e-6)
    same = rng.random((64, 64)).astype(np.float32)
    assert verify.overlap_ssim(same, same, np.ones_like(same)) == pytest.approx(1.0, abs=1e-6)
    assert verify.overlap_ssim(same, same, np.zeros_like(same)) == 0.0


def _bannered(img: Image.Image) -> Image.Image:
    """A bold two-line banner across the top and the bottom, as memes carry."""
    from PIL import ImageFont

    out = img.copy()
    d = ImageDraw.Draw(out)
    size = out.height // 9
    font = ImageFont.load_default(size=size)
    for line, y in (("WHEN YOU SEE IT", size // 3), ("BEST FRIENDS", out.height - size - size // 2)):
        d.text((out.width // 12, y), line, fill=(255, 230, 0), font=font, stroke_width=size // 6, stroke_fill="black")
    return out


def test_two_photos_under_one_banner_are_not_decided_by_their_matches_and_a_bannered_copy_is():
    """The banner's letters match under one map as a copy's photo does; under that map the rest of the two photos
    disagrees, while a copy's photo agrees (the share of textured tiles that agree, `verify.away_agreement`)."""
    one, other = _scene(5), _scene(6)
    ev = verify.evidence([_bannered(one), _bannered(one)], [_bannered(other), one])
    by_matches = fused.decided_by_matches(ev, fused.MATCH_RULE[:2])
    assert list(by_matches) == [True, True]  # by inliers and ratio alone, both pairs are one photograph
    assert ev.loc[0, "tiles_agree"] < fused.TWIN_TILES_AGREE <= ev.loc[1, "tiles_agree"]
    assert ev.loc[0, "tiles_textured"] >= verify.AWAY_MIN_TILES
    assert list(fused.decided_by_matches(ev)) == [False, True]
    # a model stored before the rule keeps deciding by two parts; a pair with too few textured tiles is not judged
    assert list(fused.decided_by_matches(ev, [fused.TWIN_ORB_INLIERS, fused.TWIN_ORB_RATIO])) == [True, True]
    assert fused.decided_by_matches(ev.assign(tiles_agree=np.nan)).all()


def test_from_twenty_inliers_the_matches_decide_where_the_tiles_are_there_and_agree():
    """A new user's bannered sunflower had 22 inliers at ratio 0.77 and 74% of its 161 textured tiles agreeing, and
    fell under soft by the model: from TWIN_TILES_FROM inliers the matches decide where the tiles tell (not NaN) and
    agree; two photos under one banner disagree there, and a model fitted before keeps its three-part rule."""
    ev = pd.DataFrame({"orb_inliers": np.log1p([22, 22, 22, 19, 30]), "orb_ratio": [0.77, 0.77, 0.77, 0.9, 0.6],
                       "tiles_agree": [0.74, np.nan, 0.5, 0.9, np.nan]})
    assert list(fused.decided_by_matches(ev)) == [True, False, False, False, True]
    assert list(fused.decided_by_matches(ev, fused.MATCH_RULE[:3])) == [False, False, False, False, True]
    assert verify.TWIN_TILES_FROM >= verify.AWAY_FROM_INLIERS  # the tiles are measured from there


def test_one_banner_line_at_the_other_edge_of_another_photo_is_not_decided_by_the_matches():
    """The same words at the bottom of one photo and the top of another match under a map that puts the two a
    banner's height apart: there the overlap is mostly the banner, so its tiles agreed, and two smooth photos were
    decided as one (a new user's ant and bee). Under AWAY_MIN_COVER no tiles agree where the map puts less than half
    of the smaller image inside the other; a bannered copy, and a crop, lie wholly inside theirs."""
    from PIL import ImageFilter, ImageFont

    def line(img, text, top):
        out = img.copy()
        size = out.height // 9
        y = size // 3 if top else out.height - size - size // 2
        ImageDraw.Draw(out).text((out.width // 12, y), text, fill=(255, 230, 0), font=ImageFont.load_default(size=size),
                                 stroke_width=size // 6, stroke_fill="black")
        return out

    smooth_a, smooth_b = (_scene(n).filter(ImageFilter.GaussianBlur(12)) for n in (5, 6))
    ant = line(line(smooth_a, "SO CUTE!!", True), "LOOK AT THIS", False)
    bee = line(line(smooth_b, "LOOK AT THIS", True), "MONDAY MOOD", False)
    photo = _scene(7)
    crop = photo.crop((100, 80, 420, 320))
    ev = verify.evidence([ant, line(photo, "LOOK AT THIS", False), crop], [bee, photo, photo])
    assert list(fused.decided_by_matches(ev, fused.MATCH_RULE[:2])) == [True, True, True]  # by inliers and ratio
    assert ev.loc[0, "tiles_agree"] == 0.0
    assert list(fused.decided_by_matches(ev)) == [False, True, True]


def test_a_strong_crop_is_shown_where_the_crop_search_placed_it_either_way_round():
    """The aligned view of a pair decided as a crop shows it where the crop search found it, not where the
    whole-image alignment put it (a new user saw a misregistered 'scaled x0.8' view over a right outline)."""
    from leakcore.api import PairEvidence

    photo = _scene(5)
    crop = photo.crop((200, 120, 520, 360))  # half of each side
    for eval_image, train_image in ((crop, photo), (photo, crop)):
        found = verify.find_crop(eval_image, train_image)
        moved, train, both = verify.aligned_at(None, eval_image, train_image, 320, found)
        assert both.mean() > (0.17 if found.inside == "eval" else 0.7)  # its box (a quarter of the photo), or all of it
        lum = lambda a: a.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # noqa: E731
        assert verify.ncc(lum(moved)[both], lum(train)[both]) > 0.95
        e = PairEvidence(verify.explain(eval_image, train_image),
                         pd.Series({"crop_ncc": found.ncc, "crop_detail": found.detail}), 0.3, 0.99, None)
        views = e.aligned_views(eval_image, train_image, 320, crop=e.crop_found(eval_image, train_image))
        assert [v.size for v in views] == [(320, 320)] * 4
    assert PairEvidence(verify.explain(photo, photo), None, 1.0, 1.0, None).crop_found(photo, photo) is None


def test_a_pair_its_local_matches_decide_is_shown_by_their_map():
    """The aligned view of a pair the local matches decide (a bannered, mirrored or rescaled copy) places it by the
    matches' map at up to 512 px, as the evidence found it, not by the 32 px alignment a banner pulls off the photo
    (a new user saw four of five bannered copies misaligned)."""
    from leakcore.api import PairEvidence

    photo = _scene(5)
    lum = lambda a: a.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # noqa: E731
    for copy in (ImageOps.mirror(photo), photo.resize((480, 360)), _bannered(photo)):
        match = verify.find_matches(copy, photo)
        moved, train, both = verify.aligned_at(None, copy, photo, 320, matches=match)
        middle = both.copy()
        middle[:110], middle[210:] = False, False  # away from the banner's lines
        assert both.mean() > 0.7 and verify.ncc(lum(moved)[middle], lum(train)[middle]) > 0.98
        stored = verify.evidence([copy], [photo]).iloc[0]
        e = PairEvidence(verify.explain(copy, photo), stored, 0.5, 0.99, None)
        assert e.matches_found(copy, photo) is not None
    assert PairEvidence(None, None, 0.5, None, None).matches_found(photo, photo) is None
    undecided = pd.Series({"orb_inliers": np.log1p(5), "orb_ratio": 0.1, "tiles_agree": np.nan})
    assert PairEvidence(None, undecided, 0.5, 0.2, None).matches_found(photo, _scene(6)) is None


def test_a_crop_is_located_in_its_photo_either_way_round_and_outlined_for_the_review_page():
    from leakcore.api import PairEvidence

    photo = _scene(5)
    crop = photo.crop((200, 120, 520, 360))  # half of each side
    found = verify.find_crop(crop, photo)
    assert found.inside == "eval" and found.ncc > 0.95
    np.testing.assert_allclose(found.box, (200 / 640, 120 / 480, 0.5, 0.5), atol=0.03)
    assert verify.find_crop(photo, crop).inside == "train"
    assert verify.find_crop(_scene(6), photo) is None or verify.find_crop(_scene(6), photo).ncc < 0.9
    stored = pd.Series({"crop_ncc": found.ncc, "crop_detail": found.detail})
    outer, inner, caption = PairEvidence(None, stored, 0.3, 0.99, None).crop_view(crop, photo, 320)
    assert outer.size == (320, 240) and inner.size == (320, 240) and "evaluation image found inside" in caption
    edge = np.asarray(outer)[59:62, 110:250].reshape(-1, 3)  # the outline's top edge (y 60, x 100-260), in red
    assert ((edge[:, 0] > 200) & (edge[:, 1] < 80)).mean() > 0.3
    undecided = pd.Series({"crop_ncc": 0.9, "crop_detail": 0.9})
    assert PairEvidence(None, undecided, 0.3, 0.5, None).crop_view(crop, photo, 320) is None
    assert PairEvidence(None, None, 0.3, None, None).crop_view(crop, photo, 320) is None
    # a pair its local matches decided has no stored crop search (NaN): the page searches, and outlines a crop only
    not_searched = pd.Series({"crop_ncc": float("nan"), "crop_detail": float("nan")})
    assert "evaluation image found inside" in PairEvidence(None, not_searched, 0.3, 0.99, None).crop_view(
        crop, photo, 320)[2]
    assert PairEvidence(None, not_searched, 0.3, 0.99, None).crop_view(photo, photo, 320) is None


def test_evidence_tells_its_progress_as_batches_finish_and_gives_the_same_numbers():
    """A call of many pairs on photos takes seconds: it says how many pairs are done as each batch finishes (on the
    calling thread), and the evidence is the same as in one batch."""
    scenes = [_scene(s, (200, 150)) for s in range(3)]
    eval_images = [scenes[0], scenes[0].resize((180, 135)), scenes[1], scenes[2], scenes[1], scenes[0]]
    train_images = [scenes[0], scenes[0], scenes[1], scenes[0], scenes[2], scenes[2]]
    told = []
    ev = verify.evidence(eval_images, train_images, batch=2, progress=told.append)
    assert len(told) >= 3 and told == sorted(told) and told[-1] == len(eval_images)
    whole = verify.evidence(eval_images, train_images, batch=64)
    pd.testing.assert_frame_equal(ev, whole)


def test_hard_under_the_fused_score_is_the_same_picture_by_the_raw_similarity_too():
    """On photos every planted copy was decided by its evidence and so scored hard: a 50% crop as much as a re-encoded
    copy (a new user's trial: hard = soft = 20). With the raw similarity's hard, a flagged pair reaches hard only
    where the raw similarity says the same picture too; the others score in [soft, hard), in the model's order, and
    no pair changes sides of soft."""
    rows = pd.DataFrame({"similarity": [0.97, 0.55, 0.60, 0.58, 0.30], "orb_inliers": np.log1p([60, 60, 60, 0, 0]),
                         "orb_ratio": [0.9, 0.9, 0.9, 0.0, 0.0], "orb_used": 1.0, "tiles_agree": 0.9})
    model = np.array([0.99, 0.99, 0.40, 0.7, 0.2])  # a re-encoded copy, a crop, a flip, an undecided pair, a look-alike
    rule = (fused.TWIN_ORB_INLIERS, fused.TWIN_ORB_RATIO)
    before = fused.floor_matched(rows, model, 0.95, rule)
    after = fused.floor_matched(rows, model, 0.95, rule, soft=0.5, raw_hard=0.9)
    assert before[:3] == pytest.approx([0.95 + 0.05 * 0.99, 0.95 + 0.05 * 0.99, 0.95 + 0.05 * 0.4])  # all hard
    assert after[0] == pytest.approx(before[0]) and after[0] >= 0.95  # the same picture: hard
    assert 0.5 <= after[2] < after[1] < 0.95 and 0.5 <= after[3] < 0.95  # the rest soft, in the model's order
    assert after[4] == pytest.approx(0.2)  # below soft stays where it was
    assert list(after >= 0.5) == list(before >= 0.5)  # the same flags at soft


def test_canvases_agree_for_one_photograph_in_one_framing_only():
    """`canvas_agreement`, the cheap test that sends a pair under the candidate threshold to verification: a copy at
    JPEG quality 5 and its mirror agree as one photograph; another photo, a crop and a flat image do not."""
    import io

    from conftest import photo

    a = photo(3, (160, 120))
    buf = io.BytesIO()
    a.save(buf, format="JPEG", quality=5)
    heavy = Image.open(io.BytesIO(buf.getvalue()))
    assert verify.canvas_agreement(heavy, a) >= fused.RESCUE_NCC
    assert verify.canvas_agreement(ImageOps.mirror(heavy), a) >= fused.RESCUE_NCC
    # the test's photos are smooth colour fields (up to 0.91 here); real photos' nearest other pairs reached 0.81
    assert max(verify.canvas_agreement(photo(s, (160, 120)), a) for s in range(4, 14)) < fused.RESCUE_NCC
    assert verify.canvas_agreement(a.crop((40, 30, 120, 90)), a) < fused.RESCUE_NCC
    assert verify.canvas_agreement(Image.new("RGB", (160, 120), "grey"), a) == 0.0


def test_a_copy_the_embedding_scores_under_the_candidate_threshold_is_checked_where_its_canvas_agrees(tmp_path):
    """A new user's JPEG copy at quality 8 scored 0.29 by the embedding against a candidate threshold of 0.31: it was
    never checked on its pixels and stayed in the cleaned export. An evaluation image's nearest pair under the
    threshold is checked where the two canvases agree as one photograph (`fused.rescued`), stored in its table once
    per model; the other images' nearest pairs are not."""
    from conftest import make_photo_folder

    from leakcore import leakage
    from leakcore.scan import pair_path

    root = make_photo_folder(tmp_path / "photos", 22, n_test=4, leaks=())
    photo(5, (96, 80)).save(root / "test" / "x" / "test_000.jpg", quality=8)  # a heavy JPEG copy of train_005
    project = Project.create(tmp_path / "ws", encoder="phash")
    project.add("toy", root)
    project.scan()
    ws = project.workspace
    fm = fused.load(ws)
    path = pair_path(ws, ws.encoder, "toy/test", "toy/train")
    copy = ("toy/test/x/test_000.jpg", "toy/train/x/train_005.jpg")
    # the embedding as the new user's: every pair of the copy under the candidate threshold, its own the nearest
    table = pd.read_parquet(path).drop(columns="rescued")
    mine = (table["eval_item_id"] == copy[0]).to_numpy()
    own = mine & (table["train_item_id"] == copy[1]).to_numpy()
    table.loc[mine, "similarity"] = np.float32(fm.candidate_ - 0.1)
    table.loc[own, "similarity"] = np.float32(fm.candidate_ - 0.01)
    meta = json.loads(path.with_suffix(".json").read_text())
    meta.pop("rescued_for")
    table.to_parquet(path)
    path.with_suffix(".json").write_text(json.dumps(meta))
    assert fused.rescued(ws, table, fm).tolist() == own.tolist()  # the copy's nearest pair only
    ws.clear_caches()
    flagged = lambda: set(leakage.load_pairs(ws).loc[lambda p: p["score"] >= fm.soft_, "eval_item_id"])  # noqa: E731
    assert copy[0] not in flagged()  # not checked: fused 0, whatever evidence is stored
    project.scan()  # the plan sees the table without its check for this model, and checks it
    stored = pd.read_parquet(path)
    assert stored["rescued"].tolist() == own.tolist() and fused.rescue_current(path, fm)
    ws.clear_caches()
    assert copy[0] in flagged()
