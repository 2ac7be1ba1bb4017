"""The item table's loaders and readers: folder, manifest, HF Parquet, CIFAR, COCO, embeddings-only records,
image bytes out of files and containers, and the probing of every record. Which loader serves a source is
decided by the format registry (`leakcore.formats`); adding a dataset is `leakcore.ingest`."""
from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import pickle
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from PIL import Image

from leakcore import images
from leakcore.errors import IngestError
from leakcore.schema import empty_items, normalise_items, parse_times  # noqa: F401  (re-exported)

# Column names sources use for what we call `group` and `timestamp` (first present wins)
GROUP_COLUMNS = ("group", "group_id", "patient_id", "subject_id", "video_id", "source_id", "scene_id")
TIME_COLUMNS = ("timestamp", "time", "datetime", "date_captured", "captured_at", "frame_time")


def _first(rec: dict, names: tuple[str, ...]):
    return next((rec[n] for n in names if n in rec and _text(rec[n]) is not None), None)

log = logging.getLogger(__name__)

_EVAL_WORDS = ("test", "val", "valid", "validation", "dev", "eval", "evaluation", "benchmark")
_TRAIN_WORDS = ("train", "training", "pretrain", "pretraining")


def role_from_name(split: str, overrides: dict[str, str] | None = None) -> str:
    """train or eval for a split name; explicit overrides (split=role, or *=role) win."""
    overrides = overrides or {}
    for key in (split, "*"):
        if key in overrides:
            role = overrides[key]
            if role not in ("train", "eval"):
                raise IngestError(f"role for split {split!r} must be 'train' or 'eval', got {role!r}")
            return role
    tokens = re.split(r"[^a-z]+", split.lower())
    name = split.lower()
    if any(t in _TRAIN_WORDS for t in tokens) or name.startswith("train"):
        return "train"
    if any(t in _EVAL_WORDS for t in tokens) or name.startswith(("val", "test", "dev", "eval")):
        return "eval"
    raise IngestError(
        f"cannot tell whether split {split!r} is for training or evaluation",
        cli=f"pass --role {split}=train or --role {split}=eval",
        page=f"Set its role in the role overrides, e.g. {split}=train or {split}=eval",
    )


# ---------------------------------------------------------------------------------------------
# Reading image bytes
# ---------------------------------------------------------------------------------------------
def is_inside(path: Path, root: Path) -> bool:
    """True when `path`, with symlinks resolved, lies inside `root`."""
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def inside_any(path: str | Path, roots) -> bool:
    """True when `path`, with symlinks resolved now, lies inside one of `roots` (a dataset's `folders`): what may be
    read to show, report or copy a picture."""
    return any(is_inside(Path(path), Path(r)) for r in roots)


def _image_column(schema) -> str:
    import pyarrow as pa

    for fld in schema:
        if pa.types.is_struct(fld.type) and fld.type.get_field_index("bytes") >= 0:
            return fld.name
    raise IngestError("no image column of {bytes, path} structs in this Parquet file")


class _ArraysOnly(pickle.Unpickler):
    """CIFAR's python batches are pickles of dicts, lists, bytes and numpy arrays; a pickle can also name any other
    callable and run it as it loads, so a batch may name only what numpy needs to rebuild an array."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
               ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise IngestError(f"this CIFAR batch names {module}.{name}; a batch holds only arrays, lists and labels")
        return super().find_class(module, name)


def _cifar_batch(path: str, mtime_ns: int = 0) -> dict:
    with open(path, "rb") as fh:
        return _ArraysOnly(fh, encoding="latin1").load()


def _cifar_png(batch: dict, row: int) -> bytes:
    arr = np.asarray(batch["data"][row], dtype=np.uint8).reshape(3, 32, 32).transpose(1, 2, 0)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


class SourceReader:
    """Reads items' bytes out of dataset files, keeping the last few containers it opened (Parquet files, their
    row groups, CIFAR batches), keyed on the file's modification time. One lives on each workspace
    (`Workspace.sources`); a loop over items without a workspace makes its own."""

    def __init__(self) -> None:
        self._parquet_file = functools.lru_cache(maxsize=4)(self._open_parquet)
        self._row_group = functools.lru_cache(maxsize=16)(self._read_row_group)
        self._group_starts = functools.lru_cache(maxsize=4)(self._read_group_starts)
        self._cifar = functools.lru_cache(maxsize=8)(_cifar_batch)
        self._lock = threading.Lock()  # one container read at a time: the verification's evidence reads from threads

    @staticmethod
    def _open_parquet(path: str, mtime_ns: int) -> pq.ParquetFile:
        return pq.ParquetFile(path)

    def _read_row_group(self, path: str, mtime_ns: int, group: int) -> list:
        pf = self._parquet_file(path, mtime_ns)
        col = _image_column(pf.schema_arrow)
        table = pf.read_row_group(group, columns=[col])
        return [(v or {}).get("bytes") for v in table.column(col).to_pylist()]

    def _read_group_starts(self, path: str, mtime_ns: int) -> np.ndarray:
        md = self._parquet_file(path, mtime_ns).metadata
        return np.cumsum([0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)])

    def read(self, uri: str, row: int = -1, *, root: str | Path | None = None) -> bytes | None:
        """The encoded bytes of one item, or None when the file is missing or outside `root`."""
        path = Path(uri)
        if root is not None and not is_inside(path, Path(root)):
            return None
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            return None
        if row < 0:
            try:
                return path.read_bytes()
            except OSError:
                return None
        with self._lock:
            if path.suffix == ".parquet":
                starts = self._group_starts(str(path), mtime)
                group = int(np.searchsorted(starts, row, side="right") - 1)
                return self._row_group(str(path), mtime, group)[row - starts[group]]
            batch = self._cifar(str(path), mtime)
        return _cifar_png(batch, row)


def read_bytes(uri: str, row: int = -1, *, root: str | Path | None = None,
               reader: SourceReader | None = None) -> bytes | None:
    """The encoded bytes of one item, or None when the file is missing or outside `root`; `reader`: the
    workspace's (`ws.sources`), which keeps the containers it opened; without one a container is opened for this
    read alone."""
    return (reader or SourceReader()).read(uri, row, root=root)


def iter_bytes(uris, rows, *, reader: SourceReader | None = None) -> Iterator[tuple[int, bytes | None]]:
    """(position, bytes) for parallel sequences of uris and rows, reading each container once.

    Items are visited in container order (by uri, then row), so a Parquet row group or CIFAR batch
    is decoded once however many items it holds.
    """
    reader = reader or SourceReader()  # one per pass: each container is opened once, in container order
    uris = np.asarray([str(u) for u in uris], dtype=object)
    rows = np.asarray(rows, dtype=np.int64)
    order = np.lexsort((rows, uris))
    for pos in order:
        yield int(pos), reader.read(uris[pos], int(rows[pos]))


def bounded_map(pool, fn, iterable, window: int = 256):
    """Like Executor.map, in order, but with at most `window` items in flight (bounded memory)."""
    from collections import deque

    pending: deque = deque()
    for item in iterable:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def iter_item_bytes(items: pd.DataFrame, *, reader: SourceReader | None = None) -> Iterator[tuple[int, bytes | None]]:
    """(position, bytes) for every row of an item table, in container order."""
    return iter_bytes(items["uri"].to_numpy(), items["row"].to_numpy(), reader=reader)


# ---------------------------------------------------------------------------------------------
# Records: what each layout yields before probing
# ---------------------------------------------------------------------------------------------
@dataclass
class Record:
    split: str
    key: str
    uri: str
    row: int = -1
    label: str | None = None
    group: str | None = None
    timestamp: str | None = None
    caption: str | None = None
    reason: str | None = None  # set when the loader already knows the item is bad (path outside root)
    data: bytes | None = None  # bytes when the loader already holds them (Parquet, CIFAR)


@dataclass
class Source:
    """What a loader found: the records, the dataset root, and embeddings-only extras."""

    format: str
    root: Path
    records: list[Record]
    splits: list[str]
    skipped: dict = field(default_factory=dict)  # files left out as not images by their name: count per kind
    link_roots: list[Path] = field(default_factory=list)  # folders outside the root that followed links lead into


FOLLOW_LINKS_HINT = "adding the dataset with links followed reads it: `leakcore add --follow-links`"


def _safe_file(path: Path, root: Path) -> tuple[str, str | None]:
    """Absolute path string and a reason when the path leaves the root (directly or via a symlink). A path under the
    root that a link leads elsewhere says so (`follow_links` reads such files where asked)."""
    if not is_inside(path, root):
        if _under(path, root):
            return (str(path.absolute()),
                    f"{images.OUTSIDE_ROOT}: {path} links to {path.resolve()}, outside {root}; {FOLLOW_LINKS_HINT}")
        return str(path), f"{images.OUTSIDE_ROOT}: {path} resolves outside {root}"
    return str(path.absolute()), None


def _under(path: Path, root: Path) -> bool:
    """Whether `path` lies under `root` by its name alone (".." taken out, links not followed)."""
    return Path(os.path.normpath(path.absolute())).is_relative_to(root.absolute())


def follow_links(source: "Source", allowed: Callable[[Path], bool] | None = None) -> "Source":
    """The source with its files that a link under its root leads elsewhere read (a dataset built as a tree of links
    to a shared store, or a re-split's or an export's own image folders, which are links by default, were refused
    whole): each target's folder joins the dataset's roots (`link_roots`, the folders the app may serve its pictures
    from), where `allowed` (a server's allowed folders) lets it; a link elsewhere keeps its reason. A path that leaves
    the root by ".." is never followed."""
    kept: set[Path] = set()
    for rec in source.records:
        if rec.row >= 0 or not rec.reason or not rec.reason.startswith(images.OUTSIDE_ROOT):
            continue
        path = Path(rec.uri)
        if not _under(path, source.root):
            continue
        target = path.resolve()
        if allowed is not None and not allowed(target):
            rec.reason = f"{images.OUTSIDE_ROOT}: {path} links to {target}, outside the folders this server may read"
            continue
        rec.reason = None
        kept.add(target.parent)
    # the fewest folders that hold every target: a folder inside another listed one is left out
    folders = sorted(kept, key=lambda f: len(f.parts))
    source.link_roots = [f for n, f in enumerate(folders) if not any(f.is_relative_to(g) for g in folders[:n])]
    return source


SYSTEM_FILES = {".ds_store", "thumbs.db", "desktop.ini"}  # named as they are among the skipped files


def load_folder(path: Path, split: str | None = None) -> Source:
    """ROOT/<split>/[<class>/]*.ext; with `split`, ROOT/[<class>/]*.ext is one split."""
    root = path.resolve()
    split_dirs = [(split, root)] if split else sorted((d.name, d) for d in root.iterdir() if d.is_dir())
    records: list[Record] = []
    skipped: dict[str, int] = {}  # said at the end of `add` (a new user's .DS_Store and Thumbs.db went unmentioned)
    for split_name, split_dir in split_dirs:
        for file in sorted(split_dir.rglob("*")):
            if file.is_dir():
                continue
            if file.suffix.lower() not in images.IMAGE_EXTENSIONS:
                kind = file.name if file.name.lower() in SYSTEM_FILES or not file.suffix else file.suffix.lower()
                skipped[kind] = skipped.get(kind, 0) + 1
                continue
            rel = file.relative_to(split_dir)
            label = rel.parts[0] if len(rel.parts) > 1 else None
            uri, reason = _safe_file(file, root)
            key = rel.as_posix()
            records.append(Record(split_name, key, uri, label=label, reason=reason))
    if not records:
        raise IngestError(f"no images ({', '.join(images.IMAGE_EXTENSIONS)}) under {root}/<split>/")
    return Source("folder", root, records, sorted({r.split for r in records}), skipped)


def _read_manifest(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    if suffix == ".tsv":
        return pd.read_csv(path, dtype=str, sep="\t", keep_default_na=False)
    if suffix == ".parquet":
        return pd.read_parquet(path)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return pd.read_json(path, lines=suffix != ".json", dtype=False)
    raise IngestError(f"manifest must be CSV, TSV, Parquet or JSON Lines, got {path.name}")


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    text = str(value)
    return text if text != "" else None


def load_manifest(path: Path, root: Path | None = None, split: str | None = None) -> Source:
    """CSV / Parquet / JSON Lines with `path`, `split` and optional label, group, timestamp, id."""
    df = _read_manifest(path)
    if "path" not in df.columns:
        raise IngestError(f"manifest {path} has no 'path' column (columns: {', '.join(map(str, df.columns))})")
    if "split" not in df.columns and not split:
        raise IngestError(f"manifest {path} has no 'split' column", cli="pass --split NAME",
                          page="Give the split name for this single-split source")
    root = (root or path.parent).resolve()
    records = []
    for rec in df.to_dict("records"):
        rel = str(rec["path"])
        file = Path(rel) if os.path.isabs(rel) else root / rel
        uri, reason = _safe_file(file, root)
        key = _text(rec.get("id")) or rel
        records.append(
            Record(
                _text(rec.get("split")) or split, key, uri,
                label=_text(rec.get("label")), group=_text(_first(rec, GROUP_COLUMNS)),
                timestamp=_text(_first(rec, TIME_COLUMNS)), caption=_text(rec.get("caption")), reason=reason,
            )
        )
    return Source("manifest", root, records, sorted({r.split for r in records}))


def _hf_label_names(schema) -> dict[str, list[str]]:
    meta = (schema.metadata or {}).get(b"huggingface")
    if not meta:
        return {}
    try:
        features = json.loads(meta).get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return {}
    return {name: f["names"] for name, f in features.items() if isinstance(f, dict) and "names" in f}


def load_hf_parquet(path: Path, split: str | None = None) -> Source:
    """Parquet with an image column of {bytes, path} structs; split from a column, the file name or --split."""
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    records: list[Record] = []
    for file in files:
        pf = pq.ParquetFile(file)
        schema = pf.schema_arrow
        img_col = _image_column(schema)
        names = _hf_label_names(schema)
        cols = [c for c in schema.names if c != img_col]
        meta = pf.read(columns=cols).to_pandas() if cols else pd.DataFrame(index=range(pf.metadata.num_rows))
        file_split = split or re.split(r"[-_.]", file.stem)[0]
        labels = None
        if "label_name" in meta.columns:
            labels = meta["label_name"].astype(str).tolist()
        elif "label" in meta.columns:
            raw = meta["label"].tolist()
            lookup = names.get("label")
            labels = [lookup[int(v)] if lookup and v is not None else _text(v) for v in raw]
        splits = meta["split"].astype(str).tolist() if "split" in meta.columns and not split else None
        keys = meta["index"] if "index" in meta.columns else meta["id"] if "id" in meta.columns else None
        group_col = next((c for c in GROUP_COLUMNS if c in meta.columns), None)
        time_col = next((c for c in TIME_COLUMNS if c in meta.columns), None)
        uri = str(file.resolve())
        for row in range(pf.metadata.num_rows):
            records.append(
                Record(
                    splits[row] if splits else file_split,
                    str(keys.iloc[row]) if keys is not None else str(row),
                    uri, row=row, label=labels[row] if labels else None,
                    group=_text(meta[group_col].iloc[row]) if group_col else None,
                    timestamp=_text(meta[time_col].iloc[row]) if time_col else None,
                )
            )
    root = (path if path.is_dir() else path.parent).resolve()
    return Source("hf-parquet", root, records, sorted({r.split for r in records}))


def load_cifar(path: Path) -> Source:
    """CIFAR-10 (data_batch_1..5, test_batch) or CIFAR-100 (train, test) python batches."""
    path = path.resolve()
    if (path / "data_batch_1").exists():
        meta = _cifar_batch(str(path / "batches.meta"), 0) if (path / "batches.meta").exists() else {}
        names = meta.get("label_names")
        layout = {"train": [path / f"data_batch_{i}" for i in range(1, 6)], "test": [path / "test_batch"]}
        label_key = "labels"
    else:
        meta = _cifar_batch(str(path / "meta"), 0) if (path / "meta").exists() else {}
        names = meta.get("fine_label_names")
        layout = {"train": [path / "train"], "test": [path / "test"]}
        label_key = "fine_labels"
    records: list[Record] = []
    for split, files in layout.items():
        index = 0
        for file in files:
            if not file.exists():
                raise IngestError(f"CIFAR folder {path} lacks {file.name}")
            batch = _cifar_batch(str(file))
            for row, lab in enumerate(batch[label_key]):
                label = names[lab] if names else str(lab)
                records.append(Record(split, str(index), str(file), row=row, label=label))
                index += 1
    return Source("cifar", path, records, list(layout))


def load_coco(path: Path, root: Path | None = None, split: str | None = None) -> Source:
    """COCO-style JSON: images[].file_name under an image root; one file per split."""
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or "images" not in data:
        raise IngestError(f"{path} is not COCO-style JSON (no 'images' list)")
    split = split or re.sub(r"^(instances|captions|person_keypoints)_", "", path.stem)
    if root is None:
        candidates = [path.parent / split, path.parent.parent / split, path.parent / "images", path.parent]
        root = next((c for c in candidates if c.is_dir()), path.parent)
    root = root.resolve()
    cats = {c["id"]: c.get("name", str(c["id"])) for c in data.get("categories", [])}
    per_image: dict = {}
    for ann in data.get("annotations", []):
        if "category_id" in ann:
            per_image.setdefault(ann["image_id"], set()).add(cats.get(ann["category_id"], str(ann["category_id"])))
    records = []
    for img in data["images"]:
        uri, reason = _safe_file(root / img["file_name"], root)
        labels = per_image.get(img["id"])
        records.append(
            Record(split, str(img["id"]), uri, label="|".join(sorted(labels)) if labels else None,
                   group=_text(_first(img, ("video_id",) + GROUP_COLUMNS)),
                   timestamp=_text(_first(img, ("date_captured",) + TIME_COLUMNS)), reason=reason)
        )
    return Source("coco", root, records, [split])


def embedding_shards(path: Path) -> list[tuple[Path, Path | None]]:
    """(img_emb_N.npy, metadata_N.parquet) pairs in shard order (the clip-retrieval layout)."""
    path = Path(path)

    def num(p: Path) -> int:
        m = re.search(r"(\d+)", p.stem)
        return int(m.group(1)) if m else 0

    npys = sorted((path / "img_emb").glob("img_emb_*.npy"), key=num)
    if not npys:
        raise IngestError(f"no img_emb/img_emb_*.npy under {path}")
    metas = {num(p): p for p in (path / "metadata").glob("metadata_*.parquet")}
    return [(p, metas.get(num(p))) for p in npys]


def load_embeddings(path: Path, split: str | None = None) -> Source:
    """clip-retrieval layout: img_emb/img_emb_*.npy row-aligned with metadata/metadata_*.parquet."""
    shards = embedding_shards(path)
    split = split or "train"
    records = []
    index = 0
    for npy, meta_file in shards:
        n = np.load(npy, mmap_mode="r").shape[0]
        meta = pd.read_parquet(meta_file) if meta_file else pd.DataFrame(index=range(n))
        if len(meta) != n:
            raise IngestError(f"{meta_file} has {len(meta)} rows but {npy.name} has {n} vectors")
        for rec in meta.to_dict("records"):
            url = _text(rec.get("url")) or _text(rec.get("image_path")) or f"{npy.name}#{index}"
            records.append(
                Record(split, _text(rec.get("key")) or str(index), url, row=index,
                       caption=_text(rec.get("caption")), reason=None)
            )
            index += 1
    return Source("embeddings", path.resolve(), records, [split])


# ---------------------------------------------------------------------------------------------
# Probing: sha256, size, status of every record
# ---------------------------------------------------------------------------------------------
def probe_bytes(data: bytes | None, max_pixels: int = images.DEFAULT_MAX_PIXELS) -> dict:
    """sha256, width, height, status and reason for one item's bytes."""
    if data is None:
        return {"sha256": None, "width": -1, "height": -1, "status": "unreadable", "reason": images.MISSING,
                "exif_time": None, "camera": None}
    digest = hashlib.sha256(data).hexdigest()
    result = images.decode(data, draft_size=(64, 64), max_pixels=max_pixels)
    return {
        "sha256": digest, "width": result.width or -1, "height": result.height or -1,
        "status": "ok" if result.ok else "unreadable", "reason": result.reason,
        **(images.exif_facts(data) if result.ok else {"exif_time": None, "camera": None}),
    }


def file_stat(uri: str) -> tuple[int, int]:
    """(size, modification time in ns) of a file, (-1, -1) where there is none: what an item was probed with."""
    try:
        st = os.stat(uri)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def probe_files(uris, rows, max_pixels: int = images.DEFAULT_MAX_PIXELS,
                workers: int | None = None) -> Iterator[tuple[int, dict]]:
    """(position, `probe_bytes` of its bytes) for parallel sequences of uris and rows, each container read once
    (`iter_bytes`: in container order, not the given one), probed on a thread per core (hashing and decoding let go of
    Python's lock)."""
    probe = functools.partial(probe_bytes, max_pixels=max_pixels)
    with ThreadPoolExecutor(max_workers=workers or (os.cpu_count() or 2)) as pool:
        yield from bounded_map(pool, lambda pair: (pair[0], probe(pair[1])), iter_bytes(uris, rows))


def build_items(
    dataset: str,
    source: Source,
    roles: dict[str, str],
    previous: pd.DataFrame | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
    max_pixels: int = images.DEFAULT_MAX_PIXELS,
) -> pd.DataFrame:
    """Probe every record into an item row; unchanged files (same size and mtime) reuse `previous`."""
    prev = {}
    if previous is not None and not previous.empty:
        prev = {r["item_id"]: r for r in previous.to_dict("records")}
    rows: list[dict] = []
    todo: list[tuple[int, Record]] = []
    for rec in source.records:
        item_id = f"{dataset}/{rec.split}/{rec.key}"
        fsize, mtime = file_stat(rec.uri) if source.format != "embeddings" else (-1, -1)
        base = {
            "item_id": item_id, "dataset": dataset, "split": rec.split, "role": roles[rec.split],
            "key": rec.key, "uri": rec.uri, "row": rec.row, "label": rec.label, "group": rec.group,
            "timestamp": rec.timestamp, "caption": rec.caption, "fsize": fsize, "mtime_ns": mtime,
        }
        old = prev.get(item_id)
        if rec.reason:
            base.update(sha256=None, width=-1, height=-1, status="unreadable", reason=rec.reason)
        elif source.format == "embeddings":
            base.update(sha256=None, width=-1, height=-1, status="ok", reason=None)
        elif (old is not None and old["fsize"] == fsize and old["mtime_ns"] == mtime and fsize >= 0 and old["uri"] == rec.uri
              # the limit may have been raised; a link out of the folder may be followed now (`--follow-links`: a
              # re-add that followed them kept the earlier refusal)
              and not str(old.get("reason") or "").startswith((images.TOO_LARGE, images.OUTSIDE_ROOT))):
            base.update({k: old.get(k) for k in ("sha256", "width", "height", "status", "reason", "camera")})
            if not rec.timestamp and old.get("timestamp"):
                base["timestamp"] = old["timestamp"]  # an EXIF time found when the file was first probed
        else:
            todo.append((len(rows), rec))
        rows.append(base)

    total = len(todo)
    if progress and total:
        progress(0, total)  # the stage starts now: its first reported images are timed from here
    probed = probe_files([r.uri for _, r in todo], [r.row for _, r in todo], max_pixels, workers)
    for done, (pos, result) in enumerate(probed, 1):
        row = rows[todo[pos][0]]
        exif_time = result.pop("exif_time")
        if not row["timestamp"] and exif_time:
            row["timestamp"] = exif_time
        row.update(result)
        if progress and (done % 500 == 0 or done == total):
            progress(done, total)
    df = pd.DataFrame(rows) if rows else empty_items()
    if rows:
        df["time"], df["time_error"] = parse_times(df["timestamp"])
    return normalise_items(df)


def moved_files(items: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(the items that are image files of their own, their (size, modification time) now, -1 where gone, and which
    of them differ from those they were probed with): what `changed_files` reads again; reads, never writes."""
    files = items[(items["row"].to_numpy() < 0) & items["fsize"].notna().to_numpy()
                  & (items["fsize"].to_numpy(dtype=np.float64) >= 0)]
    if files.empty:
        return files, np.zeros((0, 2), np.int64), np.zeros(0, bool)
    now = np.array([file_stat(u) for u in files["uri"].astype(str)], dtype=np.int64).reshape(-1, 2)
    moved = ((now[:, 0] != files["fsize"].to_numpy(dtype=np.int64))
             | (now[:, 1] != files["mtime_ns"].to_numpy(dtype=np.int64)))
    return files, now, moved


def changed_files(items: pd.DataFrame, folders: dict[str, list[str]], max_pixels: int = images.DEFAULT_MAX_PIXELS,
                  workers: int | None = None) -> tuple[pd.DataFrame, int, int]:
    """(the item table, how many items changed, how many of them are gone): each image file (not a row of a
    container: a Parquet file, a CIFAR batch) whose size or modification time differs from those it was probed with
    is probed again, as `add` would: its content hash, size and status; a file gone is missing, one that now resolves
    outside its dataset's `folders` is refused. A scan read a training photo replaced by another under its name as
    the old one (its embedding, its pairs, a confirmed leak), and only `leakcore add` noticed."""
    files, now, moved = moved_files(items)
    if not moved.any():
        return items, 0, 0
    changed = files[moved]
    out = items.copy()
    inside = {d: [Path(f) for f in fs] for d, fs in folders.items()}
    todo = []
    for idx, uri, dataset, (fsize, mtime) in zip(changed.index, changed["uri"].astype(str),
                                                 changed["dataset"].astype(str), now[moved]):
        out.loc[idx, ["fsize", "mtime_ns"]] = [int(fsize), int(mtime)]
        if fsize < 0:
            out.loc[idx, ["sha256", "width", "height", "status", "reason"]] = [None, -1, -1, "unreadable", images.MISSING]
        elif not any(is_inside(Path(uri), root) for root in inside.get(dataset, [])):
            out.loc[idx, ["sha256", "width", "height", "status", "reason"]] = [
                None, -1, -1, "unreadable", f"{images.OUTSIDE_ROOT}: {uri} resolves outside its dataset's folder"]
        else:
            todo.append(idx)
    for pos, result in probe_files([out.at[idx, "uri"] for idx in todo], [-1] * len(todo), max_pixels, workers):
        result.pop("exif_time", None)
        for key, value in result.items():
            out.at[todo[pos], key] = value
    return normalise_items(out), int(moved.sum()), int((now[moved][:, 0] < 0).sum())


def merge_items(existing: pd.DataFrame, dataset: str, new: pd.DataFrame, splits: Iterable[str]) -> pd.DataFrame:
    """Replace the rows of (dataset, split) for the splits a source provided; keep everything else."""
    splits = set(splits)
    keep = existing[~((existing["dataset"] == dataset) & existing["split"].isin(splits))]
    return pd.concat([keep, new], ignore_index=True) if not keep.empty else new


TINY_SIDE = 24  # images with a shorter side under this many pixels are read but too small to judge (CIFAR-10's 32 px
# are not): the summary counts them


def identical_within_split(items: pd.DataFrame) -> pd.DataFrame:
    """The readable items whose bytes another item of their split has (sha256), every copy of each set, by split and
    item id: what the report names and counts (each set but its first) as byte-identical copies."""
    if "sha256" not in items:
        return items.iloc[:0]
    ok = items[(items["status"].astype(str) == "ok") & items["sha256"].notna()]
    return ok[ok.duplicated(["dataset", "split", "sha256"], keep=False)].sort_values(["dataset", "split", "item_id"])


def summarise(items: pd.DataFrame) -> dict:
    """Counts per split and role, labels, unreadable by reason: the end-of-ingest summary."""
    out: dict = {"items": int(len(items)), "splits": [], "unreadable": {}}
    for (ds, split, role), grp in items.groupby(["dataset", "split", "role"], sort=True):
        labels = grp["label"].dropna()
        out["splits"].append({
            "dataset": ds, "split": split, "role": role, "items": int(len(grp)),
            "unreadable": int((grp["status"] != "ok").sum()), "labels": int(labels.nunique()),
            "top_labels": labels.value_counts().head(5).to_dict(),
        })
    bad = items[items["status"] != "ok"]
    if not bad.empty:
        kinds = bad["reason"].fillna("unknown").str.split(":").str[0]
        out["unreadable"] = {str(k): int(v) for k, v in kinds.value_counts().items()}
    ok = items[items["status"] == "ok"]
    small = ok[np.minimum(ok["width"].fillna(0), ok["height"].fillna(0)) < TINY_SIDE] if len(ok) else ok
    out["tiny"], out["tiny_side"] = int(len(small)), TINY_SIDE  # read, but too small to tell copies apart (a new
    # user's 16 x 12 copy of a training photo was missed, and nothing said why)
    out["links_not_followed"] = int(bad["reason"].fillna("").str.contains(FOLLOW_LINKS_HINT, regex=False).sum())
    out["groups"] = int(items["group"].nunique())
    out["timed"] = int(items["time"].notna().sum())
    bad_times = items[items["time_error"].notna()]
    out["unparsed_times"] = {"count": int(len(bad_times)),
                             "examples": [f"{i}: {r}" for i, r in zip(bad_times["item_id"].head(3), bad_times["time_error"].head(3))]}
    return out
