"""Which features separate the pairs judged by eye: the fused model's features with and without the refined
evidence, logistic regression out of fold (10 x 10-fold) on the workspace's decided pairs.

    python bench/verify_features.py [--workspace .bench/cifar10-224]

Run after bench/verify_cifair.py --decisions-from ... has recorded the judgments as decisions. Prints AUC and the
recall at 95% precision for each feature set (the README's sixth-version table: its first and kept rows).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leakcore import fused, verify  # noqa: E402
from leakcore.project import Workspace  # noqa: E402


def recall_at(p: np.ndarray, y: np.ndarray, precision: float) -> float:
    o = np.argsort(-p)
    yy = y[o]
    ok = np.flatnonzero(np.cumsum(yy) / np.arange(1, len(yy) + 1) >= precision)
    return float(yy[:ok[-1] + 1].sum() / yy.sum()) if len(ok) else 0.0


def main() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", default=str(ROOT / ".bench" / "cifar10-224"))
    args = ap.parse_args()
    ws = Workspace.open(args.workspace)
    d = fused.decision_pairs(ws, second=fused.SecondOpinion.for_workspace(ws, ws.encoder))
    y = d["label"].to_numpy(int)
    coarse = [f for f in verify.FEATURES if f not in verify.REFINED and not f.startswith("orb")] + [fused.SECOND_FEATURE]
    sets = {"coarse (fifth version)": coarse, "coarse + refined (sixth)": coarse + list(verify.REFINED)}
    print(f"{len(d)} decided pairs ({y.sum()} leaks)")
    for name, cols in sets.items():
        runs = []
        for seed in range(10):
            m = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
            p = cross_val_predict(m, d[cols].to_numpy(float), y, method="predict_proba",
                                  cv=StratifiedKFold(10, shuffle=True, random_state=seed))[:, 1]
            runs.append((roc_auc_score(y, p), recall_at(p, y, 0.95)))
        auc, rec = np.mean(runs, axis=0)
        print(f"{name:28s} AUC {auc:.3f}  recall at 95% precision {rec:.3f}")


if __name__ == "__main__":
    main()
