"""What the curator feels: timings in a real browser (Debian's Chromium driven by Playwright) on a workspace of
100,000 flagged pairs, each key press or click timed until its result is on the screen.

    python bench/browser.py [--repeats 30] [--pairs 100000] [--workspace synthetic|photos|cats-and-dogs]

Builds .bench/browser-100k (100,000 flagged pairs over 50,000 evaluation images, 2,000 distinct 32 px images so
that every pair change fetches new pictures, decisions on 5,000 pairs, a calibration of 100,000 edited queries),
starts `streamlit run app.py` on localhost and measures, in milliseconds:

- first load of every page: navigation until the page's title is drawn, the script has finished and no element is
  still a grey placeholder (goal <= 2 s), in a new tab of a browser that opened the app before, and in a browser
  profile that never saw it (every script of the front end fetched and compiled);
- Review, → : from the key's keydown event to the first frame that shows the next pair's line and both its
  images decoded, on the browser's own clock (goal p50 <= 150, p95 <= 300);
- Review, N : decide "not a leak" and advance, the same way (the same goal);
- Review, a filter: a click on a Labels choice until the queue count changes (goal <= 300);
- Thresholds, a slider step (keyboard on the hard slider) until the operating-point line shows the new value,
  and a click on the ROC until the slider moved (goal <= 300 each).

- Review, Z : undo (the pair decided before comes back), the same way;
- with --parts firstload: Review's first load on a server that has just started, and in a second tab.

--workspace photos measures the same on real photos (built from ../shared/data, see `build_photos`): a sample
of cats_and_dogs with near-duplicates of its training photos planted among the evaluation photos (enlarged to
about 1,000 px, 100-500 KB, as a camera's export), and a sample of CIFAR-10 with ciFAIR's listed duplicates;
--workspace cats-and-dogs is all 3,000 cats_and_dogs photos (for Review's first load).

Also printed: the time until the page settles (Streamlit's "running" indicator gone), which the curator sees
as a faded page. Saves the figures to bench/browser/browser.json and a screenshot of each page.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "browser"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PAGES = {"": "Data leakage review", "Review": "Review flagged pairs", "Thresholds": "Thresholds",
         "Heatmaps": "Leakage across datasets", "Impact": "Downstream impact",
         "Export": "Export a cleaned evaluation split", "Coverage": "Coverage and contamination",
         "Shortcuts": "Shortcuts: target leakage"}


# ---- the workspace -----------------------------------------------------------------------------------------------
def build(path: Path, n_pairs: int) -> Path:
    from PIL import Image

    from leakcore.catalog import empty_items, normalise_items
    from leakcore.project import DatasetConfig, Workspace, atomic_write_text, write_parquet

    if (path / "done.json").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    ws = Workspace.create(path, encoder="phash")
    rng = np.random.default_rng(0)
    img_dir = path.parent / "browser-images"
    img_dir.mkdir(parents=True, exist_ok=True)
    n_img = 2000
    for i in range(n_img):
        f = img_dir / f"{i}.png"
        if not f.exists():
            a = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            Image.fromarray(a).resize((32, 32), Image.Resampling.BILINEAR).save(f)
    n_eval, n_train = n_pairs // 2, 60_000
    rows = []
    for split, role, n in (("test", "eval", n_eval), ("train", "train", n_train)):
        idx = np.arange(n)
        rows.append(pd.DataFrame({
            "item_id": [f"big/{split}/{i}" for i in idx], "dataset": "big", "split": split, "role": role,
            "key": idx.astype(str), "uri": [str(img_dir / f"{(i * 7 + (split == 'train')) % n_img}.png") for i in idx],
            "row": -1, "label": rng.integers(0, 10, n).astype(str), "width": 32, "height": 32,
            # each item stands for a picture of its own (the 2,000 files only keep the disk small): with one hash
            # for all, every item was identical bytes to every other, 1.4 million label conflicts
            "sha256": [f"{split}-{i}" for i in idx], "status": "ok"}))
    ws.write_items(normalise_items(pd.concat(rows + [empty_items()])))
    ws.register_dataset(DatasetConfig("big", "folder", str(img_dir), str(img_dir), {"test": "eval", "train": "train"}))
    sys.path.insert(0, str(ROOT / "bench"))
    from review import flagged_pairs  # the same queue as bench/review.py

    flagged_pairs(ws, n_eval, n_train, rng)
    # a calibration: 100,000 edited queries, one positive and one hardest negative each
    n_q = 100_000
    folder = ws.calibration_dir("phash")
    transforms = ["identity", "jpeg_q30", "hflip", "crop50", "blur", "invert"]
    families = {"identity": "copy", "jpeg_q30": "copy", "hflip": "geometric", "crop50": "cropping",
                "blur": "pixelization", "invert": "colour"}
    tf = rng.choice(transforms, n_q)
    write_parquet(pd.DataFrame({"query": [f"q{i}" for i in range(n_q)], "transform": tf,
                                "family": [families[t] for t in tf], "positive": rng.beta(8, 2, n_q),
                                "hardest_negative": rng.beta(3, 5, n_q), "hit": True}), folder / "scores.parquet")
    write_parquet(pd.DataFrame({"family": ["copy"], "transform": ["(family)"], "top1": [1.0]}),
                  folder / "robustness.parquet")
    atomic_write_text(folder / "thresholds.json", json.dumps({
        "hard": 0.95, "soft": 0.8, "auc": [{"family": "overall", "auc": 0.9}],
        "settings": {"collection": "synthetic", "queries": n_q, "target_fpr": 0.001, "transforms": transforms}}))
    (path / "done.json").write_text("{}")
    return path


SHARED = Path(os.environ.get("LEAKCORE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _planted(img, kind: int):
    """A near-duplicate of a real photo as a curator meets one: enlarged to about 1,000 px (so the file weighs
    100-500 KB, like a camera's export) after one non-semantic edit."""
    from PIL import Image, ImageEnhance, ImageOps

    img = img.convert("RGB")
    if kind == 1:
        img = ImageOps.mirror(img)
    elif kind == 2:
        w, h = img.size
        img = img.crop((w // 10, h // 10, w - w // 12, h - h // 12))
    elif kind == 3:
        img = ImageEnhance.Brightness(img).enhance(1.25)
    elif kind == 4:
        img = img.rotate(4, resample=Image.Resampling.BILINEAR, expand=False)
    scale = 1000 / max(img.size)
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)


def build_photos(path: Path, *, n_train: int = 600, n_eval: int = 300, n_planted: int = 150,
                 n_cifar: int = 1500, encoder: str = "sscd-distilled") -> Path:
    """The real-photo workspace: a sample of cats_and_dogs (training photos, validation photos and near-duplicates
    of training photos planted among them, 100-500 KB each) and a sample of CIFAR-10 (ciFAIR's listed
    test/train duplicates and random others), scanned with `encoder`."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from leakcore.api import Project

    if (path / "done.json").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    rng = np.random.default_rng(0)
    src = SHARED / "cats_and_dogs"
    if not src.exists():
        raise SystemExit(f"no real photos at {src} (set LEAKCORE_SHARED_DATA)")
    photos = path.parent / f"{path.name}-images" / "photos"
    shutil.rmtree(photos, ignore_errors=True)
    train_files = []
    for split, dest, n in (("train", "train", n_train), ("validation", "test", n_eval)):
        for label in ("cats", "dogs"):
            files = sorted((src / split / label).glob("*.jpg"))
            for f in [files[i] for i in rng.choice(len(files), n // 2, replace=False)]:
                (photos / dest / label).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, photos / dest / label / f.name)
                if dest == "train":
                    train_files.append((label, f))
    for i, j in enumerate(rng.choice(len(train_files), n_planted, replace=False)):
        label, f = train_files[j]
        _planted(Image.open(f), i % 5).save(photos / "test" / label / f"copy_{i}_{f.stem}.jpg", quality=95)
    cifar = path.parent / f"{path.name}-images" / "cifar" / "cifar.parquet"
    cifar.parent.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(SHARED / "cifar10" / "cifar10.parquet")
    dup = pd.read_csv(SHARED / "cifar10" / "duplicates_cifar10.csv")
    split, index = table.column("split").to_numpy(zero_copy_only=False), table.column("index").to_numpy()
    test_ids = set(dup["TestID"]) | set(rng.choice(10_000, n_cifar // 3, replace=False).tolist())
    train_ids = set(dup["TrainID"]) | set(rng.choice(50_000, n_cifar, replace=False).tolist())
    keep = np.flatnonzero(((split == "test") & np.isin(index, list(test_ids)))
                          | ((split == "train") & np.isin(index, list(train_ids))))
    pq.write_table(table.take(pa.array(keep)), cifar)
    ws = Project.create(path, encoder=encoder)
    ws.add("photos", photos, roles={"train": "train", "test": "eval"})
    ws.add("cifar", cifar, fmt="hf-parquet", roles={"train": "train", "test": "eval"})
    ws.scan()
    (path / "done.json").write_text("{}")
    return path


def build_cats_and_dogs(path: Path, encoder: str = "sscd-distilled", n_planted: int = 150) -> Path:
    """All 3,000 photos of cats_and_dogs (train: training, validation: evaluation), scanned where they lie, and a
    second evaluation set of `n_planted` near-duplicates of its training photos (a copy detector flags none of
    the originals' look-alikes: without them the queue would be empty)."""
    from PIL import Image

    from leakcore.api import Project

    if (path / "done.json").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    rng = np.random.default_rng(1)
    copies = path.parent / f"{path.name}-images"
    shutil.rmtree(copies, ignore_errors=True)
    train = sorted((SHARED / "cats_and_dogs" / "train").glob("*/*.jpg"))
    for i, j in enumerate(rng.choice(len(train), n_planted, replace=False)):
        f = train[j]
        (copies / "test" / f.parent.name).mkdir(parents=True, exist_ok=True)
        _planted(Image.open(f), i % 5).save(copies / "test" / f.parent.name / f"copy_{i}_{f.stem}.jpg", quality=95)
    ws = Project.create(path, encoder=encoder)
    ws.add("cats_and_dogs", SHARED / "cats_and_dogs", roles={"train": "train", "validation": "eval"})
    ws.add("copies", copies, roles={"test": "eval"})
    ws.scan()
    (path / "done.json").write_text("{}")
    return path


# ---- the server and the browser -------------------------------------------------------------------------------------
SERVER_PID: dict[str, int] = {}  # address -> the server's process id (its CPU time per key press)


def server_cpu_ms(url: str) -> float:
    """CPU time the server process has used so far (all its threads), in ms; 0 when unknown. On a shared, loaded
    machine this is the steadier figure: the wall-clock times also hold the waits for a free core."""
    try:
        fields = Path(f"/proc/{SERVER_PID[url]}/stat").read_text().rsplit(")", 1)[1].split()
        return 1000 * (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (KeyError, OSError, IndexError, ValueError):
        return 0.0


APP_ROOT = ROOT  # the checkout whose app is served (--app: another one, for before / after figures in one run)


def serve(ws: Path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, LEAKCORE_HOME=str(ws.parent / "browser-home"))
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(APP_ROOT / "app.py"), "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true", "--", "--workspace", str(ws)],
                            cwd=APP_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    SERVER_PID[url] = proc.pid
    for _ in range(120):
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("streamlit did not start")


SETTLED = ("() => !document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"], "
           "[data-testid=\"stStatusWidgetRunningManIcon\"]')")
# a first load is over when nothing runs and nothing is still a placeholder (Streamlit draws grey skeletons for
# elements whose code has not arrived yet, and for the page before its script has sent anything)
LOADED = ("() => !document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"], "
          "[data-testid=\"stStatusWidgetRunningManIcon\"], [data-testid=\"stSkeleton\"], "
          "[data-testid=\"stSkeletonElement\"], [data-testid=\"stAppSkeleton\"]')")
PAIR_SHOWN = """(prev) => {
  const line = [...document.querySelectorAll('[data-testid="stMarkdownContainer"]')]
      .map(e => e.innerText).find(t => t.startsWith('Pair '));
  if (!line || line === prev) return false;
  const imgs = [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stImage"] img')];
  return imgs.length >= 2 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""
PAIR_LINE = """() => ([...document.querySelectorAll('[data-testid="stMarkdownContainer"]')]
      .map(e => e.innerText).find(t => t.startsWith('Pair ')) || '')"""
# the Thresholds page's line of rates at the operating points (the server's answer to a slider move; the slider's
# own value label changes in the browser at once and says nothing)
OPERATING_LINE = """() => [...document.querySelectorAll('[data-testid="stMarkdownContainer"]')]
      .map(e => e.innerText).filter(t => t.startsWith('At hard')).join('|')"""
TEXT_CHANGED = """([sel, prev]) => { const e = [...document.querySelectorAll(sel)].map(x => x.innerText).join('|');
  return e !== prev; }"""


def _timed_key(page, key: str, condition: str, arg=None, timeout: int = 30_000) -> tuple[float, float, float]:
    """(ms from the key's own keydown event to the first frame where `condition` holds, measured by the browser's
    clock, ms until the page settled seen from here, ms until the pair line alone changed (its images may still
    be arriving or decoding)). The first figure leaves out Playwright's own round trips."""
    page.evaluate("""([cond, arg, lineOf]) => {
      const test = eval(cond);
      const line = eval(lineOf);
      window.__leakTiming = new Promise((resolve) => {
        let t0 = null, tLine = null;
        window.addEventListener("keydown", (e) => { t0 = e.timeStamp; }, {capture: true, once: true});
        const check = () => {
          if (t0 !== null && tLine === null && line() !== arg) tLine = performance.now() - t0;
          if (t0 !== null && test(arg)) resolve([performance.now() - t0, tLine ?? performance.now() - t0]);
          else requestAnimationFrame(check);
        };
        requestAnimationFrame(check);
      });
    }""", [condition, arg, PAIR_LINE])
    t0 = time.perf_counter()
    page.keyboard.press(key)
    shown, line = page.evaluate("() => window.__leakTiming")
    page.wait_for_function(SETTLED, polling="raf", timeout=timeout)
    return float(shown), 1000 * (time.perf_counter() - t0), float(line)


def _timed(page, act, condition: str, arg=None, timeout: int = 30_000) -> tuple[float, float]:
    """(ms until `condition` holds, ms until the page settled) after `act()`."""
    t0 = time.perf_counter()
    act()
    page.wait_for_function(condition, arg=arg, polling="raf", timeout=timeout)
    shown = time.perf_counter() - t0
    page.wait_for_function(SETTLED, polling="raf", timeout=30_000)
    return 1000 * shown, 1000 * (time.perf_counter() - t0)


def _summary(name: str, values: list[tuple[float, float]], goal: str) -> dict:
    shown = [v[0] for v in values]
    settled = [v[1] for v in values]
    p50, p95 = float(np.percentile(shown, 50)), float(np.percentile(shown, 95))
    out = {"n": len(values), "p50_ms": p50, "p95_ms": p95, "max_ms": max(shown),
           "settled_p50_ms": float(statistics.median(settled))}
    line = ""
    if len(values[0]) > 2:  # a key press: also when the pair's line alone was on screen
        out["line_p50_ms"] = float(statistics.median(v[2] for v in values))
        line = f", line alone p50 {out['line_p50_ms']:.0f} ms"
    print(f"  {name:38s} p50 {p50:5.0f} ms  p95 {p95:5.0f} ms  max {max(shown):5.0f} ms  "
          f"(settled p50 {out['settled_p50_ms']:.0f} ms{line})  goal {goal}", flush=True)
    return out


def _cpu_per_press(result: dict, url: str, since: float, presses: int) -> float:
    """Record the server's CPU ms per key press since `since`; return the CPU time now."""
    now = server_cpu_ms(url)
    if now and since:
        result["server_cpu_ms_per_press"] = (now - since) / presses
        print(f"  {'':38s} server CPU {result['server_cpu_ms_per_press']:.0f} ms per press", flush=True)
    return now


def measure(url: str, repeats: int, parts: set[str]) -> dict:
    from playwright.sync_api import expect, sync_playwright

    results: dict = {}
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        if "loads" in parts:
            # first loads: every page in a new tab (a new session), first in browser profiles that never saw the
            # app, then in one that opened it before (the one reported against the goal; the first also pays for
            # the server's caches)
            loads = {}
            cached = browser.new_context(viewport={"width": 1400, "height": 1000})
            for rnd in ("cold", "warm"):
                if rnd == "warm":  # the curator opened the app once before
                    page = cached.new_page()
                    page.goto(url)
                    expect(page.get_by_role("heading", name=PAGES[""]).first).to_be_visible(timeout=120_000)
                    page.wait_for_function(LOADED, polling="raf", timeout=120_000)
                    page.close()
                for path, title in PAGES.items():
                    # cold: a browser profile that never saw the app (every script fetched and compiled);
                    # warm: a new tab of a browser that opened the app before (its scripts cached, as for a curator)
                    page = browser.new_page(viewport={"width": 1400, "height": 1000}) if rnd == "cold" else cached.new_page()
                    t0 = time.perf_counter()
                    page.goto(f"{url}/{path}")
                    expect(page.get_by_role("heading", name=title).first).to_be_visible(timeout=120_000)
                    page.wait_for_function(LOADED, polling="raf", timeout=120_000)
                    loads.setdefault(path or "Home", {})[rnd] = 1000 * (time.perf_counter() - t0)
                    if rnd == "warm":
                        page.screenshot(path=str(OUT / f"{path or 'Home'}.png"))
                    page.close()
            results["first_load_ms"] = loads
            for name, v in loads.items():
                print(f"  first load {name:27s} {v['warm']:5.0f} ms (a browser that never saw the app: {v['cold']:.0f} ms)  "
                      "goal <= 2000", flush=True)
            cached.close()

        if "review" in parts:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/Review")
            expect(page.get_by_role("heading", name="Review flagged pairs")).to_be_visible(timeout=120_000)
            page.get_by_role("textbox", name="Reviewer").fill("bench")
            page.get_by_role("textbox", name="Reviewer").press("Enter")
            expect(page.get_by_role("button", name="Hard leak")).to_be_enabled(timeout=30_000)
            page.wait_for_function(SETTLED, polling="raf", timeout=30_000)
            page.locator("h1").first.click()
            cpu = server_cpu_ms(url)
            nxt = [_timed_key(page, "ArrowRight", PAIR_SHOWN, page.evaluate(PAIR_LINE)) for _ in range(repeats)]
            results["next"] = _summary("Review → next pair", nxt, "p50 <= 150, p95 <= 300")
            cpu = _cpu_per_press(results["next"], url, cpu, repeats)
            dec = []
            for _ in range(repeats):
                page.locator("h1").first.click()
                dec.append(_timed_key(page, "n", PAIR_SHOWN, page.evaluate(PAIR_LINE)))
            results["decide"] = _summary("Review N: decide and advance", dec, "p50 <= 150, p95 <= 300")
            cpu = _cpu_per_press(results["decide"], url, cpu, repeats)
            und = []
            for _ in range(repeats):  # each undo brings back the pair decided before (this reviewer's own)
                page.locator("h1").first.click()
                und.append(_timed_key(page, "z", PAIR_SHOWN, page.evaluate(PAIR_LINE)))
            results["undo"] = _summary("Review Z: undo", und, "p50 <= 150, p95 <= 300")
            _cpu_per_press(results["undo"], url, cpu, repeats)
            progress = "[data-testid='stProgress']"
            flt = []
            unchanged = 0
            for i in range(min(repeats, 12)):
                choice = ["same", "different", "any"][i % 3]
                before = page.evaluate(f"() => [...document.querySelectorAll(\"{progress}\")].map(x => x.innerText).join('|')")
                try:
                    flt.append(_timed(page, lambda: page.locator("[data-testid='stSidebar']").get_by_text(
                        choice, exact=True).click(), TEXT_CHANGED, [progress, before], 5000))
                except Exception:  # noqa: BLE001 - a choice that matches as many pairs as the one before
                    unchanged += 1
                    page.wait_for_function(SETTLED, polling="raf", timeout=30_000)
            if unchanged:
                print(f"  ({unchanged} Labels clicks changed no count: as many pairs as before)")
            if flt:
                results["filter"] = _summary("Review: a Labels filter", flt, "<= 300")
            page.screenshot(path=str(OUT / "Review-after.png"))
            page.close()

        if "thresholds" in parts:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/Thresholds")
            page.wait_for_selector(".vega-embed svg.marks", timeout=120_000)
            page.wait_for_function(LOADED, polling="raf", timeout=30_000)
            sld = []
            thumb = page.locator("[data-testid='stSlider'] input[type='range']").first
            for i in range(min(repeats, 12)):
                before = page.evaluate(OPERATING_LINE)
                thumb.focus()
                sld.append(_timed(page, lambda: page.keyboard.press("ArrowLeft" if i % 2 == 0 else "ArrowRight"),
                                  f"(prev) => ({OPERATING_LINE})() !== prev", before))
            results["slider"] = _summary("Thresholds: a slider step", sld, "<= 300")
            roc = []
            # a click anywhere in the plot picks the nearest clickable point of a curve (Vega-Lite's nearest
            # selection); clicks walk along the plot so that each picks another point
            box = page.locator(".vega-embed svg.marks").first.bounding_box()
            targets = [(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
                       for fx, fy in ((0.45, 0.55), (0.6, 0.35), (0.5, 0.45), (0.7, 0.3), (0.55, 0.4), (0.65, 0.32))]
            slider_text = "[data-testid='stSlider']"
            missed = 0
            for x, y in (targets * 4)[:min(repeats, 12)]:
                before = page.evaluate(f"() => [...document.querySelectorAll(\"{slider_text}\")].map(e => e.innerText).join('|')")
                try:
                    roc.append(_timed(page, lambda: page.mouse.click(x, y), TEXT_CHANGED, [slider_text, before], 5000))
                except Exception:  # noqa: BLE001 - a click that picked the point already in force moves nothing
                    missed += 1
            if missed:
                print(f"  ({missed} ROC clicks moved nothing: the same point as the one before)")
            if roc:
                results["roc_click"] = _summary("Thresholds: a click on the ROC", roc, "<= 300")
            page.screenshot(path=str(OUT / "Thresholds-after.png"))
        browser.close()
    return results

def first_review_load(url: str) -> dict:
    """Review's first load on a server that has just started (every cache cold), then in a second new tab (the
    server's caches warm): navigation until the title, the pair line and both images are on the screen."""
    from playwright.sync_api import expect, sync_playwright

    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        for rnd in ("server cold", "server warm"):
            page = ctx.new_page()
            t0 = time.perf_counter()
            page.goto(f"{url}/Review")
            expect(page.get_by_role("heading", name="Review flagged pairs")).to_be_visible(timeout=300_000)
            page.wait_for_function(PAIR_SHOWN, arg="", polling="raf", timeout=300_000)
            page.wait_for_function(LOADED, polling="raf", timeout=300_000)
            out[rnd] = 1000 * (time.perf_counter() - t0)
            print(f"  Review first load, {rnd:12s} {out[rnd]:6.0f} ms  goal <= 2000", flush=True)
            page.close()
        browser.close()
    return out


def _demo(path: Path) -> Path:
    from leakcore.demo import build_demo

    if not (path / "done.json").exists():
        build_demo(path)
        (path / "done.json").write_text("{}")
    return path


WORKSPACES = {  # name -> (builder, what it is)
    "synthetic": (lambda pairs: build(ROOT / ".bench" / f"browser-{pairs // 1000}k", pairs),
                  "{pairs:,} flagged pairs of 32 px synthetic images"),
    "photos": (lambda pairs: build_photos(ROOT / ".bench" / "browser-photos"),
               "real photos: a cats_and_dogs sample with planted near-duplicates (100-500 KB) and a CIFAR-10 sample"),
    "demo": (lambda pairs: _demo(ROOT / ".bench" / "browser-demo"), "the demo workspace (`leakcore demo`)"),
    "cats-and-dogs": (lambda pairs: build_cats_and_dogs(ROOT / ".bench" / "browser-cats-and-dogs"),
                      "all 3,000 cats_and_dogs photos and 150 planted near-duplicates"),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--workspace", default="synthetic", choices=sorted(WORKSPACES))
    ap.add_argument("--parts", default="loads,review,thresholds",
                    help="which measurements, comma-separated (also: firstload, Review's first load on a new server)")
    ap.add_argument("--out", help="also write the figures to this JSON file")
    ap.add_argument("--app", help="serve the app of this checkout instead (e.g. `git archive` of an older commit)")
    args = ap.parse_args()
    if args.app:
        global APP_ROOT
        APP_ROOT = Path(args.app).resolve()
    if CHROMIUM is None:
        raise SystemExit("no Chromium: apt-get install chromium")
    builder, what = WORKSPACES[args.workspace]
    ws = builder(args.pairs)
    parts = set(args.parts.split(","))
    proc, url = serve(ws)
    results: dict = {}
    try:
        print(f"browser timings, {what.format(pairs=args.pairs)}, Chromium headless on this machine:", flush=True)
        if "firstload" in parts:
            results["review_first_load_ms"] = first_review_load(url)
        results.update(measure(url, args.repeats, parts))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    if args.workspace == "synthetic" and args.parts == "loads,review,thresholds":  # a partial run keeps the record
        (OUT / "browser.json").write_text(json.dumps(results, indent=1))
        print(f"saved {(OUT / 'browser.json').relative_to(ROOT)}")


if __name__ == "__main__":
    main()
