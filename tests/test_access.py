"""Roles, the audit log and the allowed roots, as a team and an attacker meet them through the facade.

viewer reads, curator decides, lead also sets thresholds, calibrates, exports, re-splits and edits roles; a workspace
without roles.toml lets everyone act as a lead (one person on their machine, as before).
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
import os

import pytest

from leakcore import access, review
from leakcore.access import AccessDenied, AuditLog, PathNotAllowed, Role, Roles
from leakcore.api import Project
from leakcore.cli import main
from leakcore.errors import InvalidInput, LeakcoreError, WorkspaceError

from conftest import make_folder_dataset

LEAD, CURATOR, VIEWER = "lea@example.org", "cory@example.org", "vic@example.org"


@pytest.fixture(autouse=True)
def _no_identity_source(monkeypatch):
    """Whatever an earlier test in this process installed (the app installs one): these tests name the actor."""
    monkeypatch.setattr(access, "_identity_source", None)
    monkeypatch.setattr(access, "_roots_override", None)
    monkeypatch.setattr(access, "_without_roles", access.Role.LEAD)
    monkeypatch.delenv(access.ROOTS_ENV, raising=False)


@pytest.fixture
def team(tmp_path):
    """A scanned workspace (phash) with a lead, a curator and a viewer; returns (path, pairs)."""
    root = make_folder_dataset(tmp_path / "animals", n_train=6, n_test=4, leaks=(0, 1, 2))
    ws = Project.create(tmp_path / "ws", encoder="phash", actor=LEAD)
    ws.add("animals", root)
    ws.scan()
    ws.team.set_roles(Roles({LEAD: Role.LEAD, CURATOR: Role.CURATOR, VIEWER: Role.VIEWER}))
    pairs = ws.checks.findings()[["eval_item_id", "train_item_id"]].drop_duplicates().values.tolist()
    assert len(pairs) >= 3
    return ws.path, [tuple(p) for p in pairs]


def _with_items(project: Project, ids) -> Project:
    """A workspace whose item table holds `ids` (decisions are refused on ids that are not its items)."""
    import pandas as pd

    project.workspace.write_items(pd.DataFrame({"item_id": list(ids), "dataset": "d", "split": "s", "status": "ok"}))
    return project


def test_without_a_roles_file_everyone_acts_as_a_lead(tmp_path):
    ws = _with_items(Project.create(tmp_path / "w", encoder="phash", actor="anyone"), ["a", "b"])
    assert ws.team.roles() is None and ws.team.role() == Role.LEAD
    ws.configure(thresholds=(0.99, 0.9))
    ws.decisions.decide("a", "b", "hard", reviewer="someone else")  # no roles: names are labels, as before
    assert AuditLog(ws.path).entries()[-1]["user"] == "anyone"


def test_a_decision_on_an_id_that_is_no_item_is_refused(tmp_path, capsys):
    """Decisions are append-only: a typo in an id (from the terminal) is refused, not recorded for good."""
    ws = _with_items(Project.create(tmp_path / "w", encoder="phash"), ["d/test/a.jpg", "d/train/b.jpg"])
    with pytest.raises(InvalidInput, match="no item 'd/train/typo.jpg'"):
        ws.decisions.decide("d/test/a.jpg", "d/train/typo.jpg", "hard", reviewer="ann")
    assert main(["decide", str(ws.path), "d/test/nope.jpg", "d/train/b.jpg", "--decision", "hard"]) == 2
    assert "no item 'd/test/nope.jpg'" in capsys.readouterr().err
    assert review.latest_decisions(ws.workspace).empty
    ws.decisions.decide("d/test/a.jpg", "d/train/b.jpg", "hard", reviewer="ann")
    assert len(review.latest_decisions(ws.workspace)) == 1


@pytest.mark.parametrize("verb", ["decide", "undo", "thresholds", "export", "calibrate", "resplit", "add", "scan",
                                  "roles", "score"])
def test_a_viewer_changes_nothing(team, verb, tmp_path):
    path, pairs = team
    ws = Project.open(path, actor=VIEWER)
    before = review.latest_decisions(ws.workspace)
    config = (path / "project.toml").read_text()
    calls = {
        "decide": lambda: ws.decisions.decide(*pairs[0], "hard", reviewer=VIEWER),
        "undo": lambda: ws.decisions.undo_last(VIEWER),
        "thresholds": lambda: ws.configure(thresholds=(0.5, 0.4)),
        "export": lambda: ws.exports.write("animals/test", ws.exports.policy("soft")),
        "calibrate": lambda: ws.calibrate("animals/train", queries=4),
        "resplit": lambda: ws.resplit("animals"),
        "add": lambda: ws.add("more", make_folder_dataset(tmp_path / "more")),
        "scan": lambda: ws.scan(),
        "roles": lambda: ws.team.set_roles(Roles({VIEWER: Role.LEAD})),
        "score": lambda: ws.configure(score="similarity"),
    }
    with pytest.raises(AccessDenied, match=f"`{VIEWER}` is a viewer") as err:
        calls[verb]()
    assert isinstance(err.value, LeakcoreError) and "Team page" in err.value.for_page()
    assert review.latest_decisions(ws.workspace).equals(before)
    assert (path / "project.toml").read_text() == config
    assert not (path / "exports" / "animals-test-soft").exists()
    assert ws.team.role() == Role.VIEWER and len(ws.checks.findings()) and len(ws.checks.rates())  # reading is fine


def test_a_curator_decides_but_does_not_export_or_move_thresholds(team):
    path, pairs = team
    ws = Project.open(path, actor=CURATOR)
    ws.decisions.decide(*pairs[0], "hard", reviewer=CURATOR)
    ws.decisions.decide_many(pairs[1:3], "not_leak", reviewer=CURATOR)
    assert ws.decisions.undo_last(CURATOR)["decision"] == "not_leak"
    assert set(review.latest_decisions(ws.workspace)["reviewer"]) == {CURATOR}
    for forbidden in (lambda: ws.exports.write("animals/test", ws.exports.policy("soft")), lambda: ws.configure(thresholds=(0.9, 0.8)),
                      lambda: ws.resplit("animals")):
        with pytest.raises(AccessDenied, match="needs the lead role"):
            forbidden()


def test_nobody_decides_in_another_name(team):
    path, pairs = team
    ws = Project.open(path, actor=CURATOR)
    with pytest.raises(AccessDenied, match="in the name of"):
        ws.decisions.decide(*pairs[0], "hard", reviewer=LEAD)
    with pytest.raises(AccessDenied, match="in the name of"):
        ws.decisions.undo_last(LEAD)
    # the web layer's identity source names the signed-in user: a forged reviewer name is refused the same way
    access.set_identity_source(lambda: VIEWER)
    with pytest.raises(AccessDenied, match="in the name of"):
        Project.open(path).decisions.decide(*pairs[0], "hard", reviewer=CURATOR)
    access.set_identity_source(lambda: None)  # a thread outside any session: nobody is named
    with pytest.raises(AccessDenied, match="nobody is named"):
        Project.open(path).configure(thresholds=(0.9, 0.8))
    # ... nor a session whose user signed out in another tab: the reviewer its page still holds is no proof (such a
    # tab recorded a decision in the signed-out curator's name on its next key press)
    for act in (lambda p: p.decisions.decide(*pairs[0], "hard", reviewer=CURATOR),
                lambda p: p.decisions.decide_many(pairs[:2], "hard", reviewer=CURATOR),
                lambda p: p.decisions.undo_last(CURATOR)):
        with pytest.raises(AccessDenied, match="nobody is signed in") as err:
            act(Project.open(path))
        assert "sign in again" in err.value.for_page()
    assert review.latest_decisions(ws.workspace).empty


def _stub_resplit(monkeypatch):
    """The re-split's own work is tested in test_groups; here only who may write one and what the log keeps."""
    from types import SimpleNamespace

    from leakcore import resplit

    monkeypatch.setattr(resplit, "plan_resplit", lambda ws, dataset, **kw: SimpleNamespace(dataset=dataset))
    monkeypatch.setattr(resplit, "write_resplit", lambda ws, result, out, links=None, made_by=None: SimpleNamespace(
        summary={"dataset": result.dataset, "train": 7, "test": 3}, files=[ws.path / "resplit.csv"]))


def test_a_lead_sets_thresholds_exports_and_the_audit_and_sidecar_say_who(team, monkeypatch):
    path, pairs = team
    _stub_resplit(monkeypatch)
    Project.open(path, actor=CURATOR).decisions.decide(*pairs[0], "hard", reviewer=CURATOR)
    Project.open(path, actor="Lea@Example.org ").decisions.decide(*pairs[1], "not_leak", reviewer="lea@example.org")
    ws = Project.open(path, actor=LEAD)
    old = ws.scores.thresholds()
    ws.configure(thresholds=(0.97, 0.91), source="test")
    result = ws.exports.write("animals/test", ws.exports.policy("soft"))
    ws.resplit("animals")

    log = AuditLog(path)
    actions = [e["action"] for e in log.entries()]
    assert actions[-3:] == ["thresholds", "export", "re-split"] and "roles" in actions and "add dataset" in actions
    th = log.last("thresholds")
    assert th["user"] == LEAD and th["role"] == "lead"
    assert th["before"] == {"hard": old.hard, "soft": old.soft, "source": old.source}
    assert th["after"] == {"hard": 0.97, "soft": 0.91, "source": "test"}
    assert log.last("export")["after"]["removed"] == result.removed
    assert log.last("re-split")["after"] == {"dataset": "animals", "train": 7, "test": 3,
                                             "files": [str(path / "resplit.csv")]}
    assert log.verify() == len(actions)

    prov = json.loads((result.folder / "provenance.json").read_text())
    people = prov["people"]
    assert people["exported_by"] == LEAD
    assert people["decisions_by_reviewer"] == {CURATOR: 1, "lea@example.org": 1}
    assert people["decisions_in_force"] == 2
    assert people["thresholds_set_by"]["user"] == LEAD and people["thresholds_set_by"]["after"]["hard"] == 0.97
    assert prov["thresholds"] == {"hard": 0.97, "soft": 0.91}
    assert people["roles"]["users"][VIEWER] == "viewer"

    table = log.table()
    assert list(table.columns[:4]) == ["time", "user", "role", "action"] and table.iloc[0]["action"] == "re-split"


def test_the_audit_log_is_append_only_and_a_rewrite_is_detected(team):
    path, _ = team
    log = AuditLog(path)
    n = log.verify()
    Project.open(path, actor=LEAD).configure(thresholds=(0.99, 0.95))
    lines = log.path.read_bytes().splitlines(keepends=True)
    assert len(lines) == n + 1 and log.verify() == n + 1
    # the API has no way to change or remove an entry; a hand edit breaks the chain
    log.path.write_bytes(b"".join(lines[:1] + lines[2:]))
    with pytest.raises(WorkspaceError, match="does not follow"):
        log.verify()
    edited = lines[-1].replace(LEAD.encode(), b"mallory@example.org")
    log.path.write_bytes(b"".join(lines[:-2] + [edited]))
    with pytest.raises(WorkspaceError, match="does not follow"):
        log.verify()


def test_an_audit_entry_without_a_before_shows_none_not_the_text_nan(team):
    """An entry that has no `before` key (a scan, an export) read as the text "NaN" on the Team page."""
    path, _ = team
    log = AuditLog(path)
    log.append(LEAD, "score", before="similarity", after="fused", role="lead")  # text: the column reads as text
    log.append(LEAD, "export", target="d/test", role="lead")  # no before, no after
    table = log.table()
    assert table["before"].map(lambda v: v is None or v != v).iloc[0]
    assert "NaN" not in set(table["before"].dropna()) | set(table["after"].dropna())


def test_roles_are_edited_by_a_lead_only_and_never_lose_the_last_lead(team):
    path, _ = team
    with pytest.raises(AccessDenied):
        Project.open(path, actor=CURATOR).team.set_roles({"users": {CURATOR: "lead"}})
    lead = Project.open(path, actor=LEAD)
    with pytest.raises(InvalidInput, match="at least one lead"):
        lead.team.set_roles({"users": {CURATOR: "curator"}})
    with pytest.raises(InvalidInput, match="no longer be a lead"):
        lead.team.set_roles({"users": {LEAD: "curator", CURATOR: "lead"}})
    with pytest.raises(InvalidInput, match="role must be one of"):
        lead.team.set_roles({"users": {LEAD: "lead", VIEWER: "admin"}})
    lead.team.set_roles({"default": "viewer", "users": {LEAD: "lead", CURATOR: "lead", VIEWER: "curator"}})
    entry = AuditLog(path).last("roles")
    assert entry["before"]["users"][VIEWER] == "viewer" and entry["after"]["users"][VIEWER] == "curator"
    assert Project.open(path, actor=VIEWER).team.role() == Role.CURATOR
    assert Project.open(path, actor="stranger@example.org").team.role() == Role.VIEWER  # not listed: the default


def test_a_broken_roles_file_opens_nothing_to_everyone(team):
    path, pairs = team
    (path / "roles.toml").write_text("users = [unclosed")
    with pytest.raises(WorkspaceError, match="not valid TOML"):
        Project.open(path, actor=VIEWER).configure(thresholds=(0.5, 0.4))


def test_paths_outside_the_allowed_roots_are_refused(team, tmp_path, monkeypatch):
    path, _ = team
    outside = make_folder_dataset(tmp_path / "outside")
    monkeypatch.setenv(access.ROOTS_ENV, str(path))
    with pytest.raises(PathNotAllowed, match="outside the folders this server allows") as refused:
        Project.open(tmp_path / "elsewhere")
    assert str(path) not in str(refused.value)  # a refusal goes to any signed-in user: the server's folders unnamed
    with pytest.raises(PathNotAllowed):
        Project.create(tmp_path / "new-ws")
    ws = Project.open(path, actor=LEAD)
    with pytest.raises(PathNotAllowed, match="dataset source"):
        ws.add("outside", outside)
    (path / "link").symlink_to(outside)  # a link inside a root that points out of it is outside
    with pytest.raises(PathNotAllowed):
        ws.add("linked", path / "link")
    with pytest.raises(PathNotAllowed):
        ws.exports.write("animals/test", ws.exports.policy("soft"), out=str(tmp_path / "loot"))
    assert not (tmp_path / "new-ws").exists()


def test_a_shared_server_scans_only_on_the_ray_clusters_its_operator_lists(team, monkeypatch):
    path, _ = team
    ws = Project.open(path, actor=LEAD)
    monkeypatch.setenv(access.ROOTS_ENV, str(path))
    monkeypatch.delenv(access.RAY_ENV, raising=False)
    for address in ("ray://203.0.113.9:10001", "203.0.113.9:6379"):
        with pytest.raises(PathNotAllowed, match="not one this server's operator lists"):
            ws.scan(ray=address)
    monkeypatch.setenv(access.RAY_ENV, "ray://head.internal:10001")
    access.check_ray_address("ray://head.internal:10001")  # listed: allowed
    with pytest.raises(PathNotAllowed):
        access.check_ray_address("ray://head.internal:10002")
    for address in (None, "local", "auto"):
        access.check_ray_address(address)
    monkeypatch.delenv(access.ROOTS_ENV)
    access.check_ray_address("ray://203.0.113.9:10001")  # one person's machine, no roots: their own choice


def test_predictions_a_web_user_names_or_sends_stay_inside_the_roots(team, tmp_path, monkeypatch):
    """The Impact page's typed paths and globs are read only inside the roots; a sent file's name cannot place it."""
    import pandas as pd

    from leakcore.api import ImpactRequest, LeakSource

    path, _ = team
    ws = Project.open(path, actor=VIEWER)
    items = ws.workspace.items()
    items = items[items["item_id"].str.startswith("animals/test/")]
    csv = pd.DataFrame({"item_id": items["item_id"], "predicted": items["label"]}).to_csv(index=False).encode()
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "m_predictions.csv").write_bytes(csv)
    monkeypatch.setenv(access.ROOTS_ENV, str(path))
    for typed in (str(secret / "m_predictions.csv"), str(secret / "*.csv"), str(secret / "*.nothing")):
        with pytest.raises(PathNotAllowed, match="outside the folders this server allows"):
            ws.impact(ImpactRequest("animals/test", (typed,), n_random=10))
    with pytest.raises(PathNotAllowed, match="leak list"):
        ws.impact(ImpactRequest("animals/test", probes=("knn1",), leak_source=LeakSource.LIST,
                                leak_list=str(secret / "m_predictions.csv"), n_random=10))
    (path / "preds").mkdir()
    (path / "preds" / "inside_predictions.csv").write_bytes(csv)
    sent = ("../../" + secret.name + "/evil_predictions.csv", csv)  # a browser may send any name
    result = ws.impact(ImpactRequest("animals/test", (str(path / "preds" / "*.csv"),), n_random=10, uploads=(sent,)))
    assert set(result.table["model"]) == {"inside", "evil"}
    assert result.table.groupby("model")["accuracy"].max().eq(1.0).all()
    assert sorted(p.name for p in secret.iterdir()) == ["m_predictions.csv"]  # nothing written beside it
    assert not list(Path(tempfile.gettempdir()).glob("leakcore-impact-*"))  # nor left behind
    # what a browser may send or a user type reads as a reason, never a traceback
    from leakcore.errors import LeakcoreError

    for request in (ImpactRequest("animals/test", (str(path / "***x"),), n_random=10),
                    ImpactRequest("animals/test", (str(path / "a\x00b.csv"),), n_random=10),
                    ImpactRequest("animals/test", uploads=(("u.csv", b"\xff\xfe\x00\x81bad"),), n_random=10),
                    ImpactRequest("animals/test", probes=("knn1",), leak_source=LeakSource.LIST,
                                  leak_upload=("l.csv", b"\xff\xfe\x00\x81bad"), n_random=10)):
        with pytest.raises(LeakcoreError):
            ws.impact(request)
    assert Project.open(path, actor=LEAD).resplit("animals", write=False) is not None  # no group in force: it crashed
    for typed in ("../../etc/passwd", "2024-06-01T00:00:00Z'; import os", "9" * 400):
        with pytest.raises(InvalidInput, match="cannot read the time"):
            Project.open(path, actor=LEAD).resplit("animals", time_cutoff=typed, write=False)


def test_the_server_s_recent_workspaces_are_those_it_may_open(team, tmp_path, monkeypatch):
    """The recent list is the server's, seen by every user: a workspace outside the roots is not offered, and a
    path with a NUL is refused as a path, not a traceback."""
    path, _ = team
    other = Project.create(tmp_path / "other-ws", encoder="phash").path
    assert Project.openable(path) and Project.openable(other)
    monkeypatch.setenv(access.ROOTS_ENV, str(path))
    assert Project.openable(path) and not Project.openable(other) and not Project.openable(tmp_path / "nothing")
    for bad in (str(path) + "/sub\x00/x", "\x00"):
        with pytest.raises(PathNotAllowed, match="NUL"):
            Project.open(bad)
    monkeypatch.delenv(access.ROOTS_ENV)
    with pytest.raises(PathNotAllowed, match="NUL"):  # on one person's machine too
        Project.create(str(tmp_path / "a\x00b"))


def test_the_cli_acts_as_the_os_user_or_reviewer(team, capsys, monkeypatch):
    path, _ = team
    monkeypatch.setattr(access, "os_user", lambda: "vic@example.org")
    assert main(["export", str(path), "--split", "animals/test"]) != 0
    assert "`vic@example.org` is a viewer" in capsys.readouterr().err
    assert main(["--reviewer", LEAD, "export", str(path), "--split", "animals/test"]) == 0
    assert AuditLog(path).last("export")["user"] == LEAD
    assert access._identity_source is None  # the CLI leaves nothing behind in this process


_CURATOR_PROCESS = """
import sys, time
from pathlib import Path
from leakcore.api import Project
path, reviewer, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
ws = Project.open(path, actor=reviewer)
(go.parent / ("ready-" + reviewer)).touch()  # leakcore imported, the workspace open
while not go.exists():  # start together, once every process is ready
    time.sleep(0.01)
for i in range(n):
    ws.decisions.decide(f"e{reviewer}{i}", f"t{i}", "hard" if i % 2 else "not_leak", reviewer=reviewer,
                        note=f"{reviewer}:{i}")
"""


def test_four_curators_in_four_processes_lose_and_misattribute_nothing(tmp_path):
    """4 curators x 100 decisions at once on one workspace (the facade from 4 processes of their own)."""
    import subprocess
    import sys
    import time

    curators = [f"c{i}@example.org" for i in range(4)]
    ws = _with_items(Project.create(tmp_path / "ws", encoder="phash", actor=LEAD),
                     [f"e{c}{i}" for c in curators for i in range(100)] + [f"t{i}" for i in range(100)])
    ws.team.set_roles(Roles({LEAD: Role.LEAD, **{c: Role.CURATOR for c in curators}}))
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _CURATOR_PROCESS, str(ws.path), c, "100", str(go)])
             for c in curators]
    # wait until every process is ready (a fixed 5 s sleep was too long on an idle machine, too short on a busy one)
    deadline = time.time() + 120
    while not all((tmp_path / f"ready-{c}").exists() for c in curators):
        assert time.time() < deadline and all(p.poll() is None for p in procs), "a curator's process did not start"
        time.sleep(0.05)
    go.touch()
    assert [p.wait(timeout=300) for p in procs] == [0] * 4
    history = review.history(ws.workspace)
    assert len(history) == 400
    for c in curators:
        mine = history[history["reviewer"] == c]
        assert len(mine) == 100 and mine["eval_item_id"].str.startswith(f"e{c}").all()
        assert all(n.startswith(c + ":") for n in mine["note"])


# ---- the dashboard's gate (AppTest: no browser, no provider) ------------------------------------------------------
def _app(team_path, monkeypatch, page: str | None = None, *, secrets: dict | None = None):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LEAKCORE_WORKSPACE", str(team_path))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    for key, value in (secrets or {}).items():
        at.secrets[key] = value
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def test_a_network_server_without_sign_in_refuses_unless_the_operator_allows_it(team, monkeypatch, tmp_path):
    from ui import access_ui

    monkeypatch.setenv("LEAKCORE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(access_ui, "_serving", lambda: True)
    monkeypatch.setattr(access_ui, "_bind_address", lambda: "0.0.0.0")
    at = _app(team[0], monkeypatch)
    assert not at.exception
    assert any("has no sign-in" in e.value for e in at.error) and not at.button  # nothing else is drawn
    monkeypatch.setenv(access_ui.OPEN_ENV, "1")
    for page in (None, "pages/1_Review.py", "pages/8_Team.py"):
        at = _app(team[0], monkeypatch, page)
        assert not at.exception
        assert any("without sign-in" in w.value for w in at.warning), page
    monkeypatch.setattr(access_ui, "_bind_address", lambda: "127.0.0.1")
    assert access_ui.loopback_only()
    monkeypatch.setattr(access_ui, "_bind_address", lambda: "::1")
    assert access_ui.loopback_only()
    monkeypatch.setattr(access_ui, "_bind_address", lambda: "")  # unset: every interface
    assert not access_ui.loopback_only()


def test_with_sign_in_configured_a_visitor_sees_only_the_sign_in_button(team, monkeypatch, tmp_path):
    monkeypatch.setenv("LEAKCORE_HOME", str(tmp_path / "home"))
    auth = {"redirect_uri": "http://localhost:8599/oauth2callback", "cookie_secret": "x" * 32, "client_id": "c",
            "client_secret": "s", "server_metadata_url": "http://127.0.0.1:1/.well-known/openid-configuration"}
    for page in (None, "pages/1_Review.py", "pages/5_Export.py", "pages/8_Team.py"):
        at = _app(team[0], monkeypatch, page, secrets={"auth": auth})
        assert not at.exception
        assert [b.label for b in at.button] == ["Sign in"], page
        assert not at.dataframe and not at.text_input  # no data, no Reviewer box
    # with sign-in on and no roots listed, only the workspace the server was started with opens
    assert access.allowed_roots() == [team[0].resolve()]


def test_a_page_can_ask_before_the_core_refuses(team):
    from ui import access_ui

    access.set_identity_source(lambda: VIEWER)
    assert "is a viewer" in access_ui.refusal(str(team[0]))
    assert "needs the lead role" in access_ui.refusal(str(team[0]), access.Action.EXPORT)
    access.set_identity_source(lambda: CURATOR)
    assert access_ui.refusal(str(team[0])) is None


def test_the_team_page_starts_a_roles_file_and_shows_the_log(tmp_path, monkeypatch):
    monkeypatch.setenv("LEAKCORE_HOME", str(tmp_path / "home"))
    ws = Project.create(tmp_path / "ws", encoder="phash", actor="tester")
    ws.configure(thresholds=(0.99, 0.9))
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LEAKCORE_WORKSPACE", str(ws.path))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.session_state["reviewer"] = "tester"
    at.run()
    at.switch_page("pages/8_Team.py").run()
    assert not at.exception
    at.button(key="team_start").click().run()
    assert not at.exception
    assert ws.team.roles() == Roles({"tester": Role.LEAD}) and ws.team.role("someone") == Role.VIEWER
    assert any("You are **lead** here." in m.value for m in at.markdown)
    log_text = " ".join(t.value for t in at.text)
    assert "tester (lead)  roles" in log_text and "thresholds phash (similarity)" in log_text
    shown = at.dataframe[-1].value  # the roles entry has no target and nothing before it: empty cells
    assert not shown.isna().any().any() and not shown.astype(object).isin(["None", "nan"]).any().any()


def test_a_viewer_on_the_review_page_sees_why_the_decisions_are_off(team, monkeypatch, tmp_path):
    """No traceback from a refused callback: the page asks first, turns the decision buttons off and says why."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LEAKCORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEAKCORE_WORKSPACE", str(team[0]))
    monkeypatch.setenv("USER", VIEWER)
    monkeypatch.setenv("LOGNAME", VIEWER)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.session_state["reviewer"] = VIEWER
    at.run()
    at.switch_page("pages/1_Review.py").run()
    assert not at.exception
    assert at.button(key="decide_hard").disabled and at.button(key="undo").disabled
    assert any("viewer" in w.value for w in at.warning)
    access.set_identity_source(lambda: CURATOR)
    at.session_state["reviewer"] = CURATOR
    at.run()
    assert not at.exception and not at.button(key="decide_hard").disabled


def test_a_viewer_sees_every_changing_button_off_with_the_reason(team, monkeypatch, tmp_path):
    """A viewer on a team server saw "Run scan", "Apply to project" and "Write the export" enabled and was refused
    only after the click: each button for a change the role may not make is off, with the reason under it."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LEAKCORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEAKCORE_WORKSPACE", str(team[0]))
    buttons = {None: ["run_scan"], "pages/2_Thresholds.py": ["th_apply"], "pages/5_Export.py": ["exp_write"],
               "pages/7_Shortcuts.py": ["sc_run"]}

    def page(name, who):
        access.set_identity_source(lambda: who)
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
        at.session_state["reviewer"] = who
        at.run()
        if name:
            at.switch_page(name).run()
        assert not at.exception, name
        return at

    for name, keys in buttons.items():
        at = page(name, VIEWER)
        for key in keys:
            assert at.button(key=key).disabled, (name, key)
        assert any("is a viewer in this workspace" in c.value for c in at.caption), name
        forms = [b for b in at.get("form_submit_button") if b.label in ("Add dataset", "Re-split and write")]
        assert all(b.disabled for b in forms), name
    at = page("pages/7_Shortcuts.py", CURATOR)  # a curator runs the audit, and leads the rest
    assert not at.button(key="sc_run").disabled
    at = page(None, VIEWER)  # the scan's settings too: shown, not to be changed
    assert at.selectbox(key="scan_encoder").disabled and at.checkbox(key="scan_flip").disabled
    at = page(None, LEAD)
    assert not at.button(key="run_scan").disabled and not any("viewer" in c.value for c in at.caption)
    assert not at.selectbox(key="scan_encoder").disabled


def test_a_new_workspace_is_not_made_inside_another_or_among_images(team, tmp_path):
    """A team server's viewer made a workspace inside the team's and one in a dataset's val folder (project.toml
    and items.parquet among the photos, then "skipped 2 files that are not images" on the next add)."""
    with pytest.raises(InvalidInput, match="is inside the workspace"):
        Project.create(team[0] / "mine")
    data = tmp_path / "animals" / "test"  # the fixture's images: test/cat/*.jpg
    with pytest.raises(InvalidInput, match="holds images"):
        Project.create(data)
    assert not (data / "project.toml").exists()
    assert Project.create(team[0]).path == team[0].resolve()  # an existing workspace opens as it is
    assert (Project.create(tmp_path / "fresh").path / "project.toml").exists()


def test_on_a_signed_in_server_only_a_lead_creates_a_workspace(team, tmp_path, monkeypatch):
    from ui import access_ui

    monkeypatch.setattr(access_ui, "sign_in_configured", lambda: True)
    monkeypatch.setattr(access_ui.st, "error", lambda *a, **k: None)
    access.set_identity_source(lambda: VIEWER)
    assert not access_ui.may_create_workspace(str(team[0]))
    access.set_identity_source(lambda: LEAD)
    assert access_ui.may_create_workspace(str(team[0]))
    monkeypatch.setattr(access_ui, "sign_in_configured", lambda: False)
    access.set_identity_source(lambda: VIEWER)
    assert access_ui.may_create_workspace(str(team[0]))  # one person's machine: anyone
    # never inside a dataset folder of the workspace open now, on any server (a lead made one in the validation split)
    assert not access_ui.may_create_workspace(str(team[0]), str(tmp_path / "animals" / "test" / "newws"))
    assert access_ui.may_create_workspace(str(team[0]), str(tmp_path / "beside"))
    # a server started on a folder still to be made: anyone on one person's machine (a new user could not create any
    # workspace, each refusal naming the missing folder), nobody on a signed-in server (nobody leads it)
    assert access_ui.may_create_workspace(str(tmp_path / "not-yet"), str(tmp_path / "beside"))
    # a workspace made on a server keeps strangers out where the open one does (a lead's new one was a viewer's to
    # read for every signed-in stranger): its unlisted users get the open workspace's role
    monkeypatch.setattr(access_ui, "sign_in_configured", lambda: True)
    Project.open(team[0], actor=LEAD).team.set_roles(Roles({LEAD: Role.LEAD}, Role.NONE))
    made = Project.create(tmp_path / "made", lead=LEAD, others=access_ui.new_workspace_others(str(team[0])))
    assert made.team.roles().default == Role.NONE and made.team.role(LEAD) == Role.LEAD
    access.set_identity_source(lambda: LEAD)
    assert not access_ui.may_create_workspace(str(tmp_path / "not-yet"), str(tmp_path / "beside"))


def test_on_a_signed_in_server_each_user_has_their_own_recent_workspaces(tmp_path, monkeypatch):
    """The Recent list was the server's: every signed-in user saw the workspaces the others had opened."""
    from ui import access_ui, state

    monkeypatch.setattr(state, "RECENT_FILE", tmp_path / "home" / "recent.json")
    state.RECENT_FILE.parent.mkdir()
    state.RECENT_FILE.write_text(json.dumps([str(tmp_path / "old")]))  # the list as written before
    a, b, c = (Project.create(tmp_path / n, actor=LEAD).path for n in ("a", "b", "old"))
    assert state.recent_workspaces() == [str(c)]  # this machine's list, as before
    monkeypatch.setattr(access_ui, "sign_in_configured", lambda: True)
    user = {"who": "ann@example.org"}
    monkeypatch.setattr(access_ui, "signed_in_user", lambda: user["who"])
    assert state.recent_workspaces() == []
    state.remember_workspace(str(a))
    user["who"] = "bob@example.org"
    state.remember_workspace(str(b))
    assert state.recent_workspaces() == [str(b)]
    user["who"] = "ann@example.org"
    assert state.recent_workspaces() == [str(a)]
    monkeypatch.setattr(access_ui, "sign_in_configured", lambda: False)
    assert state.recent_workspaces() == [str(c)]
    assert not list(state.RECENT_FILE.parent.glob(".*tmp"))  # written whole, nothing left beside it


def test_on_a_signed_in_server_home_lists_unreadable_items_without_the_servers_paths():
    """Home's unreadable items showed each file's path and the reader's message with it: on a shared server, where
    the Review page already says only the reason's kind, they named where the server keeps its files."""
    import pandas as pd

    from ui.home import unreadable_table

    bad = pd.DataFrame({"item_id": ["pets/test/cat/7.jpg"], "uri": ["/srv/team/pets/test/cat/7.jpg"],
                        "reason": ["cannot decode: cannot identify image file '/srv/team/pets/test/cat/7.jpg'"]})
    shared = unreadable_table(bad, shared=True)
    assert shared.to_dict("records") == [{"item_id": "pets/test/cat/7.jpg", "reason": "cannot decode"}]
    assert "/srv" in unreadable_table(bad, shared=False).to_string()  # one person's machine: the whole story


def test_an_identity_in_a_refusal_is_text_not_a_link(team):
    odd = "[x](http://evil.example/)@example.org"
    Project.open(team[0], actor=LEAD).team.set_roles(Roles({LEAD: Role.LEAD, odd: Role.VIEWER}))
    with pytest.raises(AccessDenied) as err:
        Project.open(team[0], actor=odd).configure(thresholds=(0.5, 0.4))
    assert err.value.message.startswith(f"`{odd}` is a viewer"), err.value.message


def test_what_changed_nothing_is_not_logged(team):
    """Each Save on the Team page logged an entry with before equal to after, and a scan that found everything done
    logged a "scan"."""
    ws = Project.open(team[0], actor=LEAD)
    before = len(AuditLog(team[0]).entries())
    ws.team.set_roles(ws.team.roles())
    ws.scan()
    assert len(AuditLog(team[0]).entries()) == before
    ws.team.set_roles(Roles({LEAD: Role.LEAD, CURATOR: Role.CURATOR, VIEWER: Role.CURATOR}))
    assert [e["action"] for e in AuditLog(team[0]).entries()[before:]] == ["roles"]


def test_signing_out_ends_every_session_of_that_user_on_the_server(tmp_path, monkeypatch):
    """A sign-out cleared only its own tab's cookie: another open tab went on deciding in that name, and a cookie
    copied before the sign-out still signed in. Sessions signed in before the sign-out are sent to sign in again."""
    from ui import access_ui

    monkeypatch.setenv("LEAKCORE_HOME", str(tmp_path / "home"))
    issued = {"at": 1_000.0}
    monkeypatch.setattr(access_ui, "_issued_at", lambda: issued["at"])
    assert not access_ui.signed_out_elsewhere(CURATOR)
    monkeypatch.setattr(access_ui.time, "time", lambda: 2_000.0)
    access_ui.record_sign_out(CURATOR.upper())  # identities compare case-blind
    assert access_ui.signed_out_elsewhere(CURATOR)  # the other tab, or a replayed cookie: signed in at 1,000
    assert not access_ui.signed_out_elsewhere(LEAD)
    monkeypatch.setattr(access_ui, "_provider_user", lambda: CURATOR)
    assert access_ui.signed_in_user() is None  # the identity the core acts for, in a fragment's rerun too
    issued["at"] = 3_000.0  # signed in again afterwards
    assert not access_ui.signed_out_elsewhere(CURATOR) and access_ui.signed_in_user() == CURATOR
    issued["at"] = None  # a provider whose token says nothing of when: not judged
    assert not access_ui.signed_out_elsewhere(CURATOR)


def test_a_role_is_given_to_an_identity_not_to_any_text(team):
    ws = Project.open(team[0], actor=LEAD)
    for odd in ("two words", "tab\tname", "x" * 300):
        with pytest.raises(InvalidInput, match="is not an identity"):
            ws.team.set_roles(Roles({LEAD: Role.LEAD, odd: Role.CURATOR}))
    ws.team.set_roles(Roles({LEAD: Role.LEAD, "dana": Role.CURATOR, "eve.o'neil+x@example.org": Role.VIEWER}))


def test_a_workspace_made_on_a_signed_in_server_is_led_by_its_maker_alone(tmp_path, monkeypatch):
    """Without a roles file everybody leads a workspace: a viewer of the team's opened a lead's new one and could add
    data and scan there."""
    from ui import access_ui

    monkeypatch.setattr(access_ui, "sign_in_configured", lambda: True)
    monkeypatch.setattr(access_ui, "signed_in_user", lambda: LEAD)
    access.set_identity_source(lambda: LEAD)
    made = Project.create(tmp_path / "new-ws", encoder="phash", lead=access_ui.new_workspace_lead())
    roles = made.team.roles()
    assert roles.role_of(LEAD) == Role.LEAD and roles.role_of(VIEWER) == Role.VIEWER
    with pytest.raises(AccessDenied):
        Project.open(made.path, actor=VIEWER).scan()


def test_on_a_signed_in_server_a_workspace_without_roles_is_read_only(tmp_path, monkeypatch):
    """A viewer of the team's workspace opened another one that had no roles file (made on the command line): there
    they led it, exported, and made themselves its lead on the Team page, the team's lead a viewer."""
    from streamlit.testing.v1 import AppTest

    from ui import access_ui

    root = make_folder_dataset(tmp_path / "animals", n_train=4, n_test=2, leaks=(0,))
    open_ws = Project.create(tmp_path / "ws", encoder="phash")
    open_ws.add("animals", root)
    open_ws.scan()
    assert open_ws.team.roles() is None
    access.set_without_roles(Role.VIEWER)  # what the dashboard's gate installs where sign-in is on (reset after)
    access.set_identity_source(lambda: VIEWER)
    with pytest.raises(AccessDenied, match="no roles file"):
        Project.open(open_ws.path).team.start_roles(VIEWER)
    with pytest.raises(AccessDenied, match="read-only"):
        Project.open(open_ws.path).exports.write("animals/test", open_ws.exports.policy("soft"),
                                                 out=str(tmp_path / "x"))
    assert Project.open(open_ws.path).team.roles() is None
    # a workspace made here gets its maker as lead, the only way a roles file starts on such a server
    made = Project.create(tmp_path / "made", encoder="phash", lead=LEAD, actor=LEAD)
    assert made.team.role() == Role.LEAD and Project.open(made.path, actor=VIEWER).team.role() == Role.VIEWER
    # ... and "creating" at an existing workspace only opens it: no roles file is claimed there
    Project.create(open_ws.path, lead=VIEWER)
    assert open_ws.team.roles() is None
    # the Team page says so, with no button to claim it
    monkeypatch.setenv("LEAKCORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEAKCORE_WORKSPACE", str(open_ws.path))
    monkeypatch.setattr(access_ui, "sign_in_configured", lambda: True)
    monkeypatch.setattr(access_ui, "signed_in_user", lambda: VIEWER)
    monkeypatch.setattr(access_ui, "_provider_user", lambda: VIEWER)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("pages/8_Team.py").run()
    assert not at.exception
    assert any("read-only for everyone until its operator gives the roles" in i.value for i in at.info)
    assert not [b for b in at.button if b.key == "team_start"]


def test_a_workspace_can_keep_everyone_unlisted_out(team, monkeypatch, tmp_path):
    """With a sign-in that accepts any account, `default` viewer let a stranger read the roster, the audit log, every
    image and the report: `--default none` shows them only that they are not on the team, and refuses every change."""
    from leakcore import cli
    from ui import access_ui

    assert cli.main(["--reviewer", LEAD, "roles", str(team[0]), "--default", "none"]) == 0
    project = Project.open(team[0])
    assert project.team.roles().default == Role.NONE and project.team.role("stranger@example.org") == Role.NONE
    with pytest.raises(AccessDenied, match="not on this workspace's team"):
        access.require(team[0], "stranger@example.org", access.Action.DECIDE)
    monkeypatch.setenv("LEAKCORE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(access_ui, "sign_in_configured", lambda: True)
    who = {"user": "stranger@example.org"}
    monkeypatch.setattr(access_ui, "signed_in_user", lambda: who["user"])
    for page in (None, "pages/1_Review.py", "pages/8_Team.py"):
        at = _app(team[0], monkeypatch, page)
        assert not at.exception, page
        assert any("not on this workspace's team" in e.value for e in at.error), page
        assert [b.label for b in at.button] == ["Sign out"] and not at.dataframe and not at.get("image"), page
    who["user"] = VIEWER  # a listed viewer reads as before
    at = _app(team[0], monkeypatch, "pages/8_Team.py")
    assert not at.exception and not any("not on this workspace's team" in e.value for e in at.error)
    assert at.dataframe


def test_a_viewer_reads_the_scan_plan(team, capsys):
    """`scan --plan` runs nothing: a viewer was refused it as a change of the scan's settings."""
    assert main(["--reviewer", VIEWER, "scan", str(team[0]), "--plan"]) == 0
    assert "jobs to do" in capsys.readouterr().out
    assert main(["--reviewer", VIEWER, "scan", str(team[0]), "--plan", "--k", "5"]) != 0  # a change: a lead's


def test_only_whoever_may_run_a_job_stops_it_and_the_lead_reads_who_did(team, monkeypatch, tmp_path):
    """A curator pressed Stop on the lead's scan and a viewer on the lead's calibration, and the lead's page said
    only that it was stopped: Stop is off, with the reason, for a role that may not run the job; whoever started it
    or may run it stops it, and the outcome names them."""
    import threading

    from streamlit.testing.v1 import AppTest

    from ui import jobs

    monkeypatch.setenv("LEAKCORE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LEAKCORE_WORKSPACE", str(team[0]))
    gate, real = threading.Event(), Project.scan

    def held(self, *, progress=None, **kwargs):
        while not gate.wait(0.02):
            progress("embed animals/train", 1, 10)
        return real(self, progress=progress, **kwargs)

    monkeypatch.setattr(Project, "scan", held)

    def home(who):
        access.set_identity_source(lambda: who)
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
        at.session_state["reviewer"] = who
        return at.run()

    try:
        home(LEAD).button(key="run_scan").click().run()
        for who in (VIEWER, CURATOR):
            at = home(who)
            assert not at.exception and at.button(key="scan_stop").disabled, who
        other_lead = "leo@example.org"
        Project.open(team[0], actor=LEAD).team.set_roles(
            Roles({LEAD: Role.LEAD, CURATOR: Role.CURATOR, VIEWER: Role.VIEWER, other_lead: Role.LEAD}))
        at = home(other_lead)
        assert not at.button(key="scan_stop").disabled
        at.button(key="scan_stop").click().run()
    finally:
        gate.set()
        jobs.wait()
    at = home(LEAD)
    assert any(f"was stopped by {other_lead}" in w.value for w in at.warning)
