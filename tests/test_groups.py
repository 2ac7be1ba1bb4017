"""Group and temporal leakage: explicit and recovered groups, time windows, training on the future, the re-split."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leakcore import grouping
from leakcore.api import Project
from leakcore.cli import main
from leakcore.errors import IngestError, UnknownName
from leakcore.schema import Decision

from conftest import photo


def _manifest(tmp_path, rows, name="m.csv"):
    root = tmp_path / "imgs"
    root.mkdir(exist_ok=True)
    for r in rows:
        if not (root / r["path"]).exists():
            photo(r.pop("seed"), (64, 48)).save(root / r["path"], quality=92)
        else:
            r.pop("seed")
    pd.DataFrame(rows).to_csv(tmp_path / name, index=False)
    return tmp_path / name, root


@pytest.fixture
def ws(tmp_path):
    rows = [
        # patient p1: different pictures, one id, in train and test
        {"path": "a.jpg", "split": "train", "group": "p1", "timestamp": "2024-05-01T10:00:00Z", "seed": 1},
        {"path": "b.jpg", "split": "test", "group": "p1", "timestamp": "2024-05-01T10:00:30Z", "seed": 2},
        # a near-copy pair without metadata (recovered)
        {"path": "c.jpg", "split": "train", "group": "", "timestamp": "1714557600", "seed": 3},
        {"path": "c2.jpg", "split": "test", "group": "", "timestamp": "not a time", "seed": 3},
        # unrelated pictures, one taken after the cutoff
        {"path": "d.jpg", "split": "train", "group": "", "timestamp": "2024:06:01 12:00:00", "seed": 4},
        {"path": "e.jpg", "split": "test", "group": "", "timestamp": "", "seed": 5},
        {"path": "f.jpg", "split": "train", "group": "", "timestamp": "", "seed": 6},
    ]
    path, root = _manifest(tmp_path, rows)
    ws = Project.create(tmp_path / "w", encoder="phash")
    summary = ws.add("m", path, root=root)
    assert summary["unparsed_times"]["count"] == 1 and "not a time" in summary["unparsed_times"]["examples"][0]
    ws.configure(group_threshold=0.9)
    ws.scan(grouping=True)
    return ws


def test_times_are_parsed_and_failures_kept(ws):
    items = ws.workspace.items().set_index("key")
    assert items.loc["a.jpg", "time"] == pd.Timestamp("2024-05-01T10:00:00Z")
    assert items.loc["c.jpg", "time"] == pd.Timestamp("2024-05-01T10:00:00Z")  # epoch seconds
    assert items.loc["d.jpg", "time"] == pd.Timestamp("2024-06-01T12:00:00Z")  # EXIF format
    assert pd.isna(items.loc["c2.jpg", "time"]) and "unparseable" in items.loc["c2.jpg", "time_error"]
    assert items.loc["c2.jpg", "status"] == "ok"  # a bad time never loses the image


def test_explicit_and_recovered_groups(ws):
    g = ws.groups()
    m = g.membership.set_index("item_id")
    assert m.loc["m/test/b.jpg", "group_id"] == m.loc["m/train/a.jpg", "group_id"]  # explicit
    assert m.loc["m/test/c2.jpg", "group_id"] == m.loc["m/train/c.jpg", "group_id"]  # recovered (identical pixels)
    assert m.loc["m/test/c2.jpg", "strict_group_id"] != m.loc["m/train/c.jpg", "strict_group_id"]
    assert "m/test/e.jpg" not in m.index and g.train_searched
    links = dict(zip(g.groups["group_id"], g.groups["links"]))
    assert links[m.loc["m/train/a.jpg", "group_id"]] == "explicit" and links[m.loc["m/train/c.jpg", "group_id"]] == "identical"
    rates = ws.checks.rates().set_index(["check", "train_split"])
    row = rates.loc[("group", "(all training sources)")]
    assert (row["hard"], row["soft"], row["n_eval"]) == (1, 2, 3)


def test_curator_group_decisions_feed_the_grouping(ws):
    g = ws.groups()
    ev = g.evidence[g.evidence["kind"] == "identical"]
    ws.decisions.decide_many(list(zip(ev["a"], ev["b"])), Decision.NOT_LEAK, reviewer="r")  # "unrelated"
    m = ws.groups().membership
    assert "m/test/c2.jpg" not in set(m["item_id"])
    ws.decisions.decide("m/test/e.jpg", "m/train/f.jpg", Decision.SAME_SOURCE, reviewer="r")  # "keep together"
    m = ws.groups().membership.set_index("item_id")
    assert m.loc["m/test/e.jpg", "strict_group_id"] == m.loc["m/train/f.jpg", "strict_group_id"]


def test_temporal_window_and_the_future(ws, capsys):
    found = ws.checks.findings("temporal")
    assert list(found["eval_item_id"]) == ["m/test/b.jpg"] and found["degree"].tolist() == ["hard"]
    assert found["score"].iloc[0] == pytest.approx(30.0)
    ws.configure(group_window_s=10)
    assert ws.checks.findings("temporal").empty
    ws.configure(group_cutoff="2024-05-15")
    assert list(ws.audits.future_training()["key"]) == ["d.jpg"]
    assert main(["report", str(ws.path), "--fail-above-group", "50"]) == 1
    out = capsys.readouterr()
    assert "Group leakage: evaluation images that belong to a group" in out.out and "training on the future: 1" in out.out and "group leakage 66.67% > 50" in out.err


def test_group_from_regex_and_level(tmp_path):
    for split, names in (("train", ["pat01_x.png", "pat02_y.png"]), ("test", ["pat01_z.png"])):
        for i, n in enumerate(names):
            (tmp_path / "d" / split / "scans").mkdir(parents=True, exist_ok=True)
            photo(i + len(split), (40, 40)).save(tmp_path / "d" / split / "scans" / n)
    ws = Project.create(tmp_path / "w", encoder="phash")
    ws.add("d", tmp_path / "d", group_from=r"pat(?P<group>\d+)_")
    assert sorted(ws.workspace.items()["group"].tolist()) == ["01", "01", "02"]
    ws.add("e", tmp_path / "d", group_level=0)
    assert set(ws.workspace.items().query("dataset == 'e'")["group"]) == {"scans"}
    with pytest.raises(IngestError, match="needs a capturing group"):
        ws.add("f", tmp_path / "d", group_from=r"pat\d+")


def test_resplit_keeps_groups_together_and_rescans_clean(ws, tmp_path):
    result = ws.resplit("m", test_size=0.3, out=str(tmp_path / "out"))
    a = result.assignment.set_index("item_id")
    assert a.loc["m/train/a.jpg", "new_split"] == a.loc["m/test/b.jpg", "new_split"]
    assert a.loc["m/train/c.jpg", "new_split"] == a.loc["m/test/c2.jpg", "new_split"]
    assert result.summary["cross_split_groups"] == 0 and result.summary["items"] == 7
    manifest = pd.read_csv(tmp_path / "out" / "m.csv")  # the source manifest's own rows, split rewritten
    assert set(manifest["split"]) <= {"train", "test"} and len(manifest) == 7
    ws2 = Project.create(tmp_path / "w2", encoder="phash")
    ws2.add("m", tmp_path / "out" / "manifest.csv", root=ws.workspace.datasets["m"].root, roles={"*": "train", "test": "eval"})
    ws2.configure(group_threshold=0.9)
    ws2.scan(grouping=True)
    assert not ws2.groups().groups["cross_split"].any()
    assert main(["resplit", str(ws.path), "--dataset", "m", "--dry-run"]) == 0


def test_a_flagged_pair_no_group_links_stays_on_one_side_of_the_re_split(ws, monkeypatch, tmp_path):
    """A re-split keeps every flagged pair on one side, not only the groups: a group link asks its own local
    matches (a mirror or a banner defeats them), and a new user's re-split put 4 of 30 flagged copies on the other
    side of their originals. A pair a curator calls unrelated may be split."""
    from leakcore import resplit

    no_groups = grouping.recover_groups(ws.workspace, threshold=float("inf"))  # explicit groups only: c-c2 unlinked
    monkeypatch.setattr(grouping, "groups_in_force", lambda *a, **k: no_groups)
    items = ws.workspace.items()  # c2 is c's bytes here; as a near-copy it has a content of its own
    items.loc[items["item_id"] == "m/test/c2.jpg", "sha256"] = "0" * 64
    monkeypatch.setattr(ws.workspace, "items", lambda: items.copy())
    seeds = range(12)
    together = [resplit.plan_resplit(ws.workspace, "m", test_size=0.3, seed=s) for s in seeds]
    for r in together:
        a = r.assignment.set_index("item_id")["new_split"]
        assert a["m/train/c.jpg"] == a["m/test/c2.jpg"] and r.summary["flagged_pairs_joined"] == 1
        assert r.summary["flagged_pairs"] >= r.summary["flagged_pairs_joined"]  # every flagged pair, joined or not
    ws.decisions.decide("m/test/c2.jpg", "m/train/c.jpg", "not_leak", reviewer="ann")
    apart = [resplit.plan_resplit(ws.workspace, "m", test_size=0.3, seed=s) for s in seeds]
    assert all(r.summary["flagged_pairs_joined"] == 0 for r in apart)
    assert any(r.assignment.set_index("item_id")["new_split"]["m/train/c.jpg"]
               != r.assignment.set_index("item_id")["new_split"]["m/test/c2.jpg"] for r in apart)


def test_exact_copies_inside_training_stay_on_one_side_of_the_re_split(tmp_path, capsys):
    """A scan compares training images with one another only with --grouping: a new user's exact copy inside train
    went to test while its original stayed in train. Items of one content are kept together, and the CLI says that
    near-duplicates inside training were not looked for."""
    from conftest import make_folder_dataset

    root = make_folder_dataset(tmp_path / "d", n_train=10, n_test=4)
    for i in range(4):  # copies of training photos inside train, under other names
        (root / "train" / "cat" / f"copy_{i}.jpg").write_bytes((root / "train" / "cat" / f"train_00{2 * i}.jpg").read_bytes())
    project = Project.create(tmp_path / "w", encoder="phash")
    project.add("d", root)
    project.scan()
    for seed in range(6):
        r = project.resplit("d", test_size=0.3, seed=seed, write=False)
        a = r.assignment.set_index("key")["new_split"]
        assert all(a[f"cat/copy_{i}.jpg"] == a[f"cat/train_00{2 * i}.jpg"] for i in range(4))
        assert r.summary["identical_joined"] == 4 and r.summary["train_searched"] is False
    (root / "train" / "cat" / "empty_a.jpg").write_bytes(b"")  # two empty files: left out, not joined as copies
    (root / "test" / "cat" / "empty_b.jpg").write_bytes(b"")
    project.add("d", root)
    project.scan()
    r = project.resplit("d", test_size=0.3, write=False)
    assert r.summary["unreadable_left_out"] == 2 and r.summary["identical_joined"] == 4
    assert not r.assignment["key"].str.startswith("cat/empty").any() and r.summary["train"] + r.summary["test"] == 18
    assert main(["resplit", str(project.path), "--dataset", "d", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "exact copies (the same bytes) joined likewise: 4" in out and "training images were not compared with one another" in out
    assert "left out, no check could read them: 2 files" in out


def test_a_re_split_of_a_folder_dataset_writes_its_images_in_folders_per_new_split(tmp_path, capsys):
    """A folder dataset's own layout is folders: a new user's re-split wrote only the manifest."""
    from conftest import make_folder_dataset

    root = make_folder_dataset(tmp_path / "d", n_train=6, n_test=4, leaks=(0,))
    (root / "test" / "cat" / "train_000.jpg").write_bytes((root / "test" / "cat" / "test_000.jpg").read_bytes())
    outside = tmp_path / "elsewhere.jpg"  # a link out of the folder: never copied into the re-split
    outside.write_bytes((root / "train" / "cat" / "train_002.jpg").read_bytes())
    (root / "train" / "cat" / "link.jpg").symlink_to(outside)
    project = Project.create(tmp_path / "w", encoder="phash")
    project.add("d", root)
    project.scan()
    result = project.resplit("d", test_size=0.3, out=str(tmp_path / "out"), links="copy")
    folder = tmp_path / "out" / "images"
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.jpg"))
    assert len(files) == 11 and {f.split("/")[0] for f in files} == {"train", "test"}
    assert not any(f.endswith("link.jpg") for f in files)
    a = result.assignment
    for key, split, old in zip(a["key"], a["new_split"], a["old_split"]):  # under its new split, in its class folder
        folder_name, name = key.rsplit("/", 1)
        assert f"{split}/{key}" in files or f"{split}/{folder_name}/{old}-{name}" in files  # two train_000.jpg
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")  # the link out of the folder: left out, unread
    assert len(manifest) == 11 and result.summary["unreadable_left_out"] == 1
    assert all((tmp_path / "out" / p).is_file() for p in manifest["new_path"])
    assert main(["resplit", str(project.path), "--dataset", "d", "--out", str(tmp_path / "o2"), "--links", "symlink"]) == 0
    assert all(p.is_symlink() for p in (tmp_path / "o2" / "images").rglob("*.jpg"))
    # the commands it prints read the new split back: its folder of links, and its manifest (a new user's `add` of
    # either found no image: the links led out of the folder, the manifest's paths were the old root's)
    import shlex

    commands = [line.split("to scan it: ", 1)[1] for line in capsys.readouterr().out.splitlines() if "to scan it: " in line]
    assert len(commands) == 2 and "--follow-links" in commands[0]
    for n, command in enumerate(commands):
        argv = shlex.split(command.replace("NEW-WORKSPACE", str(tmp_path / f"again{n}")))[1:]
        assert main(argv) == 0
        again = Project.open(tmp_path / f"again{n}").workspace.items()
        assert len(again) == 11 and (again["status"] == "ok").all() and set(again["split"]) == {"train", "test"}
    # added beside the dataset it came from instead, it is said: every image would be its own copy's leak
    capsys.readouterr()
    assert main(shlex.split(commands[0].replace("NEW-WORKSPACE", str(project.path)))[1:]) == 0
    assert "11 of its images are dataset d's, byte for byte" in capsys.readouterr().out


def test_calibrate_group_threshold_on_photos(tmp_path):
    root = tmp_path / "d" / "train" / "x"
    root.mkdir(parents=True)
    for i in range(8):
        photo(i, (96, 72)).save(root / f"{i}.png")
    ws = Project.create(tmp_path / "w", encoder="phash")
    ws.add("d", tmp_path / "d")
    cal = ws.calibrate("d/train", kind="groups", queries=8, apply=True)  # grouping.calibrate_group_threshold
    assert 0 < cal["threshold"] <= 1 and cal["false_positive_rate"] <= 0.001 + 1 / cal["negatives"]
    assert cal["sources"] == 8 and 0 <= cal["patch_recall"] <= 1
    assert cal["candidate_threshold"] <= cal["threshold"]  # looser: the pixels decide
    assert ws.settings.group_threshold == cal["candidate_threshold"]  # applied
    with pytest.raises(UnknownName, match="valid kinds: thresholds, groups"):
        ws.calibrate("d/train", kind="pairs")


def _app_on(ws, monkeypatch, tmp_path, page: str):
    """The dashboard on `ws` with a reviewer named, switched to `page` as a click in the sidebar would."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LEAKCORE_WORKSPACE", str(ws.path))
    monkeypatch.setenv("LEAKCORE_HOME", str(tmp_path / "home"))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.session_state["reviewer"] = "tester"
    at.run()
    at.switch_page(page).run()
    return at


def test_pages_show_groups(ws, monkeypatch, tmp_path):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = _app_on(ws, monkeypatch, tmp_path, "pages/3_Heatmaps.py")
    assert not at.exception, at.exception
    assert at.radio(key="heat_check").options == ["similarity", "group", "temporal"]
    at.radio(key="heat_check").set_value("group").run()
    assert not at.exception and any("whose group" in c.value for c in at.caption)
    at.switch_page("pages/1_Review.py").run()
    at.radio(key="review_check").set_value("group").run()
    assert not at.exception, at.exception
    assert any("Group **1 / 2**" in m.value for m in at.markdown)
    if any("linked by *explicit*" in m.value for m in at.markdown):
        # metadata cannot be overruled by a click, and the page says so (N recorded nothing and moved on, unsaid)
        assert at.button(key="group_not_leak").disabled and any("Only explicit group metadata" in c.value
                                                                for c in at.caption)
        at.button(key="group_next").click().run()  # go to the recovered one
    assert any("Group **2 / 2**" in m.value or "linked by *identical*" in m.value for m in at.markdown)
    shown = at.session_state["group_pos"]
    assert at.query_params["group"] in (str(shown + 1), [str(shown + 1)])  # the group on show, in the address bar
    again = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)  # a reload
    again.session_state["reviewer"] = "tester"
    again.switch_page("pages/1_Review.py")
    for key in ("check", "group"):
        again.query_params[key] = at.query_params[key]
    again.run()
    assert not again.exception and again.session_state["group_pos"] == shown
    at.button(key="group_not_leak").click().run()  # "unrelated": the recovered link is cut
    assert not at.exception
    assert any("Group **1 / 1**" in m.value for m in at.markdown)
    at.switch_page("pages/5_Export.py").run()
    at.multiselect(key="exp_also").set_value(["group"]).run()
    assert not at.exception, at.exception
    at.button[-1].click().run()  # the re-split form's submit button
    assert not at.exception and any("groups of several images kept whole" in s.value for s in at.success)


def test_group_mode_moves_on_after_k_shows_the_state_and_undoes_a_group_whole(ws, monkeypatch, tmp_path):
    """A new user's K left the page on the same group with nothing filled; their next N, meant for the next group,
    cut it, and Z did nothing in group mode."""
    at = _app_on(ws, monkeypatch, tmp_path, "pages/1_Review.py")
    at.radio(key="review_check").set_value("group").run()
    line = lambda: next(m.value for m in at.markdown if m.value.startswith("Group **"))  # noqa: E731
    assert line().startswith("Group **1 / 2**") and "state **unreviewed**" in line()
    assert at.button(key="group_undo").disabled
    at.button(key="group_same_source").click().run()
    assert not at.exception and line().startswith("Group **2 / 2**")  # on to the next group
    at.button(key="group_prev").click().run()
    assert "state **kept together** (one source, by `tester`)" in line()
    assert at.button(key="group_same_source").proto.type == "primary"
    at.button(key="group_next").click().run()
    at.button(key="group_undo").click().run()  # back to the group undone, unreviewed again
    assert not at.exception and line().startswith("Group **1 / 2**") and "state **unreviewed**" in line()
    assert at.toast[-1].proto.body.startswith("Undid one source")


# ---- group links verified by geometry ---------------------------------------------------------------------------
def _textured(base_seed: int, texture_seed: int, size=(360, 270)) -> "Image.Image":
    """Smooth blobs (the look, which a perceptual hash sees) under a fine random block texture (the pixels local
    features see): one base with different textures looks alike to the encoder but shares no region."""
    from PIL import Image

    w, h = size
    base = np.asarray(photo(base_seed, size), np.float32)
    rng = np.random.default_rng(texture_seed)
    blocks = rng.random((h // 4 + 1, w // 4 + 1)).repeat(4, 0).repeat(4, 1)[:h, :w, None]
    return Image.fromarray(np.clip(0.75 * base + 0.25 * 255 * blocks, 0, 255).astype(np.uint8))


@pytest.fixture
def geo_ws(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    rows = []

    def put(img, name, split, group=""):
        img.save(root / name, quality=95)
        rows.append({"path": name, "split": split, "group": group})

    for i, split in enumerate(["train", "test", "train", "test"]):  # a look-alike chain: one look, four textures
        put(_textured(7, 100 + i), f"alike{i}.jpg", split)
    for j, (part, split) in enumerate(zip(grouping.overlapping_patches(_textured(8, 200)),
                                          ["train", "test", "train", "test"])):
        put(part, f"patch{j}.jpg", split)
    put(_textured(9, 300), "subject_a.jpg", "train", "s1")  # one subject's different photos under an explicit id
    put(_textured(10, 301), "subject_b.jpg", "test", "s1")
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    ws = Project.create(tmp_path / "w", encoder="phash")
    ws.add("m", tmp_path / "m.csv", root=root)
    ws.configure(group_threshold=-1.0)  # every stored neighbour is a candidate: the pixels alone decide
    ws.scan(grouping=True)
    return ws


def test_lookalikes_are_candidates_but_never_chain(geo_ws):
    g = geo_ws.groups()
    cand = g.candidates
    alike = cand[cand["a"].str.contains("alike") & cand["b"].str.contains("alike")]
    assert len(alike) >= 3 and alike["similarity"].min() >= 0.5  # the encoder calls them alike...
    assert not alike["edge"].any() and alike["reason"].isin(["no shared region", "too few matches"]).all()  # ...not the pixels
    assert not g.membership["item_id"].str.contains("alike").any()
    assert not any("alike" in i for i in grouping.group_reach(g)["eval_item_id"])


def test_a_mirrored_frame_of_one_photo_is_linked_and_a_mirrored_look_alike_is_not(tmp_path):
    """ORB is not mirror-invariant: a new user's two flipped copies were linked by nothing but a curator's decision.
    A pair that shares no region as it is is measured again with its first image mirrored."""
    from PIL import Image

    root = tmp_path / "imgs"
    root.mkdir()
    shot = _textured(8, 200)
    rows = []
    for name, img, split in (("shot.jpg", shot, "train"),
                             ("frame_mirrored.jpg", shot.crop((40, 20, 320, 250)).transpose(
                                 Image.Transpose.FLIP_LEFT_RIGHT), "test"),
                             ("alike.jpg", _textured(8, 201).transpose(Image.Transpose.FLIP_LEFT_RIGHT), "test")):
        img.save(root / name, quality=95)
        rows.append({"path": name, "split": split})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    ws = Project.create(tmp_path / "w", encoder="phash")
    ws.add("m", tmp_path / "m.csv", root=root)
    ws.configure(group_threshold=-1.0)  # every stored neighbour is a candidate: the pixels alone decide
    ws.scan(grouping=True)
    g = ws.groups()
    cand = g.candidates.set_index(["a", "b"])
    frame = cand.loc[("m/test/frame_mirrored.jpg", "m/train/shot.jpg")]
    assert frame["edge"] and frame["reason"] == grouping.MIRRORED and frame["inliers"] >= grouping.MIN_INLIERS
    alike = cand.loc[("m/test/alike.jpg", "m/train/shot.jpg")]
    assert not alike["edge"]
    reach = set(grouping.group_reach(g)["eval_item_id"])
    assert "m/test/frame_mirrored.jpg" in reach and "m/test/alike.jpg" not in reach


def test_patches_of_one_image_are_linked_with_their_evidence(geo_ws):
    g = geo_ws.groups()
    m = g.membership.set_index("item_id")
    patches = [i for i in m.index if "patch" in i]
    assert len(patches) == 4 and m.loc[patches, "group_id"].nunique() == 1
    assert m.loc[patches, "strict_group_id"].nunique() == 4  # a recovered link, not metadata: the soft degree
    links = g.groups.set_index("group_id").loc[m.loc[patches[0], "group_id"], "links"]
    assert links.startswith("geometry (") and "inliers" in links
    ev = g.evidence[g.evidence["group_id"] == m.loc[patches[0], "group_id"]]
    assert set(ev["kind"]) == {"geometry"} and (ev["inliers"] >= grouping.MIN_INLIERS).all() and len(ev) >= 3
    found = geo_ws.checks.findings("group")
    assert set(found.loc[found["eval_item_id"].str.contains("patch"), "degree"]) == {"soft"}
    assert "geometry" in found["reason"].str.cat()


def test_explicit_ids_still_link(geo_ws):
    g = geo_ws.groups()
    m = g.membership.set_index("item_id")
    assert m.loc["m/train/subject_a.jpg", "strict_group_id"] == m.loc["m/test/subject_b.jpg", "strict_group_id"]
    assert g.groups.set_index("group_id").loc[m.loc["m/train/subject_a.jpg", "group_id"], "links"] == "explicit"


def test_geometry_is_cached_per_pair_and_reports_progress(geo_ws, monkeypatch):
    seen = []
    first = geo_ws.groups(progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert seen and seen[-1][0] == "verify group links" and seen[-1][1] == seen[-1][2] > 0
    parts = list((geo_ws.path / "groups" / f"geometry-v{grouping.GEOMETRY_VERSION}").glob("part-*.parquet"))
    assert parts and not list(parts[0].parent.glob("*.tmp"))

    def boom(*a, **k):
        raise AssertionError("measured again")

    monkeypatch.setattr(grouping, "match_features", boom)
    monkeypatch.setattr(grouping, "local_features", boom)
    seen.clear()
    again = geo_ws.groups(progress=lambda *a: seen.append(a))
    assert not seen
    assert again.membership.equals(first.membership)
    assert main(["groups", str(geo_ws.path)]) == 0


def test_the_groups_command_names_each_leaking_group_s_evaluation_images(geo_ws, capsys):
    """A new user's listing named each group by a training file only, and cut it at 10 without saying so."""
    groups = geo_ws.groups(in_force=True)
    leaking = groups.groups[groups.groups["leaks"]]
    assert len(leaking)
    assert main(["groups", str(geo_ws.path), "--show", "1"]) == 0
    out = capsys.readouterr().out
    first = groups.membership[(groups.membership["group_id"] == leaking["group_id"].iloc[0])
                              & (groups.membership["role"] == "eval")]["item_id"]
    assert "    evaluation: " + sorted(first)[0] in out
    if len(leaking) > 1:
        assert f"… and {len(leaking) - 1} more groups (--show N lists more)" in out
    assert main(["groups", str(geo_ws.path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["leaking_groups"]
    assert all(g["members"]["eval"] and g["members"]["train"] for g in listed)
    assert len(listed) == len(leaking)  # every one: a script read 10 of 22 with no word of the rest
    assert main(["groups", str(geo_ws.path), "--json", "--show", "1"]) == 0
    assert len(json.loads(capsys.readouterr().out)["leaking_groups"]) == 1


def test_unreadable_images_are_skipped_with_a_reason(geo_ws):
    items = geo_ws.workspace.items().set_index("item_id")
    Path(items.loc["m/test/patch1.jpg", "uri"]).write_bytes(b"not an image any more")
    g = geo_ws.groups()
    bad = g.candidates[(g.candidates["a"] == "m/test/patch1.jpg") | (g.candidates["b"] == "m/test/patch1.jpg")]
    measured = bad[bad["method"] != "unmeasured"]
    assert len(measured) and measured["reason"].str.startswith("unreadable").all() and not measured["edge"].any()


def test_the_percolation_guard_is_worded_once():
    members = pd.DataFrame({"item_id": [f"i{k}" for k in range(60)], "group_id": "i0"})
    big = pd.DataFrame({"group_id": ["i0"], "size": [60], "links": ["geometry (9-80 inliers)"]})
    g = grouping.Groups(members, big, pd.DataFrame(), 0.3, True, items=100)
    assert g.percolated and "60 of 100 images" in g.guard and "geometry (9-80 inliers)" in g.guard
    small = grouping.Groups(members.head(2), big.assign(size=2), pd.DataFrame(), 0.3, True, items=100)
    assert not small.percolated and small.guard is None


def test_candidates_are_taken_on_the_raw_similarity(geo_ws):
    from leakcore import leakage

    geo_ws.configure(group_threshold=0.2)
    pairs = leakage.load_pairs(geo_ws.workspace, raw=True)
    fused = pairs.assign(raw_similarity=pairs["similarity"], similarity=-1.0)  # as the fused score hands them
    a, b = grouping.recover_groups(geo_ws.workspace, pairs=fused), grouping.recover_groups(geo_ws.workspace)
    assert len(a.candidates) == len(b.candidates) > 0 and a.membership.equals(b.membership)


def test_candidates_per_image_are_capped():
    items = pd.DataFrame({"item_id": [f"i{k:02d}" for k in range(12)], "sha256": [f"s{k:02d}" for k in range(12)]})
    pairs = pd.DataFrame({"eval_item_id": "i00", "train_item_id": [f"i{k:02d}" for k in range(1, 12)],
                          "similarity": np.linspace(0.9, 0.4, 11)})
    c = grouping.candidate_links(None, items, pairs, 0.3, max_per_image=4)
    assert len(c) == 11  # i00 keeps its 4 best, but every other image keeps its only candidate
    pairs = pd.concat([pairs, pairs.assign(eval_item_id="i01").query("train_item_id != 'i01'")])
    c = grouping.candidate_links(None, items, pairs, 0.3, max_per_image=1)
    kept = set(zip(c["a"], c["b"]))
    assert ("i00", "i01") in kept and len(c) == 11  # i00 keeps i01; i02..i11 each keep one link, not two
    assert pd.concat([c["a"], c["b"]]).value_counts().drop(["i00", "i01"]).eq(1).all()


def test_tiny_images_are_aligned_only_when_they_score_like_a_copy(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    tiny = photo(21, (36, 28))
    tiny.save(root / "a.jpg", quality=95)
    tiny.save(root / "a2.jpg", quality=70)  # a recompressed copy: other bytes, the same picture
    photo(22, (36, 28)).save(root / "b.jpg", quality=95)
    pd.DataFrame({"path": ["a.jpg", "a2.jpg", "b.jpg"], "split": ["train", "test", "test"]}).to_csv(
        tmp_path / "m.csv", index=False)
    ws = Project.create(tmp_path / "w", encoder="phash")
    ws.add("m", tmp_path / "m.csv", root=root)
    ws.configure(group_threshold=-1.0)
    ws.scan(grouping=True)
    g = ws.groups()
    c = g.candidates.set_index(["a", "b"])
    copy = c.loc[("m/test/a2.jpg", "m/train/a.jpg")]
    assert copy["method"] == "aligned" and copy["edge"] and copy["ncc"] >= 0.9
    other = c.loc[("m/test/b.jpg", "m/train/a.jpg")]
    assert not other["edge"] and ("not aligned" in other["reason"] or other["method"] == "aligned")
    assert "aligned" in g.groups["links"].str.cat()


def test_an_all_zero_exif_date_is_no_date_and_a_bad_one_is_still_said(tmp_path, capsys):
    """Cameras whose clock was never set write "0000:00:00 00:00:00": no time, and nothing to warn about."""
    from PIL import Image

    for split, name, when in [("train", "unset.jpg", "0000:00:00 00:00:00"), ("train", "bad.jpg", "yesterday"),
                              ("test", "real.jpg", "2024:06:01 12:00:00")]:
        (tmp_path / "data" / split).mkdir(parents=True, exist_ok=True)
        exif = Image.Exif()
        exif.get_ifd(0x8769)[0x9003] = when  # DateTimeOriginal
        photo(len(name), (64, 48)).save(tmp_path / "data" / split / name, exif=exif)
    main(["init", str(tmp_path / "w"), "--encoder", "phash"])
    capsys.readouterr()
    main(["add", str(tmp_path / "w"), "--dataset", "d", "--source", str(tmp_path / "data"), "--format", "folder"])
    out = capsys.readouterr()
    said = out.out + out.err
    assert "could not be parsed: 1 " in said and "yesterday" in said and "0000" not in said
    items = Project.open(tmp_path / "w").workspace.items().set_index("key")
    assert pd.isna(items.loc["unset.jpg", "time"]) and pd.isna(items.loc["unset.jpg", "time_error"])
    assert items.loc["real.jpg", "time"] == pd.Timestamp("2024-06-01T12:00:00Z")


def test_matches_in_one_small_area_link_only_where_the_pixels_agree_as_a_copy_s():
    """Two look-alike cats aligned on their faces (12-14 inliers within 1% of the image, NCC 0.73-0.84) were linked
    into one group; patches of one photo with inliers that close check at NCC 0.975 and above."""
    m = pd.DataFrame({"method": "orb", "inliers": [13.0, 13.0, 13.0, 40.0], "spread": [0.01, 0.01, 0.2, 0.0005],
                      "scale": 1.0, "ncc": [0.82, 0.98, 0.82, 0.99]})
    assert grouping.geometry_edge(m).tolist() == [False, True, True, False]


def test_a_re_split_says_when_it_keeps_one_picture_under_two_labels(tmp_path, capsys):
    """A new user's label conflict (a training photo filed in test under the other class) landed in train under both
    labels, and the re-split said nothing: it cannot fix a label, but it says how many such pairs it kept."""
    from conftest import make_folder_dataset

    root = make_folder_dataset(tmp_path / "d", n_train=6, n_test=4)
    (root / "test" / "dog" / "conflict.jpg").write_bytes((root / "train" / "cat" / "train_000.jpg").read_bytes())
    project = Project.create(tmp_path / "w", encoder="phash")
    project.add("d", root)
    project.scan()
    result = project.resplit("d", test_size=0.3, write=False)
    assert result.summary["label_conflicts_kept"] == 1
    assert main(["resplit", str(project.path), "--dataset", "d", "--dry-run"]) == 0
    assert "one picture under two labels, kept on one side: 1" in capsys.readouterr().out


def test_a_re_split_says_which_images_match_another_datasets_training_images(tmp_path, capsys):
    """A new user's re-split of cats_and_dogs said nothing of 8 copies of hymenoptera training photos in it: a
    re-split of one dataset cannot move them, but it says how many there are, against which sources, and how many
    landed in test."""
    from conftest import make_folder_dataset

    a = make_folder_dataset(tmp_path / "a", n_train=6, n_test=2)
    b = make_folder_dataset(tmp_path / "b", n_train=6, n_test=4, seed0=50)
    (b / "test" / "cat" / "copy.jpg").write_bytes((a / "train" / "cat" / "train_000.jpg").read_bytes())
    project = Project.create(tmp_path / "w", encoder="phash")
    project.add("a", a)
    project.add("b", b)
    project.scan()
    s = project.resplit("b", test_size=0.3, write=False).summary
    assert s["other_datasets_matched"] == 1 and s["other_training_sources"] == ["a/train"]
    assert s["other_datasets_matched_in_test"] in (0, 1)
    assert project.resplit("a", test_size=0.3, write=False).summary["other_datasets_matched"] == 0
    assert main(["resplit", str(project.path), "--dataset", "b", "--dry-run"]) == 0
    assert "1 image matches training images of other datasets (a/train)" in capsys.readouterr().out
