"""Cleaned evaluation manifests: the split without its leaked images, in the input's own format, with
removed.csv (what was removed and why) and a provenance sidecar. Never touches the user's files.

Policy: confirmed leaks are always removed; a pair a curator rejected never removes its item; for the
rest, automatic flags at `hard`, at `soft`, or `none`; a keep-list overrides automatic flags; optionally
within-split duplicates are removed, keeping the first (by item id) of each group.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from leakcore import __version__, formats, leakage, review
from leakcore.errors import UnknownName
from leakcore.io import atomic_path, atomic_write_text
from leakcore.schema import Decision, SplitId, split_items

log = logging.getLogger(__name__)

POLICIES = ("hard", "soft", "none")
FORMATS = ("same",) + formats.TABLE_FORMATS


def parse_keep_list(text: str) -> frozenset:
    """Item ids or keys, one per line (blank lines ignored): the keep-list of the CLI file and the page's box."""
    return frozenset(line.strip() for line in (text or "").splitlines() if line.strip())


@dataclass(frozen=True)
class ExportPolicy:
    flags: str = "soft"  # which unreviewed automatic flags remove an item: hard, soft or none
    keep: frozenset = field(default_factory=frozenset)  # item ids or keys never removed by automatic flags
    dedupe_within: bool = False
    groups: bool = False  # also remove evaluation items whose group (one source) reaches training data

    def __post_init__(self):
        if self.flags not in POLICIES:
            raise UnknownName(f"policy must be one of {', '.join(POLICIES)}, got {self.flags!r}")


def _within_groups(pairs: pd.DataFrame, soft: float, decisions: pd.DataFrame) -> dict[str, str]:
    """item -> the first item id of its within-split duplicate group (connected components of duplicate pairs)."""
    p = leakage.with_degrees(pairs, soft, soft, decisions)
    p = p[p["degree"] != leakage.NONE]
    if p.empty:
        return {}
    ids, codes = np.unique(np.concatenate([p["eval_item_id"].to_numpy(str), p["train_item_id"].to_numpy(str)]),
                           return_inverse=True)
    a, b = codes[:len(p)], codes[len(p):]
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(len(ids), len(ids)))
    _, component = connected_components(graph, directed=False)
    first = pd.Series(ids).groupby(component).transform("min")  # ids are sorted: the smallest id heads its group
    return dict(zip(ids, first))


def _joined_matches(evidence: pd.DataFrame) -> pd.Series:
    """{eval item: its training matches joined by ";", most similar first, each once}: a sort and one split of the
    arrays (a per-group lambda in pandas took seconds on 100,000 pairs)."""
    ev = evidence.drop_duplicates(["eval_item_id", "train_item_id"])  # already most similar first
    ids = ev["eval_item_id"].to_numpy(dtype=object)
    train = ev["train_item_id"].to_numpy(dtype=object)
    order = np.argsort(ids, kind="stable")  # stable: the similarity order survives within an item
    ids, train = ids[order], train[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.array([], int)
    return pd.Series([";".join(g) for g in np.split(train, starts[1:])] if len(ids) else [],
                     index=pd.Index(ids[starts], name="eval_item_id"), dtype=object)


def plan(ws, eval_split: str, policy: ExportPolicy, *, decisions: pd.DataFrame | None = None,
         pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every item of the split with `removed`, `reason` and its evidence (matches, similarity, decision)."""
    eval_split = str(SplitId.parse(eval_split))
    items = split_items(ws.items(), eval_split)
    hard, soft = ws.thresholds()
    decisions = review.latest_decisions(ws) if decisions is None else decisions
    pairs = leakage.load_pairs(ws) if pairs is None else pairs
    pairs = pairs[pairs["eval_split"] == eval_split]
    cross = leakage.with_degrees(pairs[~pairs["within"]], hard, soft, decisions)
    confirmed = cross[cross["decision"].isin([Decision.HARD, Decision.SOFT])]
    auto_level = {"hard": [leakage.HARD], "soft": [leakage.HARD, leakage.SOFT], "none": []}[policy.flags]
    rejected = set(cross.loc[cross["decision"] == Decision.NOT_LEAK, "eval_item_id"])
    auto = cross[cross["decision"].isna() | (cross["decision"] == Decision.UNSURE)]
    auto = auto[auto["auto_degree"].isin(auto_level)]
    keep = set(policy.keep)
    kept_by_list = items["item_id"].isin(keep) | items["key"].isin(keep)
    keep_ids = set(items.loc[kept_by_list, "item_id"])
    evidence = pd.concat([confirmed, auto]).sort_values("similarity", ascending=False)
    ev = evidence.groupby("eval_item_id").agg(similarity=("similarity", "max"), degree=("degree", "first"),
                                               decision=("decision", "first"))
    ev["matches"] = _joined_matches(evidence).reindex(ev.index)
    last = decisions.set_index(decisions["eval_item_id"]) if not decisions.empty else pd.DataFrame()
    out = items[["item_id", "key", "uri", "row", "label", "split", "dataset"]].copy()
    out = out.merge(ev, left_on="item_id", right_index=True, how="left")
    is_confirmed = out["item_id"].isin(set(confirmed["eval_item_id"]))
    is_auto = out["item_id"].isin(set(auto["eval_item_id"])) & ~out["item_id"].isin(keep_ids)
    out["removed"] = is_confirmed | (is_auto & ~is_confirmed)
    out["check"] = np.where(out["removed"], "similarity", "")
    out["reason"] = np.where(is_confirmed, "confirmed leak", np.where(out["removed"], "automatic " + out["degree"].fillna("") + " flag", ""))
    out.loc[is_auto & out["item_id"].isin(rejected) & ~is_confirmed, "reason"] += " (another pair was rejected)"
    if policy.dedupe_within:
        groups = _within_groups(pairs[pairs["within"]], soft, decisions)
        dup = out["item_id"].map(groups)
        is_dup = dup.notna() & (dup != out["item_id"]) & ~out["removed"] & ~out["item_id"].isin(keep_ids)
        out.loc[is_dup, "removed"] = True
        out.loc[is_dup, "reason"] = "within-split duplicate of " + dup[is_dup]
        out.loc[is_dup, "matches"] = dup[is_dup]
        out.loc[is_dup, "check"] = "similarity (within split)"
    if policy.groups:
        from leakcore import grouping

        g = grouping.groups_in_force(ws, decisions=decisions, pairs=pairs if not pairs.empty else None)
        reach = grouping.group_reach(g)
        reach = reach[reach["eval_split"] == eval_split].drop_duplicates("eval_item_id").set_index("eval_item_id")
        hit = out["item_id"].isin(reach.index) & ~out["removed"] & ~out["item_id"].isin(keep_ids)
        out.loc[hit, "removed"] = True
        out.loc[hit, "check"] = "group"
        out.loc[hit, "reason"] = "group reaches training data (group " + out.loc[hit, "item_id"].map(reach["group_id"]) + ")"
        out.loc[hit, "matches"] = out.loc[hit, "item_id"].map(reach["train_split"])
    if not last.empty:
        info = last.groupby(level=0).last()
        out["reviewer"] = out["item_id"].map(info["reviewer"])
        out["note"] = out["item_id"].map(info["note"])
    else:
        out["reviewer"] = None
        out["note"] = None
    return out


def preview(ws, eval_splits: list[str] | None = None, *, keep=frozenset(), dedupe_within: bool = False,
            groups: bool = False) -> pd.DataFrame:
    """How many items each policy removes, per evaluation split (shown before writing anything)."""
    eval_splits = [str(SplitId.parse(s)) for s in eval_splits] if eval_splits else [str(s) for s in ws.split_ids("eval")]
    decisions, pairs = review.latest_decisions(ws), leakage.load_pairs(ws)
    rows = []
    for sid in eval_splits:
        row = {"eval_split": sid}
        for flags in POLICIES:
            p = plan(ws, sid, ExportPolicy(flags, frozenset(keep), dedupe_within, groups), decisions=decisions, pairs=pairs)
            row["items"] = len(p)
            row[f"removed at {flags}"] = int(p["removed"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class ExportResult:
    folder: Path
    files: list[Path]
    kept: int
    removed: int


def _inputs_time(ws) -> str:
    """The newest input's modification time: a timestamp that is the same for the same inputs."""
    paths = [ws.items_path, ws.path / "project.toml", ws.review_db, *ws.neighbors_dir(ws.encoder).glob("*/*.parquet")]
    newest = max((p.stat().st_mtime for p in paths if p.exists()), default=0)
    return pd.Timestamp(newest, unit="s", tz="UTC").isoformat(timespec="seconds")


def export(
    ws,
    eval_split: str,
    policy: ExportPolicy,
    *,
    fmt: str = "same",
    out: str | os.PathLike | None = None,
    links: str | None = None,
    provenance: dict | None = None,
) -> ExportResult:
    """Write the cleaned split, removed.csv and provenance.json into `out` (default exports/<split>-<policy>);
    `provenance` adds to the sidecar (the facade's people: who exported, decided and set the thresholds)."""
    if fmt not in FORMATS:
        raise UnknownName(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if links not in (None, "symlink", "copy"):
        raise UnknownName(f"links must be symlink or copy, got {links!r}")
    eval_split = str(SplitId.parse(eval_split))
    p = plan(ws, eval_split, policy)
    ds = ws.datasets[SplitId.parse(eval_split).dataset]
    folder = Path(out) if out else ws.exports_dir / f"{eval_split.replace('/', '-')}-{policy.flags}"
    folder.mkdir(parents=True, exist_ok=True)
    kept = p[~p["removed"]]
    split = SplitId.parse(eval_split).split
    files = (formats.get_format(ds.format).write_same(kept, ds, folder, split) if fmt == "same"
             else [formats.write_listing(kept, ds, folder, split, fmt)])
    removed = p[p["removed"]][["item_id", "key", "uri", "label", "check", "reason", "matches", "similarity", "degree", "decision",
                               "reviewer", "note"]].rename(columns={"item_id": "item", "matches": "matched_training_items"})
    with atomic_path(folder / "removed.csv") as tmp:
        removed.sort_values("item").to_csv(tmp, index=False, float_format="%.6f")
    files.append(folder / "removed.csv")
    if links:
        files.append(_link_folder(kept, ds, folder / "images", links))
    hard, soft = ws.thresholds()
    fingerprints = sorted(p.name for p in ws.embeddings_dir(ws.encoder).iterdir()) if ws.embeddings_dir(ws.encoder).exists() else []
    prov = {
        "tool": "leakcore", "version": __version__, "workspace": str(ws.path), "split": eval_split,
        "source": ds.source, "source_format": ds.format, "format": fmt, "encoder": ws.encoder,
        "encoder_options": ws.encoder_options, "weights_fingerprints": fingerprints,
        "thresholds": {"hard": hard, "soft": soft},
        "policy": {"flags": policy.flags, "keep": sorted(policy.keep), "dedupe_within": policy.dedupe_within,
                   "leaking_groups": policy.groups,
                   "confirmed_leaks": "always removed", "rejected_pairs": "never remove their item"},
        "counts": {"items": int(len(p)), "kept": int(len(kept)), "removed": int(p["removed"].sum()),
                   "by_reason": {str(k): int(v) for k, v in p.loc[p["removed"], "reason"].str.split(" of ").str[0].value_counts().sort_index().items()}},
        "inputs_as_of": _inputs_time(ws),
        **(provenance or {}),
    }
    atomic_write_text(folder / "provenance.json", json.dumps(prov, indent=2, sort_keys=True) + "\n")
    files.append(folder / "provenance.json")
    return ExportResult(folder, files, int(len(kept)), int(p["removed"].sum()))


def _link_folder(kept: pd.DataFrame, ds, dest: Path, mode: str) -> Path:
    """A folder of symlinks (or copies) of the kept files, in their original layout."""
    root = Path(ds.root)
    if dest.exists():
        shutil.rmtree(dest)
    for uri, row in zip(kept["uri"], kept["row"]):
        if row >= 0:
            continue  # rows inside containers have no file of their own
        target = dest / os.path.relpath(uri, root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "symlink":
            target.symlink_to(Path(uri).resolve())
        else:
            shutil.copy2(uri, target)
    return dest
