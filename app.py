"""Leak review dashboard, home page: open or create a workspace, add data, run a scan, see what is there.

Run with `streamlit run app.py -- --workspace DIR`; the other pages live in pages/.
"""
import streamlit as st

from ui import access_ui, home
from ui.state import default_workspace, init_state
from ui.widgets import ICON, flash, sidebar_workspace, user_errors

st.set_page_config(page_title="Leak review", page_icon=str(ICON), layout="wide")
init_state()
access_ui.gate(default_workspace())
st.title("Data leakage review")
st.caption("Evaluation images that also sit, exactly or as near-duplicates, in training data.")
with user_errors(stop=False):  # a folder outside the server's allowed roots is refused with the reason
    home.open_workspace_ui()
ws = sidebar_workspace()
if ws is None:
    st.info("Open a workspace above, or build the demo with `leakcore demo demo-workspace`.")
    st.stop()
with user_errors():
    flash()
    home.add_dataset_ui(ws)
    with st.container(border=True):
        st.markdown("**Scan**: embed every image, search every evaluation split against every training split.")
        home.scan_ui(ws)
    hard, soft = ws.scores.thresholds()
    home.overview(ws, hard, soft)
    home.planted_ui(ws, hard, soft)
    st.page_link("pages/1_Review.py", label="Review the flagged pairs →", icon=":material/rate_review:")
