"""Shortcuts (target leakage): what gives the label away besides the content: file metadata, a corner marker."""
import streamlit as st

from leakcore.api import Action, Project
from ui import data, job_ui, shortcuts_ui
from ui.widgets import image_strip, lock_note, locked, page, user_errors

ws = page("Shortcuts", ":material/visibility_off:", heavy=True)
with user_errors():
    st.title("Shortcuts: target leakage")
    st.caption("A model can learn the label from something that is not the content: a marker in a corner, one class "
               "saved at another JPEG quality or resolution, a camera, a word in the file name. Two probes look for "
               "it: one reads only the files' metadata, one reads image regions (the border, each corner).")
    auditable = ws.audits.shortcut_datasets()
    if not auditable:
        st.info("No dataset has a training split with two or more labels, which the audit fits its probes on. Add a "
                "labelled training split on the Home page first.")
        st.stop()
    others = sorted(set(ws.workspace.datasets) - set(auditable))
    c1, c2, c3 = st.columns([2, 1, 1])
    dataset = c1.selectbox("Dataset", auditable, key="sc_dataset",
                           help="Datasets with a labelled training split" + (
                               f" (not {', '.join(others)}: no labelled training split)" if others else ""))
    with_regions = c2.toggle("Region probe (embeds regions)", value=True, key="sc_regions")
    c3.write("")
    why = locked(ws, Action.ANALYSE)
    lock_note(why)
    # one slot for the run's progress and the "no audit yet" note: while the audit ran, the note of the run before
    # stayed on the page under its progress bar ("No audit of this dataset yet: press Run the audit")
    slot = st.empty()
    path = str(ws.path)
    busy = job_ui.running("shortcuts", path)
    if c3.button("Run the audit", key="sc_run", type="primary", width="stretch", disabled=why is not None or busy,
                 help="The audit runs in the server: switch pages meanwhile; its bar is here and in the sidebar"):
        actor = ws.team.acting_user

        def work(progress, dataset=dataset, regions=with_regions) -> str:
            Project.open(path, actor=actor).audits.shortcuts(dataset, regions=regions, progress=progress)
            return f"Shortcut audit of {dataset} done."

        if job_ui.start("shortcuts", ws, f"Shortcut audit of {dataset}", work, page="pages/7_Shortcuts.py",
                        resumes=False):
            st.rerun()
    with slot.container():
        job_ui.bar("shortcuts", path, stop_key="sc_stop")
        job_ui.outcome("shortcuts", path)
    audit = data.shortcut_audits(ws).get(dataset)
    if audit is None:
        if not busy:
            st.info("No audit of this dataset yet: press Run the audit. A progress bar shows each stage (about half a "
                    "minute for the demo on 2 cores, a minute or two for a few thousand photos; the region probe "
                    "embeds each image six times).")
        st.stop()
    shortcuts_ui.verdict(audit)
    st.subheader("Metadata probe")
    shortcuts_ui.metadata(audit)
    if audit["examples"]:
        ex = audit["examples"]
        st.markdown(f"Typical images of each class for **{ex[0]['feature']}**")
        image_strip(ws, [e["item_id"] for e in ex], [f"{e['label']} · {e['value']:.3g}" for e in ex])
    st.subheader("Region probe")
    shortcuts_ui.regions(audit)
    r = audit.get("regions") or {}
    if r.get("carriers"):
        st.markdown("Images whose class score drops most when their class's strongest cell is masked")
        top = r["carriers"][:16]
        image_strip(ws, [c["item_id"] for c in top], [f"{c['label']} · drops {c['drop']:.2f}" for c in top])
