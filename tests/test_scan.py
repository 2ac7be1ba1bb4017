"""Scan end to end on fixture data: rates with known leaks, resume, incremental scans, report exit codes."""
import numpy as np
import pandas as pd
import pytest

from leakcore import leakage
from leakcore.ingest import add_dataset
from leakcore.cli import main
from leakcore.embed import EncoderMismatch
from leakcore.project import Workspace
from leakcore.scan import scan

from conftest import make_folder_dataset, photo


@pytest.fixture
def ws(tmp_path, folder_dataset):
    ws = Workspace.create(tmp_path / "ws", encoder="phash")
    add_dataset(ws, "animals", folder_dataset)
    return ws


def overall(table, split):
    return table[(table["eval_split"] == split) & (table["train_split"] == leakage.ALL_SOURCES)].iloc[0]


def test_scan_finds_planted_copies(ws):
    result = scan(ws)
    assert sorted(result.pairs_searched) == [("animals/test", "animals/test"), ("animals/test", "animals/train")]
    table = leakage.rates(ws)
    row = overall(table, "animals/test")
    assert (row["n_eval"], row["hard"], row["soft"]) == (3, 2, 2)
    within = table[table["train_split"] == leakage.WITHIN].iloc[0]
    assert within["hard"] == 0
    flagged = leakage.flagged_items(ws)
    hard = flagged[flagged["degree"] == "hard"].set_index("eval_item_id")
    assert hard.loc["animals/test/cat/test_000.jpg", "train_item_id"] == "animals/train/cat/train_000.jpg"
    assert hard["similarity"].min() == pytest.approx(1.0)


def test_thresholds_change_degrees_without_searching(ws):
    scan(ws)
    files = sorted(ws.neighbors_dir("phash").glob("*/*.parquet"))
    stamps = [f.stat().st_mtime_ns for f in files]
    strict = leakage.rates(ws, hard=1.01, soft=1.01)
    assert overall(strict, "animals/test")["soft"] == 0
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert scan(ws).pairs_searched == []


def test_interrupted_scan_resumes_to_identical_results(tmp_path, folder_dataset):
    ref = Workspace.create(tmp_path / "ref", encoder="phash")
    add_dataset(ref, "animals", folder_dataset)
    scan(ref, batch_size=2, shard_size=2)

    ws = Workspace.create(tmp_path / "ws2", encoder="phash")
    add_dataset(ws, "animals", folder_dataset)
    calls = {"n": 0}

    def explode(stage, done, total):
        calls["n"] += 1
        if stage.startswith("embed") and done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan(ws, batch_size=2, shard_size=2, progress=explode)
    shards = list(ws.embeddings_dir("phash").glob("*/shard-*.keys.parquet"))
    assert shards, "committed shards survive the interruption"
    assert not list(ws.path.rglob("*.tmp"))
    scan(ws, batch_size=2, shard_size=2)
    pd.testing.assert_frame_equal(leakage.load_pairs(ws), leakage.load_pairs(ref))


def test_an_interrupted_embedding_keeps_the_batches_it_finished(tmp_path, folder_dataset):
    """Stopped part way through a split (shards far larger than the split), the images embedded so far are kept:
    a new user who stopped a scan at 192 of 404 images found all 404 to embed again."""
    ref = Workspace.create(tmp_path / "ref", encoder="phash")
    add_dataset(ref, "animals", folder_dataset)
    scan(ref, batch_size=2)

    ws = Workspace.create(tmp_path / "ws2", encoder="phash")
    add_dataset(ws, "animals", folder_dataset)

    def explode(stage, done, total):  # the training split has 4 distinct images: stopped after its first batch
        if stage == "embed animals/train" and done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan(ws, batch_size=2, progress=explode)  # the default shard size: 4,096 images
    kept = pd.concat(pd.read_parquet(f) for f in ws.embeddings_dir("phash").glob("*/shard-*.keys.parquet"))
    assert len(kept) == 3 + 2, "the evaluation split (3 images) and the finished batch of training images"
    seen = []
    scan(ws, batch_size=2, progress=lambda stage, done, total: seen.append((stage, total)))
    assert [total for stage, total in seen if stage.startswith("embed")][0] == 2, seen  # only what was left
    pd.testing.assert_frame_equal(leakage.load_pairs(ws), leakage.load_pairs(ref))


def test_adding_a_dataset_scans_only_new_pairs_and_finds_inter_leaks(ws, tmp_path):
    scan(ws)
    other = tmp_path / "bench"
    (other / "test").mkdir(parents=True)
    photo(4, (64, 48)).save(other / "test" / "copy_of_train_4.jpg", quality=92)  # seed 4 = animals train_004
    photo(777, (64, 48)).save(other / "test" / "fresh.jpg", quality=92)
    add_dataset(ws, "bench", other)
    result = scan(ws)
    assert ("animals/test", "animals/train") in result.pairs_skipped
    assert sorted(result.pairs_searched) == [("bench/test", "animals/train"), ("bench/test", "bench/test")]
    row = overall(leakage.rates(ws), "bench/test")
    assert (row["n_eval"], row["hard"]) == (2, 1)


def test_embeddings_only_source_is_searched_and_mismatch_refused(ws, tmp_path):
    from leakcore.encoders import create_encoder

    enc = create_encoder("phash")
    src = tmp_path / "laion"
    (src / "img_emb").mkdir(parents=True)
    (src / "metadata").mkdir()
    test_img = ws.items().query("split == 'test'").iloc[1]  # test_001: not a copy of any animals train image
    vec = np.concatenate([v for v, _ in enc.encode([open(test_img["uri"], "rb").read()])])
    rng = np.random.default_rng(0)
    noise = np.sign(rng.normal(size=(20, 64))) / 8.0
    np.save(src / "img_emb" / "img_emb_0.npy", np.vstack([noise, vec]).astype(np.float16))
    pd.DataFrame({"url": [f"http://x/{i}" for i in range(21)], "caption": ["c"] * 21}).to_parquet(src / "metadata" / "metadata_0.parquet")
    add_dataset(ws, "laion", src, encoder="phash")
    scan(ws)
    table = leakage.rates(ws)
    laion = table[(table["eval_split"] == "animals/test") & (table["train_split"] == "laion/train")].iloc[0]
    assert laion["hard"] == 1
    add_dataset(ws, "laion", src, encoder="sscd")
    with pytest.raises(EncoderMismatch, match="made by 'sscd'"):
        scan(ws)


def test_report_exit_codes_gate_ci(ws, capsys):
    scan(ws)
    assert main(["report", str(ws.path)]) == 0
    assert main(["report", str(ws.path), "--fail-above-hard", "50"]) == 1
    assert "hard leakage 66.67% > 50.0%" in capsys.readouterr().err
    assert main(["report", str(ws.path), "--fail-above-hard", "70", "--fail-above-soft", "70"]) == 0
    assert main(["report", str(ws.path), "--json"]) == 0
    assert '"hard_rate": 0.6666' in capsys.readouterr().out
    assert main(["report", str(ws.path.parent / "nope")]) == 2


def test_a_bug_is_one_line_in_the_terminal_and_its_traceback_a_file(ws, capsys, monkeypatch, tmp_path):
    """An unexpected exception (a bug, not bad input) ends the command with exit code 70 and one readable line naming
    it and the file that holds its traceback; --verbose raises it as it is."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    scan(ws)

    def broken(*args, **kwargs):
        raise KeyError("0b40f36b")

    monkeypatch.setattr("leakcore.cli._project", broken)
    assert main(["report", str(ws.path)]) == 70
    err = capsys.readouterr().err
    assert "leakcore report: internal error (a bug in leakcore): KeyError: '0b40f36b'" in err
    assert "Traceback" not in err
    saved = list(tmp_path.glob("leakcore-error-*.txt"))
    assert len(saved) == 1 and "Traceback (most recent call last)" in saved[0].read_text()
    assert str(saved[0]) in err
    with pytest.raises(KeyError):
        main(["--verbose", "report", str(ws.path)])


def test_unreadable_items_are_not_queried(ws, folder_dataset):
    (folder_dataset / "test" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    add_dataset(ws, "animals", folder_dataset)
    scan(ws)
    row = overall(leakage.rates(ws), "animals/test")
    assert row["n_eval"] == 3
    assert "animals/test/cat/broken.jpg" not in set(leakage.load_pairs(ws)["eval_item_id"])


def test_query_flips_find_mirrored_copies(tmp_path):
    from PIL import ImageOps

    root = make_folder_dataset(tmp_path / "d", n_train=4, n_test=1)
    src = root / "train" / "cat" / "train_000.jpg"
    from PIL import Image

    ImageOps.mirror(Image.open(src)).save(root / "test" / "cat" / "mirrored.jpg", quality=95)
    ws = Workspace.create(tmp_path / "w", encoder="phash")
    add_dataset(ws, "d", root)
    scan(ws)
    plain = leakage.flagged_items(ws).set_index("eval_item_id").loc["d/test/cat/mirrored.jpg", "similarity"]
    scan(ws, flip_queries=True)
    assert ws.flip_queries
    flipped = leakage.flagged_items(ws).set_index("eval_item_id").loc["d/test/cat/mirrored.jpg"]
    assert flipped["similarity"] >= 0.9 and flipped["similarity"] > plain + 0.3 and flipped["train_item_id"] == "d/train/cat/train_000.jpg"


def test_demo_builds_finds_planted_leaks_and_reports(demo_built):
    """`leakcore demo DIR` (run once per session by the demo_built fixture, which the page walk shares)."""
    from leakcore import demo

    assert demo_built.rc == 0
    assert "planted leaks" in demo_built.out
    ws = Workspace.open(demo_built.path)
    truth = demo.planted_truth(ws)
    assert len(truth) >= 12 and truth["eval_item_id"].notna().all() and truth["train_item_id"].notna().all()
    assert (ws.calibration_dir(ws.encoder) / "thresholds.json").exists()  # the Thresholds page opens with its ROC
    pairs = leakage.load_pairs(ws)
    found = truth.merge(pairs, on=["eval_item_id", "train_item_id"])
    assert len(found) >= len(truth) - 1  # each planted pair is among the stored neighbours
    exact = found[found["kind"] == "exact copy"]
    assert len(exact) == (truth["kind"] == "exact copy").sum() >= 1 and (exact["similarity"] > 0.999).all()
    assert set(ws.datasets) == {"photos", "benchmark"}
    assert (ws.items()["status"] != "ok").sum() == 1  # the truncated file, kept with its reason
    from leakcore.api import Project

    conflicts = Project.open(ws.path).checks.findings("label_conflict")
    planted = truth[truth["kind"].str.contains("label conflict")].iloc[0]
    hit = conflicts[(conflicts["eval_item_id"] == planted["eval_item_id"])
                    & (conflicts["train_item_id"] == planted["train_item_id"])]
    assert list(hit["degree"]) == ["hard"]


def test_scan_progress_counts_images_and_the_cli_bars_print_each_stage_once_at_its_real_rate(ws):
    """Every stage of a scan counts images (a search its evaluation images, not one step per table); the CLI's bar
    of a stage whose first report comes after its first batch is timed from the report before, prints its last line
    once, and a later stage of the same name gets a bar of its own."""
    import io
    import re

    from leakcore.cli import _Bars

    seen = []
    scan(ws, progress=lambda stage, done, total: seen.append((stage, done, total)))
    searched = [(d, t) for s, d, t in seen if s == "search animals/test -> animals/train"]
    embedded = [(d, t) for s, d, t in seen if s == "embed animals/test"]
    assert searched[0] == (0, embedded[-1][1]) and searched[-1] == (embedded[-1][1],) * 2 and embedded[0][0] == 0

    out = io.StringIO()
    bars = _Bars(file=out)
    now = [100.0]
    bars._clock = lambda: now[0]
    bars.last = 98.0  # the stage's first batch ran for the 2 s before its first (and only) report
    bars("embed a/test", 64, 64)
    bars("measure", 0, 1)
    bars("measure", 1, 1)
    for total in (10, 5):
        bars("verify pairs", 0, total)
        bars("verify pairs", total, total)
    bars.close()
    lines = [line.strip() for line in out.getvalue().replace("\r", "\n").splitlines() if line.strip()]
    final = [line for line in lines if "64/64" in line]
    assert len(final) == 1 and float(re.search(r"([\d.]+)img/s", final[0]).group(1)) < 100, lines  # not 1e6 img/s
    assert not any("/s" in line for line in lines if line.startswith("measure")), lines  # one step: no rate
    assert sum("10/10" in line for line in lines) == 1 and sum("5/5" in line for line in lines) == 1, lines


def test_a_split_with_no_readable_image_scans_without_a_crash(tmp_path):
    """Every evaluation image unreadable (a tree of links added without --follow-links): the search within the split
    crashed ("cannot reshape array of size 0") as an internal error."""
    from conftest import make_folder_dataset

    from leakcore.api import Project

    root = make_folder_dataset(tmp_path / "d", n_train=4, n_test=3)
    for f in (root / "test").rglob("*.jpg"):
        f.write_bytes(b"")
    ws = Project.create(tmp_path / "ws", encoder="phash")
    ws.add("d", root)
    ws.scan()
    rates = ws.checks.rates()
    assert (rates.loc[rates["eval_split"] == "d/test", "n_eval"] == 0).all()


def test_a_scan_reads_again_the_files_changed_on_disk_since_they_were_added(tmp_path, capsys):
    """A new user copied another photo over a training photo (same name): every view went on calling the pair a leak,
    and `leakcore scan` said everything was unchanged (only `leakcore add` noticed). A scan probes such files again
    first: the replaced one by its new content, a removed one as missing, one linked out of the folder refused."""
    import os

    from conftest import make_folder_dataset, photo

    from leakcore import leakage
    from leakcore.api import Project
    from leakcore.cli import main

    root = make_folder_dataset(tmp_path / "d", n_train=6, n_test=3, leaks=(0,))
    project = Project.create(tmp_path / "ws", encoder="phash")
    project.add("d", root)
    project.scan()
    ws = project.workspace
    hard, soft = ws.thresholds()
    leak = "d/test/cat/test_000.jpg"
    assert leak in set(leakage.load_pairs(ws).loc[lambda p: p["similarity"] >= soft, "eval_item_id"])
    original = next(root.glob("train/*/train_000.jpg"))
    before = ws.items().set_index("item_id")
    photo(999, (48, 40)).save(original, quality=90)  # another photo under the same name
    os.utime(original, ns=(1, 1))  # even with an old time: the size differs
    gone = next(root.glob("train/*/train_001.jpg"))
    gone.unlink()
    outside = tmp_path / "elsewhere.jpg"
    photo(5, (48, 40)).save(outside)
    swapped = next(root.glob("train/*/train_002.jpg"))
    swapped.unlink()
    swapped.symlink_to(outside)
    photo(31, (48, 40)).save(root / "test" / "cat" / "new_one.jpg")  # a file added: said, not added behind a pattern
    for _ in range(2):  # the plan says what a scan will find, and reads only
        assert main(["scan", str(tmp_path / "ws"), "--plan"]) == 0
        out = capsys.readouterr().out
        assert "2 image files have changed on disk since they were added: a scan reads them again first" in out
        assert "1 image file is gone from disk since it was added: a scan lists it as missing" in out
        assert f"1 new image file under {root} is not in the workspace yet" in out
    ws.clear_caches()
    assert ws.items().set_index("item_id").equals(before)
    assert main(["scan", str(tmp_path / "ws")]) == 0
    out = capsys.readouterr().out
    assert "2 image files had changed on disk since they were added" in out
    assert "1 image file is gone from disk since it was added: listed as missing" in out
    assert f"1 new image file under {root} is not in the workspace yet" in out and "leakcore add" in out
    ws.clear_caches()
    after = ws.items().set_index("item_id")
    key = lambda p: f"d/train/{p.parent.name}/{p.name}"  # noqa: E731
    assert after.at[key(original), "sha256"] != before.at[key(original), "sha256"]
    assert after.at[key(original), "status"] == "ok"
    assert after.at[key(gone), "status"] == "unreadable" and after.at[key(swapped), "status"] == "unreadable"
    assert "outside" in after.at[key(swapped), "reason"]
    assert leak not in set(leakage.load_pairs(ws).loc[lambda p: p["similarity"] >= soft, "eval_item_id"])
    assert main(["scan", str(tmp_path / "ws")]) == 0
    out = capsys.readouterr().out
    assert "had changed on disk" not in out and "gone from disk" not in out  # read once
    assert "1 new image file" in out  # until it is added
