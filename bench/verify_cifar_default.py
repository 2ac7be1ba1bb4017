"""The fused score on CIFAR-10 as a fresh user meets it: a workspace `leakcore scan` gave (sscd-distilled at its
default input size, no mirrored queries), then `leakcore verify WS --use fused` with no curator decisions.

    cp -a WS /tmp/cifar-fused && leakcore verify /tmp/cifar-fused --use fused
    python bench/verify_cifar_default.py --workspace /tmp/cifar-fused [--out bench/verify/cifar-default]
    python bench/verify_cifar_default.py --workspace /tmp/cifar-fused --estimate   # once the judged-*.csv exist

Uses the model the workspace holds (never fits one; records no decisions). Writes `figures.json` (ciFAIR's listed
test images flagged at the raw and the fused soft threshold, flags, pools) and three samples to judge by eye, as
contact sheets of 20 numbered pairs at 4x with a CSV each: `flags` (random unlisted fused flags), `below` (random
unlisted test images whose best candidate pair the fused score does not flag) and `missed` (every listed test image
the fused score does not flag, shown with its listed training image). With `--estimate` it reads the judgments
(`judged-flags.csv`: leak / unsure / not; `judged-below.csv` and `judged-missed.csv`: same / unsure / not) and
writes `results.json`: the share of flags that are leaks and of same photographs left below soft, each sample
weighted by its pool. It also sheets the fit's own look-alike pairs with the highest out-of-fold fused scores
(`lookalikes-top-p0.png`), the pairs the soft threshold was set against.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # appended: a PYTHONPATH snapshot of leakcore, if given, wins

from leakcore import catalog, fused, images, leakage  # noqa: E402
from leakcore.project import Workspace  # noqa: E402

PAGE = 20


def sheets(ws, df: pd.DataFrame, stem: Path, label, cols: int = 5, scale: int = 4) -> list[str]:
    """Contact sheets of PAGE pairs each (test image left, training image right), numbered as in the CSV."""
    items = ws.items().set_index("item_id")

    def img(iid):
        it = items.loc[iid]
        return images.decode(catalog.read_bytes(it["uri"], int(it["row"]))).image.convert("RGB")

    cell = 32 * scale
    w, h = 2 * cell + 18, cell + 16
    out = []
    for p in range(0, len(df), PAGE):
        page = df.iloc[p:p + PAGE]
        rows = (len(page) + cols - 1) // cols
        s = Image.new("RGB", (cols * w, rows * h), "white")
        d = ImageDraw.Draw(s)
        for k, r in enumerate(page.itertuples()):
            x, y = (k % cols) * w, (k // cols) * h
            for j, iid in enumerate((r.eval_item_id, r.train_item_id)):
                s.paste(img(iid).resize((cell, cell), Image.Resampling.NEAREST), (x + j * (cell + 3), y))
            d.text((x, y + cell + 1), f"#{r.n} {label(r)}", fill="black")
        path = stem.parent / f"{stem.name}-p{p // PAGE}.png"
        s.save(path)
        out.append(path.name)
    return out


def test_index(item_ids: pd.Series) -> pd.Series:
    return item_ids.str.rsplit("/", n=1).str[1].astype(int)


def measure(ws, fm, listed: pd.DataFrame, out: Path, n: int, seed: int, band=None) -> dict:
    raw = leakage.load_pairs(ws, raw=True)
    cross = raw[(raw["eval_split"] == "cifar10/test") & (raw["train_split"] == "cifar10/train")]
    cand = fused.candidates(cross, fm)
    scored = fused.with_fused(ws, cross, fm)
    scored["test"] = test_index(scored["eval_item_id"])
    raw_soft = ws.thresholds(score="similarity").soft
    best_f = scored.sort_values("fused", ascending=False).drop_duplicates("test").set_index("test")
    best_r = scored.sort_values("similarity", ascending=False).drop_duplicates("test").set_index("test")
    ids = listed["TestID"].unique()
    flag_f, flag_r = best_f[best_f["fused"] >= fm.soft], best_r[best_r["similarity"] >= raw_soft]
    by_judgment = {}
    for j, g in listed.groupby("Judgment"):
        t = g["TestID"].unique()
        by_judgment[str(j)] = {"listed": int(len(t)), "flagged_raw": int(np.isin(t, flag_r.index).sum()),
                               "flagged_fused": int(np.isin(t, flag_f.index).sum())}
    # the listed pairs themselves, scored (a listed training image need not be the best neighbour)
    lp = listed.assign(eval_item_id="cifar10/test/" + listed["TestID"].astype(str),
                       train_item_id="cifar10/train/" + listed["TrainID"].astype(str))
    lp = lp.merge(scored[["eval_item_id", "train_item_id", "similarity", "fused", "verified"]], how="left",
                  on=["eval_item_id", "train_item_id"])
    fig = {
        "workspace": str(ws.path), "candidate_threshold": fm.candidate, "fused_soft": fm.soft, "fused_hard": fm.hard,
        "raw_soft": raw_soft, "raw_hard": ws.thresholds(score="similarity").hard,
        "cross_pairs": int(len(cross)), "candidate_pairs": int(len(cand)),
        "verified_pairs": int(scored["verified"].sum()),
        "listed_test_images": int(len(ids)),
        "listed_flagged_raw": float(np.isin(ids, flag_r.index).mean()),
        "listed_flagged_fused": float(np.isin(ids, flag_f.index).mean()),
        "listed_by_judgment": by_judgment,
        "listed_pairs_stored": int(lp["similarity"].notna().sum()), "listed_pairs": int(len(lp)),
        "listed_pairs_verified": int(lp["verified"].fillna(False).astype(bool).sum()),
        "flags_raw": int(len(flag_r)), "flags_fused": int(len(flag_f)),
        "flags_fused_at_hard": int((best_f["fused"] >= fm.hard).sum()),
        "flags_fused_unlisted": int((~flag_f.index.isin(ids)).sum()),
        "flags_raw_unlisted": int((~flag_r.index.isin(ids)).sum()),
        "flags_both": int(flag_f.index.isin(flag_r.index).sum()),
        "model": {k: v for k, v in fm.meta.items() if k != "features"},
    }
    rng = np.random.default_rng(seed)
    lab = lambda r: f"r{r.similarity:.2f} f{r.fused:.2f}"  # noqa: E731
    unlisted_flags = flag_f[~flag_f.index.isin(ids)].reset_index()
    a = unlisted_flags.iloc[np.sort(rng.choice(len(unlisted_flags), min(n, len(unlisted_flags)), replace=False))]
    # unlisted test images with a candidate pair (verified) and no pair at fused soft
    below = best_f[(best_f["fused"] < fm.soft) & best_f["verified"] & ~best_f.index.isin(ids)]
    below = best_r.loc[below.index].assign(image_fused=below["fused"])  # shown with its nearest by raw similarity
    below = below[below["similarity"] >= fm.candidate].reset_index()
    b = below.iloc[np.sort(rng.choice(len(below), min(n, len(below)), replace=False))]
    missed = [int(i) for i in ids if i not in flag_f.index]
    # a lower soft threshold: flags, listed flagged, and the below pool's images it would add
    fig["sweep"] = [{"threshold": t, "flags": int((best_f["fused"] >= t).sum()),
                     "listed_flagged": float(np.isin(ids, best_f.index[best_f["fused"] >= t]).mean()),
                     "below_pool_above": int((below["image_fused"] >= t).sum())}
                    for t in (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, fm.soft)]
    c = lp[lp["TestID"].isin(missed)].sort_values(["TestID", "similarity"], ascending=[True, False])
    c = c.drop_duplicates("TestID").fillna({"similarity": -1.0, "fused": 0.0})
    c["image_fused"] = best_f["fused"].reindex(c["TestID"]).fillna(0.0).to_numpy()
    fig["pools"] = {"flags_unlisted": int(len(unlisted_flags)), "below_unlisted": int(len(below)),
                    "listed_missed": len(missed),
                    "unlisted_below_candidate": int((~best_r.index.isin(ids)).sum() - len(below)
                                                    - len(unlisted_flags))}
    fig["listed_missed_by_fused"] = missed
    samples = {"flags": a, "below": b, "missed": c}
    below[["test", "image_fused"]].to_csv(out / "below-pool.csv", index=False)
    if band:  # more of the below pool in one band of fused scores, the band a lower soft would move through
        lo, hi, k = band
        rest = below[(below["image_fused"] >= lo) & (below["image_fused"] < hi) & ~below["test"].isin(b["test"])]
        samples["band"] = rest.iloc[np.sort(np.random.default_rng(seed + 1).choice(len(rest), min(int(k), len(rest)),
                                                                                 replace=False))]
        fig["band"] = {"low": lo, "high": hi, "pool": int(((below["image_fused"] >= lo) & (below["image_fused"] < hi)).sum())}
    for name, df in samples.items():
        df = df.reset_index(drop=True)
        df = df.assign(n=df.index)
        label = lab if name != "missed" else (lambda r: f"r{r.similarity:.2f} f{r.fused:.2f} J{r.Judgment}")
        fig[f"sheets_{name}"] = sheets(ws, df, out / f"sample-{name}", label)
        cols = ["n", "eval_item_id", "train_item_id", "similarity", "fused"] + (
            ["Judgment", "image_fused"] if name == "missed" else ["image_fused"] if name in ("below", "band") else [])
        df[cols].to_csv(out / f"sample-{name}.csv", index=False)
    return fig


def lookalikes(ws, fm, out: Path, n: int = 20) -> dict:
    """The collection's look-alike pairs the soft threshold was set against, by out-of-fold fused score (as the fit
    scores them): a sheet of the top `n` to judge whether they are look-alikes or in-collection twins."""
    suite = fused.fitted_rows(pd.read_parquet(ws.paths.fused_file(fm.meta["encoder"], "suite.parquet")))
    suite["held"] = fused._out_of_fold(suite[fm.meta["features"]].to_numpy(np.float64), suite["label"].to_numpy(int),
                                       suite["query"].astype(str).to_numpy(), fm.meta.get("seed", 0))
    col = suite[suite["family"] == "collection"].sort_values("held", ascending=False)
    copies = suite[suite["label"] == 1]
    top = col.head(n).rename(columns={"query": "eval_item_id", "similarity": "similarity"}).reset_index(drop=True)
    top = top.assign(n=top.index, fused=top["held"])
    sheets(ws, top, out / "lookalikes-top", lambda r: f"r{r.similarity:.2f} oof{r.held:.2f}")
    top[["n", "eval_item_id", "train_item_id", "similarity", "held"]].to_csv(out / "lookalikes-top.csv", index=False)
    # the soft threshold the fit's rule gives with the top k look-alikes left out (as if they were known twins)
    real = (suite["label"] == 1) | (suite["family"] == "collection")
    soft_without = {}
    for k in (0, 2, 4, 6, 8, 10, 12, 16, 20):
        keep = real & ~suite.index.isin(col.index[:k])
        soft_without[k] = fused.soft_from_lookalikes(suite.loc[keep, "held"].to_numpy(),
                                                     suite.loc[keep, "label"].to_numpy(int))
    return {"soft_without_top_k": soft_without, "lookalikes": int(len(col)), "held_quantiles": col["held"].quantile([0.5, 0.9, 0.95, 0.98, 0.99]).to_dict(),
            "lookalikes_at_soft": int((col["held"] >= fm.soft).sum()),
            "copies_at_soft_out_of_fold": float((copies["held"] >= fm.soft).mean())}


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval of a share k / n."""
    p = k / n
    c, h = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(c - h), float(c + h)


def estimate(out: Path, fig: dict) -> dict:
    """Pool-weighted shares from the judged samples."""
    fl, be, mi = (pd.read_csv(out / f"judged-{k}.csv") for k in ("flags", "below", "missed"))
    pools = fig["pools"]
    listed_flagged = round(fig["listed_flagged_fused"] * fig["listed_test_images"])
    cf, cb, cm = fl["judgment"].value_counts(), be["judgment"].value_counts(), mi["judgment"].value_counts()
    share = lambda c, k, tot: float(c.get(k, 0) / tot)  # noqa: E731
    # flags: listed flags count as leaks; unlisted, the sample's leak + unsure share (renders and bursts count)
    leak_unlisted = share(cf, "leak", len(fl)) + share(cf, "unsure", len(fl))
    flags_leaks = (listed_flagged + leak_unlisted * pools["flags_unlisted"]) / fig["flags_fused"]
    strict = (listed_flagged + share(cf, "leak", len(fl)) * pools["flags_unlisted"]) / fig["flags_fused"]
    # same photographs below soft: the judged missed listed ones + the below sample's share of its pool
    same_below = cm.get("same", 0) + share(cb, "same", len(be)) * pools["below_unlisted"]
    # same photographs above soft: listed flags of judgment 0/1 + the unlisted flags judged "leak" (unsure left out)
    j = fig["listed_by_judgment"]
    same_above = sum(j[k]["flagged_fused"] for k in ("0", "1") if k in j) + share(cf, "leak", len(fl)) * pools[
        "flags_unlisted"]
    # a lower soft threshold t: the below pool's images at t or more, judged by the sample's images in that band
    be = be.merge(pd.read_csv(out / "sample-below.csv")[["n", "image_fused"]], on="n")
    mi = mi.merge(pd.read_csv(out / "sample-missed.csv")[["n", "image_fused"]], on="n")
    pool = pd.read_csv(out / "below-pool.csv")
    judged = be[["image_fused", "judgment"]]
    if "band" in fig and (out / "judged-band.csv").exists():
        bd = pd.read_csv(out / "judged-band.csv").merge(pd.read_csv(out / "sample-band.csv")[["n", "image_fused"]],
                                                        on="n", suffixes=("_x", ""))
        judged = pd.concat([judged, bd[["image_fused", "judgment"]]], ignore_index=True)
        lo, hi = fig["band"]["low"], fig["band"]["high"]
    else:
        lo = hi = None

    def expected(kind: str, t: float, above: bool) -> float:
        """Expected images judged `kind` among the below pool's images at (or under) fused t: each stratum
        (inside the band, outside it) judged by its own sampled images on the same side of t."""
        total = 0.0
        strata = [(-1.0, 2.0)] if lo is None else [(lo, hi), (-1.0, lo), (hi, 2.0)]
        for a_, b_ in strata:
            side = (lambda f: f >= t) if above else (lambda f: f < t)
            n_pool = int((side(pool["image_fused"]) & (pool["image_fused"] >= a_) & (pool["image_fused"] < b_)).sum())
            j_ = judged[side(judged["image_fused"]) & (judged["image_fused"] >= a_) & (judged["image_fused"] < b_)]
            if n_pool and len(j_):
                total += n_pool * float((j_["judgment"] == kind).mean())
        return total

    sweep = []
    for row in fig["sweep"]:
        t = row["threshold"]
        band, rest = be[be["image_fused"] >= t], be[be["image_fused"] < t]
        added = row["below_pool_above"]
        band_leak = float(band["judgment"].isin(["same", "unsure"]).mean()) if len(band) else 0.0
        band_same = float((band["judgment"] == "same").mean()) if len(band) else 0.0
        rest_same = float((rest["judgment"] == "same").mean()) if len(rest) else 0.0
        listed_added = round(row["listed_flagged"] * fig["listed_test_images"]) - listed_flagged
        leaks = listed_flagged + leak_unlisted * pools["flags_unlisted"] + listed_added + band_leak * added
        m_same = mi[mi["judgment"] == "same"]
        below_t = (m_same["image_fused"] < t).sum() + rest_same * (pools["below_unlisted"] - added)
        above_t = same_above + (m_same["image_fused"] >= t).sum() + band_same * added
        entry = {**row, "sample_in_band": int(len(band)), "flags_that_are_leaks": leaks / row["flags"],
                 "same_photographs_below": float(below_t / (below_t + above_t))}
        if lo is not None:  # post-stratified with the band sample
            leaks_s = leaks - band_leak * added + expected("same", t, True) + expected("unsure", t, True)
            below_s = (m_same["image_fused"] < t).sum() + expected("same", t, False)
            above_s = same_above + (m_same["image_fused"] >= t).sum() + expected("same", t, True)
            entry.update({"with_band_flags_that_are_leaks": leaks_s / row["flags"],
                          "with_band_same_photographs_below": float(below_s / (below_s + above_s))})
        sweep.append(entry)
    # 95% intervals from the samples' binomial error alone (the listed and missed counts are exact)
    lo, hi = wilson(cf.get("leak", 0) + cf.get("unsure", 0), len(fl))
    flags_ci = [(listed_flagged + x * pools["flags_unlisted"]) / fig["flags_fused"] for x in (lo, hi)]
    below_ci = []
    for x in wilson(cb.get("same", 0), len(be)):
        b = cm.get("same", 0) + x * pools["below_unlisted"]
        below_ci.append(b / (b + same_above))
    return {
        "flags_that_are_leaks_ci95": flags_ci, "same_photographs_below_soft_ci95": below_ci,
        "sweep_estimated": sweep,
        "judged": {"flags": cf.to_dict(), "below": cb.to_dict(), "missed": cm.to_dict()},
        "flags_that_are_leaks": flags_leaks, "flags_that_are_leaks_unsure_as_not": strict,
        "same_photographs_below_soft": same_below / (same_below + same_above),
        "same_photographs_est": {"above": same_above, "below": same_below},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", default="/tmp/cifar-fused")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "verify" / "cifar-default"))
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--band", nargs=3, type=float, metavar=("LOW", "HIGH", "N"),
                    help="also sample N more unlisted images below soft with a best fused score in [LOW, HIGH)")
    ap.add_argument("--estimate", action="store_true", help="read the judged-*.csv and write results.json")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.estimate:
        fig = json.loads((out / "figures.json").read_text())
        res = {**fig, **estimate(out, fig)}
        res["commit"] = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                                       text=True).stdout.strip()
        for extra in ("code", "cost"):  # code.json: the commit measured, where it differs from HEAD now
            if (out / f"{extra}.json").exists():
                res[extra] = json.loads((out / f"{extra}.json").read_text())
        res["commit"] = res.get("code", {}).get("commit", res["commit"])
        (out / "results.json").write_text(json.dumps(res, indent=2, default=str))
        print(json.dumps({k: v for k, v in res.items() if k != "model"}, indent=2, default=str))
        return
    ws = Workspace.open(args.workspace)
    fm = fused.load(ws)
    if fm is None:
        raise SystemExit(f"{args.workspace} has no fitted fused model: run `leakcore verify {args.workspace}` first")
    fig = measure(ws, fm, pd.read_csv(Path(args.data) / "duplicates_cifar10.csv"), out, args.n, args.seed, args.band)
    fig["lookalikes_out_of_fold"] = lookalikes(ws, fm, out)
    (out / "figures.json").write_text(json.dumps(fig, indent=2, default=str))
    print(json.dumps({k: v for k, v in fig.items() if k != "model"}, indent=2, default=str))


if __name__ == "__main__":
    main()
