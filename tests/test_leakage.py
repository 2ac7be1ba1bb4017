"""Leakage matrices on a fixture with known intra- and inter-dataset leaks; decisions override flags."""
import pandas as pd
import pytest

from leakcore import leakage, review, scores
from leakcore.ingest import add_dataset
from leakcore.project import Workspace
from leakcore.scores.raw import RawSimilarity
from leakcore.scan import scan

from conftest import make_folder_dataset, photo


@pytest.fixture
def ws(tmp_path):
    a = make_folder_dataset(tmp_path / "a", n_train=6, n_test=4, leaks=(0, 1))  # a/test 0,1 copy a/train 0,1
    b = tmp_path / "b"
    (b / "test").mkdir(parents=True)
    (b / "train").mkdir(parents=True)
    photo(3, (64, 48)).save(b / "test" / "copy_a_train3.jpg", quality=92)  # inter: b/test <- a/train
    photo(500, (64, 48)).save(b / "test" / "fresh.jpg", quality=92)
    photo(1002, (64, 48)).save(b / "train" / "copy_a_test2.jpg", quality=92)  # inter: a/test 2 <- b/train
    photo(501, (64, 48)).save(b / "train" / "other.jpg", quality=92)
    ws = Workspace.create(tmp_path / "ws", encoder="phash")
    add_dataset(ws, "a", a)
    add_dataset(ws, "b", b)
    scan(ws)
    return ws


def test_matrices_hold_known_intra_and_inter_leaks(ws):
    table = leakage.rates(ws)
    m = leakage.matrices(table)
    assert list(m["hard"].index) == ["a/train", "b/train"] and list(m["hard"].columns) == ["a/test", "b/test"]
    assert m["hard"].loc["a/train", "a/test"] == 2 and m["intra"].loc["a/train", "a/test"]
    assert m["hard"].loc["b/train", "a/test"] == 1 and not m["intra"].loc["b/train", "a/test"]
    assert m["hard"].loc["a/train", "b/test"] == 1
    assert m["hard"].loc["b/train", "b/test"] == 0
    assert m["hard_rate"].loc["a/train", "a/test"] == pytest.approx(2 / 4)
    assert m["n_eval"].loc["a/train", "b/test"] == 2
    overall = table[(table["train_split"] == leakage.ALL_SOURCES)].set_index("eval_split")
    assert overall.loc["a/test", "hard"] == 3  # items 0, 1 (intra) and 2 (inter)
    by_total = leakage.matrices(table, order="total")
    assert by_total["soft_rate"].sum(axis=1).is_monotonic_decreasing
    csv = leakage.matrix_csv(m)
    assert "training_source,evaluation_split" in csv.splitlines()[0] and len(csv.splitlines()) == 5


def test_decisions_override_flags(ws):
    pairs = leakage.load_pairs(ws)
    flagged = pairs[(pairs["eval_split"] == "a/test") & (pairs["train_split"] == "a/train") & (pairs["similarity"] > 0.99)]
    e, t = flagged.iloc[0][["eval_item_id", "train_item_id"]]
    review.decide(ws, e, t, "not_leak", reviewer="r")
    fresh = pairs[(pairs["eval_item_id"] == "b/test/fresh.jpg") & (pairs["train_split"] == "a/train")].iloc[0]
    review.decide(ws, fresh["eval_item_id"], fresh["train_item_id"], "soft", reviewer="r")
    m = leakage.matrices(leakage.rates(ws, decisions=review.latest_decisions(ws)))
    assert m["hard"].loc["a/train", "a/test"] == 1
    assert m["soft"].loc["a/train", "b/test"] == 2 and m["hard"].loc["a/train", "b/test"] == 1
    auto = leakage.matrices(leakage.rates(ws))
    assert auto["hard"].loc["a/train", "a/test"] == 2


def test_counts_at_matches_rates(ws):
    best = leakage.best_similarity(leakage.load_pairs(ws))
    hard, soft = ws.thresholds()
    counts = leakage.counts_at(best, hard, soft, leakage.eval_counts(ws)).set_index("eval_split")
    overall = leakage.rates(ws).query("train_split == @leakage.ALL_SOURCES").set_index("eval_split")
    pd.testing.assert_series_equal(counts["hard"], overall["hard"], check_names=False, check_dtype=False)
    pd.testing.assert_series_equal(counts["soft"], overall["soft"], check_names=False, check_dtype=False)


def test_report_prints_the_matrices(ws, capsys):
    from leakcore.cli import main

    assert main(["report", str(ws.path)]) == 0
    out = capsys.readouterr().out
    assert "hard leakage matrix" in out and "50.0*" in out


def test_report_into_a_closed_pipe_exits_quietly(ws):
    # `leakcore report DIR | head`: the reader is gone before the report is written; no traceback, status 141
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "leakcore.cli", "report", str(ws.path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    assert proc.wait(timeout=120) == 141
    assert proc.stderr.read() == b""


class _OneMinus(scores.Score):
    """A stand-in for the fused score (no model to fit): 1 - similarity, so that it disagrees with the raw one."""

    name = "fused"
    column = "fused"

    def add(self, ws, pairs, encoder):
        return pairs.assign(fused=(1 - pairs["similarity"]).astype("float32"))


def test_each_score_keeps_its_own_column_and_every_threshold_reads_the_one_in_force(ws, monkeypatch):
    from leakcore import checks
    from leakcore.export import ExportPolicy

    monkeypatch.setattr(scores, "_load", lambda: {"similarity": RawSimilarity, "fused": _OneMinus})
    raw = leakage.load_pairs(ws)
    assert raw.attrs["score"] == "similarity" and (raw["score"] == raw["similarity"]).all() and "fused" not in raw
    ws.set_score("fused")
    hard, soft = 0.9, 0.5
    ws.set_thresholds(hard, soft, score="fused")
    pairs = leakage.load_pairs(ws)
    assert pairs.attrs["score"] == "fused" and "raw_similarity" not in pairs
    pd.testing.assert_series_equal(pairs["similarity"], raw["similarity"])  # always the raw cosine
    assert (pairs["score"] == pairs["fused"]).all() and not (pairs["fused"] == pairs["similarity"]).all()
    assert leakage.load_pairs(ws, raw=True).attrs["score"] == "similarity"

    def expected(p):
        return set(p.loc[p["fused"] >= soft, "eval_item_id"])

    degrees = leakage.with_degrees(pairs, hard, soft)
    assert (degrees["auto_degree"] == leakage.degree_of(pairs["fused"], hard, soft)).all()
    cross = pairs[~pairs["within"]]
    overall = leakage.rates(ws).query("train_split == @leakage.ALL_SOURCES").set_index("eval_split")
    assert overall["soft"].sum() == len(expected(cross)) > 0
    best = leakage.best_similarity(pairs).set_index("eval_item_id")["train"].dropna()
    assert best.to_dict() == pytest.approx(cross.groupby("eval_item_id")["fused"].max().to_dict())
    flagged = leakage.flagged_items(ws)
    assert set(flagged.loc[flagged["degree"] != leakage.NONE, "eval_item_id"]) == expected(cross)

    check = checks.get_check("similarity")
    inputs = checks.CheckInputs(hard, soft)
    found = check.findings(ws, inputs)
    assert set(found["eval_item_id"]) == expected(pairs) and (found["score"] >= soft).all()
    q = check.review_rows(ws, inputs)  # the queue's terms: the score in force, the raw one beside it
    assert (q["similarity"] == q["fused"]).all() and (q["raw_similarity"] == 1 - q["fused"]).all()
    assert set(q.loc[q["degree"] != review.BORDERLINE, "eval_item_id"]) == expected(pairs)
    gone = check.removals(ws, "a/test", inputs, ExportPolicy("soft"))
    a = cross[cross["eval_split"] == "a/test"]
    assert set(gone["item_id"]) == expected(a)
    best_a = a.groupby("eval_item_id")["fused"].max()
    assert gone.set_index("item_id")["similarity"].to_dict() == pytest.approx(best_a[list(gone["item_id"])].to_dict())


def test_load_pairs_finds_every_score_whatever_was_imported_first(ws):
    """A fresh interpreter that imports only leakcore.leakage: the fused score is found (here it has no model,
    so the error says to fit one, not that no module provides it)."""
    import subprocess
    import sys
    from pathlib import Path

    ws.set_score("fused")
    code = ("import sys\nfrom leakcore import leakage\nfrom leakcore.errors import ThresholdsUncalibrated\n"
            "from leakcore.project import Workspace\n"
            "try:\n    leakage.load_pairs(Workspace.open(sys.argv[1]))\n"
            "except ThresholdsUncalibrated as exc:\n    print('uncalibrated:', exc)\n"
            "print('api imported' if 'leakcore.api' in sys.modules else 'api not imported')\n")
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code, str(ws.path)], capture_output=True, text=True, cwd=root,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "uncalibrated: the workspace scores pairs by the fused score" in out.stdout
    assert "api not imported" in out.stdout


def test_the_decisions_roc_reads_the_score_in_force():
    from leakcore import calibrate

    n = calibrate.MIN_DECISIONS_FOR_ROC
    pairs = pd.DataFrame({"eval_item_id": [f"e{i}" for i in range(n)], "train_item_id": [f"t{i}" for i in range(n)],
                          "similarity": [0.5] * n, "score": [i / n for i in range(n)]})
    decisions = pairs[["eval_item_id", "train_item_id"]].assign(decision=["hard"] * (n // 2) + ["not_leak"] * (n - n // 2))
    s, y = calibrate.decision_scores(pairs, decisions)
    assert sorted(s) == sorted(pairs["score"]) and y.sum() == n // 2
    s, _ = calibrate.decision_scores(pairs.drop(columns="score"), decisions)  # a table with the raw score only
    assert (s == 0.5).all()
