"""Refit a workspace's fused score on the full suite of evidence version 7's layout: QUERIES training images, each
edited by every edit of the extended suite (not TRANSFORMS_PER_QUERY of them), plus the collection's look-alikes.

    python bench/verify/cifar-default/v8/full_suite_fit.py WS QUERIES
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from leakcore import fused  # noqa: E402
from leakcore.project import Workspace  # noqa: E402

ws = Workspace.open(sys.argv[1])
t = time.time()
suite = fused.suite_pairs(ws, queries=int(sys.argv[2]), seed=0, per_query=None)
print("suite", len(suite), "pairs in", round(time.time() - t), "s", flush=True)
fm = fused.fit(ws, queries=int(sys.argv[2]), suite=suite)
print("fit done", round(time.time() - t), "s; soft", fm.soft_, "hard", fm.hard_, fm.meta_["suite_pairs"], flush=True)
