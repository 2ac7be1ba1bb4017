"""Coverage page pieces: the two set pickers, the metrics with intervals, the map, the strips and the spectra."""
from __future__ import annotations

import html

import plotly.graph_objects as go
import streamlit as st

from leakcore.api import ImageSet, Project
from ui import data

A_COLOUR, B_COLOUR = "#2563eb", "#ea580c"


def default_sets(ws: Project) -> tuple[str, str]:
    """(A, B) a page opens on: a training split and an evaluation split of the same dataset (how well training covers
    what the model is tested on), else the first two choices; never a set against a part of itself."""
    options = data.dataset_names(ws) + data.split_names(ws)
    train, evals = data.split_names(ws, "train"), data.split_names(ws, "eval")
    for a in train:
        same = [b for b in evals if b.split("/", 1)[0] == a.split("/", 1)[0]]
        if same:
            return a, same[0]
    if train and evals:
        return train[0], evals[0]
    return options[0], options[min(1, len(options) - 1)]


def set_picker(ws: Project, which: str, default: int) -> ImageSet:
    """A dataset or split, and an optional filter over the item table."""
    options = data.dataset_names(ws) + data.split_names(ws)
    if st.session_state.get(f"cov_{which}") not in options:  # kept across pages (ui/state.PERSISTENT), or this one's
        st.session_state[f"cov_{which}"] = default_sets(ws)[default]
    st.selectbox(f"Set {which}", options, key=f"cov_{which}")
    labels = data.items(ws)["label"].dropna()  # the example names one of this workspace's labels (it said 'cat')
    example = str(labels.iloc[0]).replace("'", "")[:40] if len(labels) else "cat"
    st.text_input(f"Filter {which} (optional)", key=f"cov_{which}_where", placeholder=f"label != '{example}'",
                  help="Compare columns of the item table (dataset, split, role, label, uri, key, width, height, "
                       "timestamp, group…) with values, joined by and / or / not: label in ['cat', 'dog'], "
                       "uri.str.contains('/bees/'), timestamp >= '2024-01-01'. Nothing else runs.")
    return ImageSet(st.session_state[f"cov_{which}"], st.session_state[f"cov_{which}_where"].strip() or None)


def metrics(result) -> None:
    cols = st.columns(4)
    for col, r in zip(cols, result.metrics.itertuples()):
        col.metric(r.metric, f"{r.value:.3f}", help=f"{r.meaning}. 95% interval [{r.low:.3f}, {r.high:.3f}]")
        col.caption(f"[{r.low:.3f}, {r.high:.3f}]")
    st.dataframe(result.metrics, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("value", "low", "high")})


def map_chart(result) -> None:
    m = result.map
    fig = go.Figure()
    for name, colour, label in (("A", A_COLOUR, result.a), ("B", B_COLOUR, result.b)):
        sub = m[m["set"] == name]
        # plotly draws <a href> and <b> in a legend: a typed filter is escaped there
        fig.add_trace(go.Scattergl(x=sub["x"], y=sub["y"], mode="markers", name=f"{name}: {html.escape(str(label))}",
                                   marker={"size": 4, "color": colour, "opacity": 0.5}, text=sub["item_id"],
                                   hovertemplate="%{text}<extra></extra>"))
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h"},
                      title=f"Both sets in 2-D ({m['method'].iloc[0]} of the embeddings; up to 3,000 images each)")
    st.plotly_chart(fig, key="cov_map", width="stretch")


def spectra_chart(result) -> None:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=result.frequencies, y=result.a_mean, name="A: mean log power", line={"color": A_COLOUR}))
    fig.add_trace(go.Scatter(x=result.frequencies, y=result.b_mean, name="B: mean log power", line={"color": B_COLOUR}))
    fig.add_trace(go.Scatter(x=result.frequencies, y=result.deviation, name="B − A (in A's standard deviations)",
                             yaxis="y2", line={"color": "#64748b", "dash": "dot"}))
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h"},
                      xaxis_title="spatial frequency (cycles per image)", yaxis_title="log10 power",
                      yaxis2={"overlaying": "y", "side": "right", "title": "deviation (σ)"},
                      title="Azimuthally averaged power spectra")
    st.plotly_chart(fig, key="cov_spectra", width="stretch")


SPECTRA_NOTE = ("What the spectra can tell: images that were upsampled, heavily re-compressed or made by a generator "
                "that leaves periodic or missing high-frequency energy differ from camera photos there, whatever they "
                "show. What they cannot: what an image depicts, whether a set covers another, or that an image was "
                "generated when the generator left no spectral trace. Differences in camera, resolution and "
                "compression between two honest sources show up too: look at the images before concluding.")
