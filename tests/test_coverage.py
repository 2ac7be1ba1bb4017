"""Coverage audit: the four set metrics against a brute-force reference and on sets with known modes,
per-image scores, spectra, the CLI verb and the page."""
import json

import numpy as np
import pytest
from PIL import Image

from leakcore import coverage
from leakcore.api import Project
from leakcore.cli import main
from leakcore.coverage import ImageSet
from leakcore.errors import InvalidInput

from conftest import finish_jobs, make_folder_dataset, open_page

def _clusters(n_per: int, modes, seed: int, dim: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).normal(size=(10, dim))
    x = np.vstack([centres[m] + 0.25 * rng.normal(size=(n_per, dim)) for m in modes])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _brute_force(a, b, k):
    """The papers' definitions, written out on full distance matrices."""
    def dist(x, y):
        return np.sqrt(np.maximum(((x[:, None, :] - y[None, :, :]) ** 2).sum(-1), 0))
    daa, dbb, dba = dist(a, a), dist(b, b), dist(b, a)
    ra = np.sort(daa, axis=1)[:, k]  # column 0 is the point itself
    rb = np.sort(dbb, axis=1)[:, k]
    inside_a = dba <= ra[None, :] + 1e-6
    precision = inside_a.any(axis=1).mean()
    recall = (dba.T <= rb[None, :] + 1e-6).any(axis=1).mean()
    density = inside_a.sum(axis=1).mean() / k
    cov = (dba.min(axis=0) <= ra + 1e-6).mean()
    return {"precision": precision, "recall": recall, "density": density, "coverage": cov}


def test_metrics_equal_the_definitions(monkeypatch):
    a, b = _clusters(30, range(6), 0), _clusters(25, [0, 1, 2, 7], 1)
    real = coverage._ball_stats
    monkeypatch.setattr(coverage, "_ball_stats", lambda q, c, r: real(q, c, r, query_block=7, centre_block=5))
    metrics, _ = coverage.set_metrics(a, b, k=5, n_resamples=0)
    got = dict(zip(metrics["metric"], metrics["value"]))
    want = _brute_force(a, b, 5)
    for name in want:
        assert got[name] == pytest.approx(want[name], abs=1e-9), name


def test_fewer_modes_lower_recall_not_precision():
    a = _clusters(60, range(10), 0)
    same, _ = coverage.set_metrics(a, _clusters(60, range(10), 1), k=5, n_resamples=200)
    fewer, _ = coverage.set_metrics(a, _clusters(86, range(7), 2), k=5, n_resamples=200)
    s, f = same.set_index("metric")["value"], fewer.set_index("metric")["value"]
    assert s["precision"] > 0.8 and s["recall"] > 0.8 and s["coverage"] > 0.9 and 0.8 < s["density"] < 1.2
    # 7 of 10 modes: recall and coverage fall to about 0.7, precision stays where it was
    assert f["recall"] < 0.7 * s["recall"] + 0.05 and f["coverage"] < 0.75
    assert f["precision"] > s["precision"] - 0.05
    lo, hi = fewer.set_index("metric").loc["recall", ["low", "high"]]
    assert lo <= f["recall"] <= hi and hi - lo < 0.2


def test_spectrum_sees_upsampling():
    rng = np.random.default_rng(0)
    sharp = rng.normal(128, 40, size=(128, 128)).clip(0, 255).astype(np.uint8)
    upsampled = np.asarray(Image.fromarray(sharp).resize((32, 32), Image.Resampling.BOX)
                           .resize((128, 128), Image.Resampling.BICUBIC), dtype=np.float32)
    s1, s2 = coverage.radial_power_spectrum(sharp), coverage.radial_power_spectrum(upsampled)
    assert s1.shape == (64,) and (s1[40:] - s2[40:]).mean() > 1.0  # orders of magnitude less fine detail
    assert abs(s1[2] - s2[2]) < 0.5  # the coarse structure is the same


@pytest.fixture
def ws(tmp_path):
    ws = Project.create(tmp_path / "w", encoder="phash")
    ws.add("d", make_folder_dataset(tmp_path / "d", n_train=14, n_test=8, leaks=(0, 1, 2)))
    return ws


def test_sets_and_filters(ws):
    items = ws.workspace.items()
    assert len(ImageSet("d").select(items)) == 22 and len(ImageSet("d/test").select(items)) == 8
    assert set(ImageSet("d", "label == 'cat'").select(items)["label"]) == {"cat"}
    assert len(ImageSet("d", "uri.str.contains('/train/')").select(items)) == 14
    with pytest.raises(InvalidInput, match="valid sets: d, d/test, d/train"):
        ImageSet("e").select(items)
    with pytest.raises(InvalidInput, match="names `colour`, not a column; columns: .*item_id"):
        ImageSet("d", "colour == 'red'").select(items)
    assert len(ImageSet("d", "label in ['cat'] and not uri.str.endswith('.png') or label.isna()").select(items)) == 11


def test_a_filter_runs_no_code(ws, tmp_path):
    """A filter typed on the Coverage page is a comparison, never Python: pandas' query would run any of these."""
    items = ws.workspace.items()
    marker = tmp_path / "ran"
    for where in (f"label.__class__.__init__.__globals__['sys'].modules['os'].system('touch {marker}') == 0",
                  f"@pd.io.common.os.system('touch {marker}') == 0", "label.str.startswith('a').__class__ == 0",
                  f"label == __import__('os').system('touch {marker}')", "label.str.cat(label) == 'x'",
                  "label[0] == 'c'", "(lambda: 1)() == 1", "label.str.lower().str.contains('c')",
                  "uri.str.contains('^(.+)+Z', flags=2)"):  # Python's backtracking re: minutes on one path
        with pytest.raises(InvalidInput, match="filter"):
            ImageSet("d", where).select(items)
    assert not marker.exists()


def test_audit_and_its_check(ws):
    result = ws.audits.coverage("d/train", "d/test", k=3, bootstrap=0)
    assert result.settings["a_images"] == 14 and len(result.b_scores) == 8
    leaked = result.b_scores.set_index("item_id").loc[[f"d/test/cat/test_000.jpg", "d/test/dog/test_001.jpg"]]
    assert (leaked["nearest_similarity"] > 0.99).all() and leaked["inside_other"].all()  # copies sit inside
    assert set(result.map["set"]) == {"A", "B"} and result.map["item_id"].str.startswith("d/").all()
    found = ws.checks.findings("coverage")  # every test image sits inside here: see the next test for findings
    assert set(found["eval_item_id"]) <= set(result.b_scores["item_id"]) and (found["check"] == "coverage").all()
    assert "coverage" not in set(ws.checks.rates()["check"])
    spectral = ws.audits.spectra("d/train", "d/test", size=32)
    assert len(spectral.frequencies) == 16 and len(spectral.b_scores) == 8


def test_the_check_records_the_evaluation_images_outside_the_training_manifold(tmp_path):
    """A tight training manifold (one picture per class at eight JPEG qualities): a test copy of it sits inside, six
    other pictures sit outside, and the coverage check records exactly those six, each with its reason."""
    from conftest import photo

    root = tmp_path / "d"
    for i in range(8):
        for cls, seed in (("cat", 1), ("dog", 2)):
            (root / "train" / cls).mkdir(parents=True, exist_ok=True)
            photo(seed, (64, 48)).save(root / "train" / cls / f"t{i}.jpg", quality=60 + 5 * i)
    (root / "test" / "cat").mkdir(parents=True)
    photo(1, (64, 48)).save(root / "test" / "cat" / "same.jpg", quality=90)
    new = [f"d/test/cat/new{seed}.jpg" for seed in range(3, 9)]
    for seed in range(3, 9):
        photo(seed, (64, 48)).save(root / "test" / "cat" / f"new{seed}.jpg", quality=90)
    ws = Project.create(tmp_path / "w", encoder="phash")
    ws.add("d", root)
    result = ws.audits.coverage("d/train", "d/test", bootstrap=0)  # k = 5, as the check
    outside = result.b_scores[~result.b_scores["inside_other"]]
    assert sorted(outside["item_id"]) == new
    found = ws.checks.findings("coverage")
    assert sorted(found["eval_item_id"]) == new and (found["check"] == "coverage").all()
    assert found["reason"].str.contains("outside the training manifold").all() and (found["degree"] == "outside").all()
    assert "coverage" not in set(ws.checks.rates()["check"])  # not a leak: no rate


def test_cli_coverage_json(ws, capsys):
    assert main(["coverage", str(ws.path), "--a", "d/train", "--b", "d/test", "--k", "3", "--bootstrap", "50",
                 "--spectra", "--size", "32", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["metric"] for m in data["metrics"]] == ["precision", "recall", "density", "coverage"]
    assert all(m["low"] <= m["value"] <= m["high"] for m in data["metrics"])
    assert len(data["spectra"]["deviation"]) == 16
    assert main(["coverage", str(ws.path), "--a", "nope", "--b", "d/test"]) == 2
    assert "valid sets" in capsys.readouterr().err


def test_coverage_page(ws, monkeypatch, tmp_path):
    at = open_page(ws.path, "pages/6_Coverage.py", tmp_path, monkeypatch)
    at.selectbox(key="cov_A").set_value("d/train")
    at.selectbox(key="cov_B").set_value("d/test")
    at.number_input(key="cov_k").set_value(3)
    finish_jobs(at.button(key="cov_run").click().run())
    assert not at.exception, at.exception
    assert [m.label for m in at.metric] == ["precision", "recall", "density", "coverage"]
    assert any("least like A" in h.value for h in at.subheader)
    at.text_input(key="cov_B_where").set_value("colour == 1")
    finish_jobs(at.button(key="cov_run").click().run())
    assert not at.exception and any("not a column" in e.value for e in at.error)
    # another page and back: the choices the last result was measured with are still there (a new user found the
    # filter empty and the spectra off under a result measured with both)
    at.text_input(key="cov_B_where").set_value("").run()
    at.toggle(key="cov_spectra_on").set_value(True).run()
    at.switch_page("pages/3_Heatmaps.py").run()
    at.switch_page("pages/6_Coverage.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="cov_A").value == "d/train" and at.selectbox(key="cov_B").value == "d/test"
    assert at.number_input(key="cov_k").value == 3 and at.toggle(key="cov_spectra_on").value
