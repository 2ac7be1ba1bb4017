"""Time the leakage report of a workspace and print its size; optionally look at it in Chromium, offline.

    python bench/report.py WS [--predictions FILE...] [--leaks CSV] [--probe knn1] [--out report.html]
    python bench/report.py WS --curate            # first add what a curated demo holds (see below), on WS itself
    python bench/report.py WS --shots docs/report # screenshots (network off) and the printed PDF's pages as PNGs

Prints one JSON object: seconds to build the data (`Project.report_document`, the same call as `leakcore report
--json`), to draw the page (thumbnails included), sizes of the page and of the JSON, thumbnails embedded, findings
shown per check. Times are the best of --repeat runs (these machines are noisy).

--curate (for the demo workspace: `leakcore demo WS` first) adds a calibration on photos/train, curator decisions
(the planted leaks confirmed by "ana", three look-alike flags rejected by "ben", one unsure) and an export, so that
every section of the report has something in it.

--shots opens the page in Chromium with the network off (every request but the file itself is aborted and
counted: the count must be 0), saves a screenshot per section, prints the page to PDF with
`chromium --headless --print-to-pdf`, and renders its pages with `pdftoppm` (poppler-utils).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from leakcore import report  # noqa: E402
from leakcore.api import ImpactRequest, LeakSource, Project  # noqa: E402


def curate(project: Project) -> None:
    """A calibration, decisions and an export on the demo workspace (idempotent enough to run twice)."""
    from leakcore.demo import planted_truth

    if project.scores.calibration() is None:
        project.calibrate("photos/train", queries=60)
    truth = planted_truth(project.workspace)
    if truth is not None and project.decisions.latest().empty:
        for r in truth.itertuples():  # copies, re-encodings and resizes are the same picture; the rest near-duplicates
            degree = "hard" if any(w in r.kind for w in ("exact", "JPEG", "resized")) else "soft"
            project.decisions.decide(r.eval_item_id, r.train_item_id, degree, reviewer="ana", note=r.kind)
        planted = set(zip(truth["eval_item_id"], truth["train_item_id"]))
        f = project.checks.findings("similarity")
        f = f[[ev != tr and (e, t) not in planted
               for ev, tr, e, t in zip(f["eval_split"], f["train_split"], f["eval_item_id"], f["train_item_id"])]]
        weakest = f.sort_values("score").drop_duplicates("eval_item_id")
        for r in weakest.head(3).itertuples():
            project.decisions.decide(r.eval_item_id, r.train_item_id, "not_leak", reviewer="ben", note="look-alike")
        for r in weakest.iloc[3:4].itertuples():
            project.decisions.decide(r.eval_item_id, r.train_item_id, "unsure", reviewer="ben")
    if not list(project.workspace.exports_dir.glob("*/provenance.json")):
        project.exports.write("photos/test", project.exports.policy("soft"), fmt="csv")


def measure(project: Project, args) -> tuple[dict, str, str]:
    impact = None
    if args.predictions or args.probe:
        source = LeakSource.LIST if args.leaks else LeakSource.DECISIONS
        impact = ImpactRequest(args.split, tuple(args.predictions or ()), tuple(args.probe or ()), source, args.leaks)
    t_impact, result = 0.0, None
    if impact is not None:  # measured apart: the impact table is the slow part with 30 models and 1,000 draws
        t0 = time.perf_counter()
        result = project.impact(impact)
        t_impact = time.perf_counter() - t0
    best = {"data": float("inf"), "html": float("inf")}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        doc = report.build(project, top=args.top, impact=result)
        t1 = time.perf_counter()
        page = doc.html()
        t2 = time.perf_counter()
        best = {"data": min(best["data"], t1 - t0), "html": min(best["html"], t2 - t1)}
    text = doc.to_json()
    thumbs = re.findall(r'src="(data:image/[^"]+)"', page)
    d = doc.data
    out = {
        "workspace": str(project.path), "items": int(len(project.workspace.items())),
        "flagged_soft": {v["eval_split"]: v["checks"].get("similarity", {}).get("soft") for v in d["verdicts"]},
        "seconds_impact": round(t_impact, 2), "seconds_data": round(best["data"], 2),
        "seconds_html": round(best["html"], 2), "seconds_total": round(t_impact + best["data"] + best["html"], 2),
        "bytes_html": len(page.encode()), "bytes_json": len(text.encode()),
        "thumbnails": len(thumbs), "distinct_thumbnails": len(set(thumbs)),
        "bytes_thumbnails": sum(len(t) for t in thumbs),
        "shown": {k: {"strongest": len(s["strongest"]), "weakest": len(s.get("weakest", [])),
                      "not_shown": s["not_shown"], "items": s["items"]} for k, s in d["findings"].items()},
    }
    return out, page, text


def shots(page_file: Path, folder: Path) -> dict:
    """Screenshots per section with the network off, and the printed PDF's pages as small PNGs."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    folder.mkdir(parents=True, exist_ok=True)
    url = page_file.resolve().as_uri()
    outside = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1280, "height": 860}, offline=True)
        context.route("**/*", lambda r: r.continue_() if r.request.url == url else (outside.append(r.request.url),
                                                                                       r.abort()))
        page = context.new_page()
        page.goto(url)
        page.wait_for_load_state("load")
        for section in ("summary", "heatmaps", "findings", "impact", "thresholds", "provenance"):
            page.evaluate(f"window.scrollTo({{top: document.getElementById('{section}').getBoundingClientRect().top"
                          f" + window.scrollY - 44, behavior: 'instant'}})")  # below the sticky table of contents
            page.wait_for_timeout(150)
            page.screenshot(path=str(folder / f"screen-{section}.png"))
        browser.close()
    pdf = folder / "report.pdf"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                        "--no-pdf-header-footer", f"--print-to-pdf={pdf}", url], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
    t_pdf = time.perf_counter() - t0
    pages = int(re.search(r"Pages:\s+(\d+)", subprocess.run(["pdfinfo", str(pdf)], capture_output=True,
                                                             text=True).stdout).group(1))
    subprocess.run(["pdftoppm", "-png", "-r", "60", str(pdf), str(folder / "pdf-page")], check=True)
    for png in list(folder.glob("screen-*.png")) + list(folder.glob("pdf-page*.png")):
        img = Image.open(png).convert("RGB")
        img = img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        img.save(png, optimize=True)  # small PNGs for the docs
    return {"outside_requests": outside, "pdf_pages": pages, "pdf_bytes": pdf.stat().st_size,
            "seconds_print_to_pdf": round(t_pdf, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workspace")
    ap.add_argument("--predictions", nargs="+", metavar="FILE")
    ap.add_argument("--probe", nargs="+")
    ap.add_argument("--leaks", metavar="CSV")
    ap.add_argument("--split", metavar="DATASET/SPLIT", help="the impact table's evaluation split")
    ap.add_argument("--top", type=int, default=report.DEFAULT_TOP)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--curate", action="store_true", help="add a calibration, decisions and an export first (demo)")
    ap.add_argument("--out", help="write the page (and OUT.json) here")
    ap.add_argument("--shots", metavar="DIR", help="screenshots offline and the printed PDF's pages, into DIR")
    args = ap.parse_args()
    project = Project.open(args.workspace)
    if args.curate:
        curate(project)
    out, page, text = measure(project, args)
    target = Path(args.out) if args.out else Path(tempfile.mkdtemp()) / "report.html"
    target.write_text(page, "utf-8")
    target.with_suffix(".json").write_text(text, "utf-8")
    out["page"] = str(target)
    if args.shots:
        out.update(shots(target, Path(args.shots)))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
