"""The fused score against a photo collection's own look-alikes: planted copies under edits the fitting suite does
not contain, beside the collection's natural look-alikes, and what `scan --verify` costs over `scan`.

    python bench/verify_lookalikes.py build   --data ../shared/data/hymenoptera --out .bench/lookalikes-hym [--planted 120]
    python bench/verify_lookalikes.py cost    .bench/lookalikes-hym          # scan and scan --verify, from empty
    python bench/verify_lookalikes.py enlarge .bench/lookalikes-hym .bench/lookalikes-hym-4k   # at a camera's size
    python bench/verify_lookalikes.py measure .bench/lookalikes-hym --sheets bench/verify/photos3/hymenoptera

`build` writes a folder dataset under OUT/data: `train/` is the collection's training photos (copies), `val/` its
evaluation photos (copies: the natural look-alikes) plus planted copies of training photos, named
`planted-<n>-<edit>.jpg`, with `planted.csv` (eval file, training file it was made from, edit). The edits are
not the suite's: a bold two-line banner, a diagonal text watermark, a strong crop kept at its own size (45-60%
of each side), a resize-and-recompress chain (half size at quality 18, then quality 35), colour grading
(warm or teal-orange curves, saturation, vignette), and a crop with grading and recompression together.

`cost` scans two empty workspaces on that folder through the CLI (sscd-distilled, mirrored queries), one without
and one with `--verify`, `--repeat` times (3), alternating which goes first; the ratio of the medians is the goal
(<= 1.5x on photos). `--defaults` scans with the workspace's defaults instead (sscd-distilled at its own input size,
no mirrored queries), as a user's first `leakcore scan` does; it writes cost-defaults.json. Wall time and the scans' CPU time are both reported: on 2 cores shared with other jobs the wall
time of one scan varied 2x between runs, and one run's ratio between 1.4x and 2.3x.

`measure` reads the workspace scanned with verification: per eval image its best fused score against the
training split; flagged at the fused soft threshold. Prints planted recall and the non-planted flags, writes
`flags.csv` (every non-planted flag with its pair) and contact sheets of all of them (small PNGs, 12 pairs
each) for judging by eye; `--judged CSV` (eval file, verdict: leak / unsure / not) prints their precision.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EVAL_DIRS = ("val", "validation", "test")


# ---- edits the suite does not contain -------------------------------------------------------------------------
def _banner(img, rng):
    out = img.copy()
    d = ImageDraw.Draw(out)
    size = max(10, img.height // 9)
    font = ImageFont.load_default(size=size)
    words = ["WHEN YOU SEE IT", "MONDAY MOOD", "BEST FRIENDS", "SO CUTE!!", "LOOK AT THIS", "NATURE 2024"]
    for line, y in ((words[int(rng.integers(len(words)))], size // 3),
                    (words[int(rng.integers(len(words)))], img.height - size - size // 2)):
        d.text((img.width // 12, y), line, fill=(255, 230, 0), font=font, stroke_width=max(2, size // 6),
               stroke_fill="black")
    return out


def _watermark(img, rng):
    side = max(img.size)
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    font = ImageFont.load_default(size=max(10, side // 10))
    ImageDraw.Draw(layer).text((side // 10, side // 2 - side // 20), "(c) STOCKPIX", fill=(255, 255, 255, 110),
                               font=font)
    layer = layer.rotate(float(rng.uniform(25, 45)), resample=Image.Resampling.BICUBIC)
    layer = layer.crop(((side - img.width) // 2, (side - img.height) // 2,
                        (side - img.width) // 2 + img.width, (side - img.height) // 2 + img.height))
    out = img.convert("RGBA")
    out.alpha_composite(layer)
    return out.convert("RGB")


def _strong_crop(img, rng):
    keep = float(rng.uniform(0.45, 0.6))
    w, h = max(8, round(img.width * keep)), max(8, round(img.height * keep))
    x, y = int(rng.integers(0, img.width - w + 1)), int(rng.integers(0, img.height - h + 1))
    return img.crop((x, y, x + w, y + h))


def _jpeg(img, q):
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=q)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def _recompress(img, rng):
    small = img.resize((max(8, img.width // 2), max(8, img.height // 2)), Image.Resampling.BILINEAR)
    return _jpeg(_jpeg(small, 18), 35)


def _grade(img, rng):
    arr = np.asarray(img, np.float32) / 255
    if rng.random() < 0.5:  # warm
        curves = (lambda x: x ** 0.85, lambda x: x ** 0.97, lambda x: x ** 1.3)
    else:  # teal and orange
        curves = (lambda x: np.clip(1.15 * x ** 0.9, 0, 1), lambda x: x, lambda x: np.clip(0.2 + 0.8 * x ** 1.2, 0, 1))
    arr = np.stack([c(arr[..., i]) for i, c in enumerate(curves)], -1)
    yy, xx = np.mgrid[0:img.height, 0:img.width]
    r = np.hypot((yy - img.height / 2) / img.height, (xx - img.width / 2) / img.width)
    arr = arr * (1 - 0.6 * r[..., None] ** 2)
    out = Image.fromarray((np.clip(arr, 0, 1) * 255).astype(np.uint8))
    return ImageEnhance.Contrast(ImageEnhance.Color(out).enhance(float(rng.uniform(0.5, 1.6)))).enhance(1.2)


def _combo(img, rng):
    keep = 0.7
    w, h = round(img.width * keep), round(img.height * keep)
    x, y = int(rng.integers(0, img.width - w + 1)), int(rng.integers(0, img.height - h + 1))
    return _jpeg(_grade(img.crop((x, y, x + w, y + h)), rng), 30)


EDITS = {"banner": _banner, "watermark": _watermark, "crop": _strong_crop, "recompress": _recompress,
         "grade": _grade, "combo": _combo}


def _split_dirs(data: Path) -> tuple[Path, Path]:
    ev = next(data / d for d in EVAL_DIRS if (data / d).is_dir())
    return data / "train", ev


def build(args) -> None:
    data, out = Path(args.data), Path(args.out)
    train_dir, eval_dir = _split_dirs(data)
    root = out / "data"
    if root.exists():
        shutil.rmtree(root)
    rng = np.random.default_rng(args.seed)
    trains = sorted(p for p in train_dir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    evals = sorted(p for p in eval_dir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for p in trains:
        dst = root / "train" / p.relative_to(train_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst)
    for p in evals:
        dst = root / "val" / p.relative_to(eval_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dst)
    pick = rng.choice(len(trains), size=min(args.planted, len(trains)), replace=False)
    names = list(EDITS)
    rows = []
    for n, i in enumerate(pick):
        src = trains[int(i)]
        edit = names[n % len(names)]
        img = ImageOps.exif_transpose(Image.open(src)).convert("RGB")
        label = src.relative_to(train_dir).parts[0]
        dst = root / "val" / label / f"planted-{n:04d}-{edit}.jpg"
        EDITS[edit](img, rng).save(dst, quality=90)
        rows.append({"eval_file": dst.name, "train_file": src.name, "label": label, "edit": edit})
    pd.DataFrame(rows).to_csv(out / "planted.csv", index=False)
    print(f"{len(trains)} training photos, {len(evals)} eval photos, {len(rows)} planted copies -> {root}")


def enlarge(args) -> None:
    """OUT/data: SRC/data's photos at a camera's size (each resized so its longer side is --side px, Lanczos, JPEG
    quality 90), planted.csv copied: the same set as far as the evidence goes, at the decoding cost of camera photos
    (what `cost` then measures)."""
    src, out = Path(args.src) / "data", Path(args.out)
    root = out / "data"
    if root.exists():
        shutil.rmtree(root)
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    for p in files:
        img = ImageOps.exif_transpose(Image.open(p)).convert("RGB")
        scale = args.side / max(img.size)
        dst = root / p.relative_to(src)  # the same name (planted.csv names the files), JPEG whatever the suffix
        dst.parent.mkdir(parents=True, exist_ok=True)
        img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS).save(
            dst, "JPEG", quality=90)
    shutil.copyfile(Path(args.src) / "planted.csv", out / "planted.csv")
    print(f"{len(files)} photos at {args.side} px on the longer side -> {root}")


# ---- cost ------------------------------------------------------------------------------------------------------
def _child_cpu() -> float:
    """User plus system CPU seconds of the finished child processes (wall time on 2 shared cores is noisy)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cost(args) -> None:
    out = Path(args.out)
    cli = [sys.executable, "-m", "leakcore.cli"]
    seconds, cpu = {"without": [], "with": []}, {"without": [], "with": []}
    for rep in range(args.repeat):
        # the order alternates (without first, then with first) so that a slow stretch of the machine falls on both
        for mode in ("without", "with") if rep % 2 == 0 else ("with", "without"):
            ws_dir = out / f"ws-{mode}"
            shutil.rmtree(ws_dir, ignore_errors=True)
            subprocess.run(cli + ["add", str(ws_dir), "--dataset", "photos", "--source", str(out / "data")],
                           check=True, stdout=subprocess.DEVNULL)
            scan = cli + ["scan", str(ws_dir)] + ([] if args.defaults else ["--encoder", "sscd-distilled",
                                                                              "--flip-queries"])
            scan += ["--verify" if mode == "with" else "--no-verify"]
            t0, c0 = time.perf_counter(), _child_cpu()
            subprocess.run(scan, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL if args.quiet else None)
            seconds[mode].append(time.perf_counter() - t0)
            cpu[mode].append(_child_cpu() - c0)
            print(f"run {rep + 1}: scan {mode} verification: {seconds[mode][-1]:.1f} s ({cpu[mode][-1]:.1f} s of CPU)",
                  flush=True)
    med = {k: float(np.median(v)) for k, v in seconds.items()}
    med_cpu = {k: float(np.median(v)) for k, v in cpu.items()}
    result = {"repeats": args.repeat, "seconds_without": round(med["without"], 1), "seconds_with": round(med["with"], 1),
              "ratio": round(med["with"] / med["without"], 3),
              "cpu_without": round(med_cpu["without"], 1), "cpu_with": round(med_cpu["with"], 1),
              "cpu_ratio": round(med_cpu["with"] / med_cpu["without"], 3),
              "runs_seconds": {k: [round(x, 1) for x in v] for k, v in seconds.items()},
              "runs_cpu": {k: [round(x, 1) for x in v] for k, v in cpu.items()},
              "load_average": os.getloadavg()[0], "defaults": bool(args.defaults)}
    print(json.dumps(result))
    (out / ("cost-defaults.json" if args.defaults else "cost.json")).write_text(json.dumps(result, indent=1))


# ---- measure ---------------------------------------------------------------------------------------------------
def best_pairs(ws_dir: Path) -> tuple[pd.DataFrame, object]:
    from leakcore import fused, leakage
    from leakcore.project import Workspace

    ws = Workspace.open(ws_dir)
    fm = fused.load(ws)
    pairs = leakage.load_pairs(ws, raw=True)
    cross = pairs[~pairs["within"]]
    scored = fused.with_fused(ws, cross, fm)
    best = scored.sort_values("fused", ascending=False).drop_duplicates("eval_item_id")
    return best, fm


def sheets(ws_dir: Path, pairs: pd.DataFrame, out: Path, per: int = 12, cell: int = 150) -> list[Path]:
    from leakcore import catalog, images
    from leakcore.project import Workspace

    ws = Workspace.open(ws_dir)
    items = ws.items().drop_duplicates("item_id").set_index("item_id")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(0, len(pairs), per):
        chunk = pairs.iloc[s:s + per]
        cols = 3
        rows = (len(chunk) + cols - 1) // cols
        sheet = Image.new("RGB", (cols * (2 * cell + 16), rows * (cell + 16)), "white")
        draw = ImageDraw.Draw(sheet)
        for n, r in enumerate(chunk.itertuples()):
            x, y = (n % cols) * (2 * cell + 16), (n // cols) * (cell + 16)
            for j, iid in enumerate((r.eval_item_id, r.train_item_id)):
                it = items.loc[iid]
                img = images.decode(catalog.read_bytes(it["uri"], int(it["row"]))).image.convert("RGB")
                img.thumbnail((cell, cell))
                sheet.paste(img, (x + j * (cell + 2), y))
            draw.text((x, y + cell + 1), f"#{s + n} f={r.fused:.3f} raw={r.raw_similarity:.3f}", fill="black")
        path = out / f"sheet-{s // per:02d}.png"
        sheet.save(path, optimize=True)
        paths.append(path)
    return paths


def within_flags(ws_dir: Path, fm, planted: pd.DataFrame) -> pd.DataFrame:
    """The pairs within the evaluation split that the fused score flags, each with a verdict from the planted list:
    "one photograph" (a planted copy and its source's other copy), "not one photograph" (copies of two different
    photos), or "natural" (a pair with a collection photo in it: judge by eye)."""
    from leakcore import fused, leakage
    from leakcore.project import Workspace

    ws = Workspace.open(ws_dir)
    pairs = leakage.load_pairs(ws, raw=True)
    scored = fused.with_fused(ws, pairs[pairs["within"]], fm)
    flagged = scored[scored["fused"] >= fm.soft].copy()
    ends = np.sort(flagged[["eval_item_id", "train_item_id"]].to_numpy(str), axis=1)
    flagged = flagged[~pd.DataFrame(ends).duplicated().to_numpy()]  # a pair found from both ends counts once
    src = dict(zip(planted["eval_file"], planted["train_file"]))
    a = flagged["eval_item_id"].str.rsplit("/", n=1).str[1]
    b = flagged["train_item_id"].str.rsplit("/", n=1).str[1]
    both = a.isin(src.keys()) & b.isin(src.keys())
    same = both & (a.map(src) == b.map(src))
    flagged["verdict"] = np.where(same, "one photograph", np.where(both, "not one photograph", "natural"))
    return flagged


def measure(args) -> None:
    out = Path(args.out)
    ws_dir = Path(args.workspace) if args.workspace else out / "ws-with"
    best, fm = best_pairs(ws_dir)
    planted = pd.read_csv(out / "planted.csv")
    best["eval_file"] = best["eval_item_id"].str.rsplit("/", n=1).str[1]
    best["train_file"] = best["train_item_id"].str.rsplit("/", n=1).str[1]
    is_planted = best["eval_file"].isin(set(planted["eval_file"]))
    flagged = best["fused"] >= fm.soft
    p = best[is_planted].merge(planted, on="eval_file", suffixes=("", "_source"))
    p["found"] = (p["fused"] >= fm.soft) & (p["train_file"] == p["train_file_source"])
    by_edit = p.groupby("edit")["found"].agg(["sum", "count"])
    result = {"soft": fm.soft, "hard": fm.hard, "rule": fm.meta.get("threshold_rule"),
              "planted": int(len(planted)), "planted_found": int(p["found"].sum()),
              "planted_recall": float(p["found"].sum() / len(planted)),
              "by_edit": {k: f"{int(v['sum'])}/{int(v['count'])}" for k, v in by_edit.iterrows()},
              "eval_images": int(len(best)), "non_planted_flags": int((flagged & ~is_planted).sum())}
    flags = best[flagged & ~is_planted].sort_values("fused", ascending=False)
    missed = p[~p["found"]].sort_values("fused")
    print(f"soft {fm.soft:.4f} ({result['rule']}); planted {result['planted_found']}/{result['planted']} "
          f"({100 * result['planted_recall']:.1f}%), by edit {result['by_edit']}")
    print(f"non-planted flags: {len(flags)} of {int((~is_planted).sum())} non-planted eval images")
    # pairs within the evaluation split flagged: two planted copies of one photo are one photograph; two planted
    # copies of different photos (the same banner on two photos) are not; pairs with a natural photo are judged by eye
    within = within_flags(ws_dir, fm, planted)
    result["within_flags"] = {k: int(v) for k, v in within["verdict"].value_counts().items()}
    print(f"flagged pairs within the evaluation split: {result['within_flags'] or 'none'}")
    if len(missed):
        print("missed planted:\n" + missed[["eval_file", "train_file", "train_file_source", "fused",
                                            "raw_similarity"]].to_string(index=False))
    if args.sheets:
        sheet_dir = Path(args.sheets)
        sheet_dir.mkdir(parents=True, exist_ok=True)
        flags[["eval_item_id", "train_item_id", "fused", "raw_similarity"]].reset_index(drop=True).to_csv(
            sheet_dir / "flags.csv", index_label="n")
        for old in sheet_dir.glob("sheet-*.png"):
            old.unlink()
        made = sheets(ws_dir, flags, sheet_dir)
        if args.missed and len(missed):
            sheets(ws_dir, missed.assign(train_item_id=missed["train_item_id"]), sheet_dir / "missed")
        print(f"{len(made)} sheets -> {sheet_dir}")
    if args.judged:
        j = pd.read_csv(args.judged)
        counts = j["verdict"].value_counts().to_dict()
        leaks = counts.get("leak", 0) + counts.get("unsure", 0)
        result["judged"] = counts
        result["non_planted_precision"] = leaks / max(1, len(j))
        print(f"judged non-planted flags: {counts}; precision (unsure as leaks) {100 * leaks / max(1, len(j)):.1f}%")
    if args.save:
        Path(args.save).write_text(json.dumps(result, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--data", required=True)
    b.add_argument("--out", required=True)
    b.add_argument("--planted", type=int, default=120)
    b.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("enlarge")
    e.add_argument("src")
    e.add_argument("out")
    e.add_argument("--side", type=int, default=4000)
    c = sub.add_parser("cost")
    c.add_argument("out")
    c.add_argument("--quiet", action="store_true")
    c.add_argument("--defaults", action="store_true", help="scan with the workspace's defaults (no --encoder, no "
                   "--flip-queries), as a first `leakcore scan` does")
    c.add_argument("--repeat", type=int, default=3, help="runs of each scan, alternating which goes first; the "
                   "medians are reported (one run's ratio moved between 1.4x and 2.3x on this machine)")
    m = sub.add_parser("measure")
    m.add_argument("out")
    m.add_argument("--workspace", help="the workspace scanned with verification (default OUT/ws-with)")
    m.add_argument("--sheets")
    m.add_argument("--missed", action="store_true", help="also sheets of the missed planted copies (under missed/)")
    m.add_argument("--judged")
    m.add_argument("--save")
    args = ap.parse_args()
    {"build": build, "enlarge": enlarge, "cost": cost, "measure": measure}[args.cmd](args)


if __name__ == "__main__":
    main()
