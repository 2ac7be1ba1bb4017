"""A leak-aware re-split: a new train/test assignment of one dataset in which no group (explicit, recovered or
confirmed by a curator) and no flagged pair spans the two, stratified by label where asked (scikit-learn's
StratifiedGroupKFold / GroupShuffleSplit) or cut at a time. Written in the dataset's own format where it has one, plus
a manifest."""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from leakcore import catalog, formats
from leakcore.errors import InvalidInput
from leakcore.export import output_folder
from leakcore.io import atomic_write_text

log = logging.getLogger(__name__)


@dataclass
class Resplit:
    assignment: pd.DataFrame  # item_id, key, label, group_id, old_split, new_split
    summary: dict  # sizes and class balance against the target
    files: list[Path]


# a pair's images stay on one side where it is flagged (hard or soft by the score in force, or so decided), or where a
# curator called it unsure (one who could not tell does not want the pair split) or one source
TOGETHER_DEGREES, TOGETHER_DECISIONS = ("hard", "soft"), ("unsure", "same_source")


def _groups_of(ws, items: pd.DataFrame, use_decisions: bool) -> tuple[pd.Series, dict, list]:
    """Per item its group for the re-split, what joined the groups in force, and the near-duplicate pairs (item ids)
    that did the joining: those groups (explicit, recovered,
    confirmed) united with every pair the similarity check flags that a curator did not call unrelated, and with
    every other item of the same content (the same bytes: a scan compares training images with one another only
    with `--grouping`, and a new user's exact copy inside train fell on the other side of its original). The groups
    alone let flagged copies fall on both sides too: a new user's re-split of cats_and_dogs put 4 of 30 planted
    copies (text banners, flips) in test and their originals in train, since a group link asks its own local
    matches, which a mirror or a banner defeats, while the scan had flagged all 30."""
    from leakcore import grouping, leakage, review

    decisions = review.latest_decisions(ws) if use_decisions else None
    groups = grouping.groups_in_force(ws, decisions=decisions)
    of = groups.membership.set_index("item_id")["group_id"]
    explicit = items["dataset"].astype(str) + ":" + items["group"].astype(str)
    g = items["item_id"].map(of).astype(object)  # object: with no group in force the map is all-missing numbers,
    # which refused the item ids as a fill (a re-split of a workspace without groups crashed)
    g = g.fillna(explicit.where(items["group"].notna()).astype(object))  # an item in no group keeps its explicit one
    g = g.fillna(items["item_id"].astype(object)).astype(str)
    info = {"flagged_pairs": 0, "flagged_pairs_joined": 0, "identical_joined": 0,
            "train_searched": bool(groups.train_searched), "elsewhere": {}}
    ids = items["item_id"].astype(str)
    links = {}  # what joins two items: flagged pairs, then items of one content (the first of each content to the rest)
    pairs = leakage.load_pairs(ws)
    if not pairs.empty:
        hard, soft = ws.thresholds()
        p = leakage.with_degrees(pairs, hard, soft, decisions if decisions is not None and not decisions.empty
                                 else None)
        p = p[p["degree"].isin(TOGETHER_DEGREES) | p["decision"].isin(TOGETHER_DECISIONS).fillna(False).to_numpy(bool)]
        links["flagged_pairs_joined"] = (p["eval_item_id"].astype(str).to_numpy(),
                                         p["train_item_id"].astype(str).to_numpy())
        # this dataset's images flagged against another dataset's training images: a re-split of one dataset cannot
        # move those (a new user's 8 copies of hymenoptera photos in cats_and_dogs were said nowhere)
        ours = p["eval_item_id"].astype(str).isin(set(ids)) & ~p["train_item_id"].astype(str).isin(set(ids))
        info["elsewhere"] = {str(i): sorted(set(g)) for i, g in p.loc[ours].groupby("eval_item_id")["train_split"]}
    if "sha256" in items:
        sha = items["sha256"].where(items["sha256"].notna() & (items["sha256"].astype(str) != ""))
        first = ids.groupby(sha).transform("first")
        links["identical_joined"] = (first[sha.notna()].to_numpy(), ids[sha.notna()].to_numpy())
    group_of = pd.Series(g.to_numpy(), index=ids.to_numpy())
    ends = []
    for name, (a_ids, b_ids) in links.items():
        a, b = group_of.reindex(a_ids).to_numpy(), group_of.reindex(b_ids).to_numpy()
        joins = pd.notna(a) & pd.notna(b)  # both images in this dataset ...
        if name == "flagged_pairs_joined":  # every flagged pair of the dataset, kept on one side whatever held it
            info["flagged_pairs"] = len({tuple(sorted(pair)) for pair in zip(a_ids[joins], b_ids[joins])
                                         if pair[0] != pair[1]})
        joins[joins] = a[joins] != b[joins]  # ... and in two groups
        info[name] = len({tuple(sorted(pair)) for pair in zip(a_ids[joins], b_ids[joins])})
        ends.append((a[joins].astype(str), b[joins].astype(str)))
    near = [pair for a_ids, b_ids in links.values() for pair in zip(a_ids, b_ids) if pair[0] != pair[1]]
    a = np.concatenate([e[0] for e in ends]) if ends else np.zeros(0, str)
    b = np.concatenate([e[1] for e in ends]) if ends else np.zeros(0, str)
    if not len(a):
        return g, info, near
    labels = pd.Index(pd.unique(np.concatenate([g.to_numpy(), a, b]).astype(str)))
    comp = grouping._components(len(labels), labels.get_indexer(a), labels.get_indexer(b))  # as groups are built
    name = pd.Series(labels).groupby(comp).transform("min").to_numpy()  # the smallest label names a component
    return pd.Series(name[labels.get_indexer(g.to_numpy())], index=g.index).astype(str), info, near


def _label_conflicts(pairs: list, items: pd.DataFrame) -> int:
    """How many of the near-duplicate pairs (item ids) carry two different labels, each pair once."""
    label = items.set_index("item_id")["label"]
    return len({tuple(sorted(p)) for p in pairs if pd.notna(label.get(p[0])) and pd.notna(label.get(p[1]))
                and label.get(p[0]) != label.get(p[1])})


def _same_side(pairs: list, assignment: pd.DataFrame, side: str) -> int:
    """How many of the near-duplicate pairs (item ids) lie both on `side` of the new split, each pair once."""
    where = assignment.set_index("item_id")["new_split"]
    return len({tuple(sorted(p)) for p in pairs if where.get(p[0]) == side and where.get(p[1]) == side})


def plan_resplit(ws, dataset: str, *, test_size: float = 0.2, stratify: str | None = "label",
                 time_cutoff: str | None = None, seed: int = 0, use_decisions: bool = True) -> Resplit:
    """Assign every item of `dataset` to train or test so that no group spans both; report what was achieved."""
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    if not 0 < test_size < 1:
        raise InvalidInput(f"test size must be between 0 and 1, got {test_size}")
    items = ws.items()
    items = items[items["dataset"] == dataset].sort_values("item_id").reset_index(drop=True)
    if items.empty:
        raise InvalidInput(f"no dataset {dataset!r}; datasets: {', '.join(sorted(ws.datasets)) or 'none'}")
    # files no check could read are left out, as an export leaves them out of a cleaned split: they were counted in
    # a side they were never checked for (and two empty files were joined as exact copies)
    unread = int((items["status"].astype(str) != "ok").sum())
    items = items[items["status"].astype(str) == "ok"].reset_index(drop=True)
    group, joined, near = _groups_of(ws, items, use_decisions)
    elsewhere = joined.pop("elsewhere")
    if time_cutoff:
        try:
            cutoff = pd.Timestamp(time_cutoff)
        except (ValueError, OverflowError):  # pandas' DateParseError and OutOfBoundsDatetime are ValueErrors
            raise InvalidInput(f"cannot read the time {str(time_cutoff)[:80]!r}", cli="give an ISO time, e.g. 2024-06-01T00:00:00Z",
                               page="Give an ISO time, e.g. 2024-06-01T00:00:00Z") from None
        cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff.tz_convert("UTC")
        if items["time"].isna().all():
            raise InvalidInput(f"no item of {dataset} has a time: a time split needs timestamps")
        first = items["time"].groupby(group).transform("min")  # a group goes where its first image was taken
        is_test = (first >= cutoff).to_numpy()
        method = f"by time: groups first seen at or after {cutoff.isoformat()} are test"
    else:
        labels = items["label"].fillna("(none)").astype(str) if stratify else None
        if stratify and stratify != "label":
            raise InvalidInput(f"stratify by 'label' or nothing, got {stratify!r}")
        if labels is not None and labels.nunique() > 1:
            n_splits = max(2, int(round(1 / test_size)))
            folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            best = None
            for _, test_idx in folds.split(items, labels, group):
                if best is None or abs(len(test_idx) - test_size * len(items)) < abs(len(best) - test_size * len(items)):
                    best = test_idx
            is_test = np.zeros(len(items), dtype=bool)
            is_test[best] = True
            method = f"StratifiedGroupKFold ({n_splits} folds, the fold closest to the target size)"
        else:
            train_idx, test_idx = next(GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
                                       .split(items, groups=group))
            is_test = np.zeros(len(items), dtype=bool)
            is_test[test_idx] = True
            method = "GroupShuffleSplit"
    assignment = pd.DataFrame({"item_id": items["item_id"], "key": items["key"], "label": items["label"],
                               "group_id": group, "old_split": items["split"],
                               "new_split": np.where(is_test, "test", "train")})
    spans = assignment.groupby("group_id")["new_split"].nunique()
    assert (spans <= 1).all(), "a group was split"  # by construction
    balance = (assignment.groupby("new_split")["label"].value_counts(normalize=True).unstack(fill_value=0)
               if items["label"].notna().any() else pd.DataFrame())
    overall = assignment["label"].value_counts(normalize=True) if items["label"].notna().any() else pd.Series(dtype=float)
    summary = {
        "dataset": dataset, "method": method, "seed": seed, "items": int(len(items)),
        "target_test_share": test_size,
        "test": int(is_test.sum()), "train": int((~is_test).sum()), "test_share": float(is_test.mean()),
        "groups": int(group.nunique()), "multi_item_groups": int((group.value_counts() > 1).sum()),
        "largest_group": int(group.value_counts().max()), "cross_split_groups": 0, "unreadable_left_out": unread,
        # near-duplicates (flagged pairs, exact copies) that share a side: in test each copy counts twice in a score
        "test_duplicate_pairs": _same_side(near, assignment, "test"),
        # one picture under two labels, kept on one side: a re-split cannot fix a label (a new user's label conflict
        # landed in train under both labels, said nowhere)
        "label_conflicts_kept": _label_conflicts(near, items),
        # images flagged against another dataset's training images (`_groups_of`), and how many of them are in test
        "other_datasets_matched": len(elsewhere),
        "other_datasets_matched_in_test": int(assignment["item_id"].astype(str).isin(
            set(elsewhere)).to_numpy()[is_test].sum()),
        "other_training_sources": sorted({t for ts in elsewhere.values() for t in ts}),
        **joined,
        "label_share_overall": {str(k): round(float(v), 4) for k, v in overall.items()},
        "label_share_by_split": {s: {str(k): round(float(v), 4) for k, v in row.items()} for s, row in balance.iterrows()},
        "max_label_share_gap": float((balance - overall).abs().max().max()) if not balance.empty else 0.0,
    }
    return Resplit(assignment, summary, [])


def write_resplit(ws, result: Resplit, out: str | Path | None = None, links: str | None = None,
                  made_by: str | None = None) -> Resplit:
    """The new splits in the dataset's own format where it has a per-row one (manifest, Hugging Face Parquet),
    and always `manifest.csv` (path, split, label, group, timestamp, id, old_split), re-importable with
    `leakcore add --format manifest --root ROOT`. With `links` ("symlink" or "copy"), the image files too, as
    `images/<new split>/<path under the old split's folder>` (a folder dataset's own layout: a new user's re-split of
    one wrote only the manifest)."""
    import json

    if links not in (None, "symlink", "copy"):
        raise InvalidInput(f"links must be symlink or copy, got {links!r}")

    dataset = result.summary["dataset"]
    ds = ws.datasets[dataset]
    folder = output_folder(ws, out, "re-split", "resplit.json") if out else ws.exports_dir / f"{dataset}-resplit"
    folder.mkdir(parents=True, exist_ok=True)
    items = ws.items().set_index("item_id").loc[result.assignment["item_id"]].reset_index()
    items["split"] = result.assignment["new_split"].to_numpy()
    listing = formats.listing(items, ds, "")
    # the listing is ordered by key (stably); its rows are matched to the items by that order, not by key: a folder
    # dataset's key is the path under its split's folder, which two splits may share (train/cat/1.jpg, val/cat/1.jpg)
    order = np.argsort(items["key"].astype(str).to_numpy(), kind="stable")
    listing["split"] = items["split"].to_numpy()[order]
    listing["group"] = result.assignment["group_id"].to_numpy()[order]
    listing["timestamp"] = items["timestamp"].to_numpy()[order]
    listing["old_split"] = result.assignment["old_split"].to_numpy()[order]
    targets = _split_targets(items, ds) if links else None
    if targets is not None:  # where each file is now, under the re-split's folder
        listing["new_path"] = np.array([None if t is None else f"images/{t.as_posix()}" for t in targets],
                                       dtype=object)[order]
    by_key = dict(zip(items["key"].astype(str), items["split"]))  # a manifest's own rows, by their unique ids
    files = [formats.write_table(listing, folder / "manifest.csv", "csv")]
    if ds.format == "manifest":
        src = Path(ds.source)
        from leakcore.catalog import _read_manifest

        df = _read_manifest(src)
        key = df["id"].astype(str) if "id" in df.columns else df["path"].astype(str)
        df = df.assign(split=key.map(by_key))
        files.append(formats.write_table(df[df["split"].notna()], folder / src.name, src.suffix))
    elif ds.format == "hf-parquet":  # the same rows and columns, the split column (if any) rewritten
        import pyarrow as pa
        import pyarrow.parquet as pq

        from leakcore.io import atomic_path

        for split in ("train", "test"):
            part = items[items["split"] == split]
            tables = [pq.read_table(uri).take(pa.array(np.sort(g["row"].to_numpy()))) for uri, g in part.groupby("uri")]
            table = pa.concat_tables(tables) if tables else pa.table({})
            if "split" in table.column_names:
                table = table.set_column(table.column_names.index("split"), "split", pa.array([split] * len(table)))
            with atomic_path(folder / f"{split}.parquet") as tmp:
                pq.write_table(table, tmp)
            files.append(folder / f"{split}.parquet")
    if targets is not None:
        from leakcore.io import link_files

        # only files inside the dataset's folders now: a link re-pointed after `add` had a file from outside copied
        files.append(link_files([(u, t) for u, t in zip(items["uri"], targets)
                                 if t is not None and catalog.inside_any(u, ds.folders)], folder / "images", links))
    from leakcore.export import _inputs_time

    # how to read the new split back (a new user's `add` of the manifest found no file without the old root, and of
    # the image folder, links by default, none inside it)
    from shlex import quote

    add_again = [f"leakcore add NEW-WORKSPACE --dataset {dataset}-resplit --source {quote(str(folder / 'manifest.csv'))} "
                 f"--format manifest --root {quote(str(ds.root))}"]
    if targets is not None:
        add_again.insert(0, f"leakcore add NEW-WORKSPACE --dataset {dataset}-resplit --source {quote(str(folder / 'images'))}"
                            + (" --follow-links" if links == "symlink" else ""))
    result.summary["add_again"] = add_again
    written = {**result.summary, "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "inputs_as_of": _inputs_time(ws), "links": links,  # what the report's provenance lists
               "made_by": made_by}  # who, as an export's provenance names who exported it
    atomic_write_text(folder / "resplit.json", json.dumps(written, indent=2, default=str) + "\n")
    files.append(folder / "resplit.json")
    result.files = files
    return result


def _split_targets(items: pd.DataFrame, ds) -> list[Path | None]:
    """Per item its path under the re-split's image folder, `<new split>/<path under the old split's folder>` (None
    for rows inside containers, which have no file of their own, and for files no check could read: a copy would
    follow a link out of the dataset's folder). Two files that would land on one path
    (train/cats/1.jpg and val/cats/1.jpg both in test) keep their old split in the file name: `cats/val-1.jpg`."""
    import os

    root = Path(ds.root)
    out, taken = [], set()
    for uri, row, split, status in zip(items["uri"], items["row"], items["split"], items["status"].astype(str)):
        if row >= 0 or status != "ok":  # no file of its own, or one no check read (never one outside the root)
            out.append(None)
            continue
        rel = Path(os.path.relpath(uri, root))
        first, *rest = rel.parts
        target = Path(str(split)) / (Path(*rest) if rest else rel)
        if target in taken:
            target = target.with_name(f"{first}-{target.name}")
        taken.add(target)
        out.append(target)
    return out


def pairs_words(s: dict) -> str:
    """The re-split's flagged pairs in one sentence, for the terminal and the Export page alike: every flagged pair,
    then how many of them the re-split joined itself (a new user read "pairs that no group held already: 2" beside 8
    flagged pairs and could not tell whether the other 6 were kept together)."""
    n, joined = s.get("flagged_pairs", 0), s.get("flagged_pairs_joined", 0)
    return (f"flagged near-duplicate pairs, each kept on one side: {n} ({n - joined} already in one group, {joined} "
            f"joined by the re-split itself); exact copies (the same bytes) joined likewise: {s.get('identical_joined', 0)}")


def other_datasets_words(s: dict) -> str | None:
    """The dataset's images that copy other datasets' training images, which a re-split of one dataset cannot move."""
    n = s.get("other_datasets_matched")
    if not n:
        return None
    return (f"{n} image{'s' if n != 1 else ''} match{'es' if n == 1 else ''} training images of other datasets "
            f"({', '.join(s['other_training_sources'])}), {s['other_datasets_matched_in_test']} of them now in test: "
            "a re-split of one dataset cannot move them; once it is scanned, an export of its test split leaves out "
            "those in test")
