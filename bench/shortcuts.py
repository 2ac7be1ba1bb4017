"""The shortcut audit on real photos with planted shortcuts, and on CIFAR-10.

    python bench/shortcuts.py [--data ../shared/data] [--out .bench/shortcuts] [--cifar .bench/cifar10-224]

Variants of hymenoptera (train and val): untouched; a small letter "R" in the top-left corner of 80% of the ants;
the bees re-saved at JPEG quality 30 (ants at 95); the bees at half the resolution. Each should be found and
located (the right feature, the right corner); the untouched set should show nothing (chance, p > 0.05).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from leakcore import shortcuts  # noqa: E402
from leakcore.api import Project  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def make_variant(src: Path, dest: Path, kind: str, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    if dest.exists():
        shutil.rmtree(dest)
    for f in sorted(src.rglob("*.jpg")):
        rel = f.relative_to(src)
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        label = rel.parts[1]
        if kind == "untouched":
            shutil.copy2(f, out)
            continue
        img = Image.open(f).convert("RGB")
        quality = 95
        if kind == "marker" and label == "ants" and rng.random() < 0.8:
            draw = ImageDraw.Draw(img)
            size = max(12, img.width // 16)
            font = ImageFont.load_default(size=size)
            draw.text((size // 3, size // 4), "R", fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))
        if kind == "jpeg" and label == "bees":
            quality = 30
        if kind == "resolution" and label == "bees":
            img = img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS)
        img.save(out, quality=quality)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / ".bench" / "shortcuts"))
    ap.add_argument("--cifar", help="a CIFAR-10 workspace to audit too")
    ap.add_argument("--results", default=str(ROOT / "bench" / "shortcuts"))
    ap.add_argument("--variants", nargs="+", default=["untouched", "marker", "jpeg", "resolution"])
    args = ap.parse_args()
    out, results = Path(args.out), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    report = {}
    for kind in args.variants:
        make_variant(Path(args.data) / "hymenoptera", out / kind, kind)
        ws_path = out / f"{kind}-ws"
        shutil.rmtree(ws_path, ignore_errors=True)
        ws = Project.create(ws_path)
        ws.add("photos", out / kind)
        t0 = time.perf_counter()
        a = ws.audits.shortcuts("photos")
        secs = time.perf_counter() - t0
        m = a.metadata
        report[kind] = {
            "seconds": round(secs, 1), "metadata": {"balanced_accuracy": round(m.balanced_accuracy, 4),
                                                    "chance": m.chance, "p_value": round(m.p_value, 4),
                                                    "top_features": m.importance.head(3).round(4).to_dict("records"),
                                                    "transfer": m.transfer},
            "regions": a.regions.regions.round(4).to_dict("records"), "marker": a.regions.marker,
            "region_transfer": a.regions.transfer,
            "occlusion_strongest_cell": {c: int(np.argmax(v)) for c, v in a.regions.occlusion.items()},
            "verdict": a.verdict}
        print(f"== {kind} ({secs:.0f}s)")
        for line in a.verdict:
            print("  " + line)
        print("  regions: " + ", ".join(f"{r['region']} {r['balanced_accuracy']:.3f}" for r in report[kind]["regions"]))
        print("  strongest occlusion cell per class: " + str(report[kind]["occlusion_strongest_cell"]))
        if kind == "marker":
            from groups import sheet

            carriers = a.regions.carriers.head(8)
            sheet(ws, list(carriers["item_id"]), results / "marker-carriers.png", cell=120)
    if args.cifar:
        ws = Project.open(args.cifar)
        t0 = time.perf_counter()
        a = ws.audits.shortcuts("cifar10", region_items=1000)
        secs = time.perf_counter() - t0
        m = a.metadata
        report["cifar10"] = {"seconds": round(secs, 1), "timings": a.seconds,
                             "metadata": {"balanced_accuracy": round(m.balanced_accuracy, 4), "chance": m.chance,
                                          "p_value": round(m.p_value, 4), "top_features": m.importance.head(5).round(4).to_dict("records"),
                                          "transfer": m.transfer},
                             "regions": a.regions.regions.round(4).to_dict("records"), "marker": a.regions.marker,
                             "verdict": a.verdict}
        print(f"== cifar10 ({secs:.0f}s)")
        for line in a.verdict:
            print("  " + line)
        print("  regions: " + ", ".join(f"{r['region']} {r['balanced_accuracy']:.3f}" for r in report["cifar10"]["regions"]))
    (results / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {results / 'results.json'}")


if __name__ == "__main__":
    main()
