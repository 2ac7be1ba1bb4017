"""The curator decision store (review.sqlite): append-only history, WAL, one short connection per operation."""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from leakcore.errors import ReviewStoreError, UnknownName
from leakcore.leakage import WITHIN, both_ways, degree_of, one_way
from leakcore.schema import Decision

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
DECISIONS = tuple(d.value for d in Decision)
DECISION_LABELS = {d.value: d.label for d in Decision}

_MIGRATIONS = {
    1: [
        """CREATE TABLE IF NOT EXISTS decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            eval_item_id TEXT NOT NULL,
            train_item_id TEXT NOT NULL,
            decision TEXT NOT NULL CHECK (decision IN ('hard', 'soft', 'not_leak', 'unsure')),
            note TEXT,
            reviewer TEXT NOT NULL,
            created_at TEXT NOT NULL,
            undone_at TEXT
        )""",
        "CREATE INDEX IF NOT EXISTS decisions_pair ON decisions (eval_item_id, train_item_id, id)",
    ],
    2: [  # the group decision "same_source": SQLite cannot alter a CHECK, so the table is rebuilt, rows kept
        """CREATE TABLE decisions_v2 (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            eval_item_id TEXT NOT NULL,
            train_item_id TEXT NOT NULL,
            decision TEXT NOT NULL CHECK (decision IN ('hard', 'soft', 'not_leak', 'unsure', 'same_source')),
            note TEXT,
            reviewer TEXT NOT NULL,
            created_at TEXT NOT NULL,
            undone_at TEXT
        )""",
        "INSERT INTO decisions_v2 SELECT id, eval_item_id, train_item_id, decision, note, reviewer, created_at, undone_at "
        "FROM decisions",
        "DROP TABLE decisions",
        "ALTER TABLE decisions_v2 RENAME TO decisions",
        "CREATE INDEX IF NOT EXISTS decisions_pair ON decisions (eval_item_id, train_item_id, id)",
    ],
}
# One act of several decisions (a group's K, the grid's ticked pairs) shares `act` (its first row's id), so that an
# undo takes the act back whole (it took back one link of a group's four). The column is added where missing
# (`_prepare`), not by a schema version: a store of version 2 with it still opens in a dashboard of the version before
# it (a new user's running dashboard refused the store once a newer `leakcore report` had migrated it to version 3).
ACT_COLUMN = "act"


def _db_path(ws_or_path) -> Path:
    return Path(getattr(ws_or_path, "review_db", ws_or_path))


@contextlib.contextmanager
def connect(ws_or_path, *, write: bool = True) -> Iterator[sqlite3.Connection]:
    """A short-lived connection with the schema migrated, in one transaction; commits on success. A writer's
    transaction takes the write lock at once (IMMEDIATE: two writers never deadlock upgrading a read); a reader's
    (`write=False`) reads one snapshot of the store and, in WAL mode, waits for no writer and no other reader (every
    read took the write lock before: on a team server each page's reads queued behind every curator's decision)."""
    path = _db_path(ws_or_path)
    conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
    try:
        _retry_while_locked(lambda: _prepare(conn))
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()


_BUSY_TIMEOUT_S = 30.0


class ReviewerMissing(ReviewStoreError, ValueError):
    """A decision without a reviewer's name."""


def _retry_while_locked(step, timeout_s: float = _BUSY_TIMEOUT_S):
    """Run `step`, retrying while SQLite answers "locked"/"busy" without waiting on its own busy handler.

    SQLite skips the busy handler where waiting could deadlock, e.g. when two processes create the file and
    switch it to WAL at the same moment; only setup goes through here, a transaction begun IMMEDIATE waits itself.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return step()
        except sqlite3.OperationalError as e:
            if not any(w in str(e) for w in ("locked", "busy")) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


def _prepare(conn: sqlite3.Connection) -> None:
    """WAL (persistent, so set once per file) and the schema; safe to run again after a failed try."""
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode=WAL")
    _migrate(conn)
    if ACT_COLUMN not in {r[1] for r in conn.execute("PRAGMA table_info(decisions)")}:
        try:
            conn.execute(f"ALTER TABLE decisions ADD COLUMN {ACT_COLUMN} INTEGER")
        except sqlite3.OperationalError as e:  # another process added it meanwhile
            if "duplicate column" not in str(e):
                raise


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise ReviewStoreError(f"review.sqlite has schema {version}, but this leakcore reads up to {SCHEMA_VERSION}: "
                               "upgrade leakcore to open it (the file is left as it is)")
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have migrated meanwhile
        for v in range(version + 1, SCHEMA_VERSION + 1):
            for stmt in _MIGRATIONS[v]:
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {v}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _check_reviewer(reviewer: str | None) -> None:
    if not reviewer or not reviewer.strip():
        raise ReviewerMissing("a decision needs a reviewer name", cli="pass --reviewer NAME",
                              page="Type your name in the Reviewer field first")


def decide(ws, eval_item_id: str, train_item_id: str, decision: str, *, reviewer: str, note: str | None = None) -> int:
    """Record a decision on one pair; a later decision supersedes, never erases. Returns its id."""
    decision = Decision.parse(decision)
    _check_reviewer(reviewer)
    with connect(ws) as conn:
        cur = conn.execute(
            "INSERT INTO decisions (eval_item_id, train_item_id, decision, note, reviewer, created_at) VALUES (?,?,?,?,?,?)",
            (eval_item_id, train_item_id, decision, note or None, reviewer.strip(), _now()),
        )
        return int(cur.lastrowid)


def decide_many(ws, pairs: list[tuple[str, str]], decision: str, *, reviewer: str, note: str | None = None) -> int:
    """One decision for several pairs (the grid mode); returns how many were written."""
    decision = Decision.parse(decision)
    _check_reviewer(reviewer)
    now = _now()
    with connect(ws) as conn:
        conn.executemany(
            "INSERT INTO decisions (eval_item_id, train_item_id, decision, note, reviewer, created_at) VALUES (?,?,?,?,?,?)",
            [(e, t, decision, note or None, reviewer.strip(), now) for e, t in pairs],
        )
        if len(pairs) > 1:  # one act: its rows are consecutive (the transaction holds the write lock)
            last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            first = last - len(pairs) + 1
            conn.execute("UPDATE decisions SET act = ? WHERE id BETWEEN ? AND ?", (first, first, last))
    return len(pairs)


_LAST_OF = ("SELECT id, eval_item_id, train_item_id, decision, act, note FROM decisions WHERE reviewer = ? AND undone_at IS NULL "
            "ORDER BY id DESC LIMIT 1")


def undoable(ws, reviewer: str) -> bool:
    """Whether `undo_last` has a decision of `reviewer`'s to take back (one short read: the Review page asks on
    every key press, where reading every decision in force cost 39 ms on a store of 5,000)."""
    if not _db_path(ws).exists():
        return False
    with connect(ws, write=False) as conn:
        return conn.execute(_LAST_OF, (reviewer,)).fetchone() is not None


def undo_last(ws, reviewer: str) -> dict | None:
    """Mark `reviewer`'s most recent live decision as undone, the whole act where it was one of several made at once
    (`decide_many`: a group's or the grid's); the previous decision of each pair applies again. Returns the pair
    undone (the act's last), its `note` and `pairs`, how many."""
    with connect(ws) as conn:
        row = conn.execute(_LAST_OF, (reviewer,)).fetchone()
        if row is None:
            return None
        if row[4] is None:
            conn.execute("UPDATE decisions SET undone_at = ? WHERE id = ?", (_now(), row[0]))
            n = 1
        else:
            n = conn.execute("UPDATE decisions SET undone_at = ? WHERE act = ? AND reviewer = ? AND undone_at IS NULL",
                             (_now(), row[4], reviewer)).rowcount
    return {"id": row[0], "eval_item_id": row[1], "train_item_id": row[2], "decision": row[3], "note": row[5],
            "pairs": int(n)}


_DECISION_COLUMNS = ["eval_item_id", "train_item_id", "decision", "note", "reviewer", "created_at"]
_IN_FORCE_OF = """SELECT {extra}d.eval_item_id, d.train_item_id, d.decision, d.note, d.reviewer, d.created_at
               FROM decisions d JOIN (
                   SELECT MAX(id) AS id FROM decisions WHERE undone_at IS NULL AND id > ?
                   GROUP BY eval_item_id, train_item_id
               ) m ON d.id = m.id ORDER BY d.id"""
_IN_FORCE = _IN_FORCE_OF.format(extra="")


_HISTORY = "id, eval_item_id, train_item_id, decision, note, reviewer, created_at, undone_at"  # as before `act`


def latest_decisions(ws) -> pd.DataFrame:
    """The decision in force per pair (latest live one) with reviewer, note and time."""
    if not _db_path(ws).exists():
        return pd.DataFrame(columns=_DECISION_COLUMNS)
    with connect(ws, write=False) as conn:
        return pd.read_sql_query(_IN_FORCE, conn, params=(0,))


@dataclass(frozen=True)
class DecisionsChange:
    """What a reader that saw the store up to decision `after` has to apply: `decisions` are the latest live
    decision per pair among the newer ones, and, where undos happened since the reader's count of them, the pair
    each undo touched with the decision in force on it now (none: every column but the pair's empty, state
    unreviewed); `last_id` and `undone` (how many decisions were ever undone) say where the store stands, so the
    next read asks only for what came after."""

    decisions: pd.DataFrame
    last_id: int
    undone: int


# every pair an undo touched, both ways round (a pair within a split is decided from either end, `both_ways`), with
# its live decision now; a way round without one comes first (id -1), so that the other way's decision wins
_UNDONE_IN_FORCE = """WITH touched(a, b) AS (
                          SELECT eval_item_id, train_item_id FROM decisions WHERE undone_at IS NOT NULL
                          UNION SELECT train_item_id, eval_item_id FROM decisions WHERE undone_at IS NOT NULL)
                      SELECT t.a AS eval_item_id, t.b AS train_item_id, d.decision, d.note, d.reviewer, d.created_at,
                             COALESCE(d.id, -1) AS id
                      FROM touched t LEFT JOIN decisions d ON d.id = (
                          SELECT MAX(id) FROM decisions
                          WHERE eval_item_id = t.a AND train_item_id = t.b AND undone_at IS NULL)"""


def decisions_after(ws, after: int = 0, undone: int | None = None) -> DecisionsChange:
    """The decisions in force made after decision id `after` (all of them for 0) and the store's position, read in
    one transaction. A review page that applies them to the queue it holds pays for the new decisions only, not
    for every decision ever made (SQLite's row fetch alone is about 2 ms per 1,000 decisions). With `undone` (the
    reader's count of undos), an undo since is read as the pairs undos touched, not as every decision again (on a
    store of 5,000 decisions and a queue of 190,000 pairs an undo cost 34 ms of reading and a rebuild of the
    queue's decisions)."""
    if not _db_path(ws).exists():
        return DecisionsChange(pd.DataFrame(columns=_DECISION_COLUMNS), 0, 0)
    with connect(ws, write=False) as conn:
        last, count = conn.execute(
            "SELECT COALESCE(MAX(id), 0), COUNT(undone_at) FROM decisions").fetchone()
        if after and undone is not None and count != undone:
            newer = pd.read_sql_query(_IN_FORCE_OF.format(extra="d.id, "), conn, params=(int(after),))
            touched = pd.read_sql_query(_UNDONE_IN_FORCE, conn)
            both = pd.concat([touched, newer], ignore_index=True).sort_values("id", kind="stable")
            frame = both.drop_duplicates(["eval_item_id", "train_item_id"], keep="last")[_DECISION_COLUMNS]
            frame = frame.reset_index(drop=True)
        elif last > after:
            frame = pd.read_sql_query(_IN_FORCE, conn, params=(int(after),))
        else:
            frame = pd.DataFrame(columns=_DECISION_COLUMNS)
    return DecisionsChange(frame, int(last), int(count))


def history(ws, eval_item_id: str | None = None) -> pd.DataFrame:
    """Every decision ever made (undone ones included), oldest first."""
    if not _db_path(ws).exists():
        return pd.DataFrame(columns=["id", "eval_item_id", "train_item_id", "decision", "note", "reviewer", "created_at", "undone_at"])
    with connect(ws, write=False) as conn:
        if eval_item_id is None:
            return pd.read_sql_query(f"SELECT {_HISTORY} FROM decisions ORDER BY id", conn)
        return pd.read_sql_query(f"SELECT {_HISTORY} FROM decisions WHERE eval_item_id = ? ORDER BY id", conn,
                                 params=(eval_item_id,))


def disagreements(ws, pair: tuple[str, str] | None = None) -> pd.DataFrame:
    """Pairs that curators decided differently: per pair (either way round, as `leakage.both_ways` reads a decision),
    each reviewer's latest live decision where at least two reviewers' differ, oldest first; columns eval_item_id,
    train_item_id, reviewer, decision, note, created_at. The latest is the one in force; the others were silently
    replaced (two curators deciding one queue at once: soft by one, hard a second later by the other, and only
    "hard by cora" was to be seen anywhere). `pair`: that pair's only."""
    cols = ["eval_item_id", "train_item_id", "reviewer", "decision", "note", "created_at"]
    if not _db_path(ws).exists():
        return pd.DataFrame(columns=cols)
    where, params = "", ()
    if pair is not None:
        where, params = ("AND ((eval_item_id = ? AND train_item_id = ?) OR (eval_item_id = ? AND train_item_id = ?))",
                         (pair[0], pair[1], pair[1], pair[0]))
    with connect(ws, write=False) as conn:
        live = pd.read_sql_query(f"SELECT id, eval_item_id, train_item_id, decision, note, reviewer, created_at FROM "
                                 f"decisions WHERE undone_at IS NULL {where} ORDER BY id", conn, params=params)
    if live.empty:
        return pd.DataFrame(columns=cols)
    a, b = live["eval_item_id"].astype(str), live["train_item_id"].astype(str)
    live["_key"] = np.where(a <= b, a + "\0" + b, b + "\0" + a)  # one key for both ways round
    mine = live.drop_duplicates(["_key", "reviewer"], keep="last")  # each reviewer's latest on the pair
    split = mine.groupby("_key")["decision"].transform("nunique") > 1
    return mine[split].sort_values("id", kind="stable")[cols].reset_index(drop=True)


# ---- the review queue ------------------------------------------------------------------------------
BORDERLINE = "borderline"
STATES = ("unreviewed", "confirmed", "rejected", "unsure")
_STATE_OF = {"hard": "confirmed", "soft": "confirmed", "not_leak": "rejected", "unsure": "unsure",
             "same_source": "confirmed"}
SORTS = ("similarity", "closeness to a threshold", "model uncertainty")
CATEGORICAL = ("check", "eval_split", "train_split", "source", "degree", "label_agreement")  # filter columns
UNCERTAINTY_SORT = SORTS[2]  # only with the fused score: P(same photograph) nearest 0.5 first


def build_queue(pairs: pd.DataFrame, items: pd.DataFrame, hard: float, soft: float, *, margin: float = 0.05,
                check: str = "", confirmed: pd.DataFrame | None = None) -> pd.DataFrame:
    """Flagged pairs (similarity >= soft - margin) with degree, labels and label agreement, ordered by
    similarity (then id), each row naming the `check` that queues it (`Check.review_rows` passes its name);
    filter columns are categorical so that filtering 100,000 pairs stays fast. `confirmed`: decisions that confirm
    a leak (hard, soft, same source): their pairs are queued whatever their score, with the decision's degree (a
    confirmed leak counts as one everywhere else; after soft was raised it left the queue, and its link opened
    nothing)."""
    keep = (pairs["similarity"] >= soft - margin).to_numpy().copy()
    by_decision = None
    if confirmed is not None and len(confirmed):
        pairs = pairs.reset_index(drop=True)  # positions, as `keep` counts them
        c = both_ways(confirmed)
        said = pd.Series(c["decision"].to_numpy(), index=(c["eval_item_id"] + "\t" + c["train_item_id"]).to_numpy())
        said = said[~said.index.duplicated(keep="last")]
        near = np.flatnonzero(~keep & pairs["eval_item_id"].isin(set(c["eval_item_id"])).to_numpy())
        keys = pairs["eval_item_id"].iloc[near] + "\t" + pairs["train_item_id"].iloc[near]
        by_decision = pd.Series(keys.map(said).to_numpy(), index=near).dropna()
        keep[by_decision.index.to_numpy()] = True
    q = pairs[keep]
    q = q[one_way(q)].copy()  # a pair within a split once, not once from each end
    q["degree"] = degree_of(q["similarity"], hard, soft)
    if by_decision is not None and len(by_decision):
        below = by_decision.reindex(q.index).dropna()
        q.loc[below.index, "degree"] = np.where(below.to_numpy() == "hard", "hard", "soft")  # same source: soft
    q.loc[q["degree"] == "none", "degree"] = BORDERLINE
    q["source"] = q["train_split"].where(~q["within"], WITHIN)
    labels = (items["label"] if items.index.name == "item_id" else items.set_index("item_id")["label"])
    q["eval_label"] = q["eval_item_id"].map(labels)
    q["train_label"] = q["train_item_id"].map(labels)
    known = q["eval_label"].notna() & q["train_label"].notna()
    q["label_agreement"] = "unknown"
    q.loc[known & (q["eval_label"] == q["train_label"]), "label_agreement"] = "same"
    q.loc[known & (q["eval_label"] != q["train_label"]), "label_agreement"] = "different"
    q["closeness"] = np.minimum(np.abs(q["similarity"] - hard), np.abs(q["similarity"] - soft))
    # the fused model's uncertainty (|P(same) - 0.5|, smallest first teaches it most); NaN with the raw score
    q["uncertainty"] = np.abs(q["fused"] - 0.5) if "fused" in q.columns else np.nan
    q["pair"] = q["eval_item_id"] + "\t" + q["train_item_id"]
    q["check"] = check
    for col in CATEGORICAL:
        q[col] = q[col].astype("category")
    # ties in the raw similarity's order (equal scores: an exact copy's, or two decided pairs the model scores alike)
    order = ["similarity"] + (["raw_similarity"] if "raw_similarity" in q.columns else []) + ["eval_item_id"]
    q = q.sort_values(order, ascending=[False] * (len(order) - 1) + [True], kind="stable")
    return q.reset_index(drop=True)


def pair_lookup(queue: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    """(code per queue row, unique pair keys): built once per queue, it makes `with_decisions` a lookup of
    the few decided pairs rather than a hash of every queued pair on each decision."""
    codes, uniques = pd.factorize(queue["pair"])
    uniques = pd.Index(uniques)
    uniques.get_indexer(uniques[:1])  # build the hash table now, while the queue is being cached
    return codes, uniques


def with_decisions(queue: pd.DataFrame, decisions: pd.DataFrame,
                   lookup: tuple[np.ndarray, pd.Index] | None = None, *, over: pd.DataFrame | None = None
                   ) -> pd.DataFrame:
    """Queue plus `decision`, `state`, `note`, `reviewer` from the decisions in force (same order).
    `lookup` is `pair_lookup(queue)`, passed in when the caller keeps it between calls. With `over` (an earlier
    result of this function for the same queue), `decisions` are only the newer ones (`decisions_after`): the
    pairs they name change, every other row keeps what `over` says, and `over` itself is left as it is."""
    codes, uniques = lookup if lookup is not None else pair_lookup(queue)
    decisions = both_ways(decisions)  # a pair within a split is queued from one end; decided from either
    keys = (decisions["eval_item_id"] + "\t" + decisions["train_item_id"]).to_numpy()
    where = uniques.get_indexer(keys)  # decision keys are unique: one in force per pair
    decision_of = np.full(len(uniques), -1, dtype=np.int64)  # row of `decisions` per unique pair, -1 for none
    decision_of[where[where >= 0]] = np.flatnonzero(where >= 0)
    pos = decision_of[codes]
    state_code = {d: STATES.index(name) for d, name in _STATE_OF.items()}
    # one code per decision row plus a last "unreviewed" that position -1 picks
    codes_of = np.append(decisions["decision"].map(state_code).fillna(0).to_numpy(dtype=np.int8), np.int8(0))
    if over is not None:
        rows = np.flatnonzero(pos >= 0)
        out = over.copy(deep=False)
        for c in ("decision", "note", "reviewer"):
            column = over[c].array.copy()
            column[rows] = decisions[c].astype("str").array.take(pos[rows])
            out[c] = column
        state = over["state"].cat.codes.to_numpy().copy()
        state[rows] = codes_of[pos[rows]]
        out["state"] = pd.Categorical.from_codes(state, categories=list(STATES))
        return out
    out = queue.copy(deep=False)
    for c in ("decision", "note", "reviewer"):
        out[c] = decisions[c].astype("str").array.take(pos, allow_fill=True)  # a string array, no re-inference
    out["state"] = pd.Categorical.from_codes(codes_of[pos], categories=list(STATES))
    return out


def filter_rows(
    queue: pd.DataFrame,
    *,
    eval_splits=None,
    sources=None,
    degrees=None,
    states=None,
    label_agreement: str = "any",
    sort: str = "similarity",
    checks=None,
) -> np.ndarray:
    """Positions of the queue's rows that pass the review page's filters (None or empty = no filter), in the
    order asked for: the queue itself is not copied (`filter_queue` takes the rows)."""
    mask = np.ones(len(queue), dtype=bool)
    for col, values in (("eval_split", eval_splits), ("source", sources), ("degree", degrees), ("state", states),
                        ("check", checks)):
        if values:
            mask &= queue[col].isin(list(values)).to_numpy()
    if label_agreement in ("same", "different"):
        mask &= (queue["label_agreement"] == label_agreement).to_numpy()
    elif label_agreement != "any":
        raise UnknownName(f"label_agreement must be any, same or different, got {label_agreement!r}")
    rows = np.flatnonzero(mask)
    if sort == "similarity":  # build_queue already ordered it
        return rows
    if sort == "closeness to a threshold":
        return rows[np.argsort(queue["closeness"].to_numpy()[rows], kind="stable")]
    if sort == UNCERTAINTY_SORT:
        if "uncertainty" not in queue.columns or not queue["uncertainty"].iloc[rows].notna().any():
            raise UnknownName("ordering by the model's uncertainty needs the fused score",
                              cli="fit it with `leakcore verify WS --use fused`",
                              page="Fit the fused score (leakcore verify) to order by its uncertainty")
        return rows[np.argsort(queue["uncertainty"].to_numpy()[rows], kind="stable")]
    raise UnknownName(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")


def filter_queue(queue: pd.DataFrame, **filters) -> pd.DataFrame:
    """Apply the review page's filters (see `filter_rows`) and order the queue."""
    return queue.iloc[filter_rows(queue, **filters)]
