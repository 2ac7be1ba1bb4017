"""The scan as a plan of jobs, then a run: embed every split, search every (eval split x train split) pair and
every eval split against itself.

`plan_scan` reads the workspace and returns explicit, plain-data jobs, each with the key that makes it
skippable: an embedding job is done when every image's vector is in the content-addressed cache; a search
job is done when its stored neighbour table carries the same key (the inputs' content hashes, encoder
fingerprint and k). `run_job` runs one job; `run_scan` runs a plan's jobs in order. Nothing is changed in the
workspace's settings here: `configure_scan` does that, visibly, before planning.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

import numpy as np
import pandas as pd

from leakcore import embed, search
from leakcore.embed import EmbeddingCache
from leakcore.encoders import Encoder, create_encoder
from leakcore.errors import InvalidInput
from leakcore.io import atomic_write_text, write_parquet
from leakcore.schema import SplitId

log = logging.getLogger(__name__)

# progress(stage, done, total): stage is "embed <dataset/split>" or "search <eval> -> <train>"
ScanProgress = Callable[[str, int, int], None]


@dataclass
class ScanResult:
    encoder: str
    pairs_searched: list[tuple[str, str]] = field(default_factory=list)
    pairs_skipped: list[tuple[str, str]] = field(default_factory=list)
    embedded_splits: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)  # fit and verification jobs run
    seconds: float = 0.0
    refreshed: dict = field(default_factory=dict)  # files changed or gone on disk since they were added (probed again
    # first), and new ones under a folder dataset not added (`Project._read_changed_files`)


def split_id(dataset: str, split: str) -> str:
    return str(SplitId(dataset, split))


def pair_path(ws, encoder: str, eval_split: "str | SplitId", train_split: "str | SplitId", kind: str = "neighbors") -> Path:
    """neighbors/<encoder>/<eval ds~split>/<train ds~split>.parquet; kind "groups": the training-split searches
    that only grouping reads, under groups/<encoder>/ (so rates never count a training split as evaluated)."""
    root = ws.paths.neighbors(encoder) if kind == "neighbors" else ws.paths.group_pairs(encoder)
    return root / SplitId.parse(eval_split).file_name / (SplitId.parse(train_split).file_name + ".parquet")


def write_pair_table(ws, encoder: str, eval_split: str, train_split: str, table: pd.DataFrame, /, kind: str = "neighbors",
                     **meta) -> Path:
    """Store one (query split, collection split) neighbour table and its sidecar, each written atomically."""
    out = pair_path(ws, encoder, eval_split, train_split, kind)
    write_parquet(table, out)
    atomic_write_text(out.with_suffix(".json"), json.dumps({**meta, "eval_split": str(eval_split),
                                                            "train_split": str(train_split)}))
    return out


def stored_key(path: Path) -> str | None:
    """The key a stored neighbour table was made with, or None when it is missing or half-written."""
    meta = path.with_suffix(".json")
    if not (path.exists() and meta.exists()):
        return None
    try:
        return json.loads(meta.read_text()).get("key")
    except (OSError, ValueError):
        return None


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\x00")
    return h.hexdigest()[:24]


# ---- settings ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScanSettings:
    """What a scan runs with: encoder, its options, k and query flips."""

    encoder: str
    k: int
    flip_queries: bool = False
    encoder_options: tuple[tuple[str, object], ...] = ()
    grouping: bool = False  # also search training splits against each other (group recovery reads them)
    verify: bool = False  # check candidate pairs on their pixels (leakcore.verify) and fit the fused score

    @property
    def options(self) -> dict:
        return dict(self.encoder_options)

    @classmethod
    def of(cls, ws) -> "ScanSettings":
        return cls(ws.encoder, ws.k, ws.flip_queries, tuple(sorted(ws.encoder_options.items())), ws.grouping,
                   ws.verification)


def configure_scan(ws, *, encoder: str | None = None, k: int | None = None, flip_queries: bool | None = None,
                   encoder_options: dict | None = None, grouping: bool | None = None,
                   verify: bool | None = None) -> ScanSettings:
    """Record scan settings in project.toml (None keeps a setting) and return those in force."""
    if (encoder is not None and encoder != ws.encoder) or (k is not None and int(k) != ws.k) or \
            (flip_queries is not None and bool(flip_queries) != ws.flip_queries) or \
            (grouping is not None and bool(grouping) != ws.grouping) or \
            (verify is not None and (bool(verify) != ws.verification or not ws.verification_chosen)):
        ws.set_settings(encoder=encoder, k=k, flip_queries=flip_queries, grouping=grouping, verify=verify)
    ws.set_encoder_options(**(encoder_options or {}))
    return ScanSettings.of(ws)


# ---- the plan ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SplitInput:
    """A split as the scan sees it: its searchable items, and the key of their vectors."""

    split: SplitId
    role: str
    key: str
    embeddings_source: str | None = None  # an embeddings-only dataset: vectors come from its shards
    mirror_key: str | None = None  # eval splits with query flips: the key of the mirrored vectors


@dataclass(frozen=True)
class EmbedJob:
    """Embed the images of one split that the cache lacks (with the mirrored images when `mirror`)."""

    split: SplitId
    encoder: str
    fingerprint: str
    mirror: bool
    todo: int  # images not in the cache when planned

    @property
    def done(self) -> bool:
        return self.todo == 0

    @property
    def name(self) -> str:
        return f"embed {self.split}" + (" (mirrored)" if self.mirror else "")


@dataclass(frozen=True)
class SearchJob:
    """Search one evaluation split against one training split (or itself), top-k; skippable by `key`."""

    eval_split: SplitId
    train_split: SplitId
    k: int
    key: str
    done: bool
    kind: str = "neighbors"  # "groups": a training split searched for group recovery

    @property
    def name(self) -> str:
        return f"search {self.eval_split} -> {self.train_split}" + (" (groups)" if self.kind == "groups" else "")

    @property
    def within(self) -> bool:
        return self.eval_split == self.train_split


@dataclass(frozen=True)
class FitJob:
    """Fit the fused score (leakcore.fused) on the extended suite; done when a model is stored."""

    encoder: str
    done: bool

    @property
    def name(self) -> str:
        return "fit fused score"


@dataclass(frozen=True)
class VerifyJob:
    """Verify the candidate pairs of one stored neighbour table; done when every candidate has evidence."""

    eval_split: SplitId
    train_split: SplitId
    done: bool

    @property
    def name(self) -> str:
        return f"verify {self.eval_split} -> {self.train_split}"


Job = Union[EmbedJob, SearchJob, FitJob, VerifyJob]


@dataclass(frozen=True)
class ScanPlan:
    settings: ScanSettings
    fingerprint: str
    splits: tuple[SplitInput, ...]
    jobs: tuple[Job, ...]

    @property
    def todo(self) -> list[Job]:
        return [j for j in self.jobs if not j.done]

    def split(self, sid: SplitId) -> SplitInput:
        return next(s for s in self.splits if s.split == sid)

    def describe(self) -> pd.DataFrame:
        """One row per job: what, state and key (for `leakcore scan --plan` and the page)."""
        def detail(j: Job) -> str:
            if isinstance(j, EmbedJob):
                return f"{j.todo} images to embed"
            return f"key {j.key}" if isinstance(j, SearchJob) else ""

        return pd.DataFrame([{"job": j.name, "state": "done" if j.done else "to do", "detail": detail(j)}
                             for j in self.jobs])


def _ok_shas(items: pd.DataFrame) -> pd.Series:
    return items.loc[(items["status"] == "ok") & items["sha256"].notna(), "sha256"].astype(str)


def plan_scan(ws, *, encoder: Encoder | None = None, settings: ScanSettings | None = None) -> ScanPlan:
    """The jobs a scan of the workspace needs now, each marked done or to do; reads, never writes."""
    settings = settings or ScanSettings.of(ws)
    items = ws.items()
    if items.empty:
        raise InvalidInput(f"workspace {ws.path} has no items", cli="add a dataset first with `leakcore add`",
                            page="Add a dataset first")
    datasets = ws.datasets
    fingerprint, mirror_fp = "", ""
    cache = mirror_cache = None
    splits: list[SplitInput] = []
    jobs: list[Job] = []
    for (ds_name, split_name), grp in items.groupby(["dataset", "split"], sort=True):
        sid = SplitId(str(ds_name), str(split_name))
        ds = datasets.get(sid.dataset)
        role = str(grp["role"].iloc[0])
        if ds is not None and ds.format == "embeddings":
            embed.check_embeddings_source(ds, settings.encoder)
            mtimes = [p.stat().st_mtime_ns for p, _ in embed.embedding_shards(Path(ds.source))]
            splits.append(SplitInput(sid, role, _digest(settings.encoder, ds.source, len(grp), *mtimes), ds.source))
            continue
        if cache is None:
            encoder = encoder or create_encoder(settings.encoder, **settings.options)
            fingerprint, mirror_fp = encoder.fingerprint, encoder.mirrored().fingerprint
            cache = EmbeddingCache(ws.paths.embeddings(encoder.name, fingerprint), encoder.spec.dim)
        shas = _ok_shas(grp)
        key = _digest(fingerprint, *shas)
        missing = int((~shas.drop_duplicates().isin(cache.keys())).sum())
        jobs.append(EmbedJob(sid, settings.encoder, fingerprint, False, missing))
        mirror_key = None
        if settings.flip_queries and role == "eval":
            if mirror_cache is None:
                mirror_cache = EmbeddingCache(ws.paths.embeddings(encoder.name, mirror_fp), encoder.spec.dim)
            kept = shas[~shas.map(cache.reason).notna()] if len(cache) else shas
            jobs.append(EmbedJob(sid, settings.encoder, mirror_fp, True,
                                 int((~kept.drop_duplicates().isin(mirror_cache.keys())).sum())))
            mirror_key = _digest(key, "mirror")
        splits.append(SplitInput(sid, role, key, None, mirror_key))
    evals = [s for s in splits if s.role == "eval" and s.embeddings_source is None]  # vectors-only never query
    trains = [s for s in splits if s.role == "train"]
    for q in evals:
        for c in trains + [q]:
            key = _digest(q.mirror_key or q.key, c.mirror_key or c.key, settings.k)  # only eval splits have mirrors
            done = stored_key(pair_path(ws, settings.encoder, q.split, c.split)) == key
            jobs.append(SearchJob(q.split, c.split, settings.k, key, done))
    if settings.grouping:  # training splits against themselves and each other, each unordered pair once
        queries = [t for t in trains if t.embeddings_source is None]
        for i, q in enumerate(queries):
            for c in trains[trains.index(q):]:
                key = _digest(q.key, c.key, settings.k, "groups")
                done = stored_key(pair_path(ws, settings.encoder, q.split, c.split, "groups")) == key
                jobs.append(SearchJob(q.split, c.split, settings.k, key, done, "groups"))
    if settings.verify:
        jobs += _verify_jobs(ws, settings, [j for j in jobs if isinstance(j, SearchJob) and j.kind == "neighbors"])
    return ScanPlan(settings, fingerprint, tuple(splits), tuple(jobs))


def _verify_jobs(ws, settings: ScanSettings, searches: list[SearchJob]) -> list[Job]:
    """The fit (when no model is stored) and one verification per eval x train table; a table is done when
    its search is done and every candidate pair in it has evidence."""
    from leakcore import fused, verify

    model = fused.load(ws, settings.encoder)
    jobs: list[Job] = [FitJob(settings.encoder, model is not None)]
    store = verify.EvidenceStore(ws) if model is not None else None
    items = verify.item_shas(ws) if model is not None else None
    for s in searches:
        done = False
        path = pair_path(ws, settings.encoder, s.eval_split, s.train_split)
        if s.done and model is not None and path.exists() and fused.rescue_current(path, model):
            table = fused.candidates(pd.read_parquet(path), model)
            done = not store.missing(items.reindex(table["eval_item_id"]).to_numpy(),
                                     items.reindex(table["train_item_id"]).to_numpy()).any()
            if done and model.second:
                done = not np.isnan(fused.SecondOpinion.of_model(ws, model).similarity(table)).any()
        jobs.append(VerifyJob(s.eval_split, s.train_split, done))
    return jobs


# ---- running jobs --------------------------------------------------------------------------------------------
class ScanContext:
    """What the jobs of one run share on one machine: the workspace, the built encoder, vectors per split."""

    def __init__(self, ws, plan: ScanPlan, *, encoder: Encoder | None = None, batch_size: int = 64,
                 shard_size: int = 4096, budget_bytes: int = search.DEFAULT_BLOCK_BYTES,
                 progress: ScanProgress | None = None):
        self.ws, self.plan = ws, plan
        self.batch_size, self.shard_size, self.budget_bytes = batch_size, shard_size, budget_bytes
        self.progress = progress
        self._encoder = encoder
        self._vectors: dict[tuple[SplitId, bool], tuple[np.ndarray, np.ndarray]] = {}
        self._items = ws.items()

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            s = self.plan.settings
            self._encoder = create_encoder(s.encoder, **s.options)
        return self._encoder

    def report(self, stage: str):
        return (lambda d, t: self.progress(stage, d, t)) if self.progress else None

    def vectors(self, sid: SplitId, *, mirror: bool = False, stage: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(item ids, vectors) of the split's images that have one; embeds what the cache lacks."""
        if (sid, mirror) not in self._vectors:
            grp = self._items[(self._items["dataset"] == sid.dataset) & (self._items["split"] == sid.split)]
            grp = grp.reset_index(drop=True)
            if mirror:
                ids, _ = self.vectors(sid)
                grp = grp.set_index("item_id").loc[ids].reset_index()
            enc = self.encoder.mirrored() if mirror else self.encoder
            vecs, have = embed.embed_items(self.ws, grp, enc, batch_size=self.batch_size, shard_size=self.shard_size,
                                           progress=self.report(stage) if stage else None)
            self._vectors[(sid, mirror)] = (grp["item_id"].astype(str).to_numpy()[have], vecs[have])
        return self._vectors[(sid, mirror)]

    def embed(self, job: EmbedJob) -> None:
        """Fill the cache for one embedding job (here: in this process; a cluster context fans it out)."""
        self.vectors(job.split, mirror=job.mirror, stage=job.name)

    def knn(self, queries: np.ndarray, split: SplitInput, k: int, self_index: np.ndarray | None,
            stage: str | None = None):
        """Exact top-k of `queries` in a collection split, block by block within the memory budget (`stage`: the
        job's name, for a context that reports progress inside one search)."""
        block_rows = search.block_rows_for(queries.shape[1], self.budget_bytes)
        _, blocks = self.blocks(split, block_rows)
        return search.knn(queries, blocks, k, self_index=self_index, budget_bytes=self.budget_bytes)

    def blocks(self, split: SplitInput, block_rows: int):
        if split.embeddings_source is not None:
            ds = self.ws.datasets[split.split.dataset]
            grp = self._items[(self._items["dataset"] == split.split.dataset) & (self._items["split"] == split.split.split)]
            return grp["item_id"].astype(str).to_numpy(), embed.embeddings_blocks(ds, grp["row"].to_numpy(), block_rows)
        ids, vecs = self.vectors(split.split)
        return ids, search.iter_blocks(vecs, block_rows)


def run_job(ctx: ScanContext, job: Job) -> None:
    """Run one job of the plan (embedding writes cache shards; search writes one neighbour table; the fit
    stores the fused model; verification stores evidence for the candidate pairs of one table)."""
    if isinstance(job, FitJob):
        from leakcore import fused

        fused.fit(ctx.ws, encoder_name=job.encoder, progress=ctx.progress, encoder=ctx.encoder)  # the scan's encoder
        return
    if isinstance(job, VerifyJob):
        run_verify_jobs(ctx, [job])
        return
    if isinstance(job, EmbedJob):
        ctx.embed(job)
        return
    q = ctx.plan.split(job.eval_split)
    c = ctx.plan.split(job.train_split)
    q_ids, q_vecs = ctx.vectors(q.split)
    c_ids, _ = ctx.blocks(c, 1)
    mirror = q.mirror_key is not None and job.kind == "neighbors"
    total = len(q_ids) * (2 if mirror else 1)  # the bar counts evaluation images searched (twice: mirrored too)
    if ctx.progress:
        ctx.progress(job.name, 0, total)
    self_index = np.arange(len(q_ids)) if job.within else None
    sim, idx = ctx.knn(q_vecs, c, job.k, self_index, stage=job.name)
    if mirror:
        if ctx.progress:
            ctx.progress(job.name, len(q_ids), total)
        _, mirrored = ctx.vectors(q.split, mirror=True)
        sim, idx = search.merge_results([(sim, idx), ctx.knn(mirrored, c, job.k, self_index,
                                                             stage=f"{job.name} (mirrored)")], job.k)
    write_pair_table(ctx.ws, ctx.plan.settings.encoder, str(job.eval_split), str(job.train_split),
                     pairs_table(q_ids, c_ids, sim, idx), kind=job.kind, key=job.key, k=job.k, encoder=ctx.plan.settings.encoder,
                     queries=int(len(q_ids)), collection=int(len(c_ids)))
    if ctx.progress:
        ctx.progress(job.name, total, total)  # reported once the table is stored


def run_verify_jobs(ctx: ScanContext, jobs: list[VerifyJob]) -> None:
    """Verify the candidate pairs of several tables in one run of the evidence: the cores share one queue of pairs,
    so that a small table (an evaluation split against itself) does not end each table with one core idle."""
    from leakcore import fused

    model = fused.load(ctx.ws, ctx.plan.settings.encoder)
    # each table with its pairs checked below the candidate threshold (`fused.rescued`), stored in it once per model
    tables = [fused.rescue_table(ctx.ws, pair_path(ctx.ws, ctx.plan.settings.encoder, j.eval_split, j.train_split),
                                 model) for j in jobs]
    pairs = pd.concat([fused.candidates(t, model) for t in tables], ignore_index=True)
    more = f" and {len(jobs) - 1} more table{'s' if len(jobs) > 2 else ''}" if len(jobs) > 1 else ""  # a bar's name
    fused.verify_pairs(ctx.ws, pairs, model, progress=ctx.progress,
                       stage=f"verify pairs {jobs[0].eval_split} -> {jobs[0].train_split}{more}")


def run_scan(ws, plan: ScanPlan, *, encoder: Encoder | None = None, progress: ScanProgress | None = None,
             batch_size: int = 64, shard_size: int = 4096, budget_bytes: int = search.DEFAULT_BLOCK_BYTES,
             context: ScanContext | None = None) -> ScanResult:
    """Run the plan's jobs that are not done, in order, then drop neighbour tables of splits that left.
    `context` runs them elsewhere (leakcore.distributed.RayContext: on a Ray cluster)."""
    t0 = time.perf_counter()
    ctx = context or ScanContext(ws, plan, encoder=encoder, batch_size=batch_size, shard_size=shard_size,
                                 budget_bytes=budget_bytes, progress=progress)
    result = ScanResult(encoder=plan.settings.encoder)
    pending_verify = [j for j in plan.jobs if isinstance(j, VerifyJob) and not j.done]
    for job in plan.jobs:
        if isinstance(job, VerifyJob) and not job.done:
            # every table's pairs at once, where the first is reached (the fit and the searches are done by then)
            if job is pending_verify[0]:
                run_verify_jobs(ctx, pending_verify)
            result.verified.append(job.name)
            continue
        if isinstance(job, EmbedJob):
            if not job.mirror:
                result.embedded_splits.append(str(job.split))
            if not job.done:
                run_job(ctx, job)
            continue
        if isinstance(job, (FitJob, VerifyJob)):
            if not job.done:
                run_job(ctx, job)
                result.verified.append(job.name)
            continue
        pair = (str(job.eval_split), str(job.train_split))
        if job.done:
            result.pairs_skipped.append(pair)
            continue
        run_job(ctx, job)
        result.pairs_searched.append(pair)
    wanted = {pair_path(ws, plan.settings.encoder, j.eval_split, j.train_split, j.kind) for j in plan.jobs
              if isinstance(j, SearchJob)}
    _drop_stale_pairs(ws, plan.settings.encoder, wanted)
    result.seconds = time.perf_counter() - t0
    return result


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
    grouping: bool | None = None,
    verify: bool | None = None,
) -> ScanResult:
    """Configure (settings given here are remembered), plan and run a scan: the local, in-order path."""
    settings = configure_scan(ws, encoder=encoder_name, k=k, flip_queries=flip_queries, encoder_options=encoder_overrides,
                              grouping=grouping, verify=verify)
    encoder = create_encoder(settings.encoder, **settings.options) if _has_images(ws) else None
    plan = plan_scan(ws, encoder=encoder, settings=settings)
    return run_scan(ws, plan, encoder=encoder, progress=progress, batch_size=batch_size, shard_size=shard_size,
                    budget_bytes=budget_bytes)


def _has_images(ws) -> bool:
    formats = {name: ds.format for name, ds in ws.datasets.items()}
    return any(formats.get(d) != "embeddings" for d in ws.items()["dataset"].unique())


def pairs_table(query_ids: np.ndarray, collection_ids: np.ndarray, sim: np.ndarray, idx: np.ndarray) -> pd.DataFrame:
    """Top-k results as rows: eval_item_id, rank (1-based), train_item_id, similarity."""
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
    for root in (ws.paths.neighbors(encoder), ws.paths.group_pairs(encoder)):
        for f in root.glob("*/*.parquet") if root.exists() else []:
            if f not in wanted:
                f.unlink()
                f.with_suffix(".json").unlink(missing_ok=True)
