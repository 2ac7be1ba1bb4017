"""Heatmaps page pieces: one plotly heatmap per degree; a click on a cell opens the review page filtered to it."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st


CHECK_WORDS = {"similarity": ("Hard leakage", "Soft leakage"),
               "group": ("Group leakage: explicit or confirmed", "Group leakage: any link"),
               "temporal": ("Same recording: explicit group or camera", "Same recording: any link")}


def heatmap(mats: dict, kind: str, check: str = "similarity") -> None:
    """Rows = training sources, columns = evaluation splits; percentage and count written in each cell."""
    rate, count, n, intra = mats[f"{kind}_rate"], mats[kind], mats["n_eval"], mats["intra"]
    text = np.where(rate.isna(), "", (100 * rate).round(1).astype(str) + "%<br>(" + count.fillna(0).astype(int).astype(str) + ")")
    text = np.where(intra.to_numpy(), np.char.add(text.astype(str), "<br>● intra"), text)
    custom = np.dstack([count.fillna(0).to_numpy(), n.fillna(0).to_numpy(), intra.to_numpy()])
    # One scale from 0 for both maps (soft includes hard, so its maximum is the top): plotly ignores a lone
    # zmin and would stretch a single cell's colours around its own value.
    top = float(np.nan_to_num(100 * mats["soft_rate"].to_numpy(dtype=float), nan=0.0).max(initial=0.0))
    fig = go.Figure(go.Heatmap(
        z=(100 * rate).to_numpy(), x=list(rate.columns), y=list(rate.index), text=text, texttemplate="%{text}",
        customdata=custom, colorscale="Reds" if kind == "hard" else "Oranges", zmin=0, zmax=max(top, 1.0),
        colorbar={"title": "%", "thickness": 12},
        hovertemplate="training source %{y}<br>evaluation split %{x}<br>%{customdata[0]:.0f} of %{customdata[1]:.0f} "
                      "evaluation images (%{z:.2f}%)<extra></extra>",
    ))
    # Streamlit reports clicks on scatter points, not on heatmap cells: one near-invisible point per cell.
    xs, ys = np.meshgrid(np.arange(len(rate.columns)), np.arange(len(rate.index)))
    fig.add_trace(go.Scatter(
        x=[rate.columns[i] for i in xs.ravel()], y=[rate.index[j] for j in ys.ravel()], mode="markers",
        marker={"size": 60, "symbol": "square", "opacity": 0.01, "color": "#000"}, showlegend=False,
        customdata=custom.reshape(-1, 3), hovertemplate="training source %{y}<br>evaluation split %{x}<br>"
        "%{customdata[0]:.0f} of %{customdata[1]:.0f} evaluation images<br>click to review<extra></extra>",
    ))
    words = CHECK_WORDS.get(check, ("Hard leakage", "Soft leakage"))
    fig.update_layout(title=words[0] if kind == "hard" else words[1], height=140 + 70 * len(rate.index),
                      margin={"l": 10, "r": 10, "t": 40, "b": 10}, xaxis_title="evaluation split",
                      yaxis_title="training source", yaxis={"autorange": "reversed"})
    config = {"toImageButtonOptions": {"format": "svg", "filename": f"{kind}-leakage"}, "displaylogo": False}
    event = st.plotly_chart(fig, on_select="rerun", selection_mode="points", key=f"heat_{kind}", config=config,
                            width="stretch")
    points = [p for p in (event.selection.points if event else []) if p.get("curve_number", 1) == 1 or "x" in p]
    if points:
        p = points[0]
        cell = (p.get("x"), p.get("y"), kind)
        if st.session_state.get("heat_last_click") != cell:
            st.session_state["heat_last_click"] = cell
            drill_down(*cell)


def drill_down(eval_split: str, train_split: str, kind: str) -> None:
    """Open the review page filtered to one (evaluation split, training source) cell."""
    check = st.session_state.get("heat_check", "similarity")
    st.session_state["heat_last_click"] = None  # back on this page, the same cell opens again
    st.session_state["review_check"] = "group" if check in ("group", "temporal") else "similarity"
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
