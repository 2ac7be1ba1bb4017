"""Draw flagged pairs side by side into one PNG, so a person can look at the images behind a number.

    python bench/contact_sheet.py WORKSPACE OUT.png [--band 0.60 0.65] [--unlisted CSV] [--n 40] [--scale 3]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from leakcore import catalog, images, leakage  # noqa: E402
from leakcore.project import Workspace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workspace")
    ap.add_argument("out")
    ap.add_argument("--band", nargs=2, type=float, default=(0.0, 1.01))
    ap.add_argument("--unlisted", help="ciFAIR CSV: show only test images it does not list")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--scale", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ws = Workspace.open(args.workspace)
    pairs = leakage.load_pairs(ws)
    pairs = pairs[~pairs["within"]].sort_values("similarity", ascending=False).drop_duplicates("eval_item_id")
    pairs = pairs[(pairs["similarity"] >= args.band[0]) & (pairs["similarity"] < args.band[1])]
    if args.unlisted:
        listed = set(pd.read_csv(args.unlisted)["TestID"].astype(str))
        pairs = pairs[~pairs["eval_item_id"].str.rsplit("/", n=1).str[1].isin(listed)]
    if len(pairs) > args.n:
        pairs = pairs.sample(args.n, random_state=args.seed).sort_values("similarity", ascending=False)
    items = ws.items().set_index("item_id")
    cell = 32 * args.scale
    cols = 4
    rows = (len(pairs) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * (2 * cell + 30), rows * (cell + 18)), "white")
    draw = ImageDraw.Draw(sheet)
    for n, r in enumerate(pairs.itertuples()):
        x, y = (n % cols) * (2 * cell + 30), (n // cols) * (cell + 18)
        for j, iid in enumerate((r.eval_item_id, r.train_item_id)):
            it = items.loc[iid]
            img = images.decode(catalog.read_bytes(it["uri"], int(it["row"]))).image
            sheet.paste(img.resize((cell, cell), Image.Resampling.NEAREST), (x + j * (cell + 4), y))
        label = f"{r.similarity:.3f} {r.eval_item_id.rsplit('/', 1)[1]}~{r.train_item_id.rsplit('/', 1)[1]}"
        draw.text((x, y + cell + 2), label, fill="black")
    sheet.save(args.out)
    print(f"{len(pairs)} pairs -> {args.out}")


if __name__ == "__main__":
    main()
