"""Server time of the Thresholds page after a slider move, with 1,000,000 scored pairs.

    python bench/roc.py
A synthetic workspace holds a calibration of 500,000 edited queries (1,000,000 scored pairs: one positive and
one hardest negative each) and 1,000,000 neighbour pairs; each slider move is one AppTest rerun of the page,
which redraws the ROC operating points, the histogram lines and the flagged counts (goal <= 200 ms).
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leakcore.catalog import normalise_items  # noqa: E402
from leakcore.project import Workspace, atomic_write_text, write_parquet  # noqa: E402
from leakcore.scan import write_pair_table  # noqa: E402


def build(path: Path, n_queries: int = 500_000, n_pairs: int = 1_000_000) -> Workspace:
    ws = Workspace.create(path, encoder="phash")
    if (ws.calibration_dir("phash") / "thresholds.json").exists():
        return ws
    rng = np.random.default_rng(0)
    folder = ws.calibration_dir("phash")
    transforms = ["identity", "jpeg_q30", "hflip", "crop50", "blur", "invert"]
    families = {"identity": "copy", "jpeg_q30": "copy", "hflip": "geometric", "crop50": "cropping", "blur": "pixelization",
                "invert": "colour"}
    tf = rng.choice(transforms, n_queries)
    scores = pd.DataFrame({"query": [f"q{i}" for i in range(n_queries)], "transform": tf,
                           "family": [families[t] for t in tf], "positive": rng.beta(8, 2, n_queries),
                           "hardest_negative": rng.beta(3, 5, n_queries), "hit": True})
    write_parquet(scores, folder / "scores.parquet")
    write_parquet(pd.DataFrame({"family": ["copy"], "transform": ["(family)"], "top1": [1.0]}), folder / "robustness.parquet")
    atomic_write_text(folder / "thresholds.json", json.dumps({"hard": 0.95, "soft": 0.8, "auc": [{"family": "overall", "auc": 0.9}],
                                                               "settings": {"collection": "synthetic", "queries": n_queries,
                                                                            "target_fpr": 0.001, "transforms": transforms}}))
    n_eval = n_pairs // 10
    img = ROOT / ".bench" / "review-img.png"
    items = pd.DataFrame({"item_id": [f"big/test/{i}" for i in range(n_eval)], "dataset": "big", "split": "test",
                          "role": "eval", "key": [str(i) for i in range(n_eval)], "uri": str(img), "row": -1,
                          "sha256": "x", "status": "ok"})
    ws.write_items(normalise_items(items))
    pairs = pd.DataFrame({"eval_item_id": np.repeat(items["item_id"].to_numpy(), 10), "rank": np.tile(np.arange(1, 11), n_eval).astype(np.int16),
                          "train_item_id": [f"big/train/{i}" for i in rng.integers(0, 200_000, n_pairs)],
                          "similarity": rng.beta(3, 4, n_pairs).astype(np.float32)})
    write_pair_table(ws, "phash", "big/test", "big/train", pairs, key="synthetic")
    return ws


def main() -> None:
    from streamlit.testing.v1 import AppTest

    ws = build(ROOT / ".bench" / "roc-1M")
    os.environ["LEAKCORE_WORKSPACE"] = str(ws.path)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    t0 = time.perf_counter()
    at.switch_page("pages/2_Thresholds.py").run()
    first = time.perf_counter() - t0
    assert not at.exception, at.exception
    moves = []
    for i in range(10):
        t0 = time.perf_counter()
        at.slider(key="th_soft").set_value(round(0.6 + 0.02 * i, 4)).run()
        moves.append(time.perf_counter() - t0)
    assert not at.exception, at.exception
    print(f"thresholds page, 1,000,000 scored pairs + 1,000,000 neighbour pairs: first load {first:.1f}s (builds the "
          f"cached ROC), slider move median {1000 * statistics.median(moves):.0f} ms, max {1000 * max(moves):.0f} ms "
          f"(goal <= 200 ms; AppTest server-side rerun)")


if __name__ == "__main__":
    main()
