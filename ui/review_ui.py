"""The review page's pieces: the pair view, decision buttons with shortcuts, the grid mode."""
from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import streamlit as st

from leakcore.api import (BORDERLINE, DECISION_LABELS, EXPLICIT_ONLY, FEATURE_WORDS, SORTS, STATES, UNCERTAINTY_SORT,
                          WITHIN, Images, Project, Scores, import_heavy, refined_worse)
from leakcore.errors import LeakcoreError, as_code
from ui import data, display, job_ui, state
from ui.widgets import FIT_PX, flash, image_strip, item_facts, needs_pan, show_image, user_errors

Workspace = Project  # pages hold a Project: the workspace with the product's verbs

DECISION_BUTTONS = [("hard", "Hard leak", "H"), ("soft", "Soft leak", "S"), ("not_leak", "Not a leak", "N"),
                    ("unsure", "Unsure", "U")]


def decided_by_others(ws, pair) -> None:
    """The pair's note, and where curators decided it differently, each one's decision: on a shared server two
    curators deciding one queue at once replaced each other's decisions with nothing to show for it."""
    if pair["state"] != "unreviewed" and isinstance(pair.get("note"), str) and pair["note"].strip():
        top = st.container()
        top.caption(f"Note by {as_code(pair['reviewer'], 200)}: {as_code(pair['note'], 500)}")
    if pair["state"] == "unreviewed":
        return  # no live decision on it, so none that differ: the queue's usual pair costs no read of the store
    split = ws.decisions.disagreements((pair["eval_item_id"], pair["train_item_id"]))
    if len(split):
        said = "; ".join(f"{as_code(r.reviewer, 120)}: {DECISION_LABELS.get(r.decision, r.decision)} "
                         f"({str(r.created_at)[:19].replace('T', ' ')})"
                         + (f", note {as_code(r.note, 200)}" if isinstance(r.note, str) and r.note.strip() else "")
                         for r in split.itertuples())
        st.warning(f"Decided differently by {split['reviewer'].nunique()} curators: {said}. The latest is in force; "
                   "decide again to settle it.", icon=":material/forum:")


def _reviewer() -> str | None:
    """This session's reviewer, or None (with a message) when the field is empty: no decision is anonymous."""
    name = (st.session_state.get("reviewer") or "").strip()
    if not name:
        st.session_state["flash"] = "Type your name in the Reviewer field first: every decision records who made it"
    return name or None


def _n(count: int, noun: str) -> str:
    """'1 pair', '3 pairs' (a toast read "1 pair(s) saved")."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


LOOK_S = 0.2  # a decision key is taken only this long after its pair was drawn: the events of keys pressed faster
# than the page draws are run one after another, each on the pair the last run drew (four N presses 30 ms apart
# decided four pairs, three of them never seen); no one judges a pair of photos in 0.2 s. The tests' scripted clicks
# follow a run at once: they set LEAKCORE_REVIEW_LOOK_S=0 (tests/conftest.py)


def look_s() -> float:
    """LOOK_S, or the tests' LEAKCORE_REVIEW_LOOK_S."""
    try:
        return float(os.environ.get("LEAKCORE_REVIEW_LOOK_S", LOOK_S))
    except ValueError:
        return LOOK_S


def _decide(ws_path: str, pairs: list[tuple[str, str]], decision: str, advance: bool, degree: str = "",
            last: bool = False) -> None:
    ws = data.open_workspace(ws_path)  # with the caches the page's reruns share (the item table among them)
    if ws is None:
        return
    reviewer = _reviewer()
    if reviewer is None:
        return
    drawn = st.session_state.get("review_drawn") or (None, 0.0)
    if advance and len(pairs) == 1 and (tuple(pairs[0]) != drawn[0] or time.monotonic() - drawn[1] < look_s()):
        st.session_state["flash"] = ("Not saved: the key came before this pair was on screen (a key decides only the "
                                     "pair drawn; press it again)")
        return
    note = st.session_state.get("review_note") or None
    try:
        if len(pairs) == 1:
            ws.decisions.decide(*pairs[0], decision, reviewer=reviewer, note=note)
        else:
            ws.decisions.decide_many(pairs, decision, reviewer=reviewer, note=note)
    except LeakcoreError as exc:  # a role that may not decide: said on the page, not a traceback from a callback
        st.session_state["flash"] = f"Not saved: {exc.for_page()}"
        return
    data.clear_decision_caches()
    st.session_state["review_note"] = ""
    st.session_state["review_decided"] = True  # this session decided a pair (what ← at the queue's start says)
    st.session_state["flash"] = f"{DECISION_LABELS[decision]} · {_n(len(pairs), 'pair')} saved"
    if len(pairs) == 1:  # another curator's decision on it now differs: said at once, not found later on the pair
        others = ws.decisions.disagreements(pairs[0])
        others = others[others["reviewer"] != reviewer]
        if len(others):
            r = others.iloc[-1]
            st.session_state["flash"] += (f" · {r['reviewer']} decided it {DECISION_LABELS.get(r['decision'], r['decision'])}"
                                          " before: yours is in force, both are shown on the pair")
    if decision == "not_leak" and degree == "hard":  # a slip of the key on a pair the score calls the same picture
        st.session_state["flash"] += " · the score calls this pair hard (the same picture): Z undoes it"
    if advance:
        # The decided pair usually leaves an 'unreviewed' queue; otherwise step past it.
        if "unreviewed" not in st.session_state["f_states"]:
            st.session_state["review_pos"] += 1
            if last:  # nothing to step to: said (four keys on the last pair decided it four times, unsaid)
                st.session_state["flash"] += " · the last pair of the queue: it stays on show"


def _undo(ws_path: str) -> None:
    reviewer = _reviewer()
    if reviewer is None:
        return
    try:
        undone = Project.open(ws_path).decisions.undo_last(reviewer)  # only this reviewer's own last decision
    except LeakcoreError as exc:
        st.session_state["flash"] = f"Not undone: {exc.for_page()}"
        return
    data.clear_decision_caches()
    st.session_state["flash"] = "Nothing to undo" if undone is None else (
        f"Undid {DECISION_LABELS[undone['decision']]} on {undone['eval_item_id'].rsplit('/', 1)[-1]}"
        + (f" on {undone['pairs']} pairs (one act: a group's or the grid's)" if undone.get("pairs", 1) > 1 else ""))
    if undone is not None:
        st.session_state["review_current"] = (undone["eval_item_id"], undone["train_item_id"])
        if undone.get("note"):  # the note goes back in its box with the pair (a new user's was gone after Z, S)
            st.session_state["review_note"] = undone["note"]
        # group mode shows the group of the pair undone
        st.session_state["group_undone"] = (undone["eval_item_id"], undone["train_item_id"])


def _move(step: int, size: int) -> None:
    pos = st.session_state["review_pos"]
    to = max(0, min(size - 1, pos + step))
    if to == pos:  # at an end of the queue: said, not a key press that does nothing (a new user pressed ← after
        # deciding the first pair, which had left the queue of unreviewed pairs, and saw nothing happen)
        edge = "the first" if step < 0 else "the last"
        decided = "unreviewed" in st.session_state.get("f_states", []) and st.session_state.get("review_decided")
        st.session_state["flash"] = f"This is {edge} pair of the queue" + (
            " · a decided pair leaves the unreviewed queue: Z undoes your last decision, and the State filter "
            "shows decided pairs" if decided and step < 0 else "")
    st.session_state["review_pos"] = to
    st.session_state["review_current"] = None


def pair_url(eval_item_id: str, train_item_id: str, queue_params: dict | None = None) -> str:
    """A link that opens one pair on the Review page (relative to the app, so it works behind any host); with
    `queue_params` (see `url_params`) it opens it in that queue, else in the whole queue."""
    from urllib.parse import urlencode

    params = {k: v for k, v in (queue_params or {}).items() if k not in ("eval", "train", "pos")}
    # the workspace opened on Home stays named: the Export page's "open pair" opened the server's own workspace
    named = st.query_params.get(state.WORKSPACE_PARAM)
    return "./Review?" + urlencode({"eval": eval_item_id, "train": train_item_id, **params,
                                    **({state.WORKSPACE_PARAM: named} if named else {})}, doseq=True)


# ---- the queue in the address bar: a reload, a bookmark or a link opens the same queue at the same pair ----------
URL_LISTS = {"split": "f_eval_splits", "source": "f_sources", "degree": "f_degrees", "state": "f_states"}
URL_CHOICES = {"check": "review_check", "labels": "f_labels", "sort": "f_sort", "compare": "compare_mode"}
URL_KEYS = ("eval", "train", "pos", "group", *URL_LISTS, *URL_CHOICES)
ALL = "all"  # a list filter with nothing chosen (every value); never a split id, which always holds a "/"


def split_choices(ws: Project, queue: pd.DataFrame) -> dict[str, list[str]]:
    """The evaluation splits and training sources the filters offer: every one of the workspace, flagged or not (a
    heatmap cell with no flagged pair opens the Review page on that split, showing none, not every split's pairs),
    and any the queue names."""
    def values(column: str) -> set:
        return set(queue[column].unique()) if column in queue else set()  # an empty queue may have no columns

    # sources: the training splits and "(within split)", not the evaluation splits (a new user found `cd/test` offered
    # as a training source)
    return {"split": sorted(set(data.split_names(ws, "eval")) | values("eval_split")),
            "source": sorted(set(data.split_names(ws, "train")) | values("source") | {WITHIN})}


def url_options(queue: pd.DataFrame, checks: list[str], splits: dict[str, list[str]]) -> dict[str, list[str]]:
    """The values each filter of the address bar may take on this queue (what the sidebar offers); `checks`: the
    checks the page offers; `splits`: the splits and sources it offers (`split_choices`)."""
    sorts = [s for s in SORTS if s != UNCERTAINTY_SORT
             or ("uncertainty" in queue and queue["uncertainty"].notna().any())]
    return {"check": list(checks), "split": splits["split"], "source": splits["source"],
            "degree": ["hard", "soft", BORDERLINE], "state": list(STATES),
            "labels": ["any", "same", "different"], "sort": sorts, "compare": COMPARE_MODES}


def _url_now() -> dict[str, list[str]]:
    """Our keys of the address bar as lists of strings (other keys are not ours to read)."""
    return {k: [str(v) for v in st.query_params.get_all(k)] for k in URL_KEYS if st.query_params.get_all(k)}


def parse_url(params: dict[str, list[str]], options: dict[str, list[str]]) -> tuple[dict, list[str]]:
    """(session-state values to set, what was ignored and why) from the address bar's values. The values come
    from outside (a bookmark, a link someone sent): only what the sidebar offers is taken, the rest is named."""
    state: dict = {}
    ignored: list[str] = []
    for key, target in URL_LISTS.items():
        values = params.get(key)
        if not values:
            continue
        if values == [ALL]:
            state[target] = []
            continue
        good = [v for v in dict.fromkeys(values) if v in options[key]]
        ignored += [f"{key}={v}" for v in values if v not in options[key]]
        if good:
            state[target] = good
    for key, target in URL_CHOICES.items():
        values = params.get(key)
        if values:
            if values[-1] in options[key]:
                state[target] = values[-1]
            else:
                ignored.append(f"{key}={values[-1]}")
    pos = (params.get("pos") or [None])[-1]
    if pos is not None:
        if pos.isdigit() and 0 < int(pos) <= 10_000_000:
            state["review_pos"] = int(pos) - 1
        else:
            ignored.append(f"pos={pos}")
    group = (params.get("group") or [None])[-1]  # the group on show, in group mode (a reload went back to the first)
    if group is not None:
        if group.isdigit() and 0 < int(group) <= 10_000_000:
            state["group_pos"] = int(group) - 1
        else:
            ignored.append(f"group={group}")
    link = (params.get("eval") or [None])[-1], (params.get("train") or [None])[-1]
    if None not in link:
        state["review_current"] = link
    return state, [i[:80] for i in ignored]


def _whole_queue(values) -> None:
    """Filters that hold every pair of the queue."""
    values.update({target: [] for target in URL_LISTS.values()})
    values.update(f_labels="any", grid_mode=False)


def restore_from_url(queue: pd.DataFrame, checks: list[str], splits: dict[str, list[str]],
                     holds=None) -> None:
    """A reload, a bookmark or a link: put the queue the address bar names (check, filters, order, position, pair)
    into the session before the sidebar draws its check and filters (`checks`, `splits`: what it offers). Our own writes (`show_in_url`) are recognised and skipped.
    A bare pair link (?eval=…&train=…, no filters) opens its pair in the whole queue."""
    if st.session_state.pop("review_widen", False):  # `position`: the link's filters no longer hold its pair
        _whole_queue(st.session_state)
        st.session_state["flash"] = ("The link's filters no longer hold its pair (decided since): it is shown in the "
                                     "whole queue")  # said, not the sidebar's filters changed without a word
        return
    params = _url_now()
    if not params or st.session_state.get("review_url") == params:
        return
    st.session_state["review_url"] = params
    values, ignored = parse_url(params, url_options(queue, checks, splits))
    link = values.get("review_current")
    notes = []
    unknown = link is not None and holds is not None and not holds(link)  # `holds(ids)`: the workspace has them
    if unknown:  # not "not flagged": a mistyped or stale link names images this workspace does not hold
        notes.append("the link names an image this workspace does not hold (another workspace's link, or a file "
                     "added under another name)")
        values.pop("review_current")
    elif link is not None and queue.empty:
        notes.append("the linked pair is not flagged at the thresholds in force")
        values.pop("review_current")
    elif link is not None:
        evals, trains = queue["eval_item_id"].to_numpy(), queue["train_item_id"].to_numpy()
        found = bool(((evals == link[0]) & (trains == link[1])).any())
        if not found and ((evals == link[1]) & (trains == link[0]) & (queue["source"] == WITHIN).to_numpy()).any():
            # a pair within one split is queued from one end: a link made from the other end opens it
            values["review_current"], found = (link[1], link[0]), True
        if not found:
            notes.append("the linked pair is not flagged at the thresholds in force")
            values.pop("review_current")
        elif not any(k in params for k in (*URL_LISTS, "labels")):  # a bare pair link: the whole queue
            _whole_queue(values)
    for key, value in values.items():
        st.session_state[key] = value
    st.session_state["review_link_pending"] = "review_current" in values
    if ignored:  # as code: a link's text is never markdown (no link or emphasis someone else wrote)
        notes.append("ignored in the link: " + ", ".join(as_code(i) for i in ignored[:6])
                     + (" …" if len(ignored) > 6 else "") + " (not among the choices here)")
    if notes:
        text = "; ".join(notes)
        st.session_state["flash"] = text[0].upper() + text[1:]


def url_params(pair: pd.Series | None, pos: int, group: int | None = None) -> dict[str, list[str]]:
    """The address bar for the queue on show: check, filters, order, compare mode, position and pair (or, in group
    mode, the group's position)."""
    ss = st.session_state
    out = {} if pair is None else {"eval": [str(pair["eval_item_id"])], "train": [str(pair["train_item_id"])],
                                   "pos": [str(pos + 1)]}
    if group is not None:
        out["group"] = [str(group + 1)]
    for key, target in URL_LISTS.items():
        out[key] = [str(v) for v in ss.get(target) or []] or [ALL]
    for key, target in URL_CHOICES.items():
        if ss.get(target):
            out[key] = [str(ss[target])]
    return out


def show_in_url(pair: pd.Series | None, pos: int = 0, group: int | None = None) -> None:
    """Keep the address bar on the queue and the pair shown, so it can be reloaded, bookmarked or sent."""
    params = url_params(pair, pos, group)
    if _url_now() != params:
        named = st.query_params.get_all(state.WORKSPACE_PARAM)  # the workspace stays named
        st.query_params.from_dict({**params, state.WORKSPACE_PARAM: named} if named else params)
    st.session_state["review_url"] = params  # our own write, not a link to open


def _link_to_widen() -> bool:
    """Whether a link's pair is waiting to be shown and its filters have not been widened for it yet."""
    ss = st.session_state
    return ss.get("review_current") is not None and bool(ss.get("review_link_pending")) and not ss.get("review_widened")


def _widen_for_link() -> None:
    """A link's filters (state=unreviewed) that no longer hold its pair: the whole queue, once, then the pair (a
    rerun: this does not return). `position` does it where the filters hold other pairs; the panel where they hold
    none (every pair decided: a link to a decided pair showed "all reviewed" and not the pair, without a word)."""
    st.session_state["review_widen"] = st.session_state["review_widened"] = True
    st.rerun()


def position(view) -> int:
    """Index of the pair to show: the one just undone (or linked) if asked for, else the remembered position."""
    current = st.session_state.get("review_current")
    if current is not None:
        hit = (view.column("eval_item_id") == current[0]) & (view.column("train_item_id") == current[1])
        if hit.any():
            st.session_state["review_pos"] = int(hit.argmax())
        elif st.session_state.get("review_refiltered"):
            st.session_state["review_pos"] = 0  # the pair on show left the queue with the filter: its first pair
        elif _link_to_widen():
            # a link copied from the address bar carries the sender's filters (state=unreviewed), which its pair left
            # once decided (a second curator's copy opened another pair): the whole queue, then that pair
            _widen_for_link()
        elif st.session_state.get("review_link_pending"):
            st.session_state["flash"] = ("The linked pair is not in this queue now (decided since, or filtered "
                                         f"out): showing pair {min(st.session_state['review_pos'], len(view) - 1) + 1}")
        st.session_state["review_current"] = None
    st.session_state["review_link_pending"] = st.session_state["review_refiltered"] = False
    st.session_state["review_widened"] = False
    pos = min(st.session_state["review_pos"], max(len(view) - 1, 0))
    st.session_state["review_pos"] = pos
    return pos


@state.fragment
def review_panel(ws: Workspace, hard: float, soft: float, filters: dict) -> None:
    """The pair on show, its decisions and views: a fragment, so that a key press or a decision reruns only this
    part (the sidebar and the page around it stay as they are)."""
    with user_errors():
        queue = data.queue(ws, hard, soft)  # cached; a decision refreshes it through the decisions' stamp
        view, counts = data.review_view(ws, hard, soft, filters)  # counts of the check on show
        decided, total, border = counts["decided"], max(counts["total"], 1), counts["borderline"]
        what = (f"{counts['total']} flagged pairs" if not border else
                f"{counts['total']} pairs ({counts['total'] - border} flagged, {border} borderline just below soft)")
        # the Home page counts evaluation images against training: an image can have several pairs, and a pair
        # within one split is not among them
        within, across = counts.get("within", 0), counts["total"] - counts.get("within", 0)
        if within or (counts.get("images") and counts["images"] != across):
            what += (f"; {across} against training on {counts.get('images', 0)} evaluation images"
                     + (f", {within} within one split" if within else ""))
        unsure = counts.get("unsure", 0)  # decided "unsure": looked at, not settled (a curator read "all reviewed")
        st.progress(decided / total, text=f"Reviewed {decided} of {what}" + (f" ({unsure} unsure)" if unsure else "")
                    + f" · {len(view)} match the filters")
        if view.empty and _link_to_widen():
            _widen_for_link()
        flash()
        if view.empty:
            show_in_url(None)
            if counts["total"] and decided >= counts["total"]:  # the queue is done: what was not flagged is left
                left = (f" {unsure} of them {'is' if unsure == 1 else 'are'} marked unsure, still to settle (the "
                        "sidebar's *Decision state* filter on unsure lists them)." if unsure else "")
                st.success(f"All {counts['total']} pairs in the queue are reviewed.{left} Below, the evaluation images "
                           f"that are not in it and came closest to soft, each beside its nearest training image.")
                undo_button(ws)
                closest_table(ws, set(queue["eval_item_id"].astype(str)))
                return
            st.success("No pairs match these filters. Widen them in the sidebar to see more.")
            undo_button(ws)
            return
        pos = position(view)
        flash()  # what position() had to say about a linked pair
        pair = view.row(pos)
        st.session_state["review_shown"] = (pair["eval_item_id"], pair["train_item_id"])  # what a filter keeps
        show_in_url(pair, pos)
        items = data.items(ws)
        top = st.columns([3, 1, 1])
        if ws.settings.score != "similarity" and pd.notna(pair.get("raw_similarity")):  # ordered by the score in force
            score = f"{ws.settings.score} score **{pair['similarity']:.4f}** (similarity {pair['raw_similarity']:.4f})"
        else:
            score = f"similarity **{pair['similarity']:.4f}**"
        if st.session_state.get("grid_mode"):  # counted by evaluation image, as its ← → move (a new user read
            # "Pair 1 / 25" over a grid of one image's neighbours)
            images = pd.unique(view.column("eval_item_id"))
            where = f"Evaluation image **{int(np.flatnonzero(images == pair['eval_item_id'])[0]) + 1} / {len(images)}**"
        else:
            where = f"Pair **{pos + 1} / {len(view)}**"
        top[0].markdown(
            f"{where} · {score} · degree by the score **{pair['degree']}** · "
            f"labels **{pair['label_agreement']}** · state **{pair['state']}**"
            + (f" ({DECISION_LABELS[pair['decision']]} by {as_code(pair['reviewer'], 200)})"
               if pair["state"] != "unreviewed" else ""))
        decided_by_others(ws, pair)
        moved = Images.changed_since_added(items, (pair["eval_item_id"], pair["train_item_id"]))
        if moved:  # a file replaced on disk: the picture is the new file, the scores the old one
            st.warning(f"{' and '.join(as_code(m, 200) for m in moved)} changed on disk since the scan: the picture "
                       "shows the file as it is now, the scores and the decision the file as it was. Scan again "
                       "(Home, or `leakcore scan`) before deciding.", icon=":material/sync_problem:")
        top[1].toggle("Grid mode", key="grid_mode",
                      help="Decide the flagged neighbours of this evaluation image in the queue at once")
        top[2].select_slider("Image size", options=["fit", "1×", "2×", "4×", "8×"], key="zoom",
                             help="fit: as large as the column; small images are enlarged pixel by pixel")
        group = data.neighbours_of(ws, hard, soft, queue, pair["eval_item_id"])
        group = group[group["check"] == pair["check"]]  # one row per pair: the check on show
        if st.session_state["grid_mode"]:
            grid_mode(ws, items, pair, group, view)
        else:
            decision_bar(ws, pair, len(view))
            pair_view(ws, items, pair, group)
            # the pair this run drew whole: a key pressed before a run finished drawing the next pair is refused, not
            # applied to a pair the curator never saw (four N presses 30 ms apart decided three pairs never shown)
            # since when: a rerun that draws the same pair again (a note committed, a compare mode chosen) keeps the
            # first time (a key pressed right after a click that committed a note was refused, unsaid)
            shown = (pair["eval_item_id"], pair["train_item_id"])
            before = st.session_state.get("review_drawn")
            if not before or before[0] != shown:
                st.session_state["review_drawn"] = (shown, time.monotonic())
        if not st.session_state["grid_mode"]:  # grid mode says its own keys (Shift+H / S / N / U)
            st.caption("Keys: H hard leak · S soft leak · N not a leak · U unsure · ← previous · → next · Z undo")
            next_strip(ws, items, view, pos)
        pictures_ahead(ws, items, view, pos)


AHEAD = 3  # pairs whose pictures are made before the key press that shows them


def pictures_ahead(ws: Workspace, items: pd.DataFrame, view, pos: int) -> None:
    """Make the next AHEAD pairs' pictures (and the strip's next thumbnails) in the background: → and a decision
    then find them cached instead of decoding two photos while the curator waits."""
    rows = display.facts(items)
    ahead = lambda a, b: [i for pair in zip(view.cells("eval_item_id", slice(a, b)),  # noqa: E731
                                            view.cells("train_item_id", slice(a, b))) for i in pair]
    ids = [i for i in dict.fromkeys(ahead(pos + 1, pos + 1 + AHEAD))
           if pd.notna(rows[i][4]) and rows[i][4] >= FIT_PX]  # as show_image draws them ("fit": a display-sized JPEG)
    todo = [(s, display.PAIR_PX) for s in display.sources(ws, items, ids)]
    todo += [(s, display.STRIP_PX) for s in display.sources(ws, items, ahead(pos + 1 + STRIP, pos + 1 + STRIP + AHEAD))]
    display.ahead(todo)


STRIP = 8  # pairs shown ahead in the strip


def next_strip(ws: Workspace, items: pd.DataFrame, view, pos: int) -> None:
    """The next pairs of the queue as small thumbnails (evaluation above, training below), each a link to that
    pair: one HTML block, so the strip costs the loop one element, not sixteen images."""
    import html

    window = slice(pos + 1, pos + 1 + STRIP)
    ahead = list(zip(view.cells("eval_item_id", window), view.cells("train_item_id", window),
                     view.cells("similarity", window)))
    if not ahead:
        return
    cells = []
    srcs = display.sources(ws, items, [i for e, t, _ in ahead for i in (e, t)])
    for k, (e, t, similarity) in enumerate(ahead):
        thumbs = [display.picture(s, display.STRIP_PX)[0] for s in srcs[2 * k:2 * k + 2]]
        imgs = "".join(f'<img src="{u}" style="width:56px;height:56px;object-fit:contain;display:block;'
                       f'image-rendering:pixelated;background:#f1f5f9;margin-bottom:2px" alt="">' if u else
                       '<div style="width:56px;height:56px;background:#e2e8f0;margin-bottom:2px"></div>' for u in thumbs)
        tip = html.escape(f"{e} ↔ {t}", quote=True)
        link = pair_url(e, t, st.session_state.get("review_url"))
        cells.append(f'<a href="{html.escape(link, quote=True)}" '
                     f'target="_self" title="{tip}" style="text-decoration:none;color:inherit;text-align:center">'
                     f'{imgs}<span style="font-size:0.75rem">{similarity:.4f}</span></a>')
    st.caption(f"Next {len(ahead)} pair{'' if len(ahead) == 1 else 's'} (click one to open it)")
    st.markdown('<div style="display:flex;gap:10px;flex-wrap:wrap">' + "".join(cells) + "</div>",
                unsafe_allow_html=True)


def undo_button(ws: Workspace) -> None:
    """Undo (Z) where the queue is empty: the last decision took its pair out of the queue, and Z did nothing on the
    "all reviewed" screen until the State filter was widened."""
    reviewer = (st.session_state.get("reviewer") or "").strip()
    if reviewer and ws.decisions.undoable(reviewer):
        st.button("Undo my last decision", key="undo_empty", shortcut="Z", on_click=_undo, args=(str(ws.path),),
                  icon=":material/undo:", help="Z: takes back your last decision; its pair returns to the queue")


CLOSEST_SHOWN = 20  # evaluation images shown, closest first, where nothing is flagged or all of the queue is reviewed


def nothing_flagged(ws: Workspace, soft: float) -> None:
    """An empty queue: before a scan, say so; after one, show the evaluation images that came closest to soft, each
    with its nearest training image, so that a curator can see what was not flagged (a new user's scan of 3,000 pet
    photos flagged nothing, and the only way to look at the near misses was to read the neighbour tables)."""
    pairs = data.pairs(ws)
    if pairs.empty:
        st.info("Nothing flagged yet: the scan is running (its bar is in the sidebar); flagged pairs show here when it "
                "ends." if job_ui.running("scan", str(ws.path)) else
                "Nothing flagged yet: no scan results. Run a scan from the home page.")
        return
    st.info(f"Nothing is flagged or borderline: no pair scores near soft ({soft:.4f}, {ws.settings.score}). Below "
            f"are the evaluation images that came closest, each beside its nearest training image: look at them to "
            f"see what was not flagged, or lower soft on the Thresholds page to review them as pairs.")
    closest_table(ws, set())


def closest_table(ws: Workspace, leave_out: set) -> None:
    """The CLOSEST_SHOWN evaluation images (not in `leave_out`) whose nearest training image scores highest, each
    beside it, with the score in force and the raw similarity: what was not flagged, nearest the threshold first."""
    best = Scores.closest(data.pairs(ws), leave_out, CLOSEST_SHOWN)  # against training only: `score` in force
    if best.empty:
        return
    score = ws.settings.score
    table = pd.DataFrame({
        "evaluation image": data.thumbnails(ws, best["eval_item_id"].tolist(), side=96),
        "nearest training image": data.thumbnails(ws, best["train_item_id"].tolist(), side=96),
        score: best["score"].to_numpy()})
    if score != "similarity":
        table["raw similarity"] = best["similarity"].to_numpy()
    table["evaluation item"] = best["eval_item_id"].to_numpy()
    table["training item"] = best["train_item_id"].to_numpy()
    table["training split"] = best["train_split"].astype(str).to_numpy()
    config = {"evaluation image": st.column_config.ImageColumn(width="medium"),
              "nearest training image": st.column_config.ImageColumn(width="medium"),
              score: st.column_config.NumberColumn(format="%.4f"),
              "raw similarity": st.column_config.NumberColumn(format="%.4f")}
    st.dataframe(table, column_config=config, hide_index=True, row_height=100, width="stretch",
                 height=100 * len(table) + 40)  # every row at once: no scrolling inside the table


def suggestion(degree: str) -> str:
    """The decision the detector suggests for a pair of this degree (said in its button's tooltip): hard above the
    hard threshold, soft between the thresholds, not a leak for a borderline pair (below soft)."""
    return {"hard": "hard", "soft": "soft"}.get(degree, "not_leak")


def decision_bar(ws: Workspace, pair: pd.Series, size: int) -> None:
    """Decision buttons (keys H S N U), previous / next (← →), undo (Z) and a note."""
    cols = st.columns([1, 1, 1, 1, 0.2, 1, 1, 1])
    args = (str(ws.path), [(pair["eval_item_id"], pair["train_item_id"])])
    from ui.access_ui import refusal

    refused = refusal(str(ws.path))  # a role that may not decide: the buttons are off and the page says why
    anonymous = refused is not None or not (st.session_state.get("reviewer") or "").strip()
    suggested = suggestion(pair["degree"])
    in_force = pair.get("decision")  # only the pair's decision in force is drawn filled: two new users took a filled
    # suggestion for a decision already made (the suggestion is the degree the line above names, and the tooltip's)
    for col, (decision, label, key) in zip(cols[:4], DECISION_BUTTONS):
        col.button(f"{label}", key=f"decide_{decision}", shortcut=key, on_click=_decide,
                   args=(*args, decision, True, str(pair.get("degree", "")), st.session_state["review_pos"] >= size - 1),
                   type="primary" if decision == in_force else "secondary", width="stretch", disabled=anonymous,
                   help=" · ".join(([f"Suggested for this pair: its degree is {pair['degree']}"]
                                    if decision == suggested else [])
                                   + (["the decision in force"] if decision == in_force else [])) or None)
    cols[5].button("Previous", key="prev", shortcut="Left", on_click=_move, args=(-1, size), width="stretch")
    cols[6].button("Next", key="next", shortcut="Right", on_click=_move, args=(1, size), width="stretch")
    reviewer = (st.session_state.get("reviewer") or "").strip()
    mine = not anonymous and ws.decisions.undoable(reviewer)  # a decision of theirs that Undo would take back
    cols[7].button("Undo", key="undo", shortcut="Z", on_click=_undo, args=(str(ws.path),), width="stretch",
                   disabled=not mine, help=None if mine else "Nothing of yours to undo: undo takes back your own last "
                   "decision")
    if refused is not None:
        st.warning(refused, icon=":material/lock:")
    elif anonymous:
        st.warning("Type your name in the Reviewer field (sidebar) to decide: every decision records who made it.")
    st.text_input("Note (optional, saved with the next decision)", key="review_note", max_chars=1000)


COMPARE_MODES = ["side by side", "overlay", "difference", "flicker", "aligned"]


def _comparison(a, b, mode: str, side: int = 512):
    """Both images at one size, blended (overlay), as their absolute difference (amplified), or as a two-frame
    animation (flicker, PNG-free: an animated GIF the browser plays by itself)."""
    import io

    import numpy as np
    from PIL import Image, ImageChops

    scale = side / max(a.width, a.height, 1)
    size = (max(1, round(a.width * scale)), max(1, round(a.height * scale)))
    resample = Image.Resampling.NEAREST if max(a.size) < 128 else Image.Resampling.LANCZOS
    a2, b2 = a.convert("RGB").resize(size, resample), b.convert("RGB").resize(size, resample)
    if mode == "overlay":
        return Image.blend(a2, b2, 0.5)
    if mode == "difference":
        diff = np.asarray(ImageChops.difference(a2, b2), dtype=np.float32)
        return Image.fromarray(np.clip(diff * 4, 0, 255).astype(np.uint8))  # x4: small differences show
    buf = io.BytesIO()
    a2.save(buf, format="GIF", save_all=True, append_images=[b2], duration=600, loop=0)
    return buf.getvalue()


ALIGNED_PX = 448  # the aligned view's images, drawn at their native size (two to a row at 1400 px)


def contributions_shown(contributions: pd.DataFrame) -> pd.DataFrame:
    """The fused score's per-feature shares as the Review page lists them: plain names (a new user read `orb_inliers`
    5.613 beside "ORB + RANSAC inliers 273": the model reads log(1 + n)), the inliers as their count."""
    import numpy as np

    value = contributions["value"].astype(float)
    count = contributions["feature"] == "orb_inliers"
    shown = np.where(count, np.round(np.expm1(value)), value.round(3))
    return pd.DataFrame({"feature": contributions["feature"].map(lambda f: FEATURE_WORDS.get(f, f)), "value": shown,
                         "log-odds share": contributions["contribution"].round(2)})


def _matches_count(e, found=None) -> int:
    """The pair's local matches as the stored evidence counts them (the one count the page says; matches found
    again on the photo for the pictures' map can differ by a few: the evidence reads a JPEG's stored luma)."""
    import math

    stored = e.stored.get("orb_inliers") if e.stored is not None else None
    return round(math.expm1(float(stored))) if stored is not None and pd.notna(stored) else found.inliers


def evidence_view(ws: Workspace, ev: pd.Series, tr: pd.Series, pair: pd.Series) -> None:
    """The alignment the second stage found, applied to the photos at display resolution: both images in the
    training image's frame, their overlay and difference, and which features decided."""
    from leakcore.errors import LeakcoreError

    raw = pair["raw_similarity"] if "raw_similarity" in pair.index else pair["similarity"]
    import_heavy()  # torch and OpenCV, not beside the warm-up's or another page's import of them
    try:
        e = data.explain_pair(ws, pair["eval_item_id"], pair["train_item_id"], float(raw))
    except LeakcoreError as exc:
        st.warning(exc.for_page())
        return
    x = e.explanation
    a, why_a = data.item_image(ws, ev)
    b, why_b = data.item_image(ws, tr)
    if a is None or b is None:
        st.warning(f"No image to align: {why_a or why_b}")
        return
    # decided as a crop, or registered by the local matches: shown where the crop search or the matches' map place it
    # (at 128-512 px, where the whole-image alignment works at 32-48 px, misplaced strong crops and was pulled by
    # banners)
    found = e.crop_found(a, b)
    # a pair whose features were measured on its matches' map (`x.matches`) is shown by that map, a crop found as well
    # (a new user saw a 60% crop drawn by the crop search's place, double-edged, under a table measured on the map)
    matches = e.matches_found(a, b) if found is None or x.matches is not None else None
    by_matches = matches is not None
    by_crop = found is not None and not by_matches
    moved, train, overlay, diff = e.aligned_views(a, b, ALIGNED_PX, crop=found if by_crop else None, matches=matches)
    c1, c2 = st.columns(2)
    jpeg = {"width": "content", "output_format": "JPEG"}  # a fifth of the PNG's bytes at 448 px
    refined = "then refined" if x.refine_shown else "the refinement not shown: it fitted worse"
    whole = by_crop and found.box is not None and min(found.box[2], found.box[3]) >= 0.9  # not a crop at all
    how = (f"matched whole by the crop search (NCC {found.ncc:.3f})" if whole else
           f"placed where the crop search found it (NCC {found.ncc:.3f})" if by_crop else
           f"placed by its {_matches_count(e, matches)} local matches' map" + (", mirrored" if matches.view == 1 else "")
           if by_matches else f"moved by the alignment ({x.transform}, {refined})")
    c1.image(moved, caption=f"evaluation, {how}", **jpeg)
    c2.image(train, caption="training image, same frame", **jpeg)
    c1.image(overlay, caption="overlay: red = evaluation, cyan = training, grey = agree", **jpeg)
    c2.image(diff, caption="|aligned evaluation − training| × 4 on the overlap", **jpeg)
    crop = e.crop_view(a, b, ALIGNED_PX, found) if found is not None else None
    if crop is not None:  # decided as a crop: the whole-image alignment cannot place it, the crop search did
        outer, inner, caption = crop
        st.markdown(f"**Found as a crop**: {caption}")
        c5, c6 = st.columns(2)
        c5.image(outer, caption="where it was found", **jpeg)
        c6.image(inner, caption="the crop", **jpeg)
    c3, c4 = st.columns([1, 1])
    with c3:
        al = x.alignment
        placed = ("the crop search's place" if by_crop else "the local matches' map" if by_matches else None)
        if x.matches is not None:  # aligned by the matches' map: the features were measured there
            st.markdown("**The features below were measured where the local matches' map puts the evaluation image**, "
                        "as the pictures show it: with that many matches agreeing the map is exact, so the tool's own "
                        f"alignment search (at {x.train.shape[0]} px) and its refinement are not run.")
        else:
            st.markdown((f"**The pictures show {placed}.** " if placed else "")
                        + f"**Best alignment{' of the whole image, which the features below measure' if placed else ''}**: "
                        f"{x.transform}, shifted by ({al.dx:+d}, {al.dy:+d}) px at "
                        f"{x.train.shape[0]} px, then refined by an affine warp (ECC)"
                        + ("" if x.refine_shown or placed else "; the pictures leave the warp out, which lowered the NCC "
                           f"from {al.ncc:.3f} to {x.refined['ncc_refined']:.3f}")
                        # a new user read "then refined" as better where the rows after refinement were lower
                        + ("; the refinement fitted worse here (the rows after it are lower)"
                           if placed and refined_worse(x) else ""))
        facts = {"raw similarity": f"{raw:.4f}", "NCC (luminance)": f"{al.ncc:.3f}",
                 "NCC (gradients)": f"{al.ncc_grad:.3f}", "SSIM on the overlap": f"{x.ssim:.3f}",
                 "NCC (fine detail)": f"{x.ncc_detail:.3f}",
                 "median |difference|": f"{255 * x.abs_diff:.1f} grey levels",
                 "overlap": f"{100 * al.overlap:.0f}% of the smaller image"}
        if x.matches is None:  # on the matches' map the refined evidence is the same measurement (none is run)
            facts |= {"NCC after refinement": f"{x.refined['ncc_refined']:.3f}",
                      "NCC (fine detail) after refinement": f"{x.refined['detail_refined']:.3f}",
                      "median |difference| after refinement": f"{255 * x.refined['diff_refined']:.1f} grey levels"}
        if e.stored is not None and e.stored["orb_used"]:
            facts["ORB + RANSAC inliers"] = f"{_matches_count(e)} ({100 * e.stored['orb_ratio']:.0f}%)"
        if e.stored is not None and float(e.stored.get("tiles_textured", 0.0) or 0.0) > 0:
            # where the matches are many: how much of the photo agrees under their map (an overlay's letters alone do
            # not make two photos one, verify.away_agreement)
            agree = e.stored["tiles_agree"]
            facts["textured tiles agreeing under the matches' map"] = (
                f"{100 * agree:.0f}% of {e.stored['tiles_textured']:.0f}" if pd.notna(agree) else
                f"too few to tell ({e.stored['tiles_textured']:.0f})")
        if e.stored is not None and float(e.stored.get("crop_ncc", 0.0) or 0.0) > 0:
            # one image found inside the other (verify.crop_search): a strong crop with too few corners for ORB
            facts["found as a crop: NCC; fine detail NCC"] = (f"{e.stored['crop_ncc']:.3f}; "
                                                             f"{e.stored['crop_detail']:.3f}")
        # every row shown (a table of ten rows with a scrollbar of its own hid the last evidence)
        st.dataframe(pd.DataFrame({"evidence": list(facts), "value": list(facts.values())}), hide_index=True,
                     width="stretch", height="content")
    with c4:  # beside the evidence, not under it: the two tables stacked made a page a curator scrolled past the keys
        if e.fused is not None:
            st.markdown(f"**Fused score** P(same photograph) = **{e.fused:.4f}**")
            contrib = contributions_shown(e.contributions)
            st.dataframe(contrib, hide_index=True, width="stretch", height="content")
            st.caption("Log-odds share: how far each feature moved this pair from an average pair of the fitting "
                       "set (positive: towards the same photograph).")
        elif e.stored is None:
            st.caption("This pair was not verified (below the candidate threshold, or no verification run): the "
                       "alignment is computed now for display; run `leakcore verify` for the fused score.")
        else:
            st.caption("No fused model is fitted for this encoder: `leakcore verify WS` fits one.")
    c7, c8 = st.columns(2)
    with c7:
        item_facts(ev)
    with c8:
        item_facts(tr)


def _keep_a_compare_mode() -> None:
    """A click on the mode already chosen leaves it chosen: Streamlit's single-choice control clears it instead, and
    the view fell back to side by side (a new user's second click on "aligned", carried to the next pair)."""
    if st.session_state.get("compare_mode") is None:
        st.session_state["compare_mode"] = st.session_state.get("compare_last", COMPARE_MODES[0])


def pair_view(ws: Workspace, items: pd.DataFrame, pair: pd.Series, group: pd.DataFrame) -> None:
    """The evaluation image and its training neighbour side by side (or overlaid, as a difference, flickering),
    with what a curator needs to judge."""
    ev, tr = items.loc[pair["eval_item_id"]], items.loc[pair["train_item_id"]]
    zoom = st.session_state["zoom"]
    mode = st.segmented_control("Compare", COMPARE_MODES, key="compare_mode", selection_mode="single",
                                on_change=_keep_a_compare_mode,
                                help="aligned: the second stage's view: the evaluation image moved by the flip, turn, "
                                     "scale and shift that fit the training image best, and what decided the fused "
                                     "score") or COMPARE_MODES[0]
    st.session_state["compare_last"] = mode
    if mode == "aligned":
        evidence_view(ws, ev, tr, pair)
        return
    if mode != COMPARE_MODES[0]:
        a, _ = data.item_image(ws, ev)
        b, _ = data.item_image(ws, tr)
        if a is not None and b is not None:
            c1, c2 = st.columns([2, 1])
            c1.image(_comparison(a, b, mode), caption={"overlay": "both at 50%", "difference": "|evaluation − training| × 4",
                                                       "flicker": "evaluation ↔ training, 0.6 s each"}[mode])
            with c2:
                item_facts(ev)
                item_facts(tr)
            return
    pan = None
    if needs_pan(ev, zoom) or needs_pan(tr, zoom):  # zoomed past the column: one window, moved over both images
        p1, p2 = st.columns(2)
        p1.slider("Pan across (%)", 0, 100, key="pan_x", help="Where the zoomed window sits, left to right, in both "
                                                                "images at once")
        p2.slider("Pan down (%)", 0, 100, key="pan_y", help="Where the zoomed window sits, top to bottom")
        pan = (st.session_state["pan_x"] / 100, st.session_state["pan_y"] / 100)
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown(f"**Evaluation** · `{pair['eval_split']}`")
        show_image(ws, ev, zoom=zoom, pan=pan)
        item_facts(ev)
    with right:
        heading = "Neighbour in the same split" if pair["source"] == WITHIN else f"Training neighbour · `{pair['source']}`"
        rank = int(pair["rank"])  # 0: found by its bytes, not among the scan's neighbours
        st.markdown(f"**{heading}** · " + (f"rank {rank}" if rank > 0 else "found by identical bytes"))
        show_image(ws, tr, zoom=zoom, pan=pan)
        item_facts(tr)
    others = group[group["train_item_id"] != pair["train_item_id"]]
    if not others.empty:
        st.caption(f"Other neighbours of this evaluation image ({len(others)})")
        shown = others.sort_values("similarity", ascending=False).head(8)  # cells of a fixed size: no caption can
        # run into the next one (in eight columns, 128 px pictures and long split names overlapped at 1,400 px)
        image_strip(ws, shown["train_item_id"].tolist(),
                    [f"{o.similarity:.4f} · {o.train_split}" for o in shown.itertuples()], side=112)


def grid_mode(ws: Workspace, items: pd.DataFrame, pair: pd.Series, group: pd.DataFrame, view) -> None:
    """All flagged neighbours of one evaluation image; decide the selected ones at once. ← → move to the previous
    or next evaluation image of the filtered queue."""
    group = group.sort_values("similarity", ascending=False)
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
                # the label short enough for a quarter of the page; the state in a caption under it, whole
                if st.checkbox(f"{o['similarity']:.4f} · {o['degree']}", key=f"grid_{o['eval_item_id']}_{o['train_item_id']}",
                               value=o["state"] == "unreviewed"):
                    chosen.append((o["eval_item_id"], o["train_item_id"]))
                st.caption(o["state"])
    from ui.access_ui import refusal

    refused = refusal(str(ws.path))
    anonymous = refused is not None or not (st.session_state.get("reviewer") or "").strip()
    st.caption(f"{len(chosen)} of {len(group)} neighbours ticked")
    bcols = st.columns(4)  # a row of their own: each button has room for its words and its key
    for col, (decision, label, key) in zip(bcols, DECISION_BUTTONS):
        col.button(label, key=f"grid_decide_{decision}", disabled=not chosen or anonymous,
                   shortcut=f"Shift+{key}", on_click=_decide_grid, args=(str(ws.path), chosen, decision), width="stretch")
    if refused is not None:
        st.warning(refused, icon=":material/lock:")
    bcols = st.columns([1, 1, 2])
    ids = view.column("eval_item_id")
    pos = min(st.session_state.get("review_pos", 0), len(ids) - 1)
    other = ids != pair["eval_item_id"]
    before, after = np.flatnonzero(other[:pos]), np.flatnonzero(other[pos + 1:]) + pos + 1
    target = lambda rows: (ids[rows[0]], view.column("train_item_id")[rows[0]]) if len(rows) else None  # noqa: E731
    prev_pair, next_pair = target(before[::-1]), target(after)
    bcols[0].button("Previous image", key="grid_prev", shortcut="Left", width="stretch", disabled=prev_pair is None,
                    on_click=_jump_to_pair, args=(prev_pair,))
    bcols[1].button("Next image", key="grid_next", shortcut="Right", width="stretch", disabled=next_pair is None,
                    on_click=_jump_to_pair, args=(next_pair,))
    st.caption("Keys: Shift+H / S / N / U decide the ticked neighbours · ← → previous / next evaluation image")


def _decide_grid(ws_path: str, chosen: list[tuple[str, str]], decision: str) -> None:
    """Decide the ticked neighbours, then untick them (a decided pair is not chosen for the next decision)."""
    _decide(ws_path, chosen, decision, False)
    for e, t in chosen:
        st.session_state.pop(f"grid_{e}_{t}", None)


def _jump_to_pair(pair: tuple[str, str] | None) -> None:
    """Show another pair of the queue (grid mode's previous / next evaluation image)."""
    if pair is not None:
        st.session_state["review_current"] = pair


# ---- groups ----------------------------------------------------------------------------------------------------
GROUP_PX = 208  # a group member's picture: six to a row at 1,400 px
GROUP_BUTTONS = [("same_source", "One source: keep together", "K"), ("not_leak", "Unrelated", "N")]


def _explicit_only_words() -> str:
    """Why Unrelated is off on a group explicit metadata alone links (the facade's refusal, as a sentence)."""
    return EXPLICIT_ONLY[0].upper() + EXPLICIT_ONLY[1:] + "; add the dataset again with other group ids to split it"


def _decide_group(ws_path: str, group_id: str, decision: str) -> None:
    """A decision on a whole group, recorded on the pairs that link it (explicit metadata links stay)."""
    ws = Project.open(ws_path)
    reviewer = _reviewer()
    if reviewer is None:
        return
    try:
        n = ws.decisions.decide_group(group_id, decision, reviewer=reviewer,
                                      note=st.session_state.get("review_note") or None, groups=data.groups(ws))
    except LeakcoreError as exc:
        st.session_state["flash"] = f"Not saved: {exc.for_page()}"
        return
    data.clear_decision_caches()
    st.session_state["group_decided"] = group_id  # the page moves past it if it is still there (K: a new user's next
    # key, meant for the next group, went to the same one and cut it)
    label = DECISION_LABELS[decision] if decision != "not_leak" else "unrelated"
    if n:
        st.session_state["flash"] = f"{label} · {_n(n, 'link')} recorded"
        return
    linked = ws.decisions.group_links(data.groups(ws), group_id, decision)  # nothing recorded: how many (only then)
    st.session_state["flash"] = f"{label} is already the decision on this group's {_n(len(linked), 'link')}"


def _group_decision(ws: Workspace, groups, group_id: str) -> str | None:
    """Who kept a group together (the reviewer of a "one source" decision on one of its links), or None."""
    d = data.decisions(ws)
    if d.empty:
        return None
    ev = groups.evidence[groups.evidence["group_id"] == group_id]
    kept = d[d["decision"] == "same_source"]
    links = set(zip(ev["a"].astype(str), ev["b"].astype(str)))
    links |= {(b, a) for a, b in links}
    hit = kept[[(e, t) in links for e, t in zip(kept["eval_item_id"], kept["train_item_id"])]]
    return None if hit.empty else str(hit["reviewer"].iloc[-1])


def group_view(ws: Workspace, items: pd.DataFrame, eval_splits: list[str]) -> None:
    """One group at a time: all its members as a strip labelled by split and time, and a decision for the group."""
    groups = data.groups(ws)
    table = groups.groups[groups.groups["cross_split"]]
    if eval_splits:
        keep = groups.membership[groups.membership["split"].isin(eval_splits)]["group_id"].unique()
        table = table[table["group_id"].isin(keep)]
    st.caption(f"Groups link images of one source across splits: explicit group metadata, curator decisions, and "
               f"candidate pairs (similarity ≥ {groups.threshold:.3f}) whose pixels agree (a region matched by local "
               f"features and a geometric fit), so look-alikes do not chain. {len(table)} groups span splits; "
               f"{int(table['leaks'].sum())} reach from evaluation into training data.")
    if groups.guard:
        st.warning(groups.guard[0].upper() + groups.guard[1:] + ".", icon=":material/warning:")
    if table.empty:
        show_in_url(None)
        st.success("No group spans splits.")
        return
    pos = max(0, min(st.session_state.get("group_pos", 0), len(table) - 1))
    undone = st.session_state.pop("group_undone", None)
    if undone is not None:  # Z: back to the group of the pair undone (a group cut by N comes back)
        hit = groups.membership.loc[groups.membership["item_id"].isin(undone), "group_id"]
        at = np.flatnonzero(table["group_id"].isin(set(hit)).to_numpy())
        pos = int(at[0]) if len(at) else pos
    elif st.session_state.pop("group_decided", None) == table.iloc[pos]["group_id"] and pos < len(table) - 1:
        pos += 1  # decided and still here (kept together): on to the next group, as a pair's decision moves on
    st.session_state["group_pos"] = pos
    show_in_url(None, group=pos)  # the check and the group on show, so that a reload stays on them
    g = table.iloc[pos]
    members = groups.membership[groups.membership["group_id"] == g["group_id"]]
    members = members.assign(_train=members["role"] != "eval").sort_values(["_train", "split", "time", "item_id"])
    # evaluation members first, as the report's strips show them
    in_force = _group_decision(ws, groups, g["group_id"])
    st.markdown(f"Group **{pos + 1} / {len(table)}** · **{g['size']}** images · {g['splits']} · linked by *{g['links']}*"
                + (f" · state **kept together** (one source, by {as_code(in_force, 200)})" if in_force else
                   " · state **unreviewed**"))
    cols = st.columns([1.4, 1, 0.2, 1, 1, 1])
    # a group that explicit metadata alone links cannot be called unrelated here (N recorded nothing, and moved on)
    explicit_only = not ws.decisions.group_links(groups, g["group_id"], "not_leak")
    for col, (decision, label, key) in zip(cols[:2], GROUP_BUTTONS):
        fixed = decision == "not_leak" and explicit_only
        col.button(label, key=f"group_{decision}", shortcut=key, on_click=_decide_group,
                   args=(str(ws.path), g["group_id"], decision), width="stretch",
                   type="primary" if decision == "same_source" and in_force else "secondary",
                   disabled=not st.session_state["reviewer"].strip() or fixed,
                   help=_explicit_only_words() if fixed else None)
    if explicit_only:
        st.caption(_explicit_only_words())
    if not st.session_state["reviewer"].strip():
        st.caption("Type your name in the Reviewer field (sidebar) to decide: every decision records who made it.")
    cols[3].button("Previous group", key="group_prev", shortcut="Left", width="stretch",
                   on_click=lambda: st.session_state.update(group_pos=max(0, pos - 1)))
    cols[4].button("Next group", key="group_next", shortcut="Right", width="stretch",
                   on_click=lambda: st.session_state.update(group_pos=min(len(table) - 1, pos + 1)))
    reviewer = (st.session_state.get("reviewer") or "").strip()
    mine = bool(reviewer) and ws.decisions.undoable(reviewer)
    cols[5].button("Undo", key="group_undo", shortcut="Z", on_click=_undo, args=(str(ws.path),), width="stretch",
                   disabled=not mine, help="Takes back your last decision, a whole group's at once" if mine else
                   "Nothing of yours to undo: undo takes back your own last decision")
    shown = members.head(24)
    # fixed-size cells that wrap (`image_strip`): in six columns the fitted images, wider than a column, covered one
    # another (a new user's screenshots at 1500 px)
    captions = [f"{m.split}" + ("" if pd.isna(m.time) else f" · {pd.Timestamp(m.time).strftime('%Y-%m-%d %H:%M:%S')}")
                + f" · {str(m.item_id).rsplit('/', 1)[-1]}" for m in shown.itertuples()]
    image_strip(ws, shown["item_id"].astype(str).tolist(), captions, side=GROUP_PX)
    if len(members) > len(shown):
        st.caption(f"… and {len(members) - len(shown)} more")
    with st.expander("Evidence: the links that make this a group"):
        ev = groups.evidence[groups.evidence["group_id"] == g["group_id"]]
        st.dataframe(ev[["a", "b", "kind", "similarity"]], hide_index=True, width="stretch")
