"""Cached loaders keyed on (workspace path, file stamps): derived tables are recomputed only when files change."""
from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from leakcore.api import Images, ImpactRequest, Project, Review, Scores, list_encoders
from leakcore.errors import WorkspaceError, as_code
from ui import job_ui, jobs

Workspace = Project  # the pages hold a Project: the product's verbs; its storage is `ws.workspace`


@st.cache_resource(show_spinner=False, max_entries=8)
def _caches(path: str, _first):
    """The in-memory caches of the workspace at `path` (the first Project's), shared by every Project opened on it
    afterwards: their keys are the artefacts' versions, so a Project opened later never reads a stale entry."""
    return _first


def open_workspace(path: str) -> Workspace | None:
    """The workspace at `path` (its settings read afresh, its caches kept across reruns), or None with the
    reason shown."""
    try:
        ws = Project.open(path)
    except WorkspaceError as exc:
        st.warning(exc.for_page())
        return None
    ws.workspace.use_caches(_caches(str(ws.path), ws.workspace.caches))
    return ws


def _neighbors_stamp(ws: Workspace) -> tuple:
    """The stored tables, and with the fused score also the score's model and the evidence parts: whatever
    `leakage.load_pairs` reads (a refit or a verification run from the terminal shows on the next rerun)."""
    tables = ws.workspace.stamp("neighbors")
    return tables if ws.workspace.score == "similarity" else tables + (ws.workspace.score,) + _verify_stamp(ws)


def _verify_stamp(ws: Workspace) -> tuple:
    return ws.workspace.stamp("fused"), ws.workspace.stamp("evidence")


@st.cache_data(show_spinner=False, max_entries=64)
def _explain(path: str, eval_item_id: str, train_item_id: str, similarity: float | None, stamp: tuple):
    return Project.open(path).review.evidence(eval_item_id, train_item_id, similarity=similarity)


def explain_pair(ws: Workspace, eval_item_id: str, train_item_id: str, similarity: float | None):
    """The second stage's view of one pair (cached per pair and per model / evidence)."""
    return _explain(str(ws.path), eval_item_id, train_item_id, similarity, _verify_stamp(ws))


# The big read-only tables (items, the review queue) are held with cache_resource: one shared copy,
# no pickling per rerun. Callers must never mutate them (filter_queue and friends return new frames).
@st.cache_resource(show_spinner=False, max_entries=4)
def _items(path: str, stamp: tuple) -> pd.DataFrame:
    return Project.open(path).workspace.items().set_index("item_id", drop=False)


def items(ws: Workspace) -> pd.DataFrame:
    """The item table indexed by item_id (read-only)."""
    return _items(str(ws.path), ws.workspace.stamp("items"))


@st.cache_data(show_spinner=False, max_entries=16)
def _split_names(path: str, role: str | None, stamp: tuple) -> list[str]:
    return [str(s) for s in Project.open(path).workspace.split_ids(role)]


def split_names(ws: Workspace, role: str | None = None) -> list[str]:
    """The workspace's splits ("dataset/split"), of one role when given, from the cached item table."""
    return _split_names(str(ws.path), role, ws.workspace.stamp("items"))


def dataset_names(ws: Workspace) -> list[str]:
    return sorted({s.split("/", 1)[0] for s in split_names(ws)})


@st.cache_data(show_spinner=False, max_entries=8)
def _pairs(path: str, encoder: str, stamp: tuple) -> pd.DataFrame:
    return Project.open(path).scores.pairs(encoder)


def pairs(ws: Workspace) -> pd.DataFrame:
    return _pairs(str(ws.path), ws.workspace.encoder, _neighbors_stamp(ws))


def decisions_stamp(ws: Workspace) -> tuple:
    return ws.workspace.stamp("review")


@st.cache_data(show_spinner=False, max_entries=8)
def _decisions(path: str, stamp: tuple) -> pd.DataFrame:
    return Project.open(path).decisions.latest()


def decisions(ws: Workspace) -> pd.DataFrame:
    return _decisions(str(ws.path), decisions_stamp(ws))


@st.cache_resource(show_spinner=False, max_entries=4)
def _queue(path: str, encoder: str, hard: float, soft: float, stamp: tuple, items_stamp: tuple) -> pd.DataFrame:
    # every check reviewed as pairs adds its rows (each names its check); the pairs are the cached ones
    return Project.open(path).review.queue(hard, soft, pairs=_pairs(path, encoder, stamp))


@st.cache_resource(show_spinner=False, max_entries=4)
def _queue_lookup(path: str, encoder: str, hard: float, soft: float, stamp: tuple, items_stamp: tuple):
    return Review.lookup(_queue(path, encoder, hard, soft, stamp, items_stamp))


class _DecidedQueue:
    """The queue with the decisions in force, brought up to date by applying only the decisions made since it was
    last read: a decision costs a read of that decision and a copy of four columns, not a read of every decision
    ever made (a store of 50,000 decisions takes about 0.1 s to read). An undo, which changes an older decision,
    reads the pairs undos touched (`decisions_after`). Each state is a new frame: views built on an older one keep
    what they showed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.dstamp: tuple | None = None
        self.frame: pd.DataFrame | None = None
        self.last_id = 0
        self.undone = 0

    def current(self, path: str, queue: pd.DataFrame, lookup, dstamp: tuple) -> pd.DataFrame:
        with self.lock:
            if self.frame is None or self.dstamp != dstamp:
                fresh = self.frame is None
                change = Project.open(path).review.decisions_after(0 if fresh else self.last_id,
                                                                   None if fresh else self.undone)
                if not fresh and change.last_id < self.last_id:  # the store was replaced: read it all again
                    fresh, change = True, Project.open(path).review.decisions_after(0)
                if fresh:
                    self.frame = Review.with_decisions(queue, change.decisions, lookup)
                elif len(change.decisions):
                    self.frame = Review.with_decisions(queue, change.decisions, lookup, over=self.frame)
                self.dstamp, self.last_id, self.undone = dstamp, change.last_id, change.undone
            return self.frame


@st.cache_resource(show_spinner=False, max_entries=4)
def _decided_queue(path: str, encoder: str, hard: float, soft: float, stamp: tuple, items_stamp: tuple):
    return _DecidedQueue()


def _queue_decided(path: str, encoder: str, hard: float, soft: float, stamp: tuple, items_stamp: tuple,
                   dstamp: tuple) -> pd.DataFrame:
    return _decided_queue(path, encoder, hard, soft, stamp, items_stamp).current(
        path, _queue(path, encoder, hard, soft, stamp, items_stamp),
        _queue_lookup(path, encoder, hard, soft, stamp, items_stamp), dstamp)


def queue(ws: Workspace, hard: float, soft: float) -> pd.DataFrame:
    """The review queue with the decisions in force merged in (read-only)."""
    return _queue_decided(str(ws.path), ws.workspace.encoder, hard, soft, _neighbors_stamp(ws), ws.workspace.stamp("items"),
                          decisions_stamp(ws))


class QueueView:
    """The filtered, ordered queue as positions into the cached queue: a decision (which changes the filtered set)
    costs a mask and a sort, not a copy of every column of 100,000 rows. Rows are taken when shown."""

    def __init__(self, queue: pd.DataFrame, rows):
        self.queue, self.rows, self._columns = queue, rows, {}

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def empty(self) -> bool:
        return len(self.rows) == 0

    def row(self, i: int) -> pd.Series:
        return self.queue.iloc[int(self.rows[i])]

    def rows_between(self, start: int, stop: int) -> pd.DataFrame:
        return self.queue.iloc[self.rows[start:stop]]

    def cells(self, name: str, window: slice):
        """One column's values at the view's positions in `window` (a few rows: no whole column converted)."""
        if name in self._columns:
            return self._columns[name][window]
        return self.queue[name].iloc[self.rows[window]].to_numpy()

    def column(self, name: str):
        """One column of the view as a numpy array (kept: the view is cached and never changes)."""
        if name not in self._columns:
            self._columns[name] = self.queue[name].to_numpy()[self.rows]
        return self._columns[name]


@st.cache_resource(show_spinner=False, max_entries=8)
def _review_view(path: str, encoder: str, hard: float, soft: float, stamp: tuple, items_stamp: tuple, dstamp: tuple,
                 filters: tuple) -> tuple[QueueView, dict]:
    q = _queue_decided(path, encoder, hard, soft, stamp, items_stamp, dstamp)
    asked = {k: list(v) if isinstance(v, tuple) else v for k, v in filters}
    rows = Review.filter_rows(q, **asked)
    # the progress is over the checks on show: a pair two checks queue (a copy under another label) counts once
    mine = q["check"].isin(asked["checks"]).to_numpy() if asked.get("checks") else np.ones(len(q), bool)
    within = q["within"].fillna(False).to_numpy(dtype=bool) if "within" in q.columns else np.zeros(len(q), bool)
    return QueueView(q, rows), {"decided": int(((q["state"] != "unreviewed").to_numpy() & mine).sum()),
                                "unsure": int(((q["state"] == "unsure").to_numpy() & mine).sum()),
                                "total": int(mine.sum()), "within": int((within & mine).sum()),
                                "images": int(q.loc[mine & ~within, "eval_item_id"].nunique()),
                                "borderline": int(((q["degree"] == Review.BORDERLINE).to_numpy() & mine).sum())}


def review_view(ws: Workspace, hard: float, soft: float, filters: dict) -> tuple[QueueView, dict]:
    """(the queue filtered and ordered as the sidebar asks, the counts of the checks on show: pairs, decided,
    within one split, evaluation images they flag against training, borderline), kept
    until the filters, the thresholds or the decisions change: a key press that only moves on reuses it."""
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, (list, set, tuple)) else v) for k, v in filters.items()))
    return _review_view(str(ws.path), ws.workspace.encoder, hard, soft, _neighbors_stamp(ws), ws.workspace.stamp("items"),
                        decisions_stamp(ws), frozen)


@st.cache_resource(show_spinner=False, max_entries=4)
def _rows_by_eval(path: str, encoder: str, hard: float, soft: float, stamp: tuple, items_stamp: tuple) -> dict:
    q = _queue(path, encoder, hard, soft, stamp, items_stamp)
    return q.groupby("eval_item_id", sort=False, observed=True).indices


def neighbours_of(ws: Workspace, hard: float, soft: float, queue: pd.DataFrame, eval_item_id: str) -> pd.DataFrame:
    """The queue's rows of one evaluation image (`queue` is `queue(ws, hard, soft)`: the same rows in the same
    order), found through an index instead of a scan of every pair."""
    rows = _rows_by_eval(str(ws.path), ws.workspace.encoder, hard, soft, _neighbors_stamp(ws), ws.workspace.stamp("items"))
    return queue.iloc[rows.get(eval_item_id, [])]


@st.cache_data(show_spinner=False, max_entries=8)
def _rates(path: str, encoder: str, hard: float, soft: float, stamp: tuple, dstamp: tuple, auto_only: bool,
           other: tuple) -> pd.DataFrame:
    return Project.open(path).checks.rates(hard=hard, soft=soft, use_decisions=not auto_only,
                                          pairs=_pairs(path, encoder, stamp))


def _groups_stamp(ws: Workspace) -> tuple:
    return ws.workspace.stamp("items"), ws.workspace.stamp("config"), ws.workspace.stamp("groups")


@st.cache_data(show_spinner=False, max_entries=16)
def _flagged_items(path: str, check: str, hard: float, soft: float, stamp: tuple, dstamp: tuple, other: tuple) -> set:
    return set(Project.open(path).checks.findings(check, hard=hard, soft=soft)["eval_item_id"].astype(str))


def flagged_items(ws: Workspace, check: str, hard: float, soft: float) -> set:
    """The evaluation items a check flags (at soft, decisions applied), recomputed when its inputs change."""
    return _flagged_items(str(ws.path), check, hard, soft, _neighbors_stamp(ws), decisions_stamp(ws),
                          _groups_stamp(ws))


def rates(ws: Workspace, hard: float, soft: float, auto_only: bool = False) -> pd.DataFrame:
    """Rates of every check with rates (similarity, and group and temporal where the workspace has them)."""
    return _rates(str(ws.path), ws.workspace.encoder, hard, soft, _neighbors_stamp(ws), decisions_stamp(ws), auto_only,
                  _groups_stamp(ws))


@st.cache_data(show_spinner=False, max_entries=8)
def _export_views(path: str, split: str, policy, stamp: tuple, dstamp: tuple, other: tuple):
    return Project.open(path).exports.preview_and_plan(split, policy)


def export_views(ws: Workspace, split: str, policy) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(what each policy removes, the plan under `policy`) for the Export page, recomputed only when the pairs,
    the decisions, the thresholds, the groups or the policy change (a page switch or a page of the removed list
    does not)."""
    return _export_views(str(ws.path), split, policy, _neighbors_stamp(ws), decisions_stamp(ws), _groups_stamp(ws))


@st.cache_data(show_spinner=False, max_entries=512)
def _image(uri: str, row: int, roots: tuple[str, ...], stamp: tuple, _reader=None):
    """Decoded RGB image of an item, served only from inside a registered dataset root (`_reader`, not part of the
    key: the workspace's, which keeps the containers it opened)."""
    return Images.read(uri, row, Images.root_of(uri, roots), reader=_reader)


def item_image(ws: Workspace, item: pd.Series):
    """(PIL image or None, reason) for one item row."""
    if ws.workspace.datasets.get(item["dataset"]) and ws.workspace.datasets[item["dataset"]].format == "embeddings":
        return None, Images.NO_PIXELS
    roots = tuple(str(r) for r in ws.workspace.dataset_roots())
    return _image(str(item["uri"]), int(item["row"]), roots, ws.workspace.stamp("source", item["uri"]),
                  ws.workspace.sources)


INLINE_BYTES = 600_000  # images up to this size travel inside the page's message (no second request)


@st.cache_data(show_spinner=False, max_entries=256)
def _display(uri: str, row: int, roots: tuple[str, ...], stamp: tuple, factor: int, _reader=None):
    """(data URI or PIL image, width in pixels, reason) of an item enlarged `factor` times pixel by pixel."""
    import base64
    import io

    img, reason = _image(uri, row, roots, stamp, _reader)
    if img is None:
        return None, 0, reason
    if factor > 1:
        img = img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    small = factor > 1 or max(img.size) <= 256  # enlarged or small: lossless, every pixel as it is
    rgb = img if img.mode in ("RGB", "L") else img.convert("RGB")
    rgb.save(buf, format="PNG" if small else "JPEG", **({"compress_level": 1} if small else {"quality": 92}))
    if buf.tell() > INLINE_BYTES:
        return img, img.width, None  # large: served as a media file by Streamlit
    mime = "image/png" if small else "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode(), img.width, None


def display_image(ws: Workspace, item: pd.Series, factor: int):
    """(image to show, its width, reason when there is none): a data URI for all but large images, so the picture
    arrives with the page's message instead of in a request of its own after it (the review loop's next pair is
    on screen one round trip sooner)."""
    if ws.workspace.datasets.get(item["dataset"]) and ws.workspace.datasets[item["dataset"]].format == "embeddings":
        return None, 0, Images.NO_PIXELS
    roots = tuple(str(r) for r in ws.workspace.dataset_roots())
    return _display(str(item["uri"]), int(item["row"]), roots, ws.workspace.stamp("source", item["uri"]), int(factor),
                    ws.workspace.sources)


def _thumbnail(ws: Workspace, uri: str, row: int, roots: tuple[str, ...], stamp: tuple, side: int) -> str | None:
    """Kept in the workspace's caches, not st.cache_data: the review strip asks for 16 thumbnails per key press,
    and st.cache_data's hashing of the arguments cost about 1 ms each."""
    return ws.workspace.cache("thumbnails", (uri, row, roots, stamp, side),
                    lambda: _make_thumbnail(uri, row, roots, stamp, side, ws.workspace.sources), entries=8192)


def _make_thumbnail(uri: str, row: int, roots: tuple[str, ...], stamp: tuple, side: int, reader=None) -> str | None:
    import base64
    import io

    img, _ = _image(uri, row, roots, stamp, reader)
    if img is None:
        return None
    img = img.convert("RGB")
    img.thumbnail((side, side), Image.Resampling.NEAREST if max(img.size) <= side else Image.Resampling.LANCZOS)
    if max(img.size) < side:  # small images (CIFAR) enlarged pixel by pixel
        f = max(1, side // max(img.size))
        img = img.resize((img.width * f, img.height * f), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def thumbnails(ws: Workspace, ids: list[str], side: int = 56) -> list[str | None]:
    """Thumbnails (data URIs) of several items (the review strip's pairs), the workspace read once for all."""
    table = items(ws)
    roots = tuple(str(r) for r in ws.workspace.dataset_roots())
    no_pixels = {name for name, d in ws.workspace.datasets.items() if d.format == "embeddings"}
    out = []
    for i in ids:
        if i not in table.index or table.at[i, "dataset"] in no_pixels:
            out.append(None)
            continue
        uri, row = str(table.at[i, "uri"]), int(table.at[i, "row"])
        out.append(_thumbnail(ws, uri, row, roots, ws.workspace.stamp("source", uri), side))
    return out


def thumbnail(ws: Workspace, item: pd.Series, side: int = 96) -> str | None:
    """A small image of an item as a data URI (for image columns of tables), or None when it has no pixels."""
    if ws.workspace.datasets.get(item["dataset"]) and ws.workspace.datasets[item["dataset"]].format == "embeddings":
        return None
    roots = tuple(str(r) for r in ws.workspace.dataset_roots())
    return _thumbnail(ws, str(item["uri"]), int(item["row"]), roots, ws.workspace.stamp("source", item["uri"]), side)


def clear_decision_caches() -> None:
    _decisions.clear()
    _rates.clear()
    _groups.clear()


# ---- calibration and threshold views -------------------------------------------------------------------
def calibration_stamp(ws: Workspace, encoder: str) -> tuple:
    return ws.workspace.stamp("calibration", encoder)


@st.cache_resource(show_spinner=False, max_entries=4)
def _calibration_views(path: str, encoder: str, stamp: tuple):
    """(result, OperatingPoints, ROC curves per family, histogram) of a stored calibration, or None."""
    return Project.open(path).scores.calibration_views(encoder)


@st.cache_resource(show_spinner=False, max_entries=4)
def _fused_views(path: str, encoder: str, stamp: tuple):
    """(model, OperatingPoints, ROC curves, histogram) of the fused score on its fitting pairs, or None; the raw
    similarity's ROC on the same pairs rides along as "raw similarity (same pairs)"."""
    return Project.open(path).scores.fused_views(encoder)


RAW_ON_FUSED = Scores.RAW_ON_FUSED


def fused_views(ws: Workspace, encoder: str):
    return _fused_views(str(ws.path), encoder, ws.workspace.stamp("fused", encoder))


def calibration_views(ws: Workspace, encoder: str):
    return _calibration_views(str(ws.path), encoder, calibration_stamp(ws, encoder))


@st.cache_resource(show_spinner=False, max_entries=4)
def _decision_views(path: str, encoder: str, stamp: tuple, dstamp: tuple):
    return Scores.decision_views(_pairs(path, encoder, stamp), _decisions(path, dstamp))


def decision_views(ws: Workspace):
    """Operating points and ROC from curator decisions (None under 20 decided pairs)."""
    return _decision_views(str(ws.path), ws.workspace.encoder, _neighbors_stamp(ws), decisions_stamp(ws))


@st.cache_resource(show_spinner=False, max_entries=4)
def _best(path: str, encoder: str, stamp: tuple, items_stamp: tuple):
    return Project.open(path).scores.best(_pairs(path, encoder, stamp))


def best_scores(ws: Workspace) -> pd.DataFrame:
    """Per evaluation item, its highest score in force against any training source (`train`) and its own split."""
    return _best(str(ws.path), ws.workspace.encoder, _neighbors_stamp(ws), ws.workspace.stamp("items"))[0]


def flagged_counts(ws: Workspace, hard: float, soft: float) -> pd.DataFrame:
    """Evaluation items flagged per split at these thresholds (automatic flags; fast per slider move)."""
    best, totals = _best(str(ws.path), ws.workspace.encoder, _neighbors_stamp(ws), ws.workspace.stamp("items"))
    return Scores.counts_at(best, hard, soft, totals)


def impact(ws: Workspace, request: ImpactRequest):
    """`Project.impact` for the Impact page's request, recomputed when neighbours or decisions change."""
    return _impact(str(ws.path), request, stamp=_neighbors_stamp(ws), dstamp=decisions_stamp(ws))


@st.cache_data(show_spinner="Measuring…", max_entries=8)
def _impact(path: str, request: ImpactRequest, stamp: tuple, dstamp: tuple):
    return Project.open(path).impact(request)


@st.cache_data(show_spinner=False, ttl=300)
def encoders() -> list[dict]:
    """The encoder registry with availability (weights on disk can change: refreshed every 5 minutes)."""
    return list_encoders()


def _session_cached(ws: Workspace, key, compute, title: str):
    """A result kept in this browser session (it survives page switches) until its inputs' stamps change, computed
    in a server job (`ui.jobs`: it goes on through a page switch or a reload, with its bar and Stop button here and
    a line in the sidebar); the page stops under the bar until the job ends, which draws it again. While a job of
    the kind measures other inputs, it is shown, to be waited for or stopped. `key()` names the inputs with their
    stamps; it is taken again when the job ends (a measurement that embeds images changes the stamp it read)."""
    store = st.session_state.setdefault("_results", {})
    now = key()
    if now in store:
        return store[now]
    kind, path = now[0], str(ws.path)
    job, again = jobs.latest(kind, path), False
    # the inputs it measured: its key when it started, taken again when it ended (the work returns it beside its result)
    mine = job is not None and (job.result[1] if job.finished and job.result else job.key) == now
    if mine and job.finished and not (job.error or job.stopped):
        for old in [k for k in store if k[0] == kind]:  # one result per kind at a time: they hold per-image tables
            del store[old]
        store[now] = job.result[0]
        return job.result[0]
    if mine and job.finished:  # stopped or failed: said, and started again only when asked
        job_ui.outcome(kind, path)
        again = st.button("Measure again", key=f"{kind}_again")
    if job is None or job.finished and (not mine or again):
        if job_ui.start(kind, ws, title, lambda progress: (compute(progress), key()), page="pages/6_Coverage.py",
                        resumes=False, key=now) is not None:
            st.rerun()
    elif job.running and not mine:
        st.info(f"{job.title} is still running: measure these sets once it has ended, or press its Stop button.")
    job_ui.bar(kind, path, stop_key=f"{kind}_stop")
    st.stop()


def _embeddings_stamp(ws: Workspace) -> tuple:
    return ws.workspace.stamp("embeddings")


def coverage(ws: Workspace, a, b, k: int, n_boot: int):
    """`Project.audits.coverage`, kept while the item table and the embeddings are unchanged."""
    path, actor = str(ws.path), ws.team.acting_user
    return _session_cached(ws, lambda: ("coverage", path, a, b, k, n_boot, ws.workspace.stamp("items"),
                                        _embeddings_stamp(ws)),
                           lambda progress: Project.open(path, actor=actor).audits.coverage(
                               a, b, k=k, bootstrap=n_boot, progress=progress),
                           f"Coverage of {as_code(b, 120)} against {as_code(a, 120)}")


def spectra(ws: Workspace, a, b):
    path, actor = str(ws.path), ws.team.acting_user
    return _session_cached(ws, lambda: ("spectra", path, a, b, ws.workspace.stamp("items")),
                           lambda progress: Project.open(path, actor=actor).audits.spectra(a, b, progress=progress),
                           f"Spectral fingerprint of {as_code(b, 120)} against {as_code(a, 120)}")


@st.cache_resource(show_spinner="Linking groups…", max_entries=4)
def _groups(path: str, stamp: tuple, dstamp: tuple, other: tuple):
    return Project.open(path).groups(in_force=True, decisions=_decisions(path, dstamp))  # the cached read


def groups(ws: Workspace):
    """Explicit, recovered and confirmed groups (read-only), recomputed when their inputs change."""
    return _groups(str(ws.path), _neighbors_stamp(ws), decisions_stamp(ws), _groups_stamp(ws))


@st.cache_data(show_spinner=False, max_entries=8)
def _shortcut_audits(path: str, stamp: tuple) -> dict:
    return Project.open(path).audits.shortcut_results()


def shortcut_audits(ws: Workspace) -> dict:
    return _shortcut_audits(str(ws.path), ws.workspace.stamp("shortcuts"))


def encoder_defaults(name: str) -> tuple[float, float] | None:
    """The encoder's measured (hard, soft), or None when nobody calibrated it."""
    row = next((r for r in encoders() if r["name"] == name), None)
    return (row["hard"], row["soft"]) if row and row.get("calibrated") else None


def decided_pairs(ws: Workspace) -> int:
    d = decisions(ws)
    return int(d["decision"].isin(["hard", "soft", "not_leak"]).sum())
