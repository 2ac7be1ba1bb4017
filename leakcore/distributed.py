"""The scan on a Ray cluster: the same plan, the same jobs, the same stored results.

What runs where:
- the driver (the machine that runs `leakcore scan --ray`) plans, merges and writes: it reads the plan, tracks
  progress, merges each query block's per-block top-k in collection order (the local merge, so the neighbours
  are the local ones, tie for tie), and writes every neighbour table;
- embedding runs in an actor pool, one encoder per actor (a GPU per actor when the cluster has GPUs); an actor
  embeds a chunk of images and commits it to the workspace's content-addressed cache as one shard, so a
  chunk is done or not, never half;
- search runs as tasks over (query block x collection block): a task gets its query block from the object
  store and reads its collection block itself: from the object store for image splits, from the
  memory-mapped shards for precomputed (clip-retrieval) embeddings, so no worker holds a collection.

Storage: the workspace must be on a file system every node sees at the same path (NFS, a cluster's shared
disk, or one machine). That is the one mode supported: actors write cache shards straight into it, and a
re-run skips what is there, on any node. Query vectors and image-split collections travel through Ray's
object store.

Faults: a killed actor is restarted and its chunk retried (`max_restarts`, `max_task_retries`); a killed task
is retried (`max_retries`); a stopped driver leaves committed shards and tables, and the next run's plan skips
them, as the local scan does.
"""
from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from leakcore import embed, search
from leakcore.errors import ClusterUnreachable, InvalidInput
from leakcore.scan import EmbedJob, ScanContext, ScanPlan, ScanResult, SplitInput, run_scan
from leakcore.schema import SplitId

log = logging.getLogger(__name__)

QUERY_BLOCK = 4096  # faiss's own query block: tasks split queries where faiss would, so sums are identical
CHUNK = 1024  # images per embedding call (one cache shard each)

def connect(address: str | None = None, *, num_cpus: int | None = None):
    """Join a running cluster (`address`: "auto", "ray://host:10001" or "host:6379") or start a local one."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is in requirements.txt
        raise InvalidInput("the Ray scan needs the ray package", cli="pip install -r requirements.txt") from exc
    if not ray.is_initialized():
        if address in (None, "", "local"):
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        else:
            _answers(address)
            try:
                ray.init(address=address, log_to_driver=False, ignore_reinit_error=True)
            except (ConnectionError, TimeoutError) as exc:
                raise ClusterUnreachable(
                    f"could not join the Ray cluster at {address}: {exc}",
                    cli="check the address (`ray status --address ADDRESS` on this machine says whether Ray can join "
                        "it); a cluster whose head was started with token authentication (a ~/.ray/auth_token on its "
                        "machine) needs RAY_AUTH_MODE=token here too (docs/distributed.md)",
                    page="Check the address; a cluster started with token authentication needs RAY_AUTH_MODE=token "
                         "where this server runs (docs/distributed.md)") from None
    return ray


CONNECT_TIMEOUT_S = 5.0  # a cluster's head answers at once; Ray itself retried a wrong address for minutes in silence


def _answers(address: str) -> None:
    """ClusterUnreachable unless something accepts a connection at the address's host and port ("auto" is Ray's to
    find): `ray.init` on a wrong address printed warnings for 13 minutes and never failed, and the page waited on
    "connecting to Ray" the same way."""
    import socket

    if address == "auto":
        return
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidInput(f"a Ray address is host:port, ray://host:port or auto, got {address!r}",
                           cli="e.g. --ray 10.0.0.5:6379", page="e.g. 10.0.0.5:6379")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterUnreachable(f"nothing answers at {hostport} ({exc.strerror or exc}): no Ray cluster to join there",
                                 cli="start its head there (`ray start --head --port PORT`) or check the address",
                                 page="Check the address, and that the cluster's head is running") from None


def query_blocks(nq: int, block: int = QUERY_BLOCK) -> list[tuple[int, int]]:
    """[start, stop) blocks of `block` queries; a last block under 20 (faiss's BLAS threshold) joins the one
    before, so each block takes the same faiss path as the whole query set."""
    starts = list(range(0, nq, block))
    out = [(s, min(s + block, nq)) for s in starts]
    if len(out) > 1 and out[-1][1] - out[-1][0] < 20:
        out[-2] = (out[-2][0], out[-1][1])
        out.pop()
    return out


def _remote_defs(ray, gpu: bool):
    @ray.remote(num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0, max_restarts=3, max_task_retries=3)
    class EmbedWorker:
        """One encoder per actor; embeds chunks of a split into the workspace's cache."""

        def __init__(self, ws_path: str, encoder: str, options: dict):
            from leakcore.encoders import create_encoder
            from leakcore.project import Workspace

            self.ws = Workspace.open(ws_path)
            self.encoder = create_encoder(encoder, **options)
            self.mirrored = self.encoder.mirrored()

        def embed(self, records: list[dict], mirror: bool, batch_size: int) -> int:
            items = pd.DataFrame.from_records(records)
            enc = self.mirrored if mirror else self.encoder
            embed.embed_items(self.ws, items, enc, batch_size=batch_size, shard_size=max(1, len(items)), workers=1)
            return len(items)

    @ray.remote(max_retries=3)
    def search_array(queries: np.ndarray, collection: np.ndarray, start: int, stop: int, kk: int):
        return search.block_result(queries, collection[start:stop], start, kk)

    @ray.remote(max_retries=3)
    def search_shards(queries: np.ndarray, ds, rows: np.ndarray, start: int, stop: int, kk: int):
        _, block = next(embed.embeddings_blocks(ds, rows[start:stop], stop - start))
        return search.block_result(queries, block, start, kk)

    return EmbedWorker, search_array, search_shards


def search_blocks(ray, queries: np.ndarray, n: int, submit, k: int, *, block_rows: int,
                  query_block: int = QUERY_BLOCK, self_index: np.ndarray | None = None, progress=None):
    """Exact top-k of `queries` over a collection of `n` rows on the cluster. `submit(query_ref, start, stop)`
    starts the task that searches rows [start, stop) (`search_array` or `search_shards`); every query block's
    results are merged in collection order by the local merge, so the neighbours are the local scan's.
    `progress(done, total)` counts finished tasks (a web-scale search is hours of one table)."""
    c_blocks = [(a, min(a + block_rows, n)) for a in range(0, n, block_rows)]
    parts = []
    for qs, qe in query_blocks(len(queries), query_block):
        qref = ray.put(np.ascontiguousarray(queries[qs:qe], dtype=np.float32))
        parts.append(((qs, qe), [submit(qref, a, b) for a, b in c_blocks]))
    if progress is not None:
        pending = [r for _, refs in parts for r in refs]
        total = len(pending)
        while pending:
            _, pending = ray.wait(pending, num_returns=1)
            progress(total - len(pending), total)
    D, I = [], []
    for (qs, qe), refs in parts:
        results = ray.get(refs)  # in collection order: the local merge sees the same sequence
        d, i = search.merge_blocks(results, qe - qs, k, self_index=None if self_index is None else self_index[qs:qe])
        D.append(d), I.append(i)
    if not D:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate(D), np.concatenate(I)


class RayContext(ScanContext):
    """A scan context whose embedding and search jobs run on a Ray cluster."""

    def __init__(self, ws, plan: ScanPlan, *, address: str | None = None, workers: int | None = None,
                 chunk: int = CHUNK, query_block: int = QUERY_BLOCK, num_cpus: int | None = None, **kw):
        super().__init__(ws, plan, **kw)
        self.ray = connect(address, num_cpus=num_cpus)
        resources = self.ray.cluster_resources()
        self.gpu = resources.get("GPU", 0) >= 1
        self.workers = workers or max(1, int(resources.get("GPU" if self.gpu else "CPU", 1)))
        self.chunk, self.query_block = chunk, query_block
        self.EmbedWorker, self.search_array, self.search_shards = _remote_defs(self.ray, self.gpu)
        self._actors = None
        self._collections: dict[SplitId, object] = {}

    # ---- embedding: chunks over an actor pool -----------------------------------------------------------------
    def actors(self):
        if self._actors is None:
            s = self.plan.settings
            self._actors = [self.EmbedWorker.remote(str(self.ws.path), s.encoder, s.options)
                            for _ in range(self.workers)]
        return self._actors

    def embed(self, job: EmbedJob) -> None:
        from ray.util import ActorPool

        if not job.done:
            grp = self._items[(self._items["dataset"] == job.split.dataset) & (self._items["split"] == job.split.split)]
            ok = grp[(grp["status"] == "ok") & grp["sha256"].notna()].drop_duplicates("sha256")
            cache = embed.EmbeddingCache(self.ws.embeddings_dir(job.encoder) / job.fingerprint, 1)
            todo = ok[~ok["sha256"].isin(cache.keys())]
            cols = ["item_id", "uri", "row", "status", "sha256"]
            chunks = [todo.iloc[i:i + self.chunk][cols].to_dict("records") for i in range(0, len(todo), self.chunk)]
            pool = ActorPool(self.actors())
            done = 0
            for n in pool.map_unordered(lambda a, c: a.embed.remote(c, job.mirror, self.batch_size), chunks):
                done += n
                if self.progress:
                    self.progress(job.name, done, len(todo))
        super().embed(job)  # reads the vectors back from the cache (and embeds nothing: all are there)

    # ---- search: tasks over (query block x collection block) --------------------------------------------------
    def knn(self, queries: np.ndarray, split: SplitInput, k: int, self_index: np.ndarray | None,
            stage: str | None = None):
        self._release_actors()  # the plan embeds first; actors holding every CPU would starve the search tasks
        kk = k + (1 if self_index is not None else 0)
        block_rows = search.block_rows_for(queries.shape[1], self.budget_bytes)
        if split.embeddings_source is not None:
            ds = self.ws.datasets[split.split.dataset]
            grp = self._items[(self._items["dataset"] == split.split.dataset) & (self._items["split"] == split.split.split)]
            rows = self.ray.put(grp["row"].to_numpy())
            n, submit = len(grp), (lambda q, a, b: self.search_shards.remote(q, ds, rows, a, b, kk))
        else:
            ids, vecs = self.vectors(split.split)
            if split.split not in self._collections:  # one collection in the object store at a time
                self._collections = {split.split: self.ray.put(np.ascontiguousarray(vecs))}
            ref, n = self._collections[split.split], len(ids)
            submit = lambda q, a, b: self.search_array.remote(q, ref, a, b, kk)  # noqa: E731
        report = self.report(f"blocks of {stage}") if stage else None  # not "search …": that is the table's own
        return search_blocks(self.ray, queries, n, submit, k, block_rows=block_rows,
                             query_block=self.query_block, self_index=self_index, progress=report)

    def _release_actors(self) -> None:
        for a in self._actors or []:
            self.ray.kill(a)
        self._actors = None

    def close(self) -> None:
        self._release_actors()
        self._collections = {}


def run_scan_ray(ws, plan: ScanPlan, *, address: str | None = None, workers: int | None = None,
                 progress=None, batch_size: int = 64, budget_bytes: int = search.DEFAULT_BLOCK_BYTES,
                 chunk: int = CHUNK, num_cpus: int | None = None) -> ScanResult:
    """Run a plan's jobs on a Ray cluster (a local one when `address` is None) and store what the local scan
    stores. The fit and verification jobs, if any, run on the driver."""
    import ray

    joined = ray.is_initialized()  # a connection this call did not make (a caller's, a test's) is left as it was
    ctx = RayContext(ws, plan, address=address, workers=workers, chunk=chunk, num_cpus=num_cpus,
                     batch_size=batch_size, budget_bytes=budget_bytes, progress=progress)
    try:
        return run_scan(ws, plan, context=ctx)
    finally:
        ctx.close()
        if not joined:
            # the connection (and a local cluster) ends with the scan: a dashboard that ran a Ray scan from its Home page
            # kept its driver, and about a minute after the scan the process ended itself ("Failed to connect to GCS
            # within 60 seconds ... The program will terminate"), taking the dashboard down
            ray.shutdown()

