"""Heatmaps: every evaluation split against every training source, hard and soft, with drill-down to review."""
import streamlit as st

from leakcore.api import ALL_SOURCES, WITHIN, matrices, matrix_csv
from ui import data, heatmaps_ui
from ui.widgets import page, user_errors

ws = page("Heatmaps", ":material/grid_on:")
with user_errors():
    st.title("Leakage across datasets")
    hard, soft = ws.scores.thresholds()
    c1, c2, c3 = st.columns([1, 1, 2])
    order = c1.radio("Order rows and columns", ["name", "total"], key="heat_order", horizontal=True,
                     format_func=lambda o: "by name" if o == "name" else "by total leakage")
    use_decisions = c2.toggle("Use curator decisions", value=True, key="heat_decisions",
                              help="On: a confirmed leak counts and a rejected pair does not. Off: automatic flags only.")
    table = data.rates(ws, hard, soft, auto_only=not use_decisions)
    checks = list(dict.fromkeys(table["check"])) if not table.empty else ws.checks.names()[:1]
    check = st.radio("Check", checks, key="heat_check", horizontal=True, disabled=len(checks) < 2,
                     help="; ".join(f"{c}: {ws.checks.words(c).review or ws.checks.words(c).verdict}" for c in checks))
    mats = matrices(table, order=order, check=check)
    if mats["soft_rate"].empty:
        st.info("No results yet: add datasets with training and evaluation splits and run a scan."
                if table.empty else f"No {check} findings between an evaluation split and a training source.")
        st.stop()
    c3.caption(ws.checks.words(check).caption.format(hard=hard, soft=soft)
               + " ● marks intra-dataset cells. Click a cell to review it.")
    left, right = st.columns(2)
    with left:
        heatmaps_ui.heatmap(mats, "hard", check)
    with right:
        heatmaps_ui.heatmap(mats, "soft", check)
    heatmaps_ui.cell_picker(mats)
    d1, d2, _ = st.columns([1, 1.3, 1.2])
    d1.download_button("Download the matrices (CSV)", matrix_csv(mats), "leakage-matrices.csv", "text/csv",
                       key="heat_csv")
    d2.download_button("Download the maps (HTML, SVG export)", lambda: heatmaps_ui.plotly_html(mats, check),
                       "leakage-maps.html", "text/html", key="heat_html",
                       help="Both maps as one page that opens offline; its camera button saves each map as SVG. "
                            "Each map's menu here saves a PNG.")
    with st.expander("Per evaluation split: all sources together, and within-split duplicates"):
        rest = table[table["train_split"].isin([ALL_SOURCES, WITHIN])]
        st.dataframe(rest, hide_index=True, width="stretch")
