"""Shared widgets: each draws and returns plain values; no leakage maths here."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import pandas as pd
import streamlit as st
from PIL import Image

from leakcore.api import BORDERLINE, SORTS, STATES, UNCERTAINTY_SORT, Action, Project, import_heavy
from leakcore.errors import LeakcoreError, ThresholdsUncalibrated, as_code, page_text
from ui import access_ui, data, job_ui, state

log = logging.getLogger(__name__)
Workspace = Project


@contextlib.contextmanager
def user_errors(stop: bool = True):
    """The one way pages show what went wrong: a leakcore error (bad input, missing weights, no calibration) as a
    message in the page's words, never a traceback; the page stops there unless `stop` is False."""
    try:
        yield
    except ThresholdsUncalibrated as exc:
        st.warning(exc.for_page(), icon=":material/tune:")
        st.page_link("pages/2_Thresholds.py", label="Calibrate on the Thresholds page", icon=":material/tune:")
        if stop:
            st.stop()
    except LeakcoreError as exc:
        st.error(exc.for_page(), icon=":material/error:")
        if stop:
            st.stop()
    except OSError as exc:  # a file vanished or is unreadable: say which, keep the page alive
        log.warning("page error: %s", exc)
        st.error(page_text(f"Could not read or write a file: {exc}"), icon=":material/error:")
        if stop:
            st.stop()


def locked(ws: Workspace, action: Action) -> str | None:
    """Why this session's user may not do `action` in the workspace, or None when they may: the button for it is
    then off (`disabled=`), with the reason beside it (`lock_note`), instead of a refusal after the click (a viewer
    on a team server saw "Run scan", "Apply to project" and "Write the export" enabled)."""
    return ws.team.refusal(action)


def lock_note(why: str | None) -> None:
    """The reason a button is off, under it."""
    if why:
        st.caption(f":material/lock: {why}")


def sidebar_workspace(current: str = "Home") -> Workspace | None:
    """Sidebar: the open workspace, who is reviewing (signed in, or a typed name), the encoder and thresholds, and
    the server's jobs running on it (but the ones the `current` page shows with their own bar)."""
    with st.sidebar:
        st.page_link("app.py", label="Home", icon=":material/home:")
        st.page_link("pages/1_Review.py", label="Review", icon=":material/rate_review:")
        st.page_link("pages/2_Thresholds.py", label="Thresholds", icon=":material/tune:")
        st.page_link("pages/3_Heatmaps.py", label="Heatmaps", icon=":material/grid_on:")
        st.page_link("pages/4_Impact.py", label="Impact", icon=":material/query_stats:")
        st.page_link("pages/5_Export.py", label="Export", icon=":material/download:")
        st.page_link("pages/6_Coverage.py", label="Coverage", icon=":material/join_inner:")
        st.page_link("pages/7_Shortcuts.py", label="Shortcuts", icon=":material/visibility_off:")
        st.page_link("pages/8_Team.py", label="Team", icon=":material/group:")
        st.divider()
        if st.session_state.get("workspace_refused"):
            st.warning(st.session_state.pop("workspace_refused"))
        st.caption("Workspace")
        # a code span, not st.code: a code block loads the browser's syntax highlighter on every page (0.74 s of
        # the browser's main thread on a first load of the demo's Home, a Chrome DevTools profile; docs/performance.md)
        st.markdown(as_code(st.session_state["workspace"], limit=1000))
        access_ui.identity_sidebar(st.session_state["workspace"])
    ws = data.open_workspace(st.session_state["workspace"])
    if ws is not None:
        t = ws.scores.thresholds(required=False)
        st.sidebar.caption(f"Encoder **{ws.settings.encoder}** · " + (f"{ws.settings.score_words} hard ≥ {t.hard:.4f} · soft ≥ {t.soft:.4f}"
                                                                       if t else "thresholds: not calibrated yet"))
        job_ui.sidebar(str(ws.path), current)  # a scan, calibration or audit running in the server, whichever page
    return ws


FIT_PX = 384  # "fit": enlarge small images to about this width so a curator can compare details


ICON = Path(__file__).resolve().parents[1] / "assets" / "icon.png"  # local: a ":material/…:" favicon is fetched from the web


def page(title: str, icon: str | None = None, *, heavy: bool = False) -> Workspace:
    """Every page's start: page config, state, the sidebar; stops the page when no workspace is open. `heavy`: the
    page runs on torch, SciPy or scikit-learn, imported first one thread at a time (`import_heavy`)."""
    st.set_page_config(page_title=f"{title} · leak review", page_icon=str(ICON), layout="wide")
    state.init_state()
    if heavy:
        import_heavy()
    access_ui.gate(state.default_workspace())
    ws = sidebar_workspace(title)
    if ws is None:
        st.stop()
    return ws


PAN_PX = 560  # a zoomed image wider than this is shown as a window of this width, moved by the pan sliders


def needs_pan(item: pd.Series, zoom) -> bool:
    """Whether this item at this zoom is wider or taller than the window (so the pan sliders mean something)."""
    if zoom == "fit":
        return False
    factor = int(str(zoom).rstrip("×"))
    size = max(int(item.get("width") or 0), int(item.get("height") or 0)) if pd.notna(item.get("width")) else 0
    return size * factor > PAN_PX


def show_image(ws: Workspace, item: pd.Series, *, zoom="fit", caption: str | None = None, width=None,
               pan: tuple[float, float] | None = None) -> None:
    """An item's image at the chosen size (small images enlarged pixel by pixel), or why it cannot be shown. With
    `pan` (the window's centre, 0-1 across and down) a zoomed image larger than PAN_PX shows only that window,
    so both images of a pair can be compared detail by detail at the same place."""
    factor = 1 if zoom == "fit" else int(str(zoom).rstrip("×"))
    if pan is not None and needs_pan(item, zoom):
        img, reason = data.item_image(ws, item)
        if img is not None:
            side = max(1, PAN_PX // factor)  # source pixels in the window
            cx, cy = pan[0] * img.width, pan[1] * img.height
            left = int(min(max(cx - side / 2, 0), max(img.width - side, 0)))
            top = int(min(max(cy - side / 2, 0), max(img.height - side, 0)))
            crop = img.crop((left, top, min(left + side, img.width), min(top + side, img.height)))
            crop = crop.resize((crop.width * factor, crop.height * factor), Image.Resampling.NEAREST)
            st.image(crop, caption=caption or f"{factor}× · window at x {left}–{left + crop.width // factor}, "
                                              f"y {top}–{top + crop.height // factor} of {img.width}×{img.height}")
            return
    if zoom == "fit":
        w = int(item.get("width") or 0) if pd.notna(item.get("width")) else 0
        if w <= 0:  # size unknown in the table: ask the decoded image
            img, _ = data.item_image(ws, item)
            w = img.width if img is not None else 0
        factor = max(1, FIT_PX // max(w, 1))
    if factor == 1 and (zoom == "fit" or isinstance(width, int)):
        # a photo at most as large as it is drawn: a display-sized JPEG, cached per item, never the original file
        from ui import display

        shown, shown_width, reason = display.picture(display.source(ws, item),
                                                     width if isinstance(width, int) else display.PAIR_PX)
    else:
        shown, shown_width, reason = data.display_image(ws, item, factor)
    if shown is None:
        text = item.get("caption") if isinstance(item.get("caption"), str) else None
        # with sign-in, the reason's kind only: its detail names where the server keeps files (as the facts do not)
        said = str(reason).split(":")[0] if access_ui.sign_in_configured() else (
            f"{reason}" + (f"\n\n{item['uri']}" if item.get("uri") else ""))
        st.info(f"No image: {said}" + (f"\n\n“{text}”" if text else ""))
        return
    st.image(shown, caption=caption, width=width or ("stretch" if zoom == "fit" and shown_width >= FIT_PX else
                                                     shown_width if isinstance(shown, str) else "content"))


def image_strip(ws: Workspace, ids: list[str], captions: list[str], side: int = 128) -> None:
    """Thumbnails of items, each with its caption under it, as one wrapping HTML block of fixed-size cells (the
    coverage, shortcut and group strips): no cell can overlap another or run off the page, and a missing or
    unreadable item keeps its cell with the reason, so captions never shift."""
    import html

    if not ids:
        st.caption("None.")
        return
    if len(captions) != len(ids):
        raise ValueError(f"image_strip: {len(ids)} items but {len(captions)} captions")
    pictures = data.thumbnails(ws, list(ids), side=side)
    cells = []
    for item_id, caption, picture in zip(ids, captions, pictures):
        tip = html.escape(str(item_id), quote=True)
        body = (f'<img src="{picture}" alt="{tip}" style="width:{side}px;height:{side}px;object-fit:contain;'
                f'display:block;background:#f1f5f9">' if picture else
                f'<div style="width:{side}px;height:{side}px;background:#e2e8f0;display:flex;align-items:center;'
                f'justify-content:center;font-size:0.7rem;color:#475569">no image</div>')
        cells.append(f'<figure title="{tip}" style="margin:0;width:{side}px">{body}<figcaption style="font-size:0.75rem;'
                     f'line-height:1.2;overflow-wrap:anywhere;margin-top:2px">{html.escape(str(caption))}</figcaption>'
                     f'</figure>')
    st.markdown('<div class="leak-strip" style="display:flex;flex-wrap:wrap;gap:10px">' + "".join(cells) + "</div>",
                unsafe_allow_html=True)


def item_facts(item: pd.Series, extra: dict | None = None) -> None:
    """A compact fact table for one item."""
    facts = {
        "id": item["item_id"], "label": item["label"] if pd.notna(item["label"]) else "—",
        "size": f"{item['width']}×{item['height']}" if item["width"] > 0 else "—",
    }
    if not access_ui.sign_in_configured():  # a team server's users read the item id, not where the server keeps it
        facts["path"] = item["uri"] + (f" [row {item['row']}]" if item["row"] >= 0 else "")
    facts.update(extra or {})
    # markdown, not a data grid: two grids per pair cost the browser more than the rest of the page, and a grid
    # cuts long paths off where text wraps them
    st.markdown("  \n".join(f"**{k}** `{str(v).replace('`', '')}`" if k in ("id", "path") else f"**{k}** {v}"
                              for k, v in facts.items()))


def _keep_shown() -> None:
    """A filter changed: show the same pair where the new queue holds it, else its first pair (a new user's view
    jumped from pair 11 / 14 to 7 / 7, the old position cut to the new length)."""
    st.session_state["review_current"] = st.session_state.get("review_shown")
    st.session_state["review_refiltered"] = True


def queue_filters(queue: pd.DataFrame, splits: dict[str, list[str]]) -> dict:
    """Sidebar filters of the review queue (`splits`: the evaluation splits and training sources offered,
    `review_ui.split_choices`); returns keyword arguments for review.filter_queue."""
    keep = {"on_change": _keep_shown}  # a filter changed: the pair on show stays if the new queue holds it
    with st.sidebar:
        st.subheader("Filter the queue")
        st.multiselect("Evaluation split", splits["split"], key="f_eval_splits", placeholder="all", **keep)
        st.multiselect("Training source", splits["source"], key="f_sources", placeholder="all", **keep)
        st.multiselect("Degree", ["hard", "soft", BORDERLINE], key="f_degrees", placeholder="all",
                       help="borderline = within 0.05 below the soft threshold", **keep)
        st.multiselect("Decision state", list(STATES), key="f_states", placeholder="all", **keep)
        # buttons, not radios: a focused radio group takes ← and →, which belong to the pair navigation
        st.segmented_control("Labels", ["any", "same", "different"], key="f_labels", selection_mode="single", **keep)
        sorts = list(SORTS)
        fused = bool(queue["uncertainty"].notna().any())  # only a model is uncertain; the order names its score
        if not fused:
            sorts.remove(UNCERTAINTY_SORT)
            if st.session_state["f_sort"] == UNCERTAINTY_SORT:
                st.session_state["f_sort"] = "similarity"
        st.segmented_control("Order", sorts, key="f_sort", selection_mode="single",
                             format_func=lambda s: "fused score" if fused and s == "similarity" else s,
                             help="model uncertainty (fused score only): pairs whose P(same photograph) is nearest "
                                  "0.5 first, so that each decision teaches the next refit the most")
    release_sidebar_focus()
    return {
        "eval_splits": st.session_state["f_eval_splits"], "sources": st.session_state["f_sources"],
        "degrees": st.session_state["f_degrees"], "states": st.session_state["f_states"],
        "label_agreement": st.session_state["f_labels"] or "any", "sort": st.session_state["f_sort"] or "similarity",
    }


_RELEASE_FOCUS = """<script>
// A sidebar choice (a radio or a segmented control) keeps the keyboard focus, and then takes ← and → for itself:
// hand the focus back to the page after the click, so the arrows move between pairs again; the same after Enter in
// a sidebar text box.
// In a function of its own: Streamlit may run this script again in the same document (a page switch and back),
// and a second top-level `const` of the same name is a SyntaxError in the console.
(() => {
  const doc = window.parent.document;
  if (doc.__leakReleaseFocus) return;
  doc.__leakReleaseFocus = true;
  // ... and the Review panel's Compare control (after a click on "overlay", → changed the mode, not the pair)
  const choice = (t) => t && t.closest && t.closest('[role="radio"], [role="radiogroup"]')
    && (t.closest('[data-testid="stSidebar"]') || t.closest('.st-key-compare_mode'));
  doc.addEventListener("click", (e) => {
    if (choice(e.target)) {
      doc.__leakClickedChoice = performance.now();
      setTimeout(() => { if (doc.activeElement) doc.activeElement.blur(); }, 0);
    }
  }, true);
  // the rerun the click starts can draw the choice again and give it the focus back after that blur (on two loaded
  // cores a test's → went to the radio group 2 runs in 3): a choice focused within 10 s of a click on one is let go
  // too; one reached by Tab, long after any click, keeps the focus (and the arrows move within it)
  doc.addEventListener("focusin", (e) => {
    if (choice(e.target) && performance.now() - (doc.__leakClickedChoice || -1e9) < 10000) {
      setTimeout(() => { if (doc.activeElement === e.target) e.target.blur(); }, 0);
    }
  }, true);
  // Enter in a sidebar text box (the Reviewer's name) commits it and gives the keys back to the page: a new user
  // typed a name, pressed Enter, and found H and the arrows did nothing (H would have typed into the name)
  // Escape in a sidebar filter's box (a multiselect's) closes it and gives the keys back too: the focus stayed in
  // the box, and the arrows moved nothing until a click on the page
  doc.addEventListener("keydown", (e) => {
    const t = e.target;
    const inSidebar = t.tagName === "INPUT" && t.closest && t.closest('[data-testid="stSidebar"]');
    if (inSidebar && ((e.key === "Enter" && t.type === "text") || e.key === "Escape")) {
      setTimeout(() => t.blur(), 0);
    }
  }, true);
})();
</script>"""


def release_sidebar_focus() -> None:
    """Keep ← and → for the page after a click on a sidebar choice (see _RELEASE_FOCUS)."""
    st.html(_RELEASE_FOCUS, unsafe_allow_javascript=True)  # our own fixed script, in the page itself


def flash() -> None:
    """Show (once) the message a callback left behind."""
    msg = st.session_state.get("flash")
    if msg:
        st.toast(msg)
        st.session_state["flash"] = None

