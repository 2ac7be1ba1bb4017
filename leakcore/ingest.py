"""Adding a dataset: detect its layout, load its records, probe every image, and register it in the workspace."""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Callable, Iterable

from leakcore import catalog, formats, images
from leakcore.errors import IngestError, as_code
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
    group_from: str | None = None,
    group_level: int | None = None,
    follow_links: bool = False,
    allowed: Callable[[Path], bool] | None = None,
) -> dict:
    """Ingest a source into the workspace as dataset `name`; idempotent; returns the summary.

    `max_pixels` (the decompression-bomb limit) is remembered in the workspace; None keeps the current one.
    `group_from` (a regular expression with a group named `group`, or one group, searched in the item's
    path within its split) and `group_level` (the N-th folder of that path, 0 = first) set the item's group
    where the source gave none: a patient id in a file name, a video folder. `follow_links` reads the files that links
    under the source's root lead to elsewhere (`catalog.follow_links`; `allowed`: the folders a server may read)."""
    pattern = _group_pattern(group_from)
    if group_level is not None and group_level < 0:
        raise IngestError(f"group level must be 0 or more (0 = the first folder under the split), got {group_level}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]*", name or ""):
        raise IngestError(f"dataset name {as_code(name, 80)} must be letters, digits, '_', '-' or '.'")
    path = Path(source_path)
    if not path.exists():
        raise IngestError(f"source {path} does not exist")
    fmt = fmt or formats.detect_format(path)
    loader = formats.get_format(fmt)
    if fmt == "embeddings" and not encoder:
        raise IngestError("an embeddings-only source must declare the encoder that made it",
                          cli="pass --encoder NAME", page="Name the encoder that made the vectors")
    source = loader.load(path, root=Path(root) if root else None, split=split)
    if follow_links:
        source = catalog.follow_links(source, allowed)
    # an override naming no split of the source, or no role, was ignored without a word (the dataset was added with
    # the roles its split names gave)
    for key, role in (roles or {}).items():
        if role not in ("train", "eval"):
            raise IngestError(f"the role override {as_code(f'{key}={role}', 80)} names no role: a role is train or "
                              "eval", cli="pass --role SPLIT=train or --role SPLIT=eval",
                              page="Write each override as SPLIT=train or SPLIT=eval")
        if key != "*" and key not in source.splits:
            raise IngestError(f"the role override {as_code(f'{key}={role}', 80)} names no split of this source; its "
                              f"splits are {', '.join(map(str, source.splits)) or 'none'}",
                              page="Name one of those splits, or * for all")
    split_roles = {s: catalog.role_from_name(s, roles) for s in source.splits}
    existing = ws.items()
    previous = existing[existing["dataset"] == name]
    if max_pixels is not None:
        ws.set_settings(max_pixels=max_pixels)
    limit = ws.max_pixels or images.DEFAULT_MAX_PIXELS
    new = catalog.build_items(name, source, split_roles, previous, progress, max_pixels=limit)
    new = _derive_groups(new, pattern, group_level)
    ws.write_items(catalog.merge_items(existing, name, new, source.splits))
    ws.register_dataset(
        DatasetConfig(name=name, format=fmt, source=str(path.resolve()), root=str(source.root),
                      roles=split_roles, encoder=encoder, link_roots=[str(r) for r in source.link_roots])
    )
    return {**catalog.summarise(new), "skipped": dict(source.skipped), "same_files_as": _same_files(new, existing, name)}


SAME_FILES_SHARE = 0.5  # at least this share of a new dataset's images byte for byte another's: said (a few shared
# files are what leakage across datasets is about; most of them, a re-split or a copy of that dataset)


def _same_files(new, existing, name: str) -> dict[str, int]:
    """{other dataset: how many of this one's images are byte for byte among its images}, where that is at least
    SAME_FILES_SHARE of them: a re-split (or a copy of a dataset) added beside the dataset it came from made every
    image a leak of its own copy, said nowhere."""
    if new.empty or existing.empty:
        return {}
    ok = new.loc[new["status"] == "ok", "sha256"].dropna()
    others = existing[(existing["dataset"] != name) & existing["sha256"].isin(set(ok))]
    counts = {str(d): int(ok.isin(set(g["sha256"])).sum()) for d, g in others.groupby("dataset")}
    return {d: n for d, n in counts.items() if n >= SAME_FILES_SHARE * len(ok)}


def _group_pattern(group_from: str | None) -> "re.Pattern | None":
    if not group_from:
        return None
    try:
        pattern = re.compile(group_from)
    except re.error as exc:
        raise IngestError(f"group pattern {group_from!r} is not a regular expression: {exc}") from None
    if pattern.groups == 0:
        raise IngestError(f"group pattern {group_from!r} needs a capturing group, e.g. 'patient_(?P<group>\\d+)'")
    return pattern


def _derive_groups(items, pattern, level: int | None):
    """Fill `group` from the item's key where the source gave none (explicit source values win)."""
    if pattern is None and level is None:
        return items
    keys = items["key"].astype(str)
    derived = None
    if pattern is not None:
        name = "group" if "group" in pattern.groupindex else 0
        found = keys.str.extract(pattern, expand=True)
        derived = found["group"] if name == "group" else found.iloc[:, 0]
    if level is not None:
        parts = keys.str.split("/")
        by_level = parts.map(lambda p: p[level] if len(p) > level + 1 else None)  # a folder, never the file name
        derived = by_level if derived is None else derived.fillna(by_level)
    items = items.copy()
    items["group"] = items["group"].fillna(derived.astype("string"))
    return items
