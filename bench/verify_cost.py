"""What the verification stage adds to a CIFAR-10 scan: the whole scan from scratch without it and with it, in
one run (the goal: at most 1.3x).

    python bench/verify_cost.py [--reference .bench/cifar10-224] [--data ../shared/data/cifar10]
    python bench/verify_cost.py --fit          # a user's first scan: the scan with verification fits its model

Both scans start from an empty workspace (sscd-distilled at 224 px with mirrored queries, the setting of
bench/verify_cifair.py) through the CLI. By default the scan with verification gets the fused model the
reference workspace fitted: the fit is one-off per workspace and encoder (timed by bench/verify_cifair.py
--refit), the verification (pixel evidence plus the second model's vectors, both from an empty cache) is paid on
every new collection; the test images the fused score flags must equal the reference workspace's count (same
model, same pairs). With `--fit` no reference is needed: the scan with verification fits its own model, as a
user's first `scan --verify` does, and its cost includes the fit. Prints both times (wall and CPU), the ratio,
the candidate pairs verified and the test images the fused score flags.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leakcore import fused, leakage, verify  # noqa: E402
from leakcore.project import Workspace  # noqa: E402


def _child_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def flagged_test_images(ws, fm) -> int:
    pairs = leakage.load_pairs(ws, raw=True)
    cross = pairs[(pairs["eval_split"] == "cifar10/test") & (pairs["train_split"] == "cifar10/train")]
    scored = fused.with_fused(ws, cross, fm)
    return int(scored.loc[scored["fused"] >= fm.soft, "eval_item_id"].nunique())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference", default=str(ROOT / ".bench" / "cifar10-224"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10"))
    ap.add_argument("--fit", action="store_true", help="the scan with verification fits its own model (from empty)")
    args = ap.parse_args()
    ref = fm = None
    if not args.fit:
        ref = Workspace.open(args.reference)
        fm = fused.load(ref, "sscd-distilled")
        if fm is None:
            sys.exit(f"{args.reference} has no fitted fused model: run bench/verify_cifair.py --refit first")
    cli = [sys.executable, "-m", "leakcore.cli"]
    seconds, cpu, dirs = {}, {}, {}
    for mode in ("without", "with"):
        ws_dir = ROOT / ".bench" / f"verify-cost-{mode}"
        shutil.rmtree(ws_dir, ignore_errors=True)
        subprocess.run(cli + ["add", str(ws_dir), "--dataset", "cifar10", "--source",
                              str(Path(args.data) / "cifar10.parquet")], check=True, stdout=subprocess.DEVNULL)
        scan = cli + ["scan", str(ws_dir), "--encoder", "sscd-distilled", "--input-size", "224", "--flip-queries"]
        if mode == "with":
            if fm is not None:
                fused.save(Workspace.open(ws_dir), fm)  # the reference's model: the scan plans no fit
            scan += ["--verify"]
        else:
            scan += ["--no-verify"]
        t0, c0 = time.perf_counter(), _child_cpu()
        subprocess.run(scan, check=True, stdout=subprocess.DEVNULL)
        seconds[mode], dirs[mode] = time.perf_counter() - t0, ws_dir
        cpu[mode] = _child_cpu() - c0
        print(f"scan {mode} verification: {seconds[mode]:.1f} s ({cpu[mode]:.1f} s of CPU)", flush=True)
    ws = Workspace.open(dirs["with"])
    used = fm or fused.load(ws, "sscd-distilled")
    result = {
        "fit_included": bool(args.fit),
        "seconds_without": round(seconds["without"], 1), "seconds_with": round(seconds["with"], 1),
        "ratio": round(seconds["with"] / seconds["without"], 3),
        "cpu_without": round(cpu["without"], 1), "cpu_with": round(cpu["with"], 1),
        "cpu_ratio": round(cpu["with"] / cpu["without"], 3),
        "pairs_verified": int(len(verify.EvidenceStore(ws).frame())),
        "flagged_test_images": flagged_test_images(ws, used),
        "model": used.key,
    }
    if ref is not None:
        result["flagged_in_reference"] = flagged_test_images(ref, fm)
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "verify" / ("cost-fit.json" if args.fit else "cost.json")
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
