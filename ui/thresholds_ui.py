"""Thresholds page pieces: sliders, the live ROC (click moves a threshold), the score histogram."""
from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from leakcore.api import Project

Workspace = Project  # pages hold a Project: the workspace with the product's verbs

HARD_COLOUR, SOFT_COLOUR = "#b91c1c", "#ea580c"


def encoder_select(ws: Workspace, calibrated: list[str]) -> tuple[str, str]:
    """(encoder, score) whose thresholds the page shows; the score is asked only when the encoder has a fused
    model. The sliders load that pair's thresholds in force whenever the choice changes."""
    from leakcore import fused

    options = sorted(set(calibrated) | {ws.encoder})
    c1, c2 = st.columns([2, 1])
    enc = c1.selectbox("Encoder", options, index=options.index(ws.encoder), key="th_encoder",
                       help="Thresholds belong to an encoder: never apply one encoder's numbers to another.")
    score = "similarity"
    if fused.load(ws, enc) is not None:
        if st.session_state.get("th_score_for") != str(ws.path):  # a workspace opens on the score it uses
            st.session_state["th_score"] = ws.score if enc == ws.encoder else "similarity"
            st.session_state["th_score_for"] = str(ws.path)
        score = c2.segmented_control("Score", ["similarity", "fused"], key="th_score", selection_mode="single",
                                     help="similarity: the embedding's cosine similarity; fused: P(same photograph) "
                                          "from the similarity and the pixel evidence (leakcore verify)") or "similarity"
    if st.session_state.get("th_loaded_for") != (str(ws.path), enc, score):
        t = ws.thresholds_or_none(enc, score=score)
        hard, soft = (t.hard, t.soft) if t else (1.0, 1.0)  # uncalibrated: flag nothing until thresholds are chosen
        set_thresholds(hard, soft)
        st.session_state["th_loaded_for"] = (str(ws.path), enc, score)
    return enc, score


def set_thresholds(hard: float, soft: float) -> None:
    """Both widgets of each threshold (slider and number box) at once; use in callbacks, before they are drawn."""
    for which, value in (("hard", hard), ("soft", soft)):
        st.session_state[f"th_{which}"] = st.session_state[f"th_{which}_n"] = round(float(value), 4)


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
    c1, c1n, c2, c2n, c3 = st.columns([2, 0.8, 2, 0.8, 1.2])
    c1.slider("Hard threshold", 0.0, 1.0, step=0.0001, format="%.4f", key="th_hard", on_change=_sync,
              args=("th_hard", "th_hard_n"))
    c1n.number_input("exact hard", 0.0, 1.0, step=0.0001, format="%.4f", key="th_hard_n", on_change=_sync,
                     args=("th_hard_n", "th_hard"), help="Type the exact value")
    c2.slider("Soft threshold", 0.0, 1.0, step=0.0001, format="%.4f", key="th_soft", on_change=_sync,
              args=("th_soft", "th_soft_n"))
    c2n.number_input("exact soft", 0.0, 1.0, step=0.0001, format="%.4f", key="th_soft_n", on_change=_sync,
                     args=("th_soft_n", "th_soft"), help="Type the exact value")
    c3.radio("A click on the curve moves", ["soft", "hard"], key="th_click_moves", horizontal=True)
    hard, soft = st.session_state["th_hard"], st.session_state["th_soft"]
    if soft > hard:
        st.warning("Soft is above hard: soft leakage includes hard, so soft must be the lower threshold.")
    return hard, soft


def roc_chart(curves: dict, points, hard: float, soft: float, decisions=None) -> None:
    """ROC curves per family with the hard and soft operating points; clicking a point moves a threshold."""
    fig = go.Figure()
    from ui.data import RAW_ON_FUSED

    for name, roc in curves.items():
        main = name == "all edits"
        if name == RAW_ON_FUSED:  # another scale: drawn for comparison, not clickable (no thresholds attached)
            fig.add_trace(go.Scatter(x=roc["fpr"], y=roc["tpr"], mode="lines", name=name, hoverinfo="skip",
                                     line={"dash": "dot", "color": "#6b7280", "width": 2}))
            continue
        # Clicks select markers, not lines: every curve carries near-invisible markers to click.
        fig.add_trace(go.Scatter(x=roc["fpr"], y=roc["tpr"], mode="lines+markers", name=name,
                                 customdata=roc["threshold"], line={"width": 3 if main else 1.2},
                                 marker={"size": 9 if main else 6, "opacity": 0.01},
                                 hovertemplate="threshold %{customdata:.4f}<br>FPR %{x:.4f}<br>TPR %{y:.4f}<extra></extra>"))
    if decisions is not None:
        d_points, d_roc = decisions
        fig.add_trace(go.Scatter(x=d_roc["fpr"], y=d_roc["tpr"], mode="lines", name="curator decisions",
                                 customdata=d_roc["threshold"], line={"dash": "dash", "color": "#111827"},
                                 hovertemplate="threshold %{customdata:.4f}<br>FPR %{x:.3f}<br>TPR %{y:.3f}<extra></extra>"))
    for label, t, colour in (("hard", hard, HARD_COLOUR), ("soft", soft, SOFT_COLOUR)):
        fpr, tpr = points.at(t)
        fig.add_trace(go.Scatter(x=[fpr], y=[tpr], mode="markers+text", name=f"{label} ≥ {t:.4f}",
                                 text=[f"{label} {t:.3f}"], textposition="bottom right",
                                 marker={"size": 13, "color": colour, "symbol": "diamond"}, hoverinfo="skip"))
    fig.update_layout(height=430, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h", "y": -0.15},
                      xaxis_title="false-positive rate (hardest non-matching image)", yaxis_title="true-positive rate",
                      title="ROC of non-semantic edits (click the curve to move a threshold)")
    fig.update_xaxes(type="log", range=[-4, 0])
    event = st.plotly_chart(fig, on_select="rerun", selection_mode="points", key="roc_chart", width="stretch")
    picked = [p.get("customdata") for p in (event.selection.points if event else []) if p.get("customdata") is not None]
    if picked and st.session_state.get("th_last_click") != picked[0]:
        st.session_state["th_last_click"] = picked[0]
        st.session_state["th_pending"] = (st.session_state["th_click_moves"], float(min(picked[0], 1.0)))
        st.rerun()


def histogram_chart(hist, hard: float, soft: float, fused: bool = False) -> None:
    """Positive and hardest-negative scores (pre-binned) with the two threshold lines."""
    fig = go.Figure()
    centres = (hist["left"] + hist["right"]) / 2
    width = float(hist["right"].iloc[0] - hist["left"].iloc[0])
    fig.add_bar(x=centres, y=hist["negatives"], width=width, name="hardest non-match", marker_color="#64748b", opacity=0.7)
    fig.add_bar(x=centres, y=hist["positives"], width=width, name="edited copy", marker_color="#0ea5e9", opacity=0.7)
    fig.add_vline(x=hard, line_color=HARD_COLOUR, line_width=2, annotation_text="hard")
    fig.add_vline(x=soft, line_color=SOFT_COLOUR, line_width=2, annotation_text="soft", annotation_position="top left")
    fig.update_layout(barmode="overlay", height=430, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      legend={"orientation": "h", "y": -0.15},
                      title=("Fused score" if fused else "Similarity") + " of edited copies vs hardest non-matches",
                      xaxis_title="P(same photograph)" if fused else "cosine similarity", yaxis_title="pairs")
    st.plotly_chart(fig, key="hist_chart", width="stretch")


class CalibrationJob:
    """A calibration running in a thread of the server, so the page stays usable: progress and the outcome are
    plain attributes the page reads (the thread never touches Streamlit), `stop` asks it to end."""

    def __init__(self, path: str, encoder: str, collection: str, queries: int, target_fpr: float):
        import threading

        self.encoder, self.collection = encoder, collection
        self.stage, self.done, self.total = "starting", 0, 1
        self.error: str | None = None
        self.finished = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(path, queries, target_fpr), daemon=True)
        self.thread.start()

    def _run(self, path: str, queries: int, target_fpr: float) -> None:
        from leakcore.errors import LeakcoreError

        try:
            Project.open(path).calibrate(self.collection, encoder=self.encoder, queries=queries, target_fpr=target_fpr,
                                         progress=self._progress, should_stop=self.stop.is_set)
        except LeakcoreError as exc:
            self.error = exc.for_page()
        except Exception as exc:  # noqa: BLE001 - shown as a message on the page, never a traceback
            self.error = f"The calibration failed: {exc}"
        finally:
            self.finished = True

    def _progress(self, stage: str, done: int, total: int) -> None:
        self.stage, self.done, self.total = stage, done, total


def calibration_form(ws: Workspace, encoder: str) -> None:
    """Run the robustness protocol from the page (the same as `leakcore calibrate`) in the background, with live
    progress and a Stop button; the rest of the page stays usable meanwhile."""
    job: CalibrationJob | None = st.session_state.get("cal_job")
    if job is not None:
        calibration_progress()
        return
    collections = [str(s) for s in ws.split_ids()]
    with st.form("calibrate"):
        c1, c2, c3 = st.columns(3)
        coll = c1.selectbox("Collection", collections, help="Images to edit and search; the paper used Flickr30k.")
        n = c2.number_input("Queries", 10, 100_000, 1000)
        fpr = c3.number_input("Target false-positive rate", 0.00001, 0.5, 0.001, format="%.5f")
        go_ = st.form_submit_button(f"Calibrate {encoder}")
    st.caption("Negatives: for each edited query, the most similar other image of the collection, leaving out the "
               "query's own near-duplicates there (images that align with it as the same photograph on their pixels).")
    if go_:
        st.session_state["cal_job"] = CalibrationJob(str(ws.path), encoder, coll, int(n), float(fpr))
        st.rerun()


@st.fragment(run_every=0.5)
def calibration_progress() -> None:
    """The running calibration's bar and Stop button, redrawn twice a second without rerunning the page."""
    job: CalibrationJob | None = st.session_state.get("cal_job")
    if job is None:
        return
    if job.finished:
        st.session_state.pop("cal_job", None)
        st.session_state.pop("th_loaded_for", None)
        if job.error:
            st.session_state["flash"] = job.error
        else:
            st.session_state["flash"] = f"Calibration of {job.encoder} on {job.collection} done: suggested thresholds below"
        st.rerun(scope="app")
    c1, c2 = st.columns([4, 1])
    c1.progress(min(job.done / max(job.total, 1), 1.0),
                text=f"Calibrating {job.encoder} on {job.collection} · {job.stage}: {job.done}/{job.total}"
                     + (" · stopping…" if job.stop.is_set() else ""))
    c2.button("Stop", key="cal_stop", on_click=job.stop.set, disabled=job.stop.is_set(), width="stretch")
