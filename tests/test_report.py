"""The self-contained leakage report: one data structure printed as JSON and drawn as one HTML page that fetches
nothing; findings with thumbnails, verdicts with curators' decisions, calibration, impact, provenance; bounded."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from leakcore import report
from leakcore.api import ImpactRequest, Project
from leakcore.cli import main
from leakcore.downstream import eval_items

from conftest import make_folder_dataset, photo

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@pytest.fixture
def ws(tmp_path) -> Project:
    """animals/test 0, 1, 2 copy animals/train 0, 1, 2 (of 4 test images); zoo/test holds a copy of train 3."""
    root = make_folder_dataset(tmp_path / "animals", n_train=8, n_test=4, leaks=(0, 1, 2))
    zoo = tmp_path / "zoo"
    (zoo / "test").mkdir(parents=True)
    photo(3, (64, 48)).save(zoo / "test" / "copy_of_train3.jpg", quality=80)
    photo(777, (64, 48)).save(zoo / "test" / "fresh.jpg", quality=92)
    project = Project.create(tmp_path / "ws", encoder="phash")
    project.add("animals", root)
    project.add("zoo", zoo, roles={"test": "eval"})
    project.scan()
    return project


def _flagged(project: Project) -> list[tuple[str, str]]:
    f = project.checks.findings("similarity")
    f = f[f["eval_split"] != f["train_split"]].sort_values("score", ascending=False).drop_duplicates("eval_item_id")
    return list(zip(f["eval_item_id"], f["train_item_id"]))


def _outside_references(page: str) -> list[str]:
    """Every src / href / url() / @import in the page that is not a data URI or an anchor in the page."""
    refs = re.findall(r"""(?:src|href|xlink:href|action|poster)\s*=\s*["']?([^"'\s>]+)""", page, flags=re.I)
    refs += re.findall(r"""url\(\s*["']?([^"')]+)""", page, flags=re.I)
    refs += re.findall(r"""@import\s+["']?([^"';]+)""", page, flags=re.I)
    return [r for r in refs if not r.startswith(("data:", "#"))]


def test_html_and_json_come_from_one_structure(ws, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", str(ws.path), "--json", "--html", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    page = out.read_text("utf-8")
    assert report.embedded_data(page) == printed  # the page carries exactly what --json printed
    legacy = ws.report()  # every key `report --json` printed before stays, with the same values
    assert {k: printed[k] for k in legacy} == json.loads(json.dumps(report.plain(legacy)))
    for key in ("verdicts", "findings", "calibration", "provenance", "datasets", "checked", "generated"):
        assert key in printed
    overall = {r["eval_split"]: r for r in printed["rates"]
               if r["check"] == "similarity" and r["train_split"] == "(all training sources)"}
    assert overall["animals/test"]["hard"] == 3 and overall["zoo/test"]["soft"] == 1
    verdicts = {v["eval_split"]: v for v in printed["verdicts"]}
    assert verdicts["animals/test"]["verdict"] == "leaks" and verdicts["animals/test"]["checks"]["similarity"]["hard"] == 3
    assert "75.00%" in page and "50.00%" in page  # the rates as the page writes them: animals 3 of 4, zoo 1 of 2
    # titled by what it covers ("Leakage report: ws" named only a folder)
    assert f"<title>Leakage report: animals, zoo (workspace {ws.path.name})</title>" in page


def test_findings_are_shown_with_embedded_thumbnails_and_nothing_outside(ws, tmp_path):
    page = ws.report_document().html()
    flagged = _flagged(ws)
    assert len(flagged) == 4
    for eval_id, train_id in flagged:
        assert eval_id in page and train_id in page
    thumbs = re.findall(r'<img src="(data:image/(?:webp|jpeg);base64,[A-Za-z0-9+/=]+)"', page)
    assert len(thumbs) >= 2 * len(flagged)
    assert _outside_references(page) == []
    assert "http://" not in page and "https://" not in page  # no CDN script, font or stylesheet; inline SVG needs no xmlns
    assert "<link" not in page.lower() and "<iframe" not in page.lower()
    assert page.count("<svg") >= 2  # the similarity heatmaps, hard and soft, inline
    assert "@media print" in page and 'class="data sortable"' in page and "input type=search" in page


def test_decisions_reach_the_verdict_the_rows_and_the_provenance(ws):
    (e1, t1), (e2, t2), (e3, t3), _ = _flagged(ws)
    ws.decisions.decide(e1, t1, "hard", reviewer="ana")
    ws.decisions.decide(e2, t2, "not_leak", reviewer="ben")
    ws.decisions.decide(e3, t3, "unsure", reviewer="ana")
    doc = ws.report_document()
    d = doc.data
    counts = {v["eval_split"]: v["decisions"] for v in d["verdicts"]}
    total = {k: sum(c[k] for c in counts.values()) for k in ("confirmed", "rejected", "unsure")}
    assert total == {"confirmed": 1, "rejected": 1, "unsure": 1}
    rows = {r["eval_item_id"]: r for r in d["findings"]["similarity"]["strongest"]}
    assert rows[e1]["decision"] == "hard" and rows[e1]["reviewer"] == "ana"
    assert e2 not in rows  # rejected: no longer a finding (decisions first)
    prov = d["provenance"]["decisions"]
    assert prov["in_force"] == 3 and prov["reviewers"] == {"ana": 2, "ben": 1}
    page = doc.html()
    assert "hard leak" in page and "(ana)" in page and "ana (2 in force, 2 made)" in page
    # an undone decision counts among those made, as the total line counts it ("11 made, 1 undone" stood beside the
    # only reviewer's "10 made")
    ws.decisions.decide(e2, t2, "soft", reviewer="ana")
    ws.decisions.undo_last("ana")
    page = ws.report_document().html()
    assert "4 made, 1 undone" in page and "ana (2 in force, 3 made, 1 undone)" in page
    auto = ws.report_document(use_decisions=False).data
    assert {r["eval_item_id"] for r in auto["findings"]["similarity"]["strongest"]} >= {e1, e2, e3}


def test_top_bounds_the_findings_and_counts_the_rest(ws):
    d = ws.report_document(top=1).data["findings"]["similarity"]
    assert len(d["strongest"]) == 1
    assert len(d["strongest"]) + len(d["weakest"]) + d["not_shown"] == d["items"] == 4
    scores = [r["score"] for r in d["strongest"] + d["weakest"]]
    assert scores == sorted(scores, reverse=True)  # strongest first, the weakest last
    page = ws.report_document(top=1).html()
    assert "1 strongest shown" in page
    data = report.build(ws, top=1, weakest=0).data["findings"]["similarity"]
    assert data["weakest"] == [] and data["not_shown"] == 3


def test_thumbnail_budget_leaves_pictures_out_not_findings(ws):
    doc = ws.report_document()
    small = doc.html(budget=1)
    assert "data:image/" not in small and small.count("no picture") >= 8
    for eval_id, _ in _flagged(ws):
        assert eval_id in small


def test_calibration_and_impact_sections(ws, tmp_path):
    ws.calibrate("animals/train", queries=8)
    items = eval_items(ws.workspace, "animals/test")
    preds = tmp_path / "m_predictions.json"
    preds.write_text(json.dumps(list(items["label"])))
    doc = ws.report_document(impact=ImpactRequest("animals/test", (str(preds),), n_random=50))
    cal = doc.data["calibration"]["calibration"]
    assert cal["collection"] == "animals/train" and cal["robustness"] and cal["roc"]["all edits"]["fpr"]
    assert set(cal["operating_points"]) >= {"hard", "soft"}
    imp = doc.data["impact"]
    assert imp["split"] == "animals/test" and imp["models"] == 1
    assert {r["subset"] for r in imp["summary"]} >= {"full", "soft-leaked", "non-leaked"}
    page = doc.html()
    assert "Robustness: top-1 accuracy" in page and "ROC of the edits" in page and "Mean over models" in page
    assert page.count("<polyline") >= 2
    assert not re.search(r'=[^"\s>]+/>', page)  # `a=b/>` would swallow the slash: the SVG's next elements vanish
    assert _outside_references(page) == []
    # a result measured already (the Impact page's download: a dashboard-only user could not put impact in a report)
    measured = ws.impact(ImpactRequest("animals/test", (str(preds),), n_random=50))
    again = ws.report_document(impact=measured).data["impact"]
    assert again["summary"] == imp["summary"] and again["models"] == 1


def test_cli_report_impact_options_and_errors(ws, tmp_path, capsys):
    items = eval_items(ws.workspace, "animals/test")
    preds = tmp_path / "m_predictions.json"
    preds.write_text(json.dumps(list(items["label"])))
    out = tmp_path / "r.html"
    # --split, as the error of a workspace with several evaluation splits says (and the impact command takes)
    assert main(["report", str(ws.path), "--html", str(out), "--predictions", str(preds),
                 "--split", "animals/test", "--top", "2"]) == 0
    said = capsys.readouterr().out
    assert f"wrote {out}" in said and "self-contained" in said and "hard >=" in said  # the terminal report too
    data = report.embedded_data(out.read_text())
    assert data["impact"]["models"] == 1 and data["settings"]["top"] == 2
    assert out.stat().st_mode & 0o644 == 0o644
    assert main(["report", str(ws.path), "--predictions", str(preds)]) == 2
    assert "add --html FILE and/or --json" in capsys.readouterr().err
    assert main(["report", str(ws.path), "--html", str(out), "--fail-above-hard", "10"]) == 1  # the gate still holds


def test_embeddings_only_and_unreadable_items_have_no_picture(tmp_path):
    root = make_folder_dataset(tmp_path / "a", n_train=4, n_test=2, leaks=(0,))
    project = Project.create(tmp_path / "ws", encoder="phash")
    project.add("a", root)
    project.scan()
    train = project.workspace.items().query("split == 'train'")
    Path(train.iloc[0]["uri"]).unlink()  # gone since the scan: the report still lists the finding
    page = project.report_document().html()
    assert "no picture" in page
    assert report.embedded_data(page)["findings"]["similarity"]["items"] == 1


def test_groups_are_strips_and_temporal_findings_pairs(tmp_path):
    import pandas as pd

    root = tmp_path / "imgs"
    root.mkdir()
    rows = [("a.jpg", "train", "p1", "2024-05-01T10:00:00Z", 1), ("a2.jpg", "train", "p1", "2024-05-01T10:00:10Z", 7),
            ("b.jpg", "test", "p1", "2024-05-01T10:00:30Z", 2), ("d.jpg", "train", "", "", 4),
            ("e.jpg", "test", "", "", 5)]
    for path, *_, seed in rows:
        photo(seed, (64, 48)).save(root / path, quality=92)
    pd.DataFrame([r[:4] for r in rows], columns=["path", "split", "group", "timestamp"]).to_csv(tmp_path / "m.csv",
                                                                                            index=False)
    project = Project.create(tmp_path / "w", encoder="phash")
    project.add("m", tmp_path / "m.csv", root=root)
    project.scan()
    doc = project.report_document()
    g = doc.data["findings"]["group"]
    assert g["groups"] == 1 and g["items"] == 1
    strip = g["strongest"][0]
    assert strip["degree"] == "hard" and strip["size"] == 3 and [m["role"] for m in strip["members"]] == [
        "eval", "train", "train"]  # evaluation members first
    t = doc.data["findings"]["temporal"]
    assert t["items"] == 1 and t["strongest"][0]["eval_item_id"].endswith("b.jpg") and t["strongest"][0]["score"] == 20
    verdict = doc.data["verdicts"][0]
    assert verdict["checks"]["group"]["hard"] == 1 and verdict["checks"]["temporal"]["soft"] == 1
    page = doc.html()
    assert page.count('class="th eval') >= 2 and "members (evaluation first)" in page and "seconds apart" in page
    strip_files = page[page.index('id="t-find-group"'):].split("</table>")[0]
    assert all(f"/{name}</span>" in strip_files for name in ("b.jpg", "a.jpg", "a2.jpg"))  # every member named
    assert "belong to a group" in page
    # the next step names the checks an export removes by only when asked (a new user's export by it kept the images
    # whose group reached training)
    assert "--also-remove group --also-remove temporal`" in " ".join(verdict["words"])


def test_home_page_offers_the_report_built_when_clicked(ws, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("LEAKCORE_WORKSPACE", str(ws.path))
    monkeypatch.setenv("LEAKCORE_HOME", str(tmp_path / "home"))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception
    buttons = [b for b in at.get("download_button") if "leakage report" in b.proto.label]
    assert len(buttons) == 1
    assert buttons[0].proto.deferred_file_id and buttons[0].proto.ignore_rerun  # made on click, no rerun


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: `apt-get install chromium` (Debian) to run the browser test")
def test_opens_offline_in_chromium_sorts_filters_and_prints(ws, tmp_path):
    from playwright.sync_api import sync_playwright

    ws.calibrate("animals/train", queries=8)
    out = tmp_path / "report.html"
    ws.report_document().write_html(out)
    url = out.as_uri()
    requests, failed = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        context = browser.new_context(viewport={"width": 1300, "height": 900}, offline=True)
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("requestfailed", lambda r: failed.append(r.url))
        context.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort())
        page.goto(url)
        page.wait_for_load_state("load")
        assert [r for r in requests if r != url] == [] and failed == []
        sizes = page.eval_on_selector_all("figure.th img", "imgs => imgs.map(i => i.complete && i.naturalWidth)")
        assert sizes and all(sizes)  # every embedded thumbnail decoded
        for selector, least in (("svg.chart > polyline", 6), ("svg.heatmap > g > rect", 4)):  # ROC curves, cells
            widths = page.eval_on_selector_all(selector, "els => els.map(e => e.getBBox().width)")
            assert len(widths) >= least and all(w > 0 for w in widths), selector  # drawn, not swallowed
        assert page.eval_on_selector_all("svg.chart > text", "ts => ts.length") >= 10  # axes and legend
        # the verdict table fits the page, its headers wrapped (at 1,400 px a new user had to scroll it sideways)
        assert page.eval_on_selector("#t-verdicts", "t => t.scrollWidth <= t.parentElement.clientWidth")
        first = "#t-find-similarity tbody tr:first-child td:nth-child(3)"
        top = float(page.text_content(first))
        page.click("#t-find-similarity th:nth-child(3)")  # ascending
        assert float(page.text_content(first)) <= top
        page.click("#t-find-similarity th:nth-child(3)")  # descending
        assert float(page.text_content(first)) == top
        page.fill("input.filter[data-table=t-rates]", "zoo/test within")
        visible = page.eval_on_selector_all("#t-rates tbody tr", "rs => rs.filter(r => r.style.display !== 'none').length")
        assert visible == 1
        page.fill("input.filter[data-table=t-rates]", "")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "report-page.png"), full_page=False)
        page.emulate_media(media="print")
        assert not page.is_visible("input.filter[data-table=t-rates]")
        pdf = page.pdf(path=str(tmp_path / "report.pdf"), format="A4", print_background=True)
        browser.close()
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page[^s]", pdf)) >= 3
    assert [r for r in requests if r != url] == []


def test_the_histogram_legend_sits_above_the_plot_where_no_threshold_label_falls_on_it():
    """A soft threshold under the legend's old place (left of the middle) once put its label on the legend."""
    edges = [0.45 + 0.01 * i for i in range(56)]
    hist = [{"left": a, "right": b, "positives": 3, "negatives": 5} for a, b in zip(edges, edges[1:])]
    svg = report.histogram_svg(hist, {"soft 0.717": 0.7171, "hard 0.730": 0.73}, "similarity")
    plot_top = float(re.search(r'<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="[\d.]+" fill="#fbfbfc"', svg).group(1))
    legend = [float(y) for y in re.findall(r'<text x="[\d.]+" y="([\d.]+)" class=legend>', svg)]
    marks = [float(y) for y in re.findall(r'<text x="[\d.]+" y="([\d.]+)" text-anchor=end class=mark', svg)]
    assert len(legend) == 2 and len(marks) == 2
    assert max(legend) < plot_top < min(marks)  # the legend's row is above the plot, the labels inside it
    assert abs(marks[0] - marks[1]) >= 12  # close thresholds: their labels on rows of their own


def test_with_the_fused_score_in_force_the_report_does_not_call_its_thresholds_the_encoder_s_defaults():
    """A new user read "No calibration is stored ...: the thresholds are the encoder's defaults" beside the fused
    model's thresholds in force."""
    from leakcore import report

    fused = {"in_use": True, "hard": 0.9958, "soft": 0.5, "candidate": 0.3, "suite_pairs": 207, "queries": 16,
             "decisions_used": 0, "auc": 1.0, "raw_auc": 1.0, "threshold_rule": "look-alikes", "features": ["ncc"],
             "created": "2026-12-05"}
    data = {"settings": {"thresholds_source": "fused model"},
            "calibration": {"hard": 0.9958, "soft": 0.5, "score": "fused", "calibration": None, "fused": fused,
                            "encoder_default": {"hard": 0.9, "soft": 0.6, "from": "the suite"}}}
    page = report._thresholds_html(data)
    assert "No calibration is stored" not in page and "The thresholds in force are the fused score's" in page
    data["calibration"]["fused"] = {**fused, "in_use": False}
    assert "No calibration is stored in this workspace: the thresholds are the encoder's" in report._thresholds_html(data)


def test_the_report_shows_the_closest_evaluation_images_that_are_not_flagged(ws):
    """What was not flagged, nearest the threshold first, with pictures: on a clean dataset the report showed nothing
    at all to look at (a new user read the neighbour tables by hand)."""
    doc = ws.report_document(top=2)
    section = doc.data["findings"]["similarity"]
    flagged = {e for e, _ in _flagged(ws)}
    closest = section["closest"]
    assert closest and not {r["eval_item_id"] for r in closest} & flagged
    assert len({r["eval_item_id"] for r in closest}) == len(closest)  # one row per evaluation image
    assert [r["score"] for r in closest] == sorted((r["score"] for r in closest), reverse=True)
    assert all(r["train_split"] != r["eval_split"] and r["reason"] == "below soft" for r in closest)
    _, soft = ws.scores.thresholds()
    assert max(r["score"] for r in closest) < soft
    page = doc.html()
    assert "the closest not flagged" in page
    assert "t-closest-similarity" in page
    assert closest[0]["eval_item_id"] in page and "data:image/" in page


def test_a_pair_a_curator_rejected_is_named_so_among_the_closest_not_flagged(ws):
    """A team lead's report listed two planted copies that curators rejected (0.97 and 0.96) under "the closest not
    flagged" as "not reviewed", degree none, "below soft"."""
    (e, t), *_ = _flagged(ws)
    ws.decisions.decide(e, t, "not_leak", reviewer="cora")
    closest = {r["eval_item_id"]: r for r in ws.report_document(top=2).data["findings"]["similarity"]["closest"]}
    row = closest[e]
    assert (row["decision"], row["reviewer"], row["reason"]) == ("not_leak", "cora", "rejected by a curator"), row
    assert all(r["reason"] == "below soft" for k, r in closest.items() if k != e)


def test_a_pair_within_a_split_found_from_both_ends_counts_once():
    """Review lists such a pair once; the report said "12 pairs inside an evaluation split" for 6."""
    import pandas as pd

    f = pd.DataFrame({"eval_split": ["d/test"] * 3, "train_split": ["d/test", "d/test", "d/train"],
                      "eval_item_id": ["a", "b", "b"], "train_item_id": ["b", "a", "x"], "score": [0.99, 0.99, 0.9],
                      "degree": ["hard", "hard", "soft"], "decision": [pd.NA] * 3, "reason": ["r"] * 3})
    items = pd.DataFrame({"label": ["cat"] * 3}, index=pd.Index(["a", "b", "x"], name="item_id"))
    section = report._pair_section("similarity", f, items, {}, top=10, weakest=0)
    assert section["within_split_pairs"] == 1 and section["within_split_items"] == 2 and section["findings"] == 2
    assert [(r["eval_item_id"], r["train_item_id"]) for r in section["within"]] == [("a", "b")]  # listed once


def test_pairs_inside_a_split_are_shown_with_their_pictures_and_the_report_says_what_to_do(tmp_path):
    """A team lead read "3 pairs inside the split are counted in the rates, not listed here" and never saw them, and
    found no next step in the report."""
    root = make_folder_dataset(tmp_path / "d", n_train=6, n_test=4, leaks=(0,))
    (root / "test" / "dog" / "test_003_again.jpg").write_bytes((root / "test" / "dog" / "test_003.jpg").read_bytes())
    project = Project.create(tmp_path / "ws", encoder="phash")
    project.add("d", root)
    project.scan()
    rep = project.report_document()
    section = rep.data["findings"]["similarity"]
    inside = {tuple(sorted((r["eval_item_id"], r["train_item_id"]))) for r in section["within"]}
    assert inside == {("d/test/dog/test_003.jpg", "d/test/dog/test_003_again.jpg")}
    page = rep.html()
    assert "pairs inside an evaluation split</h3>" in page and "t-within-similarity" in page
    for item in inside.pop():
        assert f'alt="{item}"' in page  # its picture
    words = " ".join(rep.data["verdicts"][0]["words"])
    assert f"leakcore export {project.path} --split d/test --policy soft --dedupe-within" in words  # its own path
    assert f"leakcore resplit {project.path} --dataset d" in words and " WS " not in page
    # checks by their titles, not their names (a new user read `label_conflict` as a column heading)
    assert "Near-duplicates in training · soft" in page and "<h3>similarity" not in page


def test_the_report_lists_the_re_splits_written_from_the_workspace(ws, tmp_path):
    """A re-split was in the audit log but not among the report's exports."""
    ws.resplit("animals", test_size=0.3)
    doc = ws.report_document()
    rs = doc.data["provenance"]["resplits"]
    assert [(r["folder"], r["dataset"], r["current"]) for r in rs] == [("animals-resplit", "animals", True)]
    assert rs[0]["train"] + rs[0]["test"] == 12 and rs[0]["written_at"]
    assert "Re-splits of this workspace" in doc.html()


def test_the_report_names_the_files_no_check_could_read_and_why(tmp_path, capsys):
    """A reader saw only a count of unreadable files, and no way to find them without the app."""
    root = make_folder_dataset(tmp_path / "a", n_train=4, n_test=2)
    (root / "test" / "cat" / "empty.jpg").write_bytes(b"")
    (root / "test" / "cat" / "notes.jpg").write_text("not a picture")
    project = Project.create(tmp_path / "ws", encoder="phash")
    project.add("a", root)
    project.scan()
    doc = project.report_document()
    named = {u["item_id"]: u["reason"] for d in doc.data["datasets"] for u in d["unreadable"]}
    assert set(named) == {"a/test/cat/empty.jpg", "a/test/cat/notes.jpg"} and all(named.values())
    page = doc.html()
    assert "Files no check could read" in page and "a/test/cat/notes.jpg" in page
    from leakcore.cli import main

    assert main(["report", str(project.path)]) == 0
    out = capsys.readouterr().out
    assert "files no check could read (not checked; an export leaves them out): 2" in out and "empty.jpg" in out


def test_an_export_stays_current_after_a_scan_that_changes_nothing_it_read(ws, tmp_path):
    """After `scan --grouping` a new user's export read "no: made from other inputs" though its flags had not
    changed: the settings file and the training splits' searches moved the inputs' time."""
    ws.exports.write("animals/test", ws.exports.policy("soft"), out=str(ws.workspace.exports_dir / "clean"))
    assert [e["current"] for e in ws.report_document().data["provenance"]["exports"]] == [True]
    import time

    time.sleep(1.1)  # the inputs' time is kept to the second
    ws.scan(grouping=True)
    assert [e["current"] for e in ws.report_document().data["provenance"]["exports"]] == [True]
    # an export written outside the workspace (`export --out`) is listed too, by its folder (the report said "No
    # export has been written" after a new user's export to a folder of their own)
    ws.exports.write("animals/test", ws.exports.policy("hard"), out=str(tmp_path / "mine"))
    listed = ws.report_document().data["provenance"]["exports"]
    assert [e["folder"] for e in listed] == ["clean", str(tmp_path / "mine")]


def test_the_terminal_report_names_the_flagged_images_with_their_match(ws, capsys):
    """A new user's terminal report gave rates only, and `--top` promised findings it did not show."""
    assert main(["report", str(ws.path)]) == 0
    out = capsys.readouterr().out
    listed = out[out.index("flagged images, strongest first"):]
    for eval_id, train_id in _flagged(ws):
        assert f"{eval_id}  ~ {train_id}" in listed
    assert "animals/test, with a match in training: 3" in listed and "zoo/test, with a match in training: 1" in listed
    assert main(["report", str(ws.path), "--top", "1"]) == 0
    assert "… and 2 more (--top N lists more)" in capsys.readouterr().out


def test_decisions_made_from_the_training_end_and_inside_the_split_are_counted_with_their_reviewer(tmp_path):
    """A group's K is recorded on the pairs that link it, training image first: the report named no reviewer for them
    and left them out of "curators confirmed"; a new user's two confirmed duplicates inside the split read as
    "confirmed 0"."""
    root = make_folder_dataset(tmp_path / "d", n_train=6, n_test=4, leaks=(0, 1))
    (root / "test" / "dog" / "test_003_again.jpg").write_bytes((root / "test" / "dog" / "test_003.jpg").read_bytes())
    project = Project.create(tmp_path / "ws", encoder="phash")
    project.add("d", root)
    project.scan()
    (e1, t1), (e2, t2) = [p for p in _flagged(project)]
    project.decisions.decide(t1, e1, "same_source", reviewer="kim")  # from the training end
    project.decisions.decide(e2, t2, "hard", reviewer="ana")
    project.decisions.decide("d/test/dog/test_003_again.jpg", "d/test/dog/test_003.jpg", "hard", reviewer="ana")
    d = project.report_document().data
    counts = d["verdicts"][0]["decisions"]
    assert (counts["confirmed"], counts["within_confirmed"], counts["reviewers"]) == (2, 1, ["ana", "kim"])
    rows = {r["eval_item_id"]: r for r in d["findings"]["similarity"]["strongest"]}
    assert (rows[e1]["decision"], rows[e1]["reviewer"]) == ("same_source", "kim")
    words = " ".join(d["verdicts"][0]["words"])
    assert "curators confirmed 2, rejected 0 and were unsure of 0 of its images with a match in training (by " \
           "image: as a near-duplicate or as one source" in words
    assert "; they confirmed 1 and rejected 0 pairs of duplicates inside the split" in words


def test_byte_identical_files_inside_a_split_are_counted_and_named(tmp_path, capsys):
    """A new user's two copies of one file inside training were seen nowhere: a scan compares training images with
    one another only with --grouping, and then only as groups."""
    root = make_folder_dataset(tmp_path / "d", n_train=5, n_test=2)
    (root / "train" / "cat" / "again.jpg").write_bytes((root / "train" / "cat" / "train_000.jpg").read_bytes())
    project = Project.create(tmp_path / "ws", encoder="phash")
    project.add("d", root)
    project.scan()
    data = project.report_document().data
    assert data["datasets"][0]["identical"] == [{"split": "d/train",
                                                 "files": ["d/train/cat/again.jpg", "d/train/cat/train_000.jpg"]}]
    assert {s["split"]: s["identical"] for s in data["datasets"][0]["splits"]} == {"test": 0, "train": 1}
    assert "Byte-identical files inside a split" in project.report_document().html()
    assert main(["report", str(project.path)]) == 0
    assert "byte-identical copies inside a split (the same file again; a re-split keeps each set on one side): " \
           "d/train 1" in capsys.readouterr().out


def test_labels_of_two_close_thresholds_on_the_roc_do_not_overlap():
    """A newcomer's report drew "calibrated hard 0.9436" over "calibrated soft 0.9356"."""
    curves = {"all edits": {"fpr": [0.0001, 0.001, 0.01, 0.1, 1.0], "tpr": [0.2, 0.5, 0.8, 0.95, 1.0]}}
    points = {"calibrated hard": {"fpr": 0.001, "tpr": 0.30, "threshold": 0.9436},
              "calibrated soft": {"fpr": 0.0011, "tpr": 0.31, "threshold": 0.9356}}
    svg = report.roc_svg(curves, points, "ROC")
    ys = [float(y) for y in re.findall(r'<text x="[^"]+" y="([^"]+)" class=mark', svg)]
    assert len(ys) == 2 and abs(ys[0] - ys[1]) >= 13


def test_a_picture_that_cannot_be_read_now_is_said_on_the_page_and_in_the_terminal(tmp_path, capsys):
    """A new user's report showed "no picture" for files moved since the scan, and said nothing else."""
    from leakcore.cli import main

    root = make_folder_dataset(tmp_path / "d", n_train=6, n_test=4, leaks=(0, 2))
    project = Project.create(tmp_path / "ws", encoder="phash")
    project.add("d", root)
    project.scan()
    (root / "test" / "cat" / "test_000.jpg").unlink()  # a flagged image, gone since the scan
    rep = project.report_document()
    page = rep.html()
    assert rep.pictures_unreadable == ["d/test/cat/test_000.jpg"] and "1 of the images below could not be read" in page
    assert main(["report", str(project.path), "--html", str(tmp_path / "r.html")]) == 0
    assert "warning: 1 of the findings' images could not be read now" in capsys.readouterr().err


def test_a_workspace_never_scanned_is_not_called_clean_and_fails_the_gate(tmp_path, capsys):
    """A new user's workspace that was only added (or whose scan was stopped before its search) read 0% everywhere:
    the HTML report's badge said CLEAN, the JSON verdict "clean", and `report --fail-above similarity=1` passed it."""
    from conftest import make_folder_dataset

    project = Project.create(tmp_path / "ws", encoder="phash")
    project.add("d", make_folder_dataset(tmp_path / "d", n_train=4, n_test=2, leaks=(0,)))
    assert project.checks.unscanned() == [("d/test", "d/train")]
    assert main(["report", str(project.path), "--fail-above", "similarity=1"]) == 1
    err = capsys.readouterr().err
    assert "NOT SCANNED: d/test vs d/train" in err and "FAIL not scanned: d/test vs d/train" in err
    assert "PASS" not in err
    data = Project.open(project.path).report_document().data
    v = data["verdicts"][0]
    assert v["verdict"] == "unscanned" and v["words"][0].startswith("not scanned against d/train")
    out = tmp_path / "r.html"
    assert main(["report", str(project.path), "--html", str(out)]) == 0  # no gate asked: said, not failed
    assert "not scanned" in out.read_text() and ">clean<" not in out.read_text()
    capsys.readouterr()
    project.scan()
    assert Project.open(project.path).checks.unscanned() == []
    assert not Project.open(project.path).checks.verification_pending()  # small images: verification off
    Project.open(project.path).configure(verify=True)  # on, and not fitted yet (as a scan stopped before its fit)
    assert Project.open(project.path).checks.verification_pending()
    assert main(["report", str(project.path)]) == 0
    assert "verification is on but not done yet" in capsys.readouterr().err
    assert main(["report", str(project.path), "--fail-above", "similarity=100"]) == 0
    assert "NOT SCANNED" not in capsys.readouterr().err
