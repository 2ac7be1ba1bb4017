"""Export: the evaluation split without its leaked images, with what was removed and why."""
import io
import zipfile

import streamlit as st

from leakcore import export
from ui.widgets import flash, page, user_errors

ws = page("Export", ":material/download:")
with user_errors():
    st.title("Export a cleaned evaluation split")
    flash()
    options = [str(s) for s in ws.split_ids("eval")]
    if not options:
        st.info("No evaluation splits in this workspace.")
        st.stop()
    c1, c2, c3 = st.columns([2, 2, 1])
    split = c1.selectbox("Evaluation split", options, key="exp_split")
    flags = c2.radio("Unreviewed automatic flags to remove", list(export.POLICIES), index=1, horizontal=True, key="exp_policy",
                     help="Confirmed leaks are always removed; pairs a curator rejected never remove their image.")
    fmt = c3.selectbox("Format", list(export.FORMATS), key="exp_format", help="same: the input's own format")
    c4, c5 = st.columns([3, 1])
    keep_text = c4.text_area("Keep-list: item ids or keys never removed by automatic flags (one per line)", key="exp_keep",
                             height=68)
    dedupe = c5.checkbox("Also remove within-split duplicates", key="exp_dedupe",
                         help="Near-copies inside the evaluation split itself: keep the first of each group, remove the rest.")
    links = c5.selectbox("Image folder", ["none", "symlink", "copy"], key="exp_links")
    groups = c5.checkbox("Also remove images whose group reaches training data", key="exp_groups",
                         help="One patient, video or image across splits: explicit groups, recovered groups and "
                              "groups a curator confirmed.")
    policy = ws.export_policy(flags, keep_text, dedupe, groups)
    st.subheader("What each policy removes")
    st.dataframe(ws.export_preview([split], policy), hide_index=True, width="stretch")
    plan = ws.export_plan(split, policy)
    removed = plan[plan["removed"]]
    st.caption(f"With these settings: keep {len(plan) - len(removed)} of {len(plan)}, remove {len(removed)}.")
    # short columns first, so the similarity is in view next to the long paths; the table is as tall as its rows (up to 10)
    st.dataframe(removed[["item_id", "check", "reason", "similarity", "decision", "matches", "reviewer", "note"]], hide_index=True,
                 width="stretch", height=38 + 35 * min(max(len(removed), 1), 10),
                 column_config={"similarity": st.column_config.NumberColumn(format="%.4f", width="small"),
                                "reason": st.column_config.TextColumn(width="medium")})
    if st.button("Write the export into the workspace", key="exp_write", type="primary"):
        result = ws.export(split, policy, fmt=fmt, links=None if links == "none" else links)
        st.session_state["exp_last"] = [str(f) for f in result.files if f.is_file()]
        st.session_state["flash"] = f"Wrote {len(result.files)} files to {result.folder}"
        st.rerun()
    if st.session_state.get("exp_last"):
        files = st.session_state["exp_last"]
        st.success("Written:\n\n" + "\n".join(f"- `{f}`" for f in files))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for f in files:
                zf.write(f, arcname=f.rsplit("/", 1)[-1])
        st.download_button("Download these files (zip)", buf.getvalue(), f"{split.replace('/', '-')}-{flags}.zip",
                           "application/zip", key="exp_download")

    st.divider()
    st.subheader("A leak-aware re-split")
    st.caption("A new train/test assignment of one dataset in which no group (explicit, recovered or confirmed) spans "
               "the two: stratified by label, or cut at a time. Written in the dataset's own format where it has one, "
               "plus a manifest that `leakcore add --format manifest` reads.")
    with st.form("resplit"):
        r1, r2, r3, r4 = st.columns(4)
        dataset = r1.selectbox("Dataset", sorted(ws.datasets), key="rs_dataset")
        test_size = r2.number_input("Test share", 0.05, 0.95, 0.2, step=0.05, key="rs_size")
        stratify = r3.toggle("Stratify by label", value=True, key="rs_stratify")
        cutoff = r4.text_input("…or split at a time", key="rs_cutoff", placeholder="2024-06-01T00:00:00Z")
        go = st.form_submit_button("Re-split and write", type="primary")
    if go:
        result = ws.resplit(dataset, test_size=float(test_size), stratify="label" if stratify else None,
                            time_cutoff=cutoff.strip() or None)
        st.session_state["rs_last"] = result.summary | {"files": [str(f) for f in result.files]}
    if st.session_state.get("rs_last"):
        s = st.session_state["rs_last"]
        st.success(f"{s['dataset']}: train {s['train']}, test {s['test']} ({100 * s['test_share']:.1f}% test, target "
                   f"{100 * s['target_test_share']:.1f}%) · {s['groups']} groups kept whole · largest class-share gap "
                   f"{100 * s['max_label_share_gap']:.1f} points · {s['method']}")
        st.markdown("\n".join(f"- `{f}`" for f in s["files"]))
