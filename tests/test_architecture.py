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


def test_the_facade_opens_without_torch_or_scikit_learn():
    """The dashboard and the CLI import the facade at start; torch and scikit-learn are imported where an embedding,
    an alignment, a calibration or the fused score needs them (together about 4 s of every server's and every
    command's start on 2 cores)."""
    code = ("import sys, leakcore.api, leakcore.cli\n"
            "heavy = [m for m in ('torch', 'sklearn') if m in sys.modules]\n"
            "assert not heavy, f'the facade imported {heavy}'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_an_encoder_on_a_machine_without_a_gpu_imports_torch_only_to_embed():
    """Without a GPU's device files the device is the CPU, known without torch: the Impact page's k-NN probe reads
    stored embeddings through an encoder and never embedded anything (2.8 s for torch's import on the demo against
    0.2 s for the probe). Where a GPU's files are, torch decides."""
    code = ("import os, sys\n"
            "import leakcore.encoders as encoders\n"
            "if sys.platform.startswith('linux') and not any(map(os.path.exists, encoders._GPU_MARKS)):\n"
            "    enc = encoders.create_encoder('sscd-distilled')\n"
            "    assert enc.device == 'cpu' and 'torch' not in sys.modules, 'torch imported to choose the device'\n"
            "encoders._GPU_MARKS = (encoders.__file__,)  # a machine that shows a GPU's driver\n"
            "encoders.default_device()\n"
            "assert 'torch' in sys.modules, 'a GPU driver is there and torch was not asked'\n")
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


def test_the_cli_orchestrates_nothing_itself():
    """leakcore/cli.py formats what the facade returns: it imports leakcore.api (and errors, schema), and the demo
    builder, which sits above the facade."""
    offenders = [f"leakcore/cli.py:{line} imports {m}" for line, m in _leakcore_imports(PACKAGE / "cli.py")
                 if m not in FACADE | {"leakcore.demo"}]
    assert offenders == [], "\n".join(offenders)


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
        ws.scores.thresholds()
    assert ws.scores.thresholds(required=False) is None
    ws.configure(thresholds=(0.9, 0.8))
    assert tuple(ws.scores.thresholds()) == (0.9, 0.8) and ws.scores.thresholds().source == "project"
    ws.workspace.config["thresholds"].clear()
    ws.workspace.save_config()
    assert main(["report", str(ws.path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "calibrate first: `leakcore calibrate" in err and "Traceback" not in err
    main(["encoders"])
    assert "dinov2-vitb14" in (out := capsys.readouterr().out) and "none yet, calibrate first" in out


def test_review_schema_error_reaches_the_terminal_as_one_line(tmp_path, capsys):
    ws = Project.create(tmp_path / "w", encoder="phash")
    with sqlite3.connect(ws.workspace.review_db) as conn:
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
    result = ws.exports.write("m/test", ws.exports.policy("none"))
    out = result.folder / src.name
    assert out in result.files
    back = catalog._read_manifest(out)  # read as its suffix says: a JSON Lines file under .tsv would fail here
    assert list(back.columns) == list(df.columns) and sorted(back["id"]) == ["k0", "k1", "k2"]
    ws2 = Project.create(tmp_path / "w2", encoder="phash")
    ws2.add("m", out, root=root)
    assert sorted(ws2.workspace.items()["key"]) == ["k0", "k1", "k2"]


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
    assert [str(s) for s in ws.workspace.split_ids()] == ["d/test", "d/train"]
    assert len(ws.workspace.split_items("d/test")) == 2
    with pytest.raises(UnknownSplit, match="no eval split 'd/train'.*valid: d/test"):
        ws.workspace.split_items("d/train", role="eval")


def test_decision_enum_is_the_stored_word():
    assert [d.value for d in Decision] == ["hard", "soft", "not_leak", "unsure", "same_source"]
    assert Decision("not_leak").label == "not a leak" and Decision.HARD == "hard" and Decision.SOFT.confirms_leak
    with pytest.raises(LeakcoreError, match="decision must be one of hard, soft, not_leak, unsure, same_source"):
        Decision.parse("maybe")


def test_scan_plans_jobs_then_runs_them(tmp_path):
    ws = Project.create(tmp_path / "w", encoder="phash")
    ws.add("d", make_folder_dataset(tmp_path / "d", n_train=4, n_test=3, leaks=(0,)))
    plan = ws.scan(plan_only=True)
    names = [j.name for j in plan.jobs]
    assert names == ["embed d/test", "embed d/train", "search d/test -> d/train", "search d/test -> d/test"]
    assert all(not j.done for j in plan.jobs)
    assert not list((ws.path / "neighbors").rglob("*.parquet")) and not list((ws.path / "embeddings").rglob("*.npy"))
    result = ws.scan()
    assert result.pairs_searched == [("d/test", "d/train"), ("d/test", "d/test")]
    again = ws.scan(plan_only=True)
    assert all(j.done for j in again.jobs) and again.todo == []
    assert isinstance(again.jobs[0], EmbedJob) and isinstance(again.jobs[-1], SearchJob)
    photo(99).save(tmp_path / "d" / "test" / "cat" / "new.jpg")  # one new evaluation image
    ws.add("d", tmp_path / "d")
    todo = [j.name for j in ws.scan(plan_only=True).todo]
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
    assert [c["name"] for c in checks.list_checks()] == ["similarity", "group", "temporal", "label_conflict", "shortcut",
                                                        "coverage"]
    assert checks.rate_check_names() == ["similarity", "group", "temporal", "label_conflict"]  # coverage: on request
    with pytest.raises(UnknownName, match="valid checks: .*similarity"):
        checks.get_check("vibes")
    ws = Project.create(tmp_path / "w", encoder="phash")
    ws.add("d", make_folder_dataset(tmp_path / "d", n_train=5, n_test=3, leaks=(0, 1)))
    ws.scan()
    found = ws.checks.findings("similarity")
    assert set(found["check"]) == {"similarity"} and found["reason"].str.contains("≥").all()
    pair = found.iloc[0]
    ws.decisions.decide(pair["eval_item_id"], pair["train_item_id"], Decision.NOT_LEAK, reviewer="a")
    after = ws.checks.findings("similarity")
    assert len(after) == len(found) - 1  # a rejected pair is no finding
    rates = ws.checks.rates()
    # no groups, no times in this workspace: the similarity check has rates, and labels give label conflicts some
    assert set(rates["check"]) == {"similarity", "label_conflict"} and {"hard_rate", "soft_rate"} <= set(rates.columns)


def test_impact_request_names_its_choices(tmp_path):
    with pytest.raises(UnknownName, match="valid probes: knn1, knn20, clip"):
        ImpactRequest(probes=("svm",))
    with pytest.raises(LeakcoreError, match="needs its file"):
        ImpactRequest(leak_source=LeakSource.LIST)


# ---- storage: the workspace owns where artefacts live and what is kept in memory --------------------------------
ROOT = PACKAGE.parent
WS_NAMES = {"ws", "workspace", "project", "self"}  # what holds a workspace in our code (`self` inside Project)
# paths still built outside the workspace, in files whose owners have not moved them yet: this list only shrinks
PATHS_LEFT: dict[str, int] = {}  # none left: every artefact path comes from Workspace.paths


def _holds_workspace(node: ast.AST) -> bool:
    """`ws`, `project`, `self._p.workspace` ... : an expression naming a workspace."""
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None
    return name in WS_NAMES or name == "workspace"


def _workspace_path(node: ast.AST) -> bool:
    """`ws.path`, also as `Path(ws.path)` or `str(ws.path)`."""
    if isinstance(node, ast.Call) and _name_of(node.func) in ("Path", "str") and len(node.args) == 1:
        node = node.args[0]
    return isinstance(node, ast.Attribute) and node.attr == "path" and _holds_workspace(node.value)


def workspace_paths_built(path: Path) -> list[int]:
    """Lines of a file that join a path under a workspace's folder (`ws.path / ...`, `Path(ws.path, ...)`,
    `os.path.join(ws.path, ...)`, `ws.path.joinpath(...)`)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and _workspace_path(node.left):
            lines.append(node.lineno)
        elif isinstance(node, ast.Call):
            f = node.func
            joins = (isinstance(f, ast.Name) and f.id == "Path") or (isinstance(f, ast.Attribute) and f.attr == "join")
            if joins and any(_workspace_path(a) for a in node.args[:1]) and len(node.args) > 1:
                lines.append(node.lineno)
            elif isinstance(f, ast.Attribute) and f.attr == "joinpath" and _workspace_path(f.value):
                lines.append(node.lineno)
    return lines


def _dashboard_and_core() -> list[Path]:
    return sorted([*PACKAGE.rglob("*.py"), *(ROOT / "ui").rglob("*.py"), *(ROOT / "pages").rglob("*.py"), ROOT / "app.py"])


def test_only_the_workspace_builds_paths_under_its_folder(tmp_path):
    """Every artefact's path comes from `Workspace.paths` (leakcore/project.py): a module that joins its own path
    under `ws.path` fails here (storage has one owner)."""
    found = {}
    for path in _dashboard_and_core():
        rel = path.relative_to(ROOT).as_posix()
        if rel != "leakcore/project.py" and (lines := workspace_paths_built(path)):
            found[rel] = lines
    grown = {f: lines for f, lines in found.items() if len(lines) > PATHS_LEFT.get(f, 0)}
    assert not grown, f"paths built outside the workspace (ask ws.paths instead): {grown}"
    bad = tmp_path / "bad.py"
    bad.write_text("def f(ws, p):\n    a = ws.path / 'groups'\n    b = Path(p.workspace.path, 'x')\n"
                   "    c = os.path.join(self.path, 'y')\n    d = Path(ws.path) / 'z'\n    return ws.paths.items, ws.path\n")
    assert workspace_paths_built(bad) == [2, 3, 4, 5]  # the rule catches each way of joining, not a plain use


CACHE_HOLDERS = {"dict", "list", "set", "OrderedDict", "defaultdict", "deque", "WeakKeyDictionary",
                 "WeakValueDictionary", "Caches", "SourceReader"}
MUTATORS = {"append", "extend", "insert", "update", "setdefault", "pop", "popitem", "clear", "add", "remove",
            "discard", "move_to_end", "appendleft"}
REGISTRIES = {"_REGISTRY", "SCORE_PROVIDERS"}  # a registry is filled once by its plug-ins: not a cache
# left, with the reason: callers that pass no reader (calibrate, downstream, fused's suite, coverage, report,
# shortcuts, a new source's probing) share one; passing `reader=ws.sources` there lets it go
CACHES_LEFT: set = set()


def _name_of(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def module_global_caches(path: Path) -> set[str]:
    """Module-level caches of a file: a dict, list or set (literal or built) that starts empty (it is there to be
    filled at run time) or that the module changes, an object that holds a cache (`Caches`, `SourceReader`) made at
    import, and a module-level function under `functools.lru_cache` / `functools.cache` (or wrapped by one)."""
    tree = ast.parse(path.read_text())
    containers, out = {}, set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        value = getattr(node, "value", None)
        for t in targets:
            if not isinstance(t, ast.Name) or value is None:
                continue
            if isinstance(value, (ast.Dict, ast.List, ast.Set)):
                containers[t.id] = value
                if not (value.keys if isinstance(value, ast.Dict) else value.elts):
                    out.add(t.id)
            elif isinstance(value, ast.Call):
                called = _name_of(value.func)
                if called in ("Caches", "SourceReader"):
                    out.add(t.id)
                elif called in CACHE_HOLDERS:
                    containers[t.id] = value
                    if not value.args and not value.keywords:
                        out.add(t.id)
                elif isinstance(value.func, ast.Call) and _name_of(value.func.func) in ("lru_cache", "cache"):
                    out.add(t.id)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for d in node.decorator_list:
                if _name_of(d.func if isinstance(d, ast.Call) else d) in ("lru_cache", "cache"):
                    out.add(node.name)
    for node in ast.walk(tree):  # which of the module's containers are changed at run time
        target = None
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
            for t in getattr(node, "targets", None) or [getattr(node, "target", None)]:
                if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name):
                    target = t.value.id
                elif isinstance(node, ast.AugAssign) and isinstance(t, ast.Name):
                    target = t.id
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in MUTATORS:
            target = _name_of(node.func.value) if isinstance(node.func.value, ast.Name) else None
        elif isinstance(node, ast.Global):
            out |= {n for n in node.names if n in containers}
        if target in containers:
            out.add(target)
    return out - REGISTRIES


def test_no_module_global_caches_in_the_core_or_the_dashboard(tmp_path):
    """What is derived from a workspace's files is kept on the workspace (`ws.cache`, keyed on `ws.stamp`), never in
    a module global that outlives it and keeps its own staleness rule (Streamlit's own caches aside: they are keyed
    on the workspace's stamps)."""
    found = {(path.relative_to(ROOT).as_posix(), name)
             for path in sorted([*PACKAGE.rglob("*.py"), *(ROOT / "ui").rglob("*.py")])
             for name in module_global_caches(path)}
    assert found - CACHES_LEFT == set(), f"module-global caches (keep them on the workspace: ws.cache): {found - CACHES_LEFT}"
    bad = tmp_path / "bad.py"
    bad.write_text("import functools\n_MEMO = {}\n_SEEN: list = []\n_FIXED = {'a': 1}\n_REGISTRY = {}\n"
                   "_HANDED: dict = dict()\n_TOLD = {'a': 1}\nread_into(_HANDED)\n_TOLD.update(b=2)\n"
                   "_READER = SourceReader()\nlookup = functools.lru_cache(8)(len)\n"
                   "@functools.lru_cache(maxsize=4)\ndef f(x):\n    _MEMO[x] = 1\n    _SEEN.append(x)\n"
                   "    _REGISTRY[x] = x\n    return _FIXED[x]\n\n@functools.cache\ndef g():\n    pass\n")
    assert module_global_caches(bad) == {"_MEMO", "_SEEN", "_HANDED", "_TOLD", "_READER", "lookup", "f", "g"}


def test_a_group_decision_is_made_in_the_core_and_the_cli_can_make_it(tmp_path, capsys):
    """The links a decision on a whole group records are the facade's (`decisions.decide_group`), so the terminal
    records the same ones as the Review page's group buttons."""
    for split, names in (("train", ["pat01_x.png", "pat02_y.png"]), ("test", ["pat01_z.png", "pat03_w.png"])):
        (tmp_path / "d" / split / "scans").mkdir(parents=True, exist_ok=True)
        for i, n in enumerate(names):
            photo(10 * i + len(split), (40, 40)).save(tmp_path / "d" / split / "scans" / n)
    ws = Project.create(tmp_path / "w", encoder="phash")
    ws.add("d", tmp_path / "d", group_from=r"pat(?P<group>\d+)_")
    ws.scan()
    groups = ws.groups(in_force=True)
    gid = groups.membership.loc[groups.membership["item_id"] == "d/test/scans/pat01_z.png", "group_id"].iloc[0]
    assert ws.decisions.group_links(groups, gid, "not_leak") == []  # explicit metadata links stay
    # N on a group explicit metadata alone links records nothing, and says why with a failing status (it said the
    # source's group column for a group named by file names, and exited 0)
    assert main(["--reviewer", "ann", "decide", str(ws.path), "--group", gid, "--decision", "not_leak"]) == 2
    assert "only explicit group metadata links it" in capsys.readouterr().err
    assert main(["--reviewer", "ann", "decide", str(ws.path), "--group", "no-such-group", "--decision", "not_leak"]) == 2
    assert "no group no-such-group" in capsys.readouterr().err
    assert main(["--reviewer", "ann", "decide", str(ws.path), "--group", gid, "--decision", "same_source"]) == 0
    assert "1 link(s) recorded by ann" in capsys.readouterr().out
    decided = ws.decisions.latest()
    assert set(decided["decision"]) == {"same_source"} and set(decided["reviewer"]) == {"ann"}
    assert {*decided["eval_item_id"], *decided["train_item_id"]} == set(
        groups.membership.loc[groups.membership["group_id"] == gid, "item_id"])
    # a second K on the kept group records nothing again (a new user's extra key press wrote each link once more)
    made = len(ws.decisions.history())
    assert ws.decisions.decide_group(gid, "same_source", reviewer="ann", groups=groups) == 0
    assert len(ws.decisions.history()) == made
    assert ws.decisions.decide_group(gid, "same_source", reviewer="ann", groups=groups, note="checked twice") == 1
    assert main(["decide", str(ws.path), "d/test/scans/pat03_w.png", "--decision", "hard"]) == 2  # one id is no pair


def test_settings_are_one_frozen_value_changed_only_through_configure(tmp_path):
    """`Project` holds its workspace (composition) and has one way to change settings: `configure` checks the
    role, validates, stores and writes one audit entry per kind of change with the values before and after."""
    import dataclasses

    from leakcore.api import Settings
    from leakcore.project import Workspace

    ws = Project.create(tmp_path / "w", encoder="phash")
    assert isinstance(ws.workspace, Workspace) and not isinstance(ws, Workspace)
    before = ws.settings
    assert isinstance(before, Settings) and (before.encoder, before.k, before.score) == ("phash", 10, "similarity")
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.k = 3
    with pytest.raises(AttributeError):  # the workspace's setters are the workspace's: settings go through configure
        ws.set_thresholds(0.9, 0.8)
    after = ws.configure(k=5, flip_queries=True, thresholds=(0.97, 0.9), group_window_s=30)
    assert (after.k, after.flip_queries, tuple(after.thresholds), after.group_window_s) == (5, True, (0.97, 0.9), 30)
    assert Project.open(ws.path).settings == after  # stored
    entries = {e["action"]: e for e in ws.team.audit_log.entries()}
    assert set(entries) == {"settings", "thresholds", "group settings"}
    assert entries["settings"]["before"]["k"] == 10 and entries["settings"]["after"]["k"] == 5
    t = entries["thresholds"]
    assert t["target"] == "phash (similarity)" and t["before"]["source"] == "encoder default"
    assert (t["after"]["hard"], t["after"]["soft"]) == (0.97, 0.9)
    for bad, match in (({"encoder": "nope"}, "valid encoders"), ({"k": 0}, "at least 1"),
                       ({"thresholds": (0.5, 0.9)}, "soft <= hard"), ({"score": "fused"}, "no fitted model")):
        with pytest.raises(LeakcoreError, match=match):
            ws.configure(**bad)
    with pytest.raises(LeakcoreError, match="soft <= hard"):
        ws.configure(k=7, thresholds=(0.5, 0.9))  # nothing of a refused change is stored
    with pytest.raises(TypeError):
        ws.configure(hardness=0.9)  # an unknown setting is no setting
    assert Project.open(ws.path).settings == after and len(ws.team.audit_log.entries()) == 3


COMPONENTS = {"workspace", "settings", "checks", "decisions", "review", "team", "images", "scores", "exports",
              "audits"}


def test_the_facade_is_about_a_dozen_verbs_over_its_components(tmp_path):
    """`Project` is composed (issue #29; cleanvision's Imagelab has about eight verbs): at most 13 verbs besides
    its components, `path` and `actor`, and no `__getattr__` passing the workspace through: a read of the
    workspace says so (`project.workspace.items()`)."""
    import types

    members = {n: v for n, v in vars(Project).items() if not n.startswith("_")
               and isinstance(v, (types.FunctionType, property, classmethod, staticmethod))}
    assert COMPONENTS - {"workspace"} <= set(members), "a component went missing"
    verbs = sorted(set(members) - COMPONENTS - {"path", "actor"})
    assert len(verbs) <= 13, f"Project has {len(verbs)} verbs (at most 13): {', '.join(verbs)}"
    assert not hasattr(Project, "__getattr__") and Project.__getattribute__ is object.__getattribute__
    project = Project.create(tmp_path / "w", encoder="phash")
    for name in ("encoder", "items", "plan_scan", "rates", "findings", "thresholds", "calibration"):
        with pytest.raises(AttributeError):
            getattr(project, name)
    assert project.workspace.encoder == "phash" and project.checks.names()[0] == "similarity"


def test_every_fragment_keeps_the_widget_state_of_the_page_around_it():
    """A fragment's run ends by forgetting the widgets it did not draw: after a calibration (its bar is a fragment
    redrawn twice a second) the Reviewer name typed in the sidebar was gone on the next page. Every fragment of the
    dashboard is therefore made by `state.fragment`, which starts each run with `state.keep_widget_state()`."""
    found = []
    for path in sorted((ROOT / "ui").glob("*.py")) + sorted((ROOT / "pages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                found += [(f"{path.name}:{node.name}", ast.unparse(d)) for d in node.decorator_list
                          if "fragment" in ast.unparse(d)]
            elif isinstance(node, ast.Call) and ast.unparse(node.func) == "st.fragment" and path.name != "state.py":
                found.append((f"{path.name}:{node.lineno}", "st.fragment"))
    assert len(found) >= 2  # the Review panel and the calibration's bar
    assert [f for f, how in found if not how.startswith("state.fragment")] == []
    source = (ROOT / "ui" / "state.py").read_text()
    fragment = source[source.index("def fragment("):source.index("def init_state(")]
    assert "keep_widget_state()" in fragment and "st.fragment(run" in fragment


def test_the_heavy_libraries_are_imported_one_thread_at_a_time():
    """Two threads importing torch, SciPy or scikit-learn at once (the dashboard's warm-up and a page) can find each
    other's module half-made: "partially initialized module 'torch' has no attribute 'Tensor'" on the Shortcuts page
    in CI. The warm-up and the pages that use them import them through one lock."""
    import threading
    import time

    from leakcore import api

    api.import_heavy()  # imported: a second call costs nothing
    with api._HEAVY_IMPORTS:  # another thread holds it: a page waits
        waiting = threading.Thread(target=api.import_heavy)
        waiting.start()
        time.sleep(0.2)
        assert waiting.is_alive()
    waiting.join(timeout=5)
    assert not waiting.is_alive()
    pages = {p.name: p.read_text() for p in (ROOT / "pages").glob("*.py")}
    assert all("heavy=True" in pages[name] for name in ("4_Impact.py", "6_Coverage.py", "7_Shortcuts.py"))
