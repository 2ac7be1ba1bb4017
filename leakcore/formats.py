"""Source formats: one registered entry per layout, holding its detection, its loader and its "write the
same format" exporter, so that ingest, the CLI's choices and the export agree on every format.

Entries are listed explicitly (no file scanning); detection asks each in registry order.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from leakcore import catalog
from leakcore.errors import IngestError, UnknownName
from leakcore.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

TABLE_FORMATS = ("csv", "parquet", "jsonl")  # the generic listings any split can be exported as


class SourceFormat:
    """A source layout: `detect` a path, `load` its records, `write_same` a kept subset in that layout."""

    name: ClassVar[str]
    description: ClassVar[str]
    writes_images: ClassVar[bool] = False  # whether `write_same` writes the image files themselves (a folder tree)

    def detect(self, path: Path) -> bool:
        raise NotImplementedError

    def load(self, path: Path, *, root: Path | None = None, split: str | None = None) -> catalog.Source:
        raise NotImplementedError

    def write_same(self, kept: pd.DataFrame, ds, folder: Path, split: str) -> list[Path]:
        """The kept items in this layout; the default is a CSV listing re-importable as a manifest."""
        return [write_listing(kept, ds, folder, split, "csv")]


_REGISTRY: dict[str, SourceFormat] = {}


def register_format(cls: type[SourceFormat]) -> type[SourceFormat]:
    if cls.name in _REGISTRY:
        raise ValueError(f"format {cls.name!r} is registered twice")
    _REGISTRY[cls.name] = cls()
    return cls


def format_names() -> list[str]:
    return list(_REGISTRY)


def get_format(name: str) -> SourceFormat:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownName(f"unknown format {name!r}; valid formats: {', '.join(_REGISTRY)}") from None


def detect_format(path: Path) -> str:
    """The name of the first registered format that recognises `path`."""
    path = Path(path)
    for fmt in _REGISTRY.values():
        if fmt.detect(path):
            return fmt.name
    raise IngestError(f"cannot tell the layout of {path}", cli=f"pass --format, one of {', '.join(_REGISTRY)}",
                      page="Choose its layout")


def load_source(path: Path, fmt: str, *, root: Path | None = None, split: str | None = None) -> catalog.Source:
    return get_format(fmt).load(Path(path), root=root, split=split)


# ---- generic listings ------------------------------------------------------------------------------------
def listing(kept: pd.DataFrame, ds, split: str) -> pd.DataFrame:
    """A generic manifest: path relative to the dataset root, split, label, id (the original key)."""
    root = Path(ds.root)
    rel = [os.path.relpath(u, root) if r < 0 else u for u, r in zip(kept["uri"], kept["row"])]
    out = pd.DataFrame({"path": rel, "split": split, "label": kept["label"].to_numpy(), "id": kept["key"].to_numpy()})
    if (kept["row"] >= 0).any():
        out["row"] = kept["row"].to_numpy()
    return out.sort_values("id", kind="stable").reset_index(drop=True)


def write_table(table: pd.DataFrame, out: Path, suffix: str) -> Path:
    """Write a table atomically in the format its suffix names (csv, tsv, parquet, json, jsonl, ndjson)."""
    suffix = suffix.lower().lstrip(".")
    with atomic_path(out) as tmp:
        if suffix == "csv":
            table.to_csv(tmp, index=False)
        elif suffix == "tsv":
            table.to_csv(tmp, index=False, sep="\t")
        elif suffix == "parquet":
            table.to_parquet(tmp, index=False)
        elif suffix == "json":
            table.to_json(tmp, orient="records")
        elif suffix in ("jsonl", "ndjson"):
            table.to_json(tmp, orient="records", lines=True)
        else:
            raise UnknownName(f"cannot write a table as {suffix!r}; valid: csv, tsv, parquet, json, jsonl, ndjson")
    return out


def write_listing(kept: pd.DataFrame, ds, folder: Path, split: str, fmt: str) -> Path:
    if fmt not in TABLE_FORMATS:
        raise UnknownName(f"listing format must be one of {', '.join(TABLE_FORMATS)}, got {fmt!r}")
    return write_table(listing(kept, ds, split), folder / f"{split}.{fmt}", fmt)


# ---- the formats, in detection order -------------------------------------------------------------------
@register_format
class Embeddings(SourceFormat):
    name = "embeddings"
    description = "clip-retrieval layout: img_emb/img_emb_N.npy with metadata/metadata_N.parquet"

    def detect(self, path):
        return path.is_dir() and (path / "img_emb").is_dir() and (path / "metadata").is_dir()

    def load(self, path, *, root=None, split=None):
        return catalog.load_embeddings(path, split)


@register_format
class Cifar(SourceFormat):
    name = "cifar"
    description = "CIFAR-10 / CIFAR-100 python batches"

    def detect(self, path):
        return path.is_dir() and ((path / "data_batch_1").exists() or ((path / "meta").exists() and (path / "train").is_file()))

    def load(self, path, *, root=None, split=None):
        return catalog.load_cifar(path)

    def write_same(self, kept, ds, folder, split):
        out = folder / f"{split}-kept-indices.csv"
        with atomic_path(out) as tmp:
            kept.assign(index=kept["key"].astype(int)).sort_values("index")[["index", "label"]].to_csv(tmp, index=False)
        return [out]


@register_format
class HFParquet(SourceFormat):
    name = "hf-parquet"
    description = "Parquet with an image column of {bytes, path} structs (Hugging Face datasets)"

    def detect(self, path):
        if path.is_dir():
            return bool(list(path.glob("*.parquet"))) and not any(p.is_dir() for p in path.iterdir())
        if path.suffix.lower() != ".parquet":
            return False
        try:
            catalog._image_column(pq.read_schema(path))
        except IngestError:
            return False
        return True

    def load(self, path, *, root=None, split=None):
        return catalog.load_hf_parquet(path, split)

    def write_same(self, kept, ds, folder, split):
        import pyarrow as pa

        tables = []
        for uri, grp in kept.groupby("uri", sort=True):
            t = pq.read_table(uri)
            tables.append(t.take(pa.array(np.sort(grp["row"].to_numpy()))))
        out = folder / f"{split}.parquet"
        with atomic_path(out) as tmp:
            pq.write_table(pa.concat_tables(tables) if tables else pa.table({}), tmp)
        return [out]


@register_format
class Coco(SourceFormat):
    name = "coco"
    description = "COCO-style JSON: images[].file_name under an image root"

    def detect(self, path):
        if not path.is_file() or path.suffix.lower() != ".json":
            return False
        with open(path, "rb") as fh:
            return b'"images"' in fh.read(1 << 16)

    def load(self, path, *, root=None, split=None):
        return catalog.load_coco(path, root, split)

    def write_same(self, kept, ds, folder, split):
        src = Path(ds.source)
        data = json.loads(src.read_text("utf-8"))
        ids = set(kept["key"].astype(str))
        data["images"] = [im for im in data["images"] if str(im["id"]) in ids]
        if "annotations" in data:
            data["annotations"] = [a for a in data["annotations"] if str(a.get("image_id")) in ids]
        out = folder / src.name
        atomic_write_text(out, json.dumps(data, sort_keys=True))
        return [out]


@register_format
class Manifest(SourceFormat):
    name = "manifest"
    description = "a table (CSV, TSV, Parquet, JSON, JSON Lines) with path, split and optional label, group, timestamp, id"
    suffixes = (".csv", ".tsv", ".parquet", ".json", ".jsonl", ".ndjson")

    def detect(self, path):
        return path.is_file() and path.suffix.lower() in self.suffixes  # image Parquet and COCO JSON were asked first

    def load(self, path, *, root=None, split=None):
        return catalog.load_manifest(path, root, split)

    def write_same(self, kept, ds, folder, split):
        """The source manifest's own rows for the kept items, in its own format and under its own name."""
        src = Path(ds.source)
        df = catalog._read_manifest(src)
        key = df["id"].astype(str) if "id" in df.columns else df["path"].astype(str)
        return [write_table(df[key.isin(set(kept["key"].astype(str)))], folder / src.name, src.suffix)]


@register_format
class Folder(SourceFormat):
    name = "folder"
    description = "a folder tree ROOT/<split>/[<class>/]*.jpg"
    writes_images = True

    def detect(self, path):
        return path.is_dir()

    def load(self, path, *, root=None, split=None):
        return catalog.load_folder(path, split)

    def write_same(self, kept, ds, folder, split):
        """The kept images copied into FOLDER/<split>/[<class>/]: the source's own tree (its keys are the paths under
        the split), re-importable as a folder dataset. Built aside, then renamed over an earlier export's tree."""
        dest = folder / split
        tmp = folder / f".{split}.partial"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        for key, uri in zip(kept["key"].astype(str), kept["uri"].astype(str)):
            if not catalog.inside_any(uri, ds.folders):  # a link re-pointed after `add` is not copied out
                continue
            target = tmp / key
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(uri, target)
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
        return [dest]


__all__ = ["SourceFormat", "TABLE_FORMATS", "detect_format", "format_names", "get_format", "listing", "load_source",
           "register_format", "write_listing", "write_table"]
