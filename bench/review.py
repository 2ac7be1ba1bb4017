"""Server time of the review page with 100,000 flagged pairs: move to the next pair, apply a filter.

    python bench/review.py
Builds a synthetic workspace (100,000 flagged pairs over 50,000 evaluation items; decisions on 5,000), then
times AppTest reruns of pages/1_Review.py: each rerun is the whole server-side script run (goal <= 150 ms each).
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leakcore import review  # noqa: E402
from leakcore.catalog import empty_items, normalise_items  # noqa: E402
from leakcore.project import Workspace  # noqa: E402
from leakcore.scan import write_pair_table  # noqa: E402


def build(path: Path, n_pairs: int = 100_000) -> Workspace:
    ws = Workspace.create(path, encoder="phash")
    if (ws.neighbors_dir("phash") / "big~test").exists():
        return ws
    rng = np.random.default_rng(0)
    n_eval, n_train = n_pairs // 2, 60_000
    img = ROOT / ".bench" / "review-img.png"
    from PIL import Image

    Image.new("RGB", (32, 32), (120, 80, 40)).save(img)
    rows = []
    for split, role, n in (("test", "eval", n_eval), ("train", "train", n_train)):
        rows.append(pd.DataFrame({
            "item_id": [f"big/{split}/{i}" for i in range(n)], "dataset": "big", "split": split, "role": role,
            "key": [str(i) for i in range(n)], "uri": str(img), "row": -1, "label": rng.integers(0, 10, n).astype(str),
            "width": 32, "height": 32,
            "sha256": [f"{split}-{i}" for i in range(n)], "status": "ok"}))  # a picture each (one hash: all identical)
    ws.write_items(normalise_items(pd.concat(rows + [empty_items()])))
    ws.register_dataset(__import__("leakcore.project", fromlist=["DatasetConfig"]).DatasetConfig(
        "big", "folder", str(img.parent), str(img.parent), {"test": "eval", "train": "train"}))
    flagged_pairs(ws, n_eval, n_train, rng)
    return ws


def flagged_pairs(ws, n_eval: int, n_train: int, rng) -> pd.DataFrame:
    """Two flagged neighbours per evaluation item (similarity 0.7-1.0, hard 0.9, soft 0.7) and "hard" decisions on
    5,000 of them: the review queue both review benches time (bench/review.py, bench/browser.py)."""
    n_pairs = 2 * n_eval
    pairs = pd.DataFrame({
        "eval_item_id": np.repeat([f"big/test/{i}" for i in range(n_eval)], 2),
        "rank": np.tile([1, 2], n_eval).astype(np.int16),
        "train_item_id": [f"big/train/{i}" for i in rng.integers(0, n_train, n_pairs)],
        "similarity": np.sort(rng.uniform(0.7, 1.0, n_pairs).astype(np.float32))[::-1],
    })
    write_pair_table(ws, "phash", "big/test", "big/train", pairs, key="synthetic")
    ws.set_thresholds(0.9, 0.7, encoder="phash")
    sample = pairs.sample(min(5000, len(pairs) // 4), random_state=0)
    review.decide_many(ws, list(zip(sample["eval_item_id"], sample["train_item_id"])), "hard", reviewer="bench")
    return pairs


def main() -> None:
    from streamlit.testing.v1 import AppTest

    ws = build(ROOT / ".bench" / "review-100k")
    os.environ["LEAKCORE_WORKSPACE"] = str(ws.path)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/1_Review.py").run()
    assert not at.exception, at.exception
    at.run()  # warm caches
    nxt, flt = [], []
    for i in range(10):
        t0 = time.perf_counter()
        at.button(key="next").click().run()
        nxt.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        at.radio(key="f_labels").set_value(["same", "different", "any"][i % 3]).run()
        flt.append(time.perf_counter() - t0)
    dec = []
    for _ in range(5):
        t0 = time.perf_counter()
        at.button(key="decide_not_leak").click().run()
        dec.append(time.perf_counter() - t0)
    assert not at.exception, at.exception
    print(f"review page, 100,000 flagged pairs: next pair median {1000 * statistics.median(nxt):.0f} ms, "
          f"apply a filter median {1000 * statistics.median(flt):.0f} ms (goal <= 150 ms each; AppTest server-side rerun); "
          f"decide + move on median {1000 * statistics.median(dec):.0f} ms")


if __name__ == "__main__":
    main()
