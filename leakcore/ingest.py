"""Adding a dataset: detect its layout, load its records, probe every image, and register it in the workspace."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable, Iterable

from leakcore import catalog, formats, images
from leakcore.errors import IngestError
from leakcore.project import DatasetConfig

log = logging.getLogger(__name__)


def parse_roles(values: "Iterable[str] | str | None") -> dict[str, str]:
    """SPLIT=ROLE overrides, from repeated CLI values or one comma-separated field ("test=eval, *=train")."""
    if values is None:
        return {}
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    roles = {}
    for v in values:
        split, sep, role = v.partition("=")
        if not sep or not split.strip():
            raise IngestError(f"a role override is SPLIT=ROLE (e.g. test=eval, '*=train'), got {v.strip()!r}")
        roles[split.strip()] = role.strip()
    return roles


def add_dataset(
    ws,
    name: str,
    source_path: str | os.PathLike,
    *,
    fmt: str | None = None,
    roles: dict[str, str] | None = None,
    root: str | os.PathLike | None = None,
    split: str | None = None,
    encoder: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_pixels: int | None = None,
) -> dict:
    """Ingest a source into the workspace as dataset `name`; idempotent; returns the summary.

    `max_pixels` (the decompression-bomb limit) is remembered in the workspace; None keeps the current one."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name or ""):
        raise IngestError(f"dataset name {name!r} must be letters, digits, '_', '-' or '.'")
    path = Path(source_path)
    if not path.exists():
        raise IngestError(f"source {path} does not exist")
    fmt = fmt or formats.detect_format(path)
    loader = formats.get_format(fmt)
    if fmt == "embeddings" and not encoder:
        raise IngestError("an embeddings-only source must declare the encoder that made it",
                          cli="pass --encoder NAME", page="Name the encoder that made the vectors")
    source = loader.load(path, root=Path(root) if root else None, split=split)
    split_roles = {s: catalog.role_from_name(s, roles) for s in source.splits}
    existing = ws.items()
    previous = existing[existing["dataset"] == name]
    if max_pixels is not None:
        ws.config["settings"]["max_pixels"] = int(max_pixels)
        ws.save_config()
    limit = int(ws.config["settings"].get("max_pixels", images.DEFAULT_MAX_PIXELS))
    new = catalog.build_items(name, source, split_roles, previous, progress, max_pixels=limit)
    ws.write_items(catalog.merge_items(existing, name, new, source.splits))
    ws.register_dataset(
        DatasetConfig(name=name, format=fmt, source=str(path.resolve()), root=str(source.root),
                      roles=split_roles, encoder=encoder)
    )
    return catalog.summarise(new)
