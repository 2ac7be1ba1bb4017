"""A check is a plug-in: registered once, it reaches rates, heatmaps, the review queue, the export and the CI gate
without any of them naming it."""
import pandas as pd
import pytest

from leakcore import checks, export, leakage, review
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
    words = Words(hard="toy-hard", soft="toy-soft", hard_title="Toy: hard", soft_title="Toy: any",
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
        q = review.build_queue(pairs, ws.items(), inputs.hard, inputs.soft, margin=1.0)
        q["check"] = pd.Categorical([self.name] * len(q))
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


def test_a_registered_check_reaches_every_view_without_being_named(project, toy):
    table = project.rates()
    assert set(table.loc[table["check"] == "toy", "soft"]) == {2}
    mats = leakage.matrices(table, check="toy")
    assert mats["soft"].loc["d/train", "d/test"] == 2 and mats["hard"].loc["d/train", "d/test"] == 1
    assert "toy" in [c["name"] for c in project.reviewable_checks()]
    q = project.review_queue(*project.thresholds())
    assert set(q.loc[q["check"] == "toy", "eval_item_id"]) == {"d/test/dog/test_001.jpg", "d/test/dog/test_003.jpg"}
    assert (q["check"] != "toy").any()  # the near-duplicate check's rows are still there
    # an export removes its findings when asked, at the policy's level, with the check's reason
    soft = export.plan(project, "d/test", ExportPolicy("soft", checks=frozenset({"toy"}))).set_index("item_id")
    assert set(soft.index[soft["removed"]]) == {"d/test/dog/test_001.jpg", "d/test/dog/test_003.jpg"}
    assert soft.loc["d/test/dog/test_003.jpg", "check"] == "toy"
    assert soft.loc["d/test/dog/test_003.jpg", "reason"] == "toy reason two"
    hard = export.plan(project, "d/test", ExportPolicy("hard", checks=frozenset({"toy"}))).set_index("item_id")
    assert set(hard.index[hard["removed"]]) == {"d/test/dog/test_001.jpg"}
    # and the default export does not (the check did not ask to be a default)
    default = export.plan(project, "d/test", ExportPolicy("soft")).set_index("item_id")
    assert not default.loc["d/test/dog/test_003.jpg", "removed"]
    # the gate: 2 of 5 = 40% > 30; hard 20% is not > 30
    bounds = project.parse_bounds(["toy=30", "toy:hard=30"])
    assert project.gate(table, bounds) == ["d/test: toy leakage 40.00% > 30.0%"]
    assert main(["report", str(project.path), "--fail-above", "toy=30"]) == 1
    assert main(["report", str(project.path), "--fail-above", "toy=50"]) == 0


def test_the_gate_refuses_what_it_cannot_bound(project):
    with pytest.raises(Exception, match="valid checks"):
        project.parse_bounds(["nosuch=1"])
    with pytest.raises(Exception, match="CHECK=PCT"):
        project.parse_bounds(["similarity"])
    with pytest.raises(Exception, match="percentage"):
        project.parse_bounds(["similarity=lots"])
    with pytest.raises(Exception, match="no rates"):
        project.parse_bounds(["coverage=1"])
    # the old flags are aliases of the generic one
    assert main(["report", str(project.path), "--fail-above-soft", "10"]) == 1  # test_000 is a copy: 20%
    assert main(["report", str(project.path), "--fail-above", "similarity=10"]) == 1
    assert main(["report", str(project.path), "--fail-above", "similarity=30"]) == 0


def test_an_export_refuses_a_check_it_cannot_remove_by():
    with pytest.raises(Exception, match="cannot remove by 'coverage'"):
        ExportPolicy("soft", checks=frozenset({"coverage"}))
    assert "similarity" in ExportPolicy().selected and "group" in ExportPolicy(groups=True).selected
    assert [c.name for c in checks.exportable_checks()][0] == "similarity"
