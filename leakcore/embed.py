"""Batched, cached, resumable embedding: vectors keyed by (encoder fingerprint, content sha256)."""
from __future__ import annotations

import hashlib
import logging
from collections import deque
from pathlib import Path
from typing import Callable, Iterator

import faiss
import numpy as np
import pandas as pd

from leakcore import catalog, search
from leakcore.catalog import embedding_shards
from leakcore.encoders import Encoder, get_spec
from leakcore.errors import EncoderMismatch
from leakcore.io import atomic_path, write_parquet

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


class EmbeddingCache:
    """Shards of vectors under embeddings/<encoder>/<fingerprint>/: shard-NAME.npy plus shard-NAME.keys.parquet.

    The keys file is written last and is the shard's commit marker, so a killed run leaves no
    half-counted shard and the next run embeds only what is missing. A new shard is named by the hash of
    the content hashes it holds, so writers on different machines never collide: two that embedded the same
    images write the same name with the same vectors. (Older workspaces' numbered shards still read.)
    """

    def __init__(self, folder: Path, dim: int):
        self.folder = Path(folder)
        self.dim = dim
        self.folder.mkdir(parents=True, exist_ok=True)
        self._index: dict[str, tuple[str, int]] = {}
        self._reasons: dict[str, str] = {}
        self._shards: dict[str, np.ndarray] = {}
        for keys_file in sorted(self.folder.glob("shard-*.keys.parquet")):
            shard = keys_file.name.removesuffix(".keys.parquet")
            keys = pd.read_parquet(keys_file)
            for row, (sha, reason) in enumerate(zip(keys["sha256"], keys["reason"])):
                self._index.setdefault(sha, (shard, row))
                if isinstance(reason, str) and reason:
                    self._reasons[sha] = reason

    def __contains__(self, sha: str) -> bool:
        return sha in self._index

    def __len__(self) -> int:
        return len(self._index)

    def keys(self) -> set[str]:
        """The content hashes that have a vector (or a recorded failure)."""
        return set(self._index)

    def reason(self, sha: str) -> str | None:
        return self._reasons.get(sha)

    def add(self, shas: list[str], vectors: np.ndarray, reasons: list[str | None]) -> None:
        """Commit one shard atomically, named by its content."""
        shard = shard_name(shas)
        with atomic_path(self.folder / f"{shard}.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(vectors, dtype=np.float32))
        write_parquet(pd.DataFrame({"sha256": shas, "reason": reasons}), self.folder / f"{shard}.keys.parquet")
        for row, (sha, reason) in enumerate(zip(shas, reasons)):
            self._index.setdefault(sha, (shard, row))
            if reason:
                self._reasons[sha] = reason

    def _shard(self, shard: str) -> np.ndarray:
        if shard not in self._shards:
            self._shards[shard] = np.load(self.folder / f"{shard}.npy", mmap_mode="r")
        return self._shards[shard]

    def get(self, shas) -> np.ndarray:
        """(n, dim) float32 for cached shas (all must be present)."""
        out = np.zeros((len(shas), self.dim), dtype=np.float32)
        locs = [self._index[s] for s in shas]
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for pos, (shard, row) in enumerate(locs):
            by_shard.setdefault(shard, []).append((pos, row))
        for shard, pairs in by_shard.items():
            pos, rows = zip(*pairs)
            out[list(pos)] = self._shard(shard)[list(rows)]
        return out


def shard_name(shas: list[str]) -> str:
    """A shard's file stem: the hash of the content hashes it holds, in order."""
    return "shard-" + hashlib.sha256("\n".join(shas).encode()).hexdigest()[:20]


def embed_items(
    ws,
    items: pd.DataFrame,
    encoder: Encoder,
    *,
    batch_size: int = 64,
    shard_size: int = 4096,
    workers: int | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Vectors for `items` (row-aligned) and a mask of the rows that have one.

    Only images whose sha256 is not in the cache are decoded and embedded; unreadable items get no vector.
    """
    cache = EmbeddingCache(ws.paths.embeddings(encoder.name, encoder.fingerprint), encoder.spec.dim)
    ok = (items["status"] == "ok") & items["sha256"].notna()
    todo = items[ok & ~items["sha256"].isin(cache.keys())].drop_duplicates("sha256")
    total = len(todo)
    if total:
        log.info("embedding %d new images with %s (%d cached)", total, encoder.name, len(cache))
        if progress:
            progress(0, total)  # the stage starts now: its first batch is timed with the rest
        positions: deque[int] = deque()

        def datas() -> Iterator[bytes | None]:
            for pos, data in catalog.iter_item_bytes(todo, reader=ws.sources):
                positions.append(pos)
                yield data

        shas = todo["sha256"].astype(str).to_numpy()
        buf_shas: list[str] = []
        buf_vecs: list[np.ndarray] = []
        buf_reasons: list[str | None] = []
        done = 0
        try:
            for vectors, reasons in encoder.encode(datas(), batch_size=batch_size, workers=workers):
                batch_pos = [positions.popleft() for _ in range(len(reasons))]
                buf_shas.extend(shas[batch_pos])
                buf_vecs.append(vectors)
                buf_reasons.extend(reasons)
                done += len(reasons)
                if len(buf_shas) >= shard_size:
                    cache.add(buf_shas, np.concatenate(buf_vecs), buf_reasons)
                    buf_shas, buf_vecs, buf_reasons = [], [], []
                if progress:
                    progress(done, total)
        finally:
            # what was embedded is kept however the loop ends (Ctrl-C included): a new user who stopped a scan at
            # 192 of 404 images found all 192 to embed again. Whole batches only, so a resumed scan's batches are
            # the ones an uninterrupted scan makes (the same vectors)
            if buf_shas:
                cache.add(buf_shas, np.concatenate(buf_vecs), buf_reasons)
    have = ok.to_numpy().copy()
    vectors = np.zeros((len(items), encoder.spec.dim), dtype=np.float32)
    idx = np.flatnonzero(have)
    if len(idx):
        shas = items["sha256"].astype(str).to_numpy()[idx]
        vectors[idx] = cache.get(list(shas))
        failed = np.array([cache.reason(s) is not None for s in shas], dtype=bool)
        have[idx[failed]] = False
    return vectors, have


# ---- embeddings-only sources (clip-retrieval layout) -------------------------------------------------
def check_embeddings_source(ds, encoder_name: str) -> int:
    """Refuse an embeddings-only source made by another encoder or with another dimension; return its dim."""
    if ds.encoder != encoder_name:
        raise EncoderMismatch(
            f"dataset {ds.name!r} holds vectors made by {ds.encoder!r}, but this scan uses {encoder_name!r}",
            cli=f"scan with --encoder {ds.encoder}, or re-embed that source",
            page=f"Choose the encoder {ds.encoder} for the scan, or re-embed that source")
    dim = np.load(embedding_shards(Path(ds.source))[0][0], mmap_mode="r").shape[1]
    expected = get_spec(encoder_name).dim
    if dim != expected:
        raise EncoderMismatch(f"dataset {ds.name!r} vectors have dimension {dim}, but {encoder_name} makes {expected}")
    return dim


def embeddings_blocks(ds, rows: np.ndarray, block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """Blocks (offset into `rows`, float32 L2-normalised vectors) from memory-mapped shards, in order."""
    shards = [np.load(p, mmap_mode="r") for p, _ in embedding_shards(Path(ds.source))]
    starts = np.cumsum([0] + [s.shape[0] for s in shards])
    rows = np.asarray(rows)
    for off in range(0, len(rows), block_rows):
        sel = rows[off:off + block_rows]
        block = np.empty((len(sel), shards[0].shape[1]), dtype=np.float32)
        shard_of = np.searchsorted(starts, sel, side="right") - 1
        for s in np.unique(shard_of):
            mask = shard_of == s
            local = sel[mask] - starts[s]
            if len(local) and local[-1] - local[0] + 1 == len(local) and (np.diff(local) == 1).all():
                block[mask] = search.read_rows(shards[s], int(local[0]), int(local[-1]) + 1)  # contiguous: bounded RSS
            else:
                block[mask] = shards[s][local]
        faiss.normalize_L2(block)  # in place, in C++: numpy's norm took 8x longer than reading the block
        yield off, block
