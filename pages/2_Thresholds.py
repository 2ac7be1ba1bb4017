"""Thresholds: a live ROC of non-semantic edits, the score histogram, flagged counts, and 'apply to project'."""
import streamlit as st

from leakcore.api import Action
from ui import data, job_ui, thresholds_ui
from ui.widgets import flash, lock_note, locked, page, user_errors

ws = page("Thresholds", ":material/tune:")
with user_errors():
    st.title("Thresholds")
    calibrated = ws.scores.calibrated_encoders()
    encoder, score = thresholds_ui.encoder_select(ws, calibrated)
    flash()
    fused = score == "fused"
    views = data.fused_views(ws, encoder) if fused else data.calibration_views(ws, encoder)
    defaults = None if fused else data.encoder_defaults(encoder)
    in_force = ws.scores.thresholds(encoder, score=score, required=False)
    suggested = (views[0].hard, views[0].soft) if views else None
    suggestion_in_force = thresholds_ui.same_thresholds(suggested, in_force)
    b1, b2, b3 = st.columns([1.4, 1, 2])
    b1.button("Reset to the encoder's defaults", key="th_reset", disabled=defaults is None,
              on_click=thresholds_ui.set_thresholds, args=defaults or (1.0, 1.0),
              help="The thresholds measured for this encoder" if defaults else
              "The fused score has no encoder defaults: use the suggested ones" if fused else
              "This encoder has no measured defaults")
    b2.button("Use suggested", key="th_suggested",
              disabled=views is None or (suggestion_in_force and thresholds_ui.sliders_hold(suggested)),
              on_click=thresholds_ui.set_thresholds, args=suggested or (1.0, 1.0),
              help="The suggested thresholds are in force already" if suggestion_in_force else
              "The thresholds the fused model's fit suggests" if fused else
              "The thresholds the calibration below suggests")
    if suggestion_in_force:
        b3.caption(f"The suggested thresholds (hard {suggested[0]:.4f}, soft {suggested[1]:.4f}) are the ones in force.")
    hard, soft = thresholds_ui.sliders()
    if thresholds_ui.same_thresholds((hard, soft), in_force):
        hard, soft = in_force.hard, in_force.soft  # shown to 4 decimals; counted at the exact values in force
    if views is None:
        st.info(f"No calibration for {encoder} in this workspace yet. Run one: it edits real images with the paper's "
                "transformations and measures how similar the copies stay.")
        thresholds_ui.calibration_form(ws, encoder)
    elif fused:
        model, points, curves, hist = views
        st.caption(thresholds_ui.fused_model_caption(model))
        thresholds_ui.charts(ws, encoder, score, points, curves, hist, hard, soft)
    else:
        result, points, curves, hist = views
        s = result.settings
        st.caption(f"Calibrated on **{s.get('collection')}** · {s.get('queries')} queries × {len(s.get('transforms', []))} "
                   f"edits · target FPR {s.get('target_fpr')} → suggested hard **{result.hard:.4f}**, soft **{result.soft:.4f}**"
                   + (f" · negatives: the most similar other image, leaving out {s['twins_excluded']} near-duplicates "
                      f"of {s['queries_with_twins']} queries found in the collection itself (same photograph on their "
                      "pixels)" if "twins_excluded" in s else
                      " · negatives: the most similar other image (this calibration predates leaving out the "
                      "collection's own near-duplicates: run it again)"))
        thresholds_ui.suggestion_check(result, defaults, in_force=suggestion_in_force)
        thresholds_ui.charts(ws, encoder, score, points, curves, hist, hard, soft)
    if encoder == ws.settings.encoder and score != ws.settings.score:
        st.info(f"The project scores pairs by the **{ws.settings.score}** score; these {score} thresholds apply once you "
                f"use the {score} score (`leakcore verify WS --use {score}`, or the button below).")
        why = locked(ws, Action.THRESHOLDS)
        lock_note(why)
        if st.button(f"Use the {score} score for this project", key="th_use_score", disabled=why is not None):
            ws.configure(score=score)
            st.cache_data.clear()
            st.session_state["flash"] = f"Every page and report now use the {score} score"
            st.rerun()
    elif encoder == ws.settings.encoder:
        thresholds_ui.flagged_table(ws, hard, soft, in_force=thresholds_ui.same_thresholds((hard, soft), in_force))
    c1, c2 = st.columns([1, 3])
    why = locked(ws, Action.THRESHOLDS)
    if c1.button("Apply to project", key="th_apply", type="primary", disabled=soft > hard or why is not None):
        ws.configure(thresholds=(hard, soft), thresholds_for=(encoder, score), source="set on the Thresholds page")
        st.cache_data.clear()
        st.session_state["flash"] = f"Thresholds for {encoder} ({score}) saved: hard {hard:.4f}, soft {soft:.4f}"
        st.rerun()
    with c2:
        lock_note(why)
    if in_force is not None and (encoder, score) != (ws.settings.encoder, ws.settings.score):
        c2.caption(f"Stored for {encoder} ({score}): hard {in_force[0]:.4f}, soft {in_force[1]:.4f}; not in use while "
                   f"the project scores pairs by {ws.settings.encoder} ({ws.settings.score}).")
    elif in_force is not None:
        c2.caption(f"In force for {encoder} ({score}): hard {in_force[0]:.4f}, soft {in_force[1]:.4f}. Every page and "
                   "`leakcore report` use the applied values at once, without re-scanning.")
        if not thresholds_ui.same_thresholds((hard, soft), in_force):  # a reload showed the values in force, unsaid
            c2.caption(f":material/warning: Not applied yet: the sliders' hard {hard:.4f} and soft {soft:.4f} count "
                       "on this page only, until *Apply to project* (a reload shows the values in force again).")
    if views is not None and not fused:
        with st.expander("Robustness table (top-1 accuracy per edit)", expanded=False):
            st.dataframe(ws.scores.robustness_table(result).assign(top1=lambda d: (100 * d["top1"]).round(1)),
                         hide_index=True, width="stretch")
            st.dataframe(result.auc, hide_index=True)
        job_ui.outcome("calibration", str(ws.path))  # done, stopped or failed, when and by whom: not in the folded box
        with st.expander("Run a new calibration", expanded=job_ui.running("calibration", str(ws.path))):
            thresholds_ui.calibration_form(ws, encoder, outcome_here=False)
