"""Two different photos under one overlay against real copies: which of them the local matches decide, by the
two-part rule (inliers and ratio) and by the rule of evidence version 12 (the share of the overlap's textured tiles
that agree under the matches' map, `verify.away_agreement`). --seed 11 is the draw the rule was set on; other
seeds are fresh draws to confirm it.

    python bench/verify_overlay_pairs.py [--pairs 150] [--seed 11] [--sheets bench/verify/overlay]

From hymenoptera and cats_and_dogs (../shared/data), fresh draws (`--seed`):
- overlay pairs: two different photos (half of them of the same label) under the same overlay, the same bold
  two-line banner text or the same diagonal watermark (`verify_lookalikes.py`'s edits, drawn with one seed for both);
- real copies: a photo against its copy under each of `verify_lookalikes.py`'s edits (banner, watermark, strong
  crop, recompression, grading, crop graded and recompressed).
Prints, per kind, the pairs the two-part rule decides and those the full rule decides; `--sheets` writes contact
sheets of the overlay pairs still decided and of the copies the full rule no longer decides.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from leakcore import verify  # noqa: E402
from leakcore.scores.fused import MATCH_RULE, decided_by_matches  # noqa: E402
from verify_lookalikes import EDITS, _banner, _watermark  # noqa: E402

SETS = {"hymenoptera": ROOT.parent / "shared" / "data" / "hymenoptera",
        "cats_and_dogs": ROOT.parent / "shared" / "data" / "cats_and_dogs"}


def _photos(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def _open(p: Path) -> Image.Image:
    img = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
    img.thumbnail((verify.ORB_SIDE, verify.ORB_SIDE))
    return img


def _sheet(rows: pd.DataFrame, images: dict, path: Path) -> None:
    from PIL import ImageDraw

    cell = 200
    sheet = Image.new("RGB", (2 * cell, max(1, len(rows)) * (cell + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (_, r) in enumerate(rows.iterrows()):
        for k, img in enumerate(images[r["key"]]):
            t = img.copy()
            t.thumbnail((cell, cell))
            sheet.paste(t, (k * cell, n * (cell + 14) + 14))
        draw.text((2, n * (cell + 14)), f"{r['kind']} {r['edit']} inl {np.expm1(r['orb_inliers']):.0f} "
                                        f"tiles agree {r['tiles_agree']:.2f} of {r['tiles_textured']:.0f}", fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path.with_suffix(".jpg"), quality=80)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=150, help="overlay pairs and copies per set")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--sheets")
    args = ap.parse_args()
    rows, images = [], {}
    for name, root in SETS.items():
        files = _photos(root)
        rng = np.random.default_rng(args.seed)
        labels = [p.parent.name for p in files]
        for n in range(args.pairs):
            a = int(rng.integers(len(files)))
            same_label = [i for i in range(len(files)) if labels[i] == labels[a] and i != a]
            b = int(rng.choice(same_label)) if n % 2 == 0 and same_label else int(rng.integers(len(files)))
            if b == a:
                continue
            kind_edit = ("banner", _banner) if n % 3 else ("watermark", _watermark)
            seed = int(rng.integers(1 << 31))
            ia = kind_edit[1](_open(files[a]), np.random.default_rng(seed))
            ib = kind_edit[1](_open(files[b]), np.random.default_rng(seed))
            key = f"{name}-overlay-{n}"
            images[key] = (ia, ib)
            rows.append({"set": name, "kind": "overlay", "edit": kind_edit[0], "key": key})
        for n in range(args.pairs):
            a = int(rng.integers(len(files)))
            edit = list(EDITS)[n % len(EDITS)]
            original = _open(files[a])
            copy = EDITS[edit](original, rng)
            key = f"{name}-copy-{n}"
            images[key] = (copy, original)
            rows.append({"set": name, "kind": "copy", "edit": edit, "key": key})
    frame = pd.DataFrame(rows)
    ev = verify.evidence([images[k][0] for k in frame["key"]], [images[k][1] for k in frame["key"]])
    frame = pd.concat([frame, ev], axis=1)
    frame["two_part"] = decided_by_matches(frame, MATCH_RULE[:2])
    frame["three_part"] = decided_by_matches(frame, MATCH_RULE[:3])
    frame["decided"] = decided_by_matches(frame, MATCH_RULE)
    summary = frame.groupby(["set", "kind"]).agg(pairs=("key", "size"), two_part=("two_part", "sum"),
                                                 three_part=("three_part", "sum"), decided=("decided", "sum"))
    print(summary.to_string())
    over = frame[(frame["kind"] == "overlay") & frame["two_part"]]
    print(f"overlay pairs the matches decide by two parts: {len(over)}, tiles agreeing at most "
          f"{over['tiles_agree'].max():.3f} (NaN: {int(over['tiles_agree'].isna().sum())}); still decided: "
          f"{int(over['decided'].sum())}")
    copies = frame[(frame["kind"] == "copy") & frame["two_part"]]
    lost = copies[~copies["decided"]]
    print(f"copies decided by two parts: {len(copies)}; no longer decided: {len(lost)}")
    if len(lost):
        print(lost[["set", "edit", "orb_inliers", "tiles_agree", "tiles_textured"]].to_string())
    print(f"copies: tiles agreeing at least {copies['tiles_agree'].min():.3f} (NaN: "
          f"{int(copies['tiles_agree'].isna().sum())}); lowest five {np.sort(copies['tiles_agree'].dropna())[:5].round(3)}")
    if args.sheets:
        _sheet(over[over["decided"]], images, Path(args.sheets) / "overlay-still-decided.png")
        _sheet(lost, images, Path(args.sheets) / "copies-lost.png")
        _sheet(over.sort_values("tiles_agree", ascending=False).head(12), images,
               Path(args.sheets) / "overlay-nearest.png")
        frame.drop(columns=["key"]).to_csv(Path(args.sheets) / "pairs.csv", index=False)


if __name__ == "__main__":
    main()
