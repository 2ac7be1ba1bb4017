"""The demo workspace: scikit-image's sample photographs with leaks planted the ways they arise in practice.

Everything is built offline in seconds. The planted truth is kept in `demo_truth.csv` so the app can show
what was found and what was missed.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageEnhance, ImageOps

from leakcore.api import Project
from leakcore.errors import InvalidInput

log = logging.getLogger(__name__)

TRUTH_NAME = "demo_truth.csv"
TILE = 160
# (scikit-image loader name, label) for the images that ship inside the package.
_COLOUR = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
           "stereo_motorcycle", "colorwheel"]
_GREY = ["camera", "coins", "moon", "brick", "grass", "gravel", "clock", "horse", "cell", "page"]
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


def _sample(name: str) -> Image.Image:
    import skimage.data

    arr = getattr(skimage.data, name)()
    if isinstance(arr, tuple):
        arr = arr[0]
    img = Image.fromarray(np.asarray(arr))
    return img.convert("RGB")


def _tiles(img: Image.Image, n: int = 3, shift: float = 0.0) -> list[Image.Image]:
    """An n x n grid of square tiles (offset by `shift` of a tile), each resized to TILE px."""
    side = min(img.width, img.height) // n
    out = []
    for r in range(n):
        for c in range(n):
            x = int((c + shift) * side)
            y = int(r * side)
            if x + side > img.width or y + side > img.height:
                continue
            out.append(img.crop((x, y, x + side, y + side)).resize((TILE, TILE), Image.Resampling.LANCZOS))
    return out


def _planted(kind: str, img: Image.Image) -> Image.Image:
    if kind == "exact copy":
        return img
    if kind == "re-encoded (JPEG q=30)":
        import io

        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=30)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if kind == "resized (50%)":
        return img.resize((img.width // 2, img.height // 2), Image.Resampling.BILINEAR)
    if kind == "cropped (80% centre)":
        m = img.width // 10
        return img.crop((m, m, img.width - m, img.height - m))
    if kind == "flipped":
        return ImageOps.mirror(img)
    if kind == "colour-shifted":
        return ImageEnhance.Color(ImageEnhance.Brightness(img).enhance(1.25)).enhance(1.6)
    raise ValueError(kind)


PLANTED_KINDS = ["exact copy", "re-encoded (JPEG q=30)", "resized (50%)", "cropped (80% centre)", "flipped", "colour-shifted"]


def build_demo(path: str | Path, *, encoder: str = "sscd-distilled", scan: bool = True, calibrate: bool = True,
               progress=None) -> Project:
    """Create (or refresh) the demo workspace at `path` and scan it."""
    path = Path(path)
    project = Project.create(path, encoder=encoder)
    truth_path = project.workspace.paths.file(TRUTH_NAME)
    if truth_path.exists() and project.workspace.datasets:
        if scan:
            project.scan(progress=progress)
        if calibrate and project.scores.calibration() is None:
            project.calibrate("photos/train", queries=DEMO_CALIBRATION_QUERIES, progress=progress)
        return project
    images_dir = project.workspace.paths.images
    photos, bench = images_dir / "photos", images_dir / "benchmark"
    for d in (photos, bench):
        shutil.rmtree(d, ignore_errors=True)
    truth = []

    def save(img: Image.Image, root: Path, split: str, label: str, name: str, quality: int = 92) -> str:
        dest = root / split / label / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        img.save(dest, quality=quality)
        return f"{root.name}/{split}/{label}/{name}"

    rng = np.random.default_rng(0)
    leak_no = 0
    for s_i, name in enumerate(_COLOUR + _GREY[:6]):
        src = _sample(name)
        tiles = _tiles(src)
        train_tiles, test_tiles = tiles[:6], tiles[6:]
        train_ids = [save(t, photos, "train", name, f"{name}_{i}.jpg") for i, t in enumerate(train_tiles)]
        for i, t in enumerate(test_tiles):
            save(t, photos, "test", name, f"{name}_fresh_{i}.jpg")
        if s_i < len(_COLOUR):  # colour sources carry the planted intra-dataset leaks
            kind = PLANTED_KINDS[s_i % len(PLANTED_KINDS)]
            j = int(rng.integers(0, len(train_tiles)))
            eval_id = save(_planted(kind, train_tiles[j]), photos, "test", name, f"{name}_leak_{leak_no}.jpg")
            truth.append({"eval_item_id": eval_id, "train_item_id": train_ids[j], "kind": kind})
            leak_no += 1
        if s_i in (0, 2, 4):  # overlapping patches of one high-resolution image split across train and test
            shifted = _tiles(src, shift=0.3)[0]
            eval_id = save(shifted, photos, "test", name, f"{name}_overlap.jpg")
            truth.append({"eval_item_id": eval_id, "train_item_id": train_ids[0], "kind": "overlapping patch (70%)"})
        if s_i == 2:  # a copy filed under another label: a leak and a label conflict at once
            eval_id = save(train_tiles[2], bench, "test", "rocket", f"{name}_filed_as_rocket.jpg", quality=92)
            truth.append({"eval_item_id": eval_id, "train_item_id": train_ids[2],
                          "kind": "inter-dataset, copy under another label (label conflict)"})
        if s_i in (1, 3, 5, 7):  # a second dataset that shares images with the first (inter-dataset)
            kind = "re-encoded (JPEG q=30)" if s_i % 4 == 1 else "resized (50%)"
            eval_id = save(_planted(kind, train_tiles[1]), bench, "test", name, f"{name}_shared.jpg", quality=85)
            truth.append({"eval_item_id": eval_id, "train_item_id": train_ids[1], "kind": f"inter-dataset, {kind}"})
    for name in _GREY[6:]:
        for i, t in enumerate(_tiles(_sample(name))[:3]):
            save(t, bench, "test", name, f"{name}_{i}.jpg")
    broken = bench / "test" / "clock" / "clock_truncated.jpg"
    broken.write_bytes((bench / "test" / "clock" / "clock_0.jpg").read_bytes()[:900])
    project.add("photos", photos)
    project.add("benchmark", bench, roles={"test": "eval"})
    items = project.workspace.items()
    by_rel = {}
    for r in items.itertuples():
        rel = Path(r.uri).relative_to(images_dir).as_posix()
        by_rel[rel] = r.item_id
    truth_df = pd.DataFrame(truth)
    truth_df["eval_item_id"] = truth_df["eval_item_id"].map(by_rel)
    truth_df["train_item_id"] = truth_df["train_item_id"].map(by_rel)
    truth_df.to_csv(truth_path, index=False)
    if scan:
        project.scan(progress=progress)
    if calibrate:  # the Thresholds page opens with its ROC; the encoder's own thresholds stay in force
        project.calibrate("photos/train", queries=DEMO_CALIBRATION_QUERIES, progress=progress)
    return project


DEMO_CALIBRATION_QUERIES = 88  # every training photo of the demo


def planted_truth(ws) -> pd.DataFrame | None:
    """The demo's planted pairs, or None for a workspace that is not a demo."""
    p = ws.paths.file(TRUTH_NAME)
    return pd.read_csv(p) if p.exists() else None


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_cifar10(dest: Path) -> Path:
    """Fetch CIFAR-10 (python batches) from its official source and check the md5; returns the batches folder."""
    dest.mkdir(parents=True, exist_ok=True)
    folder = dest / "cifar-10-batches-py"
    if folder.exists():
        return folder
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        archive = Path(tmp) / "cifar-10-python.tar.gz"
        urllib.request.urlretrieve(CIFAR10_URL, archive)  # noqa: S310 - fixed https URL
        if _md5(archive) != CIFAR10_MD5:
            raise InvalidInput(f"CIFAR-10 archive md5 mismatch (expected {CIFAR10_MD5}); not using it")
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    return folder


def build_cifar_demo(path: str | Path, cifar_source: str, *, encoder: str = "sscd-distilled", progress=None) -> Project:
    """A realistic demo: CIFAR-10 from a batches folder, the Hugging Face Parquet, or 'download'."""
    project = Project.create(path, encoder=encoder)
    source = download_cifar10(project.workspace.paths.downloads) if cifar_source == "download" else Path(cifar_source)
    project.add("cifar10", source)
    project.scan(progress=progress)
    return project


__all__ = ["build_demo", "build_cifar_demo", "planted_truth", "PLANTED_KINDS"]
