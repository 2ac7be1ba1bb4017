"""Display-sized pictures for the review loop: a photo is sent as a JPEG of the size it is drawn at, never as its
original file, cached per item in the workspace's memory (`ws.workspace.cache`) and on its disk
(cache/display/<sha256>-<file stamp>-<side>.jpg, written atomically), and the next pairs' pictures are made ahead in a background
thread, so a key press finds them ready."""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image

from leakcore.api import Images

log = logging.getLogger(__name__)

PAIR_PX = 576  # the pair view's pictures: the longer side, a little over a column's width at 1400-1600 px
STRIP_PX = 56  # the strip of next pairs
QUALITY = 85
_SHA = re.compile(r"[0-9a-f]{64}")
_WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leak-display")  # disk writes and pictures ahead


class Source:
    """What one item's picture is made from: its file (or Parquet row) inside a registered dataset root, the
    cache file its content hash names (None when the table has no real hash: then memory only), and the workspace
    whose caches keep the picture."""

    __slots__ = ("uri", "row", "root", "stamp", "cache", "ws")

    def __init__(self, uri: str, row: int, root: str | None, stamp: tuple, cache: Path | None, ws=None):
        self.uri, self.row, self.root, self.stamp, self.cache, self.ws = uri, row, root, stamp, cache, ws

    def key(self, side: int) -> tuple:
        return (self.uri, self.row, self.stamp, side)


def _roots(datasets: tuple) -> tuple[tuple[str, ...], frozenset]:
    """(resolved dataset roots, with the folders followed links lead into, names of datasets without pixels) of a
    workspace's dataset table (a dataset of followed links showed no picture: only its own folder was a root)."""
    roots = tuple(str(Path(r).resolve()) for _, folders, _ in datasets for r in folders)
    return roots, frozenset(name for name, _, fmt in datasets if fmt == "embeddings")


def _root_of(ws, uri: str, roots: tuple[str, ...]) -> str | None:
    return ws.workspace.cache("display root of", (uri, roots), lambda: Images.root_of(uri, roots), entries=65536)


COLUMNS = ["dataset", "uri", "row", "sha256", "width"]
_FACTS = "_leakcore_display_facts"  # the attribute a table's lookup is kept in: it lives and dies with the table


def facts(items: pd.DataFrame) -> dict:
    """item_id -> (dataset, uri, row, sha256, width) of a (cached, read-only) item table indexed by item_id, built
    once per table and kept on it (a copy of the table starts without): a key press looks up a dozen items, and
    pandas' .loc costs about 1 ms a call."""
    rows = items.__dict__.get(_FACTS)
    if rows is None:
        rows = dict(zip(items.index, zip(*(items[c].to_numpy() for c in COLUMNS))))
        object.__setattr__(items, _FACTS, rows)  # past pandas' own __setattr__, which would take it for a column
    return rows


def _workspace(ws) -> tuple[tuple[str, ...], frozenset, Path, object]:
    datasets = tuple((n, tuple(d.folders), d.format) for n, d in ws.workspace.datasets.items())
    roots, no_pixels = ws.workspace.cache("display roots", datasets, lambda: _roots(datasets), entries=4)
    return roots, no_pixels, ws.workspace.paths.display_cache, ws


def _source(where: tuple, dataset, uri, row, sha, *_) -> Source | None:
    roots, no_pixels, cache, ws = where
    if dataset in no_pixels:
        return None
    uri, sha = str(uri), str(sha or "")
    stamp = ws.workspace.stamp("source", uri)
    # the cache file names the content the scan read and the file as it is now (its stamp): a file replaced, cut
    # short or linked elsewhere since the scan is read again (the page went on showing the picture it had made from
    # the file before, where the HTML report said "no picture")
    made = hashlib.sha1(repr(stamp[0][1:] if stamp and stamp[0] else None).encode()).hexdigest()[:12]
    return Source(uri, int(row), _root_of(ws, uri, roots), stamp,
                  cache / sha[:2] / f"{sha}-{made}" if _SHA.fullmatch(sha) else None, ws)


def sources(ws, items: pd.DataFrame, ids) -> list[Source | None]:
    """Each item's picture source (None when it has no pixels: an embeddings-only dataset), `items` indexed by
    item_id."""
    where, rows = _workspace(ws), facts(items)
    return [_source(where, *rows[i]) for i in ids]


def source(ws, item: pd.Series) -> Source | None:
    """One item's picture source (see `sources`)."""
    return _source(_workspace(ws), item["dataset"], item["uri"], item["row"], item.get("sha256"))


def _encode(img: Image.Image, side: int) -> tuple[bytes, int]:
    """(JPEG bytes, width) of the image fitted into side x side (never enlarged)."""
    img = img if img.mode == "RGB" else img.convert("RGB")
    if max(img.size) > side:
        img = img.copy()
        img.thumbnail((side, side), Image.Resampling.BILINEAR,
                      reducing_gap=2.0)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=QUALITY)
    return buf.getvalue(), img.width


def _picture(key: tuple, root: str | None, cache: Path | None, reader=None) -> tuple[str | None, int, str | None]:
    """(JPEG data URI, its width, reason when there is none) of one item at `side` (key[-1]) px, longer side."""
    uri, row, _, side = key
    path = cache.with_name(f"{cache.name}-{side}.jpg") if cache is not None else None
    if path is not None:
        try:
            data = path.read_bytes()
            with Image.open(io.BytesIO(data)) as probe:
                width = probe.width
            return "data:image/jpeg;base64," + base64.b64encode(data).decode(), width, None
        except (OSError, Image.UnidentifiedImageError):
            pass  # not made yet (or unreadable): make it
    image, reason = Images.read(uri, row, root, draft_size=(side, side), reader=reader)
    if image is None:
        return None, 0, reason
    data, width = _encode(image, side)
    if path is not None:
        _WRITER.submit(_write, path, data)
    return "data:image/jpeg;base64," + base64.b64encode(data).decode(), width, None


def _write(path: Path, data: bytes) -> None:
    try:
        if not path.exists():
            Images.save(path, data)
    except OSError as exc:  # a read-only workspace: the memory cache still serves
        log.info("display cache not written: %s", exc)


def picture(src: Source | None, side: int) -> tuple[str | None, int, str | None]:
    """(data URI of a JPEG whose longer side is at most `side`, its width, reason when there is none)."""
    if src is None:
        return None, 0, Images.NO_PIXELS
    key = src.key(side)
    if src.ws is None:
        return _picture(key, src.root, src.cache)
    return src.ws.workspace.cache("pictures", key, lambda: _picture(key, src.root, src.cache, src.ws.workspace.sources),
                                  entries=1024)


def ahead(sources: list[tuple[Source | None, int]]) -> None:
    """Make these pictures in the background (the next pairs), so the key press that shows them finds them."""
    todo = [(s, side) for s, side in sources if s is not None]
    if todo:
        _WRITER.submit(lambda: [picture(s, side) for s, side in todo])
