"""Review: flagged pairs side by side; decide with a click or a key; decisions go to review.sqlite."""
import streamlit as st

from ui import data, review_ui
from ui.widgets import flash, page, queue_filters, user_errors

ws = page("Review", ":material/rate_review:")
with user_errors():
    hard, soft = ws.thresholds()
    queue = data.queue(ws, hard, soft)
    st.title("Review flagged pairs")
    has_groups = ws.grouping or data.items(ws)["group"].notna().any()
    check = st.sidebar.radio("Check", ["similarity", "group"] if has_groups else ["similarity"], key="review_check",
                             horizontal=True, help="similarity: pairs of near-duplicates; group: images of one source "
                                                   "(patient, video, large image) across splits")
    if check == "group":
        flash()
        st.caption("Groups: images of one source across splits")
        review_ui.group_view(ws, data.items(ws), st.session_state["f_eval_splits"])
        st.caption("Keys: K one source (keep together) · N unrelated · ← previous group · → next group")
        st.stop()
    if queue.empty:
        st.info("Nothing flagged yet. Run a scan from the home page, or lower the soft threshold.")
        st.stop()
    review_ui.restore_from_url(queue)  # a reload, a bookmark or a link: the queue and pair it names
    filters = queue_filters(queue)
    review_ui.review_panel(ws, hard, soft, filters)
