"""The fused score's classifier in numpy (`leakcore.scores.logistic`) against scikit-learn's, which it stands in
for in a scan, and the ROC curve in numpy against scikit-learn's."""
import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from leakcore.calibrate import ThresholdCalibrator, roc, roc_auc
from leakcore.scores import logistic


def _data(n: int, separation: float, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 14))
    x[:, 7] = 1.0  # a constant feature (orb_used on a set with no local features)
    y = (separation * x[:, 0] + x[:, 1] + 0.5 * rng.normal(size=n) > 0.8).astype(int)
    return x, y


@pytest.mark.parametrize("n, separation, seed", [(60, 20.0, 0), (150, 1.0, 1), (800, 0.5, 2)])
def test_the_calibrated_logistic_regression_is_scikit_learns(n, separation, seed):
    x, y = _data(n, separation, seed)
    mean, scale, coef, intercept = logistic.logistic(x, y)
    z = StandardScaler().fit_transform(x)
    theirs = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(z, y)
    np.testing.assert_allclose(coef, theirs.coef_[0], atol=1e-6)
    assert abs(intercept - theirs.intercept_[0]) < 1e-6
    folds = np.empty(n, int)
    for f, (_, test) in enumerate(StratifiedKFold(5).split(x, y)):
        folds[test] = f
    np.testing.assert_array_equal(logistic.stratified_folds(y, 5), folds)
    for pooled in (True, False):  # scikit-learn's ensemble=False (the fused score's) and ensemble=True
        ours = logistic.CalibratedLogistic(5, pooled=pooled).fit(x, y).predict_proba(x)
        sk = CalibratedClassifierCV(make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)),
                                    method="sigmoid", cv=5, ensemble=not pooled).fit(x, y).predict_proba(x)
        assert np.abs(ours - sk).max() < 2e-3  # scikit-learn stops its two optimisers at looser tolerances


def test_the_pooled_calibration_caps_a_certain_copy_higher_than_the_folds_do():
    """Platt's targets cap P at (n + 1) / (n + 2) for the n positives a sigmoid is fitted on: pooled over the folds,
    the 24 positives of a small fitting set cap it at 25 / 26, one fold's five at 6 / 7."""
    x, y = _data(96, 30.0, 3)
    y[:] = 0
    y[:24] = 1
    x[:24, 0] += 10  # perfectly separable, as edited copies and look-alikes are on photos
    pooled = logistic.CalibratedLogistic(5).fit(x, y).predict_proba(x[:24])[:, 1]
    folds = logistic.CalibratedLogistic(5, pooled=False).fit(x, y).predict_proba(x[:24])[:, 1]
    assert np.median(pooled) > 0.95 and np.median(folds) < 0.87


def test_grouped_folds_keep_each_group_together_and_spread_the_positives():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(40), 3)
    y = np.tile([1, 0, 0], 40)
    y[rng.choice(len(y), 10, replace=False)] = 1
    folds = logistic.grouped_folds(y, groups, 5, seed=3)
    assert all(len(set(folds[groups == g])) == 1 for g in range(40))
    per_fold = np.bincount(folds, weights=y, minlength=5)
    assert per_fold.max() - per_fold.min() <= 3 and set(folds) == set(range(5))
    held = logistic.held_out_proba(np.c_[y + rng.normal(0, 0.3, len(y)), rng.normal(size=len(y))], y, folds, 3)
    assert roc_auc(y.astype(bool), held) > 0.9


def test_the_roc_curve_and_its_area_are_scikit_learns_with_ties():
    rng = np.random.default_rng(4)
    y = rng.random(500) < 0.3
    s = np.round(rng.random(500) + 0.3 * y, 2)  # many ties
    fpr, tpr, thr = roc(y, s)
    f2, t2, th2 = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2)
    np.testing.assert_allclose(tpr, t2)
    np.testing.assert_allclose(thr[1:], th2[1:])
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert ThresholdCalibrator(0.01).fit(s, y).auc_ == pytest.approx(roc_auc_score(y, s), abs=1e-12)
