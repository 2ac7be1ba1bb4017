"""The verification stage on CIFAR-10 against ciFAIR's list, and the samples to judge by eye.

    python bench/verify_cifair.py [--workspace .bench/cifar10-224] [--refit] [--decisions-from judged-*.csv]

Needs the workspace `bench/cifair.py --input-size 224 --flip-queries` scans (the fused model is fitted in it
when missing). Prints: verification pairs per second, listed test images flagged at the raw and the fused soft
threshold, flags, and writes two contact sheets of 100 pairs each under bench/verify/ (random unlisted fused
flags; random unlisted test images with a candidate pair that the fused score does not flag) with a CSV to
record the judgment of each numbered pair.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leakcore import catalog, fused, images, leakage, verify  # noqa: E402
from leakcore.project import Workspace  # noqa: E402


def sheet(ws, df: pd.DataFrame, out: Path, label, cols: int = 5, scale: int = 3) -> None:
    items = ws.items().set_index("item_id")

    def img(iid):
        it = items.loc[iid]
        return images.decode(catalog.read_bytes(it["uri"], int(it["row"]))).image

    cell = 32 * scale
    w, h = 2 * cell + 14, cell + 16
    rows = (len(df) + cols - 1) // cols
    s = Image.new("RGB", (cols * w, rows * h), "white")
    d = ImageDraw.Draw(s)
    for n, r in enumerate(df.itertuples()):
        x, y = (n % cols) * w, (n // cols) * h
        for j, iid in enumerate((r.eval_item_id, r.train_item_id)):
            s.paste(img(iid).resize((cell, cell), Image.Resampling.NEAREST), (x + j * (cell + 3), y))
        d.text((x, y + cell + 1), f"#{n} {label(r)}", fill="black")
    s.save(out)


JUDGE = "judged-by-eye"


def record_judgments(ws, files: list[str]) -> set[tuple[str, str]]:
    """Write the eye judgments of earlier samples as decisions of one reviewer (once: a re-run adds nothing) and
    return every pair that reviewer decided."""
    from leakcore import review

    judged = pd.concat([pd.read_csv(f) for f in files], ignore_index=True) if files else pd.DataFrame()
    have = review.latest_decisions(ws)
    have = have[have["reviewer"] == JUDGE]
    seen = set(zip(have["eval_item_id"], have["train_item_id"]))
    if not judged.empty:
        judged = judged[judged["same_photo"].isin(["yes", "no"])].drop_duplicates(["eval_item_id", "train_item_id"])
        for verdict, decision in (("yes", "soft"), ("no", "not_leak")):
            new = [(e, t) for e, t in zip(judged.loc[judged["same_photo"] == verdict, "eval_item_id"],
                                          judged.loc[judged["same_photo"] == verdict, "train_item_id"])
                   if (e, t) not in seen]
            if new:
                review.decide_many(ws, new, decision, reviewer=JUDGE, note="bench: judged on a contact sheet")
                seen |= set(new)
    return seen


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", default=str(ROOT / ".bench" / "cifar10-224"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    ap.add_argument("--refit", action="store_true")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--out", default=str(ROOT / "bench" / "verify"))
    ap.add_argument("--decisions-from", nargs="*", default=[],
                    help="judged-*.csv files (same_photo yes / no) recorded as curator decisions before the fit, "
                         "as a curator's session would; the samples then leave these pairs out")
    args = ap.parse_args()
    ws = Workspace.open(args.workspace)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    decided = record_judgments(ws, args.decisions_from)
    t0 = time.perf_counter()
    fm = fused.load(ws) if not args.refit else None
    fm = fm or fused.fit(ws)
    t_fit = time.perf_counter() - t0
    raw = leakage.load_pairs(ws, raw=True)
    cross = raw[(raw["eval_split"] == "cifar10/test") & (raw["train_split"] == "cifar10/train")]
    cand = fused.candidates(cross, fm)
    t0 = time.perf_counter()
    n_new = verify.compute_evidence(ws, cand)
    t_verify = time.perf_counter() - t0
    t0 = time.perf_counter()
    fused.verify_pairs(ws, cand, fm)  # the second model's vectors (the evidence is there now)
    t_second = time.perf_counter() - t0
    scored = fused.with_fused(ws, cross, fm)
    scored["test"] = scored["eval_item_id"].str.rsplit("/", n=1).str[1].astype(int)
    listed = pd.read_csv(Path(args.data) / "duplicates_cifar10.csv")
    raw_soft = ws.thresholds(score="similarity").soft
    best_f = scored.sort_values("fused", ascending=False).drop_duplicates("test").set_index("test")
    best_r = scored.sort_values("raw_similarity", ascending=False).drop_duplicates("test").set_index("test")
    ids = listed["TestID"].unique()
    flag_f = best_f[best_f["fused"] >= fm.soft]
    flag_r = best_r[best_r["raw_similarity"] >= raw_soft]
    result = {
        "candidate_threshold": fm.candidate, "fused_soft": fm.soft, "fused_hard": fm.hard, "raw_soft": raw_soft,
        "candidate_pairs": int(len(cand)), "pairs_verified_now": int(n_new),
        "verify_pairs_per_s": round(n_new / t_verify, 1) if n_new else None, "fit_seconds": round(t_fit, 1),
        "second_model_seconds": round(t_second, 1),
        "listed_test_images": int(len(ids)),
        "listed_flagged_raw": float(np.isin(ids, flag_r.index).mean()),
        "listed_flagged_fused": float(np.isin(ids, flag_f.index).mean()),
        "flags_raw": int(len(flag_r)), "flags_fused": int(len(flag_f)),
        "flags_fused_unlisted": int((~flag_f.index.isin(ids)).sum()),
        "listed_missed_by_fused": [int(i) for i in ids if i not in flag_f.index],
        "judged_decisions": len(decided),
        "model": fm.meta,
    }
    rng = np.random.default_rng(0)
    lab = lambda r: f"r{r.raw_similarity:.2f} f{r.fused:.2f}"  # noqa: E731
    fresh = lambda f: f[[(e, t) not in decided for e, t in zip(f["eval_item_id"], f["train_item_id"])]]  # noqa: E731
    unlisted_flags = fresh(flag_f[~flag_f.index.isin(ids)]).reset_index()
    a = unlisted_flags.iloc[np.sort(rng.choice(len(unlisted_flags), min(args.n, len(unlisted_flags)), replace=False))]
    below = fresh(best_f[(best_f["fused"] < fm.soft) & (best_f["verified"]) & ~best_f.index.isin(ids)])
    below = below.sort_values("raw_similarity", ascending=False).drop_duplicates().reset_index()
    b = below.iloc[np.sort(rng.choice(len(below), min(args.n, len(below)), replace=False))]
    # what each sample is drawn from: bench/verify_frontier.py weighs the judged samples by these
    result["sample_pools"] = {"flags": int(len(unlisted_flags)), "below": int(len(below))}
    print(json.dumps(result, indent=2))
    (out / "cifair.json").write_text(json.dumps(result, indent=2))
    for name, df in (("flags", a), ("below", b)):
        df = df.reset_index(drop=True)
        sheet(ws, df, out / f"sample-{name}.png", lab)
        df.assign(n=df.index)[["n", "eval_item_id", "train_item_id", "raw_similarity", "fused"]].to_csv(
            out / f"sample-{name}.csv", index=False)
        print(f"{len(df)} pairs -> {out / f'sample-{name}.png'} (pairs in sample-{name}.csv)")


if __name__ == "__main__":
    main()
