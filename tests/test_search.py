"""k-NN: equals numpy brute force; blockwise equals one-shot; within-split search excludes self."""
import numpy as np
import pytest

from leakcore import search
from leakcore.encoders import l2_normalise


def data(nq=37, nc=501, d=24, seed=0):
    rng = np.random.default_rng(seed)
    return l2_normalise(rng.normal(size=(nq, d)).astype(np.float32)), l2_normalise(rng.normal(size=(nc, d)).astype(np.float32))


def brute(q, c, k):
    sims = q @ c.T
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, idx, axis=1), idx


def test_knn_equals_numpy_brute_force():
    q, c = data()
    sim, idx = search.knn(q, c, 10)
    ref_sim, ref_idx = brute(q, c, 10)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(sim, ref_sim, atol=1e-5)


@pytest.mark.parametrize("block_rows", [1, 7, 100, 500, 501, 10_000])
def test_blockwise_equals_one_shot(block_rows):
    q, c = data(seed=1)
    one_sim, one_idx = search.knn(q, c, 5)
    blk_sim, blk_idx = search.knn(q, search.iter_blocks(c, block_rows), 5)
    np.testing.assert_array_equal(blk_idx, one_idx)
    np.testing.assert_allclose(blk_sim, one_sim, atol=1e-6)


def test_memmap_float16_collection(tmp_path):
    q, c = data(seed=2)
    mm = np.lib.format.open_memmap(tmp_path / "c.npy", mode="w+", dtype=np.float16, shape=c.shape)
    mm[:] = c
    mm.flush()
    sim, idx = search.knn(q, np.load(tmp_path / "c.npy", mmap_mode="r"), 3, budget_bytes=4096)
    ref_sim, ref_idx = brute(q, c.astype(np.float16).astype(np.float32), 3)
    np.testing.assert_array_equal(idx, ref_idx)


def test_within_split_excludes_self():
    q, _ = data(nq=50, seed=3)
    sim, idx = search.knn(q, q, 4, self_index=np.arange(50))
    assert idx.shape == (50, 4)
    assert not (idx == np.arange(50)[:, None]).any()
    ref_sim, ref_idx = brute(q, q, 5)
    np.testing.assert_array_equal(idx, ref_idx[:, 1:])


def test_short_collection_pads_with_minus_one():
    q, c = data(nq=3, nc=2)
    sim, idx = search.knn(q, c, 5)
    assert (idx[:, 2:] == -1).all() and np.isneginf(sim[:, 2:]).all()


def test_merge_results_keeps_best_similarity_per_row():
    a = (np.array([[0.9, 0.5, 0.1]], np.float32), np.array([[3, 1, 2]]))
    b = (np.array([[0.95, 0.4, 0.3]], np.float32), np.array([[1, 3, 7]]))
    sim, idx = search.merge_results([a, b], 3)
    assert idx.tolist() == [[1, 3, 7]]
    np.testing.assert_allclose(sim, [[0.95, 0.9, 0.3]])
