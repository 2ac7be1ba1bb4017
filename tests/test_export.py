"""Export: policy counts, every format, determinism, re-import, COCO round trip, provenance."""
import json

import pandas as pd
import pytest

from leakcore import export, review
from leakcore.ingest import add_dataset
from leakcore.export import ExportPolicy
from leakcore.project import Workspace
from leakcore.scan import scan

from conftest import jpeg_bytes, make_folder_dataset, photo


@pytest.fixture
def ws(tmp_path):
    root = make_folder_dataset(tmp_path / "d", n_train=6, n_test=5, leaks=(0, 1, 2))
    # a within-split duplicate in test: a second copy of test_004
    (root / "test" / "cat" / "test_004_dup.jpg").write_bytes((root / "test" / "cat" / "test_004.jpg").read_bytes())
    ws = Workspace.create(tmp_path / "w", encoder="phash")
    add_dataset(ws, "d", root)
    scan(ws)
    return ws


def test_policy_counts_decisions_and_keep_list(ws):
    pv = export.preview(ws, ["d/test"]).iloc[0]
    assert (pv["items"], pv["removed at hard"], pv["removed at soft"], pv["removed at none"]) == (6, 3, 3, 0)
    review.decide(ws, "d/test/cat/test_000.jpg", "d/train/cat/train_000.jpg", "not_leak", reviewer="r")
    review.decide(ws, "d/test/cat/test_002.jpg", "d/train/cat/train_002.jpg", "hard", reviewer="r", note="same photo")
    plan = export.plan(ws, "d/test", ExportPolicy("none")).set_index("item_id")
    assert plan["removed"].sum() == 1 and plan.loc["d/test/cat/test_002.jpg", "reason"] == "confirmed leak"
    plan = export.plan(ws, "d/test", ExportPolicy("soft")).set_index("item_id")
    assert not plan.loc["d/test/cat/test_000.jpg", "removed"]  # rejected by a curator
    assert plan.loc["d/test/dog/test_001.jpg", "removed"]
    assert plan.loc["d/test/cat/test_002.jpg", "reviewer"] == "r"  # removed by r's decision
    # ... and still named after another curator's later word on another pair of the image (a new user's removed.csv
    # named the second curator's "not a leak" beside the first's decision that removed it)
    review.decide(ws, "d/test/cat/test_002.jpg", "d/train/dog/train_001.jpg", "not_leak", reviewer="s", note="other")
    named = export.plan(ws, "d/test", ExportPolicy("soft")).set_index("item_id").loc["d/test/cat/test_002.jpg"]
    assert named["removed"] and (named["decision"], named["reviewer"], named["note"]) == ("hard", "r", "same photo")
    review.decide(ws, "d/test/dog/test_001.jpg", "d/train/cat/train_000.jpg", "not_leak", reviewer="q")  # another pair
    plan = export.plan(ws, "d/test", ExportPolicy("soft")).set_index("item_id")
    auto = plan.loc["d/test/dog/test_001.jpg"]
    assert auto["removed"] and pd.isna(auto["decision"]) and pd.isna(auto["reviewer"])  # no reviewer removed it
    keep = export.plan(ws, "d/test", ExportPolicy("soft", frozenset({"dog/test_001.jpg"}))).set_index("item_id")
    assert not keep.loc["d/test/dog/test_001.jpg", "removed"] and keep.loc["d/test/cat/test_002.jpg", "removed"]
    dedupe = export.plan(ws, "d/test", ExportPolicy("none", dedupe_within=True)).set_index("item_id")
    assert dedupe.loc["d/test/cat/test_004_dup.jpg", "removed"] and not dedupe.loc["d/test/cat/test_004.jpg", "removed"]
    assert dedupe.loc["d/test/cat/test_004_dup.jpg", "reason"] == "within-split duplicate of d/test/cat/test_004.jpg"
    plain = export.plan(ws, "d/test", ExportPolicy("none")).set_index("item_id")
    assert not plain.loc[["d/test/cat/test_004.jpg", "d/test/cat/test_004_dup.jpg"], "removed"].any()
    review.decide(ws, "d/test/cat/test_004_dup.jpg", "d/test/cat/test_004.jpg", "hard", reviewer="r")
    confirmed = export.plan(ws, "d/test", ExportPolicy("none")).set_index("item_id")  # confirmed: one copy goes
    assert confirmed.loc["d/test/cat/test_004_dup.jpg", "removed"] and not confirmed.loc["d/test/cat/test_004.jpg", "removed"]
    assert confirmed.loc["d/test/cat/test_004_dup.jpg", "reason"] == "confirmed within-split duplicate of d/test/cat/test_004.jpg"
    assert confirmed.loc["d/test/cat/test_004_dup.jpg", "reviewer"] == "r"
    keep = export.plan(ws, "d/test", ExportPolicy("none", frozenset({"cat/test_004_dup.jpg"}))).set_index("item_id")
    assert keep.loc["d/test/cat/test_004_dup.jpg", "removed"]  # a keep-list does not override a curator's confirmation


@pytest.mark.parametrize("fmt", ["same", "csv", "parquet", "jsonl"])
def test_folder_export_formats_reimport_and_determinism(ws, tmp_path, fmt):
    a = export.export(ws, "d/test", ExportPolicy("soft"), fmt=fmt, out=tmp_path / "a")
    b = export.export(ws, "d/test", ExportPolicy("soft"), fmt=fmt, out=tmp_path / "b")
    for fa, fb in zip(a.files, b.files):
        if fa.is_dir():  # "same" for a folder tree: the tree of kept images
            assert [(f.relative_to(fa), f.read_bytes()) for f in sorted(fa.rglob("*.jpg"))] == \
                [(f.relative_to(fb), f.read_bytes()) for f in sorted(fb.rglob("*.jpg"))]
        else:
            assert fa.read_bytes() == fb.read_bytes(), fa.name
    assert (a.kept, a.removed) == (3, 3)
    removed = pd.read_csv(a.folder / "removed.csv")
    assert set(removed["item"]) == {"d/test/cat/test_000.jpg", "d/test/dog/test_001.jpg", "d/test/cat/test_002.jpg"}
    assert removed["matched_training_items"].str.contains("d/train/").all()
    prov = json.loads((a.folder / "provenance.json").read_text())
    assert prov["encoder"] == "phash" and prov["counts"]["removed"] == 3 and prov["policy"]["flags"] == "soft"
    ws2 = Workspace.create(tmp_path / f"re-{fmt}", encoder="phash")
    if fmt == "same":  # the input's own layout, as README promises: ROOT/<split>/<class>/*.jpg, and no listing
        assert a.files[0] == a.folder / "test" and a.files[0].is_dir()
        assert sorted(f.name for f in a.folder.iterdir() if f.is_file()) == ["provenance.json", "removed.csv"]
        add_dataset(ws2, "again", a.folder, fmt="folder")
        assert set(ws2.items()["split"]) == {"test"} and set(ws2.items()["label"]) == {"cat", "dog"}
    else:
        add_dataset(ws2, "again", a.files[0], fmt="manifest", root=ws.datasets["d"].root)
    kept = ws.items().set_index("item_id").loc[export.plan(ws, "d/test", ExportPolicy("soft")).query("~removed")["item_id"]]
    again = ws2.items()
    assert sorted(again["key"]) == sorted(kept["key"]) and sorted(again["sha256"]) == sorted(kept["sha256"])
    assert (again["status"] == "ok").all()


def test_export_never_touches_the_source(ws, tmp_path):
    root = __import__("pathlib").Path(ws.datasets["d"].root)
    before = sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*"))
    export.export(ws, "d/test", ExportPolicy("soft"), out=tmp_path / "x", links="symlink")
    assert sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*")) == before
    links = list((tmp_path / "x" / "images").rglob("*.jpg"))
    assert len(links) == 3 and all(p.is_symlink() for p in links)
    # copies of a folder dataset's images are its own tree already, written once (a new user got val/ and images/val/)
    export.export(ws, "d/test", ExportPolicy("soft"), out=tmp_path / "y", links="copy")
    assert len(list((tmp_path / "y" / "test").rglob("*.jpg"))) == 3 and not (tmp_path / "y" / "images").exists()


def test_an_export_or_re_split_into_a_datasets_folders_or_among_other_files_is_refused(ws, tmp_path):
    """A new user's `export --out DATA` replaced the dataset's own test folder by the cleaned one (its removed images
    gone) and exited 0; `--out DATA/test` nested a copy a later `add` read as a split; an existing folder of other
    files got the export mixed in. Each is refused now, touching nothing; an earlier export is written over."""
    from pathlib import Path

    from leakcore.errors import InvalidInput
    from leakcore.resplit import plan_resplit as resplit, write_resplit

    root = Path(ws.datasets["d"].root)
    before = sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*"))
    other = tmp_path / "notes"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for out, said in ((root, "where dataset 'd' keeps its files"), (root / "test", "keeps its files"),
                      (ws.path / "embeddings", "inside the workspace's own files"),
                      (other, "already holds other files"), (other / "notes.txt", "is a file")):
        with pytest.raises(InvalidInput, match=said):
            export.export(ws, "d/test", ExportPolicy("soft"), out=out)
        with pytest.raises(InvalidInput):
            write_resplit(ws, resplit(ws, "d", test_size=0.4), out=out)
    assert sorted((p, p.stat().st_mtime_ns) for p in root.rglob("*")) == before
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    first = export.export(ws, "d/test", ExportPolicy("soft"), out=tmp_path / "clean")
    again = export.export(ws, "d/test", ExportPolicy("hard"), out=tmp_path / "clean")  # an earlier export: over it
    assert first.folder == again.folder and again.replaced
    assert export.export(ws, "d/test", ExportPolicy("soft"), out=ws.exports_dir / "mine").kept == first.kept
    made = write_resplit(ws, resplit(ws, "d", test_size=0.4), out=tmp_path / "re")
    write_resplit(ws, made, out=tmp_path / "re")  # an earlier re-split: over it
    assert (tmp_path / "re" / "resplit.json").exists()


def test_hf_parquet_and_cifar_exports(tmp_path, hf_parquet, cifar_folder):
    import pyarrow.parquet as pq

    ws = Workspace.create(tmp_path / "w", encoder="phash")
    add_dataset(ws, "hf", hf_parquet)
    scan(ws)
    from leakcore.errors import InvalidInput

    with pytest.raises(InvalidInput, match="keeps its files"):  # beside the Parquet file: an export named as it is
        export.export(ws, "hf/test", ExportPolicy("soft"), out=tmp_path)  # (a re-split's) would replace it
    res = export.export(ws, "hf/test", ExportPolicy("soft"), out=tmp_path / "hf")  # a folder of its own: its images
    table = pq.read_table(res.files[0])  # are rows of the file, nothing there is the dataset's
    assert table.num_rows == res.kept and "image" in table.column_names
    ws2 = Workspace.create(tmp_path / "re", encoder="phash")
    add_dataset(ws2, "hf", res.files[0])
    assert sorted(ws2.items()["key"]) == sorted(export.plan(ws, "hf/test", ExportPolicy("soft")).query("~removed")["key"])
    add_dataset(ws, "c10", cifar_folder)
    scan(ws)
    res = export.export(ws, "c10/test", ExportPolicy("soft"), out=tmp_path / "c")
    kept = pd.read_csv(res.files[0])
    assert list(kept.columns) == ["index", "label"] and len(kept) == res.kept


def test_coco_round_trip_filters_annotations(tmp_path, coco_dataset):
    ws = Workspace.create(tmp_path / "w", encoder="phash")
    add_dataset(ws, "coco", coco_dataset)
    train = tmp_path / "tr" / "train"
    train.mkdir(parents=True)
    (train / "copy.jpg").write_bytes((coco_dataset.parent.parent / "val2017" / "000000000001.jpg").read_bytes())
    add_dataset(ws, "tr", tmp_path / "tr")
    scan(ws)
    res = export.export(ws, "coco/val2017", ExportPolicy("hard"), out=tmp_path / "out")
    data = json.loads(res.files[0].read_text())
    assert sorted(im["id"] for im in data["images"]) == [100, 102]
    assert sorted(a["image_id"] for a in data["annotations"]) == [100, 102]
    ws2 = Workspace.create(tmp_path / "re", encoder="phash")
    add_dataset(ws2, "coco", res.files[0], root=coco_dataset.parent.parent / "val2017", split="val2017")
    assert sorted(ws2.items()["key"]) == ["100", "102"]


def test_cli_export(ws, tmp_path, capsys):
    from leakcore.cli import main

    assert main(["export", str(ws.path), "--split", "d/test", "--policy", "hard", "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "removed at soft" in out and "kept 3, removed 3" in out
    assert (ws.exports_dir / "d-test-hard" / "removed.csv").exists()
    assert main(["export", str(ws.path), "--split", "d/nope"]) == 2


def test_an_export_is_readable_as_a_plain_write_would_be(ws, tmp_path):
    """Atomic writes go through a private temporary file (0600): an export handed to colleagues, and every file the
    workspace writes, now gets the permissions a plain write gives (the umask's), or keeps an existing file's."""
    import os

    from leakcore.io import atomic_write_text

    old = os.umask(0o022)
    try:
        res = export.export(ws, "d/test", ExportPolicy("soft"), fmt="csv", out=tmp_path / "out")
        assert {(p.name, p.stat().st_mode & 0o777) for p in res.files if p.is_file()} == {
            (p.name, 0o644) for p in res.files if p.is_file()} and len(res.files) == 3
        kept = tmp_path / "kept.txt"
        kept.write_text("a")
        kept.chmod(0o640)
        atomic_write_text(kept, "b")
        assert kept.read_text() == "b" and kept.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_an_item_named_by_several_checks_lists_each_once_in_the_order_they_named_it():
    removals = pd.DataFrame({"item_id": ["a", "b", "a", "a", "c", "b"],
                             "check": ["similarity", "group", "group", "similarity", "group", "group"],
                             "reason": ["hard flag", "group g1", "group g1", "soft flag", "group g2", "group g1"]})
    assert export._every(removals, "check").to_dict() == {"a": "similarity; group", "b": "group", "c": "group"}
    assert export._every(removals, "reason").to_dict() == {"a": "hard flag; group g1; soft flag", "b": "group g1",
                                                           "c": "group g2"}


def test_the_preview_says_how_many_duplicates_inside_the_split_stay_without_dedupe(ws, capsys, tmp_path):
    """A new user's cleaned split kept both copies of three exact duplicates, and nothing said so."""
    from leakcore.cli import main

    pv = export.preview(ws, ["d/test"]).iloc[0]
    assert pv[export.WITHIN_KEPT] == 1  # test_004 and its copy: one of the two would go
    assert export.WITHIN_KEPT not in export.preview(ws, ["d/test"], dedupe_within=True).columns
    assert main(["export", str(ws.path), "--split", "d/test", "--out", str(tmp_path / "out")]) == 0
    assert "near-duplicates of another image inside d/test, kept: 1" in capsys.readouterr().out


def test_a_within_split_duplicate_removed_shows_its_score_decision_and_reviewer(ws):
    """The Export page showed "None" for a confirmed within-split duplicate's score and no reviewer: its decision was
    made from the pair's other end."""
    # decided from the end whose image stays (the removed copy is the pair's training end there)
    review.decide(ws, "d/test/cat/test_004.jpg", "d/test/cat/test_004_dup.jpg", "hard", reviewer="ann")
    p = export.plan(ws, "d/test", ExportPolicy("soft"))
    row = p[p["check"] == "similarity (within split)"].iloc[0]
    assert row["item_id"] == "d/test/cat/test_004_dup.jpg"  # the first copy by id stays
    assert row["similarity"] > 0.9 and row["decision"] == "hard" and row["reviewer"] == "ann"


def test_files_no_check_could_read_are_removed_with_their_reason_and_none_from_outside_the_root(tmp_path):
    """A new user's cleaned split kept a truncated copy of a training photo, an empty file and a link to a photo
    outside the dataset's folder (copied from there): unchecked, two of them leaks."""
    from leakcore.cli import main

    root = make_folder_dataset(tmp_path / "d", n_train=6, n_test=3)
    data = (root / "test" / "cat" / "test_000.jpg").read_bytes()
    (root / "test" / "cat" / "cut.jpg").write_bytes(data[: len(data) // 2])
    (root / "test" / "cat" / "empty.jpg").write_bytes(b"")
    outside = tmp_path / "elsewhere.jpg"
    photo(9, (64, 48)).save(outside)
    (root / "test" / "cat" / "link.jpg").symlink_to(outside)
    ws = Workspace.create(tmp_path / "w", encoder="phash")
    add_dataset(ws, "d", root)
    scan(ws)
    p = export.plan(ws, "d/test", ExportPolicy("soft")).set_index("key")
    for key in ("cat/cut.jpg", "cat/empty.jpg", "cat/link.jpg"):
        assert p.loc[key, "removed"] and p.loc[key, "check"] == "unreadable" and p.loc[key, "reason"].startswith(
            "not checked: ")
    kept = export.plan(ws, "d/test", ExportPolicy("soft", keep=frozenset({"cat/cut.jpg", "cat/link.jpg"})))
    kept = kept.set_index("key")
    assert not kept.loc["cat/cut.jpg", "removed"] and kept.loc["cat/link.jpg", "removed"]  # never from outside
    assert main(["export", str(ws.path), "--split", "d/test", "--out", str(tmp_path / "out")]) == 0
    written = {p.name for p in (tmp_path / "out" / "test").rglob("*.jpg")}
    assert not written & {"cut.jpg", "empty.jpg", "link.jpg"}
    removed = pd.read_csv(tmp_path / "out" / "removed.csv")
    assert (removed["check"] == "unreadable").sum() == 3


@pytest.mark.parametrize("policy", [ExportPolicy("hard"), ExportPolicy("none", keep=frozenset({"cat/test_000.jpg"})),
                                    ExportPolicy("soft", dedupe_within=True)])
def test_the_pages_preview_and_plan_are_those_of_preview_and_plan_made_once(ws, policy):
    """The Export page drew the preview (a plan per level of flags) and then the plan under its policy again."""
    pv, p = export.preview_and_plan(ws, "d/test", policy)
    pd.testing.assert_frame_equal(pv, export.preview(ws, ["d/test"], keep=policy.keep,
                                                     dedupe_within=policy.dedupe_within, checks=policy.checks))
    pd.testing.assert_frame_equal(p, export.plan(ws, "d/test", policy))


def test_a_pair_called_one_source_removes_its_evaluation_image_as_a_confirmed_leak(ws):
    """A new user's K ("one source: keep together") on two groups took their flagged images out of the cleaned
    split: the decision replaced the automatic flag, and only hard and soft decisions confirmed a leak."""
    review.decide(ws, "d/test/cat/test_000.jpg", "d/train/cat/train_000.jpg", "same_source", reviewer="r")
    for flags in ("soft", "none"):
        p = export.plan(ws, "d/test", ExportPolicy(flags)).set_index("item_id")
        assert p.loc["d/test/cat/test_000.jpg", "removed"], flags
        assert p.loc["d/test/cat/test_000.jpg", "reason"] == "confirmed leak"


def test_the_terminal_report_marks_the_flags_whose_labels_differ(tmp_path, capsys):
    """A new user could not tell which flags were the label conflicts the report counted, and read a conflict's
    reason naming "similarity" for the fused score. The flagged list now says "labels differ" on those pairs, and a
    conflict's reason names the score in force."""
    from leakcore.cli import main

    root = make_folder_dataset(tmp_path / "d", n_train=6, n_test=5, leaks=(0, 1, 2))
    (root / "test" / "dog").mkdir(exist_ok=True)
    (root / "test" / "cat" / "test_002.jpg").rename(root / "test" / "dog" / "test_002.jpg")  # a cat copy filed as dog
    ws = Workspace.create(tmp_path / "w", encoder="phash")
    add_dataset(ws, "d", root)
    scan(ws)
    capsys.readouterr()
    assert main(["report", str(ws.path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    marked = [line for line in lines if "labels differ" in line]
    assert len(marked) == 1 and "d/test/dog/test_002.jpg" in marked[0] and "'dog' / 'cat'" in marked[0]
    assert not any("labels differ" in line for line in lines if "test_000" in line)
    from leakcore.api import Project

    found = Project.open(ws.path).checks.findings("label_conflict", hard=0.99, soft=0.5, use_decisions=True)
    assert found["reason"].str.contains(r"similarity \d", regex=True).all()  # the raw score is in force here


def test_a_pages_zip_of_an_export_holds_its_images_and_never_a_file_outside_the_datasets(ws, tmp_path):
    """A new user's "Download these files (zip)" under a list naming the image folder held removed.csv and
    provenance.json only; and a link in an export must not carry a file from outside the datasets into a zip."""
    import io
    import zipfile

    from leakcore.api import Project

    result = export.export(ws, "d/test", ExportPolicy("soft"), links="symlink")
    project = Project.open(ws.path)
    plan = project.exports.archive_plan(result)
    # a folder dataset's export: its cleaned tree (test/) and, with links, images/ of links to the kept files
    assert plan.whole and plan.images == 6 and not plan.left_out
    names = zipfile.ZipFile(io.BytesIO(project.exports.archive(plan))).namelist()
    assert {"removed.csv", "provenance.json"} <= set(names) and sum(n.endswith(".jpg") for n in names) == 6
    assert sum(n.startswith("test/") for n in names) == 3
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(b"not for the zip")
    link = next(p for p in result.folder.rglob("*.jpg") if p.is_symlink())
    link.unlink()
    link.symlink_to(secret)  # swapped after the export: now leads outside every dataset folder
    plan = project.exports.archive_plan(result)
    assert plan.images == 5 and plan.left_out == (link.relative_to(result.folder).as_posix(),)
    with zipfile.ZipFile(io.BytesIO(project.exports.archive(plan))) as zf:
        assert b"not for the zip" not in b"".join(zf.read(n) for n in zf.namelist())
    # an export too large to zip in memory: its own files only, named so on the page
    big = export.ArchivePlan(plan.entries, export.ARCHIVE_LIMIT + 1, plan.images)
    assert set(zipfile.ZipFile(io.BytesIO(export.write_archive(big))).namelist()) == {"removed.csv", "provenance.json"}


def test_an_exports_provenance_counts_decisions_made_from_either_end_of_a_pair(ws, tmp_path):
    """A group's links are decided in the order they were linked, often training image first: an export's
    provenance counted 1 of the 16 "same source" decisions that removed its images."""
    from leakcore.api import Project

    review.decide(ws, "d/train/cat/train_000.jpg", "d/test/cat/test_000.jpg", "same_source", reviewer="ann")
    review.decide(ws, "d/test/cat/test_002.jpg", "d/train/cat/train_002.jpg", "hard", reviewer="bob")
    review.decide(ws, "d/train/cat/train_000.jpg", "d/train/cat/train_002.jpg", "same_source", reviewer="cy")  # not it
    result = Project.open(ws.path).exports.write("d/test", ExportPolicy("soft"), out=str(tmp_path / "out"))
    people = json.loads((result.folder / "provenance.json").read_text())["people"]
    assert people["decisions_in_force"] == 2 and people["decisions_by_reviewer"] == {"ann": 1, "bob": 1}
