"""Shortcuts (target leakage): what gives the label away besides the content: file metadata, a corner marker."""
import streamlit as st

from ui import data, shortcuts_ui
from ui.widgets import image_strip, page, user_errors

ws = page("Shortcuts", ":material/visibility_off:")
with user_errors():
    st.title("Shortcuts: target leakage")
    st.caption("A model can learn the label from something that is not the content: a marker in a corner, one class "
               "saved at another JPEG quality or resolution, a camera, a word in the file name. Two probes look for "
               "it: one reads only the files' metadata, one reads image regions (the border, each corner).")
    c1, c2, c3 = st.columns([2, 1, 1])
    dataset = c1.selectbox("Dataset", sorted(ws.datasets), key="sc_dataset")
    with_regions = c2.toggle("Region probe (embeds regions)", value=True, key="sc_regions")
    c3.write("")
    if c3.button("Run the audit", key="sc_run", type="primary", width="stretch"):
        data.run_shortcuts(ws, dataset, with_regions)
    audit = data.shortcut_audits(ws).get(dataset)
    if audit is None:
        st.info("No audit of this dataset yet: run one (about a minute for a few thousand images on 2 cores).")
        st.stop()
    shortcuts_ui.verdict(audit)
    st.subheader("Metadata probe")
    shortcuts_ui.metadata(audit)
    if audit["examples"]:
        ex = audit["examples"]
        st.markdown(f"Typical images of each class for **{ex[0]['feature']}**")
        image_strip(ws, [e["item_id"] for e in ex], [f"{e['label']} · {e['value']:.3g}" for e in ex], per_row=6)
    st.subheader("Region probe")
    shortcuts_ui.regions(audit)
    r = audit.get("regions") or {}
    if r.get("carriers"):
        st.markdown("Images whose class score drops most when their class's strongest cell is masked")
        top = r["carriers"][:16]
        image_strip(ws, [c["item_id"] for c in top], [f"{c['label']} · −{c['drop']:.2f}" for c in top])
