"""A check is a plug-in: registered once, it reaches rates, heatmaps, the review queue, the export and the CI gate
without any of them naming it."""
import pandas as pd
import pytest

from leakcore import checks, leakage, review
from leakcore.api import Project
from leakcore.checks.base import FINDING_COLUMNS, Check, CheckInputs, Words, _REGISTRY
from leakcore.cli import main
from leakcore.export import ExportPolicy

from conftest import make_folder_dataset


class ToyCheck(Check):
    """Flags two fixed test images against training images: one hard, one soft."""

    name = "toy"
    kind = "pairs"
    description = "a check made up for this test"
    words = Words(title="Toy findings", hard="toy-hard", soft="toy-soft", hard_title="Toy: hard", soft_title="Toy: any",
                  caption="toy share", verdict="are toys", review="toy pairs")
    review = "pairs"

    def findings(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        return pd.DataFrame({
            "check": self.name, "eval_split": "d/test", "train_split": "d/train",
            "eval_item_id": ["d/test/dog/test_001.jpg", "d/test/dog/test_003.jpg"],
            "train_item_id": ["d/train/dog/train_001.jpg", "d/train/dog/train_003.jpg"],
            "score": [0.9, 0.5], "degree": ["hard", "soft"], "decision": pd.NA,
            "reason": ["toy reason one", "toy reason two"]}).astype(FINDING_COLUMNS)

    def rates(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        n = int(leakage.eval_counts(ws)["d/test"])
        rows = [{"check": self.name, "eval_split": "d/test", "train_split": tr, "n_eval": n, "hard": 1, "soft": 2,
                 "hard_rate": 1 / n, "soft_rate": 2 / n} for tr in ("d/train", leakage.ALL_SOURCES)]
        return pd.DataFrame(rows)

    def review_rows(self, ws, inputs: CheckInputs) -> pd.DataFrame:
        f = self.findings(ws, inputs)
        pairs = f[["eval_split", "train_split", "eval_item_id", "train_item_id"]].assign(
            similarity=f["score"].astype(float), within=False, rank=0)
        q = review.build_queue(pairs, ws.items(), inputs.hard, inputs.soft, margin=1.0, check=self.name)
        return q


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("checks")
    root = make_folder_dataset(tmp / "d", n_train=6, n_test=5, leaks=(0,))
    p = Project.create(tmp / "w", encoder="phash")
    p.add("d", root)
    p.scan()
    return p


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(_REGISTRY, "toy", ToyCheck())
    return _REGISTRY["toy"]


def test_a_registered_check_reaches_every_view_without_being_named(project, toy, capsys):
    table = project.checks.rates()
    assert set(table.loc[table["check"] == "toy", "soft"]) == {2}
    mats = leakage.matrices(table, check="toy")
    assert mats["soft"].loc["d/train", "d/test"] == 2 and mats["hard"].loc["d/train", "d/test"] == 1
    assert "toy" in [c["name"] for c in project.checks.reviewable()]
    q = project.review.queue(*project.scores.thresholds())
    assert set(q.loc[q["check"] == "toy", "eval_item_id"]) == {"d/test/dog/test_001.jpg", "d/test/dog/test_003.jpg"}
    assert (q["check"] != "toy").any()  # the near-duplicate check's rows are still there
    # an export removes its findings when asked, at the policy's level, with the check's reason
    soft = project.exports.plan("d/test", ExportPolicy("soft", checks=frozenset({"toy"}))).set_index("item_id")
    assert set(soft.index[soft["removed"]]) == {"d/test/dog/test_001.jpg", "d/test/dog/test_003.jpg"}
    assert soft.loc["d/test/dog/test_003.jpg", "check"] == "toy"
    assert soft.loc["d/test/dog/test_003.jpg", "reason"] == "toy reason two"
    hard = project.exports.plan("d/test", ExportPolicy("hard", checks=frozenset({"toy"}))).set_index("item_id")
    assert set(hard.index[hard["removed"]]) == {"d/test/dog/test_001.jpg"}
    # and the default export does not (the check did not ask to be a default)
    default = project.exports.plan("d/test", ExportPolicy("soft")).set_index("item_id")
    assert not default.loc["d/test/dog/test_003.jpg", "removed"]
    # the gate: 2 of 5 = 40% > 30; hard 20% is not > 30
    bounds = project.checks.parse_bounds(["toy=30", "toy:hard=30"])
    assert project.checks.gate(table, bounds) == ["d/test: toy leakage 40.00% > 30.0%"]
    assert main(["report", str(project.path), "--fail-above", "toy=30"]) == 1
    assert main(["report", str(project.path), "--fail-above", "toy=50", "--fail-above", "toy:hard=25"]) == 0
    # a passing gate says what it held to (a CI log showed nothing either way)
    assert "PASS every evaluation split within the bounds: toy soft <= 50%; toy hard <= 25%" in capsys.readouterr().err


def test_the_report_gives_each_check_in_its_own_words_with_its_numbers(project, toy, capsys):
    assert main(["report", str(project.path)]) == 0
    out = capsys.readouterr().out
    n = int(leakage.eval_counts(project.workspace)["d/test"])
    assert "Toy findings: evaluation images that are toys\n  hard: toy-hard; soft (hard included): toy-soft" in out, out
    assert f"2 of {n:>7} images ({200 / n:.2f}%): hard 1 ({100 / n:.2f}%), soft 2" in out, out
    assert "toy check" not in out and "⊂" not in out  # not the registry's name and a set symbol


def test_the_gate_refuses_what_it_cannot_bound(project):
    with pytest.raises(Exception, match="checks a bound applies to: similarity") as unknown:
        project.checks.parse_bounds(["nosuch=1"])
    named = str(unknown.value).rpartition(": ")[2].split(", ")  # only checks with rates: the others cannot be bounded
    assert "coverage" not in named and "shortcut" not in named and set(named) == set(project.checks.names())
    with pytest.raises(Exception, match="CHECK=PCT"):
        project.checks.parse_bounds(["similarity"])
    with pytest.raises(Exception, match="percentage"):
        project.checks.parse_bounds(["similarity=lots"])
    for out_of_range in ("similarity=-1", "similarity:hard=101"):  # -1 was taken, and failed every split
        with pytest.raises(Exception, match="from 0 to 100"):
            project.checks.parse_bounds([out_of_range])
    with pytest.raises(Exception, match="no rates"):
        project.checks.parse_bounds(["coverage=1"])
    # a workspace nothing has measured yet fails any bound instead of passing it
    empty = Project.create(project.path.parent / "never-scanned", encoder="phash")
    assert main(["report", str(empty.path), "--fail-above", "similarity=100"]) == 1
    assert project.checks.gate(empty.checks.rates(), {"similarity": {"soft": 100.0}})[0].startswith("nothing measured")
    # the old flags are aliases of the generic one
    assert main(["report", str(project.path), "--fail-above-soft", "10"]) == 1  # test_000 is a copy: 20%
    assert main(["report", str(project.path), "--fail-above", "similarity=10"]) == 1
    assert main(["report", str(project.path), "--fail-above", "similarity=30"]) == 0


def test_an_export_refuses_a_check_it_cannot_remove_by():
    with pytest.raises(Exception, match="cannot remove by 'coverage'"):
        ExportPolicy("soft", checks=frozenset({"coverage"}))
    assert "similarity" in ExportPolicy().selected and "group" in ExportPolicy(groups=True).selected
    assert [c.name for c in checks.exportable_checks()][0] == "similarity"


@pytest.fixture(scope="module")
def conflicted(tmp_path_factory):
    """A folder dataset with one picture under two labels across splits (test cat = training dog, same bytes),
    two within the test split, and two within training."""
    tmp = tmp_path_factory.mktemp("conflicts")
    root = make_folder_dataset(tmp / "d", n_train=6, n_test=5)
    (root / "test" / "cat" / "across.jpg").write_bytes((root / "train" / "dog" / "train_001.jpg").read_bytes())
    (root / "test" / "dog" / "within.jpg").write_bytes((root / "test" / "cat" / "test_002.jpg").read_bytes())
    (root / "train" / "cat" / "twin.jpg").write_bytes((root / "train" / "dog" / "train_003.jpg").read_bytes())
    p = Project.create(tmp / "w", encoder="phash")
    p.add("d", root)
    p.scan()
    return p


def test_label_conflicts_appear_in_rates_heatmaps_review_export_and_the_gate(conflicted):
    p = conflicted
    f = p.checks.findings("label_conflict").set_index(["eval_item_id", "train_item_id"])
    assert f.loc[("d/test/cat/across.jpg", "d/train/dog/train_001.jpg"), "degree"] == "hard"
    # within a split both images carry the conflict; two training images are found by their bytes
    assert ("d/test/dog/within.jpg", "d/test/cat/test_002.jpg") in f.index
    assert ("d/test/cat/test_002.jpg", "d/test/dog/within.jpg") in f.index
    assert {("d/train/cat/twin.jpg", "d/train/dog/train_003.jpg"),
            ("d/train/dog/train_003.jpg", "d/train/cat/twin.jpg")} & set(f.index)
    assert "labelled 'cat' here, 'dog' in d/train" in f.loc[("d/test/cat/across.jpg", "d/train/dog/train_001.jpg"), "reason"]
    # a copy under the same label is a leak, not a conflict
    assert not any(e == "d/test/cat/test_000.jpg" for e, _ in f.index)
    table = p.checks.rates()
    lc = table[table["check"] == "label_conflict"].set_index("train_split")
    assert lc.loc[leakage.ALL_SOURCES, "soft"] == 3 and lc.loc["d/train", "soft"] == 1  # across + both within
    assert leakage.matrices(table, check="label_conflict")["hard"].loc["d/train", "d/test"] == 1
    q = p.review.queue(*p.scores.thresholds())
    assert ("d/test/cat/across.jpg", "d/train/dog/train_001.jpg") in set(
        zip(q.loc[q["check"] == "label_conflict", "eval_item_id"], q.loc[q["check"] == "label_conflict", "train_item_id"]))
    plan = p.exports.plan("d/test", ExportPolicy("soft", checks=frozenset({"label_conflict"}))).set_index("item_id")
    assert set(plan.index[plan["removed"]]) == {"d/test/cat/across.jpg", "d/test/dog/within.jpg", "d/test/cat/test_002.jpg"}
    assert set(plan.loc[plan["removed"], "check"]) == {"label_conflict"}
    assert main(["report", str(p.path), "--fail-above", "label_conflict=0"]) == 1
    assert main(["report", str(p.path), "--fail-above", "label_conflict=50"]) == 0


def test_with_the_fused_score_in_force_the_conflict_queue_carries_the_raw_similarity_beside_it(tmp_path):
    """The Review page heads a conflict pair with the score in force and the raw similarity, and explains it from the
    raw one: a new user saw "similarity 0.9845" (the fused score) and "raw similarity nan"."""
    root = make_folder_dataset(tmp_path / "d", n_train=24, n_test=6)
    (root / "test" / "cat" / "across.jpg").write_bytes((root / "train" / "dog" / "train_001.jpg").read_bytes())
    p = Project.create(tmp_path / "w", encoder="phash")
    p.add("d", root)
    p.scan()
    p.verify(queries=12)
    p.configure(score="fused")
    q = p.review.queue(*p.scores.thresholds())
    lc = q[q["check"] == "label_conflict"]
    assert len(lc) and lc["raw_similarity"].notna().all()
    raw = leakage.load_pairs(p.workspace, raw=True).set_index(["eval_item_id", "train_item_id"])["similarity"]
    for e, t, r in zip(lc["eval_item_id"], lc["train_item_id"], lc["raw_similarity"]):
        if (e, t) in raw.index:  # a pair of the scan's (not found by its bytes alone)
            assert r == pytest.approx(float(raw.loc[(e, t)].max()))


def test_removed_csv_names_every_check_that_flags_an_image(conflicted, tmp_path):
    """One row per removed image; an image two checks flag (a copy of a training image under another label) names
    both, with both reasons, so a curator sees it was also a label conflict."""
    out = tmp_path / "export"
    assert main(["export", str(conflicted.path), "--split", "d/test", "--also-remove", "label_conflict",
                 "--out", str(out)]) == 0
    removed = pd.read_csv(out / "removed.csv").set_index("item")
    assert removed.index.is_unique
    across = removed.loc["d/test/cat/across.jpg"]
    assert across["check"] == "similarity; label_conflict", across["check"]
    assert across["reason"].startswith("automatic hard flag; ") and "labelled 'cat' here, 'dog' in d/train" in across["reason"]
    assert removed.loc["d/test/dog/within.jpg", "check"] == "label_conflict"  # flagged by one check: named once


def test_an_undecided_near_duplicate_under_another_label_is_a_conflict(tmp_path):
    """Not identical bytes and nobody has decided: the scan's score alone makes it a conflict (an undecided pair's
    missing decision once dropped it, so only decided or byte-identical conflicts were found)."""
    from PIL import Image

    root = make_folder_dataset(tmp_path / "d", n_train=6, n_test=5)
    Image.open(root / "train" / "dog" / "train_003.jpg").save(root / "test" / "cat" / "near.jpg", quality=55)
    p = Project.create(tmp_path / "w", encoder="phash")
    p.add("d", root)
    p.scan()
    assert p.decisions.latest().empty
    f = p.checks.findings("label_conflict").set_index(["eval_item_id", "train_item_id"])
    key = ("d/test/cat/near.jpg", "d/train/dog/train_003.jpg")
    assert key in f.index and "labelled 'cat' here, 'dog' in d/train" in f.loc[key, "reason"]
    assert "identical bytes" not in f.loc[key, "reason"]
    # the same bytes are said to be so even where the scan's neighbours found the pair and a curator confirmed it
    across = ("d/test/cat/across.jpg", "d/train/dog/train_001.jpg")
    (root / "test" / "cat" / "across.jpg").write_bytes((root / "train" / "dog" / "train_001.jpg").read_bytes())
    p.add("d", root)
    p.scan()
    p.decisions.decide(*across, "hard", reviewer="r")
    f = p.checks.findings("label_conflict").set_index(["eval_item_id", "train_item_id"])
    assert "(identical bytes" in f.loc[across, "reason"] and f.loc[across, "degree"] == "hard"
    q = p.review.queue(*p.scores.thresholds())
    ranks = q.set_index(["check", "eval_item_id", "train_item_id"])["rank"]
    assert ranks[("label_conflict", *key)] == ranks[("similarity", *key)] >= 1  # the scan's rank, under either check
    q = p.review.queue(*p.scores.thresholds())
    assert key in set(zip(q.loc[q["check"] == "label_conflict", "eval_item_id"],
                          q.loc[q["check"] == "label_conflict", "train_item_id"]))


def test_a_confirmed_near_duplicate_under_another_label_is_a_conflict_and_a_rejected_one_is_not(conflicted, tmp_path):
    import shutil

    p = Project.open(shutil.copytree(conflicted.path, tmp_path / "w"))
    pairs = leakage.load_pairs(p.workspace)
    labels = p.workspace.items().set_index("item_id")["label"]
    hard, soft = p.scores.thresholds()
    below = pairs[(pairs["similarity"] < soft) & ~pairs["within"]
                  & (pairs["eval_item_id"].map(labels) != pairs["train_item_id"].map(labels))].iloc[0]
    key = (below["eval_item_id"], below["train_item_id"])
    assert key not in set(p.checks.findings("label_conflict").set_index(["eval_item_id", "train_item_id"]).index)
    p.decisions.decide(*key, "hard", reviewer="r")
    f = p.checks.findings("label_conflict").set_index(["eval_item_id", "train_item_id"])
    assert f.loc[key, "degree"] == "hard" and "confirmed the same picture" in f.loc[key, "reason"]
    # confirmed soft (an edited copy): a soft conflict, not "the same picture as it is" (a new user's colour-graded
    # copy, decided soft, was counted hard)
    p.decisions.decide(*key, "soft", reviewer="r")
    f = p.checks.findings("label_conflict").set_index(["eval_item_id", "train_item_id"])
    assert f.loc[key, "degree"] == "soft" and "confirmed near-duplicate or edited copy" in f.loc[key, "reason"]
    p.decisions.decide("d/test/cat/across.jpg", "d/train/dog/train_001.jpg", "not_leak", reviewer="r")
    f = p.checks.findings("label_conflict").set_index(["eval_item_id", "train_item_id"])
    assert ("d/test/cat/across.jpg", "d/train/dog/train_001.jpg") not in f.index
