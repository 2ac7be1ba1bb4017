"""CIFAR-10 vs ciFAIR's human-judged duplicate list: ingest and scan through the CLI, then measure.

    python bench/cifair.py [--encoder sscd-distilled] [--input-size 224] [--data ../shared/data/cifar10]

Prints top-1 / top-10 recall of ciFAIR's test->train pairs, item-level recall at the soft threshold,
the similarity distribution of listed pairs, hard/soft rates, and the strongest flags ciFAIR does not list.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leakcore import leakage  # noqa: E402
from leakcore.project import Workspace  # noqa: E402


def run(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", default="sscd-distilled")
    ap.add_argument("--input-size", type=int)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    ap.add_argument("--workspace")
    ap.add_argument("--flip-queries", action="store_true")
    ap.add_argument("--show", type=int, default=12, help="how many unlisted flags to print")
    args = ap.parse_args()
    data = Path(args.data)
    tag = f"{args.encoder}-{args.input_size or 'default'}" + ("-flip" if args.flip_queries else "")
    ws_dir = Path(args.workspace or ROOT / ".bench" / f"cifar-{tag}")
    cli = [sys.executable, "-m", "leakcore.cli"]
    t_add = run(cli + ["add", str(ws_dir), "--dataset", "cifar10", "--source", str(data / "cifar10.parquet")])
    scan = cli + ["scan", str(ws_dir), "--encoder", args.encoder]
    if args.input_size:
        scan += ["--input-size", str(args.input_size)]
    if args.flip_queries:
        scan += ["--flip-queries"]
    t_scan = run(scan)
    ws = Workspace.open(ws_dir)
    hard, soft = ws.thresholds()
    pairs = leakage.load_pairs(ws)
    cross = pairs[~pairs["within"]].copy()
    cross["test"] = cross["eval_item_id"].str.rsplit("/", n=1).str[1].astype(int)
    cross["train"] = cross["train_item_id"].str.rsplit("/", n=1).str[1].astype(int)
    listed = pd.read_csv(data / "duplicates_cifar10.csv")
    merged = listed.merge(cross, left_on=["TestID", "TrainID"], right_on=["test", "train"], how="left")
    top1 = float((merged["rank"] == 1).mean())
    top10 = float(merged["rank"].notna().mean())
    best = cross.sort_values("similarity", ascending=False).drop_duplicates("test").set_index("test")["similarity"]
    listed_best = best.reindex(listed["TestID"].unique())
    item_recall = float((listed_best >= soft).mean())
    flagged = best[best >= soft]
    unlisted = flagged[~flagged.index.isin(listed["TestID"])]
    pair_sim = merged["similarity"]
    rates = leakage.rates(ws, hard, soft)
    overall = rates[rates["train_split"] == leakage.ALL_SOURCES].iloc[0]
    sweep = []
    for t in (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9):
        sweep.append({"threshold": t, "listed_flagged": float((listed_best >= t).mean()), "flagged": int((best >= t).sum())})
    out = {
        "encoder": args.encoder, "input_size": args.input_size or "default", "flip_queries": args.flip_queries, "hard": hard, "soft": soft,
        "seconds_add": round(t_add, 1), "seconds_scan": round(t_scan, 1),
        "pairs": len(listed), "top1_recall": top1, "top10_recall": top10,
        "item_recall_at_soft": item_recall, "flagged_at_soft": int(len(flagged)), "flagged_not_listed": int(len(unlisted)),
        "hard_rate": float(overall["hard_rate"]), "soft_rate": float(overall["soft_rate"]),
        "listed_pair_similarity": {q: float(pair_sim.quantile(q)) for q in (0.0, 0.05, 0.25, 0.5, 0.75, 1.0)},
        "listed_pair_similarity_by_judgment": merged.groupby("Judgment")["similarity"].median().to_dict(),
        "sweep": sweep,
    }
    print(json.dumps(out, indent=2))
    top = cross[cross["test"].isin(unlisted.index)].sort_values("similarity", ascending=False).drop_duplicates("test")
    print("strongest flags not in ciFAIR's list (test index, train index, similarity):")
    for r in top.head(args.show).itertuples():
        print(f"  test {r.test:>5}  train {r.train:>5}  {r.similarity:.4f}")
    (ROOT / ".bench").mkdir(exist_ok=True)
    (ROOT / ".bench" / f"cifair-{tag}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
