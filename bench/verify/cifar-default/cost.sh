#!/bin/bash
# Same-load cost ratio on a 5,000-image subset of CIFAR-10 (the first 4,167 training and 833 test images):
# `leakcore scan` (sscd-distilled, default input size) then `leakcore verify --use fused`, each under /usr/bin/time -v.
#   LEAKCORE=".venv/bin/leakcore" bash bench/verify/cifar-default/cost.sh /tmp/cifar-sub
set -e
WS=${1:-/tmp/cifar-sub}
LC=${LEAKCORE:-.venv/bin/leakcore}
PY=${PYTHON:-.venv/bin/python}
OUT=$(dirname "$0")
rm -rf "$WS" "$WS.parquet"
$PY - "$WS.parquet" <<'PYEOF'
import sys, pandas as pd
df = pd.read_parquet("../shared/data/cifar10/cifar10.parquet")
sub = df[((df["split"] == "train") & (df["index"] < 4167)) | ((df["split"] == "test") & (df["index"] < 833))]
sub.to_parquet(sys.argv[1], index=False)
print(len(sub), "images")
PYEOF
$LC add "$WS" --dataset cifar10 --source "$WS.parquet"
export OMP_NUM_THREADS=2
/usr/bin/time -v -o "$OUT/cost-sub-scan.time" nice -n 5 $LC scan "$WS" --encoder sscd-distilled > "$OUT/cost-sub-scan.log" 2>&1
/usr/bin/time -v -o "$OUT/cost-sub-verify.time" nice -n 5 $LC verify "$WS" --use fused > "$OUT/cost-sub-verify.log" 2>&1
grep -h "Elapsed\|User time\|System time" "$OUT"/cost-sub-*.time
