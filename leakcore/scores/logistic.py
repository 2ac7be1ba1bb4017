"""The fused score's classifier in numpy: a logistic regression on standardised features (L2, C = 1), its decision
calibrated by Platt's sigmoid on the decisions of held-out folds. It is what scikit-learn's
`CalibratedClassifierCV(make_pipeline(StandardScaler(), LogisticRegression(C=1.0)), method="sigmoid", cv=k,
ensemble=False)` computes (and with `pooled=False`, `ensemble=True`) (the same objectives and the same stratified folds; `tests/test_logistic.py` compares the two), written
out because importing scikit-learn took 0.65-1.0 s of a 7 s scan of 517 photos (`sklearn.base` alone imports
scipy.stats), most of what verification may add to a scan (issue #32: at most 1.5x). Its fitted numbers are stored
as JSON in model.json: a workspace's model is read without unpickling anything.
"""
from __future__ import annotations

import numpy as np

C = 1.0  # the inverse of the L2 penalty's strength (scikit-learn's default)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * t))  # 1 / (1 + exp(-t)), without overflow


def _newton(loss_grad_hess, w: np.ndarray, iterations: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Minimise a smooth convex function from `w` by Newton's method with a backtracking line search."""
    loss, grad, hess = loss_grad_hess(w)
    for _ in range(iterations):
        step = np.linalg.solve(hess + 1e-12 * np.eye(len(w)), grad)
        t = 1.0
        while True:
            cand = w - t * step
            new = loss_grad_hess(cand)
            if new[0] <= loss + 1e-4 * t * float(grad @ -step) or t < 1e-8:
                break
            t /= 2
        w, (loss, grad, hess) = cand, new
        if np.max(np.abs(t * step)) < tol:
            break
    return w


def logistic(x: np.ndarray, y: np.ndarray, c: float = C) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(mean, scale, coef, intercept) of a logistic regression on x standardised (scale 1 where a feature is
    constant), minimising 0.5 |coef|^2 + c * sum(log loss); the intercept is not penalised."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    sign = np.where(y == 1, 1.0, -1.0)
    ridge = np.r_[np.ones(x.shape[1]), 0.0]

    def lgh(w):
        m = sign * (z @ w)
        p = _sigmoid(z @ w)
        loss = 0.5 * float(ridge @ (w * w)) + c * float(np.logaddexp(0.0, -m).sum())
        grad = ridge * w + c * z.T @ (p - (y == 1))
        hess = np.diag(ridge) + c * (z.T * (p * (1 - p))) @ z
        return loss, grad, hess

    w = _newton(lgh, np.zeros(z.shape[1]))
    return mean, scale, w[:-1], float(w[-1])


def platt(f: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of Platt's sigmoid P(y = 1 | f) = 1 / (1 + exp(a f + b)), fitted to Platt's smoothed targets."""
    n1 = float((y == 1).sum())
    n0 = float(len(y) - n1)
    target = np.where(y == 1, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))
    g = np.c_[f, np.ones(len(f))]

    def lgh(ab):
        u = g @ ab
        p = _sigmoid(-u)
        loss = float((target * np.logaddexp(0.0, u) + (1 - target) * np.logaddexp(0.0, -u)).sum())
        return loss, g.T @ (target - p), (g.T * (p * (1 - p))) @ g

    a, b = _newton(lgh, np.array([0.0, np.log((n0 + 1) / (n1 + 1))]))
    return float(a), float(b)


def stratified_folds(y: np.ndarray, k: int) -> np.ndarray:
    """Each row's test fold, as scikit-learn's `StratifiedKFold(k)` (no shuffling) assigns them: each class's rows,
    in order, spread over the folds as evenly as the sorted labels taken every k-th fall (the classes numbered in
    the order they first appear)."""
    y = (np.asarray(y, int) != int(np.asarray(y)[0])).astype(int) if len(y) else np.asarray(y, int)
    order = np.sort(y)
    allocation = np.array([np.bincount(order[i::k], minlength=2) for i in range(k)])
    folds = np.empty(len(y), int)
    for cls in (0, 1):
        folds[y == cls] = np.repeat(np.arange(k), allocation[:, cls])
    return folds


def grouped_folds(y: np.ndarray, groups: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Each row's test fold with every group's rows in one fold and the positives spread evenly: the groups, in a
    random order (`seed`), most positives first, each to the fold with the fewest positives so far (then the fewest
    rows). scikit-learn's `StratifiedGroupKFold` balances the same way, greedily; the folds differ in detail."""
    y = np.asarray(y, int)
    names, at = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    pos = np.bincount(at, weights=y, minlength=len(names))
    size = np.bincount(at, minlength=len(names))
    order = np.random.default_rng(seed).permutation(len(names))
    order = order[np.argsort(-pos[order], kind="stable")]
    fold_of = np.empty(len(names), int)
    fold_pos, fold_rows = np.zeros(k), np.zeros(k)
    for g in order:
        f = int(np.lexsort((fold_rows, fold_pos))[0])
        fold_of[g] = f
        fold_pos[f] += pos[g]
        fold_rows[f] += size[g]
    return fold_of[at]


class CalibratedLogistic:
    """The calibrated classifier. `pooled` (the default; scikit-learn's `ensemble=False`): one logistic regression
    fitted on every row, its sigmoid fitted on the decisions of every row from regressions fitted without the row's
    fold. Otherwise (`ensemble=True`) one member per fold, a regression fitted on the other folds and its sigmoid on
    this fold, P(y = 1) the members' mean. `fit(x, y)` sets `members_` (per member its standardisation,
    coefficients, sigmoid and the rows it was fitted on) and `classes_`.

    Platt's smoothed targets cap P at (n + 1) / (n + 2) for the n positives a sigmoid is fitted on: per fold, 24
    edited copies in five folds capped every copy at 0.89 on hymenoptera; pooled, at 0.96."""

    def __init__(self, folds: int = 5, pooled: bool = True):
        self.folds = folds
        self.pooled = pooled

    def fit(self, x: np.ndarray, y: np.ndarray) -> "CalibratedLogistic":
        x, y = np.asarray(x, np.float64), np.asarray(y, int)
        test = stratified_folds(y, self.folds)
        self.members_ = []
        decisions = np.zeros(len(y))
        for f in range(self.folds):
            held = test == f
            mean, scale, coef, intercept = logistic(x[~held], y[~held])
            decisions[held] = ((x[held] - mean) / scale) @ coef + intercept
            if not self.pooled:
                a, b = platt(decisions[held], y[held])
                self.members_.append({"mean": mean.tolist(), "scale": scale.tolist(), "coef": coef.tolist(),
                                      "intercept": intercept, "a": a, "b": b, "rows": int((~held).sum())})
        if self.pooled:
            mean, scale, coef, intercept = logistic(x, y)
            a, b = platt(decisions, y)
            self.members_ = [{"mean": mean.tolist(), "scale": scale.tolist(), "coef": coef.tolist(),
                              "intercept": intercept, "a": a, "b": b, "rows": int(len(y))}]
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        p = np.zeros(len(x))
        for m in self.members_:
            f = ((x - np.asarray(m["mean"])) / np.asarray(m["scale"])) @ np.asarray(m["coef"]) + m["intercept"]
            p += _sigmoid(-(m["a"] * f + m["b"]))
        p /= len(self.members_)
        return np.c_[1 - p, p]

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per feature, its contribution to the log-odds of the uncalibrated regression, the members' mean."""
        return np.mean([np.asarray(m["coef"]) * (x - np.asarray(m["mean"])) / np.asarray(m["scale"])
                        for m in self.members_], axis=0)

    def to_json(self) -> dict:
        return {"folds": self.folds, "pooled": self.pooled, "members": self.members_}

    @classmethod
    def from_json(cls, stored: dict) -> "CalibratedLogistic":
        model = cls(int(stored["folds"]), bool(stored.get("pooled", False)))
        model.members_ = list(stored["members"])
        model.classes_ = np.array([0, 1])
        return model


def held_out_proba(x: np.ndarray, y: np.ndarray, test_folds: np.ndarray, calibration_folds: int) -> np.ndarray:
    """P(y = 1) of each row from a model (calibrated over `calibration_folds`) fitted without the row's test fold,
    as scikit-learn's `cross_val_predict`."""
    out = np.zeros(len(y))
    for f in np.unique(test_folds):
        held = test_folds == f
        model = CalibratedLogistic(calibration_folds).fit(x[~held], y[~held])
        out[held] = model.predict_proba(x[held])[:, 1]
    return out
