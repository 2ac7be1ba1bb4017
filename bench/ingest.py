"""Ingest speed on the real data: items per second for CIFAR-10 (HF Parquet) and hymenoptera (folder).

    python bench/ingest.py
Runs `leakcore add` as a user would (cold, into a fresh workspace), then again (warm: nothing changed).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def main() -> None:
    for name, source, n in (("cifar10", DATA / "cifar10" / "cifar10.parquet", 60_000), ("hymenoptera", DATA / "hymenoptera", 397)):
        ws = ROOT / ".bench" / f"ingest-{name}"
        shutil.rmtree(ws, ignore_errors=True)
        cmd = [sys.executable, "-m", "leakcore.cli", "add", str(ws), "--dataset", name, "--source", str(source)]
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
        print(f"{name}: {n} items, cold {times[0]:.1f}s ({n / times[0]:,.0f} items/s), "
              f"warm re-add {times[1]:.1f}s ({n / times[1]:,.0f} items/s)")


if __name__ == "__main__":
    main()
