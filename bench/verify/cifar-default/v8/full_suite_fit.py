import sys, time
sys.path.insert(0, "/work/main")
from leakcore import fused
from leakcore.project import Workspace
ws = Workspace.open(sys.argv[1])
t = time.time()
suite = fused.suite_pairs(ws, queries=int(sys.argv[2]), seed=0, per_query=None)
print("suite", len(suite), "pairs in", round(time.time() - t), "s", flush=True)
fm = fused.fit(ws, queries=int(sys.argv[2]), suite=suite)
print("fit done", round(time.time() - t), "s; soft", fm.soft_, "hard", fm.hard_, fm.meta_["suite_pairs"], flush=True)
