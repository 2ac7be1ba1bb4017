"""Heatmaps page pieces: one Vega-Lite heatmap per degree; a click on a cell opens the review page filtered to it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from leakcore.api import Checks


def _title(kind: str, check: str) -> str:
    words = Checks.words(check)  # each check names its own maps
    return words.hard_title if kind == "hard" else words.soft_title


def _cells(mats: dict, kind: str) -> pd.DataFrame:
    """One row per (training source, evaluation split) cell: rate in %, count, size, intra, the written label."""
    rate, count, n, intra = mats[f"{kind}_rate"], mats[kind], mats["n_eval"], mats["intra"]
    cells = pd.DataFrame({
        "train_split": np.repeat(rate.index.astype(str), len(rate.columns)),
        "eval_split": np.tile(rate.columns.astype(str), len(rate.index)),
        "rate": (100 * rate).to_numpy(dtype=float).ravel(), "count": count.fillna(0).to_numpy().ravel().astype(int),
        "n_eval": n.fillna(0).to_numpy().ravel().astype(int), "intra": intra.to_numpy().ravel().astype(bool)})
    cells = cells[cells["rate"].notna()]
    cells["label"] = (cells["rate"].round(1).astype(str) + "%\n(" + cells["count"].astype(str) + ")"
                      + np.where(cells["intra"], "\n● intra", ""))
    return cells


def _top(mats: dict) -> float:
    # one scale from 0 for both maps (soft includes hard, so its maximum is the top)
    return max(float(np.nan_to_num(100 * mats["soft_rate"].to_numpy(dtype=float), nan=0.0).max(initial=0.0)), 1.0)


def heatmap(mats: dict, kind: str, check: str = "similarity") -> None:
    """Rows = training sources, columns = evaluation splits; percentage and count written in each cell; a click
    on a cell opens the Review page filtered to it. Vega-Lite (Plotly's 4.7 MB of JavaScript made this page's
    first load 2.7 s); the Plotly version, with SVG export, is a download below the maps."""
    cells = _cells(mats, kind)
    top = _top(mats)
    rows, cols = [str(r) for r in mats[f"{kind}_rate"].index], [str(c) for c in mats[f"{kind}_rate"].columns]
    x = {"field": "eval_split", "type": "nominal", "sort": cols, "title": "evaluation split",
         "axis": {"labelAngle": 0 if len(cols) <= 2 else -30, "labelOverlap": False, "labelLimit": 180}}
    y = {"field": "train_split", "type": "nominal", "sort": rows, "title": "training source", "axis": {"labelLimit": 200}}
    tip = [{"field": "train_split", "title": "training source"}, {"field": "eval_split", "title": "evaluation split"},
           {"field": "count", "title": "flagged evaluation images"}, {"field": "n_eval", "title": "of"},
           {"field": "rate", "title": "%", "format": ".2f"}]
    spec = {
        "title": _title(kind, check), "height": 56 * len(rows),  # the cells' area: room for three lines a cell
        "layer": [
            {"mark": {"type": "rect", "stroke": "white", "strokeWidth": 1, "cursor": "pointer"},
             "params": [{"name": "cell", "select": {"type": "point", "on": "click", "fields": ["eval_split", "train_split"]}}],
             "encoding": {"x": x, "y": y, "tooltip": tip,
                          "color": {"field": "rate", "type": "quantitative", "title": "%",
                                    "scale": {"scheme": "reds" if kind == "hard" else "oranges", "domain": [0, top]}}}},
            {"mark": {"type": "text", "lineBreak": "\n", "fontSize": 12},
             "encoding": {"x": x, "y": y, "text": {"field": "label"},
                          "color": {"condition": {"test": f"datum.rate > {0.55 * top}", "value": "white"},
                                    "value": "#111827"}}},
        ],
    }
    event = st.vega_lite_chart(cells, spec, on_select="rerun", selection_mode="cell", key=f"heat_{kind}",
                               width="stretch", height=56 * len(rows) + 170)  # the cells plus title and axes
    picked = event.selection.get("cell") if event and hasattr(event.selection, "get") else None
    if picked:
        p = picked[0]
        cell = (p.get("eval_split"), p.get("train_split"), kind)
        if None not in cell and st.session_state.get("heat_last_click") != cell:
            st.session_state["heat_last_click"] = cell
            drill_down(*cell)


def plotly_html(mats: dict, check: str) -> str:
    """Both maps as one self-contained HTML page (Plotly, its JavaScript inline: opens offline), whose toolbar
    saves each map as SVG for a paper."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    top = _top(mats)
    fig = make_subplots(rows=1, cols=2, subplot_titles=[_title("hard", check), _title("soft", check)])
    for i, kind in enumerate(("hard", "soft"), 1):
        rate, count = mats[f"{kind}_rate"], mats[kind]
        text = np.where(rate.isna(), "", (100 * rate).round(1).astype(str) + "%<br>("
                        + count.fillna(0).astype(int).astype(str) + ")")
        fig.add_trace(go.Heatmap(z=(100 * rate).to_numpy(), x=list(rate.columns), y=list(rate.index), text=text,
                                 texttemplate="%{text}", colorscale="Reds" if kind == "hard" else "Oranges", zmin=0,
                                 zmax=top, showscale=i == 2, colorbar={"title": "%"}), row=1, col=i)
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(height=160 + 70 * len(mats["soft_rate"].index))
    return fig.to_html(include_plotlyjs=True, full_html=True,
                       config={"toImageButtonOptions": {"format": "svg", "filename": "leakage"}, "displaylogo": False})


def drill_down(eval_split: str, train_split: str, kind: str) -> None:
    """Open the review page filtered to one (evaluation split, training source) cell."""
    reviewable = {c["name"]: c["review"] for c in Checks.reviewable()}
    check = st.session_state.get("heat_check") or next(iter(reviewable))
    st.session_state["heat_last_click"] = None  # back on this page, the same cell opens again
    # the cell's own check where the Review page shows it; else its groups, else the first reviewable check
    st.session_state["review_check"] = (check if check in reviewable else
                                        next((c for c, how in reviewable.items() if how == "groups"), next(iter(reviewable))))
    st.session_state["group_pos"] = 0
    st.session_state.update({
        "f_eval_splits": [eval_split], "f_sources": [train_split],
        "f_degrees": ["hard"] if kind == "hard" else ["hard", "soft"], "f_states": [], "review_pos": 0,
    })
    st.switch_page("pages/1_Review.py")


def cell_picker(mats: dict) -> None:
    """The same drill-down without the mouse: pick a cell and open it in the review page."""
    c1, c2, c3, c4 = st.columns([2, 2, 1, 1])
    tr = c1.selectbox("Training source", list(mats["soft_rate"].index), key="heat_pick_train")
    ev = c2.selectbox("Evaluation split", list(mats["soft_rate"].columns), key="heat_pick_eval")
    kind = c3.radio("Degree", ["soft", "hard"], key="heat_pick_kind", horizontal=True)
    c4.write("")
    if c4.button("Review this cell", key="heat_pick_go", width="stretch"):
        drill_down(ev, tr, kind)
