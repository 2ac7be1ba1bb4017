"""Session-state keys, initialised in one place; choices that must survive a page switch live here."""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

import streamlit as st

RECENT_FILE = Path(os.environ.get("LEAKCORE_HOME", Path.home() / ".leakcore")) / "recent.json"


def default_workspace() -> str:
    """--workspace from `streamlit run app.py -- --workspace DIR`, else $LEAKCORE_WORKSPACE, else ./demo-workspace."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workspace")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return args.workspace or os.environ.get("LEAKCORE_WORKSPACE") or "demo-workspace"


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "curator"


DEFAULTS = {
    "workspace": None,  # filled from default_workspace() on first run
    "reviewer": None,
    "review_pos": 0,
    "review_current": None,  # (eval_item_id, train_item_id) being shown
    "f_eval_splits": [],
    "f_sources": [],
    "f_degrees": ["hard", "soft"],
    "f_states": ["unreviewed"],
    "f_labels": "any",
    "f_sort": "similarity",
    "zoom": "fit",
    "grid_mode": False,
    "review_check": "similarity",
    "group_pos": 0,
    "flash": None,
}


def init_state() -> None:
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = list(value) if isinstance(value, list) else value
    if st.session_state["workspace"] is None:
        st.session_state["workspace"] = default_workspace()
    if st.session_state["reviewer"] is None:
        st.session_state["reviewer"] = _user()


def recent_workspaces() -> list[str]:
    try:
        return [p for p in json.loads(RECENT_FILE.read_text()) if Path(p, "project.toml").exists()]
    except (OSError, ValueError):
        return []


def remember_workspace(path: str) -> None:
    paths = [str(Path(path).resolve())] + [p for p in recent_workspaces() if p != str(Path(path).resolve())]
    try:
        RECENT_FILE.parent.mkdir(parents=True, exist_ok=True)
        RECENT_FILE.write_text(json.dumps(paths[:10]))
    except OSError:
        pass
