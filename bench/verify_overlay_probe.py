"""Do the pixels away from the local matches, under the same map, tell a copy from two photos under one overlay?

    python bench/verify_overlay_probe.py        # the eight draws of bench/verify_lookalikes.py, scanned into ws-with

For every candidate pair the local matches decide (`scores.fused.decided_by_matches`), the eval image is warped
onto the training image by the RANSAC map of its matches, and the NCC of luminance is taken on the overlap away
from the inliers (24 px at ORB_SIDE), and the share of textured 32 px tiles of the overlap whose NCC is at least 0.7.
Prints the pairs that are not one photograph by the truth, and the lowest
values among those that are. Figures: docs/verification.md, "Two different photos under the same overlay".
"""
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from leakcore import fused, leakage, verify  # noqa: E402
from leakcore.project import Workspace  # noqa: E402
from leakcore.scores.fused import decided_by_matches  # noqa: E402

rows = []
for d in ["hym","hym3","hym5","hym6","cats","cats2","cats4","cats6"]:
    out = ROOT / ".bench" / f"lookalikes-{d}"
    ws = Workspace.open(f"{out}/ws-with")
    fm = fused.load(ws); r = leakage.load_pairs(ws, raw=True); c = fused.candidates(r, fm)
    ev = verify.evidence_for(ws, c).reset_index(drop=True)
    ev = ev[decided_by_matches(ev)].reset_index(drop=True)
    planted = pd.read_csv(f"{out}/planted.csv"); src = dict(zip(planted["eval_file"], planted["train_file"]))
    items = ws.items().drop_duplicates("item_id").set_index("item_id")
    ids = pd.unique(pd.concat([ev["eval_item_id"], ev["train_item_id"]]))
    inp = dict(zip(ids, verify.image_inputs(ws, items.loc[ids].reset_index())))
    for a, b in zip(ev["eval_item_id"], ev["train_item_id"]):
        ea, tb = inp[a], inp[b]
        fa, fb = ea.orb(), tb.orb(n_features=verify.ORB_TRAIN_FEATURES)
        q, t = verify._ratio_matches(fa[1], fb[1])
        src_pts, dst_pts = fa[0][q], fb[0][t]
        M, inl = cv2.estimateAffinePartial2D(src_pts, dst_pts, method=cv2.RANSAC, ransacReprojThreshold=4.0, maxIters=2000, confidence=0.99)
        if M is None: continue
        ga, gb = verify._orb_gray(ea.gray()).astype(np.float32), verify._orb_gray(tb.gray()).astype(np.float32)
        warped = cv2.warpAffine(ga, M, (gb.shape[1], gb.shape[0]), flags=cv2.INTER_LINEAR, borderValue=-1)
        valid = cv2.warpAffine(np.ones_like(ga), M, (gb.shape[1], gb.shape[0]), flags=cv2.INTER_NEAREST, borderValue=0) > 0
        near = np.zeros(gb.shape, np.uint8)
        for x, y in dst_pts[inl.ravel().astype(bool)]:
            cv2.circle(near, (int(x), int(y)), 24, 1, -1)
        away = valid & (near == 0)
        def ncc(m):
            if m.sum() < 200: return np.nan
            x, y = warped[m] - warped[m].mean(), gb[m] - gb[m].mean()
            return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum() + 1e-9))
        # the share of textured 32 px tiles of the overlap whose NCC under the map is at least 0.7
        agree = tiles = 0
        for y0 in range(0, gb.shape[0] - 31, 32):
            for x0 in range(0, gb.shape[1] - 31, 32):
                if not valid[y0:y0 + 32, x0:x0 + 32].all():
                    continue
                u, v = warped[y0:y0 + 32, x0:x0 + 32], gb[y0:y0 + 32, x0:x0 + 32]
                if u.std() < 8 or v.std() < 8:
                    continue
                tiles += 1
                uu, vv = u - u.mean(), v - v.mean()
                agree += float((uu * vv).sum() / np.sqrt((uu * uu).sum() * (vv * vv).sum())) >= 0.7
        share = agree / tiles if tiles else np.nan
        ea_f = a.rsplit("/", 1)[1]; tb_f = b.rsplit("/", 1)[1]
        same = src.get(ea_f) == tb_f or src.get(tb_f) == ea_f or (ea_f in src and src.get(ea_f) == src.get(tb_f))
        rows.append((d, ea_f, tb_f, same, ncc(valid), ncc(away), float(away.sum() / max(1, valid.sum())), share, tiles))
df = pd.DataFrame(rows, columns=["draw", "e", "t", "same", "ncc_overlap", "ncc_away", "away_share", "tiles_agree",
                                 "tiles"])
print(len(df), "pairs;", int((~df.same).sum()), "not the same photo")
print(df[~df.same].to_string())
s = df[df.same]
print("same: ncc_away pct0.5/1/5", np.nanpercentile(s.ncc_away, [0.5, 1, 5]).round(3), "min", round(float(np.nanmin(s.ncc_away)), 3), "nan", int(s.ncc_away.isna().sum()))
print(s.sort_values("ncc_away").head(8).to_string())
print("same: tiles_agree pct0.5/1/5", np.nanpercentile(s.tiles_agree, [0.5, 1, 5]).round(3), "min",
      round(float(np.nanmin(s.tiles_agree)), 3), "nan", int(s.tiles_agree.isna().sum()))
print(s.sort_values("tiles_agree").head(10).to_string())
