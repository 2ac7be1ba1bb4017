"""The workspace owns storage and freshness: every artefact's path (`paths`), its version (`stamp`) and what is
derived from it and kept in memory (`cache`)."""
from pathlib import Path

import pandas as pd
import pytest

from leakcore import catalog, project, verify
from leakcore.ingest import add_dataset
from leakcore.project import Caches, Layout, Workspace

from conftest import make_folder_dataset


@pytest.fixture
def ws(tmp_path) -> Workspace:
    ws = Workspace.create(tmp_path / "ws", encoder="phash")
    add_dataset(ws, "d", make_folder_dataset(tmp_path / "d", n_train=4, n_test=2))
    return ws


def test_the_layout_places_every_artefact_inside_the_workspace(tmp_path):
    lay = Layout(tmp_path)
    paths = [lay.config, lay.items, lay.review_db, lay.review_wal, lay.embeddings("e"), lay.embeddings("e", "fp"),
             lay.neighbors("e"), lay.calibration("e"), lay.calibration_thresholds("e"), lay.group_pairs("e"),
             lay.geometry(2), lay.evidence(7), lay.fused("e"), lay.fused_file("e", "model.json"), lay.shortcuts,
             lay.shortcut_audit("d"), lay.exports, lay.display_cache, lay.downloads, lay.images, lay.file("t.csv")]
    assert all(p.is_relative_to(tmp_path) and p != tmp_path for p in paths)
    assert len(set(paths)) == len(paths)  # no two artefacts share a path
    with pytest.raises(ValueError, match="model.json, suite.parquet, suite.json"):
        lay.fused_file("e", "notes.txt")
    with pytest.raises(ValueError, match="no folder"):
        lay.file("../elsewhere.csv")


def test_a_stamp_moves_with_every_atomic_write_and_names_the_valid_artefacts(ws):
    before = ws.stamp("items")
    ws.write_items(ws.items())  # the same rows again: a new file all the same
    assert ws.stamp("items") != before and ws.stamp("items") == ws.stamp("items")
    config = ws.stamp("config")
    ws.set_settings(k=ws.k)
    assert ws.stamp("config") != config
    assert ws.stamp("fused") == (None,) and ws.stamp("evidence") == () and ws.stamp("neighbors") == ()
    with pytest.raises(ValueError, match="artefacts are calibration, config, embeddings"):
        ws.stamp("thumbnails")


def test_items_are_read_once_per_version_and_a_caller_cannot_change_the_kept_table(ws, monkeypatch):
    reads = []
    real = pd.read_parquet
    monkeypatch.setattr(project.pd, "read_parquet", lambda *a, **k: reads.append(a) or real(*a, **k))
    first = ws.items()
    for _ in range(5):
        ws.items(), ws.split_ids(), ws.splits()
    assert len(reads) == 1
    first["label"] = "changed"  # callers add and overwrite columns of their copy
    first["extra"] = 1
    first.loc[first.index[0], "item_id"] = "nobody"
    again = ws.items()
    assert "extra" not in again and (again["label"] != "changed").all() and "nobody" not in set(again["item_id"])
    ws.write_items(again.iloc[:3])  # a new version: read again
    assert len(ws.items()) == 3 and len(reads) == 2


def test_another_writer_shows_at_once_and_shared_caches_never_serve_a_stale_version(ws):
    other = Workspace.open(ws.path)  # e.g. the CLI beside the dashboard
    assert len(ws.items()) == len(other.items()) == 6
    other.write_items(other.items().iloc[:2])
    assert len(ws.items()) == 2
    later = Workspace.open(ws.path)
    later.caches = ws.caches  # the dashboard hands every Project it opens on a folder the same caches
    assert later.items() is not ws.items() and len(later.items()) == 2


def test_a_named_cache_keeps_its_latest_keys_only():
    caches, made = Caches(), []

    def make(key):
        return lambda: made.append(key) or key * 10

    assert caches.get("x", 1, make(1)) == 10 and caches.get("x", 1, make(1)) == 10 and made == [1]
    caches.get("x", 2, make(2))  # one entry by default: a new version replaces the old
    caches.get("x", 1, make(1))
    assert made == [1, 2, 1]
    for key in (1, 2, 3, 2, 4):  # least recently used out first
        caches.get("y", key, make(key), entries=3)
    assert made[3:] == [1, 2, 3, 4]
    caches.get("y", 2, make(2), entries=3)
    caches.get("y", 1, make(1), entries=3)  # 1 was dropped (1, 2, 3 -> 2 used -> 4 pushed out 1)
    assert made[-1] == 1
    caches.clear("y")
    assert len(caches) == 1


def test_the_evidence_store_is_read_again_when_a_part_is_added(ws):
    store = verify.EvidenceStore(ws)
    assert store.folder == ws.paths.evidence(verify.VERSION) and store.frame().empty

    def part(a, b):
        return pd.DataFrame({"sha_a": [a], "sha_b": [b], **{c: [0.5] for c in verify.EVIDENCE},
                             "variant": ["none"], "dy": [0], "dx": [0]})

    store.add(part("a", "b"))
    one = store.frame()
    assert len(one) == 1 and store.frame() is one  # kept while no part is added
    verify.EvidenceStore(Workspace.open(ws.path)).add(part("c", "d"))  # another process's part
    assert len(store.frame()) == 2


def test_the_workspace_reader_keeps_the_containers_it_opened(ws, cifar_folder, monkeypatch):
    batch = next(p for p in Path(cifar_folder).iterdir() if p.name.startswith("data_batch"))
    loads = []
    real = catalog._cifar_batch
    monkeypatch.setattr(catalog, "_cifar_batch", lambda *a: loads.append(a) or real(*a))
    reader = catalog.SourceReader()
    first = reader.read(str(batch), 0)
    assert first and reader.read(str(batch), 1) and reader.read(str(batch), 0) == first
    assert len(loads) == 1  # one batch decoded once for every row of it
    assert ws.sources is ws.sources  # one reader per workspace


def test_a_copied_workspace_starts_with_empty_caches(ws):
    import pickle

    ws.items()
    copy = pickle.loads(pickle.dumps(ws))  # e.g. sent to another process: memory does not travel
    assert len(ws.caches) and not len(copy.caches) and len(copy.items()) == len(ws.items())


def test_the_dashboard_keeps_one_workspace_cache_across_reruns(ws):
    from ui import data

    first, again = data.open_workspace(str(ws.path)), data.open_workspace(str(ws.path))  # two reruns of a page
    assert first is not again and first.workspace.caches is again.workspace.caches
    kept = first.workspace.cache("pictures", "key", object)
    assert again.workspace.cache("pictures", "key", object) is kept


def test_a_path_that_is_no_workspace_is_said_plainly_with_the_workspaces_beside_it(tmp_path):
    """A new user's typo (`scan wss`) was told to create `wss`, and `report DATA` to make a workspace inside the
    dataset: a missing folder is said to be missing, and a folder that is no workspace names those beside it."""
    from leakcore.errors import WorkspaceError

    Workspace.create(tmp_path / "ws", encoder="phash")
    (tmp_path / "data").mkdir()
    with pytest.raises(WorkspaceError, match="there is no folder") as missing:
        Workspace.open(tmp_path / "wss")
    assert "init" in missing.value.cli_hint and str(tmp_path / "wss") not in missing.value.cli_hint
    with pytest.raises(WorkspaceError, match="is not a workspace") as data:
        Workspace.open(tmp_path / "data")
    assert "workspaces beside it: ws" in data.value.cli_hint and "not in it" in data.value.cli_hint
