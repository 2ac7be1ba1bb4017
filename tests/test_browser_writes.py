"""The curator's path in a real browser, the tests that write (decisions, a calibration) or need a workspace of their
own: each gets a dashboard of its own (the `server` fixture). test_browser.py holds the tests that share one
dashboard; the two files are apart so that pytest-xdist (`--dist loadfile`) runs them at once.
"""
from __future__ import annotations

import time

import pytest

from leakcore import review
from leakcore.ingest import add_dataset
from leakcore.project import Workspace
from leakcore.scan import scan

from conftest import copy_workspace, photo
from test_browser import ARTIFACTS, _open, _serve, _settle, browser, chromium, pytestmark  # noqa: F401


@pytest.fixture
def server(scanned_workspace_built, tmp_path):
    """A dashboard of its own on a copy of the scanned animals workspace (6 training, 4 test images, 3 of them
    copies; phash, no calibration): for a test that writes (decisions, a calibration)."""
    ws = Workspace.open(copy_workspace(scanned_workspace_built, tmp_path / "ws"))
    with _serve(ws.path, tmp_path / "home") as url:
        yield url, ws


def _until(condition, what: str, timeout: float = 30) -> None:
    """Wait until `condition()` holds (a decision written by the server), or fail naming `what`."""
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            pytest.fail(f"{what}: not seen within {timeout:.0f} s")
        time.sleep(0.25)


def test_decide_by_click_and_key_then_reload(server, browser):
    from playwright.sync_api import expect

    url, ws = server
    with browser:
        page = _open(browser, url + "/Review", "Reviewed 0 of 3 flagged pairs")
        expect(page.get_by_role("button", name="Hard leak")).to_be_disabled()  # no anonymous decisions
        page.get_by_role("textbox", name="Reviewer").fill("browser-test")
        page.get_by_role("textbox", name="Reviewer").press("Enter")
        expect(page.get_by_role("button", name="Hard leak")).to_be_enabled(timeout=30_000)
        page.get_by_role("button", name="Hard leak").click()
        expect(page.get_by_text("Reviewed 1 of 3 flagged pairs")).to_be_visible(timeout=30_000)
        page.locator("h1").first.click()  # focus the page, not a text field, so the shortcut reaches the app
        page.keyboard.press("n")
        expect(page.get_by_text("Reviewed 2 of 3 flagged pairs")).to_be_visible(timeout=30_000)
        page.reload()
        expect(page.get_by_text("Reviewed 2 of 3 flagged pairs")).to_be_visible(timeout=60_000)
        page.wait_for_timeout(1500)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "review-page.png"), full_page=True)
        browser.close()
    decisions = review.latest_decisions(ws)
    assert sorted(decisions["decision"]) == ["hard", "not_leak"]
    assert set(decisions["reviewer"]) == {"browser-test"}


def test_a_page_switch_keeps_the_reviewer_filters_and_thresholds(server, browser):
    """Through the sidebar to another page and back: the Reviewer, the filters and the thresholds are as they were
    (Streamlit forgets widgets a page does not draw), and undo never undoes another reviewer's decision."""
    from playwright.sync_api import expect

    url, ws = server
    first = review.build_queue(__import__("leakcore.leakage", fromlist=["x"]).load_pairs(ws),
                               ws.items().set_index("item_id"), *ws.thresholds()).iloc[0]
    review.decide(ws, first["eval_item_id"], first["train_item_id"], "unsure", reviewer="someone-else")
    with browser:
        page = _open(browser, url + "/Thresholds", "Flagged evaluation images")
        hard_slider = page.locator("input[type='range'][aria-label='Hard threshold']")
        soft_slider = page.locator("input[type='range'][aria-label='Soft threshold']")

        def values():
            expect(hard_slider).to_have_count(1, timeout=30_000)  # the page may still be drawing
            expect(soft_slider).to_have_count(1, timeout=30_000)
            return hard_slider.get_attribute("value"), soft_slider.get_attribute("value")

        hard_before, soft_before = values()
        # phash's defaults (0.9375, 0.6875), within the slider's step
        assert abs(float(hard_before) - 0.9375) <= 0.001 and abs(float(soft_before) - 0.6875) <= 0.001
        page.get_by_role("textbox", name="Reviewer").fill("alice")
        page.get_by_role("textbox", name="Reviewer").press("Enter")
        page.wait_for_timeout(1000)
        page.get_by_role("link", name="Review").click()
        expect(page.get_by_text("flagged pairs").first).to_be_visible(timeout=30_000)
        assert page.get_by_role("textbox", name="Reviewer").input_value() == "alice"
        page.get_by_role("link", name="Thresholds").click()
        expect(page.get_by_text("Flagged evaluation images")).to_be_visible(timeout=30_000)
        page.wait_for_timeout(1500)
        assert values() == (hard_before, soft_before)  # it showed 0.0000 / 0.0000 before the fix
        assert page.get_by_role("textbox", name="Reviewer").input_value() == "alice"
        page.get_by_role("link", name="Review").click()
        expect(page.get_by_role("button", name="Not a leak")).to_be_enabled(timeout=30_000)
        expect(page.get_by_role("button", name="Undo")).to_be_disabled()  # alice has nothing to undo
        page.locator("h1").first.click()
        page.keyboard.press("z")  # alice has decided nothing: someone-else's decision must stay
        page.wait_for_timeout(2000)
        # the keys do work here: alice's own decision by key is undone by key, and someone-else's still stays
        page.keyboard.press("n")
        _until(lambda: "alice" in set(review.latest_decisions(ws)["reviewer"]), "alice's decision by key")
        expect(page.get_by_role("button", name="Undo")).to_be_enabled(timeout=30_000)
        page.locator("h1").first.click()
        page.keyboard.press("z")
        _until(lambda: "alice" not in set(review.latest_decisions(ws)["reviewer"]), "alice's decision undone by key")
        page.wait_for_timeout(1000)
        browser.close()
    d = review.latest_decisions(ws)
    assert list(d["reviewer"]) == ["someone-else"] and list(d["decision"]) == ["unsure"]


def test_grid_mode_keys_move_between_images_and_decide_the_ticked(server, browser):
    """Grid mode: → and ← go to the next and previous evaluation image, Shift+N decides the ticked neighbours
    and the grid moves on to the next undecided image."""
    from playwright.sync_api import expect

    url, ws = server
    with browser:
        page = _open(browser, url + "/Review", "Reviewed 0 of 3 flagged pairs")
        page.get_by_role("textbox", name="Reviewer").fill("grid-test")
        page.get_by_role("textbox", name="Reviewer").press("Enter")
        expect(page.get_by_role("button", name="Hard leak")).to_be_enabled(timeout=30_000)
        page.get_by_text("Grid mode").click()
        expect(page.get_by_role("button", name="Next image")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Evaluation image 1 / 3")).to_be_visible()
        page.locator("h1").first.click()  # the page has the focus, not the toggle
        page.keyboard.press("ArrowRight")
        expect(page.get_by_text("Evaluation image 2 / 3")).to_be_visible(timeout=30_000)
        expect(page.get_by_role("button", name="Previous image")).to_be_enabled(timeout=30_000)  # redrawn
        page.keyboard.press("ArrowLeft")
        expect(page.get_by_text("Evaluation image 1 / 3")).to_be_visible(timeout=30_000)
        ticked = page.locator("[data-testid='stMain']").get_by_role("checkbox")  # the Grid mode toggle is a switch
        expect(ticked.first).to_be_checked()
        page.keyboard.press("Shift+N")
        expect(page.get_by_text("Reviewed 1 of 3 flagged pairs")).to_be_visible(timeout=30_000)
        # the decided pair left the queue of unreviewed pairs: the grid shows the next image, its neighbour ticked
        expect(page.get_by_text("Evaluation image 1 / 2")).to_be_visible(timeout=30_000)
        expect(ticked.first).to_be_checked()
        browser.close()
    decisions = review.latest_decisions(ws)
    assert list(decisions["decision"]) == ["not_leak"] and list(decisions["reviewer"]) == ["grid-test"]


def test_a_calibration_runs_in_the_background_and_the_page_shows_its_result(server, browser):
    """Thresholds without a calibration: the form starts one in the background (the page keeps working, a bar
    reports it), and when it ends the page shows the ROC and the suggested thresholds without a reload. The
    Reviewer name typed before stays on the next page: the bar's fragment, redrawn twice a second, made the session
    forget it during a 30 s calibration on photos (a race this short one does not meet: the rule that every fragment
    keeps the page's widget state is test_architecture's)."""
    from playwright.sync_api import expect

    url, ws = server
    with browser:
        page = _open(browser, url + "/Thresholds", "No calibration for phash")
        name = page.get_by_role("textbox", name="Reviewer")
        name.fill("alice")
        name.press("Tab")
        _settle(page)
        page.get_by_role("combobox", name="Collection").click()
        page.get_by_role("option", name="animals/train").click()
        queries = page.get_by_role("spinbutton", name="Queries")
        queries.fill("10")  # the form's least
        queries.press("Tab")
        page.get_by_role("button", name="Calibrate phash").click()
        expect(page.get_by_text("ROC of non-semantic edits")).to_be_visible(timeout=120_000)
        expect(page.get_by_text("suggested hard").first).to_be_visible()
        # how it ended, outside the folded "Run a new calibration" box (it was hidden in it)
        expect(page.get_by_text("Calibration of phash on animals/train done").first).to_be_visible()
        assert page.locator("[data-testid='stException']").count() == 0
        page.locator("[data-testid='stSidebar']").get_by_role("link", name="Heatmaps", exact=True).click()
        expect(page.get_by_text("Hard leakage").first).to_be_visible(timeout=60_000)
        expect(page.get_by_role("textbox", name="Reviewer")).to_have_value("alice")
        browser.close()
    assert (ws.calibration_dir("phash") / "thresholds.json").exists()


def test_the_aligned_view_shows_the_photos_at_display_resolution(tmp_path, browser):
    """The aligned view draws the photos moved by the alignment at its own display size (the picture's native
    width is the width on screen, at least 256 px), with detail finer than the 32 px working grid."""
    import base64
    import io

    import numpy as np
    from PIL import Image, ImageOps
    from playwright.sync_api import expect

    root = tmp_path / "photos"
    for split, names in (("train", ("a", "b", "c")), ("test", ("a_mirrored", "d"))):
        (root / split / "x").mkdir(parents=True)
    for seed, name in enumerate(("a", "b", "c")):
        photo(seed, (400, 300)).save(root / "train" / "x" / f"{name}.jpg", quality=92)
    ImageOps.mirror(photo(0, (400, 300))).save(root / "test" / "x" / "a_mirrored.jpg", quality=92)
    photo(7, (400, 300)).save(root / "test" / "x" / "d.jpg", quality=92)
    ws = Workspace.create(tmp_path / "ws", encoder="phash")
    add_dataset(ws, "photos", root)
    scan(ws, flip_queries=True)
    with _serve(ws.path, tmp_path / "home") as url, browser:
        page = _open(browser, url + "/Review?compare=aligned", "Pair 1 /")
        moved = page.locator("[data-testid='stImage']", has_text="moved by the alignment").locator("img")
        expect(moved).to_be_visible(timeout=60_000)
        page.wait_for_function("(e) => e.complete && e.naturalWidth > 0", arg=moved.element_handle(), timeout=30_000)
        natural, shown = moved.evaluate("(e) => [e.naturalWidth, e.getBoundingClientRect().width]")
        assert natural >= 256 and abs(shown - natural) <= 1, (natural, shown)
        src = moved.get_attribute("src")
        data = (base64.b64decode(src.split(",", 1)[1]) if src.startswith("data:") else
                page.request.get(src if src.startswith("http") else url + src).body())
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "review-aligned.png"), full_page=True)
        browser.close()
    img = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32)
    blocky = np.asarray(Image.fromarray(img.astype(np.uint8)).resize((32, 32), Image.Resampling.BOX)
                        .resize(img.shape[::-1], Image.Resampling.NEAREST), dtype=np.float32)
    inside = img > 0  # the photo, not the dark border of the square frame
    # an enlarged 32 px grid equals its own 14 x 14 blocks (0 here); the photo moved at 448 px does not
    assert np.abs(img - blocky)[inside].mean() > 1.0
