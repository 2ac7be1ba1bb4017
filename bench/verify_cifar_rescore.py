"""The judged CIFAR-10 samples of bench/verify/cifar-default, scored by another fused model: the frontier of a
model fitted since, without judging again.

    python bench/verify_cifar_rescore.py WS [--judged bench/verify/cifar-224-fit] [--out FILE.json]

WS is a CIFAR-10 workspace with a fitted fused model and its evidence (`leakcore verify WS`). The samples were
drawn from pools defined by the model of that round (random unlisted fused flags, random unlisted test images
below its soft threshold with a candidate pair, and a band sample of its fused 0.4-0.7): each judged image stands
for its pool (Horvitz-Thompson weights: pool size / judged images in it; the band sample and the below sample's
images in the band share the band's pool). Each judged pair is scored by WS's model; ciFAIR's listed test images
count as leaks (judgment 1 as the same photograph, 2 as very similar) and are scored exactly (their best pair).
For each threshold: test images flagged (listed, and unlisted images of the pools), listed flagged, the share of
flags that are leaks ("unsure" counts as a leak) and the share of same photographs left below. An unlisted image is
judged by its sampled pair only: where WS's model flags it through another training image, that flag is not seen.
`--judged` names another round's folder (bench/verify_cifar_default.py's layout: its flags and below samples, no band
sample).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leakcore import fused, leakage  # noqa: E402
from leakcore.project import Workspace  # noqa: E402

JUDGED = ROOT / "bench" / "verify" / "cifar-default"
DATA = ROOT.parent / "shared" / "data" / "cifar10"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace")
    ap.add_argument("--judged", default=str(JUDGED), help="the judged round's folder (default: %(default)s)")
    ap.add_argument("--out")
    args = ap.parse_args()
    judged = Path(args.judged)
    ws = Workspace.open(args.workspace)
    fm = fused.load(ws)
    pairs = leakage.load_pairs(ws, raw=True)
    scored = fused.with_fused(ws, pairs[~pairs["within"]], fm)
    score = scored.set_index(["eval_item_id", "train_item_id"])["fused"]
    best = scored.groupby("eval_item_id")["fused"].max()
    results = json.loads((judged / "results.json").read_text())
    flags, below = (pd.read_csv(judged / f"judged-{s}.csv") for s in ("flags", "below"))
    band = pd.read_csv(judged / "judged-band.csv") if (judged / "judged-band.csv").exists() else below.iloc[:0]
    for df in (flags, below, band):
        df["s"] = [score.get((e, t), 0.0) for e, t in zip(df["eval_item_id"], df["train_item_id"])]
    pools = results["pools"]
    lo, hi, band_pool = ((results["band"]["low"], results["band"]["high"], results["band"]["pool"]) if "band" in results
                         else (0.0, 0.0, 0))
    in_band = (below["fused"] >= lo) & (below["fused"] < hi)
    w_band = band_pool / max(1, len(band) + int(in_band.sum()))
    w_rest = (pools["below_unlisted"] - band_pool) / int((~in_band).sum())
    unlisted = pd.concat([
        pd.DataFrame({"s": flags["s"], "w": pools["flags_unlisted"] / len(flags),
                      "leak": flags["judgment"].isin(["leak", "unsure"]), "same": flags["judgment"] == "leak"}),
        pd.DataFrame({"s": band["s"], "w": w_band, "leak": band["judgment"].isin(["same", "unsure"]),
                      "same": band["judgment"] == "same"}),
        pd.DataFrame({"s": below["s"], "w": np.where(in_band, w_band, w_rest),
                      "leak": below["judgment"].isin(["same", "unsure"]), "same": below["judgment"] == "same"}),
    ], ignore_index=True)
    listed = pd.read_csv(DATA / "duplicates_cifar10.csv")
    listed_best = ("cifar10/test/" + listed["TestID"].astype(str)).map(best).fillna(0.0).to_numpy()
    same_listed = (listed["Judgment"] <= 1).to_numpy()
    rows = []
    for t in sorted({0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, round(fm.soft_, 4)}):
        lf = listed_best >= t
        up = unlisted["s"] >= t
        flagged = lf.sum() + (unlisted["w"] * up).sum()
        leaks = lf.sum() + (unlisted["w"] * up * unlisted["leak"]).sum()
        same = same_listed.sum() + (unlisted["w"] * unlisted["same"]).sum()
        same_below = (same_listed & ~lf).sum() + (unlisted["w"] * ~up * unlisted["same"]).sum()
        rows.append({"threshold": t, "test_images_flagged": int(round(flagged)), "listed_flagged": round(float(lf.mean()), 3),
                     "flags_that_are_leaks": round(float(leaks / flagged), 3),
                     "same_photographs_below": round(float(same_below / same), 3)})
    table = pd.DataFrame(rows)
    print(f"{args.workspace}: soft {fm.soft_:.4f}, {fm.meta_['suite_pairs']} fitting pairs")
    print(table.to_string(index=False))
    if args.out:
        Path(args.out).write_text(json.dumps({"workspace": args.workspace, "soft": fm.soft_, "meta": fm.meta_,
                                              "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
