"""Cleaned evaluation manifests: the split without its leaked images, in the input's own format, with
removed.csv (what was removed and why) and a provenance sidecar. Never touches the user's files.

Policy: confirmed leaks are always removed; a pair a curator rejected never removes its item; for the
rest, automatic flags at `hard`, at `soft`, or `none`; a keep-list overrides automatic flags; optionally
within-split duplicates are removed, keeping the first (by item id) of each group.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

import leakcore
from leakcore import leakage, review
from leakcore.project import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

POLICIES = ("hard", "soft", "none")
FORMATS = ("same", "csv", "parquet", "jsonl")


@dataclass(frozen=True)
class ExportPolicy:
    flags: str = "soft"  # which unreviewed automatic flags remove an item: hard, soft or none
    keep: frozenset = field(default_factory=frozenset)  # item ids or keys never removed by automatic flags
    dedupe_within: bool = False

    def __post_init__(self):
        if self.flags not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {self.flags!r}")


def _split_items(ws, eval_split: str) -> pd.DataFrame:
    items = ws.items()
    d, _, s = eval_split.partition("/")
    sub = items[(items["dataset"] == d) & (items["split"] == s)]
    if sub.empty:
        valid = sorted((items["dataset"] + "/" + items["split"]).unique())
        raise ValueError(f"no split {eval_split!r}; valid splits: {', '.join(valid)}")
    return sub.sort_values("item_id").reset_index(drop=True)


def _within_groups(pairs: pd.DataFrame, soft: float, decisions: pd.DataFrame) -> dict[str, str]:
    """item -> the first item id of its within-split duplicate group (union-find over duplicate pairs)."""
    p = leakage.with_degrees(pairs, soft, soft, decisions)
    p = p[p["degree"] != leakage.NONE]
    parent: dict[str, str] = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(p["eval_item_id"], p["train_item_id"]):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in parent}


def plan(ws, eval_split: str, policy: ExportPolicy, *, decisions: pd.DataFrame | None = None,
         pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every item of the split with `removed`, `reason` and its evidence (matches, similarity, decision)."""
    items = _split_items(ws, eval_split)
    hard, soft = ws.thresholds()
    decisions = review.latest_decisions(ws) if decisions is None else decisions
    pairs = leakage.load_pairs(ws) if pairs is None else pairs
    pairs = pairs[pairs["eval_split"] == eval_split]
    cross = leakage.with_degrees(pairs[~pairs["within"]], hard, soft, decisions)
    confirmed = cross[cross["decision"].isin(["hard", "soft"])]
    auto_level = {"hard": [leakage.HARD], "soft": [leakage.HARD, leakage.SOFT], "none": []}[policy.flags]
    rejected = set(cross.loc[cross["decision"] == "not_leak", "eval_item_id"])
    auto = cross[cross["decision"].isna() | (cross["decision"] == "unsure")]
    auto = auto[auto["auto_degree"].isin(auto_level)]
    keep = set(policy.keep)
    kept_by_list = items["item_id"].isin(keep) | items["key"].isin(keep)
    keep_ids = set(items.loc[kept_by_list, "item_id"])
    evidence = pd.concat([confirmed, auto]).sort_values("similarity", ascending=False)
    ev = evidence.groupby("eval_item_id").agg(
        matches=("train_item_id", lambda s: ";".join(dict.fromkeys(s))), similarity=("similarity", "max"),
        degree=("degree", "first"), decision=("decision", "first"))
    last = decisions.set_index(decisions["eval_item_id"]) if not decisions.empty else pd.DataFrame()
    out = items[["item_id", "key", "uri", "row", "label", "split", "dataset"]].copy()
    out = out.merge(ev, left_on="item_id", right_index=True, how="left")
    is_confirmed = out["item_id"].isin(set(confirmed["eval_item_id"]))
    is_auto = out["item_id"].isin(set(auto["eval_item_id"])) & ~out["item_id"].isin(keep_ids)
    out["removed"] = is_confirmed | (is_auto & ~is_confirmed)
    out["reason"] = np.where(is_confirmed, "confirmed leak", np.where(out["removed"], "automatic " + out["degree"].fillna("") + " flag", ""))
    out.loc[is_auto & out["item_id"].isin(rejected) & ~is_confirmed, "reason"] += " (another pair was rejected)"
    if policy.dedupe_within:
        groups = _within_groups(pairs[pairs["within"]], soft, decisions)
        dup = out["item_id"].map(groups)
        is_dup = dup.notna() & (dup != out["item_id"]) & ~out["removed"] & ~out["item_id"].isin(keep_ids)
        out.loc[is_dup, "removed"] = True
        out.loc[is_dup, "reason"] = "within-split duplicate of " + dup[is_dup]
        out.loc[is_dup, "matches"] = dup[is_dup]
    if not last.empty:
        info = last.groupby(level=0).last()
        out["reviewer"] = out["item_id"].map(info["reviewer"])
        out["note"] = out["item_id"].map(info["note"])
    else:
        out["reviewer"] = None
        out["note"] = None
    return out


def preview(ws, eval_splits: list[str] | None = None, *, keep=frozenset(), dedupe_within: bool = False) -> pd.DataFrame:
    """How many items each policy removes, per evaluation split (shown before writing anything)."""
    splits = ws.splits()
    eval_splits = eval_splits or [f"{d}/{s}" for d, s in zip(splits.loc[splits["role"] == "eval", "dataset"],
                                                             splits.loc[splits["role"] == "eval", "split"])]
    decisions, pairs = review.latest_decisions(ws), leakage.load_pairs(ws)
    rows = []
    for sid in eval_splits:
        row = {"eval_split": sid}
        for flags in POLICIES:
            p = plan(ws, sid, ExportPolicy(flags, frozenset(keep), dedupe_within), decisions=decisions, pairs=pairs)
            row["items"] = len(p)
            row[f"removed at {flags}"] = int(p["removed"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class ExportResult:
    folder: Path
    files: list[Path]
    kept: int
    removed: int


def _inputs_time(ws) -> str:
    """The newest input's modification time: a timestamp that is the same for the same inputs."""
    paths = [ws.items_path, ws.path / "project.toml", ws.review_db, *ws.neighbors_dir(ws.encoder).glob("*/*.parquet")]
    newest = max((p.stat().st_mtime for p in paths if p.exists()), default=0)
    return pd.Timestamp(newest, unit="s", tz="UTC").isoformat(timespec="seconds")


def export(
    ws,
    eval_split: str,
    policy: ExportPolicy,
    *,
    fmt: str = "same",
    out: str | os.PathLike | None = None,
    links: str | None = None,
) -> ExportResult:
    """Write the cleaned split, removed.csv and provenance.json into `out` (default exports/<split>-<policy>)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if links not in (None, "symlink", "copy"):
        raise ValueError(f"links must be symlink or copy, got {links!r}")
    p = plan(ws, eval_split, policy)
    ds = ws.datasets[eval_split.split("/", 1)[0]]
    folder = Path(out) if out else ws.exports_dir / f"{eval_split.replace('/', '-')}-{policy.flags}"
    folder.mkdir(parents=True, exist_ok=True)
    kept = p[~p["removed"]]
    files = _write_manifest(kept, ds, folder, fmt, eval_split)
    removed = p[p["removed"]][["item_id", "key", "uri", "label", "reason", "matches", "similarity", "degree", "decision",
                               "reviewer", "note"]].rename(columns={"item_id": "item", "matches": "matched_training_items"})
    with atomic_path(folder / "removed.csv") as tmp:
        removed.sort_values("item").to_csv(tmp, index=False, float_format="%.6f")
    files.append(folder / "removed.csv")
    if links:
        files.append(_link_folder(kept, ds, folder / "images", links))
    hard, soft = ws.thresholds()
    fingerprints = sorted(p.name for p in ws.embeddings_dir(ws.encoder).iterdir()) if ws.embeddings_dir(ws.encoder).exists() else []
    prov = {
        "tool": "leakcore", "version": leakcore.__version__, "workspace": str(ws.path), "split": eval_split,
        "source": ds.source, "source_format": ds.format, "format": fmt, "encoder": ws.encoder,
        "encoder_options": ws.encoder_options, "weights_fingerprints": fingerprints,
        "thresholds": {"hard": hard, "soft": soft},
        "policy": {"flags": policy.flags, "keep": sorted(policy.keep), "dedupe_within": policy.dedupe_within,
                   "confirmed_leaks": "always removed", "rejected_pairs": "never remove their item"},
        "counts": {"items": int(len(p)), "kept": int(len(kept)), "removed": int(p["removed"].sum()),
                   "by_reason": {str(k): int(v) for k, v in p.loc[p["removed"], "reason"].str.split(" of ").str[0].value_counts().sort_index().items()}},
        "inputs_as_of": _inputs_time(ws),
    }
    atomic_write_text(folder / "provenance.json", json.dumps(prov, indent=2, sort_keys=True) + "\n")
    files.append(folder / "provenance.json")
    return ExportResult(folder, files, int(len(kept)), int(p["removed"].sum()))


def _write_manifest(kept: pd.DataFrame, ds, folder: Path, fmt: str, eval_split: str) -> list[Path]:
    split = eval_split.split("/", 1)[1]
    if fmt == "same":
        if ds.format == "coco":
            return [_coco(kept, ds, folder)]
        if ds.format == "hf-parquet":
            return [_hf_parquet(kept, folder, split)]
        if ds.format == "manifest":
            return [_manifest_like(kept, ds, folder)]
        if ds.format == "cifar":
            out = folder / f"{split}-kept-indices.csv"
            with atomic_path(out) as tmp:
                kept.assign(index=kept["key"].astype(int)).sort_values("index")[["index", "label"]].to_csv(tmp, index=False)
            return [out]
        fmt = "csv"  # folder layout: a CSV listing (re-importable with `leakcore add --format manifest`)
    table = _listing(kept, ds, split)
    out = folder / f"{split}.{ 'jsonl' if fmt == 'jsonl' else fmt}"
    with atomic_path(out) as tmp:
        if fmt == "csv":
            table.to_csv(tmp, index=False)
        elif fmt == "parquet":
            table.to_parquet(tmp, index=False)
        else:
            table.to_json(tmp, orient="records", lines=True)
    return [out]


def _listing(kept: pd.DataFrame, ds, split: str) -> pd.DataFrame:
    """A generic manifest: path relative to the dataset root, split, label, id (the original key)."""
    root = Path(ds.root)
    rel = [os.path.relpath(u, root) if r < 0 else u for u, r in zip(kept["uri"], kept["row"])]
    out = pd.DataFrame({"path": rel, "split": split, "label": kept["label"].to_numpy(), "id": kept["key"].to_numpy()})
    if (kept["row"] >= 0).any():
        out["row"] = kept["row"].to_numpy()
    return out.sort_values("id", kind="stable").reset_index(drop=True)


def _manifest_like(kept: pd.DataFrame, ds, folder: Path) -> Path:
    from leakcore.catalog import _read_manifest

    src = Path(ds.source)
    df = _read_manifest(src)
    key = df["id"].astype(str) if "id" in df.columns else df["path"].astype(str)
    out = folder / src.name
    keep = df[key.isin(set(kept["key"].astype(str)))]
    with atomic_path(out) as tmp:
        if src.suffix.lower() == ".csv":
            keep.to_csv(tmp, index=False)
        elif src.suffix.lower() == ".parquet":
            keep.to_parquet(tmp, index=False)
        else:
            keep.to_json(tmp, orient="records", lines=True)
    return out


def _hf_parquet(kept: pd.DataFrame, folder: Path, split: str) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = []
    for uri, grp in kept.groupby("uri", sort=True):
        t = pq.read_table(uri)
        tables.append(t.take(pa.array(np.sort(grp["row"].to_numpy()))))
    out = folder / f"{split}.parquet"
    with atomic_path(out) as tmp:
        pq.write_table(pa.concat_tables(tables) if tables else pa.table({}), tmp)
    return out


def _coco(kept: pd.DataFrame, ds, folder: Path) -> Path:
    src = Path(ds.source)
    data = json.loads(src.read_text("utf-8"))
    ids = set(kept["key"].astype(str))
    data["images"] = [im for im in data["images"] if str(im["id"]) in ids]
    if "annotations" in data:
        data["annotations"] = [a for a in data["annotations"] if str(a.get("image_id")) in ids]
    out = folder / src.name
    atomic_write_text(out, json.dumps(data, sort_keys=True))
    return out


def _link_folder(kept: pd.DataFrame, ds, dest: Path, mode: str) -> Path:
    """A folder of symlinks (or copies) of the kept files, in their original layout."""
    root = Path(ds.root)
    if dest.exists():
        shutil.rmtree(dest)
    for uri, row in zip(kept["uri"], kept["row"]):
        if row >= 0:
            continue  # rows inside containers have no file of their own
        target = dest / os.path.relpath(uri, root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "symlink":
            target.symlink_to(Path(uri).resolve())
        else:
            shutil.copy2(uri, target)
    return dest
