"""The scan on a Ray cluster: how much the cluster costs, how far it goes, and a time model checked against it.

    python bench/ray_scale.py [--part cifar|synthetic|all] [--train 50000] [--rows 10000000] [--queries 1000]

cifar     : CIFAR-10 (all 10,000 test images against --train training images, sscd-distilled at 224 px, the
            default scan), embedded and searched from scratch three times: the local scan (2 cores), and Ray
            on a two-node cluster on this machine (a head and a second node, one CPU each) with 1 and with 2
            workers. Checks that the three neighbour tables are identical; the overhead of the cluster is
            t(Ray, 2 workers) / t(local) - 1 (goal <= 10%).
synthetic : a --rows x 512 float16 collection in the clip-retrieval layout (10 shards, written once under
            .bench/), searched with --queries queries by the scan's own Ray tasks (`distributed.search_blocks`
            with `search_shards`: every task reads its rows from the memory-mapped shards itself) on 1 and on 2
            workers. Prints throughput per worker, each worker process's peak RSS (goal <= 1.5 GB), exactness
            against the local blockwise search for 50 queries, and the time model:

                T = ceil(blocks / W) * (bytes_per_block / R + convert_per_block + 2 * Q * rows_per_block * d / F)

            with R (read bandwidth of one worker), the float16 -> float32 + L2 normalisation cost, and F (search
            FLOP/s of one worker) measured on one block on the driver, checked against the measured runs, then
            extrapolated to 10^8 and 4 x 10^8 vectors on N GPU workers. No GPU was measured: F_gpu is an
            assumption given by --gpu-tflops and printed as one.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BENCH = ROOT / ".bench"
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "bench" / "ray"


# ---- a two-node cluster on this machine -------------------------------------------------------------------------
def start_cluster(nodes: int):
    """A head with one CPU and `nodes - 1` more nodes with one CPU each, all on localhost (Ray's own
    multi-node test harness: separate raylets and object stores, as on separate machines)."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    return cluster


def stop_cluster(cluster) -> None:
    import ray

    ray.shutdown()
    cluster.shutdown()


class PeakRSS:
    """Samples every Ray worker process's resident memory; `peak(title)` is the largest RSS seen of a
    process that ran a task or actor method with that title (Ray sets it as the process title). The process
    list is walked once a second (walking it is not free on 2 cores); known workers are sampled every 0.1 s."""

    def __init__(self, interval: float = 0.1, rescan: float = 1.0):
        self.interval, self.rescan, self.seen, self._stop = interval, rescan, {}, threading.Event()
        self.titles: dict[int, set] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psutil

        procs, last = {}, 0.0
        while not self._stop.is_set():
            if time.monotonic() - last > self.rescan:
                last = time.monotonic()
                for proc in psutil.process_iter(["pid", "cmdline"]):
                    cmd = proc.info["cmdline"] or []
                    if cmd and cmd[0].startswith("ray::"):
                        procs.setdefault(proc.info["pid"], proc)
                        self.titles.setdefault(proc.info["pid"], set()).add(cmd[0].split()[0])
            for pid, proc in list(procs.items()):
                try:
                    self.seen[pid] = max(self.seen.get(pid, 0), proc.memory_info().rss)
                except psutil.Error:
                    procs.pop(pid)
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def peak(self, title: str) -> tuple[int, int]:
        """(largest RSS in bytes, number of processes) over the processes seen running `title`."""
        pids = [pid for pid, titles in self.titles.items() if any(title in t for t in titles) and pid in self.seen]
        return (max(self.seen[p] for p in pids) if pids else 0), len(pids)


# ---- CIFAR-10: local scan vs Ray with 1 and 2 workers --------------------------------------------------------------
def cifar_subset(n_train: int) -> Path:
    out = BENCH / f"cifar10-test-train{n_train}.parquet"
    if not out.exists():
        df = pd.read_parquet(DATA / "cifar10" / "cifar10.parquet")
        df = pd.concat([df[df["split"] == "test"], df[df["split"] == "train"].head(n_train)])
        df.to_parquet(out)
    return out


def cifar_run(source: Path, mode: str, nodes: int = 0) -> tuple[float, pd.DataFrame, Path]:
    from leakcore import distributed
    from leakcore.api import Project

    ws_dir = BENCH / "ray-scale" / mode
    shutil.rmtree(ws_dir, ignore_errors=True)
    p = Project.create(ws_dir, encoder="sscd-distilled")
    p.add("cifar10", source)
    cluster = start_cluster(nodes) if nodes else None
    try:
        t0 = time.perf_counter()
        if cluster:
            distributed.run_scan_ray(p.workspace, p.scan(plan_only=True), address=cluster.address, workers=nodes)
        else:
            p.scan()
        seconds = time.perf_counter() - t0
    finally:
        if cluster:
            stop_cluster(cluster)
    pairs = p.scores.pairs(raw=True)
    pairs = pairs.sort_values(["eval_split", "train_split", "eval_item_id", "rank"]).reset_index(drop=True)
    return seconds, pairs, ws_dir


MODES = {"local": 0, "ray-1-worker": 1, "ray-2-workers": 2}


def bench_cifar(n_train: int, modes: list[str]) -> dict:
    """Runs `modes`; a mode not run is read back from the last run's workspace and timings (so that one mode can
    be measured again after a change that only touches it)."""
    from leakcore.api import Project

    source = cifar_subset(n_train)
    last = OUT / "ray-scale-cifar.json"
    previous = json.loads(last.read_text())["cifar"].get("seconds", {}) if last.exists() else {}
    runs = {}
    for mode, nodes in MODES.items():
        if mode in modes:
            seconds, pairs, _ = cifar_run(source, mode, nodes)
        else:
            p = Project.open(BENCH / "ray-scale" / mode)
            pairs = p.scores.pairs(raw=True).sort_values(
                ["eval_split", "train_split", "eval_item_id", "rank"]).reset_index(drop=True)
            seconds = previous[mode]
        runs[mode] = (seconds, pairs)
        print(f"  {mode:14s} {seconds:7.1f} s  ({len(pairs):,} neighbour rows)" + ("" if mode in modes else
              " (from the last run)"), flush=True)
    base = runs["local"][1]
    identical = {m: bool(p.equals(base)) for m, (_, p) in runs.items() if m != "local"}
    t_local, t1, t2 = (runs[m][0] for m in ("local", "ray-1-worker", "ray-2-workers"))
    result = {"images": 10_000 + n_train, "seconds": {m: runs[m][0] for m in MODES}, "measured_now": modes,
              "speedup_2_vs_1": t1 / t2, "overhead_vs_local": t2 / t_local - 1, "identical": identical}
    print(f"CIFAR-10 (10,000 test x {n_train:,} train, sscd-distilled 224 px, embed + search from scratch): "
          f"local {t_local:.1f} s, Ray 1 worker {t1:.1f} s, 2 workers {t2:.1f} s -> 2 vs 1 {t1 / t2:.2f}x, "
          f"overhead vs local {100 * (t2 / t_local - 1):+.1f}% (goal <= 10%); identical neighbours: {identical}")
    return result


# ---- synthetic web-scale collection -------------------------------------------------------------------------------
def synthetic_collection(rows: int, dim: int = 512, shards: int = 10) -> Path:
    out = BENCH / f"synthetic-{rows}x{dim}"
    done = out / "complete.json"
    if done.exists():
        return out
    (out / "img_emb").mkdir(parents=True, exist_ok=True)
    (out / "metadata").mkdir(exist_ok=True)
    per = math.ceil(rows / shards)
    for s in range(shards):
        n = min(per, rows - s * per)
        rng = np.random.default_rng(s)
        arr = np.lib.format.open_memmap(out / "img_emb" / f"img_emb_{s}.npy", mode="w+", dtype=np.float16, shape=(n, dim))
        for a in range(0, n, 200_000):
            b = min(a + 200_000, n)
            x = rng.standard_normal((b - a, dim), dtype=np.float32)
            arr[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
        arr.flush()
        del arr
        pd.DataFrame({"key": np.arange(s * per, s * per + n).astype(str)}).to_parquet(out / "metadata" / f"metadata_{s}.parquet")
        print(f"  wrote shard {s + 1}/{shards}", flush=True)
    done.write_text(json.dumps({"rows": rows, "dim": dim, "shards": shards}))
    return out


def synthetic_queries(src: Path, rows: int, nq: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Random unit queries; every 100th is a noisy copy of a known collection row (its expected top-1)."""
    from leakcore import embed

    rng = np.random.default_rng(1234)
    q = rng.standard_normal((nq, dim), dtype=np.float32)
    planted = rng.choice(rows, size=nq // 100, replace=False)
    ds = SimpleNamespace(source=str(src))
    for j, r in enumerate(planted):
        _, v = next(embed.embeddings_blocks(ds, np.array([r]), 1))
        q[100 * j] = v[0] + 0.05 * q[100 * j] / np.linalg.norm(q[100 * j])
    return q / np.linalg.norm(q, axis=1, keepdims=True), planted


def model_terms(src: Path, queries: np.ndarray, block_rows: int, reps: int = 5) -> dict:
    """Per-block costs on one core of the driver, median over `reps` blocks from different shards, in the cache
    state the next run will find: read, convert + normalise, search."""
    import faiss

    from leakcore import search
    from leakcore.embed import embedding_shards

    faiss.omp_set_num_threads(1)
    shards = [np.load(p, mmap_mode="r") for p, _ in embedding_shards(src)]
    measured = min(block_rows, shards[0].shape[0] // 3)  # a small collection's shard may hold fewer than 3 blocks
    reads, converts, searches = [], [], []
    for rep in range(reps):
        mm = shards[(rep * 3) % len(shards)]
        start = (rep % 3) * measured
        t0 = time.perf_counter()
        raw = search.read_rows(mm, start, start + measured)
        t1 = time.perf_counter()
        block = np.ascontiguousarray(raw, dtype=np.float32)
        faiss.normalize_L2(block)  # as embed.embeddings_blocks does
        t2 = time.perf_counter()
        search.block_result(queries, block, start, 10)
        t3 = time.perf_counter()
        reads.append(t1 - t0), converts.append(t2 - t1), searches.append(t3 - t2)
    faiss.omp_set_num_threads(0)
    bytes_block = measured * queries.shape[1] * 2
    flops_block = 2 * len(queries) * measured * queries.shape[1]
    read, convert, compute = (float(np.median(x)) * block_rows / measured for x in (reads, converts, searches))
    return {"block_rows": block_rows, "read_s": read, "convert_s": convert, "search_s": compute,
            "R_bytes_per_s": bytes_block / (read * measured / block_rows),
            "F_flops": flops_block / (compute * measured / block_rows),
            "convert_rows_per_s": block_rows / convert}


def predict(terms: dict, rows: int, nq: int, dim: int, workers: int, flops: float | None = None,
            read_bps: float | None = None) -> float:
    """The time model: blocks split evenly over workers; per block, read + convert + search (no overlap)."""
    blocks = math.ceil(rows / terms["block_rows"])
    per_block = terms["block_rows"]
    t_block = (per_block * dim * 2 / (read_bps or terms["R_bytes_per_s"]) + per_block / terms["convert_rows_per_s"]
               + 2 * nq * per_block * dim / (flops or terms["F_flops"]))
    return math.ceil(blocks / workers) * t_block


def bench_synthetic(rows: int, nq: int, gpu_tflops: float) -> dict:
    from leakcore import distributed, search

    dim = 512
    src = synthetic_collection(rows, dim)
    queries, planted = synthetic_queries(src, rows, nq, dim)
    block_rows = search.block_rows_for(dim)
    terms = model_terms(src, queries, block_rows)
    print(f"  one block ({block_rows:,} rows) on one core: read {terms['read_s']:.2f} s "
          f"({terms['R_bytes_per_s'] / 1e9:.2f} GB/s, from the disk or the page cache as this run finds them), float16 -> float32 + normalise "
          f"{terms['convert_s']:.2f} s, search {terms['search_s']:.2f} s ({terms['F_flops'] / 1e9:.1f} GFLOP/s)", flush=True)
    ds = SimpleNamespace(source=str(src))
    all_rows = np.arange(rows)
    out = {"rows": rows, "queries": nq, "dim": dim, "terms": terms, "terms_before": {}, "runs": {}}
    results = {}
    for workers in (1, 2):
        terms = model_terms(src, queries, block_rows)  # in the cache state this run finds
        out["terms_before"][workers] = terms
        print(f"  model terms now: read {terms['R_bytes_per_s'] / 1e9:.2f} GB/s, convert "
              f"{terms['convert_rows_per_s'] / 1e6:.2f} M rows/s, search {terms['F_flops'] / 1e9:.0f} GFLOP/s", flush=True)
        cluster = start_cluster(workers)
        import ray

        try:
            _, _, search_shards = distributed._remote_defs(ray, gpu=False)
            rows_ref = ray.put(all_rows)
            kk = 10
            with PeakRSS() as rss:
                t0 = time.perf_counter()
                D, I = distributed.search_blocks(
                    ray, queries, rows, lambda q, a, b: search_shards.remote(q, ds, rows_ref, a, b, kk), 10,
                    block_rows=block_rows)
                seconds = time.perf_counter() - t0
            peak, procs = rss.peak("search_shards")
        finally:
            stop_cluster(cluster)
        results[workers] = (D, I)
        per_worker = rows / seconds / workers
        model = predict(terms, rows, nq, dim, workers)
        out["runs"][workers] = {"seconds": seconds, "vectors_per_s_per_worker": per_worker,
                                "peak_rss_bytes": peak, "worker_processes": procs, "model_s": model}
        print(f"  {workers} worker(s): {seconds:.1f} s, {per_worker / 1e6:.2f} M vectors/s per worker "
              f"({rows * dim * 2 / seconds / workers / 1e9:.2f} GB/s per worker), peak RSS per worker "
              f"{peak / 2**30:.2f} GB over {procs} process(es) (goal <= 1.5 GB); model {model:.1f} s "
              f"({100 * (model / seconds - 1):+.0f}%)", flush=True)
    D, I = results[1]
    top1 = I[np.arange(0, nq, 100)[:len(planted)], 0]
    same = bool((results[2][1] == I).all() and np.array_equal(results[2][0], D))
    from leakcore import embed

    check = np.arange(0, nq, nq // 50)[:50]
    d_loc, i_loc = search.knn(queries[check], embed.embeddings_blocks(ds, all_rows, block_rows), 10)
    exact = bool((i_loc == I[check]).all())
    out.update(planted_found=int((top1 == planted).sum()), planted=int(len(planted)), same_1_vs_2=same,
               exact_vs_local=exact)
    print(f"  planted copies found at rank 1: {(top1 == planted).sum()}/{len(planted)}; 1 vs 2 workers identical: "
          f"{same}; identical to the local blockwise search for 50 queries: {exact}")
    gpu = gpu_tflops * 1e12
    print(f"Time model for {nq:,} queries (CPU-measured read and convert rates per worker; search at an ASSUMED "
          f"{gpu_tflops:g} TFLOP/s per GPU worker, not measured: no GPU was lent):")
    preds = {}
    for n in (10**8, 4 * 10**8):
        line = []
        for w in (1, 4, 16, 64):
            t = predict(terms, n, nq, dim, w, flops=gpu)
            preds[f"{n}:{w}"] = t
            line.append(f"{w} workers {t / 60:.1f} min")
        print(f"  {n:.0e} vectors ({n * dim * 2 / 1e9:.0f} GB float16): " + ", ".join(line))
    out["predictions_gpu_s"] = preds
    print(f"  on CPU workers like these (measured {terms['F_flops'] / 1e9:.0f} GFLOP/s each): " + "; ".join(
        f"{n:.0e} vectors on {w} workers {predict(terms, n, nq, dim, w) / 60:.1f} min"
        for n in (10**8, 4 * 10**8) for w in (16, 64)))
    out["gpu_tflops_assumed"] = gpu_tflops
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["cifar", "synthetic", "all"], default="all")
    ap.add_argument("--train", type=int, default=50_000, help="CIFAR-10 training images to search (of 50,000)")
    ap.add_argument("--modes", default=",".join(MODES), help="which CIFAR-10 runs to measure now (the others are "
                                                              "read from the last run)")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--gpu-tflops", type=float, default=20.0, help="assumed search FLOP/s of one GPU worker")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    report = {}
    if args.part in ("cifar", "all"):
        report["cifar"] = bench_cifar(args.train, args.modes.split(","))
    if args.part in ("synthetic", "all"):
        report["synthetic"] = bench_synthetic(args.rows, args.queries, args.gpu_tflops)
    name = OUT / f"ray-scale-{args.part}.json"
    name.write_text(json.dumps(report, indent=1, default=str))
    print(f"saved {name.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
