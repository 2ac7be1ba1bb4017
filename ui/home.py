"""Home page pieces: open or create a workspace, add a dataset, run a scan with progress, show what is there."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from leakcore.api import ALL_SOURCES, Action, Project, degree_of, format_names, planted_truth
from leakcore.errors import as_code
from ui import access_ui, data, job_ui, state
from ui.widgets import lock_note, locked, user_errors

Workspace = Project  # pages hold a Project: the workspace with the product's verbs


def open_workspace_ui() -> None:
    """Path field and recent workspaces; switching clears per-workspace state."""
    # open while it is being used: Enter in the folder field closed it, and a refused "Create here" then said why
    # inside the closed box, so the click seemed to do nothing
    in_use = {"on_click": lambda: st.session_state.update(ws_box_open=True)}
    opened = not Path(st.session_state["workspace"], "project.toml").exists() or st.session_state.get("ws_box_open")
    with st.expander("Open or create a workspace", expanded=bool(opened)):
        recent = state.recent_workspaces()
        path = st.text_input("Workspace folder", value=st.session_state["workspace"], key="ws_path_input",
                             on_change=lambda: st.session_state.update(ws_box_open=True))
        c1, c2 = st.columns(2)
        if c1.button("Open", key="ws_open", width="stretch", **in_use):
            _switch(path, create=False)
        if c2.button("Create here", key="ws_create", width="stretch", **in_use):
            _switch(path, create=True)
        if recent:
            pick = st.selectbox("Recent", recent, index=None, key="ws_recent", placeholder="choose a recent workspace")
            if pick and pick != st.session_state["workspace"]:
                _switch(pick, create=False)


def _switch(path: str, create: bool) -> None:
    """Open (or create) through the facade first: a folder outside the server's roots is refused before anything
    is looked up there or remembered in the recent list every user of the server sees."""
    project = None
    if create and not access_ui.may_create_workspace(st.session_state.get("workspace"), path):
        return  # refused, with the reason shown
    with user_errors(stop=False):
        project = (Project.create(path, lead=access_ui.new_workspace_lead(),
                                  others=access_ui.new_workspace_others(st.session_state.get("workspace")))
                   if create else Project.open(path))
    if project is None:
        return  # refused, with the reason shown
    path = str(project.path)
    st.session_state["ws_box_open"] = False  # opened: the box closes as before
    st.session_state["workspace"] = path
    st.session_state["review_pos"] = 0
    # the next workspace's own settings: the boxes kept the last workspace's values (a new user's workspace saved with
    # grouping on showed "Compare training images" unticked, and a scan from there would have turned it off)
    for key in ("scan_verify", "scan_verify_chosen", "scan_flip", "scan_grouping", "scan_encoder", "scan_k"):
        st.session_state.pop(key, None)
    state.remember_workspace(path)
    st.rerun()


def add_dataset_ui(ws: Workspace) -> None:
    """Form: ingest a folder, manifest, Parquet, CIFAR batches, COCO file or embeddings folder."""
    with st.expander("Add a dataset", expanded=not data.split_names(ws)):
        with st.form("add_dataset"):
            name = st.text_input("Dataset name", placeholder="e.g. cifar10")
            source = st.text_input("Source path", placeholder="/data/my_dataset or /data/manifest.csv")
            fmt = st.selectbox("Layout", ["detect"] + format_names())
            roles = st.text_input("Role overrides", placeholder="test=eval, extra=train")
            links = st.checkbox("Follow links", help="Read the files that links in the folder lead to elsewhere (a "
                                "tree of links to a shared store, a re-split's image folders); without it they are "
                                "listed as outside the dataset's folder (`leakcore add --follow-links`).")
            why = locked(ws, Action.ADD)
            submitted = st.form_submit_button("Add dataset", disabled=why is not None)
            lock_note(why)
    path = str(ws.path)
    if submitted and not job_ui.running("add", path):
        actor, options = ws.team.acting_user, dict(fmt=None if fmt == "detect" else fmt, roles=roles,
                                                   follow_links=links)

        def work(progress, name=name, source=source) -> dict:
            return {"name": name, **Project.open(path, actor=actor).add(
                name, source, progress=lambda done, total: progress("read and check images", done, total),
                **options)}

        if job_ui.start("add", ws, f"Adding {as_code(name, 80) if name else 'a dataset'}", work, page="app.py", resumes=False):
            st.rerun()
    elif submitted:
        st.info("A dataset is still being added: add the next one when it is done.")
    job_ui.bar("add", path, stop_key="add_stop")
    job = job_ui.latest_ended("add", path)
    if job is not None and isinstance(job.result, dict):
        _added(job.result)
        st.caption(job_ui.ended_words(job))
    elif job is not None:
        job_ui.outcome("add", path)


def _added(summary: dict) -> None:
    """What adding a dataset found: items, files skipped by their name, copies of another dataset, links, tiny
    images."""
    name, skipped = summary["name"], summary.get("skipped") or {}
    st.success(f"Added {summary['items']} items to {name}" + (
        f"; skipped {sum(skipped.values())} files that are not images by their name ("
        + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items(), key=lambda kv: -kv[1])[:6]) + ")"
        if skipped else ""))
    for other, n in (summary.get("same_files_as") or {}).items():
        st.warning(f"{n} of its images are dataset {as_code(other)}'s, byte for byte: if it is a re-split "
                   "or a copy of that dataset, add it to a new workspace (scanned beside it, each image is "
                   "its own copy's leak)",
                   icon=":material/content_copy:")
    if summary.get("links_not_followed"):
        st.warning(f"{summary['links_not_followed']} files are links to files outside the folder: add it "
                   "again with **Follow links** ticked to read them", icon=":material/link:")
    if summary.get("tiny"):
        st.warning(f"{summary['tiny']} images are under {summary['tiny_side']} px on a side: read, but too "
                   "small for their copies to be told apart", icon=":material/photo_size_select_small:")


def scan_ui(ws: Workspace) -> None:
    """Encoder choice and a scan with a progress bar (the same scan as `leakcore scan`)."""
    available = [r["name"] for r in data.encoders() if r["available"]]
    settings = ws.settings
    why = locked(ws, Action.SCAN)  # a role that may not scan sees the settings too, not to be changed
    off = {"disabled": why is not None}
    c1, c2, c3 = st.columns([2, 1, 1])
    encoder = c1.selectbox("Encoder", available, key="scan_encoder", **off,
                           index=available.index(settings.encoder) if settings.encoder in available else 0)
    k = c2.number_input("Neighbours (k)", 1, 100, settings.k, key="scan_k", **off)
    c4, c5, c6 = st.columns([2, 1, 1])
    where = c4.radio("Run on", ["this machine", "a Ray cluster"], horizontal=True, key="scan_where", **off,
                     help="A Ray cluster runs the embedding in an actor pool and the search as tasks; the stored "
                          "neighbours are the same as this machine's. The workspace must be on a file system every "
                          "node sees at the same path.")
    address, workers = None, None
    if where == "a Ray cluster":
        address = c5.text_input("Ray address", key="scan_ray_address",
                                help="local: start a Ray on this machine; auto: the cluster this machine belongs to; "
                                     "or host:6379 / ray://host:10001").strip() or "local"
        workers = int(c6.number_input("Workers", 0, 4096, key="scan_workers",
                                      help="0: one per GPU of the cluster, or one per CPU when it has none")) or None
    # the workspace's settings until the curator changes them; verification follows the workspace (on for photos,
    # off for small images, once images are added) until the box is clicked, and only a click is stored as a choice
    if not st.session_state.get("scan_verify_chosen"):
        st.session_state["scan_verify"] = settings.verify
    st.session_state.setdefault("scan_flip", settings.flip_queries)
    st.session_state.setdefault("scan_grouping", settings.grouping)
    v1, v2, v3 = st.columns([2, 1, 1.2])
    verify = v1.checkbox("Verify pairs on their pixels (on for photos)",  # a longer label was cut at 1,400 px
                         key="scan_verify", on_change=lambda: st.session_state.update(scan_verify_chosen=True), **off,
                         help="Alignment over flips, turns, scales and shifts, NCC, SSIM, local features and a crop "
                              "search for every pair above the candidate threshold, and a fused score fitted on the "
                              "workspace's training images. On by default where the training images' median shorter "
                              "side is at least 64 px (`leakcore scan --verify` / `--no-verify`); on photos the flags "
                              "then use the fused score.")
    if not verify:  # off by default in a workspace whose photos sit beside many more small images: said, not hidden
        note = ws.scores.verification_off_note(page=True)
        if note:
            st.info(note, icon=":material/info:")
    flip = v2.checkbox("Mirrored queries", key="scan_flip", **off,
                       help="Also search each evaluation image's mirror image, which catches flipped copies "
                            "(`leakcore scan --flip-queries`); every evaluation image is embedded twice.")
    grouping = v3.checkbox("Compare training images", key="scan_grouping", **off,
                           help="Also search every training split against itself and the others (`leakcore scan "
                                "--grouping`): groups of one source, and near-duplicates inside training that a "
                                "re-split must keep on one side.")
    c3.write("")
    lock_note(why)
    path = str(ws.path)
    busy = job_ui.running("scan", path)
    if c3.button("Run scan", key="run_scan", type="primary", width="stretch", disabled=why is not None or busy,
                 help="The scan runs in the server: switch pages or reload meanwhile; its bar is here and in the "
                      "sidebar of every page"):
        options = dict(encoder=encoder, k=int(k), flip_queries=flip, grouping=grouping, ray=address, workers=workers,
                       verify=verify if st.session_state.get("scan_verify_chosen") else None)
        actor = ws.team.acting_user

        def work(progress) -> str:
            project = Project.open(path, actor=actor)
            if address is not None:
                progress(f"connecting to Ray ({address})", 0, 1)
            return _scan_summary(project, project.scan(progress=progress, **options))

        if job_ui.start("scan", ws, "Scan" if address is None else f"Scan on Ray ({address})", work,
                        page="app.py") is not None:
            st.rerun()  # the button shows the scan running, and the bar below follows it
    job_ui.bar("scan", path, stop_key="scan_stop")
    job_ui.outcome("scan", path)


def _scan_summary(ws: Workspace, result) -> str:
    """What a scan from the page did, in the CLI's terms: time, split pairs searched, and what verification changed."""
    text = (f"Scan done in {result.seconds:.1f}s: {len(result.pairs_searched)} pairs of splits searched, "
            f"{len(result.pairs_skipped)} unchanged.")
    files = getattr(result, "refreshed", None) or {}  # files changed, gone or new on disk since they were added
    changed, gone = files.get("changed", 0), files.get("gone", 0)
    if changed:
        text += f" {changed} image file{'s' if changed != 1 else ''} had changed on disk: read again."
    if gone:
        text += f" {gone} image file{'s' if gone != 1 else ''} {'are' if gone != 1 else 'is'} gone: listed as missing."
    for name, n in (files.get("new") or {}).items():
        text += (f" {n} new image file{'s' if n != 1 else ''} in the folder of {name} {'are' if n != 1 else 'is'} "
                 "not in the workspace yet, so not checked: add the dataset again (Add a dataset, same name and "
                 "folder) to include them.")
    fm = ws.scores.fused_model() if ws.settings.verify else None
    if fm is None:
        return text
    table = ws.scores.verification_table(fm)
    counts = "; ".join(f"{r['eval split']}: {r['flagged (fused soft)']} by the fused score, {r['flagged (raw soft)']} by the "
                       f"raw similarity" for r in table.to_dict("records"))
    using = ("the flags use the fused score" if ws.settings.score == "fused"
             else "the flags use the raw similarity (the Thresholds page switches to the fused score)")
    return f"{text} Verification checked {int(table['verified pairs'].sum())} candidate pairs on their pixels. " \
           f"Images flagged: {counts}; {using}."


def unreadable_table(bad, shared: bool):
    """The unreadable items as Home lists them: item id, reason and file; on a shared (signed-in) server the reason's
    kind only and no file, which name where the server keeps its files (as the Review page's facts and "No image"
    notes; the item id names the file within its dataset)."""
    if not shared:
        return bad[["item_id", "reason", "uri"]]
    return bad.assign(reason=bad["reason"].astype(str).str.split(":").str[0])[["item_id", "reason"]]


def overview(ws: Workspace, hard: float, soft: float) -> None:
    """Items per dataset/split/role, labels, unreadable items with reasons, and leakage rates."""
    items = data.items(ws)
    if items.empty:
        st.info("This workspace has no datasets yet: add one above, or run `leakcore add` in a terminal.")
        return
    splits = ws.workspace.splits()
    labels = items.groupby(["dataset", "split"])["label"].nunique().rename("labels").reset_index()
    st.subheader("Datasets")
    st.dataframe(splits.merge(labels, on=["dataset", "split"]), hide_index=True, width="stretch")
    bad = items[items["status"] != "ok"]
    if not bad.empty:
        with st.expander(f"{len(bad)} unreadable item(s)", expanded=False):
            st.dataframe(unreadable_table(bad, shared=access_ui.sign_in_configured()), hide_index=True, width="stretch")
    st.subheader("Leakage at the thresholds in force")
    table = data.rates(ws, hard, soft)
    if table.empty or not (table["check"] == "similarity").any():  # other checks read the scan's pairs too: before
        # a scan stopped by a reload or Stop left its finished parts: said, so nobody starts a new workspace over it
        st.info("No scan results yet: the scan above is running." if job_ui.running("scan", str(ws.path)) else
                "No scan results yet: run a scan (a scan that was stopped goes on from where it stopped: the images "
                "it embedded are kept).")  # a scan they would say "0 of N" as if they had looked
        return
    unscanned = ws.checks.unscanned()  # a source added after the scan: its rates read 0%, final-looking, unsaid
    if unscanned:
        pairs = ", ".join(f"{e} against {t}" for e, t in unscanned[:6]) + (f" and {len(unscanned) - 6} more"
                                                                        if len(unscanned) > 6 else "")
        st.warning(f"Not scanned yet: {pairs}. Their rates below read 0% until a scan searches them (Run scan above "
                   "goes on from what is done).", icon=":material/warning:")
    overall = table[(table["train_split"] == ALL_SOURCES) & (table["check"] == "similarity")]
    cols = st.columns(max(len(overall), 1))
    for col, r in zip(cols, overall.itertuples()):
        col.metric(f"{r.eval_split} · soft", f"{100 * r.soft_rate:.1f}%", help=f"{r.soft} of {r.n_eval} evaluation images")
        col.caption(f"{r.soft:,} of {r.n_eval:,} images")
        col.metric(f"{r.eval_split} · hard", f"{100 * r.hard_rate:.1f}%", help=f"{r.hard} of {r.n_eval} evaluation images")
        col.caption(f"{r.hard:,} of {r.n_eval:,} images")
    st.caption(f"Soft includes hard: every hard leak is also counted as soft (as in the paper). Counts apply "
               f"curator decisions ({data.decided_pairs(ws)} confirmed or rejected so far; an unsure pair keeps its "
               "automatic degree, a confirmed leak counts whatever its score, a rejected pair does not), as Review, Heatmaps "
               "and Export do; the Thresholds page shows the scores-only counts beside them.")
    others = table[(table["train_split"] == ALL_SOURCES) & (table["check"] != "similarity")]
    for check, rows in others.groupby("check", sort=False, observed=True):
        # every other check's overall line, in its own words (label conflicts, groups, recordings)
        st.markdown(f"**{ws.checks.words(check).title}** · " + " · ".join(
            f"{r.eval_split}: {r.soft:,} of {r.n_eval:,} images ({100 * r.soft_rate:.1f}%), hard {r.hard:,}"
            for r in rows.itertuples()))
    shown = table.assign(hard_rate=(100 * table["hard_rate"]).round(2), soft_rate=(100 * table["soft_rate"]).round(2))
    st.dataframe(shown.rename(columns={"hard_rate": "hard %", "soft_rate": "soft %"}), hide_index=True, width="stretch")
    st.download_button(  # built when clicked (a callable), by the same facade method as `leakcore report --html`
        "Download the leakage report (one HTML page)", data=lambda: ws.report_document(hard=hard, soft=soft).html(),
        file_name=f"leakage-report-{ws.path.name}.html", mime="text/html", key="report_html", on_click="ignore",
        icon=":material/download:",
        help="Summary, heatmaps, the strongest findings with thumbnails, thresholds and their calibration, "
             "provenance: one self-contained file that opens in any browser without a network, and prints to PDF.")


def planted_ui(ws: Workspace, hard: float, soft: float) -> None:
    """For the demo workspace: which planted leaks the scan found at the current thresholds."""
    truth = planted_truth(ws)
    if truth is None:
        return
    pairs = data.pairs(ws)
    # the score in force (the fused score, where verification runs), as the thresholds are: the raw similarity
    # against the fused thresholds called 16 of 17 found where Review, the CLI and the report flag all 17
    column = "score" if "score" in pairs else "similarity"
    best = pairs.groupby(["eval_item_id", "train_item_id"])[column].max().rename("score").reset_index()
    found = truth.merge(best, on=["eval_item_id", "train_item_id"], how="left")
    found["found as"] = degree_of(found["score"].fillna(-1), hard, soft)
    n = int((found["found as"] != "none").sum())
    label = f"{ws.settings.score} score" if column == "score" and ws.settings.score != "similarity" else "similarity"
    with st.expander(f"Demo: {n} of {len(found)} planted leaks found at these thresholds"):
        st.dataframe(found[["kind", "found as", "score", "eval_item_id", "train_item_id"]].rename(
                         columns={"score": label}), hide_index=True, width="stretch",
                     column_config={label: st.column_config.NumberColumn(format="%.4f")})
        st.caption("Other flags in the demo come from other regions of pictures that repeat themselves (brick, grass, "
                   "a star field, coins, a retina, a colour wheel): not planted. Where a texture repeats, two of its "
                   "regions can hold the same pixels shifted (the aligned view shows it); elsewhere they are "
                   "look-alikes. Reject them on the Review page to see the rates and heatmaps follow your decisions.")


__all__ = ["add_dataset_ui", "open_workspace_ui", "overview", "planted_ui", "scan_ui"]
