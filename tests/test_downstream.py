"""Downstream impact: subset maths with a known answer, interval coverage, input formats, mismatch errors."""
import json

import numpy as np
import pandas as pd
import pytest

from leakcore import downstream
from leakcore.ingest import add_dataset
from leakcore.downstream import LeakSets, PredictionsMismatch
from leakcore.project import Workspace
from leakcore.scan import scan

from conftest import make_folder_dataset


def known_correct():
    # 2 models x 10 items; items 0-3 leaked (soft), 0-1 also hard; items 0,1,2 have a same-label twin.
    ids = [f"d/test/{i}" for i in range(10)]
    a = [1, 1, 1, 1, 1, 0, 1, 0, 1, 0]
    b = [1, 1, 0, 1, 0, 0, 0, 1, 1, 0]
    return pd.DataFrame([a, b], index=["a", "b"], columns=ids).astype(bool), \
        LeakSets(frozenset(ids[:2]), frozenset(ids[:4]), frozenset(ids[:3]), "test")


def test_subset_maths_with_a_known_answer():
    correct, leaks = known_correct()
    t = downstream.impact(correct, leaks, n_random=200, seed=0).set_index(["model", "subset"])
    assert t.loc[("a", "full"), "accuracy"] == pytest.approx(0.7)
    assert t.loc[("a", "soft-leaked"), "accuracy"] == pytest.approx(1.0)
    assert t.loc[("a", "soft-leaked"), "gain"] == pytest.approx(0.3)
    assert t.loc[("a", "non-leaked"), "accuracy"] == pytest.approx(3 / 6)
    assert t.loc[("b", "hard-leaked"), "accuracy"] == pytest.approx(1.0)
    assert t.loc[("b", "soft-leaked"), "accuracy"] == pytest.approx(0.75)
    assert t.loc[("b", "soft-leaked, same label"), "n"] == 3
    assert t.loc[("b", "soft-leaked, same label"), "accuracy"] == pytest.approx(2 / 3)
    assert t.loc[("b", "soft-leaked, different label"), "accuracy"] == pytest.approx(1.0)
    row = t.loc[("a", "soft-leaked")]
    assert row["random_low"] <= row["random_mean"] <= row["random_high"]
    assert 0 < row["p_value"] <= 1


def test_random_interval_covers_the_truth_at_the_stated_rate():
    # Each random subset's accuracy should fall inside the 95% interval about 95% of the time.
    rng = np.random.default_rng(1)
    correct = pd.DataFrame(rng.random((1, 2000)) < 0.8, columns=[f"i{j}" for j in range(2000)], index=["m"])
    leaks = LeakSets(frozenset(), frozenset(f"i{j}" for j in range(100)), frozenset(), "t")
    t = downstream.impact(correct, leaks, n_random=2000, seed=3).set_index("subset")
    lo, hi = t.loc["soft-leaked", ["random_low", "random_high"]]
    fresh = np.array([correct.to_numpy()[0, rng.choice(2000, 100, replace=False)].mean() for _ in range(2000)])
    coverage = ((fresh >= lo) & (fresh <= hi)).mean()
    assert 0.93 <= coverage <= 0.97
    assert t.loc["soft-leaked", "p_value"] > 0.05  # a random set is not special


def test_leaked_set_that_is_always_right_is_significant():
    rng = np.random.default_rng(2)
    c = rng.random((1, 1000)) < 0.7
    c[0, :50] = True
    correct = pd.DataFrame(c, columns=[f"i{j}" for j in range(1000)], index=["m"])
    t = downstream.impact(correct, LeakSets(frozenset(), frozenset(f"i{j}" for j in range(50)), frozenset(), "t"),
                          n_random=999, seed=0).set_index("subset")
    assert t.loc["soft-leaked", "p_value"] <= 0.002


@pytest.fixture
def ws(tmp_path):
    root = make_folder_dataset(tmp_path / "d", n_train=6, n_test=4, leaks=(0, 1))
    ws = Workspace.create(tmp_path / "w", encoder="phash")
    add_dataset(ws, "d", root)
    scan(ws)
    return ws


def test_each_prediction_format(ws, tmp_path):
    items = downstream.eval_items(ws, "d/test")
    labels = list(items["label"])
    ids = list(items["item_id"])
    (tmp_path / "list.json").write_text(json.dumps(labels))
    pd.DataFrame({"item_id": ids, "predicted": labels}).to_csv(tmp_path / "p.csv", index=False)
    pd.DataFrame({"key": list(items["key"]), "prediction": labels}).to_parquet(tmp_path / "p.parquet")
    pd.DataFrame({"path": list(items["uri"]), "pred": labels}).to_json(tmp_path / "p.jsonl", orient="records", lines=True)
    for f in ("list.json", "p.csv", "p.parquet", "p.jsonl"):
        preds = downstream.load_predictions(tmp_path / f, items)
        assert list(preds) == labels, f
    (tmp_path / "ints.json").write_text(json.dumps([0 if l == "cat" else 1 for l in labels]))
    assert list(downstream.load_predictions(tmp_path / "ints.json", items)) == labels  # classes in sorted order


def test_mismatches_are_refused_with_what_did_not_match(ws, tmp_path):
    items = downstream.eval_items(ws, "d/test")
    (tmp_path / "short.json").write_text(json.dumps(["cat"]))
    with pytest.raises(PredictionsMismatch, match="1 predictions but the split has 4 images") as err:
        downstream.load_predictions(tmp_path / "short.json", items)
    assert "a column key" in err.value.for_terminal() and "a column key" in err.value.for_page()  # what to do
    pd.DataFrame({"item_id": ["nope"], "predicted": ["cat"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(PredictionsMismatch, match="keys match no item"):
        downstream.load_predictions(tmp_path / "bad.csv", items)
    pd.DataFrame({"item_id": list(items["item_id"])[:2], "predicted": ["cat", "dog"]}).to_csv(tmp_path / "part.csv", index=False)
    with pytest.raises(PredictionsMismatch, match="2 items of the split have no prediction"):
        downstream.load_predictions(tmp_path / "part.csv", items)
    pd.DataFrame({"foo": [1]}).to_csv(tmp_path / "cols.csv", index=False)
    with pytest.raises(PredictionsMismatch, match="needs a key column"):
        downstream.load_predictions(tmp_path / "cols.csv", items)


def test_predictions_and_a_leak_list_of_a_whole_set_serve_a_subset_of_it(ws, tmp_path):
    """A cleaned split or a sample of a benchmark: the whole test set's predictions and the whole list (ciFAIR's 286
    pairs) were refused for naming images not in the split; they are left out, and said."""
    items = downstream.eval_items(ws, "d/test")
    ids = list(items["item_id"])
    pd.DataFrame({"item_id": ids + ["d/test/cat/elsewhere.jpg"], "predicted": ["cat"] * (len(ids) + 1)}).to_csv(
        tmp_path / "all.csv", index=False)
    notes = []
    preds = downstream.load_predictions(tmp_path / "all.csv", items, notes=notes)
    assert list(preds.index) == ids and notes == ["all.csv: 1 of its 5 predictions are of images not in the split; left out"]
    pd.DataFrame({"TestID": ["cat/test_000.jpg", "cat/gone.jpg"], "TrainID": ["cat/train_000.jpg", "cat/train_002.jpg"]}
                 ).to_csv(tmp_path / "whole.csv", index=False)
    sets = downstream.imported_leak_sets(ws, "d/test", tmp_path / "whole.csv")
    assert sets.soft == {"d/test/cat/test_000.jpg"} and "1 of its 2 pairs" in sets.notes[0]


def test_leak_sets_from_flags_decisions_and_an_imported_list(ws, tmp_path):
    from leakcore import review

    leaks = downstream.leak_sets(ws, "d/test")
    assert leaks.hard == {"d/test/cat/test_000.jpg", "d/test/dog/test_001.jpg"} == leaks.soft == leaks.same_label
    review.decide(ws, "d/test/cat/test_000.jpg", "d/train/cat/train_000.jpg", "not_leak", reviewer="r")
    assert downstream.leak_sets(ws, "d/test").soft == {"d/test/dog/test_001.jpg"}
    assert len(downstream.leak_sets(ws, "d/test", use_decisions=False).soft) == 2
    pd.DataFrame({"TestID": ["cat/test_000.jpg"], "TrainID": ["dog/train_001.jpg"]}).to_csv(tmp_path / "l.csv", index=False)
    imported = downstream.imported_leak_sets(ws, "d/test", tmp_path / "l.csv")
    assert imported.soft == {"d/test/cat/test_000.jpg"} and not imported.same_label
    # keys relative to the dataset root (with the split prefix) or full item ids read as well
    pd.DataFrame({"TestID": ["test/cat/test_000.jpg", "d/test/dog/test_001.jpg"],
                  "TrainID": ["train/cat/train_000.jpg", "d/train/dog/train_001.jpg"]}).to_csv(tmp_path / "p.csv", index=False)
    assert downstream.imported_leak_sets(ws, "d/test", tmp_path / "p.csv").soft == {
        "d/test/cat/test_000.jpg", "d/test/dog/test_001.jpg"}
    pd.DataFrame({"TestID": ["val/cat/x.jpg"], "TrainID": ["train/cat/train_000.jpg"]}).to_csv(tmp_path / "n.csv", index=False)
    with pytest.raises(PredictionsMismatch, match="tried each key as written, without a leading 'test/'"):
        downstream.imported_leak_sets(ws, "d/test", tmp_path / "n.csv")


def test_knn_probe_remembers_leaked_items(ws):
    preds = downstream.knn_probe(ws, "d/test", "d/train", k=1)
    assert preds["d/test/cat/test_000.jpg"] == "cat" and preds["d/test/dog/test_001.jpg"] == "dog"
    assert len(downstream.knn_probe(ws, "d/test", "d/train", k=20)) == 4


def test_cli_impact(ws, tmp_path, capsys):
    from leakcore.cli import main

    items = downstream.eval_items(ws, "d/test")
    (tmp_path / "m_predictions.json").write_text(json.dumps(list(items["label"])))
    assert main(["impact", str(ws.path), "--predictions", str(tmp_path / "m_predictions.json"), "--probe", "knn1",
                 "--random", "50", "--csv", str(tmp_path / "out.csv")]) == 0
    out = capsys.readouterr().out
    assert "soft-leaked" in out and "probe-knn1" in out
    assert "mean over 1 model (the probe knn1 shown apart)" in out and "100.00" in out  # in %, as the page shows
    assert next(x for x in out.splitlines() if x.split()[:1] == ["full"]).split()[1] == "4"  # a count, not 4.0000
    assert set(pd.read_csv(tmp_path / "out.csv")["model"]) == {"m", "probe-knn1"}
    (tmp_path / "bad.json").write_text("[1]")
    assert main(["impact", str(ws.path), "--predictions", str(tmp_path / "bad.json")]) == 2


def test_clip_zero_shot_probe_builds_the_real_model_with_random_weights(ws):
    # RANDOM weights: checks the mechanics (prompts, image batches, class names), not accuracy.
    preds = downstream.clip_zero_shot(ws, "d/test", random_weights=True)
    assert len(preds) == 4 and set(preds) <= {"cat", "dog"}


def test_clip_zero_shot_without_weights_says_how_to_get_them(ws):
    from leakcore.encoders import WeightsUnavailable

    with pytest.raises(WeightsUnavailable, match="checkpoint /nonexistent/clip.pt does not exist"):
        downstream.clip_zero_shot(ws, "d/test", weights="/nonexistent/clip.pt")


def test_a_knn_probe_on_a_test_set_without_a_training_split_remembers_the_one_that_covers_its_labels(ws, tmp_path):
    """A test set kept apart from its training data (a dataset of one split) was refused ("the knn1 probe needs a
    training split of planted") with no word on what to do: the probe remembers the workspace's one training split
    that has all its labels, named with the model; where several have them, the error says what to do instead."""
    import shutil

    from leakcore.errors import InvalidInput

    root = make_folder_dataset(tmp_path / "p", n_train=2, n_test=4, leaks=(0, 1))
    shutil.rmtree(root / "train")
    add_dataset(ws, "planted", root)
    scan(ws)
    preds = downstream.probe_predictions(ws, "planted/test", ["knn1"])
    assert list(preds) == ["probe-knn1 (d/train)"] and len(preds["probe-knn1 (d/train)"]) == 4
    assert list(downstream.probe_predictions(ws, "d/test", ["knn1"])) == ["probe-knn1"]  # its own: no name added
    add_dataset(ws, "other", make_folder_dataset(tmp_path / "o", n_train=4, n_test=1, seed0=700))
    with pytest.raises(InvalidInput, match="2 training splits of other datasets have its labels") as err:
        downstream.probe_predictions(ws, "planted/test", ["knn1"])
    assert "--predictions" in err.value.for_terminal() and "upload" in err.value.for_page()


def test_the_mean_over_models_has_its_own_interval_and_p_value():
    """A new user's 30 models scored 99.6% on average on the leaked images, above the averaged interval's top of
    97.6%, at an averaged p of 0.07: the mean row's interval and p are those of the mean over models of each draw."""
    rng = np.random.default_rng(5)
    c = rng.random((30, 1000)) < rng.uniform(0.6, 0.95, size=(30, 1))
    c[:, :60] = rng.random((30, 60)) < 0.995  # leaked: nearly always right, for every model
    correct = pd.DataFrame(c, columns=[f"i{j}" for j in range(1000)], index=[f"m{k}" for k in range(30)])
    t = downstream.impact(correct, LeakSets(frozenset(), frozenset(f"i{j}" for j in range(60)), frozenset(), "t"),
                          n_random=500, seed=0)
    row = downstream.summary(t).set_index("subset").loc["soft-leaked"]
    assert row["accuracy"] > row["random_high"] and row["p_value"] <= 2 / 501
    assert row["p_value"] < t[t["subset"] == "soft-leaked"]["p_value"].mean()


def test_the_mean_over_models_leaves_the_probes_apart():
    """A new user's "mean over models" of 30 classifiers averaged in the k-NN probe (it remembers by construction):
    92.96% became 91.72% on the full set. The mean is over the real models, the probe shown beside them."""
    rng = np.random.default_rng(1)
    c = rng.random((3, 200)) < 0.9
    c[2] = False  # the probe: always wrong, so that averaging it in shows
    c[2, :20] = True  # ... but right on the leaked images
    correct = pd.DataFrame(c, columns=[f"i{j}" for j in range(200)], index=["a", "b", "probe-knn1"])
    leaks = LeakSets(frozenset(), frozenset(f"i{j}" for j in range(20)), frozenset(), "t")
    assert downstream.mean_models(correct.index) == ["a", "b"]
    assert downstream.mean_models(["probe-knn1"]) == ["probe-knn1"]  # the probes alone: their mean
    t = downstream.impact(correct, leaks, n_random=100, seed=0, mean_over=["a", "b"])
    full = downstream.summary(t).set_index("subset").loc["full", "accuracy"]
    assert full == pytest.approx(c[:2].mean())
    assert set(t.loc[~t["in_mean"], "model"]) == {"probe-knn1"}  # still in the table, per model
    every = downstream.summary(downstream.impact(correct, leaks, n_random=100, seed=0)).set_index("subset")
    assert every.loc["full", "accuracy"] == pytest.approx(c.mean())


def test_many_prediction_files_with_the_same_part_left_out_are_said_once():
    notes = [f"m{i}.json: 8000 of its 10000 predictions are of images not in the split; left out" for i in range(30)]
    said = downstream.said_once(notes + ["x.csv: 1 of its 5 predictions are of images not in the split; left out"])
    assert said == ("30 prediction files: 8000 of each one's 10000 predictions are of images not in the split; left out",
                    "x.csv: 1 of its 5 predictions are of images not in the split; left out")


def test_an_accuracy_outside_the_interval_is_significant_both_ways():
    """Equal-tailed: a model at 100% above an interval ending at 98.7% had p 0.06 when draws as far below the mean
    counted too (near 100% they reach further below than above)."""
    rng = np.random.default_rng(6)
    c = rng.random((1, 2000)) < 0.95
    c[0, :77] = True  # the new user's case: 77 leaked images, all right, the interval ending at 76 of 77
    correct = pd.DataFrame(c, columns=[f"i{j}" for j in range(2000)], index=["m"])
    t = downstream.impact(correct, LeakSets(frozenset(), frozenset(f"i{j}" for j in range(77)), frozenset(), "t"),
                          n_random=999, seed=1).set_index("subset").loc["soft-leaked"]
    assert t["accuracy"] > t["random_high"] and t["p_value"] <= 0.05  # was 0.07


def test_an_imported_list_on_a_split_of_another_dataset_finds_its_training_keys(ws, tmp_path):
    """A cleaned split added as a dataset of its own has no training split: the list's training keys are looked up
    in every training split (all six pairs were counted as "different label"), and a made-up key is refused."""
    clean = make_folder_dataset(tmp_path / "clean", n_train=0, n_test=4, leaks=())
    add_dataset(ws, "clean", clean)
    test_items = downstream.eval_items(ws, "clean/test")
    train = ws.items().query("dataset == 'd' and split == 'train'")
    pairs = pd.DataFrame({"eval_key": test_items["key"].iloc[:2].to_numpy(), "train_key": train["key"].iloc[:2].to_numpy()})
    pairs.to_csv(tmp_path / "list.csv", index=False)
    sets = downstream.imported_leak_sets(ws, "clean/test", tmp_path / "list.csv")
    labels = ws.items().set_index("item_id")["label"]
    expected = {e for e, t in zip(test_items["item_id"].iloc[:2], train["item_id"].iloc[:2]) if labels[e] == labels[t]}
    assert expected and sets.same_label == expected
    pairs.assign(train_key=["nope.jpg", train["key"].iloc[0]]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(PredictionsMismatch, match="training keys are in no training split"):
        downstream.imported_leak_sets(ws, "clean/test", tmp_path / "bad.csv")
