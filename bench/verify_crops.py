"""The crop search on a planted-copies benchmark (bench/verify_lookalikes.py): which candidate pairs it decides
(`scores.fused.decided_by_crop`), how far the other pairs stay from its rule, and contact sheets of both.

    python bench/verify_crops.py .bench/lookalikes-cats4 --sheets bench/verify/photos5/crops/cats4

Reads the workspace `ws-with` of a scan with verification (evidence version 11 or later). Prints, for the candidate
pairs, those the crop rule decides (planted or not, and whether the other evidence decided them already) and the
non-planted pairs nearest the rule; writes sheets of the pairs only the crop rule decides and of the 12 non-planted
pairs with the highest crop NCC, eval image left, training image right.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from verify_lookalikes import sheets  # noqa: E402

from leakcore import fused, leakage, verify  # noqa: E402
from leakcore.project import Workspace  # noqa: E402
from leakcore.scores.fused import decided_by_crop, decided_by_matches, decided_by_pixels  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", help="a folder made by bench/verify_lookalikes.py build, scanned into ws-with")
    ap.add_argument("--sheets", help="write contact sheets here")
    args = ap.parse_args()
    out = Path(args.out)
    ws = Workspace.open(out / "ws-with")
    fm = fused.load(ws)
    pairs = leakage.load_pairs(ws, raw=True)
    cand = fused.candidates(pairs[~pairs["within"]], fm)
    ev = verify.evidence_for(ws, cand).reset_index(drop=True)
    planted = pd.read_csv(out / "planted.csv")
    source = dict(zip(planted["eval_file"], planted["train_file"]))
    ev["eval_file"] = ev["eval_item_id"].str.rsplit("/", n=1).str[1]
    ev["train_file"] = ev["train_item_id"].str.rsplit("/", n=1).str[1]
    ev["planted"] = [source.get(e) == t for e, t in zip(ev["eval_file"], ev["train_file"])]
    crop = decided_by_crop(ev)
    other = decided_by_matches(ev) | decided_by_pixels(ev, (verify.TWIN_NCC, verify.TWIN_SSIM))
    ev["fused"] = fused.with_fused(ws, cand, fm)["fused"].to_numpy()
    ev["raw_similarity"] = ev["similarity"]
    only = ev[crop & ~other]
    near = ev[~ev["planted"]].sort_values("crop_ncc", ascending=False).head(12)
    result = {"candidate_pairs": int(len(ev)), "decided_by_crop": int(crop.sum()),
              "decided_by_crop_only": int(len(only)), "of_them_planted": int(only["planted"].sum()),
              "non_planted_decided_by_crop": int((crop & ~ev["planted"]).sum()),
              "non_planted_max_crop_ncc": float(ev.loc[~ev["planted"], "crop_ncc"].max()),
              "non_planted_max_crop_detail": float(ev.loc[~ev["planted"], "crop_detail"].max())}
    print(json.dumps(result))
    cols = ["eval_file", "train_file", "planted", "crop_ncc", "crop_detail", "orb_inliers", "fused"]
    print("decided by the crop rule only:\n" + only[cols].to_string(index=False))
    print("non-planted pairs nearest the rule:\n" + near[cols].to_string(index=False))
    if args.sheets:
        folder = Path(args.sheets)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "result.json").write_text(json.dumps(result, indent=1))
        for name, frame in (("only-crop", only), ("nearest-non-planted", near)):
            frame[["eval_item_id", "train_item_id", "fused", "raw_similarity", "crop_ncc", "crop_detail"]].to_csv(
                folder / f"{name}.csv", index=False)
            if len(frame):
                for n, path in enumerate(sheets(out / "ws-with", frame.reset_index(drop=True), folder / name)):
                    print(f"{name}: {path}")


if __name__ == "__main__":
    main()
