"""Group and temporal leakage on real photos, and group recovery on CIFAR-10.

    python bench/groups.py [--data ../shared/data] [--out .bench/groups] [--cifar .bench/cifar10-224]

1. Calibrates the "same source" threshold on hymenoptera/train (overlapping patches and neighbouring pan frames
   of each photo against every other photo).
2. Builds a benchmark from the other photos (hymenoptera/val): overlapping patches of one photo spread over
   train and test, frames panning across a photo one second apart, patient-like groups of different photos
   sharing an id in the manifest, and ungrouped photos. Patches and frames carry no group metadata.
3. Scans it with grouping on and reports, per kind, the share of cross-split groups found, and the share of
   ungrouped photos wrongly merged into a group; the temporal check's findings; then re-splits and re-scans.
4. With --cifar: a CIFAR-10 workspace scanned with grouping on: time, and the size distribution of groups.
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
from leakcore import catalog, grouping, images  # noqa: E402
from leakcore.api import Project  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def build_benchmark(photos: list[Path], dest: Path, seed: int = 0) -> pd.DataFrame:
    """Write the benchmark's images and manifest; return the truth (path, kind, source, split)."""
    rng = np.random.default_rng(seed)
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "img").mkdir(parents=True)
    order = rng.permutation(len(photos))
    n = len(photos)
    kinds = np.array(["patches"] * (n // 5) + ["frames"] * (n // 5) + ["patient"] * (3 * (n // 10)))
    kinds = np.concatenate([kinds, ["single"] * (n - len(kinds))])
    rows = []
    patients = [order[i] for i in range(len(kinds)) if kinds[i] == "patient"]
    patient_of = {p: f"patient_{i // 3:03d}" for i, p in enumerate(patients)}
    base = pd.Timestamp("2025-03-01T09:00:00Z")
    for i, idx in enumerate(order):
        f, kind = photos[idx], kinds[i]
        label = f.parent.name
        img = Image.open(f).convert("RGB")
        if kind in ("patches", "frames"):
            parts = grouping.overlapping_patches(img) if kind == "patches" else grouping.pan_frames(img)
            splits = rng.permutation(["train"] * (len(parts) - len(parts) // 2) + ["test"] * (len(parts) // 2))
            for j, (part, split) in enumerate(zip(parts, splits)):
                name = f"img/{kind}_{i:03d}_{j}.jpg"
                part.save(dest / name, quality=92)
                ts = (base + pd.Timedelta(minutes=10 * i, seconds=j)).isoformat() if kind == "frames" else ""
                rows.append({"path": name, "split": split, "label": label, "group": "", "timestamp": ts,
                             "kind": kind, "source": f"{kind}_{i:03d}"})
        else:
            name = f"img/{kind}_{i:03d}.jpg"
            img.save(dest / name, quality=92)
            group = patient_of.get(idx, "")
            rows.append({"path": name, "split": "", "label": label, "group": group, "timestamp": "",
                         "kind": kind, "source": group or f"single_{i:03d}"})
    truth = pd.DataFrame(rows)
    # patient groups: members spread over both splits; singles: 70 / 30
    for g, grp in truth[truth["kind"] == "patient"].groupby("source"):
        truth.loc[grp.index, "split"] = rng.permutation(["train", "train", "test"][:len(grp)])
    single = truth["kind"] == "single"
    truth.loc[single, "split"] = np.where(rng.random(single.sum()) < 0.7, "train", "test")
    truth.drop(columns=["kind", "source"]).to_csv(dest / "manifest.csv", index=False)
    truth.to_csv(dest / "truth.csv", index=False)
    return truth


def measure(ws, truth: pd.DataFrame) -> dict:
    groups = ws.groups()
    comp = groups.membership.set_index("item_id")["group_id"]
    truth = truth.assign(item_id="bench/" + truth["split"] + "/" + truth["path"])
    truth["component"] = truth["item_id"].map(comp).fillna(truth["item_id"])
    out = {}
    for kind in ("patches", "frames", "patient"):
        t = truth[truth["kind"] == kind]
        found, cross = 0, 0
        for _, grp in t.groupby("source"):
            if grp["split"].nunique() < 2:
                continue
            cross += 1
            found += grp["component"].nunique() == 1
        out[kind] = {"cross_split_groups": cross, "found": found, "share": round(found / max(cross, 1), 4)}
    sizes = truth.groupby("component")["item_id"].transform("size")
    singles = truth[truth["kind"] == "single"]
    merged = singles[sizes[singles.index] > 1]
    out["single"] = {"photos": int(len(singles)), "merged_into_a_group": int(len(merged)),
                     "share": round(len(merged) / max(len(singles), 1), 4), "examples": merged["item_id"].head(5).tolist()}
    impure = truth.groupby("component")["source"].nunique()
    out["groups_mixing_sources"] = int((impure > 1).sum())
    out["threshold"] = groups.threshold
    return out


def sheet(ws, ids: list[str], out: Path, cell: int = 110) -> None:
    items = ws.workspace.items().set_index("item_id")
    canvas = Image.new("RGB", (len(ids) * cell, cell + 14), "white")
    draw = ImageDraw.Draw(canvas)
    for i, item_id in enumerate(ids):
        it = items.loc[item_id]
        img = images.decode(catalog.read_bytes(it["uri"], int(it["row"]))).image
        img.thumbnail((cell, cell))
        canvas.paste(img, (i * cell, 0))
        draw.text((i * cell + 2, cell), f"{it['split']}", fill="black")
    canvas.save(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / ".bench" / "groups"))
    ap.add_argument("--cifar", help="a CIFAR-10 workspace (bench/cifair.py) to group")
    ap.add_argument("--results", default=str(ROOT / "bench" / "groups"))
    args = ap.parse_args()
    data, out, results = Path(args.data), Path(args.out), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    report = {}

    cal_ws = Project.create(out / "calibration-ws")
    if "hymenoptera" not in cal_ws.workspace.datasets:
        cal_ws.add("hymenoptera", data / "hymenoptera")
    t0 = time.perf_counter()
    cal = grouping.calibrate_group_threshold(cal_ws.workspace, "hymenoptera/train", queries=244)
    cal["seconds"] = round(time.perf_counter() - t0, 1)
    report["calibration"] = cal
    print(f"calibration on hymenoptera/train: threshold {cal['threshold']:.4f} (FPR {cal['false_positive_rate']:.4f} of "
          f"{cal['negatives']}), patch recall {cal['patch_recall']:.3f}, frame recall {cal['frame_recall']:.3f}, "
          f"hardest negative {cal['hardest_negative']:.4f}, positive median {cal['positive_median']:.4f}")

    photos = sorted((data / "hymenoptera" / "val").rglob("*.jpg"))
    truth = build_benchmark(photos, out / "benchmark")
    ws_path = out / "bench-ws"
    shutil.rmtree(ws_path, ignore_errors=True)
    ws = Project.create(ws_path)
    ws.add("bench", out / "benchmark" / "manifest.csv", roles={"train": "train", "test": "eval"})
    ws.configure(group_threshold=cal["threshold"], group_window_s=60)
    t0 = time.perf_counter()
    ws.scan(grouping=True)
    report["scan_seconds"] = round(time.perf_counter() - t0, 1)
    report["benchmark"] = measure(ws, truth)
    print(json.dumps(report["benchmark"], indent=2))
    rates = ws.checks.rates()
    report["rates"] = rates[rates["train_split"] == "(all training sources)"].to_dict("records")
    print(rates.to_string(index=False))
    g = ws.groups().groups
    leak = g[g["leaks"]]
    for kind in ("patches", "frames"):
        gid = next((x for x in leak["group_id"] if f"/{kind}_" in x), None)
        if gid:
            members = ws.groups().membership
            sheet(ws, list(members[members["group_id"] == gid]["item_id"]), results / f"recovered-{kind}.png")
    merged = report["benchmark"]["single"]["examples"]
    if merged:
        members = ws.groups().membership
        comp = members.set_index("item_id")["group_id"]
        sheet(ws, list(members[members["group_id"] == comp[merged[0]]]["item_id"]), results / "wrongly-merged.png")

    result = ws.resplit("bench", test_size=0.3, out=str(out / "resplit"))
    report["resplit"] = result.summary
    ws2_path = out / "resplit-ws"
    shutil.rmtree(ws2_path, ignore_errors=True)
    ws2 = Project.create(ws2_path)
    ws2.add("bench", out / "resplit" / "manifest.csv", root=out / "benchmark", roles={"train": "train", "test": "eval"})
    ws2.configure(group_threshold=cal["threshold"])
    ws2.scan(grouping=True)
    g2 = ws2.groups().groups
    report["after_resplit"] = {"groups": int(len(g2)), "cross_split": int(g2["cross_split"].sum()),
                               "group_rate": ws2.checks.rates().query("check == 'group'").to_dict("records")}
    print(f"after the re-split: {len(g2)} groups, {int(g2['cross_split'].sum())} across splits")

    if args.cifar:
        cws = Project.open(args.cifar)
        t0 = time.perf_counter()
        cws.scan(grouping=True)
        scan_s = time.perf_counter() - t0
        report["cifar10"] = {"scan_with_train_x_train_seconds": round(scan_s, 1)}
        t0 = time.perf_counter()
        ccal = grouping.calibrate_group_threshold(cws.workspace, "cifar10/test", queries=1000)
        report["cifar10"]["calibration"] = {**ccal, "seconds": round(time.perf_counter() - t0, 1)}
        for name, thr in (("photo_threshold", cal["threshold"]), ("cifar_threshold", ccal["threshold"])):
            t0 = time.perf_counter()
            cg = cws.groups(threshold=thr)
            group_s = time.perf_counter() - t0
            sizes = cg.groups["size"].value_counts().sort_index()
            report["cifar10"][name] = {
                "threshold": thr, "grouping_seconds": round(group_s, 1), "groups": int(len(cg.groups)),
                "images_in_groups": int(cg.groups["size"].sum()), "largest": int(cg.groups["size"].max()),
                "percolated": cg.percolated, "sizes": {int(k): int(v) for k, v in sizes.items()},
                "leaking_groups": int(cg.groups["leaks"].sum()),
                "eval_items_reaching_train": int(grouping.group_reach(cg)["eval_item_id"].nunique())}
            print(name, json.dumps(report["cifar10"][name], default=str))
        big = cg.groups.sort_values("size", ascending=False)
        for rank, gid in enumerate(big["group_id"].head(2)):
            ids = list(cg.membership[cg.membership["group_id"] == gid]["item_id"].head(16))
            sheet(cws, ids, results / f"cifar-calibrated-largest-{rank}.png", cell=64)
        ids = []
        for gid in cg.groups[(cg.groups["size"] == 3) & cg.groups["leaks"]]["group_id"].head(6):
            ids += list(cg.membership[cg.membership["group_id"] == gid]["item_id"])
        sheet(cws, ids, results / "cifar-calibrated-size3.png", cell=64)
    (results / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {results / 'results.json'}")


if __name__ == "__main__":
    main()
