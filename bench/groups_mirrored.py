"""Mirrored frames of one photo across splits: does a group link them (local features are not mirror-invariant)?

    python bench/groups_mirrored.py [--data ../shared/data/cats_and_dogs] [--n 40] [--seed 0] [--out .bench/groups_mirrored]

From a collection's training photos: `n` photos in train and, for each, a mirrored crop (60-75% of each side, at a
random place) in test, beside `n` other photos of the collection in test (unrelated). Scans with --grouping and
prints how many mirrored crops are in a group reaching their photo, and how many unrelated test photos are in a
group reaching training.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leakcore import grouping  # noqa: E402
from leakcore.api import Project  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cats_and_dogs"))
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / ".bench" / "groups_mirrored"))
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    photos = sorted(p for p in Path(args.data).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    pick = rng.choice(len(photos), size=2 * args.n, replace=False)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    (out / "data" / "train").mkdir(parents=True)
    (out / "data" / "test").mkdir(parents=True)
    for k, i in enumerate(pick[:args.n]):
        img = Image.open(photos[i]).convert("RGB")
        img.save(out / "data" / "train" / f"photo{k:03d}.jpg", quality=92)
        f = rng.uniform(0.6, 0.75)
        w, h = img.size
        cw, ch = int(w * f), int(h * f)
        x, y = int(rng.uniform(0, w - cw)), int(rng.uniform(0, h - ch))
        img.crop((x, y, x + cw, y + ch)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
            out / "data" / "test" / f"mirrored{k:03d}.jpg", quality=92)
    for k, i in enumerate(pick[args.n:]):
        Image.open(photos[i]).convert("RGB").save(out / "data" / "test" / f"unrelated{k:03d}.jpg", quality=92)
    project = Project.create(out / "ws", encoder="sscd-distilled")
    project.add("m", out / "data")
    project.scan(grouping=True, verify=False)
    reach = grouping.group_reach(project.groups())
    reached = set(reach["eval_item_id"])
    found = sum(f"m/test/mirrored{k:03d}.jpg" in reached for k in range(args.n))
    unrelated = sum(f"m/test/unrelated{k:03d}.jpg" in reached for k in range(args.n))
    result = {"n": args.n, "seed": args.seed, "mirrored_crops_in_a_group_reaching_training": found,
              "unrelated_in_a_group_reaching_training": unrelated}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
