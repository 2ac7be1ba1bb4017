"""Thresholds page pieces: sliders, the live ROC (click moves a threshold), the score histogram."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from leakcore.api import ALL_SOURCES, DECIDED_HARD_PRECISION, DECIDED_PRECISION, Action, Project
from ui import data, job_ui, jobs, state, widgets

Workspace = Project  # pages hold a Project: the workspace with the product's verbs

HARD_COLOUR, SOFT_COLOUR = "#b91c1c", "#ea580c"


def encoder_select(ws: Workspace, calibrated: list[str]) -> tuple[str, str]:
    """(encoder, score) whose thresholds the page shows; the score is asked only when the encoder has a fused
    model. The sliders load that pair's thresholds in force whenever the choice changes."""
    options = sorted(set(calibrated) | {ws.settings.encoder})
    c1, c2 = st.columns([2, 1])
    enc = c1.selectbox("Encoder", options, index=options.index(ws.settings.encoder), key="th_encoder",
                       help="Thresholds belong to an encoder: never apply one encoder's numbers to another.")
    score = "similarity"
    if ws.scores.fused_model(enc) is not None:
        if st.session_state.get("th_score_for") != str(ws.path):  # a workspace opens on the score it uses
            st.session_state["th_score"] = ws.settings.score if enc == ws.settings.encoder else "similarity"
            st.session_state["th_score_for"] = str(ws.path)
        score = c2.segmented_control("Score", ["similarity", "fused"], key="th_score", selection_mode="single",
                                     help="similarity: the embedding's cosine similarity; fused: P(same photograph) "
                                          "from the similarity and the pixel evidence (leakcore verify)") or "similarity"
    if st.session_state.get("th_loaded_for") != (str(ws.path), enc, score):
        t = ws.scores.thresholds(enc, score=score, required=False)
        hard, soft = (t.hard, t.soft) if t else (1.0, 1.0)  # uncalibrated: flag nothing until thresholds are chosen
        set_thresholds(hard, soft)
        st.session_state["th_loaded_for"] = (str(ws.path), enc, score)
    return enc, score


def set_thresholds(hard: float, soft: float) -> None:
    """Both widgets of each threshold (slider and number box) at once; use in callbacks, before they are drawn."""
    for which, value in (("hard", hard), ("soft", soft)):
        st.session_state[f"th_{which}"] = st.session_state[f"th_{which}_n"] = round(float(value), 4)


def same_thresholds(a, b) -> bool:
    """Whether two (hard, soft) pairs are the same to the 4 decimals the page shows and sets (None: never)."""
    return a is not None and b is not None and all(round(float(x), 4) == round(float(y), 4) for x, y in zip(a, b))


def sliders_hold(pair) -> bool:
    """Whether the sliders show this (hard, soft) pair now (read before they are drawn)."""
    return same_thresholds(pair, (st.session_state.get("th_hard"), st.session_state.get("th_soft")))


def _sync(src: str, dst: str) -> None:
    st.session_state[dst] = st.session_state[src]


def sliders() -> tuple[float, float]:
    """Hard and soft sliders; a pending click on the ROC is applied before they are drawn."""
    pending = st.session_state.pop("th_pending", None)
    if pending is not None:
        which, value = pending
        hard = value if which == "hard" else st.session_state["th_hard"]
        soft = value if which == "soft" else st.session_state["th_soft"]
        if soft > hard:  # never move the other threshold behind the curator's back
            st.warning(f"Not moved: soft {soft:.4f} would be above hard {hard:.4f} (soft leakage includes hard). "
                       "Move the other one first.")
        else:
            set_thresholds(hard, soft)
    for which in ("hard", "soft"):
        st.session_state.setdefault(f"th_{which}_n", st.session_state[f"th_{which}"])
    c1, c1n, c2, c2n, c3 = st.columns([2, 1.1, 2, 1.1, 1.2])  # the exact boxes hold "0.9957" beside their steppers
    # the sliders step by 0.001 (an arrow key moves a threshold by an amount that changes what is flagged); the
    # number boxes beside them take exact values to 0.0001
    c1.slider("Hard threshold", 0.0, 1.0, step=0.001, format="%.4f", key="th_hard", on_change=_sync,
              args=("th_hard", "th_hard_n"))
    c1n.number_input("exact hard", 0.0, 1.0, step=0.0001, format="%.4f", key="th_hard_n", on_change=_sync,
                     args=("th_hard_n", "th_hard"), help="Type the exact value")
    c2.slider("Soft threshold", 0.0, 1.0, step=0.001, format="%.4f", key="th_soft", on_change=_sync,
              args=("th_soft", "th_soft_n"))
    c2n.number_input("exact soft", 0.0, 1.0, step=0.0001, format="%.4f", key="th_soft_n", on_change=_sync,
                     args=("th_soft_n", "th_soft"), help="Type the exact value")
    c3.radio("A click on the curve moves", ["soft", "hard"], key="th_click_moves", horizontal=True)
    hard, soft = st.session_state["th_hard"], st.session_state["th_soft"]
    if soft > hard:
        st.warning("Soft is above hard: soft leakage includes hard, so soft must be the lower threshold.")
    return hard, soft


CLICK_POINTS = 400  # clickable points on the main ROC (a quarter of that on each family's curve)
FAMILY_COLOURS = ["#16a34a", "#9333ea", "#d97706", "#0891b2", "#db2777", "#65a30d", "#7c3aed", "#0d9488", "#dc2626",
                  "#a16207", "#4f46e5", "#be185d"]  # twelve: the extended suite has ten families
MIN_FPR = 1e-4  # the ROC's log axis starts here; a false-positive rate of 0 is drawn on it

# Both charts are Vega-Lite specs whose curves sit in named datasets and whose thresholds are the chart's own
# (top-level) data: a slider step changes only that small table, so Streamlit keeps the chart and the browser
# swaps the table in place (Plotly charts were rebuilt from scratch on every step: about 0.2 s each).


def suggestion_check(result, defaults: tuple[float, float] | None, in_force: bool = False) -> None:
    """Say so when a calibration's suggestion sits far from the encoder's measured thresholds: a small collection of
    look-alikes (one breed on one sofa) or of tiles of a few photographs moves the hardest negatives, and with them
    the suggestion, far from what the encoder's defaults were measured on."""
    if defaults is None:
        return
    far = [(name, got, want) for name, got, want in (("hard", result.hard, defaults[0]), ("soft", result.soft, defaults[1]))
           if abs(got - want) > 0.1]
    if far:
        words = "; ".join(f"{n} {g:.3f} against the encoder's {w:.3f}" for n, g, w in far)
        measured = f"measured on {result.settings.get('queries')} queries of {result.settings.get('collection')}"
        risk = "a lower soft flags other photographs of the same kind of thing, a higher one misses edited copies."
        if in_force:  # applied already (the page or `leakcore calibrate --apply`): nothing is left to decide before
            st.warning(f"The thresholds in force are this calibration's: {words}, {measured}. Look at what they flag "
                       f"on Review: {risk}", icon=":material/warning:")
        else:
            st.warning(f"This calibration suggests {words}, {measured}. Before *Use suggested*, look at what it would "
                       f"flag on Review: {risk}", icon=":material/warning:")


def flagged_table(ws: Workspace, hard: float, soft: float, *, in_force: bool = True) -> None:
    """Flagged evaluation images per split at these thresholds, from the scores alone and with the curators'
    decisions applied (the count Home, Review, Heatmaps and Export show once they are in force), side by side and
    named so."""
    auto = data.flagged_counts(ws, hard, soft)
    if auto.empty:
        return
    rates = data.rates(ws, hard, soft)
    decided = rates[(rates["train_split"] == ALL_SOURCES) & (rates["check"] == "similarity")]
    table = auto.merge(decided[["eval_split", "hard", "soft"]].rename(columns={"hard": "hard_dec", "soft": "soft_dec"}),
                       on="eval_split", how="left")
    shown = pd.DataFrame({
        "evaluation split": table["eval_split"], "images": table["n_eval"],
        "hard": table["hard_dec"].fillna(table["hard"]).astype(int),
        "soft": table["soft_dec"].fillna(table["soft"]).astype(int),
        "hard, scores only": table["hard"], "soft, scores only": table["soft"],
        "soft %": (100 * table["soft_dec"].fillna(table["soft"]) / table["n_eval"].clip(lower=1)).round(2),
        "within-split duplicates": table["within_soft"]})
    st.subheader("Flagged evaluation images at these thresholds")
    n = data.decided_pairs(ws)
    # at slider values not applied yet, the other pages still count at the values in force (a new user read 1,971
    # here beside Home's 77 under "the counts Home ... show")
    shown_where = ("the counts Home, Review, Heatmaps and Export show" if in_force else
                   "what Home, Review, Heatmaps and Export will count once these slider values are applied (*Apply "
                   "to project*); until then they count at the thresholds in force")
    st.caption(f"**hard** and **soft**: with curator decisions applied ({n} confirmed or rejected so far; an unsure "
               "pair keeps its automatic degree, a confirmed leak counts whatever its score, a rejected pair does "
               f"not): {shown_where}. **Scores only**: what the thresholds alone flag, before any decision.")
    st.dataframe(shown, hide_index=True, width="stretch")
    own_scores_chart(data.best_scores(ws), hard, soft, ws.settings.score)


def own_scores_chart(best: pd.DataFrame, hard: float, soft: float, score: str, bins: int = 50) -> None:
    """This workspace's evaluation images by their highest score against training, with the thresholds: where the
    curator's own data sit (the ROC and the histogram above are the fitting pairs'; a new user on 3,000 pet photos
    saw only those and could not tell how far below soft their images were)."""
    s = best["train"].to_numpy(dtype=float)
    s = s[~np.isnan(s)]
    if not len(s):
        return
    fused = score != "similarity"
    lo = float(min(s.min(), soft, 0.0 if fused else soft))  # a probability from 0
    hi = max(1.0, float(s.max()))
    counts, edges = np.histogram(s, bins=bins, range=(lo, hi))
    table = pd.DataFrame({"left": edges[:-1], "right": edges[1:], "images": counts})
    table = table[table["images"] > 0]
    ops = pd.DataFrame({"label": ["hard", "soft"], "threshold": [hard, soft]})
    x_title = "P(same photograph)" if fused else "cosine similarity"
    spec = {
        "title": {"text": f"Your evaluation images by their highest {'fused score' if fused else 'similarity'}",
                  "subtitle": f"{len(s):,} images, each by its nearest training image; counts on a log scale; the lines "
                              "are the thresholds in the sliders"}, "height": 260,
        "layer": [
            # the bins inlined (at most `bins` rows): a single named table Streamlit takes for the chart's own data,
            # and the thresholds then had none; the chart's own data are the thresholds, as in `histogram_chart`
            {"data": {"values": table.to_dict("records")}, "mark": {"type": "rect", "opacity": 0.8, "color": "#64748b"},
             "encoding": {"x": {"field": "left", "type": "quantitative", "title": x_title,
                                "scale": {"domain": [lo, hi]}},
                          "x2": {"field": "right"},
                          "y": {"field": "images", "type": "quantitative", "scale": {"type": "symlog"},
                                "title": "evaluation images",
                                "axis": {"values": [0] + [10 ** k for k in range(int(np.log10(counts.max())) + 1)]}},
                          "y2": {"datum": 0},
                          "tooltip": [{"field": "left", "format": ".3f", "title": "from"},
                                      {"field": "right", "format": ".3f", "title": "to"}, {"field": "images"}]}},
            {"mark": {"type": "rule", "strokeWidth": 2},
             "encoding": {"x": {"field": "threshold", "type": "quantitative"}, "color": _threshold_colour(),
                          "tooltip": [{"field": "label"}, {"field": "threshold", "format": ".4f"}]}},
        ],
    }
    st.vega_lite_chart(ops, spec, key="own_scores_chart", width="stretch")


def _thin(roc, n: int):
    """At most `n` points of a curve, spread evenly along it (always keeping both ends)."""
    if len(roc) <= n:
        return roc
    return roc.iloc[np.unique(np.linspace(0, len(roc) - 1, n).astype(int))]


def _curve_tables(ws: Workspace, curves: dict, decisions) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """(lines, clickable points, curve names, their colours) for the ROC chart, kept in the workspace's caches per
    pair of views (the cached views are shared and never change; the entry holds both, which keeps their ids
    valid): about 14 ms per slider move otherwise."""
    def make():
        return curves, decisions, _make_curve_tables(curves, decisions)

    return ws.workspace.cache("roc tables", (id(curves), id(decisions)), make, entries=8)[2]


def _make_curve_tables(curves: dict, decisions) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    lines, dots, names, colours = [], [], [], []
    drawn = list(curves.items()) + ([("curator decisions", decisions[1])] if decisions is not None else [])
    for i, (name, roc) in enumerate(drawn):
        main = name == "all edits"
        style = "dotted" if name == data.RAW_ON_FUSED else "dashed" if name == "curator decisions" else "solid"
        frame = pd.DataFrame({"curve": name, "fpr": np.maximum(roc["fpr"].to_numpy(), MIN_FPR),
                              "tpr": roc["tpr"].to_numpy(), "threshold": roc["threshold"].to_numpy(),
                              "width": 3.0 if main else 1.5, "style": style})
        lines.append(frame.assign(order=np.arange(len(frame))))
        if name != data.RAW_ON_FUSED:  # another scale: drawn for comparison, no thresholds to click
            dots.append(_thin(frame, CLICK_POINTS if main else CLICK_POINTS // 4))
        names.append(name)
        colours.append("#2563eb" if main else "#6b7280" if name == data.RAW_ON_FUSED else "#111827"
                       if name == "curator decisions" else FAMILY_COLOURS[i % len(FAMILY_COLOURS)])
    dots = pd.concat(dots, ignore_index=True)[["curve", "fpr", "tpr", "threshold"]]
    return pd.concat(lines, ignore_index=True), dots, names, colours


def _threshold_colour() -> dict:
    """Hard and soft in their colours, without a colour scale (a scale would be shared with the curves')."""
    return {"condition": {"test": "datum.label === 'hard'", "value": HARD_COLOUR}, "value": SOFT_COLOUR}


def roc_chart(ws: Workspace, curves: dict, points, hard: float, soft: float, decisions=None) -> None:
    """ROC curves per family with the hard and soft operating points; a click near a curve moves a threshold to
    that point's threshold."""
    lines, dots, names, colours = _curve_tables(ws, curves, decisions)
    ops = []
    for label, t in (("hard", hard), ("soft", soft)):
        fpr, tpr = points.at(t)
        ops.append({"label": label, "fpr": max(fpr, MIN_FPR), "tpr": tpr, "text": f"{label} {t:.4f}"})
    x = {"field": "fpr", "type": "quantitative", "title": "false-positive rate (hardest non-matching image)",
         "scale": {"type": "log", "domain": [MIN_FPR, 1]}, "axis": {"format": "~g"}}
    y = {"field": "tpr", "type": "quantitative", "title": "true-positive rate", "scale": {"domain": [0, 1.02]}}
    tip = [{"field": "curve"}, {"field": "threshold", "format": ".4f"}, {"field": "fpr", "title": "FPR", "format": ".4f"},
           {"field": "tpr", "title": "TPR", "format": ".4f"}]
    spec = {
        "title": {"text": "ROC of non-semantic edits", "subtitle": "click near a curve to move the threshold chosen above"},
        "height": 400,
        "datasets": {"roc_lines": lines, "roc_points": dots},
        "layer": [
            {"data": {"name": "roc_lines"}, "mark": {"type": "line", "clip": True},
             "encoding": {"x": x, "y": y, "order": {"field": "order"},
                          "color": {"field": "curve", "type": "nominal", "scale": {"domain": names, "range": colours},
                                    "legend": {"orient": "bottom", "columns": 3, "title": None}},
                          "strokeWidth": {"field": "width", "type": "quantitative", "scale": None},
                          "strokeDash": {"field": "style", "type": "nominal", "legend": None,
                                         "scale": {"domain": ["solid", "dashed", "dotted"],
                                                   "range": [[1, 0], [6, 4], [2, 3]]}}}},
            {"data": {"name": "roc_points"}, "mark": {"type": "circle", "size": 60, "opacity": 0.01, "clip": True},
             "params": [{"name": "pick", "select": {"type": "point", "on": "click", "nearest": True,
                                                    "fields": ["curve", "threshold"]}}],
             "encoding": {"x": x, "y": y, "tooltip": tip, "color": {"value": "#111827"}}},
            {"mark": {"type": "point", "shape": "diamond", "filled": True, "size": 170, "opacity": 1},
             "encoding": {"x": x, "y": y, "color": _threshold_colour()}},
            *({"transform": [{"filter": f"datum.label === '{label}'"}],
               "mark": {"type": "text", "align": "left", "dx": 9, "dy": dy, "fontWeight": "bold",
                        "color": HARD_COLOUR if label == "hard" else SOFT_COLOUR},
               "encoding": {"x": x, "y": y, "text": {"field": "text"}}} for label, dy in (("hard", 14), ("soft", -14))),
        ],
    }
    # the pick is handled in a callback, before the page reruns: the sliders above are drawn with the new value
    # in the same run (one round trip per click)
    st.vega_lite_chart(pd.DataFrame(ops), spec, on_select=_on_pick, selection_mode="pick", key="roc_chart",
                       width="stretch")


def _on_pick() -> None:
    """A click on the ROC: the picked point's threshold becomes pending for the threshold the radio names (the
    sliders apply it, or say why not)."""
    picked = [p.get("threshold") for p in _selected(st.session_state.get("roc_chart"), "pick")
              if p.get("threshold") is not None]
    if picked and st.session_state.get("th_last_click") != picked[0]:
        st.session_state["th_last_click"] = picked[0]
        st.session_state["th_pending"] = (st.session_state.get("th_click_moves", "soft"), float(min(picked[0], 1.0)))


def _selected(state, name: str) -> list[dict]:
    """The points a chart's selection parameter holds, from the chart's state (one dict of fields per point)."""
    return list(state["selection"].get(name) or []) if state else []


def decided_roc(ws: Workspace, encoder: str, score: str) -> tuple:
    """(the curators' ROC for the chart of (encoder, score) or None, a caption saying why not or None): it is drawn
    from the pairs' scores in force, so only on the chart of the score the project uses (it was drawn on the
    similarity chart from fused scores, and never on the fused one)."""
    if (encoder, score) != (ws.settings.encoder, ws.settings.score):
        return None, None
    decided = data.decision_views(ws)
    why = None if decided is not None else (
        f"The curators' ROC (dashed) appears once at least 20 pairs are decided, some confirmed and some rejected; "
        f"{data.decided_pairs(ws)} are decided now.")
    return decided, why


def charts(ws: Workspace, encoder: str, score: str, points, curves: dict, hist, hard: float, soft: float) -> None:
    """The ROC (with the curators' own where drawn) beside the score histogram, and the rates at both thresholds."""
    left, right = st.columns(2)
    with left:
        decided, why = decided_roc(ws, encoder, score)
        roc_chart(ws, curves, points, hard, soft, decided)
        if why:
            st.caption(why)
    with right:
        histogram_chart(hist, hard, soft, fused=score == "fused")
    fpr_h, tpr_h = points.at(hard)
    fpr_s, tpr_s = points.at(soft)
    st.markdown(f"At **hard {hard:.4f}**: catches {100 * tpr_h:.1f}% of edited copies, {100 * fpr_h:.3f}% false positives · "
                f"at **soft {soft:.4f}**: {100 * tpr_s:.1f}% of copies, {100 * fpr_s:.3f}% false positives")
    if score == "fused" and tpr_h < 0.9:  # a new user read "catches 50% at hard" as half the copies missed
        st.caption("Hard is kept for pairs the raw similarity also calls the same picture (an exact or re-encoded "
                   "copy, and the light edits the encoder sees through, such as a flip or a small crop); the "
                   "suite's stronger edits (crops, banners, colour) are caught at soft, as leaks of the soft degree.")


def histogram_chart(hist, hard: float, soft: float, fused: bool = False) -> None:
    """Positive and hardest-negative scores (pre-binned) with the two threshold lines."""
    # one named table per histogram: with a single named table, Streamlit 1.67 takes it for the chart's own data
    # and overwrites it with the thresholds on the next rerun (the bars vanished)
    tables = {f"bins_{kind}": hist[["left", "right"]].assign(pairs=hist[kind], kind=name)
              for kind, name in (("negatives", "hardest non-match"), ("positives", "edited copy"))}
    ops = pd.DataFrame({"label": ["hard", "soft"], "threshold": [hard, soft]})
    x_title = "P(same photograph)" if fused else "cosine similarity"
    # the x domain is given: the browser inserts the thresholds (the chart's own data) after it builds the chart,
    # and a domain taken from them is first an empty one (Vega: "Infinite extent for field threshold")
    domain = [float(min(hist["left"].min(), hard, soft)), float(max(hist["right"].max(), hard, soft))]
    bars = {"mark": {"type": "rect", "opacity": 0.7},
            "encoding": {"x": {"field": "left", "type": "quantitative", "title": x_title,
                               "scale": {"domain": domain}},
                         "x2": {"field": "right"}, "y": {"field": "pairs", "type": "quantitative", "stack": None},
                         "y2": {"datum": 0},
                         "color": {"field": "kind", "type": "nominal", "legend": {"orient": "bottom", "title": None},
                                   "scale": {"domain": ["hardest non-match", "edited copy"],
                                             "range": ["#64748b", "#0ea5e9"]}},
                         "tooltip": [{"field": "kind"}, {"field": "left", "format": ".3f", "title": "from"},
                                     {"field": "right", "format": ".3f", "title": "to"}, {"field": "pairs"}]}}
    spec = {
        "title": {"text": ("Fused score" if fused else "Similarity") + " of edited copies vs hardest non-matches",
                  "subtitle": "the lines are the thresholds in the sliders"}, "height": 400,
        "datasets": tables,
        "layer": [
            *({"data": {"name": name}, **bars} for name in tables),
            {"mark": {"type": "rule", "strokeWidth": 2},
             "encoding": {"x": {"field": "threshold", "type": "quantitative"},
                          "color": _threshold_colour()}},
            # soft's label left of its line, hard's right of its own: soft <= hard, so two close thresholds'
            # labels sit apart instead of on top of each other
            *({"transform": [{"filter": {"field": "label", "equal": label}}],
               "mark": {"type": "text", "baseline": "top", "dx": dx, "align": align, "y": 2},
               "encoding": {"x": {"field": "threshold", "type": "quantitative"}, "text": {"field": "label"},
                            "color": _threshold_colour()}} for label, dx, align in (("soft", -4, "right"),
                                                                                    ("hard", 4, "left"))),
        ],
    }
    st.vega_lite_chart(ops, spec, key="hist_chart", width="stretch")


def calibration_form(ws: Workspace, encoder: str, *, outcome_here: bool = True) -> None:
    """Run the robustness protocol from the page (the same as `leakcore calibrate`) in a server job (`ui.jobs`),
    with live progress and a Stop button; the rest of the page stays usable meanwhile, and the calibration goes on
    through a page switch or a reload."""
    path = str(ws.path)
    job = jobs.latest("calibration", path)
    if job is not None and job.finished and st.session_state.get("cal_seen") != job.id:
        st.session_state["cal_seen"] = job.id  # its thresholds are the suggestion now: the sliders read them again
        st.session_state.pop("th_loaded_for", None)
    if job_ui.running("calibration", path):
        job_ui.bar("calibration", path, stop_key="cal_stop")
        return
    job_ui.bar("calibration", path, stop_key="cal_stop")  # ended unseen: drawn once more, which reruns the page
    if outcome_here:  # else the page says it outside the folded box (a finished calibration's line was hidden in it)
        job_ui.outcome("calibration", path)
    training = data.split_names(ws, "train")  # a training collection first: the README's and the demo's choice
    collections = training + [s for s in data.split_names(ws) if s not in training]
    with st.form("calibrate", enter_to_submit=False):  # a calibration takes minutes: only the button starts one
        c1, c2, c3 = st.columns(3)
        coll = c1.selectbox("Collection", collections, help="Images to edit and search; the paper used Flickr30k.")
        n = c2.number_input("Queries", 10, 100_000, 1000)
        fpr = c3.number_input("Target false-positive rate", 0.00001, 0.5, 0.001, format="%.5f")
        why = widgets.locked(ws, Action.CALIBRATE)
        go_ = st.form_submit_button(f"Calibrate {encoder}", disabled=why is not None)
        widgets.lock_note(why)
    st.caption("Negatives: for each edited query, the most similar other image of the collection, leaving out the "
               "query's own near-duplicates there (images that align with it as the same photograph on their pixels).")
    if go_:
        actor = ws.team.acting_user

        def work(progress, coll=coll, queries=int(n), target_fpr=float(fpr)) -> str:
            Project.open(path, actor=actor).calibrate(coll, encoder=encoder, queries=queries, target_fpr=target_fpr,
                                                      progress=progress)
            return f"Calibration of {encoder} on {coll} done: suggested thresholds below"

        if job_ui.start("calibration", ws, f"Calibrating {encoder} on {coll}", work, page="pages/2_Thresholds.py",
                        resumes=False):
            st.rerun()


def fused_model_caption(model) -> str:
    """What the fused model was fitted on, in a sentence (the Thresholds page's caption)."""
    m = model.meta
    second = f" and {m['second_encoder']}'s similarity at {m.get('second_input_size')} px" if m.get("second_encoder") else ""
    n = model.fitting_counts()
    suite = (f"{n['pairs']} pairs: {n['suite']} of the extended suite "
             f"({n['queries']} training images edited; negatives: each copy's nearest other image)"
             + (f" and {n['lookalikes']} of the collection's own look-alikes (training images' nearest neighbours)"
                if n["lookalikes"] else ""))
    if m.get("fitted_on_decisions_alone"):
        fitted = (f"fitted on {n['decisions']} curator decisions alone (soft: where "
                  f"{DECIDED_PRECISION:.0%} of the decided pairs above it are leaks, hard: where "
                  f"{DECIDED_HARD_PRECISION:.0%} are, judged out of fold); the curves are its scores on {suite}")
    else:
        fitted = (f"fitted on {suite} and {n['decisions']} curator decisions; the curves"
                  + (" and the AUC" if m.get("auc_in_sample") is not None else "")  # a model fitted before: in sample
                  + " are out of fold (each edited training image's pairs scored by a model fitted without them)")
        if m.get("threshold_rule", "suite") == "suite":  # soft is the suite's false-positive point, a probability
            fitted += (" (soft: where 0.1% of the suite's negatives score higher; the model is so sure of those "
                       "negatives that this can be a small probability: read it as a rank, not as a chance)")
    rule = m.get("decisive_matches") or []
    decisive = ("" if len(rule) < 2 else
                f" · besides the model, a pair's local matches decide it on their own (from {rule[0]} inliers"
                + (f", or {rule[3]} where the overlap's tiles agree" if len(rule) > 3 else "")
                + (", and the crop search where one image is found in the other" if m.get("decisive_crop") else "")
                + "): a strong edit does not rest on these few fitting pairs")  # two new users read them as thin
    return (f"**Fused score** P(same photograph) from the embedding similarity{second} and the pixel evidence, "
            f"{fitted} · AUC {m.get('auc', float('nan')):.3f} vs {m.get('raw_auc', float('nan')):.3f} for the raw "
            f"similarity (dashed){decisive} · suggested hard **{model.hard:.4f}**, soft **{model.soft:.4f}**")
