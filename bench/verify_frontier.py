"""What moving the fused soft threshold would do to the by-eye rates, estimated from one round of judged samples.

    python bench/verify_frontier.py bench/verify/v7 [--pools FLAGS BELOW]
    python bench/verify_frontier.py bench/verify/v7 --extra judged-band.csv --strata LO HI N [LO HI N ...]

A round of bench/verify_cifair.py draws two random samples of images not decided yet: unlisted test images the fused
score flags, and unlisted test images with a verified candidate pair that it does not flag; each pair was then
judged by eye (judged-*.csv: same_photo yes / no / unsure). Every judged pair stands for pool / sample-size images
of its pool (the round's cifair.json has the pool sizes as sample_pools; older rounds give them with --pools).
With --extra judged samples drawn from a band of fused scores, --strata gives every band of the fused score with
the number of images in it (LO HI N; the round's soft threshold is one of the edges), and each judged pair stands
for N / the judged pairs in its band (post-stratification).

For a threshold t the flags are the judged pairs with fused >= t, weighted. Per t the table gives the estimated
number of flagged images, the share of them that are the same photograph (unsure counted as not the same, and
left out), and the share of the unflagged images that are. The issue's goals are >= 95% and <= 5%. At the round's
own soft threshold the shares are those of the samples themselves; elsewhere they rest on fewer pairs (the counts
are printed). Writes frontier.json (frontier-extra.json with --extra) into the round's folder.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)


def weigh(judged: pd.DataFrame, strata: list[tuple[float, float, int]]) -> pd.DataFrame:
    """Each judged pair's weight: the images of its band of fused scores over the judged pairs in that band."""
    d = judged[judged["same_photo"].isin(["yes", "no", "unsure"])].copy()
    d["w"] = np.nan
    for lo, hi, n in strata:
        inside = (d["fused"] >= lo) & (d["fused"] < hi)
        if inside.any():
            d.loc[inside, "w"] = n / inside.sum()
    if d["w"].isna().any():
        raise SystemExit(f"{int(d['w'].isna().sum())} judged pairs lie in no band of --strata")
    return d


def frontier(d: pd.DataFrame, thresholds=THRESHOLDS) -> pd.DataFrame:
    """One row per threshold: weighted flags, same-photograph shares above and below, and the sample counts."""
    same, sure = d["same_photo"].eq("yes"), d["same_photo"].ne("unsure")
    rows = []
    for t in thresholds:
        up = d["fused"] >= t

        def share(mask):
            w = d.loc[mask, "w"]
            return float((w * same[mask]).sum() / w.sum()) if w.sum() else float("nan")

        rows.append({
            "threshold": t, "flagged_images": round(float(d.loc[up, "w"].sum())),
            "same_of_flags": share(up), "same_of_flags_unsure_left_out": share(up & sure),
            "same_below": share(~up), "same_below_unsure_left_out": share(~up & sure),
            "same_missed_images": round(float((d.loc[~up, "w"] * same[~up]).sum())),
            "pairs_above": int(up.sum()), "pairs_below": int((~up).sum()),
        })
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("round", help="a folder of bench/verify_cifair.py's, with judged-flags.csv and judged-below.csv")
    ap.add_argument("--pools", nargs=2, type=int, metavar=("FLAGS", "BELOW"),
                    help="the sizes of the pools the two samples were drawn from (default: cifair.json's sample_pools)")
    ap.add_argument("--extra", nargs="*", default=[], help="more judged-*.csv files (with a fused column)")
    ap.add_argument("--strata", nargs="+", type=float, metavar="LO HI N",
                    help="bands of the fused score and their image counts, three numbers per band")
    args = ap.parse_args()
    folder = Path(args.round)
    meta = json.loads((folder / "cifair.json").read_text())
    soft = meta["fused_soft"]
    files = [folder / "judged-flags.csv", folder / "judged-below.csv", *args.extra]
    judged = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    if args.strata:
        if len(args.strata) % 3:
            raise SystemExit("--strata takes three numbers per band: LO HI N")
        strata = [(args.strata[i], args.strata[i + 1], int(args.strata[i + 2])) for i in range(0, len(args.strata), 3)]
    else:
        if not args.pools and "sample_pools" not in meta:
            raise SystemExit(f"{folder / 'cifair.json'} has no sample_pools (an older round): give them with --pools")
        pools = tuple(args.pools) if args.pools else (meta["sample_pools"]["flags"], meta["sample_pools"]["below"])
        strata = [(soft, np.inf, pools[0]), (-np.inf, soft, pools[1])]
    d = weigh(judged, strata)
    f = frontier(d, sorted({*THRESHOLDS, round(soft, 3)}))
    pct = lambda x: "" if np.isnan(x) else f"{100 * x:5.1f}%"  # noqa: E731
    bands = "; ".join(f"[{lo:g}, {hi:g}): {n} images, {int(((d['fused'] >= lo) & (d['fused'] < hi)).sum())} judged"
                      for lo, hi, n in strata)
    print(f"round {folder}: {bands}; its soft threshold {soft:.3f}")
    print("threshold  flagged  same of flags (unsure out)  same below (unsure out)  same missed  pairs above/below")
    for r in f.itertuples():
        mark = " <- soft" if abs(r.threshold - round(soft, 3)) < 1e-9 else ""
        print(f"{r.threshold:9.3f}  {r.flagged_images:7d}  {pct(r.same_of_flags):>13s}"
              f" ({pct(r.same_of_flags_unsure_left_out)})  {pct(r.same_below):>10s}"
              f" ({pct(r.same_below_unsure_left_out)})  {r.same_missed_images:11d}"
              f"  {r.pairs_above:>5d}/{r.pairs_below:<5d}{mark}")
    met = f[(f["same_of_flags"] >= 0.95) & (f["same_below"] <= 0.05)]
    print("both goals met at:", ", ".join(f"{t:g}" for t in met["threshold"]) or "no threshold")
    name = "frontier.json" if not args.extra else "frontier-extra.json"
    (folder / name).write_text(json.dumps(
        {"strata": [[lo, hi, n] for lo, hi, n in strata], "extra": [str(x) for x in args.extra], "soft": soft,
         "rows": f.to_dict(orient="records")}, indent=2, default=float))


if __name__ == "__main__":
    main()
