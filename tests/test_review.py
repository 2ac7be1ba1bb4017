"""The decision store: append-only history, undo, schema guard, and two curators writing at once."""
import sqlite3
import subprocess
import sys

import pytest

from leakcore import review
from leakcore.project import Workspace


@pytest.fixture
def ws(tmp_path):
    return Workspace.create(tmp_path / "w")


def test_later_decision_supersedes_and_history_keeps_all(ws):
    review.decide(ws, "e1", "t1", "hard", reviewer="ann")
    review.decide(ws, "e1", "t1", "not_leak", reviewer="bob", note="different shot")
    latest = review.latest_decisions(ws)
    assert list(latest["decision"]) == ["not_leak"] and list(latest["reviewer"]) == ["bob"]
    assert list(latest["note"]) == ["different shot"]
    assert list(review.history(ws)["decision"]) == ["hard", "not_leak"]


def test_pairs_two_reviewers_decided_differently_are_listed_with_each_ones_latest(ws):
    """Two curators on one queue: soft by one, hard a second later by the other, and only "hard by cora" showed
    anywhere. Each reviewer's latest counts (a change of mind is not a disagreement), either way round, undone ones
    not at all."""
    review.decide(ws, "e1", "t1", "soft", reviewer="carl")
    review.decide(ws, "e1", "t1", "hard", reviewer="cora", note="same shot")
    review.decide(ws, "e2", "t2", "hard", reviewer="carl")
    review.decide(ws, "e2", "t2", "not_leak", reviewer="carl")  # his own mind changed: no disagreement
    review.decide(ws, "a", "b", "hard", reviewer="ann")
    review.decide(ws, "b", "a", "not_leak", reviewer="bob")  # the other way round: the same pair
    review.decide(ws, "e3", "t3", "hard", reviewer="ann")
    review.decide(ws, "e3", "t3", "soft", reviewer="bob")
    review.undo_last(ws, "bob")  # undone: no disagreement left on e3
    split = review.disagreements(ws)
    assert list(zip(split["reviewer"], split["decision"])) == [("carl", "soft"), ("cora", "hard"), ("ann", "hard"),
                                                               ("bob", "not_leak")]
    one = review.disagreements(ws, ("t1", "e1"))
    assert list(one["reviewer"]) == ["carl", "cora"] and one["note"].iloc[1] == "same shot"
    assert review.disagreements(ws, ("e2", "t2")).empty


def test_undo_restores_the_previous_decision_per_reviewer(ws):
    review.decide(ws, "e1", "t1", "soft", reviewer="ann")
    review.decide(ws, "e1", "t1", "hard", reviewer="ann")
    review.decide(ws, "e2", "t2", "unsure", reviewer="bob")
    assert review.undo_last(ws, "ann")["decision"] == "hard"
    latest = review.latest_decisions(ws).set_index("eval_item_id")
    assert latest.loc["e1", "decision"] == "soft" and latest.loc["e2", "decision"] == "unsure"
    hist = review.history(ws)
    assert len(hist) == 3 and hist["undone_at"].notna().sum() == 1  # undone, not erased
    review.undo_last(ws, "ann")
    assert review.undo_last(ws, "ann") is None


def test_undo_takes_back_a_decision_made_on_several_pairs_at_once_whole(ws):
    """A group's K records a decision on each of its links (the grid its ticked pairs): Z took back one of them."""
    review.decide(ws, "e0", "t0", "hard", reviewer="ann")
    assert review.decide_many(ws, [("e1", "t1"), ("e2", "t2"), ("e3", "t3")], "same_source", reviewer="ann") == 3
    review.decide_many(ws, [("e4", "t4"), ("e5", "t5")], "soft", reviewer="bob")  # another reviewer's act stays
    undone = review.undo_last(ws, "ann")
    assert undone["decision"] == "same_source" and undone["pairs"] == 3
    assert set(review.latest_decisions(ws)["eval_item_id"]) == {"e0", "e4", "e5"}
    assert review.undo_last(ws, "ann")["pairs"] == 1  # then the single decision before it
    assert review.undo_last(ws, "bob")["pairs"] == 2 and review.latest_decisions(ws).empty
    assert list(review.history(ws).columns) == ["id", "eval_item_id", "train_item_id", "decision", "note", "reviewer",
                                                "created_at", "undone_at"]


def test_a_store_of_schema_2_is_migrated_and_keeps_its_decisions(ws):
    import sqlite3

    path = review._db_path(ws)
    conn = sqlite3.connect(path)
    for v in (1, 2):
        for stmt in review._MIGRATIONS[v]:
            conn.execute(stmt)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO decisions (eval_item_id, train_item_id, decision, note, reviewer, created_at) "
                 "VALUES ('e', 't', 'hard', NULL, 'ann', '2026-01-01T00:00:00.000+00:00')")
    conn.commit()
    conn.close()
    assert list(review.latest_decisions(ws)["decision"]) == ["hard"]
    assert review.undo_last(ws, "ann")["pairs"] == 1
    conn = sqlite3.connect(path)  # still version 2: a dashboard of the version before opens it
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    assert "act" in {r[1] for r in conn.execute("PRAGMA table_info(decisions)")}
    conn.close()


def test_bad_input_is_refused(ws):
    with pytest.raises(ValueError, match="decision must be one of"):
        review.decide(ws, "e", "t", "maybe", reviewer="ann")
    with pytest.raises(ValueError, match="reviewer"):
        review.decide(ws, "e", "t", "hard", reviewer=" ")


def test_newer_schema_is_refused(ws):
    review.decide(ws, "e", "t", "hard", reviewer="ann")
    with sqlite3.connect(ws.review_db) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(RuntimeError, match="schema 99"):
        review.latest_decisions(ws)


WRITER = """
import sys
from pathlib import Path
from leakcore import review
from leakcore.project import Workspace
ws, name, n, gate, crowd = Workspace.open(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5])
(gate / name).touch()
while len(list(gate.iterdir())) < crowd:  # all start together, so they also race to create the file
    pass
for i in range(n):
    review.decide(ws, f"{name}-{i}", "t", "hard", reviewer=name)
"""


def test_curators_at_once_lose_nothing(ws, tmp_path):
    # Separate processes, as curators' app sessions would be, opening a review.sqlite that does not exist yet
    # at the same moment (where SQLite refuses at once instead of waiting) and then writing together.
    names, gate = ["ann", "bob", "cy", "dee", "eve", "fay"], tmp_path / "gate"
    gate.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(ws.path), name, "40", str(gate), str(len(names))])
             for name in names]
    for p in procs:
        assert p.wait(timeout=120) == 0
    latest = review.latest_decisions(ws)
    assert len(latest) == 240 and set(latest["reviewer"]) == set(names)


def test_setup_retries_while_sqlite_refuses_to_wait(ws, monkeypatch):
    # SQLite answers "database is locked" at once, without its busy handler, where waiting could deadlock
    # (two processes switching a new file to WAL together): setup must retry, and give up on anything else.
    real, calls = review._prepare, []

    def flaky(conn):
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        real(conn)

    monkeypatch.setattr(review, "_prepare", flaky)
    review.decide(ws, "e", "t", "hard", reviewer="ann")
    assert len(calls) == 3 and len(review.latest_decisions(ws)) == 1

    monkeypatch.setattr(review, "_prepare", lambda conn: (_ for _ in ()).throw(sqlite3.OperationalError("disk I/O error")))
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        review.decide(ws, "e", "t", "soft", reviewer="ann")


def test_reading_the_decisions_waits_for_no_writer(ws, monkeypatch):
    """Every read took the write lock (BEGIN IMMEDIATE): on a team server a page's reads queued behind a curator's
    open write. A reader sees the store as last committed, at once, and the writer's decision once it commits."""
    review.decide(ws, "e1", "t1", "hard", reviewer="ann")
    monkeypatch.setattr(review, "_BUSY_TIMEOUT_S", 0.3)  # the old reads gave up after this with "database is locked"
    writer = sqlite3.connect(ws.review_db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO decisions (eval_item_id, train_item_id, decision, reviewer, created_at) "
                       "VALUES ('e2', 't2', 'soft', 'bob', '2026-12-05T00:00:00Z')")
        assert list(review.latest_decisions(ws)["eval_item_id"]) == ["e1"]
        assert review.decisions_after(ws, 0).last_id == 1 and review.undoable(ws, "ann")
        assert len(review.history(ws)) == 1 and review.disagreements(ws).empty
        writer.execute("COMMIT")
    finally:
        writer.close()
    assert list(review.latest_decisions(ws)["eval_item_id"]) == ["e1", "e2"]


def test_queue_filters_and_orders(ws):
    import pandas as pd

    pairs = pd.DataFrame({
        "eval_split": "d/test", "train_split": ["d/train", "d/train", "d/test"],
        "eval_item_id": ["d/test/a", "d/test/b", "d/test/c"], "rank": 1,
        "train_item_id": ["d/train/x", "d/train/y", "d/test/a"], "similarity": [0.99, 0.72, 0.68], "within": [False, False, True],
    })
    items = pd.DataFrame({"item_id": ["d/test/a", "d/test/b", "d/test/c", "d/train/x", "d/train/y"],
                          "label": ["cat", "dog", "cat", "cat", "cat"]})
    q = review.build_queue(pairs, items, hard=0.95, soft=0.7)
    assert list(q["degree"]) == ["hard", "soft", "borderline"]
    assert list(q["label_agreement"]) == ["same", "different", "same"]
    review.decide(ws, "d/test/b", "d/train/y", "not_leak", reviewer="ann")
    q = review.with_decisions(q, review.latest_decisions(ws))
    assert list(q["state"]) == ["unreviewed", "rejected", "unreviewed"]
    f = review.filter_queue(q, states=["unreviewed"], sort="closeness to a threshold")
    assert list(f["eval_item_id"]) == ["d/test/c", "d/test/a"]
    assert list(review.filter_queue(q, sources=["(within split)"])["eval_item_id"]) == ["d/test/c"]
    assert review.filter_queue(q, label_agreement="different")["eval_item_id"].tolist() == ["d/test/b"]


def test_a_confirmed_pair_stays_queued_whatever_its_score(ws):
    """A new user confirmed a pair soft, then raised soft on the Thresholds page: the pair left the Review queue (its
    header counted one image fewer than Home), and its link showed "all reviewed" with the image listed as not
    flagged. A pair whose decision confirms a leak is queued whatever its score, with the decision's degree."""
    import pandas as pd

    pairs = pd.DataFrame({
        "eval_split": "d/test", "train_split": "d/train", "rank": 1, "within": False,
        "eval_item_id": ["d/test/a", "d/test/b", "d/test/c", "d/test/d"],
        "train_item_id": ["d/train/x", "d/train/y", "d/train/z", "d/train/w"], "similarity": [0.99, 0.4, 0.3, 0.2],
    }, index=[7, 3, 5, 1])  # any index
    items = pd.DataFrame({"item_id": ["d/test/a", "d/test/b", "d/test/c", "d/test/d"], "label": "cat"})
    review.decide(ws, "d/test/b", "d/train/y", "soft", reviewer="ann")
    review.decide(ws, "d/train/z", "d/test/c", "same_source", reviewer="ann")  # decided from the other end
    review.decide(ws, "d/test/d", "d/train/w", "not_leak", reviewer="ann")  # rejected: not queued below soft
    decided = review.latest_decisions(ws)
    q = review.build_queue(pairs, items, hard=0.95, soft=0.7, confirmed=decided[decided["decision"] != "not_leak"])
    assert list(q["eval_item_id"]) == ["d/test/a", "d/test/b", "d/test/c"]
    assert list(q["degree"]) == ["hard", "soft", "soft"]
    assert list(review.build_queue(pairs, items, hard=0.95, soft=0.7)["eval_item_id"]) == ["d/test/a"]


def test_with_decisions_reuses_a_lookup_and_keeps_every_queued_copy(ws):
    import pandas as pd

    pairs = pd.DataFrame({  # the same pair twice (two training splits of one image file would do this)
        "eval_split": "d/test", "train_split": "d/train", "rank": [1, 2, 1, 1],
        "eval_item_id": ["d/test/a", "d/test/a", "d/test/b", "d/test/c"],
        "train_item_id": ["d/train/x", "d/train/x", "d/train/y", "d/train/z"],
        "similarity": [0.99, 0.98, 0.9, 0.8], "within": False,
    })
    items = pd.DataFrame({"item_id": ["d/test/a", "d/test/b", "d/test/c"], "label": ["cat"] * 3})
    q = review.build_queue(pairs, items, hard=0.95, soft=0.7)
    empty = review.with_decisions(q, review.latest_decisions(ws))
    assert list(empty["state"]) == ["unreviewed"] * 4 and empty["decision"].isna().all()
    lookup = review.pair_lookup(q)
    review.decide(ws, "d/test/a", "d/train/x", "hard", reviewer="ann", note="same shot")
    review.decide(ws, "d/test/c", "d/train/z", "unsure", reviewer="bob")
    review.decide(ws, "d/test/c", "d/train/z", "not_leak", reviewer="bob")  # the latest is in force
    review.decide(ws, "d/test/q", "d/train/q", "hard", reviewer="bob")  # not in this queue
    a = review.with_decisions(q, review.latest_decisions(ws), lookup)
    b = review.with_decisions(q, review.latest_decisions(ws))
    pd.testing.assert_frame_equal(a, b)
    assert list(a["state"]) == ["confirmed", "confirmed", "unreviewed", "rejected"]
    assert list(a["note"].fillna("")) == ["same shot", "same shot", "", ""]
    assert list(a["reviewer"].fillna("")) == ["ann", "ann", "", "bob"]
    assert len(q.columns) < len(a.columns)  # the cached queue itself is untouched


def test_applying_only_the_newer_decisions_gives_what_reading_them_all_gives(ws):
    """The review page keeps the decided queue and applies `decisions_after` its last read; after every step of a
    session (decisions, a second decision on a pair, a pair outside the queue, undos) it equals the full read."""
    import pandas as pd

    pairs = pd.DataFrame({
        "eval_split": "d/test", "train_split": "d/train", "rank": 1,
        "eval_item_id": [f"d/test/{i}" for i in range(6)], "train_item_id": [f"d/train/{i}" for i in range(6)],
        "similarity": [0.99, 0.95, 0.9, 0.85, 0.8, 0.75], "within": False,
    })
    items = pd.DataFrame({"item_id": pairs["eval_item_id"], "label": "cat"})
    q = review.build_queue(pairs, items, hard=0.95, soft=0.7)
    lookup = review.pair_lookup(q)
    change = review.decisions_after(ws, 0)
    held, last, undone = review.with_decisions(q, change.decisions, lookup), change.last_id, change.undone
    steps = [("0", "hard", "ann", "same shot"), ("3", "unsure", "bob", None), ("3", "not_leak", "bob", "moved"),
             ("q", "hard", "ann", None), ("5", "soft", "ann", None)]
    for i, decision, reviewer, note in steps:
        review.decide(ws, f"d/test/{i}", f"d/train/{i}", decision, reviewer=reviewer, note=note)
        change = review.decisions_after(ws, last)
        assert change.undone == undone and len(change.decisions) == 1  # only the new decision is read
        before = held
        held, last = review.with_decisions(q, change.decisions, lookup, over=held), change.last_id
        pd.testing.assert_frame_equal(held, review.with_decisions(q, review.latest_decisions(ws), lookup))
    assert list(before["state"]) != list(held["state"])  # the frame held before is not changed
    assert list(held["state"]) == ["confirmed", "unreviewed", "unreviewed", "rejected", "unreviewed", "confirmed"]
    assert list(held["note"].fillna("")) == ["same shot", "", "", "moved", "", ""]
    # undos: bob's second decision on 3 (his first applies again), then ann's only one on 5 (unreviewed again)
    for reviewer, expected in (("bob", "unsure"), ("ann", None)):
        review.undo_last(ws, reviewer)
        change = review.decisions_after(ws, last, undone)
        assert change.undone == undone + 1  # the pairs the undos touched are read, not every decision
        held, last, undone = review.with_decisions(q, change.decisions, lookup, over=held), change.last_id, change.undone
        pd.testing.assert_frame_equal(held, review.with_decisions(q, review.latest_decisions(ws), lookup))
    assert list(held["state"]) == ["confirmed", "unreviewed", "unreviewed", "unsure", "unreviewed", "unreviewed"]
    review.decide(ws, "d/test/4", "d/train/4", "hard", reviewer="bob")  # a decision after an undo: only it is new
    change = review.decisions_after(ws, last, undone)
    assert len(change.decisions) == 1
    assert review.decisions_after(ws, 0).decisions.equals(review.latest_decisions(ws))


def test_an_undo_within_a_split_leaves_the_decision_made_from_the_other_end(ws):
    """A pair within a split decided from both ends, then the later one undone: the reader that applies only the
    pairs undos touched shows the earlier decision from the other end, as a full read does."""
    import pandas as pd

    pairs = pd.DataFrame({"eval_split": "d/test", "train_split": "d/test", "rank": 1, "within": True,
                          "eval_item_id": ["d/test/a", "d/test/b"], "train_item_id": ["d/test/b", "d/test/a"],
                          "similarity": [0.99, 0.99]})
    items = pd.DataFrame({"item_id": ["d/test/a", "d/test/b"], "label": "cat"})
    q = review.build_queue(pairs, items, hard=0.95, soft=0.7)
    assert len(q) == 1  # queued once
    lookup = review.pair_lookup(q)
    review.decide(ws, "d/test/a", "d/test/b", "not_leak", reviewer="ann")
    review.decide(ws, "d/test/b", "d/test/a", "hard", reviewer="bob")
    change = review.decisions_after(ws, 0)
    held = review.with_decisions(q, change.decisions, lookup)
    assert list(held["state"]) == ["confirmed"]
    review.undo_last(ws, "bob")
    change = review.decisions_after(ws, change.last_id, change.undone)
    held = review.with_decisions(q, change.decisions, lookup, over=held)
    pd.testing.assert_frame_equal(held, review.with_decisions(q, review.latest_decisions(ws), lookup))
    assert list(held["state"]) == ["rejected"]


def test_pairs_tied_on_the_fused_score_are_queued_by_their_raw_similarity():
    """The fused score floors every pair its evidence decides at hard, so many pairs tie there: the queue orders
    them by the raw similarity, strongest first, not by item id."""
    import pandas as pd

    pairs = pd.DataFrame({
        "eval_split": "d/test", "train_split": "d/train", "rank": 1, "within": False,
        "eval_item_id": ["d/test/a", "d/test/b", "d/test/c", "d/test/d"],
        "train_item_id": ["d/train/w", "d/train/x", "d/train/y", "d/train/z"],
        "similarity": [0.891, 0.891, 0.95, 0.891], "raw_similarity": [0.52, 0.97, 0.9, 0.64],
    })
    items = pd.DataFrame({"item_id": pd.concat([pairs["eval_item_id"], pairs["train_item_id"]]), "label": "cat"})
    q = review.build_queue(pairs, items, hard=0.891, soft=0.5)
    assert list(q["eval_item_id"]) == ["d/test/c", "d/test/b", "d/test/d", "d/test/a"]


def test_a_pair_within_a_split_is_queued_once_and_decided_from_either_end(ws):
    """b among a's nearest and a among b's are one pair: the queue lists it once (a new user decided "not a leak"
    on one way and "unsure" on the other), a decision made from the other end applies to it, and the rates count
    that decision for both images."""
    import pandas as pd

    from leakcore import leakage

    pairs = pd.DataFrame({
        "eval_split": "d/test", "train_split": ["d/test", "d/test", "d/train"], "rank": 1,
        "eval_item_id": ["d/test/a", "d/test/b", "d/test/b"], "train_item_id": ["d/test/b", "d/test/a", "d/train/x"],
        "similarity": [0.9, 0.9, 0.8], "within": [True, True, False],
    })
    items = pd.DataFrame({"item_id": ["d/test/a", "d/test/b", "d/train/x"], "label": "cat"})
    q = review.build_queue(pairs, items, hard=0.95, soft=0.7)
    assert list(zip(q["eval_item_id"], q["train_item_id"])) == [("d/test/a", "d/test/b"), ("d/test/b", "d/train/x")]
    review.decide(ws, "d/test/b", "d/test/a", "not_leak", reviewer="ann")  # from the other end (an older queue)
    decided = review.with_decisions(q, review.latest_decisions(ws))
    assert list(decided["state"]) == ["rejected", "unreviewed"]
    both = leakage.with_degrees(pairs, 0.95, 0.7, review.latest_decisions(ws))
    assert list(both["degree"]) == ["none", "none", "soft"] and list(both["auto_degree"]) == ["soft"] * 3
    review.decide(ws, "d/test/a", "d/test/b", "hard", reviewer="bob")  # later, this way round: it wins both ways
    assert list(review.with_decisions(q, review.latest_decisions(ws))["state"]) == ["confirmed", "unreviewed"]
    assert list(leakage.with_degrees(pairs, 0.95, 0.7, review.latest_decisions(ws))["degree"]) == ["hard"] * 2 + ["soft"]
