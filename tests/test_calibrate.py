"""Calibration: every transform (size, determinism), the calibrator on known scores, the protocol, decision ROC."""
import numpy as np
import pandas as pd
import pytest

from leakcore import calibrate, review
from leakcore.calibrate import ThresholdCalibrator, transformation_suite
from leakcore.ingest import add_dataset
from leakcore.project import Workspace

from conftest import make_folder_dataset, photo

SUITE = transformation_suite()


def test_suite_has_the_papers_families():
    families = {t.family for t in SUITE}
    assert families == {"copy", "geometric", "cropping", "pixelization", "colour"}
    assert len({t.name for t in SUITE}) == len(SUITE) == 20


@pytest.mark.parametrize("tf", SUITE, ids=lambda t: t.name)
def test_transform_is_deterministic_and_sized(tf):
    img = photo(5, (700, 600))
    a, b = tf(img, seed=3), tf(img, seed=3)
    assert a.mode == "RGB" and np.array_equal(np.asarray(a), np.asarray(b))
    w, h = a.size
    if tf.family == "cropping":
        n = int(tf.name[4:])
        assert (w, h) == (700 - 2 * n, 600 - 2 * n)
    elif tf.name.startswith("down"):
        assert max(w, h) == int(tf.name[4:])
    elif tf.name in ("rot90", "rot270"):
        assert (w, h) == (600, 700)
    else:
        assert (w, h) == (700, 600)


def test_crops_scale_down_for_small_images():
    small = photo(1, (32, 32))
    for tf in SUITE:
        out = tf(small)
        assert min(out.size) >= 8, tf.name


def test_calibrator_on_scores_with_a_known_answer():
    rng = np.random.default_rng(0)
    neg = rng.uniform(0.0, 0.5, 10_000)
    neg[:5] = [0.71, 0.72, 0.73, 0.74, 0.75]  # 5 strong negatives: the 0.1% tail at 10,000 negatives is 10
    copies = np.array([0.97, 0.98, 0.99, 1.0])
    edits = rng.uniform(0.6, 0.95, 500)
    scores = np.concatenate([copies, edits, neg])
    labels = np.concatenate([np.ones(504, bool), np.zeros(10_000, bool)])
    is_copy = np.concatenate([np.ones(4, bool), np.zeros(10_500, bool)])
    cal = ThresholdCalibrator(target_fpr=0.001).fit(scores, labels, is_copy)
    assert cal.hard_ == pytest.approx(0.97)
    assert cal.hard_missed_copies_ == 0
    assert cal.soft_ == pytest.approx(0.5, abs=1e-3)  # 10 allowed false positives: the 5 strong ones + 5 near 0.5
    assert (neg >= cal.soft_).mean() <= 0.001
    assert 0.9 < cal.auc_ <= 1.0 and {"fpr", "tpr", "threshold"} <= set(cal.roc_.columns)
    strict = ThresholdCalibrator(target_fpr=0.0001).fit(scores, labels, is_copy)
    assert 0.74 < strict.soft_ <= 0.75  # one false positive allowed: only the 0.75 negative passes


def test_calibrator_when_a_negative_beats_a_copy():
    scores = np.array([0.9, 0.95, 0.92, 0.1])
    labels = np.array([True, True, False, False])
    cal = ThresholdCalibrator(0.4).fit(scores, labels)
    assert cal.hard_ > 0.92 and cal.hard_missed_copies_ == 1
    with pytest.raises(ValueError, match="both positive and negative"):
        ThresholdCalibrator().fit([0.1, 0.2], [True, True])


def test_protocol_on_a_fixture_collection(tmp_path):
    root = make_folder_dataset(tmp_path / "d", n_train=12, n_test=1)
    ws = Workspace.create(tmp_path / "w", encoder="phash")
    add_dataset(ws, "d", root)
    result = calibrate.calibrate(ws, "d/train", queries=5, transforms=SUITE[:4])
    assert len(result.scores) == 20 and set(result.scores["transform"]) == {t.name for t in SUITE[:4]}
    ident = result.scores[result.scores["transform"] == "identity"]
    assert ident["hit"].all() and np.allclose(ident["positive"], 1.0)
    assert 0 < result.soft <= result.hard <= 1.0
    stored = calibrate.load(ws)
    assert stored.hard == result.hard and stored.settings["queries"] == 5
    calibrate.apply(ws, stored)
    assert ws.thresholds() == (result.hard, result.soft)
    with pytest.raises(ValueError, match="valid: d/test, d/train"):
        calibrate.calibrate(ws, "d/nope")


def test_decision_roc_needs_twenty_decisions(tmp_path):
    pairs = pd.DataFrame({"eval_item_id": [f"e{i}" for i in range(30)], "train_item_id": [f"t{i}" for i in range(30)],
                          "similarity": np.linspace(0.5, 1.0, 30)})
    ws = Workspace.create(tmp_path / "w")
    for i in range(10):
        review.decide(ws, f"e{i}", f"t{i}", "not_leak", reviewer="r")
    assert calibrate.decision_scores(pairs, review.latest_decisions(ws)) is None
    for i in range(10, 30):
        review.decide(ws, f"e{i}", f"t{i}", "soft", reviewer="r")
    s, y = calibrate.decision_scores(pairs, review.latest_decisions(ws))
    assert len(s) == 30 and y.sum() == 20


def test_the_collections_own_near_duplicates_are_not_negatives_and_a_stop_stores_nothing(tmp_path):
    """A collection holding a second copy of a photo (re-encoded) must not use that copy as the photo's "hardest
    non-match": it would put a same-photograph pair among the negatives (here at 0.9375, as high as the copies)."""
    from PIL import Image

    from leakcore.errors import CalibrationStopped

    root = make_folder_dataset(tmp_path / "d", n_train=12, n_test=1)
    twin_of = root / "train" / "cat" / "train_000.jpg"
    img = Image.open(twin_of).convert("RGB")
    img.save(root / "train" / "cat" / "train_000_copy.jpg", quality=70)
    ws = Workspace.create(tmp_path / "w", encoder="phash")
    add_dataset(ws, "d", root)
    items = ws.items().set_index("item_id")
    with pytest.raises(CalibrationStopped):
        calibrate.calibrate(ws, "d/train", queries=13, transforms=SUITE[:2], should_stop=lambda: True)
    assert calibrate.load(ws) is None  # a stopped run stores nothing
    result = calibrate.calibrate(ws, "d/train", queries=13, transforms=SUITE[:2])
    assert result.settings["twins_excluded"] >= 2 and result.settings["queries_with_twins"] >= 2  # both ways
    ident = result.scores[result.scores["transform"] == "identity"].set_index("query")
    for q in ("d/train/cat/train_000.jpg", "d/train/cat/train_000_copy.jpg"):
        assert q in items.index and ident.loc[q, "hardest_negative"] < 0.75  # the twin (0.9375) is not its negative
