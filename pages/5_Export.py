"""Export: the evaluation split without its leaked images, with what was removed and why."""
import io
import zipfile

import pandas as pd
import streamlit as st

from leakcore.api import (ALL_SOURCES, EXPORT_FORMATS, EXPORT_POLICIES, WITHIN_KEPT, Action,
                          resplit_other_datasets_words, resplit_pairs_words)
from leakcore.errors import as_code
from ui import data
from ui.review_ui import pair_url
from ui.widgets import flash, lock_note, locked, page, user_errors

PAGE = 50


def removed_rows(ws, removed):
    """The removed list with the evaluation image, its best training match and a link to the pair in Review."""
    items = data.items(ws)
    first = removed["matches"].fillna("").str.split(";").str[0]
    pair_checks = [c["name"] for c in ws.checks.reviewable() if c["review"] == "pairs"]  # reviewed as pairs
    base = removed["check"].astype(str).str.replace(" (within split)", "", regex=False)  # a duplicate's pair too
    match_ok = first.isin(items.index) & base.isin(pair_checks)
    out = removed[["item_id", "checks", "reasons", "similarity", "decision", "reviewer", "note", "matches"]].rename(
        columns={"checks": "check", "reasons": "reason"})  # every check that flags the image, as removed.csv
    text = ["check", "reason", "decision", "reviewer", "note", "matches"]
    out[text] = out[text].astype("string").fillna("")  # an empty cell, not "None"
    # a missing picture, link or score is an empty cell: the browser drew None for each (an unreadable file's row)
    out["similarity"] = [f"{v:.4f}" if pd.notna(v) else "" for v in out["similarity"]]
    out.insert(0, "image", [(data.thumbnail(ws, items.loc[i]) if i in items.index else None) or BLANK
                            for i in removed["item_id"]])
    out.insert(1, "match", [(data.thumbnail(ws, items.loc[m]) if ok else None) or BLANK
                            for m, ok in zip(first, match_ok)])
    out.insert(2, "review", [pair_url(i, m) if ok else "" for i, m, ok in zip(removed["item_id"], first, match_ok)])
    # the short columns a curator reads first, the long paths last (at 1,400 px the decision column was cut off)
    return out[["image", "match", "review", "check", "reason", "similarity", "decision", "reviewer", "note", "item_id",
                "matches"]]


BLANK = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="  # an empty cell in an image column

ws = page("Export", ":material/download:")
with user_errors():
    st.title("Export a cleaned evaluation split")
    flash()
    options = data.split_names(ws, "eval")
    if not options:
        st.info("No evaluation splits in this workspace.")
        st.stop()
    c1, c2, c3 = st.columns([2, 2, 1])
    # the choices are kept across pages (ui/state.PERSISTENT): a new user's pets/validation was back to the first
    # split after Heatmaps and back, and an export of the wrong split was a click away; so no second default here
    if st.session_state.get("exp_split") not in options:
        st.session_state.pop("exp_split", None)
    st.session_state.setdefault("exp_policy", list(EXPORT_POLICIES)[1])
    split = c1.selectbox("Evaluation split", options, key="exp_split")
    flags = c2.radio("Unreviewed automatic flags to remove", list(EXPORT_POLICIES), horizontal=True, key="exp_policy",
                     help="Confirmed leaks are always removed; pairs a curator rejected never remove their image.")
    fmt = c3.selectbox("Format", list(EXPORT_FORMATS), key="exp_format", help="same: the input's own format")
    c4, c5 = st.columns([2, 2])
    keep_text = c4.text_area("Keep-list: item ids or keys never removed by automatic flags (one per line)", key="exp_keep",
                             height=68)
    dedupe = c5.checkbox("Also remove within-split duplicates", key="exp_dedupe",
                         help="Near-copies inside the evaluation split itself: keep the first of each group, remove the rest.")
    links = c5.selectbox("Image folder", ["none", "symlink", "copy"], key="exp_links")
    others = [c for c in ws.checks.exportable() if not c["default"]]
    also = c5.multiselect("Also remove images flagged by", [c["name"] for c in others], key="exp_also",
                          placeholder="no other check",
                          help="At the level chosen for unreviewed automatic flags, as the similarity flags "
                               "are (with none, only findings a curator confirmed). "
                               + "; ".join(f"{c['name']}: {c['description']}" for c in others))
    policy = ws.exports.policy(flags, keep_text, dedupe, also=also)
    st.subheader("What each policy removes")
    preview, plan = data.export_views(ws, split, policy)
    unknown = sorted(set(policy.keep) - set(plan["item_id"].astype(str)) - set(plan["key"].astype(str)))
    if unknown:  # said, not ignored (a typed "../../etc/passwd" kept nothing and said nothing)
        c4.caption(f"{len(unknown)} keep-list {'line matches' if len(unknown) == 1 else 'lines match'} no image of {split}: "
                   + ", ".join(as_code(k, 80) for k in unknown[:5]) + (" …" if len(unknown) > 5 else ""))
    st.dataframe(preview, hide_index=True, width="stretch")
    kept = int(preview[WITHIN_KEPT].iloc[0]) if WITHIN_KEPT in preview and len(preview) else 0
    if kept and not dedupe:
        st.info(f"Near-duplicates of another image inside {split} that stay in: {kept}. Each copy counts twice in a "
                "test score; tick *Also remove within-split duplicates* to keep one of each.",
                icon=":material/content_copy:")
    # the checks the export removes by only when asked, that found images of this split: said, as the report's next
    # step says it (a new user's cleaned split kept 6 of 8 images whose group reached training, none of it said)
    hard, soft = ws.scores.thresholds()
    rates = data.rates(ws, hard, soft)
    found = rates[(rates["eval_split"] == split) & (rates["train_split"] == ALL_SOURCES) & (rates["soft"] > 0)]
    removed = plan[plan["removed"]]
    gone = set(removed["item_id"].astype(str))
    unasked = [(c["name"], len(data.flagged_items(ws, c["name"], hard, soft) & set(plan["item_id"].astype(str)) - gone))
               for c in others if c["name"] not in also and (found["check"] == c["name"]).any()]
    unasked = [(name, n) for name, n in unasked if n]
    if unasked:
        st.info(" · ".join(f"{ws.checks.words(name).title or name}: {n} image{'' if n == 1 else 's'} of {split} it "
                           f"flags stay in unless *{name}* is chosen under *Also remove images flagged by*"
                           for name, n in unasked),
                icon=":material/group_work:")
    # pairs reviewers decided differently: the export follows the latest decision on each, which a colleague's later
    # "not a leak" made (a team's export kept four real leaks a second curator had rejected, said nowhere here)
    split_items = set(plan["item_id"].astype(str))
    differ = ws.decisions.disagreements()
    differ = differ[differ["eval_item_id"].astype(str).isin(split_items) | differ["train_item_id"].astype(str).isin(split_items)]
    if len(differ):
        n = differ[["eval_item_id", "train_item_id"]].drop_duplicates().shape[0]
        st.warning(f"{n} pair{'' if n == 1 else 's'} of {split} {'was' if n == 1 else 'were'} decided differently by "
                   "reviewers: the export follows the latest decision on each (Review shows every reviewer's, with "
                   "the *Decision state* filter on all).", icon=":material/rule:")
    st.caption(f"With these settings: keep {len(plan) - len(removed)} of {len(plan)}, remove {len(removed)}.")
    # short columns first, so the similarity is in view next to the long paths; thumbnails of both images and a link
    # that opens the pair on the Review page, a page of 50 at a time (thumbnails are made for the rows shown)
    if len(removed):
        pages = (len(removed) + PAGE - 1) // PAGE
        n = st.number_input(f"Page of the removed list (of {pages}, {PAGE} rows each)", 1, pages, key="exp_page") \
            if pages > 1 else 1
        shown = removed.iloc[(n - 1) * PAGE:n * PAGE]
        st.dataframe(removed_rows(ws, shown), hide_index=True, width="stretch", height=36 + 64 * min(len(shown), 8),
                     row_height=64,
                     column_config={"image": st.column_config.ImageColumn("evaluation", width="small"),
                                    "match": st.column_config.ImageColumn("match", width="small",
                                                                          help="its training match"),
                                    "review": st.column_config.LinkColumn("review", display_text="open pair",
                                                                          width="small"),
                                    "similarity": st.column_config.TextColumn(
                                        "fused score" if ws.settings.score == "fused" else "similarity",
                                        width="small", alignment="right"),
                                    "reason": st.column_config.TextColumn(width="medium")})
    why = locked(ws, Action.EXPORT)
    lock_note(why)
    if st.button("Write the export into the workspace", key="exp_write", type="primary", disabled=why is not None):
        result = ws.exports.write(split, policy, fmt=fmt, links=None if links == "none" else links)
        st.session_state["exp_last"] = [str(f) + ("/" if f.is_dir() else "") for f in result.files]  # a tree: its folder
        st.session_state["exp_archive"] = ws.exports.archive_plan(result)  # what its zip holds: files and images
        over = f", over the export of {result.replaced} there" if result.replaced else ""
        st.session_state["exp_over"] = over
        st.session_state["flash"] = f"Wrote {result.written()} to {result.folder}{over}"
        st.rerun()
    if st.session_state.get("exp_last"):
        files = st.session_state["exp_last"]
        st.success(f"Written{st.session_state.get('exp_over', '')}:\n\n" + "\n".join(f"- `{f}`" for f in files))
        plan = st.session_state.get("exp_archive")
        if plan is not None:
            # the zip is made when the button is pressed (on its own thread), not on every rerun of the page
            size = f"{plan.size / 2**20:,.1f} MB"
            label = (f"Download the export (zip: {plan.images:,} image{'' if plan.images == 1 else 's'} and its files, "
                     f"{size})" if plan.whole else
                     "Download removed.csv and provenance.json (zip)")
            st.download_button(label, lambda: ws.exports.archive(plan), f"{split.replace('/', '-')}-{flags}.zip",
                               "application/zip", key="exp_download")
            if not plan.whole:
                st.caption(f"The {plan.images:,} images ({size}) are too many to zip in the browser: they are in the "
                           "folder above on the server (`leakcore export --out FOLDER` writes them where you choose).")
            if plan.left_out:
                st.warning(f"{len(plan.left_out)} file{'' if len(plan.left_out) == 1 else 's'} of the export "
                           f"{'is' if len(plan.left_out) == 1 else 'are'} left out of the zip: "
                           f"{', '.join(plan.left_out[:3])}{' …' if len(plan.left_out) > 3 else ''} (a link that now "
                           "leads outside the dataset's folders, or a file gone since the export)",
                           icon=":material/warning:")

    st.divider()
    st.subheader("A leak-aware re-split")
    st.caption("A new train/test assignment of one dataset in which no group (explicit, recovered or confirmed) and no "
               "flagged pair a curator did not call unrelated spans the two: stratified by label, or cut at a time. "
               "Written as a manifest that `leakcore add --format manifest` reads, in the dataset's own format where "
               "it came from a manifest or Hugging Face Parquet, and with image folders per new split (links or "
               "copies).")
    if st.session_state.get("rs_dataset") not in ws.workspace.datasets:
        st.session_state.pop("rs_dataset", None)
    for key, value in (("rs_size", 0.2), ("rs_stratify", True), ("rs_seed", 0)):
        st.session_state.setdefault(key, value)  # kept across pages (ui/state.PERSISTENT): no second default below
    with st.form("resplit"):
        r1, r2, r3, r4, r5, r6 = st.columns([1.2, 0.9, 1, 1.4, 1, 0.7])
        dataset = r1.selectbox("Dataset", sorted(ws.workspace.datasets), key="rs_dataset")
        test_size = r2.number_input("Test share", 0.05, 0.95, step=0.05, key="rs_size")
        stratify = r3.toggle("Stratify by label", key="rs_stratify")
        cutoff = r4.text_input("…or split at a time", key="rs_cutoff", placeholder="2024-06-01T00:00:00Z")
        rs_links = r5.selectbox("Image folders", ["symlink", "copy", "none"], key="rs_links",
                                help="images/train and images/test beside the manifest: links to the files (on "
                                     "this machine), or copies of them (to zip and ship)")
        seed = r6.number_input("Seed", 0, 2**31 - 1, key="rs_seed", help="Another seed, another split of the same "
                               "groups (`leakcore resplit --seed`)")
        why = locked(ws, Action.RESPLIT)
        go = st.form_submit_button("Re-split and write", type="primary", disabled=why is not None)
        lock_note(why)
    if go:
        result = ws.resplit(dataset, test_size=float(test_size), stratify="label" if stratify else None,
                            time_cutoff=cutoff.strip() or None, seed=int(seed),
                            links=None if rs_links == "none" else rs_links)
        st.session_state["rs_last"] = result.summary | {"files": [str(f) for f in result.files]}
    if st.session_state.get("rs_last"):
        s = st.session_state["rs_last"]
        st.success(f"{s['dataset']}: train {s['train']}, test {s['test']} ({100 * s['test_share']:.1f}% test, target "
                   f"{100 * s['target_test_share']:.1f}%) · {s['multi_item_groups']} groups of several images kept "
                   f"whole (the largest {s['largest_group']}) · {resplit_pairs_words(s)} · largest class-share gap "
                   f"{100 * s['max_label_share_gap']:.1f} points · {s['method']}")
        if resplit_other_datasets_words(s):
            st.info(resplit_other_datasets_words(s) + ".")
        if s.get("unreadable_left_out") or s.get("test_duplicate_pairs") or s.get("label_conflicts_kept"):
            st.info(" · ".join(([f"Left out: {s['unreadable_left_out']} files no check could read."]
                                if s.get("unreadable_left_out") else [])
                               + ([f"One picture under two labels, kept on one side: {s['label_conflicts_kept']} "
                                   "(a re-split cannot fix a label: the label_conflict check lists them)."]
                                  if s.get("label_conflicts_kept") else [])
                               + ([f"Near-duplicate pairs both in test: {s['test_duplicate_pairs']} (each copy counts "
                                   "twice in a test score; the manifest's group column names each group)."]
                                  if s.get("test_duplicate_pairs") else [])))
        if not s.get("train_searched", True):
            st.warning("Training images were not compared with one another (a scan with *Compare training images* "
                       "on the Home page does, or `leakcore scan WORKSPACE --grouping`): near-duplicates "
                       "inside training may fall on both sides of this split; exact copies are kept together.",
                       icon=":material/warning:")
        st.markdown("\n".join(f"- `{f}`" for f in s["files"]))
        if s.get("add_again"):
            st.caption("To scan the new split, add it to a new workspace (beside its old dataset in this one, every image "
                       "would be its own copy's leak):")
            st.code("\n".join(s["add_again"]), language="bash")
        from pathlib import Path

        written = [Path(f) for f in s["files"] if Path(f).is_file()]  # the manifest and resplit.json: not the
        # image folders, which a zip made in memory could not hold for a dataset of photos (the workspace holds them)
        if written:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as zf:
                for f in written:
                    zf.write(f, arcname=f.name)
            st.download_button("Download the manifest files (zip)", buf.getvalue(), f"{s['dataset']}-resplit.zip",
                               "application/zip", key="rs_download")
