"""Shortcuts page pieces: the verdict, the probes' tables, the occlusion maps and the image strips."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

OCCLUSION_COLUMNS = 5  # occlusion maps a row on the page


def verdict(audit: dict) -> None:
    f = audit["found"]
    # a finding is a warning (red is kept for what went wrong), its severity said in words and by the icon
    text = "\n\n".join(audit["verdict"])
    if f["transfers"] and f.get("names") and not f["marker"]:
        st.warning("**The file names give the label away** (not the pixels). " + text, icon=":material/warning:")
    elif f["transfers"]:
        st.warning("**A shortcut the benchmark rewards.** " + text, icon=":material/report:")
    elif f["metadata"] or f["marker"]:
        st.warning(text, icon=":material/warning:")
    elif f.get("on_evaluation"):  # not settled on training, yet it scores on the evaluation split: a green tick
        # beside "worth a look" sent two signals (an audit stored before says nothing of it)
        st.info(text, icon=":material/search:")
    else:
        st.success(text, icon=":material/check_circle:")
    st.caption(f"Fit on {audit['dataset']}/{audit['train_split']}"
               + (f", scored on {audit['dataset']}/{audit['eval_split']}" if audit["eval_split"] else "")
               + f" · run {audit['created']} · {audit.get('timing') or 'time not recorded'}")


def metadata(audit: dict) -> None:
    m = audit["metadata"]
    c1, c2, c3 = st.columns(3)
    c1.metric("Balanced accuracy from metadata", f"{m['balanced_accuracy']:.3f}", help="cross-validated, 5 folds")
    c2.metric("Chance (label permutations)", f"{m['chance']:.3f}")
    c3.metric("p-value", f"{m['p_value']:.3f}",
              help=("share of shuffled labellings scoring at least as well; the test stops once the verdict is "
                    "settled, so 59 worse in a row read 0.017, and ten as good read ten over the number tried"))
    if m.get("transfer"):
        t = m["transfer"]
        st.caption(f"Fit on training, scored on evaluation: {t['balanced_accuracy']:.3f} (chance {t['chance']:.3f}, "
                   f"{t['n_eval']} images)")
    imp, left = pd.DataFrame(m["importance"]), []
    if not imp.empty:
        # shuffling a family that carries nothing moves the score by chance, down or up: only the drops are drawn
        left = imp[imp["importance"] <= 0]["family"].tolist()
        imp = imp[imp["importance"] > 0]
    if not imp.empty:
        fig = go.Figure(go.Bar(x=imp["importance"], y=imp["family"], orientation="h", marker_color="#b91c1c"))
        fig.update_layout(height=60 + 22 * len(imp), margin={"l": 10, "r": 10, "t": 30, "b": 10},
                          title="Which features carry the label (drop in balanced accuracy when shuffled)",
                          yaxis={"autorange": "reversed"})
        st.plotly_chart(fig, key="sc_importance", width="stretch")
    if left:
        st.caption("Shuffling these changed nothing or raised the score by chance, so they carry no label: "
                   + ", ".join(str(f) for f in left))


def regions(audit: dict) -> None:
    r = audit.get("regions")
    if not r:
        st.caption("The region probe was not run.")
        return
    table = pd.DataFrame(r["table"])
    st.dataframe(table.assign(balanced_accuracy=table["balanced_accuracy"].round(3), chance=table["chance"].round(3)),
                 hide_index=True, width="stretch")
    occ = r["occlusion"]
    classes = list(occ)
    # at most OCCLUSION_COLUMNS maps a row, so that each stays square enough to read and its class name fits above it
    cols = min(len(classes), OCCLUSION_COLUMNS)
    rows = -(-len(classes) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=classes, vertical_spacing=min(0.3 / rows, 0.12))
    top = max(float(np.max(np.abs(v))) for v in occ.values()) or 1.0
    for i, cls in enumerate(classes):
        at = {"row": i // cols + 1, "col": i % cols + 1}
        fig.add_trace(go.Heatmap(z=np.array(occ[cls]), zmin=-top, zmax=top, colorscale="RdBu_r", showscale=i == 0,
                                 hovertemplate=f"{cls}: row %{{y}}, column %{{x}}: %{{z:.3f}}<extra></extra>"), **at)
        fig.update_yaxes(autorange="reversed", showticklabels=False, **at)
        fig.update_xaxes(showticklabels=False, **at)
    fig.update_annotations(font_size=12)  # the class names above the maps
    fig.update_layout(height=60 + 200 * rows, margin={"l": 10, "r": 10, "t": 60, "b": 10},
                      title="Occlusion: how much each class's score drops when a cell is masked (red: the label sits there)")
    st.plotly_chart(fig, key="sc_occlusion", width="stretch")


