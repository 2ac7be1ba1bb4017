"""Group links verified by geometry, on a photo set with many look-alikes.

    nice python bench/groups_photos.py --collection hymenoptera      # tuning
    nice python bench/groups_photos.py --collection cats_and_dogs    # confirmation (not looked at while tuning)

Builds a manifest workspace from one collection of ../shared/data:
  (a) patches: overlapping crops (2 x 2, 65% of the side) of one photo, two in train and two in test, no group id;
  (b) subjects: three different photos of one label under one explicit group id (two train, one test);
  (c) frames: six frames panning across one photo (70% wide, a little vertical jitter), one second apart, spread
      over train and test, no group id;
  (d) unrelated photos, 60% train and 40% test.
Scans it with grouping on (sscd-distilled), recovers the groups (candidate links verified by geometry) and reports:
test images of patches / subjects / frames whose group reaches a training image of their own source, unrelated
test photos whose group reaches training, groups mixing sources, and the same figures for the cosine-only
components at the encoder's group threshold (the old rule). Writes results and contact sheets (verified edges,
rejected candidates, unrelated photos in a group, missed test images, and unrelated photos that a cosine-only rule
at the candidate threshold would chain) to bench/groups/photos/.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from leakcore import catalog, grouping, images, leakage  # noqa: E402
from leakcore.api import Project  # noqa: E402
from leakcore.encoders import get_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"hymenoptera": (60, 20, 60, 217), "cats_and_dogs": (100, 40, 100, 400)}  # patches, subjects, frames, unrelated


def frames_of(img: Image.Image, rng, n: int = 6, width: float = 0.7, height: float = 0.9) -> list:
    """Frames of a camera panning left to right across a photo, with a little vertical jitter."""
    w, h = img.size
    fw, fh = int(w * width), int(h * height)
    out = []
    for x in np.linspace(0, w - fw, n).astype(int):
        y = int(rng.integers(0, h - fh + 1))
        out.append(img.crop((x, y, x + fw, y + fh)))
    return out


def build(photos: list[Path], dest: Path, sizes: tuple[int, int, int, int], seed: int = 0,
          max_side: int | None = None) -> pd.DataFrame:
    """Write the benchmark's images and manifest; return the truth (path, split, kind, source). With `max_side`,
    every photo is first brought down to that longer side (small, soft photos like cats_and_dogs')."""
    rng = np.random.default_rng(seed)

    class _Open:  # Image.open, shrunk to max_side
        @staticmethod
        def open(f):
            img = Image.open(f).convert("RGB")
            if max_side and max(img.size) > max_side:
                img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            return img
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "img").mkdir(parents=True)
    n_patch, n_subj, n_frame, n_single = sizes
    order = [photos[i] for i in rng.permutation(len(photos))]
    patch_src, order = order[:n_patch], order[n_patch:]
    frame_src, order = order[:n_frame], order[n_frame:]
    by_label: dict[str, list[Path]] = {}
    for f in order:
        by_label.setdefault(f.parent.name, []).append(f)
    subjects, used = [], set()
    labels = sorted(by_label)
    for s in range(n_subj):
        pool = [f for f in by_label[labels[s % len(labels)]] if f not in used][:3]
        used.update(pool)
        subjects.append(pool)
    singles = [f for f in order if f not in used][:n_single]
    base = pd.Timestamp("2025-03-01T09:00:00Z")
    rows = []

    def save(img, name):
        img.convert("RGB").save(dest / name, quality=92)

    for i, f in enumerate(patch_src):
        parts = grouping.overlapping_patches(_Open.open(f))
        splits = rng.permutation(["train", "train", "test", "test"])
        for j, (part, split) in enumerate(zip(parts, splits)):
            name = f"img/patches_{i:03d}_{j}.jpg"
            save(part, name)
            rows.append({"path": name, "split": split, "group": "", "timestamp": "", "kind": "patches",
                         "source": f"patches_{i:03d}", "photo": str(f)})
    for i, f in enumerate(frame_src):
        parts = frames_of(_Open.open(f), rng)
        splits = rng.permutation(["train"] * 3 + ["test"] * 3)
        for j, (part, split) in enumerate(zip(parts, splits)):
            name = f"img/frames_{i:03d}_{j}.jpg"
            save(part, name)
            rows.append({"path": name, "split": split, "group": "",
                         "timestamp": (base + pd.Timedelta(minutes=10 * i, seconds=j)).isoformat(), "kind": "frames",
                         "source": f"frames_{i:03d}", "photo": str(f)})
    for i, pool in enumerate(subjects):
        for j, (f, split) in enumerate(zip(pool, ["train", "train", "test"])):
            name = f"img/subject_{i:03d}_{j}.jpg"
            save(_Open.open(f), name)
            rows.append({"path": name, "split": split, "group": f"subject_{i:03d}", "timestamp": "",
                         "kind": "subjects", "source": f"subject_{i:03d}", "photo": str(f)})
    for i, f in enumerate(singles):
        name = f"img/single_{i:03d}.jpg"
        save(_Open.open(f), name)
        rows.append({"path": name, "split": "train" if rng.random() < 0.6 else "test", "group": "", "timestamp": "",
                     "kind": "unrelated", "source": f"single_{i:03d}", "photo": str(f)})
    truth = pd.DataFrame(rows)
    truth[["path", "split", "group", "timestamp"]].to_csv(dest / "manifest.csv", index=False)
    truth.to_csv(dest / "truth.csv", index=False)
    return truth


def measure(truth: pd.DataFrame, component: pd.Series) -> dict:
    """Per kind: test images whose component holds a training image of their own source (unrelated: any training
    image); components holding more than one source."""
    t = truth.assign(component=truth["item_id"].map(component).fillna(truth["item_id"]))
    train_sources = t[t["split"] == "train"].groupby("component")["source"].agg(set)
    out = {}
    for kind in ("patches", "subjects", "frames"):
        test = t[(t["kind"] == kind) & (t["split"] == "test")]
        found = [s in train_sources.get(c, set()) for c, s in zip(test["component"], test["source"])]
        out[kind] = {"test_images": int(len(test)), "found": int(sum(found)),
                     "share": round(float(np.mean(found)) if found else 0.0, 4),
                     "missed": test.loc[~np.array(found, bool), "item_id"].tolist()}
    test = t[(t["kind"] == "unrelated") & (t["split"] == "test")]
    reach = [c in train_sources.index for c in test["component"]]
    out["unrelated"] = {"test_images": int(len(test)), "in_a_group_reaching_training": int(sum(reach)),
                        "share": round(float(np.mean(reach)), 4), "examples": test.loc[np.array(reach, bool), "item_id"].tolist()}
    sizes = t.groupby("component")["item_id"].size()
    sources = t.groupby("component")["source"].nunique()
    out["groups"] = int((sizes > 1).sum())
    out["groups_mixing_sources"] = int((sources > 1).sum())
    out["largest_group"] = int(sizes.max())
    return out


def cosine_components(ws, ids: list[str], threshold: float) -> pd.Series:
    """The old rule: components of explicit ids and every stored pair at or above the threshold (no pixels)."""
    pairs = pd.concat([leakage.load_pairs(ws, raw=True), grouping.load_group_pairs(ws)], ignore_index=True)
    near = pairs[pairs["similarity"] >= threshold]
    items = ws.items()
    explicit = items[items["group"].notna()]
    first = explicit.groupby("group")["item_id"].transform("min")
    index = pd.Index(ids)
    a = np.concatenate([index.get_indexer(near["eval_item_id"]), index.get_indexer(first)])
    b = np.concatenate([index.get_indexer(near["train_item_id"]), index.get_indexer(explicit["item_id"])])
    keep = (a >= 0) & (b >= 0)
    comp = grouping._components(len(ids), a[keep], b[keep])
    return pd.Series(pd.Series(ids).groupby(comp).transform("min").to_numpy(), index=ids)


# ---- contact sheets ------------------------------------------------------------------------------------------
def _thumb(ws, items, item_id: str, cell: int) -> Image.Image:
    it = items.loc[item_id]
    img = images.decode(catalog.read_bytes(it["uri"], int(it["row"]))).image
    img.thumbnail((cell, cell))
    return img


def sheet(ws, rows: list[tuple[list[str], str]], out: Path, cell: int = 100, per_row: int = 2) -> None:
    """One line per entry: its images side by side and a caption under them; `per_row` entries per sheet row."""
    if not rows:
        return
    items = ws.items().set_index("item_id")
    width = max(len(ids) for ids, _ in rows) * cell
    line_h = cell + 28
    n_lines = (len(rows) + per_row - 1) // per_row
    canvas = Image.new("RGB", (per_row * (width + 10), n_lines * line_h), "white")
    draw = ImageDraw.Draw(canvas)
    for k, (ids, caption) in enumerate(rows):
        x0, y0 = (k % per_row) * (width + 10), (k // per_row) * line_h
        for i, item_id in enumerate(ids):
            canvas.paste(_thumb(ws, items, item_id, cell), (x0 + i * cell, y0))
        for j, line in enumerate(caption.split("\n")[:2]):
            draw.text((x0 + 2, y0 + cell + 2 + 12 * j), line[: width // 6], fill="black")
    canvas.quantize(colors=96, method=Image.Quantize.MEDIANCUT).save(out, optimize=True)  # small files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--collection", choices=sorted(SIZES), default="hymenoptera")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / ".bench" / "groups_photos"))
    ap.add_argument("--results", default=str(ROOT / "bench" / "groups" / "photos"))
    ap.add_argument("--threshold", type=float, help="candidate threshold (default: the encoder's group threshold)")
    ap.add_argument("--keep", action="store_true", help="keep the built workspace (reuse the scan)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-side", type=int, help="shrink every photo to this longer side first (small, soft photos)")
    ap.add_argument("--exclude", nargs="*", default=[], metavar="TRUTH_CSV",
                    help="leave out the photos these earlier benchmarks used (a held-out sample)")
    ap.add_argument("--tag", help="name of the results (default: the collection, with -small<N> / -seed<S>)")
    args = ap.parse_args()
    data, results = Path(args.data), Path(args.results)
    tag = args.tag or (args.collection + (f"-small{args.max_side}" if args.max_side else "")
                       + (f"-seed{args.seed}" if args.seed else ""))
    out = Path(args.out) / tag
    results.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed + 1)

    ws_path = out / "ws"
    if not (args.keep and ws_path.exists()):
        used = set()
        for f in args.exclude:
            used |= set(pd.read_csv(f, keep_default_na=False)["photo"])
        photos = [p for p in sorted((data / args.collection).rglob("*.jpg")) if str(p) not in used]
        truth = build(photos, out / "benchmark", SIZES[args.collection], seed=args.seed, max_side=args.max_side)
        shutil.rmtree(ws_path, ignore_errors=True)
        ws = Project.create(ws_path)
        ws.add("bench", out / "benchmark" / "manifest.csv", roles={"train": "train", "test": "eval"})
        t0 = time.perf_counter()
        ws.scan(grouping=True)
        scan_s = time.perf_counter() - t0
    else:
        truth = pd.read_csv(out / "benchmark" / "truth.csv", keep_default_na=False)
        ws, scan_s = Project.open(ws_path), float("nan")
    if args.threshold is not None:
        ws.configure(group_threshold=args.threshold)
    truth["item_id"] = "bench/" + truth["split"] + "/" + truth["path"]
    report = {"collection": args.collection, "max_side": args.max_side, "seed": args.seed, "excluded": args.exclude,
              "encoder": ws.workspace.encoder, "images": int(len(truth)),
              "sizes": dict(zip(("patches", "subjects", "frames", "unrelated"), SIZES[args.collection])),
              "scan_seconds": round(scan_s, 1), "settings": {
                  "candidate_threshold": grouping.group_threshold(ws.workspace), "work_side": grouping.WORK_SIDE,
                  "min_inliers": grouping.MIN_INLIERS, "min_spread": grouping.MIN_SPREAD, "min_ncc": grouping.MIN_NCC,
                  "ratio": grouping.RATIO, "ransac_px": grouping.RANSAC_PX, "max_candidates": grouping.MAX_CANDIDATES}}

    shutil.rmtree(ws.path / "groups" / f"geometry-v{grouping.GEOMETRY_VERSION}", ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    g = ws.groups()
    first_s, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    g = ws.groups()
    again_s = time.perf_counter() - t0
    cand = g.candidates
    measured = int((~cand["method"].isin(["identical", "unmeasured"])).sum())
    report["candidates"] = {"links": int(len(cand)), "verified": int(cand["edge"].sum()),
                            "by_reason": cand.loc[~cand["edge"], "reason"].value_counts().to_dict(),
                            "groups_seconds_first": round(first_s, 1), "groups_seconds_cached": round(again_s, 2),
                            "measured": measured, "groups_cpu_seconds_first": round(first_cpu, 1),
                            "cpu_ms_per_measured_pair": round(1000 * first_cpu / max(measured, 1), 1),
                            "images_with_features": int(len(pd.unique(cand.loc[~cand["method"].isin(
                                ["identical", "unmeasured"]), ["a", "b"]].to_numpy().ravel())))}
    comp = g.membership.set_index("item_id")["group_id"]
    report["verified"] = measure(truth, comp)
    old = get_spec(ws.workspace.encoder).group_threshold
    report["cosine_only"] = {"threshold": old, **measure(truth, cosine_components(ws.workspace, list(ws.workspace.items()["item_id"]), old))}
    loose = grouping.group_threshold(ws.workspace)
    report["cosine_only_at_candidate_threshold"] = {
        "threshold": loose, **measure(truth, cosine_components(ws.workspace, list(ws.workspace.items()["item_id"]), loose))}
    report["guard"] = g.guard
    src = truth.set_index("item_id")["source"]
    for name in ("verified", "cosine_only", "cosine_only_at_candidate_threshold"):
        r = report[name]
        print(f"{name}: patches {r['patches']['found']}/{r['patches']['test_images']}, subjects "
              f"{r['subjects']['found']}/{r['subjects']['test_images']}, frames {r['frames']['found']}/"
              f"{r['frames']['test_images']}, unrelated in a group reaching training "
              f"{r['unrelated']['in_a_group_reaching_training']}/{r['unrelated']['test_images']}, groups mixing sources "
              f"{r['groups_mixing_sources']} of {r['groups']} (largest {r['largest_group']})")
    print(json.dumps(report["candidates"], indent=1))

    # contact sheets: a sample of verified edges, of rejected candidates (most similar first), and every
    # unrelated photo that landed in a group, with its group
    for old_sheet in results.glob(f"{tag}-*.png"):
        old_sheet.unlink()
    ver = cand[cand["edge"]]
    ver = ver.iloc[rng.permutation(len(ver))[:16]]
    sheet(ws.workspace, [([r.a, r.b], f"{r.method} sim {r.similarity:.2f} inl {r.inliers:.0f} ncc {r.ncc:.2f}\n"
                f"{src.get(r.a, '?')} | {src.get(r.b, '?')}") for r in ver.itertuples()], results / f"{tag}-verified.png")
    rej = cand[~cand["edge"] & ~cand["method"].isin(["unmeasured"])].sort_values("similarity", ascending=False)
    top = rej.head(10)
    rest = rej.iloc[10:]
    rej = pd.concat([top, rest.iloc[rng.permutation(len(rest))[:10]]])
    sheet(ws.workspace, [([r.a, r.b], f"sim {r.similarity:.2f} inl {r.inliers:.0f} ncc {r.ncc:.2f}: {r.reason}\n"
                f"{src.get(r.a, '?')} | {src.get(r.b, '?')}") for r in rej.itertuples()], results / f"{tag}-rejected.png")
    landed = []
    members = g.membership
    for item_id in report["verified"]["unrelated"]["examples"]:
        gid = comp[item_id]
        ids = [item_id] + [m for m in members.loc[members["group_id"] == gid, "item_id"] if m != item_id][:5]
        ev = g.evidence[g.evidence["group_id"] == gid]
        landed.append((ids, f"{item_id.split('/')[-1]} in group of {len(members[members['group_id'] == gid])}: "
                            f"{', '.join(sorted(set(ev['kind'])))}\n{' '.join(src.get(i, '?') for i in ids)}"))
    sheet(ws.workspace, landed, results / f"{tag}-unrelated-in-groups.png", per_row=1)
    t = truth.assign(group_id=truth["item_id"].map(comp))
    mixed = t.groupby("group_id")["source"].nunique()
    sheet(ws.workspace, [(list(t.loc[t["group_id"] == gid, "item_id"])[:6],
                "group mixing sources: " + " ".join(t.loc[t["group_id"] == gid, "source"].head(6)))
               for gid in mixed[mixed > 1].index[:8]], results / f"{tag}-mixed.png", per_row=1)
    chained = []  # what the geometry prevents: unrelated test photos in a cosine-only component at the candidate threshold
    loose_comp = cosine_components(ws.workspace, list(ws.workspace.items()["item_id"]), loose)
    for item_id in report["cosine_only_at_candidate_threshold"]["unrelated"]["examples"][:8]:
        others = [m for m in loose_comp.index[loose_comp == loose_comp[item_id]] if m != item_id]
        chained.append(([item_id] + others[:5], f"{item_id.split('/')[-1]} in a cosine-only component of {len(others) + 1} "
                                                f"at {loose:.2f}\n{' '.join(src.get(i, '?') for i in [item_id] + others[:5])}"))
    sheet(ws.workspace, chained, results / f"{tag}-cosine-only-chains.png", per_row=1, cell=90)
    missed = []
    for kind in ("patches", "frames", "subjects"):
        for item_id in report["verified"][kind]["missed"][:6]:
            same = truth[(truth["source"] == src[item_id]) & (truth["split"] == "train")]["item_id"].tolist()
            missed.append(([item_id] + same[:3], f"missed {kind}: {item_id.split('/')[-1]} (first) vs its training"))
    sheet(ws.workspace, missed, results / f"{tag}-missed.png", per_row=1)
    for key in ("verified", "cosine_only", "cosine_only_at_candidate_threshold"):
        for kind in ("patches", "subjects", "frames"):
            report[key][kind]["missed"] = report[key][kind]["missed"][:20]
    (results / f"{tag}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {results / (tag + '.json')} and contact sheets {results}/{tag}-*.png")


if __name__ == "__main__":
    main()
