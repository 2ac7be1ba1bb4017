"""The review page's pieces: the pair view, decision buttons with shortcuts, the grid mode."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from leakcore import review
from leakcore.api import Project
from ui import data
from ui.widgets import item_facts, show_image

Workspace = Project  # pages hold a Project: the workspace with the product's verbs

DECISION_BUTTONS = [("hard", "Hard leak", "H"), ("soft", "Soft leak", "S"), ("not_leak", "Not a leak", "N"),
                    ("unsure", "Unsure", "U")]


def _decide(ws_path: str, pairs: list[tuple[str, str]], decision: str, advance: bool) -> None:
    ws = Project.open(ws_path)
    reviewer = st.session_state["reviewer"].strip() or "curator"
    note = st.session_state.get("review_note") or None
    if len(pairs) == 1:
        ws.decisions.decide(*pairs[0], decision, reviewer=reviewer, note=note)
    else:
        ws.decisions.decide_many(pairs, decision, reviewer=reviewer, note=note)
    data.clear_decision_caches()
    st.session_state["review_note"] = ""
    st.session_state["flash"] = f"{review.DECISION_LABELS[decision]} · {len(pairs)} pair(s) saved"
    if advance:
        # The decided pair usually leaves an 'unreviewed' queue; otherwise step past it.
        if "unreviewed" not in st.session_state["f_states"]:
            st.session_state["review_pos"] += 1


def _undo(ws_path: str) -> None:
    undone = Project.open(ws_path).decisions.undo_last(st.session_state["reviewer"].strip() or "curator")
    data.clear_decision_caches()
    st.session_state["flash"] = "Nothing to undo" if undone is None else f"Undid {review.DECISION_LABELS[undone['decision']]}"
    if undone is not None:
        st.session_state["review_current"] = (undone["eval_item_id"], undone["train_item_id"])


def _move(step: int, size: int) -> None:
    st.session_state["review_pos"] = max(0, min(size - 1, st.session_state["review_pos"] + step))
    st.session_state["review_current"] = None


def position(view: pd.DataFrame) -> int:
    """Index of the pair to show: the one just undone if asked for, else the remembered position."""
    current = st.session_state.get("review_current")
    if current is not None:
        hit = (view["eval_item_id"].to_numpy() == current[0]) & (view["train_item_id"].to_numpy() == current[1])
        if hit.any():
            st.session_state["review_pos"] = int(hit.argmax())
        st.session_state["review_current"] = None
    pos = min(st.session_state["review_pos"], max(len(view) - 1, 0))
    st.session_state["review_pos"] = pos
    return pos


def decision_bar(ws: Workspace, pair: pd.Series, size: int) -> None:
    """Decision buttons (keys H S N U), previous / next (← →), undo (Z) and a note."""
    cols = st.columns([1, 1, 1, 1, 0.2, 1, 1, 1])
    args = (str(ws.path), [(pair["eval_item_id"], pair["train_item_id"])])
    for col, (decision, label, key) in zip(cols[:4], DECISION_BUTTONS):
        col.button(f"{label}", key=f"decide_{decision}", shortcut=key, on_click=_decide, args=(*args, decision, True),
                   type="primary" if decision == "hard" else "secondary", width="stretch")
    cols[5].button("Previous", key="prev", shortcut="Left", on_click=_move, args=(-1, size), width="stretch")
    cols[6].button("Next", key="next", shortcut="Right", on_click=_move, args=(1, size), width="stretch")
    cols[7].button("Undo", key="undo", shortcut="Z", on_click=_undo, args=(str(ws.path),), width="stretch")
    st.text_input("Note (optional, saved with the next decision)", key="review_note")


def pair_view(ws: Workspace, items: pd.DataFrame, pair: pd.Series, all_pairs: pd.DataFrame) -> None:
    """The evaluation image and its training neighbour side by side, with what a curator needs to judge."""
    ev, tr = items.loc[pair["eval_item_id"]], items.loc[pair["train_item_id"]]
    zoom = st.session_state["zoom"]
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown(f"**Evaluation** · `{pair['eval_split']}`")
        show_image(ws, ev, zoom=zoom)
        item_facts(ev)
    with right:
        st.markdown(f"**Training neighbour** · `{pair['source']}` · rank {int(pair['rank'])}")
        show_image(ws, tr, zoom=zoom)
        item_facts(tr)
    others = all_pairs[(all_pairs["eval_item_id"] == pair["eval_item_id"]) & (all_pairs["train_item_id"] != pair["train_item_id"])]
    if not others.empty:
        st.caption(f"Other neighbours of this evaluation image ({len(others)})")
        cols = st.columns(8)
        for col, (_, o) in zip(cols, others.sort_values("similarity", ascending=False).head(8).iterrows()):
            with col:
                show_image(ws, items.loc[o["train_item_id"]], zoom="4×" if ev["width"] <= 64 else "1×",
                           caption=f"{o['similarity']:.3f} · {o['train_split']}", width=128)


def grid_mode(ws: Workspace, items: pd.DataFrame, pair: pd.Series, all_pairs: pd.DataFrame) -> None:
    """All flagged neighbours of one evaluation image; decide the selected ones at once."""
    group = all_pairs[all_pairs["eval_item_id"] == pair["eval_item_id"]].sort_values("similarity", ascending=False)
    ev = items.loc[pair["eval_item_id"]]
    c0, c1 = st.columns([1, 3])
    with c0:
        st.markdown("**Evaluation image**")
        show_image(ws, ev)
        st.caption(ev["item_id"])
    with c1:
        chosen = []
        cols = st.columns(4)
        for i, (_, o) in enumerate(group.iterrows()):
            with cols[i % 4]:
                show_image(ws, items.loc[o["train_item_id"]], width=200)
                label = f"{o['similarity']:.3f} · {o['degree']} · {o['state']}"
                if st.checkbox(label, key=f"grid_{o['eval_item_id']}_{o['train_item_id']}", value=o["state"] == "unreviewed"):
                    chosen.append((o["eval_item_id"], o["train_item_id"]))
    bcols = st.columns(4)
    for col, (decision, label, _) in zip(bcols, DECISION_BUTTONS):
        col.button(f"{label}: {len(chosen)} selected", key=f"grid_decide_{decision}", disabled=not chosen,
                   on_click=_decide, args=(str(ws.path), chosen, decision, False), width="stretch")
