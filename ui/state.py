"""Session-state keys, initialised in one place; choices that must survive a page switch live here."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import streamlit as st

def home() -> Path:
    """The server's own folder (LEAKCORE_HOME, else ~/.leakcore): recent workspaces, sign-outs."""
    return Path(os.environ.get("LEAKCORE_HOME", Path.home() / ".leakcore"))


RECENT_FILE = home() / "recent.json"


def default_workspace() -> str:
    """--workspace from `streamlit run app.py -- --workspace DIR`, else $LEAKCORE_WORKSPACE, else ./demo-workspace."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workspace")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.workspace or os.environ.get("LEAKCORE_WORKSPACE") or "demo-workspace"


DEFAULTS = {
    "workspace": None,  # filled from default_workspace() on first run
    "reviewer": None,
    "review_pos": 0,
    "review_current": None,  # (eval_item_id, train_item_id) being shown
    "review_url": None,  # the Review queue's address-bar parameters last written or read (review_ui.show_in_url)
    "review_link_pending": False,  # a pair named by the address bar is still to be found in the queue
    "f_eval_splits": [],
    "f_sources": [],
    "f_degrees": ["hard", "soft"],
    "f_states": ["unreviewed"],
    "f_labels": "any",
    "f_sort": "similarity",
    "zoom": "fit",
    "pan_x": 50,
    "pan_y": 50,
    "grid_mode": False,
    "review_check": "similarity",
    "compare_mode": "side by side",  # shown selected (a new user saw side by side with no mode selected)
    "group_pos": 0,
    "flash": None,
    "scan_where": "this machine",
    "scan_ray_address": "local",
    "scan_workers": 0,
}


# Widget keys whose values must survive a page switch. Streamlit forgets the state of a widget that a run does
# not draw (another page is open); writing the value back at the start of every run makes it the session's own,
# which Streamlit keeps (its documented way to keep widget state across pages).
PERSISTENT = ("reviewer", "f_eval_splits", "f_sources", "f_degrees", "f_states", "f_labels", "f_sort", "zoom", "pan_x",
              "pan_y", "grid_mode", "review_check", "compare_mode", "th_hard", "th_soft", "th_hard_n", "th_soft_n", "th_click_moves", "heat_order",
              "heat_check", "th_score", "scan_where", "scan_ray_address", "scan_workers", "scan_verify",
              # the Impact page's form: it showed its defaults (another split, no paths) above the last result
              "imp_split", "imp_probes", "imp_paths", "imp_source", "imp_random",
              # the Coverage page's sets, filters and options: a page switch emptied them under the last result
              "cov_A", "cov_B", "cov_A_where", "cov_B_where", "cov_k", "cov_boot", "cov_spectra_on",
              # the Export page's choices and its re-split form: a new user's split was back to the first one after
              # another page, an export of the wrong split a click away
              "exp_split", "exp_policy", "exp_format", "exp_keep", "exp_dedupe", "exp_links", "exp_also",
              "rs_dataset", "rs_size", "rs_stratify", "rs_cutoff", "rs_links", "rs_seed")


def keep_widget_state() -> None:
    """Write the PERSISTENT widget values back as the session's own. Every full run does it (init_state), and so
    does the Review page's fragment at its start: a fragment run ends by forgetting the state of widgets it did not
    draw, so a reviewer who clicked in the fragment and then switched pages lost the Thresholds sliders (a KeyError
    on the page) and the fragment's own Compare mode. A widget this run has drawn already is kept by Streamlit."""
    from streamlit.errors import StreamlitWidgetAlreadyInstantiatedError

    for key in PERSISTENT:
        if key in st.session_state:
            try:
                st.session_state[key] = st.session_state[key]
            except StreamlitWidgetAlreadyInstantiatedError:  # drawn in this run (a full run reaching the fragment)
                pass


def fragment(func=None, *, run_every: float | None = None):
    """`st.fragment` whose every run first keeps the page's widget state (`keep_widget_state`): a fragment run
    forgets the widgets it did not draw, and during a calibration (its bar redrawn twice a second) the Reviewer name
    typed in the sidebar was gone on the next page. Every fragment of the dashboard is made with this."""
    import functools

    def make(f):
        @functools.wraps(f)
        def run(*args, **kwargs):
            from ui import access_ui

            if access_ui.signed_out_since():  # the whole page then runs, and its gate shows the sign-in page: a key
                st.rerun()  # press reran only this fragment, so a tab of a user who had signed out went on browsing
            keep_widget_state()
            return f(*args, **kwargs)

        return st.fragment(run, run_every=run_every)

    return make(func) if func is not None else make


WARM_UP_AFTER_S = 3.0  # the warm-up starts this long after the first page view began: importing torch holds Python's
# lock for much of its 1.2 s, and started at once it held the first Review page in its skeleton in Chromium


@st.cache_resource(show_spinner=False)
def _warmed_up():
    """Once per server process: the pixel evidence's imports on a thread of their own (`PairEvidence.warm_up`),
    after the first page has been drawn."""
    import threading

    from leakcore.api import PairEvidence

    thread = threading.Timer(WARM_UP_AFTER_S, PairEvidence.warm_up)
    thread.name, thread.daemon = "leakcore-warm-up", True
    thread.start()
    return thread


def init_state() -> None:
    _warmed_up()
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = list(value) if isinstance(value, list) else value
    keep_widget_state()
    if st.session_state["workspace"] is None:
        st.session_state["workspace"] = workspace_from_url() or default_workspace()
    keep_workspace_in_url()
    if st.session_state["reviewer"] is None:
        # no default name (on a shared server every session would be the same "user"), but the name this browser
        # typed before, kept in a cookie of its own: a reload or a new tab keeps who is reviewing
        st.session_state["reviewer"] = st.session_state["_reviewer_cookie"] = reviewer_from_cookie()


WORKSPACE_PARAM = "ws"  # the address bar names the workspace opened on Home (not the server's own): a reload keeps it


def workspace_from_url() -> str | None:
    """The workspace the address bar names, where this server opens it (the facade refuses a folder outside the
    server's roots, or one that is not a workspace); else None, with the reason kept for the sidebar."""
    from leakcore.api import Project
    from leakcore.errors import LeakcoreError

    named = st.query_params.get(WORKSPACE_PARAM)
    if not named:
        return None
    try:
        return str(Project.open(str(named)[:4096]).path)
    except (LeakcoreError, OSError, ValueError) as exc:
        reason = exc.for_page() if isinstance(exc, LeakcoreError) else str(exc)
        st.session_state["workspace_refused"] = f"The address named a workspace this server does not open: {reason}"
        return None


def keep_workspace_in_url() -> None:
    """Name the open workspace in the address bar when it is not the server's own, so that a reload, a bookmark or a
    new tab opens it again (a page switch or the Review page's own parameters keep it)."""
    current, default = st.session_state["workspace"], default_workspace()
    same = Path(current).expanduser().resolve() == Path(default).expanduser().resolve()
    want = None if same else str(current)
    if st.query_params.get(WORKSPACE_PARAM) != want:
        if want is None:
            del st.query_params[WORKSPACE_PARAM]
        else:
            st.query_params[WORKSPACE_PARAM] = want


REVIEWER_COOKIE = "leakcore_reviewer"


def reviewer_from_cookie() -> str:
    from urllib.parse import unquote

    try:
        value = st.context.cookies.get(REVIEWER_COOKIE, "")
    except Exception:  # noqa: BLE001 - no browser context (bare mode): no remembered name
        return ""
    # only a string is a name: outside a browser (AppTest) the cookies are a stand-in object, not a mapping of str
    return unquote(value)[:100] if isinstance(value, str) else ""


def remember_reviewer() -> None:
    """Write the Reviewer name into this browser's cookie (a year, this site only) when it changed."""
    import json as _json
    from urllib.parse import quote

    name = (st.session_state.get("reviewer") or "").strip()
    if st.session_state.get("_reviewer_cookie") == name:
        return
    st.session_state["_reviewer_cookie"] = name
    value = _json.dumps(quote(name))  # percent-encoded, then a JS string literal: nothing the name holds can escape
    st.html(f"<script>document.cookie = '{REVIEWER_COOKIE}=' + {value} + '; path=/; max-age=31536000; "
            "samesite=strict';</script>", unsafe_allow_javascript=True)


def _recent_owner() -> str:
    """Whose list of recent workspaces this session reads: the signed-in user's on a server with sign-in (the list
    was the server's, so every user saw the workspaces the others had opened), else the one list of this machine."""
    from ui import access_ui

    return (access_ui.signed_in_user() or "") if access_ui.sign_in_configured() else ""


def _recent_lists() -> dict[str, list[str]]:
    """{owner: recent workspace paths} from RECENT_FILE (a plain list, as written before, is this machine's)."""
    try:
        raw = json.loads(RECENT_FILE.read_text())
    except (OSError, ValueError):
        return {}
    if isinstance(raw, list):
        raw = {"": raw}
    if not isinstance(raw, dict):
        return {}
    return {str(k): [p for p in v if isinstance(p, str)] for k, v in raw.items() if isinstance(v, list)}


def recent_workspaces() -> list[str]:
    from leakcore.api import Project

    # only workspaces this server may open are offered
    return [p for p in _recent_lists().get(_recent_owner(), []) if Project.openable(p)]


def remember_workspace(path: str) -> None:
    """Put `path` first in this session's recent list (at most 10), written whole or not at all."""
    lists, owner, path = _recent_lists(), _recent_owner(), str(Path(path).resolve())
    lists[owner] = ([path] + [p for p in lists.get(owner, []) if p != path])[:10]
    from leakcore.api import atomic_write_text

    try:
        RECENT_FILE.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(RECENT_FILE, json.dumps(lists))
    except OSError:
        pass
