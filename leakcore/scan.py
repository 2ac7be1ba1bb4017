"""ingest -> embed -> search: every (eval split x train split) pair and every eval split against itself.

Each pair is stored once under neighbors/<encoder>/ with a key of its inputs; a pair whose key is
unchanged is skipped, so an interrupted scan resumes and adding a dataset scans only the new pairs.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from leakcore import embed, search
from leakcore.encoders import create_encoder
from leakcore.project import atomic_write_text, write_parquet

log = logging.getLogger(__name__)

# progress(stage, done, total): stage is "embed <dataset/split>" or "search <eval> -> <train>"
ScanProgress = Callable[[str, int, int], None]


@dataclass
class ScanResult:
    encoder: str
    pairs_searched: list[tuple[str, str]] = field(default_factory=list)
    pairs_skipped: list[tuple[str, str]] = field(default_factory=list)
    embedded_splits: list[str] = field(default_factory=list)
    seconds: float = 0.0


def split_id(dataset: str, split: str) -> str:
    return f"{dataset}/{split}"


def pair_path(ws, encoder: str, eval_split: str, train_split: str) -> Path:
    """neighbors/<encoder>/<eval ds~split>/<train ds~split>.parquet"""
    return ws.neighbors_dir(encoder) / eval_split.replace("/", "~") / (train_split.replace("/", "~") + ".parquet")


def write_pair_table(ws, encoder: str, eval_split: str, train_split: str, table: pd.DataFrame, /, **meta) -> Path:
    """Store one (evaluation split, training split) neighbour table and its sidecar, each written atomically."""
    out = pair_path(ws, encoder, eval_split, train_split)
    write_parquet(table, out)
    atomic_write_text(out.with_suffix(".json"), json.dumps({**meta, "eval_split": eval_split, "train_split": train_split}))
    return out


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\x00")
    return h.hexdigest()[:24]


class _Split:
    """A split's searchable rows: item ids, and vectors either in memory or as memmap blocks."""

    def __init__(self, sid: str, items: pd.DataFrame, vectors: np.ndarray | None, ds=None, rows=None, key=""):
        self.sid = sid
        self.item_ids = items["item_id"].astype(str).to_numpy()
        self.vectors = vectors
        self.ds = ds
        self.rows = rows
        self.key = key
        self.mirrored: np.ndarray | None = None

    def blocks(self, block_rows: int):
        if self.vectors is not None:
            return search.iter_blocks(self.vectors, block_rows)
        return embed.embeddings_blocks(self.ds, self.rows, block_rows)


def scan(
    ws,
    *,
    encoder_name: str | None = None,
    k: int | None = None,
    progress: ScanProgress | None = None,
    batch_size: int = 64,
    budget_bytes: int = search.DEFAULT_BLOCK_BYTES,
    encoder_overrides: dict | None = None,
    shard_size: int = 4096,
    flip_queries: bool | None = None,
) -> ScanResult:
    """Embed every readable item and search every needed pair; returns what was done."""
    t0 = time.perf_counter()
    encoder_name = encoder_name or ws.encoder
    k = int(k or ws.k)
    flip_queries = ws.flip_queries if flip_queries is None else bool(flip_queries)
    if encoder_name != ws.encoder or k != ws.k or flip_queries != ws.flip_queries:
        ws.set_settings(encoder=encoder_name, k=k, flip_queries=flip_queries)
    ws.set_encoder_options(**(encoder_overrides or {}))
    encoder_overrides = ws.encoder_options
    items = ws.items()
    if items.empty:
        raise ValueError(f"workspace {ws.path} has no items; add a dataset first with `leakcore add`")
    datasets = ws.datasets
    result = ScanResult(encoder=encoder_name)
    encoder = None
    splits: dict[str, _Split] = {}
    for (ds_name, split_name), grp in items.groupby(["dataset", "split"], sort=True):
        sid = split_id(ds_name, split_name)
        ds = datasets.get(ds_name)
        grp = grp.reset_index(drop=True)
        if ds is not None and ds.format == "embeddings":
            embed.check_embeddings_source(ds, encoder_name)
            rows = grp["row"].to_numpy()
            key = _digest(encoder_name, ds.source, len(grp), *[p.stat().st_mtime_ns for p, _ in embed.embedding_shards(Path(ds.source))])
            splits[sid] = _Split(sid, grp, None, ds=ds, rows=rows, key=key)
            continue
        if encoder is None:
            encoder = create_encoder(encoder_name, **(encoder_overrides or {}))
        stage = f"embed {sid}"
        vectors, have = embed.embed_items(
            ws, grp, encoder, batch_size=batch_size, shard_size=shard_size,
            progress=(lambda d, t, s=stage: progress(s, d, t)) if progress else None,
        )
        kept = grp[have]
        key = _digest(encoder.fingerprint, *kept["sha256"].astype(str))
        splits[sid] = _Split(sid, kept, vectors[have], key=key)
        if flip_queries and grp["role"].iloc[0] == "eval":
            stage = f"embed {sid} (mirrored)"
            mirrored, _ = embed.embed_items(
                ws, kept.reset_index(drop=True), encoder.mirrored(), batch_size=batch_size, shard_size=shard_size,
                progress=(lambda d, t, s=stage: progress(s, d, t)) if progress else None,
            )
            splits[sid].mirrored = mirrored
            splits[sid].key = _digest(key, "mirror")
        result.embedded_splits.append(sid)

    roles = items.drop_duplicates(["dataset", "split"]).set_index(["dataset", "split"])["role"]
    evals = [split_id(d, s) for (d, s), r in roles.items() if r == "eval"]
    trains = [split_id(d, s) for (d, s), r in roles.items() if r == "train"]
    pairs = [(e, t) for e in evals for t in trains] + [(e, e) for e in evals]
    for eval_sid, train_sid in pairs:
        q, c = splits[eval_sid], splits[train_sid]
        if q.vectors is None:
            continue  # an embeddings-only split is never a query set
        key = _digest(q.key, c.key, k)
        out = pair_path(ws, encoder_name, eval_sid, train_sid)
        meta_path = out.with_suffix(".json")
        if out.exists() and meta_path.exists() and json.loads(meta_path.read_text()).get("key") == key:
            result.pairs_skipped.append((eval_sid, train_sid))
            continue
        if progress:
            progress(f"search {eval_sid} -> {train_sid}", 0, 1)
        self_index = np.arange(len(q.item_ids)) if eval_sid == train_sid else None
        block_rows = search.block_rows_for(q.vectors.shape[1], budget_bytes)
        sim, idx = search.knn(q.vectors, c.blocks(block_rows), k, self_index=self_index, budget_bytes=budget_bytes)
        if q.mirrored is not None:
            flipped = search.knn(q.mirrored, c.blocks(block_rows), k, self_index=self_index, budget_bytes=budget_bytes)
            sim, idx = search.merge_results([(sim, idx), flipped], k)
        write_pair_table(ws, encoder_name, eval_sid, train_sid, _pairs_table(q.item_ids, c.item_ids, sim, idx), key=key,
                         k=k, encoder=encoder_name, queries=int(len(q.item_ids)), collection=int(len(c.item_ids)))
        result.pairs_searched.append((eval_sid, train_sid))
        if progress:
            progress(f"search {eval_sid} -> {train_sid}", 1, 1)
    _drop_stale_pairs(ws, encoder_name, {pair_path(ws, encoder_name, e, t) for e, t in pairs})
    result.seconds = time.perf_counter() - t0
    return result


def _pairs_table(query_ids: np.ndarray, collection_ids: np.ndarray, sim: np.ndarray, idx: np.ndarray) -> pd.DataFrame:
    nq, k = idx.shape
    valid = idx >= 0
    q_rows = np.repeat(np.arange(nq), k).reshape(nq, k)[valid]
    ranks = np.tile(np.arange(1, k + 1), nq).reshape(nq, k)[valid]
    return pd.DataFrame({
        "eval_item_id": query_ids[q_rows],
        "rank": ranks.astype(np.int16),
        "train_item_id": collection_ids[idx[valid]],
        "similarity": sim[valid].astype(np.float32),
    })


def _drop_stale_pairs(ws, encoder: str, wanted: set[Path]) -> None:
    """Remove neighbour files of splits that no longer exist (a dataset was removed)."""
    root = ws.neighbors_dir(encoder)
    if not root.exists():
        return
    for f in root.glob("*/*.parquet"):
        if f not in wanted:
            f.unlink()
            f.with_suffix(".json").unlink(missing_ok=True)
