"""Every page as a curator meets it, in a real browser, on a workspace of real photos (see test_pages_browser.py for
what the walk does and what fails it).

The workspace is a sample of ../shared/data/hymenoptera built by the test; it is skipped where that folder is absent
(a user's clone), and runs in CI, which has it.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from leakcore.api import Project

from test_browser import CHROMIUM, _serve
from test_pages_browser import _walk

HYMENOPTERA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hymenoptera"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: `apt-get install chromium` (Debian) to run the browser test"),
]


def _photo_workspace(root: Path) -> Project:
    """Real photos: 24 ants and 24 bees of hymenoptera's train split, 12 + 12 of val, one val photo also copied
    into train re-encoded and one cropped (leaks a curator would find)."""
    from PIL import Image

    src = root / "photos"
    for split, n in (("train", 24), ("val", 12)):
        for cls in ("ants", "bees"):
            files = sorted((HYMENOPTERA / split / cls).glob("*.jpg"))[:n]
            dest = src / split / cls
            dest.mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy(f, dest / f.name)
    bee = Image.open(sorted((src / "val" / "bees").glob("*.jpg"))[0]).convert("RGB")
    bee.save(src / "train" / "bees" / "leaked_copy.jpg", quality=60)
    ant = Image.open(sorted((src / "val" / "ants").glob("*.jpg"))[0]).convert("RGB")
    w, h = ant.size
    ant.crop((w // 10, h // 10, w - w // 10, h - h // 10)).save(src / "train" / "ants" / "leaked_crop.jpg", quality=85)
    ws = Project.create(root / "ws", encoder="sscd-distilled")
    ws.add("hymenoptera", src)
    ws.scan()
    return ws


@pytest.fixture(scope="module")
def photo_ws(tmp_path_factory):
    if not HYMENOPTERA.is_dir():
        pytest.skip(f"no real photos at {HYMENOPTERA} (a clone without ../shared)")
    return _photo_workspace(tmp_path_factory.mktemp("pages-photos"))


def test_every_page_on_real_photos(photo_ws, tmp_path):
    with _serve(photo_ws.path, tmp_path / "home") as url:
        problems = _walk(url, "photos")
    assert problems == [], "\n".join(problems)
