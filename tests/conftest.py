"""Fixtures made by the tests themselves: tiny images in every layout, including corrupt ones."""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

# Browser assertions wait up to 20 s instead of Playwright's 5 s: on 2 loaded cores a sidebar drawn after a reload
# once took longer than 5 s. Only an assertion that fails waits the longer time.
try:
    from playwright.sync_api import expect

    expect.set_options(timeout=20_000)
except ImportError:  # without Playwright the browser tests skip
    pass


# the Review page takes a decision key only 0.2 s after its pair was drawn (ui/review_ui.LOOK_S); a test's scripted
# click follows the run at once (the guard's own test sets the wait back)
os.environ.setdefault("LEAKCORE_REVIEW_LOOK_S", "0")


def finish_jobs(at):
    """Wait for the dashboard's server jobs (`ui.jobs`: a scan, a calibration, an audit, a coverage measurement run
    in a thread of the server) and draw the page again, as its bar's fragment does in a browser once a job ends."""
    from ui import jobs

    jobs.wait()
    return at.run()


@pytest.fixture(autouse=True)
def _jobs_end_with_their_test():
    """A job a test's page started ends before the next test (its workspace is the test's temporary folder)."""
    yield
    if "ui.jobs" in sys.modules:
        sys.modules["ui.jobs"].wait()


def photo(seed: int, size=(48, 40)) -> Image.Image:
    """A deterministic, textured RGB picture (smooth blobs plus noise), distinct per seed."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.zeros((h, w, 3))
    for c in range(3):
        for _ in range(4):
            cx, cy, s = rng.random(3)
            img[..., c] += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (0.02 + 0.1 * s))
    img += rng.normal(0, 0.05, img.shape)
    img = (255 * (img - img.min()) / (np.ptp(img) + 1e-9)).astype(np.uint8)
    return Image.fromarray(img)


def jpeg_bytes(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def odd_images(tmp_path) -> dict[str, Path]:
    """One file per kind of awkward input."""
    d = tmp_path / "odd"
    d.mkdir()
    base = photo(1, (64, 48))
    files = {}
    good = jpeg_bytes(base)
    files["ok_jpeg"] = d / "ok.jpg"
    files["ok_jpeg"].write_bytes(good)
    files["truncated"] = d / "truncated.jpg"
    files["truncated"].write_bytes(good[: len(good) // 2])
    files["empty"] = d / "empty.jpg"
    files["empty"].write_bytes(b"")
    files["text"] = d / "text.jpg"
    files["text"].write_text("this is not an image")
    files["cmyk"] = d / "cmyk.jpg"
    base.convert("CMYK").save(files["cmyk"], format="JPEG")
    files["png16"] = d / "gray16.png"
    arr16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(arr16).save(files["png16"])
    files["palette_alpha"] = d / "palette.png"
    pal = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    pal.save(files["palette_alpha"], transparency=0)
    files["rgba"] = d / "rgba.png"
    base.convert("RGBA").save(files["rgba"])
    files["exif_rotated"] = d / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    base.save(files["exif_rotated"], format="JPEG", exif=exif.tobytes())
    files["gif_animated"] = d / "anim.gif"
    frames = [photo(i, (32, 32)).convert("P") for i in range(3)]
    frames[0].save(files["gif_animated"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    files["huge_header"] = d / "huge.png"
    # A PNG whose IHDR claims 100000 x 100000 pixels.
    small = png_bytes(Image.new("RGB", (1, 1)))
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    files["huge_header"].write_bytes(small[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + small[33:])
    files["gray"] = d / "gray.png"
    base.convert("L").save(files["gray"])
    return files


def open_page(ws_path, page: str, tmp_path, monkeypatch):
    """A page of the dashboard on the workspace at `ws_path`, opened as a user reaches it (Home first, then the
    sidebar), with the server's own folder under `tmp_path`; no exception on the way."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LEAKCORE_WORKSPACE", str(ws_path))
    monkeypatch.setenv("LEAKCORE_HOME", str(tmp_path / "home"))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.run()
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def make_folder_dataset(root: Path, n_train: int = 6, n_test: int = 3, leaks=(), seed0: int = 0) -> Path:
    """ROOT/train/<cls>/*.jpg and ROOT/test/<cls>/*.jpg; `leaks` = test indices that copy train images."""
    for split, n, offset in (("train", n_train, seed0), ("test", n_test, seed0 + 1000)):
        for i in range(n):
            cls = "cat" if i % 2 == 0 else "dog"
            path = root / split / cls / f"{split}_{i:03d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            seed = seed0 + (i if split == "test" and i in leaks else offset + i)
            photo(seed, (64, 48)).save(path, quality=92)
    return root


def make_photo_folder(root: Path, n_train: int, n_test: int = 4, leaks=(0, 1)) -> Path:
    """ROOT/train/x/*.jpg and ROOT/test/x/*.jpg at 96 x 80 px: photos, for which a scan verifies by default (local
    features are computed); `leaks` = test indices that copy training images."""
    for split, n, offset in (("train", n_train, 0), ("test", n_test, 1000)):
        (root / split / "x").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            photo(i if split == "test" and i in leaks else offset + i, (96, 80)).save(
                root / split / "x" / f"{split}_{i:03d}.jpg", quality=92)
    return root


@pytest.fixture
def folder_dataset(tmp_path) -> Path:
    return make_folder_dataset(tmp_path / "animals", leaks=(0, 2))


@pytest.fixture
def cifar_folder(tmp_path) -> Path:
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 255, size=(4, 3072), dtype=np.uint8)
        with open(d / name, "wb") as fh:
            pickle.dump({"data": data, "labels": [0, 1, 2, 1]}, fh)
    with open(d / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": ["airplane", "automobile", "bird"]}, fh)
    return d


@pytest.fixture
def hf_parquet(tmp_path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for i in range(6):
        rows.append({"index": i % 3, "split": "train" if i < 3 else "test", "label": i % 2,
                     "label_name": ["cat", "dog"][i % 2], "image": {"bytes": jpeg_bytes(photo(i)), "path": None}})
    path = tmp_path / "hf.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture
def coco_dataset(tmp_path) -> Path:
    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    images, anns = [], []
    for i in range(3):
        name = f"{i:012d}.jpg"
        photo(50 + i).save(root / "val2017" / name)
        images.append({"id": 100 + i, "file_name": name, "width": 48, "height": 40})
        anns.append({"id": 1000 + i, "image_id": 100 + i, "category_id": 1 + (i % 2), "bbox": [0, 0, 5, 5]})
    (root / "annotations").mkdir()
    path = root / "annotations" / "instances_val2017.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}]}))
    return path


# ---- workspaces built once per run (shared by pytest-xdist's workers) -----------------------------------------
# A scan (or the demo) is the costly part of many tests. Each is built once here; a test that only reads uses the
# built one, a test that writes gets its own copy (`copy_workspace`), so tests stay independent of order.
# The copies' items still point at the images under the session's folder: no test changes a dataset's images.


def built_once(tmp_path_factory, name: str, build):
    """`build(folder)` run once per test run, even across pytest-xdist's workers: the first worker to ask builds it
    under a lock in the run's shared temporary folder, the others wait and reuse it (each worker building its own
    copy cost a CPU each time: the demo is half a minute). Returns what `build` returned, kept as JSON."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if base.name.startswith("popen-gw"):  # a worker of pytest-xdist: the run's folder is the parent
        base = base.parent
    root, done = base / f"built-{name}", base / f"built-{name}.json"
    with FileLock(str(base / f"built-{name}.lock")):
        if not done.exists():
            if root.exists():  # a build that failed half-way in another worker: start again
                shutil.rmtree(root)
            root.mkdir()
            done.write_text(json.dumps(build(root)))
    return json.loads(done.read_text())


def copy_workspace(src: Path, dest: Path) -> Path:
    """A private copy of the workspace folder `src` at `dest` (the images it reads stay where they are)."""
    shutil.copytree(src, dest)
    return dest


def make_scanned_workspace(root: Path) -> Path:
    """ROOT/animals (6 training images, 4 test images of which 3 copy training ones) in a phash workspace at
    ROOT/ws, scanned; returns the workspace's path."""
    from leakcore.ingest import add_dataset
    from leakcore.project import Workspace
    from leakcore.scan import scan

    data = make_folder_dataset(root / "animals", n_train=6, n_test=4, leaks=(0, 1, 2))
    ws = Workspace.create(root / "ws", encoder="phash")
    add_dataset(ws, "animals", data)
    scan(ws)
    return ws.path


@pytest.fixture(scope="session")
def scanned_workspace_built(tmp_path_factory) -> Path:
    """The scanned animals workspace, built once; never written to (copy it with `copy_workspace`)."""
    return Path(built_once(tmp_path_factory, "scanned", lambda root: str(make_scanned_workspace(root))))


@pytest.fixture(scope="session")
def calibrated_workspace_built(tmp_path_factory, scanned_workspace_built) -> Path:
    """The scanned animals workspace with a phash calibration on animals/train (6 queries), built once."""
    from leakcore import calibrate
    from leakcore.project import Workspace

    def build(root: Path) -> str:
        path = copy_workspace(scanned_workspace_built, root / "ws")
        calibrate.calibrate(Workspace.open(path), "animals/train", queries=6)
        return str(path)

    return Path(built_once(tmp_path_factory, "calibrated", build))


@pytest.fixture(scope="session")
def demo_built(tmp_path_factory) -> SimpleNamespace:
    """`leakcore demo DIR` run once: the CLI's exit code and what it printed, and the workspace's path.
    Never written to: a test that writes works on a copy."""
    from leakcore.cli import main

    def build(root: Path) -> dict:
        path = root / "demo"
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = main(["demo", str(path)])
        return {"path": str(path), "rc": rc, "out": out.getvalue()}

    built = built_once(tmp_path_factory, "demo", build)
    return SimpleNamespace(path=Path(built["path"]), rc=built["rc"], out=built["out"])


# ---- the order pytest-xdist hands out the test files --------------------------------------------------------
# `make test` runs `--dist loadfile --no-loadscope-reorder`: each file is one unit of work, handed out in the order
# below (xdist's own reordering put the files with the most tests first, so the long browser files, one to five tests
# each, started last and ended the run alone). Longest first, measured alone on 2 cores; xdist queues a second file
# behind each worker's first at once, so four short files follow the four longest (they wait behind them, not a long
# file). Files not named keep their collection order after these.
FIRST = ["test_pages_browser.py", "test_team_browser.py", "test_browser.py", "test_pages_photos_browser.py",
         "test_search.py", "test_images.py", "test_catalog.py", "test_workspace.py",
         "test_browser_writes.py", "test_shortcuts.py", "test_app.py", "test_verify.py",
         "test_access.py", "test_ray.py", "test_scan.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))  # stable: a file's own order is kept
