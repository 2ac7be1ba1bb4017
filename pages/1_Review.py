"""Review: flagged pairs side by side; decide with a click or a key; decisions go to review.sqlite."""
import streamlit as st

from leakcore import review
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
    review_ui.open_linked_pair(queue)
    filters = queue_filters(queue)
    view = review.filter_queue(queue, **filters)
    decided = int((queue["state"] != "unreviewed").sum())
    st.progress(decided / len(queue), text=f"Reviewed {decided} of {len(queue)} flagged pairs · {len(view)} match the filters")
    flash()
    if view.empty:
        st.success("No pairs match these filters. Widen them in the sidebar to see more.")
        st.stop()
    pos = review_ui.position(view)
    pair = view.iloc[pos]
    review_ui.show_in_url(pair)
    items = data.items(ws)
    top = st.columns([3, 1, 1])
    top[0].markdown(
        f"Pair **{pos + 1} / {len(view)}** · similarity **{pair['similarity']:.4f}** · degree **{pair['degree']}** · "
        f"labels **{pair['label_agreement']}** · state **{pair['state']}**"
        + (f" ({review.DECISION_LABELS[pair['decision']]} by {pair['reviewer']})" if pair["state"] != "unreviewed" else "")
    )
    top[1].toggle("Grid mode", key="grid_mode", help="Decide all neighbours of this evaluation image at once")
    top[2].select_slider("Image size", options=["fit", "1×", "2×", "4×", "8×"], key="zoom",
                         help="fit: as large as the column; small images are enlarged pixel by pixel")
    if st.session_state["grid_mode"]:
        review_ui.grid_mode(ws, items, pair, queue)
    else:
        review_ui.decision_bar(ws, pair, len(view))
        review_ui.pair_view(ws, items, pair, queue)
    st.caption("Keys: H hard leak · S soft leak · N not a leak · U unsure · ← previous · → next · Z undo")
