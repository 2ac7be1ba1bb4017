"""The pairs the second stage checks below its candidate threshold: per evaluation image of a scanned workspace, its
nearest training image where the raw similarity is under the fused model's candidate threshold, with the agreement of
the two images' 32 px canvases (`verify.canvas_agreement`: NCC as they are or mirrored). Where it reaches
`fused.RESCUE_NCC` the pair is checked on its pixels (`fused.rescued`); this prints the best of the others, to show the
margin, and what finding them costs.

    python bench/verify_below_candidate.py .bench/lookalikes-hym/ws-with
    python bench/verify_below_candidate.py .bench/lookalikes-cats1/ws-with
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(path: str, show: int = 10) -> None:
    from leakcore import fused, leakage, verify
    from leakcore.project import Workspace

    ws = Workspace.open(path)
    fm = fused.load(ws)
    pairs = leakage.load_pairs(ws, raw=True)
    cross = pairs[~pairs["within"].to_numpy(dtype=bool)]
    nearest = cross.sort_values("similarity", ascending=False, kind="stable").drop_duplicates("eval_item_id")
    below = nearest[nearest["similarity"] < fm.candidate_]
    items = ws.items().drop_duplicates("item_id").set_index("item_id")
    t0 = time.perf_counter()
    ids = list(dict.fromkeys([*below["eval_item_id"], *below["train_item_id"]]))
    images = dict(zip(ids, verify.load_images(items.loc[ids].reset_index(), ws.sources, side=fused.RESCUE_SIDE,
                                              gray=True)))
    t1 = time.perf_counter()
    rows = sorted(((verify.canvas_agreement(images[e], images[t]), s, e, t)
                   for e, t, s in zip(below["eval_item_id"], below["train_item_id"], below["similarity"])
                   if images[e] is not None and images[t] is not None), reverse=True)
    t2 = time.perf_counter()
    print(f"{len(nearest)} evaluation images; {len(below)} with their nearest under the candidate threshold "
          f"{fm.candidate_:.4f}; decoding {len(ids)} images {t1 - t0:.2f} s, canvases {t2 - t1:.2f} s")
    print(f"checked (canvas agreement >= {fused.RESCUE_NCC}): {sum(r[0] >= fused.RESCUE_NCC for r in rows)}; "
          f">= 0.9: {sum(r[0] >= 0.9 for r in rows)}")
    for agree, sim, e, t in rows[:show]:
        print(f"  {agree:.3f}  raw {sim:.3f}  {e}  ~  {t}")


if __name__ == "__main__":
    main(sys.argv[1])
