"""Exact inner-product k-NN over a collection given as blocks, merging a running top-k (faiss)."""
from __future__ import annotations

import logging
from typing import Iterable, Iterator

import faiss
import numpy as np

log = logging.getLogger(__name__)

DEFAULT_BLOCK_BYTES = 256 << 20


def gpu_available() -> bool:
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


_GPU_RES = None


def _knn_block(queries: np.ndarray, block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    global _GPU_RES
    if gpu_available():
        if _GPU_RES is None:
            _GPU_RES = faiss.StandardGpuResources()
        return faiss.knn_gpu(_GPU_RES, queries, block, k, metric=faiss.METRIC_INNER_PRODUCT)
    return faiss.knn(queries, block, k, metric=faiss.METRIC_INNER_PRODUCT)


def read_rows(mm: np.memmap, start: int, stop: int) -> np.ndarray:
    """Rows [start, stop) of a file-backed memmap read with ordinary file reads, so that searched pages
    do not stay mapped into the process (slicing the memmap would keep the whole file resident)."""
    row_items = int(np.prod(mm.shape[1:]))
    row_bytes = mm.dtype.itemsize * row_items
    with open(mm.filename, "rb") as fh:
        fh.seek(mm.offset + start * row_bytes)
        buf = fh.read((stop - start) * row_bytes)
    return np.frombuffer(buf, dtype=mm.dtype).reshape(stop - start, *mm.shape[1:])


def _file_backed(a: np.ndarray) -> bool:
    return isinstance(a, np.memmap) and getattr(a, "filename", None) is not None and a.base is not None \
        and getattr(a, "offset", None) is not None and a.flags["C_CONTIGUOUS"]


def iter_blocks(collection: np.ndarray, block_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """(offset, float32 contiguous block) over an array or memmap of any float dtype."""
    file_backed = _file_backed(collection)
    for off in range(0, collection.shape[0], block_rows):
        stop = min(off + block_rows, collection.shape[0])
        block = read_rows(collection, off, stop) if file_backed else collection[off:stop]
        yield off, np.ascontiguousarray(block, dtype=np.float32)


def block_rows_for(dim: int, budget_bytes: int = DEFAULT_BLOCK_BYTES) -> int:
    """How many float32 rows of `dim` fit in the memory budget."""
    return max(1024, budget_bytes // (4 * dim))


def knn(
    queries: np.ndarray,
    collection: np.ndarray | Iterable[tuple[int, np.ndarray]],
    k: int,
    *,
    self_index: np.ndarray | None = None,
    budget_bytes: int = DEFAULT_BLOCK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (similarity, collection row) per query, best first; -1 rows where the collection is short.

    `collection` is an array (searched in blocks within `budget_bytes`) or an iterator of
    (offset, block). `self_index[i]` is query i's own row in the collection, excluded from its results
    (within-split duplicate search).
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    nq = queries.shape[0]
    kk = k + (1 if self_index is not None else 0)
    if isinstance(collection, np.ndarray):
        collection = iter_blocks(collection, block_rows_for(queries.shape[1], budget_bytes))
    results = (block_result(queries, block, offset, kk) for offset, block in collection) if nq else iter(())
    return merge_blocks(results, nq, k, self_index=self_index)


def block_result(queries: np.ndarray, block: np.ndarray, offset: int, kk: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Top-kk of the queries in one collection block, rows numbered from `offset`, padded to kk columns (None for
    an empty block). A cluster's search tasks compute exactly this, so their merge is the local one."""
    if block.shape[0] == 0:
        return None
    D, I = _knn_block(np.ascontiguousarray(queries, dtype=np.float32), np.ascontiguousarray(block, dtype=np.float32),
                      min(kk, block.shape[0]))
    I = np.where(I >= 0, I + offset, -1)
    if D.shape[1] < kk:
        D = np.pad(D, ((0, 0), (0, kk - D.shape[1])), constant_values=-np.inf)
        I = np.pad(I, ((0, 0), (0, kk - I.shape[1])), constant_values=-1)
    return np.ascontiguousarray(D, dtype=np.float32), np.ascontiguousarray(I, dtype=np.int64)


def merge_blocks(results: Iterable[tuple[np.ndarray, np.ndarray] | None], nq: int, k: int, *,
                 self_index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-block top-kk results, fed in collection order, into the top-k (faiss ResultHeap)."""
    kk = k + (1 if self_index is not None else 0)
    heap = faiss.ResultHeap(nq, kk, keep_max=True)
    for r in results:
        if r is not None:
            heap.add_result(*r)
    heap.finalize()
    D, I = heap.D, heap.I
    if self_index is not None:
        D, I = _drop_self(D, I, np.asarray(self_index), k)
    D = np.where(I >= 0, D, -np.inf).astype(np.float32)
    return D, I


def _drop_self(D: np.ndarray, I: np.ndarray, self_index: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's own row; keep the first k of the rest."""
    if D.shape[0] == 0 or D.shape[1] == 0:  # no query (a split with no readable image) or no column: nothing to drop
        return D[:, :k], I[:, :k]
    keep = I != self_index[:, None]
    # Rows where self was not found: drop the last column instead.
    no_self = keep.all(axis=1)
    keep[no_self, -1] = False
    D = D[keep].reshape(D.shape[0], -1)[:, :k]
    I = I[keep].reshape(I.shape[0], -1)[:, :k]
    return D, I


def merge_results(results: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Union of several top-k lists per query (e.g. a query and its mirror image): each collection row
    keeps its best similarity, and the k best rows are returned, best first."""
    D = np.concatenate([d for d, _ in results], axis=1)
    I = np.concatenate([i for _, i in results], axis=1)
    order = np.argsort(-D, axis=1, kind="stable")
    D, I = np.take_along_axis(D, order, 1), np.take_along_axis(I, order, 1)
    # Blank later repeats of an index within a row (their similarity is never higher than the first).
    sorted_idx = np.sort(I, axis=1)
    has_dup = (sorted_idx[:, 1:] == sorted_idx[:, :-1]) & (sorted_idx[:, 1:] >= 0)
    for row in np.flatnonzero(has_dup.any(axis=1)):
        _, first = np.unique(I[row], return_index=True)
        repeat = np.ones(I.shape[1], dtype=bool)
        repeat[first] = False
        D[row, repeat], I[row, repeat] = -np.inf, -1
    order = np.argsort(-D, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(D, order, 1), np.take_along_axis(I, order, 1)
