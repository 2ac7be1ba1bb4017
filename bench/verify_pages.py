"""Contact sheets to judge a verification sample by eye, a page of 20 pairs at a time (4x, every pixel kept).

    python bench/verify_pages.py bench/verify/v2/sample-flags.csv   # -> sample-flags-p1.png ... beside the CSV

Each cell: the test image (left) and its training match (right), numbered as in the CSV; the judgments go in
judged-<name>.csv beside it (n, same_photo: yes / no / unsure).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from leakcore.project import Workspace  # noqa: E402
from verify_cifair import sheet  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("sample", help="a sample-*.csv written by bench/verify_cifair.py")
    ap.add_argument("--workspace", default=str(ROOT / ".bench" / "cifar10-224"))
    ap.add_argument("--per-page", type=int, default=20)
    args = ap.parse_args()
    ws = Workspace.open(args.workspace)
    sample = Path(args.sample)
    df = pd.read_csv(sample)
    for page, start in enumerate(range(0, len(df), args.per_page), 1):
        part = df.iloc[start:start + args.per_page]
        out = sample.with_name(f"{sample.stem}-p{page}.png")
        numbers = iter(part["n"])
        sheet(ws, part, out, lambda r: f"{next(numbers)}: r{r.raw_similarity:.2f} f{r.fused:.2f}", cols=4, scale=4)
        print(out)


if __name__ == "__main__":
    main()
