"""Tiles of smooth pictures, as the demo's: does the fused score take another part of one smooth picture for a copy?

    python bench/verify_smooth_tiles.py build .bench/smooth-tiles            # the images and the answer key
    leakcore add .bench/smooth-tiles/ws --dataset tiles --source .bench/smooth-tiles/data && leakcore scan .bench/smooth-tiles/ws
    python bench/verify_smooth_tiles.py measure .bench/smooth-tiles [--sheets DIR]

The demo (`leakcore demo`) cuts 26 pictures into 3 x 3 tiles: six of each picture's tiles train, the other three
test, and planted copies of a training tile test too. Its smooth pictures (a clock's grey background, a horse's white
one, a retina's rim, a colour wheel) had other tiles decided as one photograph by the pixel rule, so that rule's third
part (verify.TWIN_CROP_AGREES) was set on the demo. This set holds pictures the demo does not use, none looked at
while setting it: scikit-image's binary blobs, checkerboard, logo, Shepp-Logan phantom, text and microaneurysms, six
made smooth ones (gradients, blurred noise, a sky with one small object), and six photos of ../shared/data/cats_and_dogs
(when present), each cut the demo's way, with one planted copy of a training tile each (the demo's six kinds in turn).

`measure` reads the scanned workspace with the score in force: planted copies flagged with their training tile, and
every other flagged test image (another tile of the same picture is not a leak: the tiles do not overlap).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leakcore.demo import PLANTED_KINDS, TILE, _planted, _tiles  # noqa: E402

CATS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cats_and_dogs"
SKIMAGE = ["binary_blobs", "checkerboard", "logo", "shepp_logan_phantom", "text", "microaneurysms"]


def _skimage(name: str) -> Image.Image:
    import skimage.data

    arr = np.asarray(getattr(skimage.data, name)())
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype != np.uint8:
        arr = (255 * (arr - arr.min()) / max(float(np.ptp(arr)), 1e-9)).astype(np.uint8)
    img = Image.fromarray(arr)
    return (img.convert("RGBA").convert("RGB") if img.mode in ("RGBA", "P", "LA") else img.convert("RGB")).resize(
        (480, round(480 * img.height / img.width)), Image.Resampling.LANCZOS)


def _made(kind: int, rng) -> Image.Image:
    """Six smooth pictures of 480 x 480: two gradients, blurred noise at two scales, a sky with one small object, and
    a radial gradient."""
    yy, xx = np.mgrid[0:480, 0:480] / 480.0
    if kind == 0:
        rgb = np.stack([xx, yy, 1 - xx], -1)
    elif kind == 1:
        rgb = np.stack([0.2 + 0.6 * yy, 0.3 + 0.2 * xx, 0.5 + 0.0 * xx], -1)
    elif kind in (2, 3):
        noise = Image.fromarray(rng.integers(0, 256, (480, 480), dtype=np.uint8)).filter(
            ImageFilter.GaussianBlur(12 if kind == 2 else 30))
        g = np.asarray(noise, float) / 255.0
        g = (g - g.min()) / max(float(np.ptp(g)), 1e-9)
        rgb = np.stack([g, 0.8 * g, 0.6 + 0.2 * g], -1)
    elif kind == 4:
        rgb = np.stack([0.35 + 0.2 * yy, 0.55 + 0.2 * yy, 0.85 + 0.1 * yy], -1)
        img = Image.fromarray((255 * np.clip(rgb, 0, 1)).astype(np.uint8))
        ImageDraw.Draw(img).ellipse((300, 330, 340, 350), fill=(40, 40, 40))
        return img
    else:
        r = np.hypot(xx - 0.5, yy - 0.5)
        rgb = np.stack([1 - r, 0.5 + 0.0 * r, r], -1)
    return Image.fromarray((255 * np.clip(rgb, 0, 1)).astype(np.uint8))


def build(out: Path) -> None:
    rng = np.random.default_rng(7)
    sources = [(name, _skimage(name)) for name in SKIMAGE] + [(f"made{k}", _made(k, rng)) for k in range(6)]
    if CATS.is_dir():
        photos = sorted(CATS.rglob("*.jpg"))
        for f in rng.choice(len(photos), 6, replace=False):
            img = Image.open(photos[int(f)]).convert("RGB")
            sources.append((f"photo_{photos[int(f)].stem}", img.resize((480, round(480 * img.height / img.width)))))
    data, truth = out / "data", []
    for s, (name, img) in enumerate(sources):
        tiles = _tiles(img)
        train, test = tiles[:6], tiles[6:]
        for i, t in enumerate(train):
            (data / "train" / name).mkdir(parents=True, exist_ok=True)
            t.save(data / "train" / name / f"{name}_{i}.jpg", quality=92)
        (data / "test" / name).mkdir(parents=True, exist_ok=True)
        for i, t in enumerate(test):
            t.save(data / "test" / name / f"{name}_fresh_{i}.jpg", quality=92)
        kind, j = PLANTED_KINDS[s % len(PLANTED_KINDS)], int(rng.integers(0, len(train)))
        _planted(kind, train[j]).save(data / "test" / name / f"{name}_leak.jpg", quality=92)
        truth.append({"eval_file": f"{name}_leak.jpg", "train_file": f"{name}_{j}.jpg", "kind": kind})
    pd.DataFrame(truth).to_csv(out / "planted.csv", index=False)
    print(f"{len(sources)} pictures, {len(truth)} planted copies, tiles of {TILE} px -> {data}")


def measure(out: Path, sheets: str | None) -> None:
    from leakcore import leakage
    from leakcore.api import Project

    project = Project.open(out / "ws")
    ws = project.workspace
    truth = pd.read_csv(out / "planted.csv")
    pairs = leakage.load_pairs(ws)
    hard, soft = project.scores.thresholds()
    name = lambda s: s.str.rsplit("/", n=1).str[-1]  # noqa: E731
    flagged = pairs[(pairs["score"] >= soft)].assign(e=lambda d: name(d["eval_item_id"]), t=lambda d: name(d["train_item_id"]))
    keys = set(zip(flagged["e"], flagged["t"]))
    found = [(r.eval_file, r.train_file) in keys for r in truth.itertuples()]
    best = flagged.sort_values("score", ascending=False).drop_duplicates("e")
    other = best[~best["e"].isin(truth["eval_file"])]
    print(f"score {ws.score}: soft {soft:.4f}; planted copies flagged with their tile {sum(found)}/{len(truth)}; "
          f"other test images flagged {len(other)}")
    missed = truth[~np.array(found)]
    if len(missed):
        print("missed:", ", ".join(f"{r.eval_file} ({r.kind})" for r in missed.itertuples()))
    for r in other.itertuples():
        print(f"  other flag: {r.e} ~ {r.t} score {r.score:.4f} raw {r.similarity:.4f}")
    if sheets and len(other):  # the pairs, side by side, as the planted-photo bench draws them
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from verify_lookalikes import sheets as draw

        print("sheets:", *draw(out / "ws", other.assign(fused=other["score"], raw_similarity=other["similarity"]),
                               Path(sheets)))

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("out")
    m = sub.add_parser("measure")
    m.add_argument("out")
    m.add_argument("--sheets", help="a folder for contact sheets of the other flags")
    args = ap.parse_args()
    if args.cmd == "build":
        build(Path(args.out))
    else:
        measure(Path(args.out), args.sheets)


if __name__ == "__main__":
    main()
