"""Ingestion of every layout: roles, labels, ids, statuses; idempotence; path safety."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from leakcore import catalog, images
from leakcore.catalog import IngestError, role_from_name
from leakcore.ingest import add_dataset
from leakcore.project import SCHEMA_VERSION, Workspace, WorkspaceError

from conftest import jpeg_bytes, photo


@pytest.fixture
def ws(tmp_path):
    return Workspace.create(tmp_path / "ws")


@pytest.mark.parametrize("name, role", [("train", "train"), ("val", "eval"), ("valid", "eval"), ("validation", "eval"),
                                        ("dev", "eval"), ("test", "eval"), ("train2017", "train"), ("val2017", "eval")])
def test_role_from_split_name(name, role):
    assert role_from_name(name) == role


def test_role_override_and_unknown_split():
    assert role_from_name("extra", {"extra": "train"}) == "train"
    assert role_from_name("test", {"*": "train"}) == "train"
    with pytest.raises(IngestError, match="training or evaluation") as caught:
        role_from_name("extra")
    # the terminal names the flag, the page names its control: the core message speaks neither
    assert "--role extra=train" in caught.value.for_terminal()
    assert "--role" not in caught.value.for_page() and "role overrides" in caught.value.for_page()


def test_folder_layout(ws, folder_dataset):
    summary = add_dataset(ws, "animals", folder_dataset)
    items = ws.items()
    assert summary["items"] == 9 and len(items) == 9
    assert set(items["split"]) == {"train", "test"}
    assert set(items.loc[items["split"] == "train", "role"]) == {"train"}
    assert set(items["label"]) == {"cat", "dog"}
    assert items["item_id"].is_unique
    assert "animals/test/cat/test_000.jpg" in set(items["item_id"])
    assert (items["status"] == "ok").all() and items["sha256"].str.len().eq(64).all()
    assert (items["width"] == 64).all()


def test_re_add_is_idempotent_and_updates_changed_files(ws, folder_dataset):
    add_dataset(ws, "animals", folder_dataset)
    first = ws.items()
    add_dataset(ws, "animals", folder_dataset)
    pd.testing.assert_frame_equal(first, ws.items())
    changed = folder_dataset / "test" / "cat" / "test_000.jpg"
    changed.write_bytes(jpeg_bytes(photo(999, (30, 20))))
    os.utime(changed, ns=(1, 1))
    add_dataset(ws, "animals", folder_dataset)
    after = ws.items().set_index("item_id")
    row = after.loc["animals/test/cat/test_000.jpg"]
    assert row["width"] == 30
    unchanged = first.set_index("item_id").drop(index="animals/test/cat/test_000.jpg")
    pd.testing.assert_frame_equal(unchanged, after.drop(index="animals/test/cat/test_000.jpg"))


def test_unreadable_images_are_kept_with_reasons(ws, tmp_path, odd_images):
    root = tmp_path / "odd_ds"
    (root / "test").mkdir(parents=True)
    for kind, path in odd_images.items():
        (root / "test" / path.name).write_bytes(path.read_bytes())
    summary = add_dataset(ws, "odd", root)
    items = ws.items().set_index("key")
    assert len(items) == len(odd_images)
    assert items.loc["truncated.jpg", "reason"].startswith(images.TRUNCATED)
    assert items.loc["empty.jpg", "reason"] == images.EMPTY
    assert items.loc["text.jpg", "reason"] == images.NOT_IMAGE
    assert items.loc["huge.png", "reason"].startswith(images.TOO_LARGE)
    assert items.loc["cmyk.jpg", "status"] == "ok"
    assert summary["unreadable"] == {images.TRUNCATED: 1, images.EMPTY: 1, images.NOT_IMAGE: 1, images.TOO_LARGE: 1}


def test_files_that_are_not_images_by_name_are_counted_as_skipped(ws, tmp_path, capsys):
    """A new user's .DS_Store and Thumbs.db files went unmentioned: `add` now says what it left out."""
    from leakcore.cli import print_summary

    root = tmp_path / "ds"
    (root / "train" / "x").mkdir(parents=True)
    photo(1, (64, 48)).save(root / "train" / "x" / "a.jpg")
    for name in (".DS_Store", "Thumbs.db", "notes.txt", "more.txt"):
        (root / "train" / "x" / name).write_text("-")
    photo(2, (16, 12)).save(root / "train" / "x" / "thumb.png")  # read, but too small to judge
    summary = add_dataset(ws, "ds", root)
    assert summary["skipped"] == {".DS_Store": 1, "Thumbs.db": 1, ".txt": 2} and summary["tiny"] == 1
    print_summary(summary)
    out = capsys.readouterr().out
    assert "skipped as not images by their name: 4 (.txt 2, " in out and "under 24 px on a side" in out


def test_manifest_layouts_and_path_traversal(ws, tmp_path, folder_dataset):
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(jpeg_bytes(photo(3)))
    (folder_dataset / "link.jpg").symlink_to(outside)
    rows = [
        {"path": "train/cat/train_000.jpg", "split": "train", "label": "cat", "group": "g1", "id": "a"},
        {"path": "test/cat/test_000.jpg", "split": "test", "label": "cat", "group": "g2", "id": "b"},
        {"path": "../secret.jpg", "split": "test", "label": "cat", "group": "g3", "id": "c"},
        {"path": "link.jpg", "split": "test", "label": "cat", "group": "g4", "id": "d"},
        {"path": "test/missing.jpg", "split": "test", "label": "dog", "group": "g5", "id": "e"},
    ]
    for suffix in ("csv", "parquet", "jsonl"):
        manifest = folder_dataset / f"manifest.{suffix}"
        df = pd.DataFrame(rows)
        if suffix == "csv":
            df.to_csv(manifest, index=False)
        elif suffix == "parquet":
            df.to_parquet(manifest)
        else:
            df.to_json(manifest, orient="records", lines=True)
        add_dataset(ws, f"m{suffix}", manifest)
        items = ws.items()
        items = items[items["dataset"] == f"m{suffix}"].set_index("key")
        assert len(items) == 5
        assert items.loc["a", "status"] == "ok" and items.loc["a", "group"] == "g1"
        assert items.loc["c", "reason"].startswith(images.OUTSIDE_ROOT)
        assert items.loc["d", "reason"].startswith(images.OUTSIDE_ROOT)
        assert items.loc["e", "reason"] == images.MISSING


def test_manifest_without_path_column_is_refused(ws, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,split\na.jpg,train\n")
    with pytest.raises(IngestError, match="no 'path' column"):
        add_dataset(ws, "bad", bad, fmt="manifest")


def test_hf_parquet_layout(ws, hf_parquet):
    add_dataset(ws, "hf", hf_parquet)
    items = ws.items()
    assert len(items) == 6 and set(items["split"]) == {"train", "test"}
    assert set(items["label"]) == {"cat", "dog"}
    assert (items["row"] >= 0).all() and (items["status"] == "ok").all()
    assert catalog.read_bytes(items.iloc[0]["uri"], int(items.iloc[0]["row"]))[:2] == b"\xff\xd8"


def test_cifar_batches_layout(ws, cifar_folder):
    summary = add_dataset(ws, "c10", cifar_folder)
    items = ws.items()
    assert summary["items"] == 24
    assert (items["split"] == "train").sum() == 20 and (items["split"] == "test").sum() == 4
    assert set(items["label"]) == {"airplane", "automobile", "bird"}
    assert (items["width"] == 32).all() and (items["status"] == "ok").all()
    assert sorted(items.loc[items["split"] == "train", "key"].astype(int)) == list(range(20))


def test_a_cifar_batch_that_names_code_is_refused_not_run(ws, cifar_folder, tmp_path):
    """A CIFAR batch is a pickle, which can name any callable to run as it loads: only numpy's array rebuilding is
    let through, in every pickle protocol (a real batch, written by Python 2, uses protocol 2)."""
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    for protocol in (2, 5):
        with open(cifar_folder / "test_batch", "wb") as fh:
            pickle.dump({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 1]}, fh, protocol=protocol)
        catalog._cifar_batch(str(cifar_folder / "test_batch"))
    with open(cifar_folder / "test_batch", "wb") as fh:
        pickle.dump({"data": Payload(), "labels": [0]}, fh, protocol=2)
    with pytest.raises(IngestError, match="names posix.system"):
        add_dataset(ws, "c", cifar_folder)
    assert not marker.exists()


def test_coco_layout(ws, coco_dataset):
    add_dataset(ws, "coco", coco_dataset)
    items = ws.items()
    assert set(items["split"]) == {"val2017"} and set(items["role"]) == {"eval"}
    assert set(items["key"]) == {"100", "101", "102"}
    assert (items["status"] == "ok").all()
    assert set(items["label"]) == {"person", "dog"}


def test_embeddings_only_layout(ws, tmp_path):
    src = tmp_path / "laion"
    (src / "img_emb").mkdir(parents=True)
    (src / "metadata").mkdir()
    for shard in range(2):
        np.save(src / "img_emb" / f"img_emb_{shard}.npy", np.random.default_rng(shard).normal(size=(5, 64)).astype(np.float16))
        pd.DataFrame({"url": [f"http://x/{shard}_{i}.jpg" for i in range(5)], "caption": ["c"] * 5}).to_parquet(
            src / "metadata" / f"metadata_{shard}.parquet")
    with pytest.raises(IngestError, match="must declare the encoder") as caught:
        add_dataset(ws, "laion", src)
    assert "--encoder NAME" in caught.value.for_terminal() and "--" not in caught.value.for_page()
    add_dataset(ws, "laion", src, encoder="phash")
    items = ws.items()
    assert len(items) == 10 and set(items["role"]) == {"train"}
    assert items["uri"].str.startswith("http://x/").all() and list(items["row"]) == list(range(10))
    assert ws.datasets["laion"].encoder == "phash"


def test_workspace_schema_guard(tmp_path):
    ws = Workspace.create(tmp_path / "w")
    text = (ws.path / "project.toml").read_text().replace(f"schema_version = {SCHEMA_VERSION}", "schema_version = 99")
    (ws.path / "project.toml").write_text(text)
    with pytest.raises(WorkspaceError, match="newer leakcore"):
        Workspace.open(ws.path)
    with pytest.raises(WorkspaceError, match="there is no folder"):
        Workspace.open(tmp_path / "nowhere")
    with pytest.raises(WorkspaceError, match="not a workspace"):
        Workspace.open(tmp_path)


def test_cli_add_prints_summary(tmp_path, folder_dataset, capsys):
    from leakcore.cli import main

    assert main(["add", str(tmp_path / "w"), "--dataset", "animals", "--source", str(folder_dataset)]) == 0
    out = capsys.readouterr().out
    assert "9 items" in out and "animals/train" in out and "unreadable: 0" in out, out
    assert main(["add", str(tmp_path / "w"), "--dataset", "x", "--source", str(tmp_path / "nope")]) == 2, capsys.readouterr()


def test_decompression_limit_is_a_workspace_setting(ws, folder_dataset):
    add_dataset(ws, "animals", folder_dataset, max_pixels=1000)  # the 64 x 48 fixtures have 3072 pixels
    items = ws.items()
    assert len(items) == 9 and (items["reason"].str.startswith(images.TOO_LARGE)).all()  # every item, none left out
    os.utime(folder_dataset / "train" / "cat" / "train_000.jpg", ns=(5, 5))
    add_dataset(ws, "animals", folder_dataset)  # the limit is remembered
    assert Workspace.open(ws.path).config["settings"]["max_pixels"] == 1000
    assert ws.items().set_index("key").loc["cat/train_000.jpg", "reason"].startswith(images.TOO_LARGE)
    add_dataset(ws, "animals", folder_dataset, max_pixels=10_000)  # raised: the files refused before are read again
    assert ws.items()["status"].eq("ok").all() and ws.items()["reason"].isna().all()


def test_a_tree_of_links_is_read_where_links_are_followed(tmp_path):
    """A dataset built as links to a shared store (and a re-split's own image folders, links by default) was refused
    whole as "outside dataset root", with nothing to say how to read it. The refusal names the way; `follow_links`
    reads the files, serves them from their folders, and never follows a path that leaves the root by "..", nor a
    link outside the folders a server may read."""
    from conftest import make_folder_dataset

    from leakcore import access
    from leakcore.api import Project

    store = make_folder_dataset(tmp_path / "store", n_train=4, n_test=2)
    tree = tmp_path / "tree"
    for f in sorted(store.rglob("*.jpg")):
        link = tree / f.relative_to(store)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(f)
    refused = Project.create(tmp_path / "w1")
    refused.add("d", tree)
    items = refused.workspace.items()
    assert (items["status"] == "unreadable").all()
    assert items["reason"].str.contains("links to .*--follow-links", regex=True).all()

    assert refused.add("d", tree)["links_not_followed"] == 6  # said at the end of `add`, with the way to read them
    refused.add("d", tree, follow_links=True)  # again in the same workspace: the earlier refusal is not kept
    assert (refused.workspace.items()["status"] == "ok").all()
    ws = Project.create(tmp_path / "w2")
    ws.add("d", tree, follow_links=True)
    assert (ws.workspace.items()["status"] == "ok").all()
    from ui import display  # the pages' pictures come from the same folders (Review showed "No image" there)

    assert set(display._workspace(ws)[0]) == set(ws.images.roots)
    assert sorted(ws.images.roots) == sorted([str(tree.resolve())] + [str(p.resolve()) for p in (
        store / "train" / "cat", store / "train" / "dog", store / "test" / "cat", store / "test" / "dog")])
    item = ws.workspace.items().iloc[0]
    image, reason = ws.images.read(item["uri"], -1, ws.images.root_of(item["uri"], ws.images.roots))
    assert reason is None and image.size == (64, 48)

    # a manifest's "../" is not a link: it stays outside, followed links or not
    (tree / "m.csv").write_text("path,split\ntrain/cat/train_000.jpg,train\n../store/test/cat/test_000.jpg,test\n")
    ws.add("m", tree / "m.csv", follow_links=True)
    m = ws.workspace.items().query("dataset == 'm'").set_index("key")
    assert m.loc["train/cat/train_000.jpg", "status"] == "ok"
    assert m.loc["../store/test/cat/test_000.jpg", "reason"].endswith(f"resolves outside {tree.resolve()}")

    # on a server, only links into the folders it may read
    access.set_allowed_roots([tmp_path / "w3", tree, store / "train"])
    try:
        server = Project.create(tmp_path / "w3")
        server.add("d", tree, follow_links=True)
        got = server.workspace.items().set_index("key")
        assert (got.loc[got.index.str.startswith("cat/train") | got.index.str.startswith("dog/train"), "status"]
                == "ok").all()
        test = got[got["split"] == "test"]
        assert (test["status"] == "unreadable").all()
        assert test["reason"].str.contains("outside the folders this server may read").all()
        assert str((store / "test" / "cat").resolve()) not in server.images.roots
    finally:
        access.set_allowed_roots(None)


def test_adding_a_source_that_does_not_exist_leaves_no_workspace_behind(tmp_path, capsys):
    from leakcore.cli import main

    assert main(["add", str(tmp_path / "ws"), "--dataset", "d", "--source", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "ws").exists()


def test_the_report_says_how_many_evaluation_images_were_not_read(tmp_path, capsys):
    """A tree of links added without --follow-links scanned 1 image of 3 and reported 0% leakage with nothing on
    its line to say the rest went unchecked (a false all-clear for a CI gate)."""
    from conftest import make_folder_dataset

    from leakcore.cli import main

    store = make_folder_dataset(tmp_path / "store", n_train=4, n_test=3)
    tree = tmp_path / "tree"
    for f in sorted(store.rglob("*.jpg")):
        link = tree / f.relative_to(store)
        link.parent.mkdir(parents=True, exist_ok=True)
        if f.name == "test_000.jpg":
            link.write_bytes(f.read_bytes())  # one real file
        else:
            link.symlink_to(f)
    ws = str(tmp_path / "ws")
    assert main(["init", ws, "--encoder", "phash"]) == 0
    assert main(["add", ws, "--dataset", "d", "--source", str(tree)]) == 0
    assert "6 of them are links to files elsewhere: add again with --follow-links" in capsys.readouterr().out
    assert main(["scan", ws]) == 0
    capsys.readouterr()
    assert main(["report", ws]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("d/test"))
    assert "n=      1" in row and "(2 more not read: not checked, listed below)" in row


def test_a_link_swapped_after_add_is_not_read_by_the_report_nor_copied(tmp_path):
    """A link re-pointed after `add` (to a file outside the server's folders) put that file into a viewer's HTML
    report and into a re-split's copied images; the pages refused it. Every reader checks the folders at read time."""
    from conftest import make_folder_dataset

    from leakcore import report
    from leakcore.api import Project

    store = make_folder_dataset(tmp_path / "store", n_train=4, n_test=2, leaks=(0, 1))
    tree = tmp_path / "tree"
    for f in sorted(store.rglob("*.jpg")):
        link = tree / f.relative_to(store)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(f)
    ws = Project.create(tmp_path / "ws", encoder="phash")
    ws.add("d", tree, follow_links=True)
    ws.scan()
    secret = tmp_path / "secret.png"
    photo(77, (64, 48)).save(secret)
    swapped = tree / "test" / "cat" / "test_000.jpg"
    swapped.unlink()
    swapped.symlink_to(secret)
    item = "d/test/cat/test_000.jpg"
    other = "d/test/dog/test_001.jpg"
    thumbs = report.thumbnails(ws, [item, other])
    assert item not in thumbs and other in thumbs
    ws.exports.write("d/test", ws.exports.policy("none"), out=str(tmp_path / "exp"), links="copy")
    assert not list((tmp_path / "exp").rglob("test_000.jpg")) and list((tmp_path / "exp").rglob("test_001.jpg"))
    ws.resplit("d", test_size=0.3, out=str(tmp_path / "rs"), links="copy")
    copied = [p.read_bytes() for p in (tmp_path / "rs" / "images").rglob("*.*")]
    assert copied and secret.read_bytes() not in copied


def test_a_role_override_naming_no_split_or_no_role_is_refused(tmp_path):
    """Garbage in the role overrides was ignored without a word: the dataset went in with the roles its names gave."""
    from leakcore.errors import IngestError
    from leakcore.ingest import add_dataset, parse_roles
    from leakcore.project import Workspace

    from conftest import make_folder_dataset

    root = make_folder_dataset(tmp_path / "d", n_train=3, n_test=2)
    ws = Workspace.create(tmp_path / "ws", encoder="phash")
    with pytest.raises(IngestError, match="names no split of this source; its splits are"):
        add_dataset(ws, "d", root, roles=parse_roles("foo=train"))
    with pytest.raises(IngestError, match="names no role"):
        add_dataset(ws, "d", root, roles=parse_roles("test=bar"))
    assert ws.items().empty
    add_dataset(ws, "d", root, roles=parse_roles("test=train"))
    assert set(ws.items()["role"]) == {"train"}
