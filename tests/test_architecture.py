"""The architecture as a spec: one-way imports, the facade, the registries, strict options, errors in users' words."""
import ast
import graphlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import leakcore
from leakcore import catalog, checks, formats
from leakcore.api import ImpactRequest, LeakSource, Project
from leakcore.cli import main
from leakcore.embed import EmbeddingCache, shard_name
from leakcore.encoders import create_encoder, encoder_options, get_spec, list_encoders
from leakcore.errors import EncoderOptionError, LeakcoreError, ThresholdsUncalibrated, UnknownName, UnknownSplit
from leakcore.scan import EmbedJob, SearchJob
from leakcore.schema import Decision, SplitId

from conftest import make_folder_dataset, photo

PACKAGE = Path(leakcore.__file__).parent
MODULES = sorted(
    ".".join(("leakcore",) + p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
    for p in PACKAGE.rglob("*.py")
)


def _imports(path: Path) -> set[str]:
    """Every leakcore module a file imports, at the top or deferred inside a function."""
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("leakcore")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("leakcore"):
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES}
    return out


def test_imports_point_one_way():
    """No cycle among leakcore's modules, deferred imports included (an edge to the bare package, which Python
    initialises first anyway, is not a dependency)."""
    graph = {}
    for p in PACKAGE.rglob("*.py"):
        name = ".".join(("leakcore",) + p.relative_to(PACKAGE).with_suffix("").parts).removesuffix(".__init__")
        graph[name] = {m for m in _imports(p) if m != "leakcore" and m != name and m in MODULES}
    graph["leakcore"] = set()  # its lazy __getattr__ (Project) points down into api
    order = list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a cycle
    assert order.index("leakcore.errors") < order.index("leakcore.project") < order.index("leakcore.api")


def test_every_module_imports_alone_and_the_core_never_imports_streamlit():
    code = ("import importlib, sys\n"
            f"for m in {MODULES!r}:\n"
            "    for k in [k for k in sys.modules if k.startswith('leakcore')]: del sys.modules[k]\n"
            "    importlib.import_module(m)\n"
            "assert 'streamlit' not in sys.modules, 'leakcore imported streamlit'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


FACADE = {"leakcore.api", "leakcore.errors", "leakcore.schema"}  # all the dashboard may import of leakcore
DASHBOARD = [PACKAGE.parent / "app.py", *sorted((PACKAGE.parent / "ui").glob("*.py")),
             *sorted((PACKAGE.parent / "pages").glob("*.py"))]


def _leakcore_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every leakcore import in a file, at the top or deferred, `from leakcore import x` as
    leakcore.x."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "leakcore"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "leakcore":
            if node.module == "leakcore":
                out += [(node.lineno, f"leakcore.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return out


def test_dashboard_imports_only_the_facade():
    """app.py, ui/ and pages/ reach leakcore through leakcore.api (errors and schema types aside): every
    orchestration is the facade's, so the CLI can do what a page does."""
    assert len(DASHBOARD) > 10
    offenders = [f"{p.relative_to(PACKAGE.parent)}:{line} imports {m}" for p in DASHBOARD
                 for line, m in _leakcore_imports(p) if m not in FACADE]
    assert offenders == [], "\n".join(offenders)
    from leakcore import api, demo

    assert api.DEMO_TRUTH == demo.TRUTH_NAME  # the demo's planted pairs, read by the facade for the Home page


def test_the_dashboard_import_rule_catches_deferred_and_aliased_imports(tmp_path):
    bad = tmp_path / "page.py"
    bad.write_text("import leakcore.api\nfrom leakcore import api, errors\n"
                   "def f():\n    from leakcore import review as r\n    import leakcore.leakage\n")
    assert [m for _, m in _leakcore_imports(bad) if m not in FACADE] == ["leakcore.review", "leakcore.leakage"]


def test_unknown_encoder_option_is_an_error_naming_the_valid_ones():
    with pytest.raises(EncoderOptionError, match=r"no option 'inptu_size'.*valid options: weights, input_size"):
        create_encoder("sscd-distilled", inptu_size=3)
    with pytest.raises(EncoderOptionError, match="valid options: input_size"):
        create_encoder("phash", weights="x.onnx")
    assert create_encoder("phash", input_size=None).spec.input_size == get_spec("phash").input_size  # None keeps
    for row in list_encoders():
        assert row["options"] == encoder_options(row["name"])


def test_uncalibrated_encoders_carry_no_borrowed_thresholds(tmp_path, capsys):
    for name in ("dinov2-vitb14", "resnet152"):
        spec = get_spec(name)
        assert not spec.calibrated and spec.hard_threshold is None and "calibrate" in spec.thresholds_from
    ws = Project.create(tmp_path / "w", encoder="dinov2-vitb14")
    with pytest.raises(ThresholdsUncalibrated, match="no calibrated thresholds"):
        ws.thresholds()
    assert ws.thresholds_or_none() is None
    ws.set_thresholds(0.9, 0.8)
    assert tuple(ws.thresholds()) == (0.9, 0.8) and ws.thresholds().source == "project"
    ws.config["thresholds"].clear()
    ws.save_config()
    assert main(["report", str(ws.path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "calibrate first: `leakcore calibrate" in err and "Traceback" not in err
    main(["encoders"])
    assert "dinov2-vitb14" in (out := capsys.readouterr().out) and "none yet, calibrate first" in out


def test_review_schema_error_reaches_the_terminal_as_one_line(tmp_path, capsys):
    ws = Project.create(tmp_path / "w", encoder="phash")
    with sqlite3.connect(ws.review_db) as conn:
        conn.execute("PRAGMA user_version = 99")
    assert main(["report", str(ws.path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "review.sqlite has schema 99" in err and "upgrade leakcore" in err


@pytest.mark.parametrize("suffix", [".tsv", ".json", ".jsonl", ".csv", ".parquet"])
def test_manifest_exports_in_its_own_format_and_reimports(tmp_path, suffix):
    root = tmp_path / "imgs"
    root.mkdir()
    rows = []
    for i in range(6):
        photo(i).save(root / f"{i}.png")
        rows.append({"path": f"{i}.png", "split": "test" if i < 3 else "train", "label": "ab"[i % 2], "id": f"k{i}"})
    df = pd.DataFrame(rows)
    src = tmp_path / f"manifest{suffix}"
    formats.write_table(df, src, suffix)
    ws = Project.create(tmp_path / "w", encoder="phash")
    ws.add("m", src, root=root)
    assert formats.detect_format(src) == "manifest"
    result = ws.export("m/test", ws.export_policy("none"))
    out = result.folder / src.name
    assert out in result.files
    back = catalog._read_manifest(out)  # read as its suffix says: a JSON Lines file under .tsv would fail here
    assert list(back.columns) == list(df.columns) and sorted(back["id"]) == ["k0", "k1", "k2"]
    ws2 = Project.create(tmp_path / "w2", encoder="phash")
    ws2.add("m", out, root=root)
    assert sorted(ws2.items()["key"]) == ["k0", "k1", "k2"]


def test_format_registry_is_the_one_list():
    assert formats.format_names() == ["embeddings", "cifar", "hf-parquet", "coco", "manifest", "folder"]
    with pytest.raises(UnknownName, match="valid formats: embeddings, cifar"):
        formats.get_format("zip")


def test_split_id_and_split_items(tmp_path):
    assert SplitId.parse("cifar10/test") == SplitId("cifar10", "test")
    assert str(SplitId("a", "b")) == "a/b" and SplitId("a", "b").file_name == "a~b"
    with pytest.raises(UnknownSplit, match="DATASET/SPLIT"):
        SplitId.parse("test")
    ws = Project.create(tmp_path / "w", encoder="phash")
    ws.add("d", make_folder_dataset(tmp_path / "d", n_train=3, n_test=2))
    assert [str(s) for s in ws.split_ids()] == ["d/test", "d/train"]
    assert len(ws.split_items("d/test")) == 2
    with pytest.raises(UnknownSplit, match="no eval split 'd/train'.*valid: d/test"):
        ws.split_items("d/train", role="eval")


def test_decision_enum_is_the_stored_word():
    assert [d.value for d in Decision] == ["hard", "soft", "not_leak", "unsure", "same_source"]
    assert Decision("not_leak").label == "not a leak" and Decision.HARD == "hard" and Decision.SOFT.confirms_leak
    with pytest.raises(LeakcoreError, match="decision must be one of hard, soft, not_leak, unsure, same_source"):
        Decision.parse("maybe")


def test_scan_plans_jobs_then_runs_them(tmp_path):
    ws = Project.create(tmp_path / "w", encoder="phash")
    ws.add("d", make_folder_dataset(tmp_path / "d", n_train=4, n_test=3, leaks=(0,)))
    plan = ws.plan_scan()
    names = [j.name for j in plan.jobs]
    assert names == ["embed d/test", "embed d/train", "search d/test -> d/train", "search d/test -> d/test"]
    assert all(not j.done for j in plan.jobs)
    assert not list((ws.path / "neighbors").rglob("*.parquet")) and not list((ws.path / "embeddings").rglob("*.npy"))
    result = ws.scan()
    assert result.pairs_searched == [("d/test", "d/train"), ("d/test", "d/test")]
    again = ws.plan_scan()
    assert all(j.done for j in again.jobs) and again.todo == []
    assert isinstance(again.jobs[0], EmbedJob) and isinstance(again.jobs[-1], SearchJob)
    photo(99).save(tmp_path / "d" / "test" / "cat" / "new.jpg")  # one new evaluation image
    ws.add("d", tmp_path / "d")
    todo = [j.name for j in ws.plan_scan().todo]
    assert todo == ["embed d/test", "search d/test -> d/train", "search d/test -> d/test"]


def test_embedding_shards_are_named_by_content(tmp_path):
    a = EmbeddingCache(tmp_path / "c", 4)
    b = EmbeddingCache(tmp_path / "c", 4)  # a second writer, e.g. on another machine, on the same folder
    a.add(["s1", "s2"], np.eye(4)[:2], [None, None])
    b.add(["s3"], np.eye(4)[2:3], [None])
    b.add(["s1", "s2"], np.eye(4)[:2], [None, None])  # the same images: the same name, the same vectors
    files = sorted(p.name for p in (tmp_path / "c").glob("shard-*.npy"))
    assert files == sorted({shard_name(["s1", "s2"]) + ".npy", shard_name(["s3"]) + ".npy"})
    fresh = EmbeddingCache(tmp_path / "c", 4)
    assert fresh.keys() == {"s1", "s2", "s3"} and np.allclose(fresh.get(["s3", "s1"]), np.eye(4)[[2, 0]])


def test_check_registry_and_findings(tmp_path):
    assert [c["name"] for c in checks.list_checks()] == ["similarity", "group", "temporal", "shortcut", "coverage"]
    assert checks.rate_check_names() == ["similarity", "group", "temporal"]  # coverage runs on request only
    with pytest.raises(UnknownName, match="valid checks: .*similarity"):
        checks.get_check("vibes")
    ws = Project.create(tmp_path / "w", encoder="phash")
    ws.add("d", make_folder_dataset(tmp_path / "d", n_train=5, n_test=3, leaks=(0, 1)))
    ws.scan()
    found = ws.findings("similarity")
    assert set(found["check"]) == {"similarity"} and found["reason"].str.contains("≥").all()
    pair = found.iloc[0]
    ws.decisions.decide(pair["eval_item_id"], pair["train_item_id"], Decision.NOT_LEAK, reviewer="a")
    after = ws.findings("similarity")
    assert len(after) == len(found) - 1  # a rejected pair is no finding
    rates = ws.rates()
    # no groups, no times in this workspace: only the similarity check has rates
    assert set(rates["check"]) == {"similarity"} and {"hard_rate", "soft_rate"} <= set(rates.columns)


def test_impact_request_names_its_choices(tmp_path):
    with pytest.raises(UnknownName, match="valid probes: knn1, knn20, clip"):
        ImpactRequest(probes=("svm",))
    with pytest.raises(LeakcoreError, match="needs its file"):
        ImpactRequest(leak_source=LeakSource.LIST)
