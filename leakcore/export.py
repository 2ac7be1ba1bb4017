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
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from leakcore import __version__, catalog, checks, formats, leakage, review
from leakcore.errors import InvalidInput, UnknownName
from leakcore.images import OUTSIDE_ROOT
from leakcore.io import atomic_path, atomic_write_text, link_files
from leakcore.schema import SplitId, split_items

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
    groups: bool = False  # also remove evaluation items whose group reaches training data (= adding "group" to checks)
    checks: frozenset | None = None  # the checks whose findings remove items; None: each check's `export_default`

    def __post_init__(self):
        if self.flags not in POLICIES:
            raise UnknownName(f"policy must be one of {', '.join(POLICIES)}, got {self.flags!r}")
        exportable = [c.name for c in checks.exportable_checks()]
        unknown = sorted(set(self.checks or ()) - set(exportable))
        if unknown:
            raise UnknownName(f"an export cannot remove by {', '.join(map(repr, unknown))}; checks it can remove by: "
                              f"{', '.join(exportable)}")

    @property
    def selected(self) -> list[str]:
        """The checks that remove items, in registry order."""
        chosen = set(self.checks) if self.checks is not None else {
            c.name for c in checks.exportable_checks() if c.export_default}
        if self.groups:
            chosen.add("group")
        return [c.name for c in checks.exportable_checks() if c.name in chosen]


def plan(ws, eval_split: str, policy: ExportPolicy, *, decisions: pd.DataFrame | None = None,
         pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every item of the split with `removed`, `check`, `reason` and its evidence (matches, similarity, decision):
    each check the policy selects names the items it removes (`Check.removals`), in registry order; an item is
    removed by the first check that names it (`check`, `reason`, the evidence), and `checks` and `reasons` name
    every check that would have ("; " between them); a keep-list overrides every removal a curator did not confirm."""
    eval_split = str(SplitId.parse(eval_split))
    items = split_items(ws.items(), eval_split)
    hard, soft = ws.thresholds()
    decisions = review.latest_decisions(ws) if decisions is None else decisions
    pairs = leakage.load_pairs(ws) if pairs is None else pairs
    inputs = checks.CheckInputs(hard, soft, decisions=decisions, pairs=pairs)
    keep = set(policy.keep)
    keep_ids = set(items.loc[items["item_id"].isin(keep) | items["key"].isin(keep), "item_id"])
    frames = [checks.get_check(name).removals(ws, eval_split, inputs, policy) for name in policy.selected]
    frames.append(_unchecked(items))
    removals = pd.concat([checks.empty_removals(), *[f for f in frames if not f.empty]], ignore_index=True)
    removals = removals[removals["confirmed"].astype(bool) | ~removals["item_id"].isin(keep_ids)]
    every = pd.DataFrame({"checks": _every(removals, "check"), "reasons": _every(removals, "reason")})
    removals = removals.drop_duplicates("item_id").set_index("item_id").join(every)
    out = items[["item_id", "key", "uri", "row", "label", "split", "dataset"]].copy()
    hit = out["item_id"].isin(removals.index)
    out["removed"] = hit
    for col in ("check", "reason", "checks", "reasons"):
        out[col] = out["item_id"].map(removals[col]).astype(object).where(hit, "")
    for col in ("matches", "similarity", "degree", "decision"):
        out[col] = out["item_id"].map(removals[col])
    if not decisions.empty:
        # who decided, where a decision removed the item (an automatic removal names no reviewer, even where the
        # item has a decision on another pair; a new user read a curator's name beside an empty decision)
        mirrored = leakage.both_ways(decisions)  # a duplicate within the split decided from its other end names it too
        info = mirrored.set_index(mirrored["eval_item_id"]).groupby(level=0).last()
        decided = (out["decision"].notna() & (out["decision"].astype(str) != "")) | \
            out["item_id"].map(removals["confirmed"]).fillna(False).astype(bool)
        reviewer, note = out["item_id"].map(info["reviewer"]), out["item_id"].map(info["note"])
        # a removal by a decision names who made that decision: on the pairs it names, with its word (the item's
        # latest decision on another pair named a second curator's "not a leak" beside the first's "same source")
        made = _decided_by(out[hit & decided], removals, mirrored)
        reviewer, note = made["reviewer"].combine_first(reviewer), made["note"].where(
            made["reviewer"].notna()).combine_first(note)
        out["reviewer"] = reviewer.where(decided | ~hit)
        out["note"] = note.where(decided | ~hit)
    else:
        out["reviewer"] = None
        out["note"] = None
    return out


def _decided_by(removed: pd.DataFrame, removals: pd.DataFrame, decisions: pd.DataFrame) -> pd.DataFrame:
    """(reviewer, note) by the index of `removed`: of the latest decision with the removal's word on a pair it names
    (`matches`, "; "-separated), where there is one."""
    if removed.empty:
        return pd.DataFrame({"reviewer": pd.Series(dtype=object), "note": pd.Series(dtype=object)})
    wanted = pd.DataFrame({"row": removed.index, "item_id": removed["item_id"].to_numpy(),
                           "match": removed["item_id"].map(removals["matches"]).astype(str).str.split(";").to_numpy(),
                           "decision": removed["decision"].astype(object).to_numpy()}).explode("match")
    wanted["match"] = wanted["match"].str.strip()
    found = wanted.merge(decisions.rename(columns={"eval_item_id": "item_id", "train_item_id": "match"})
                         [["item_id", "match", "decision", "reviewer", "note", "created_at"]],
                         on=["item_id", "match", "decision"], how="inner")
    last = found.sort_values("created_at", kind="stable").groupby("row").last()
    return last[["reviewer", "note"]].reindex(removed.index)


UNCHECKED = "unreadable"  # the removal check of items no check could read: a cleaned split holds only what was checked


def _unchecked(items: pd.DataFrame) -> pd.DataFrame:
    """The split's items no check could read (truncated, empty, not an image, outside the dataset's root), removed
    with their reason: a new user's cleaned split kept them unchecked, two of them leaks (a truncated copy that
    other decoders read, and a link to a training photo), the link copied from outside the root. A keep-list keeps
    one all the same, but never a file outside its dataset's root (an export copies only what lies inside)."""
    bad = items[items["status"].astype(str) != "ok"]
    reason = bad["reason"].fillna("unreadable").astype(str)
    return pd.DataFrame({"item_id": bad["item_id"].to_numpy(), "check": UNCHECKED,
                         "reason": ("not checked: " + reason).to_numpy(), "matches": None, "similarity": np.nan,
                         "degree": None, "decision": None,
                         "confirmed": reason.str.startswith(OUTSIDE_ROOT).to_numpy()},  # no keep-list keeps it
                        columns=checks.REMOVAL_COLUMNS)


def _every(removals: pd.DataFrame, col: str) -> pd.Series:
    """Per item, the distinct values of `col` in the order the checks named them, "; " between them. Most items are
    named once and take their value as it is: a Python join per item over a split of 50,000 removals took 10 s of
    the Export page's first load, once per policy."""
    named = removals[["item_id", col]].astype({col: str}).drop_duplicates()
    more = named["item_id"].duplicated(keep=False).to_numpy()
    once = named.loc[~more].set_index("item_id")[col]
    return pd.concat([once, named.loc[more].groupby("item_id", sort=False)[col].agg("; ".join)])


WITHIN_KEPT = "within-split duplicates kept"  # preview's column: copies that --dedupe-within would remove at soft


def preview(ws, eval_splits: list[str] | None = None, *, keep=frozenset(), dedupe_within: bool = False,
            groups: bool = False, checks: frozenset | None = None) -> pd.DataFrame:
    """How many items each policy removes, per evaluation split (shown before writing anything)."""
    eval_splits = [str(SplitId.parse(s)) for s in eval_splits] if eval_splits else [str(s) for s in ws.split_ids("eval")]
    decisions, pairs = review.latest_decisions(ws), leakage.load_pairs(ws)
    return pd.DataFrame([_preview_row(ws, sid, ExportPolicy("soft", frozenset(keep), dedupe_within, groups, checks),
                                      decisions, pairs)[0] for sid in eval_splits])


def preview_and_plan(ws, eval_split: str, policy: ExportPolicy) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(`preview` of one split, its `plan` under `policy`): the plan is the preview's own for the policy's flags, not
    made again (the Export page drew both; on a queue of 100,000 pairs each plan takes about a second)."""
    eval_split = str(SplitId.parse(eval_split))
    row, plans = _preview_row(ws, eval_split, policy, review.latest_decisions(ws), leakage.load_pairs(ws))
    return pd.DataFrame([row]), plans[policy.flags]


def _preview_row(ws, sid: str, policy: ExportPolicy, decisions: pd.DataFrame, pairs: pd.DataFrame
                 ) -> tuple[dict, dict[str, pd.DataFrame]]:
    """`preview`'s row of one split under `policy`'s keep-list, dedupe, groups and checks at every level of flags,
    and the plan of each level."""
    row, within, plans = {"eval_split": sid}, 0, {}
    for flags in POLICIES:
        p = plans[flags] = plan(ws, sid, replace(policy, flags=flags), decisions=decisions, pairs=pairs)
        row["items"] = len(p)
        row[f"removed at {flags}"] = int(p["removed"].sum())
        if flags == "soft" and not policy.dedupe_within:
            # what keeping duplicates inside the split leaves in (a new user's cleaned split kept both copies of
            # three exact duplicates: the option is off by default, and nothing said so)
            d = plan(ws, sid, replace(policy, flags=flags, dedupe_within=True), decisions=decisions, pairs=pairs)
            within = int(d["removed"].sum() - p["removed"].sum())
    if not policy.dedupe_within:
        row[WITHIN_KEPT] = within  # last: after the policies' counts
    return row, plans


@dataclass
class ExportResult:
    folder: Path
    files: list[Path]
    kept: int
    removed: int
    replaced: str | None = None  # when the folder held an export before this one: that export's time (UTC)

    def written(self) -> str:
        """What was written, as a user counts it: a folder by its images, a file by its name ("150 images in val/
        and removed.csv, provenance.json"); `files` holds a folder tree as one path."""
        folders, names = [], []
        for f in self.files:
            name = f.relative_to(self.folder).as_posix() if f.is_relative_to(self.folder) else str(f)
            if f.is_dir():
                n = sum(1 for p in f.rglob("*") if not p.is_dir())
                folders.append(f"{n} image{'s' if n != 1 else ''} in {name}/")
            else:
                names.append(name)
        return " and ".join(x for x in (", ".join(folders), ", ".join(names)) if x)


ARCHIVE_LIMIT = 512 * 2**20  # bytes an export may hold for a page to offer it as one zip (built in memory on click)


@dataclass(frozen=True)
class ArchivePlan:
    """What a page's zip of a written export holds: (file, its name in the zip) each, their bytes, and the files left
    out (a link in the export that now leads outside every dataset folder: it is not read)."""

    entries: tuple
    size: int
    images: int
    left_out: tuple = ()

    @property
    def whole(self) -> bool:
        """Whether the images fit in one zip (ARCHIVE_LIMIT): else the zip holds the export's small files only."""
        return self.size <= ARCHIVE_LIMIT


def archive_plan(result: ExportResult, roots) -> ArchivePlan:
    """The files of a written export for a zip: its own files, and the images of its folders (read through their
    links) where the file a link leads to lies inside one of `roots` (the datasets' folders) or the export's folder.
    A page offered "these files (zip)" under a list naming the image folder and zipped only removed.csv and
    provenance.json."""
    allowed = [Path(r) for r in roots] + [result.folder]
    entries, left_out, size, images = [], [], 0, 0
    for f in result.files:
        paths = sorted(q for q in f.rglob("*") if not q.is_dir()) if f.is_dir() else [f]
        for q in paths:
            real = q.resolve()
            name = q.relative_to(result.folder).as_posix() if q.is_relative_to(result.folder) else q.name
            if not (real.is_file() and any(catalog.is_inside(real, r) for r in allowed)):
                left_out.append(name)
                continue
            entries.append((str(q), name))
            size += real.stat().st_size
            images += f.is_dir()
    return ArchivePlan(tuple(entries), size, images, tuple(left_out))


def write_archive(plan: ArchivePlan) -> bytes:
    """The zip of an `archive_plan`: every entry where the images fit (`whole`), else the export's own files only.
    Images are stored as they are (JPEG and PNG do not shrink), the rest deflated."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, name in plan.entries:
            if not plan.whole and "/" in name:  # an image in the export's folder: too many to zip in memory
                continue
            kind = zipfile.ZIP_STORED if "/" in name else zipfile.ZIP_DEFLATED
            zf.write(path, arcname=name, compress_type=kind)
    return buf.getvalue()


def _inputs_time(ws, groups: bool = True) -> str:
    """The newest input's modification time, a timestamp that is the same for the same inputs: the items, the
    decisions and the evaluation splits' neighbour tables, and with `groups` the training splits' searches too
    (group links read them). The settings are not inputs here: the thresholds and the encoder are compared on their
    own, and a scan with `--grouping` called an export that reads no group "made from other inputs"."""
    tables = [*ws.neighbors_dir(ws.encoder).glob("*/*.parquet"),  # the evaluation splits' searches
              *(ws.paths.group_pairs(ws.encoder).glob("*/*.parquet") if groups else ())]  # the training splits'
    paths = [ws.items_path, ws.review_db, *tables]
    newest = max((p.stat().st_mtime for p in paths if p.exists()), default=0)
    return pd.Timestamp(newest, unit="s", tz="UTC").isoformat(timespec="seconds")


def output_folder(ws, out: str | os.PathLike, what: str, marker: str) -> Path:
    """`out` as a folder an export or re-split may write into, else InvalidInput: not inside a dataset's folders
    where its images are files (its root, its followed links' folders; the cleaned split's folder replaced the
    dataset's own `val` folder there), nor the folder that holds its manifest or Parquet file (a re-split's
    manifest.csv would replace one; a folder beside it is fine where the images are rows of the file), not inside the
    workspace's own files but its exports, and not a folder that holds other files than an earlier one (`marker`:
    its provenance.json or resplit.json), into which it would mix."""
    folder = Path(out).expanduser()
    where = folder.resolve()
    items = ws.items()
    for name, ds in ws.datasets.items():
        source = Path(ds.source) if ds.source else None
        # its images' folders where they are files of their own (not rows of a Parquet file or of CIFAR's batches)
        files = bool((items.loc[items["dataset"] == name, "row"] < 0).any())
        places = (list(ds.folders) + ([str(source)] if source is not None and source.is_dir() else [])) if files else []
        beside = source is not None and source.is_file() and where == source.parent.resolve()  # its manifest's folder
        if catalog.inside_any(where, places) or beside or (source is not None and where == source.resolve()):
            raise InvalidInput(f"the {what} folder {folder} is where dataset {name!r} keeps its files: writing there would "
                               "replace or mix with them", cli="choose a folder outside every dataset with --out "
                               "(or leave --out out: the workspace's exports folder)",
                               page="Choose a folder outside every dataset's folders")
    if catalog.is_inside(where, Path(ws.path)) and not catalog.is_inside(where, Path(ws.exports_dir)):
        raise InvalidInput(f"the {what} folder {folder} is inside the workspace's own files", cli="choose a folder outside "
                           "the workspace, or leave --out out (its exports folder)", page="Choose another folder")
    if where.exists() and not where.is_dir():
        raise InvalidInput(f"the {what} folder {folder} is a file, not a folder")
    if where.is_dir() and not (where / marker).exists() and any(where.iterdir()):
        raise InvalidInput(f"the {what} folder {folder} already holds other files (it is not an earlier {what}'s: no "
                           f"{marker}), which the {what} would mix with", cli="choose a new or empty folder",
                           page="Choose a new or empty folder")
    return folder


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
    pairs = leakage.load_pairs(ws)  # read once: the plan's and removed.csv's
    p = plan(ws, eval_split, policy, pairs=pairs)
    ds = ws.datasets[SplitId.parse(eval_split).dataset]
    folder = (output_folder(ws, out, "export", "provenance.json") if out
              else ws.exports_dir / f"{eval_split.replace('/', '-')}-{policy.flags}")
    earlier = folder / "provenance.json"  # an export is written over the last one of its split and policy: say so
    replaced = (pd.Timestamp(earlier.stat().st_mtime, unit="s", tz="UTC").isoformat(timespec="seconds")
                if earlier.exists() else None)
    folder.mkdir(parents=True, exist_ok=True)
    kept = p[~p["removed"]]
    split = SplitId.parse(eval_split).split
    layout = formats.get_format(ds.format)
    files = (layout.write_same(kept, ds, folder, split) if fmt == "same"
             else [formats.write_listing(kept, ds, folder, split, fmt)])
    if links == "copy" and fmt == "same" and layout.writes_images:
        links = None  # the split's own tree is a copy of the images already: a new user got two (val/, images/val/)
    # one row per removed image, naming every check that flags it (a spreadsheet filters "check contains …"); the
    # evidence columns are those of the first check
    removed = p[p["removed"]][["item_id", "key", "uri", "label", "checks", "reasons", "matches", "similarity", "degree",
                               "decision", "reviewer", "note"]].rename(
        columns={"item_id": "item", "checks": "check", "reasons": "reason", "matches": "matched_training_items"})
    if ws.score != "similarity":  # the score in force is named as such, beside the raw cosine of the same pair
        best = pairs.sort_values("score", ascending=False, kind="stable").drop_duplicates("eval_item_id")
        at = removed.columns.get_loc("similarity")
        removed = removed.rename(columns={"similarity": f"{ws.score}_score"})
        removed.insert(at + 1, "raw_similarity", removed["item"].map(best.set_index("eval_item_id")["similarity"]))
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
        "thresholds": {"hard": hard, "soft": soft}, "score": ws.score,
        "policy": {"flags": policy.flags, "keep": sorted(policy.keep), "dedupe_within": policy.dedupe_within,
                   "leaking_groups": "group" in policy.selected, "checks": policy.selected,
                   "confirmed_leaks": "always removed", "rejected_pairs": "never remove their item"},
        "counts": {"items": int(len(p)), "kept": int(len(kept)), "removed": int(p["removed"].sum()),
                   "by_reason": {str(k): int(v) for k, v in p.loc[p["removed"], "reason"].str.split(" of ").str[0].value_counts().sort_index().items()}},
        "inputs_as_of": _inputs_time(ws, groups="group" in policy.selected),
        **(provenance or {}),
    }
    atomic_write_text(folder / "provenance.json", json.dumps(prov, indent=2, sort_keys=True) + "\n")
    files.append(folder / "provenance.json")
    return ExportResult(folder, files, int(len(kept)), int(p["removed"].sum()), replaced)


def _link_folder(kept: pd.DataFrame, ds, dest: Path, mode: str) -> Path:
    """A folder of symlinks (or copies) of the kept files, in their original layout (rows inside containers have no
    file of their own)."""
    root = Path(ds.root)
    # only files inside the dataset's folders now (`catalog.inside_any`): a link re-pointed after `add` is not copied
    return link_files(((uri, os.path.relpath(uri, root)) for uri, row in zip(kept["uri"], kept["row"])
                       if row < 0 and catalog.inside_any(uri, ds.folders)), dest, mode)
