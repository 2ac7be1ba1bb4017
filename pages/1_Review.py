"""Review: flagged pairs side by side; decide with a click or a key; decisions go to review.sqlite."""
import streamlit as st

from ui import data, review_ui
from ui.widgets import flash, page, queue_filters, user_errors

ws = page("Review", ":material/rate_review:")
with user_errors():
    hard, soft = ws.scores.thresholds()
    queue = data.queue(ws, hard, soft)
    st.title("Review flagged pairs")
    has_groups = ws.settings.grouping or data.items(ws)["group"].notna().any()
    # every check reviewed one by one: as pairs (the queue holds each pair check's rows) or as groups
    # (the first pair check is always offered, so that an empty queue still has a page; the others when they queue)
    checks = ws.checks.reviewable()  # a new list of new dicts at each call: compared by name below
    first_pairs = next(c["name"] for c in checks if c["review"] == "pairs")
    shown = [c for c in checks
             if (c["review"] == "groups" and has_groups)
             or (c["review"] == "pairs" and (c["name"] == first_pairs or (queue["check"] == c["name"]).any()))]
    how = {c["name"]: c["review"] for c in shown}
    splits = review_ui.split_choices(ws, queue)
    held = data.items(ws).index
    review_ui.restore_from_url(queue, list(how), splits, holds=lambda ids: all(i in held for i in ids))  # a reload, a
    # bookmark or a link: the check, queue and pair
    if st.session_state.get("review_check") not in how:
        st.session_state["review_check"] = shown[0]["name"]
    check = st.sidebar.radio("Check", list(how), key="review_check", horizontal=True,
                             help="; ".join(f"{c['name']}: {c['words']}" for c in shown))
    if how[check] == "groups":
        flash()
        st.caption("Groups: images of one source across splits")
        review_ui.group_view(ws, data.items(ws), st.session_state["f_eval_splits"])
        st.caption("Keys: K one source (keep together) · N unrelated · ← previous group · → next group · Z undo")
        st.stop()
    if queue.empty:
        review_ui.nothing_flagged(ws, soft)
        st.stop()
    filters = {**queue_filters(queue, splits), "checks": [check]}
    review_ui.review_panel(ws, hard, soft, filters)
