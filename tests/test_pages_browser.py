"""Every page as a curator meets it, in a real browser: the demo workspace and a workspace of real photos, each page
opened with its default choices and its main action run (Measure, Run the audit, Write the export, a key press),
then switches through the sidebar (Review twice in one document) and a reload. Fails on a traceback, an error box,
a console error or a request that leaves the machine (every request of every page and action is watched: a
":material/…:" favicon once was fetched from outside); keeps a screenshot of every page in tests/artifacts/pages/.

The walk on real photos is in test_pages_photos_browser.py (its own file, so that pytest-xdist can run the two
walks at once).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from leakcore.api import Project

from test_browser import CHROMIUM, _launch, _serve, _settle

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "pages"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: `apt-get install chromium` (Debian) to run the browser test"),
]

# page path, text the page shows once drawn, its main action (a button's name or a key), text that shows it ran
PAGES = [
    ("", "Leakage at the thresholds in force", None, None),
    ("/Review", "flagged pairs", "key:ArrowRight", "Pair 2 /"),
    ("/Thresholds", "Flagged evaluation images at these thresholds", "slider", "Flagged evaluation images"),
    ("/Heatmaps", "Hard leakage", None, None),
    ("/Impact", "Measure impact", "Measure impact", "Mean over models"),
    ("/Export", "What each policy removes", "Write the export into the workspace", "Written:"),
    ("/Coverage", "Measure", "Measure", "B images least like A"),
    ("/Shortcuts", "Run the audit", "Run the audit", "Metadata probe"),
]


@pytest.fixture(scope="module")
def demo_ws(demo_built, tmp_path_factory):
    """A copy of the session's demo workspace (built once by `leakcore demo`): the walk writes into it."""
    from conftest import copy_workspace

    return Project.open(copy_workspace(demo_built.path, tmp_path_factory.mktemp("pages") / "demo"))


def _problems(page) -> list[str]:
    """Tracebacks and error boxes on the page now."""
    found = []
    for selector, what in (("[data-testid='stException']", "traceback"), ("[data-testid='stAlertContentError']", "error")):
        loc = page.locator(selector)
        for i in range(loc.count()):
            found.append(f"{what}: {loc.nth(i).inner_text()[:300]}")
    return found


# a page whose main action takes long (the shortcut audit: about half a minute on the demo) is opened and started first,
# in a tab of its own (a session of its own), and checked last: the server computes it while the walk goes through
# the other pages in the first tab
SLOW = ("/Shortcuts",)
# how long a slow page's action may take, counted from the end of the walk through the other pages: on 2 cores that
# also run make test's other workers (and, on a shared machine, other jobs) the demo's audit went past 4 minutes
SLOW_TIMEOUT = 600_000


def _walk(url: str, name: str) -> list[str]:
    """Open every page, run its main action, switch away and back, reload; return everything that went wrong."""
    from playwright.sync_api import expect, sync_playwright

    problems: list[str] = []
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def listen(page):
        # a page opened by its own address makes Streamlit ask for <page>/_stcore/host-config and /health, which
        # answer 404 (Streamlit's own behaviour); every other failed response, and every other console error, counts
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text[:300]}") if m.type == "error" and
                not m.text.startswith("Failed to load resource") else None)
        page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 and not
                r.url.endswith(("/_stcore/host-config", "/_stcore/health")) else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.on("request", lambda r: problems.append(f"outside request: {r.url}") if not r.url.startswith(
            (url, url.replace("http", "ws"), "data:", "blob:")) else None)
        # a code block (st.code, a fenced block) loads Streamlit's syntax highlighter: about 0.7 s of the browser's
        # main thread on a page's first load, once for a workspace path in the sidebar of every page
        page.on("request", lambda r: problems.append(f"loads the code highlighter: {r.url}") if
                "SyntaxHighlighter" in r.url else None)
        return page

    def start(page, path: str, ready: str, action: str | None) -> None:
        """Open the page by its address and run its main action."""
        page.goto(url + path)
        expect(page.get_by_text(ready).first).to_be_visible(timeout=120_000)
        _settle(page)
        if action and action.startswith("key:"):
            page.locator("h1").first.click()
            page.keyboard.press(action.split(":", 1)[1])
        elif action == "slider":
            thumb = page.get_by_role("slider").nth(1)  # the soft slider
            thumb.focus()
            for _ in range(3):
                page.keyboard.press("ArrowLeft")
                page.wait_for_timeout(150)
        elif action:
            page.get_by_role("button", name=action, exact=True).first.click()

    def finish(page, done: str | None, timeout: int = 240_000) -> None:
        """Wait for the text that shows the main action ran, and for the app to stop running."""
        if done:
            expect(page.get_by_text(done).first).to_be_visible(timeout=timeout)
        _settle(page, 1200)

    def check(page, label: str) -> None:
        problems.extend(f"{label}: {p}" for p in _problems(page))
        page.screenshot(path=str(ARTIFACTS / f"{name}-{label}.png"), full_page=True)

    with sync_playwright() as p:
        browser = _launch(p)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = listen(context.new_page())
        started = []  # (tab, label, done) of the slow pages, their action running
        for path, ready, action, done in PAGES:
            if path in SLOW:
                label, tab = path.strip("/") or "Home", listen(context.new_page())
                try:
                    start(tab, path, ready, action)
                    started.append((tab, label, done))
                except AssertionError as exc:  # a page that never showed its text: kept as a problem, with its picture
                    problems.append(f"{label}: {str(exc).splitlines()[0]}")
                    check(tab, label)
        for path, ready, action, done in PAGES:
            if path in SLOW:
                continue
            label = path.strip("/") or "Home"
            try:
                start(page, path, ready, action)
                finish(page, done)
            except AssertionError as exc:  # a page that never showed its text: kept as a problem, with its picture
                problems.append(f"{label}: {str(exc).splitlines()[0]}")
            check(page, label)
        for tab, label, done in started:
            try:
                finish(tab, done, SLOW_TIMEOUT)
            except AssertionError as exc:
                problems.append(f"{label}: {str(exc).splitlines()[0]}")
            check(tab, label)
            tab.close()
        # switch pages through the sidebar and come back, then reload: still no error anywhere. Review twice in one
        # document: its injected script runs again there and must not declare a top-level name twice ("Identifier
        # 'doc' has already been declared" was a console error)
        for target, ready in (("Thresholds", "Thresholds"), ("Review", "flagged pairs"), ("Thresholds", "Thresholds"),
                              ("Review", "flagged pairs"), ("Home", "Leakage at")):
            page.locator("[data-testid='stSidebar']").get_by_role("link", name=target, exact=True).click()
            try:
                expect(page.get_by_text(ready).first).to_be_visible(timeout=60_000)
            except AssertionError as exc:
                problems.append(f"switch to {target}: {str(exc).splitlines()[0]}")
            _settle(page)
            problems += [f"after switching to {target}: {p}" for p in _problems(page)]
        page.reload()
        _settle(page)
        problems += [f"after a reload: {p}" for p in _problems(page)]
        browser.close()
    return problems


def test_every_page_on_the_demo(demo_ws, tmp_path):
    with _serve(demo_ws.path, tmp_path / "home") as url:
        problems = _walk(url, "demo")
    assert problems == [], "\n".join(problems)
