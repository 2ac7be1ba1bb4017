"""The scan on a local Ray cluster: the same neighbours as the local scan, through a killed actor and a killed
task, and after a stopped driver."""
import os
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from leakcore import distributed, search
from leakcore.api import Project

from conftest import make_folder_dataset

ray = pytest.importorskip("ray")


def _dying_once(marker: str):
    """A worker process setup hook: the first embedding call or search block that any worker runs creates the
    marker file and kills its process (a real death: Ray sees the process go and retries the work)."""

    def install():
        from leakcore import embed, search

        def dies_once(fn):
            def call(*args, **kwargs):
                if not os.path.exists(marker):
                    open(marker, "w").close()
                    os._exit(1)
                return fn(*args, **kwargs)
            return call

        embed.embed_items = dies_once(embed.embed_items)
        search.block_result = dies_once(search.block_result)

    return install


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray with 2 CPUs whose workers die once (`_dying_once`); `distributed.connect` joins it."""
    marker = tmp_path_factory.mktemp("crash") / "crashed"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": _dying_once(str(marker))})
    assert distributed.connect() is ray
    yield marker
    ray.shutdown()


def _workspace(tmp_path, name, precomputed=False):
    root = tmp_path / "data"
    if not root.exists():
        make_folder_dataset(root, n_train=40, n_test=12, leaks=(0, 3, 5))
    p = Project.create(tmp_path / name, encoder="phash")
    p.add("toy", root)
    if precomputed:
        p.add("web", _precomputed(tmp_path, root), encoder="phash")
    p.configure(flip_queries=True)
    return p


def _precomputed(tmp_path, root):
    """A clip-retrieval folder of three shards (17 rows each, float16): phash vectors of four test images
    among sign noise, so that the search across shards and blocks finds them and ties abound."""
    from leakcore.encoders import create_encoder

    src = tmp_path / "web"
    if src.exists():
        return src
    (src / "img_emb").mkdir(parents=True)
    (src / "metadata").mkdir()
    enc = create_encoder("phash")
    tests = sorted((root / "test").rglob("*.jpg"))[:4]
    copies = np.concatenate([v for v, _ in enc.encode([f.read_bytes() for f in tests])])
    rng = np.random.default_rng(0)
    rows = np.sign(rng.normal(size=(51, 64))) / 8.0
    rows[[3, 20, 34, 50]] = copies
    for shard in range(3):
        part = slice(17 * shard, 17 * (shard + 1))
        np.save(src / "img_emb" / f"img_emb_{shard}.npy", rows[part].astype(np.float16))
        pd.DataFrame({"url": [f"http://x/{i}" for i in range(51)][part]}).to_parquet(
            src / "metadata" / f"metadata_{shard}.parquet")
    return src


def _tables(p):
    pairs = p.scores.pairs(raw=True)
    return pairs.sort_values(["eval_split", "train_split", "eval_item_id", "rank"]).reset_index(drop=True)


def test_query_blocks_follow_faiss_and_never_leave_a_tiny_last_block():
    assert distributed.query_blocks(10) == [(0, 10)]
    assert distributed.query_blocks(8200, 4096) == [(0, 4096), (4096, 8200)]
    assert distributed.query_blocks(8192 + 5, 4096) == [(0, 4096), (4096, 8197)]


def test_ray_scan_gives_the_local_neighbours_through_killed_workers_and_a_stopped_driver(tmp_path, cluster,
                                                                                         monkeypatch):
    # tiny blocks so that there are many tasks (the local scan searches in the same blocks: phash scores tie
    # often, and ties keep the order in which blocks are merged)
    monkeypatch.setattr(search, "block_rows_for", lambda dim, budget=0: 7)
    local = _workspace(tmp_path, "local")
    local.scan()
    expected = _tables(local)
    assert len(expected)

    remote = _workspace(tmp_path, "remote")
    plan = remote.scan(plan_only=True)
    stopped = {"n": 0}

    def stop_after_first_search(stage, done, total):
        if stage.startswith("search") and done == total:  # the table is stored
            stopped["n"] += 1
            raise KeyboardInterrupt  # the driver stops after one stored table

    with pytest.raises(KeyboardInterrupt):
        distributed.run_scan_ray(remote.workspace, plan, workers=2, chunk=5, progress=stop_after_first_search)
    assert 0 < len(remote.scan(plan_only=True).todo) < len(plan.todo)  # embeddings and one table were kept
    result = distributed.run_scan_ray(remote.workspace, remote.scan(plan_only=True), workers=2, chunk=5)
    assert cluster.exists()  # a worker died and Ray retried its work
    assert result.pairs_searched and remote.scan(plan_only=True).todo == []
    pd.testing.assert_frame_equal(_tables(remote), expected)


def test_ray_search_over_precomputed_shards_gives_the_local_neighbours(tmp_path, cluster, monkeypatch):
    monkeypatch.setattr(search, "block_rows_for", lambda dim, budget=0: 7)  # blocks that straddle the shards
    local = _workspace(tmp_path, "local", precomputed=True)
    local.scan()
    expected = _tables(local)
    web = expected[expected["train_split"] == "web/train"]
    assert len(web) and (web.groupby("eval_item_id")["similarity"].max() > 0.99).sum() == 4  # the planted rows

    remote = _workspace(tmp_path, "remote", precomputed=True)
    seen = []
    distributed.run_scan_ray(remote.workspace, remote.scan(plan_only=True), workers=2, chunk=5, progress=lambda *a: seen.append(a))
    pd.testing.assert_frame_equal(_tables(remote), expected)
    blocks = [(d, t) for s, d, t in seen if s == "blocks of search toy/test -> web/train"]
    assert blocks and blocks[-1] == (8, 8)  # the driver reports every finished task (51 rows in blocks of 7)


def test_a_ray_address_where_nothing_answers_is_refused_at_once(tmp_path, monkeypatch):
    """`--ray 127.0.0.1:6999` with no cluster there printed Ray's warnings for 13 minutes and never failed; a
    cluster that refused the client (token authentication) ended as "internal error (a bug in leakcore)"."""
    import socket
    import time

    from leakcore import distributed
    from leakcore.errors import ClusterUnreachable, InvalidInput

    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # as a fresh driver (another test may have joined one)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    with pytest.raises(ClusterUnreachable, match=f"nothing answers at 127.0.0.1:{port}"):
        distributed.connect(f"127.0.0.1:{port}")
    assert time.monotonic() - t0 < 10
    with pytest.raises(InvalidInput, match="host:port"):
        distributed.connect("my-cluster")

    def refuses(**kwargs):
        raise ConnectionError("Failed to connect to Ray cluster at 127.0.0.1:1")

    with socket.socket() as server:  # something answers there, but Ray refuses to join
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setattr(ray, "init", refuses)
        with pytest.raises(ClusterUnreachable, match="could not join the Ray cluster") as err:
            distributed.connect(f"127.0.0.1:{server.getsockname()[1]}")
    assert "RAY_AUTH_MODE=token" in err.value.for_terminal()


def test_a_ray_scan_ends_the_connection_it_made_and_keeps_one_it_found(monkeypatch):
    """A dashboard that ran a Ray scan from its Home page kept its driver connected to the local cluster the scan had
    started, and about a minute later the process ended itself ("Failed to connect to GCS within 60 seconds"): the
    scan ends the connection it made; one it found (a caller's) is left as it was."""
    import ray

    from leakcore import distributed

    calls = []
    monkeypatch.setattr(distributed, "RayContext", lambda *a, **k: SimpleNamespace(close=lambda: calls.append("close")))
    monkeypatch.setattr(distributed, "run_scan", lambda ws, plan, context: "result")
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    for initialized, expected in ((False, ["close", "shutdown"]), (True, ["close"])):
        calls.clear()
        monkeypatch.setattr(ray, "is_initialized", lambda: initialized)
        assert distributed.run_scan_ray(None, None) == "result" and calls == expected
