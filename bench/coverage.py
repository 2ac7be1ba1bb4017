"""Coverage audit on real data: CIFAR-10 train vs test, vs a test subset with three classes removed, CIFAR-10 vs
the hymenoptera photos, and a photo set half degraded by upsampling from a quarter of its size.

    python bench/coverage.py [--workspace .bench/cifar10-224] [--data ../shared/data] [--out bench/coverage]

The workspace should hold CIFAR-10 already embedded (bench/cifair.py makes one); the photos are added and
embedded here. Prints the metrics with their intervals, the time of the 10,000 x 50,000 audit (embeddings
cached), and writes contact sheets of what the audit points at.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from leakcore import catalog, images  # noqa: E402
from leakcore.api import Project  # noqa: E402
from leakcore.coverage import ImageSet  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def sheet(ws, ids, captions, out: Path, cell: int = 96, cols: int = 8) -> None:
    """Thumbnails with captions in one PNG, to look at what the numbers point to."""
    items = ws.workspace.items().set_index("item_id")
    rows = (len(ids) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * cell, rows * (cell + 14)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (item_id, cap) in enumerate(zip(ids, captions)):
        it = items.loc[item_id]
        img = images.decode(catalog.read_bytes(it["uri"], int(it["row"]))).image
        img = img.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST if img.width < cell else Image.Resampling.LANCZOS)
        x, y = (i % cols) * cell, (i // cols) * (cell + 14)
        canvas.paste(img, (x, y))
        draw.text((x + 2, y + cell), cap[:18], fill="black")
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)


def degraded_photos(src: Path, dest: Path, seed: int = 0) -> set[str]:
    """hymenoptera val copied as a new dataset, half of the photos upsampled from a quarter of their size."""
    rng = np.random.default_rng(seed)
    degraded = set()
    for f in sorted((src / "val").rglob("*.jpg")):
        rel = f.relative_to(src / "val")
        out = dest / "mixed" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        img = Image.open(f).convert("RGB")
        if rng.random() < 0.5:
            small = img.resize((max(1, img.width // 4), max(1, img.height // 4)), Image.Resampling.BOX)
            img = small.resize(img.size, Image.Resampling.BICUBIC)
            degraded.add(rel.as_posix())
        img.save(out, quality=95)
    return degraded


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", default=str(ROOT / ".bench" / "cifar10-224"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "coverage"))
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    ws = Project.open(args.workspace)
    data, out = Path(args.data), Path(args.out)
    report = {}
    if "hymenoptera" not in ws.workspace.datasets:
        ws.add("hymenoptera", data / "hymenoptera")

    def run(name, a, b):
        t0 = time.perf_counter()
        r = ws.audits.coverage(a, b, bootstrap=args.bootstrap)
        secs = time.perf_counter() - t0
        m = r.metrics.set_index("metric")
        report[name] = {"a": str(a), "b": str(b), "seconds": round(secs, 1), **r.settings,
                        **{k: [round(m.loc[k, "value"], 4), round(m.loc[k, "low"], 4), round(m.loc[k, "high"], 4)]
                           for k in m.index}}
        print(f"{name}: A={a} ({r.settings['a_images']}) B={b} ({r.settings['b_images']}) in {secs:.1f}s")
        for k in m.index:
            print(f"   {k:<10} {m.loc[k, 'value']:.3f} [{m.loc[k, 'low']:.3f}, {m.loc[k, 'high']:.3f}]")
        return r

    run("cifar-train-vs-test", ImageSet("cifar10/train"), ImageSet("cifar10/test"))  # warm-up embeds nothing new
    full = run("cifar-train-vs-test", ImageSet("cifar10/train"), ImageSet("cifar10/test"))
    far = full.b_scores.sort_values("realism").head(32)
    sheet(ws, list(far["item_id"]), [f"{r:.2f}" for r in far["realism"]], out / "cifar-test-least-like-train.png")
    run("cifar-test-vs-train", ImageSet("cifar10/test"), ImageSet("cifar10/train"))
    run("cifar-train-vs-test-without-cat-dog-horse", ImageSet("cifar10/train"),
        ImageSet("cifar10/test", "label not in ['cat', 'dog', 'horse']"))
    run("cifar-vs-photos", ImageSet("cifar10/test"), ImageSet("hymenoptera"))
    photos = run("photos-vs-cifar", ImageSet("hymenoptera"), ImageSet("cifar10/test"))
    near = photos.b_scores.sort_values("realism", ascending=False).head(16)
    sheet(ws, list(near["item_id"]), [f"{r:.2f}" for r in near["realism"]], out / "cifar-test-most-like-photos.png")

    mixed_root = Path(args.workspace) / "degraded-photos"
    degraded = degraded_photos(data / "hymenoptera", mixed_root)
    ws.add("degraded", mixed_root, roles={"mixed": "eval"})
    t0 = time.perf_counter()
    spec = ws.audits.spectra(ImageSet("hymenoptera"), ImageSet("degraded"))
    secs = time.perf_counter() - t0
    b = spec.b_scores.assign(degraded=[i.split("/", 2)[2] in degraded for i in spec.b_scores["item_id"]])
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(b["degraded"], b["spectral_score"])
    auc_high = roc_auc_score(b["degraded"], -b["high_band"])
    top = b.sort_values("spectral_score", ascending=False)
    precision_at = float(top.head(int(b["degraded"].sum()))["degraded"].mean())
    report["spectra-degraded-photos"] = {"images": int(len(b)), "degraded": int(b["degraded"].sum()),
                                         "auc_spectral_score": round(auc, 4), "auc_high_band": round(auc_high, 4),
                                         "precision_at_n_degraded": round(precision_at, 4), "seconds": round(secs, 1),
                                         **spec.summary}
    print(f"spectra: {len(b)} photos, {int(b['degraded'].sum())} upsampled from 1/4 size: AUC {auc:.3f} (score), "
          f"{auc_high:.3f} (high band); precision in the top {int(b['degraded'].sum())}: {precision_at:.3f}; {secs:.1f}s")
    sheet(ws, list(top["item_id"].head(24)), [("UP " if d else "ok ") + f"{s:.2f}" for d, s in
                                              zip(top["degraded"].head(24), top["spectral_score"].head(24))],
          out / "spectral-outliers.png", cell=128, cols=6)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out / 'results.json'} and contact sheets")


if __name__ == "__main__":
    main()
