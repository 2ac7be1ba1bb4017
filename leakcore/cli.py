"""`leakcore` command line: the same verbs as the dashboard, for terminals and CI."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from tqdm import tqdm

log = logging.getLogger(__name__)


# what one step of a stage is, by the stage's first word(s): the unit its bar counts and its rate is in
_UNITS = (("probe", "img"), ("embed", "img"), ("search", "img"), ("spectra", "img"), ("derive", "img"),
          ("metadata", "img"), ("second model", "img"), ("blocks of", "task"), ("verify", "pair"),
          ("find the collection's", "pair"), ("transforms", "edit"), ("edit and search", "edit"),
          ("regions", "region"), ("occlusion", "class"), ("permutations", "permutation"))


def _unit(stage: str) -> str:
    return next((unit for prefix, unit in _UNITS if stage.startswith(prefix)), "step")


class _Bars:
    """One tqdm bar per running stage, for progress callbacks of the form (stage, done, total).

    A stage's bar counts its own unit (images, pairs, edits) and is printed once: it closes when the stage reports
    done == total, and a later stage of the same name opens a new one. A stage whose first report comes after its
    first step (a batch already embedded) is timed from the previous report, so its rate is not that of an instant.
    A single-step stage shows no rate: one step per its duration says nothing."""

    def __init__(self, file=None):
        import time

        self._clock = time.perf_counter
        self.file = file or sys.stderr  # looked up per instance: a default bound at import would outlive redirections
        self.bars: dict[str, tqdm] = {}
        self.last = self._clock()  # when anything last reported: where a late-reporting stage's work began

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = self._clock()
        bar = self.bars.get(stage)
        if bar is not None and bar.total != total:  # the same name for another piece of work: a bar of its own
            self._close(stage)
            bar = None
        if bar is None:
            fmt = "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}]" if total <= 1 else None
            bar = self.bars[stage] = tqdm(total=total, desc=stage, unit=_unit(stage), leave=True, file=self.file,
                                          dynamic_ncols=True, bar_format=fmt, smoothing=0)  # rate: the average
            if done:
                bar.start_t -= now - self.last  # its first steps ran since the previous report
                bar.last_print_t = bar.start_t
        self.last = now
        if done >= total:  # closing prints the final line: an update first would print it twice in a log
            bar.n = done
            self._close(stage)
        elif done > bar.n:
            bar.update(done - bar.n)

    def _close(self, stage: str) -> None:
        bar = self.bars.pop(stage, None)
        if bar is not None:
            bar.close()

    def close(self) -> None:
        for stage in list(self.bars):
            self._close(stage)


def _project(path: str, *, create: bool = False):
    from leakcore.api import Project

    return Project.create(path) if create else Project.open(path)


def cmd_init(args) -> int:
    from leakcore.api import Project

    ws = Project.create(args.dir, encoder=args.encoder, k=args.k)
    settings = ws.settings
    print(f"workspace ready at {ws.path} (encoder {settings.encoder}, k={settings.k})")
    return 0


def print_summary(summary: dict, out=None) -> None:
    out = out or sys.stdout  # looked up per call: a default bound at import time would outlive redirections
    print(f"{summary['items']} items", file=out)
    for s in summary["splits"]:
        labels = ", ".join(f"{k} {v}" for k, v in s["top_labels"].items())
        more = f" (+{s['labels'] - len(s['top_labels'])} more)" if s["labels"] > len(s["top_labels"]) else ""
        print(f"  {s['dataset']}/{s['split']:<12} role={s['role']:<5} items={s['items']:>7}  unreadable={s['unreadable']:>5}  "
              f"labels={s['labels']}" + (f" [{labels}{more}]" if labels else ""), file=out)
    if summary.get("groups") or summary.get("timed"):
        print(f"groups: {summary.get('groups', 0)}; items with a time: {summary.get('timed', 0)}", file=out)
    bad_times = summary.get("unparsed_times", {})
    if bad_times.get("count"):
        print(f"timestamps that could not be parsed: {bad_times['count']} (kept, without a time), e.g.", file=out)
        for line in bad_times["examples"]:
            print(f"  {line}", file=out)
    if summary.get("tiny"):
        print(f"read, but under {summary['tiny_side']} px on a side (too small for their copies to be told apart): "
              f"{summary['tiny']}", file=out)
    skipped = summary.get("skipped") or {}
    if skipped:
        print(f"skipped as not images by their name: {sum(skipped.values())} ("
              + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items(), key=lambda kv: -kv[1])[:6]) + ")", file=out)
    if summary["unreadable"]:
        print("unreadable by reason:", file=out)
        for reason, n in summary["unreadable"].items():
            print(f"  {reason}: {n}", file=out)
        if summary.get("links_not_followed"):
            print(f"  ({summary['links_not_followed']} of them are links to files elsewhere: add again with "
                  "--follow-links to read them)", file=out)
    else:
        print("unreadable: 0", file=out)


def _same_files_note(summary: dict) -> str | None:
    """The note `add` prints where the new dataset's images are byte for byte another dataset's of the workspace."""
    same = summary.get("same_files_as") or {}
    if not same:
        return None
    return ("note: " + ", ".join(f"{n} of its images are dataset {d}'s, byte for byte" for d, n in same.items())
            + ": if it is a re-split or a copy of that dataset, add it to a new workspace (scanned beside it, each "
              "image is its own copy's leak)")


def cmd_add(args) -> int:
    from leakcore.errors import IngestError

    if not Path(args.source).exists():  # said before a workspace is made for it (an empty one was left behind)
        raise IngestError(f"source {args.source} does not exist")
    project = _project(args.dir, create=True)
    bars = _Bars()
    summary = project.add(
        args.dataset, args.source, fmt=args.format, roles=args.role, root=args.root, split=args.split,
        encoder=args.encoder, progress=lambda d, t: bars("probe " + args.dataset, d, t), max_pixels=args.max_pixels,
        group_from=args.group_from, group_level=args.group_level, follow_links=args.follow_links,
    )
    bars.close()
    print_summary(summary)
    note = _same_files_note(summary)
    if note:
        print(note)
    return 0


def cmd_encoders(args) -> int:
    from leakcore.api import list_encoders

    rows = list_encoders()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        state = "available" if r["available"] else "unavailable"
        thresholds = (f"hard={r['hard']:.4f} soft={r['soft']:.4f}" if r["calibrated"]
                      else "thresholds: none yet, calibrate first")
        print(f"{r['name']:<15} {r['family']:<20} dim={r['dim']:<5} size={r['input_size']:<4} {thresholds}  {state}")
        if not r["available"]:
            print(f"{'':<15} why not: {r['why_not']}")
    return 0


def cmd_scan(args) -> int:
    project = _project(args.dir)
    # only the options given: a plan with none given changes nothing and is anyone's to read (a viewer's
    # `scan --plan` was refused as a change of the scan's settings)
    options = {k: v for k, v in {"input_size": args.input_size, "weights": args.weights}.items() if v is not None} or None
    if args.plan:
        plan = project.scan(encoder=args.encoder, k=args.k, flip_queries=args.flip_queries, encoder_options=options,
                            grouping=args.grouping, verify=args.verify, plan_only=True)
        print(plan.describe().to_string(index=False))
        print(f"{len(plan.todo)} of {len(plan.jobs)} jobs to do")
        note = project.scores.verification_off_note()
        if note:
            print(note)
        _say_files(project, project.images.files_since_added(), planned=True)
        return 0
    bars = _Bars()
    result = project.scan(progress=bars, batch_size=args.batch_size, encoder=args.encoder, k=args.k,
                          flip_queries=args.flip_queries, encoder_options=options, grouping=args.grouping,
                          verify=args.verify, ray=args.ray, workers=args.workers)
    bars.close()
    _say_files(project, result.refreshed or {})
    fm = project.scores.fused_model() if project.settings.verify else None
    note = None if fm is not None else project.scores.verification_off_note()
    if note:
        print(note)
    print(f"scan with {result.encoder}: {len(result.pairs_searched)} split pairs searched, "
          f"{len(result.pairs_skipped)} unchanged, {result.seconds:.1f}s" + (" (verification included)" if fm else ""))
    if fm is not None:  # say what verification did and whether the rates below use it
        print(f"verification: candidate pairs (raw similarity >= {fm.candidate:.4f}, and each image's nearest below "
              "it whose thumbnails agree as one photograph) checked on their pixels; "
              f"fused score hard {fm.hard:.4f}, soft {fm.soft:.4f}")
        # the pairs read and scored once, for this table and the report below, where the fused score is in force
        pairs = project.scores.pairs() if project.settings.score == "fused" else None
        print(project.scores.verification_table(fm, pairs).to_string(index=False))
        print("(each score's own flags, before curator decisions; the rates below apply the decisions)")
        if project.settings.score == "fused":
            print("the rates below use the fused score")
        else:
            print(f"the rates below use the raw similarity; to flag by the fused score: "
                  f"leakcore verify {args.dir} --use fused")
        return _report(project, pairs=pairs)
    return _report(project)


def _say_files(project, files: dict, planned: bool = False) -> None:
    """What a scan found on disk first (`ScanResult.refreshed`), or, `planned`, what it will find
    (`Images.files_since_added`): files changed, gone, and new under a folder dataset."""
    changed, gone = files.get("changed", 0), files.get("gone", 0)
    if changed:
        have = ("have" if changed != 1 else "has") if planned else "had"
        print(f"{changed} image file{'s' if changed != 1 else ''} {have} changed on disk "
              f"since {'they were' if changed != 1 else 'it was'} added: "
              + ("a scan reads them again first, and embeds and searches them as they are now (the jobs above are "
                 "planned on the files as they were)" if planned else
                 f"read again, and scanned as {'they are' if changed != 1 else 'it is'} now"))
    if gone:
        print(f"{gone} image file{'s' if gone != 1 else ''} {'are' if gone != 1 else 'is'} gone from disk since "
              f"{'they were' if gone != 1 else 'it was'} added: "
              + (f"a scan lists {'them' if gone != 1 else 'it'} as missing, and no longer checks "
                 f"{'them' if gone != 1 else 'it'}" if planned else
                 "listed as missing, and no longer checked"))
    for name, n in (files.get("new") or {}).items():
        source = project.workspace.datasets[name].source
        print(f"{n} new image file{'s' if n != 1 else ''} under {source} {'are' if n != 1 else 'is'} not in the "
              f"workspace yet, so not checked: `leakcore add {project.path} --dataset {name} --source {source}` "
              "adds them (run it before a scan in CI)")


def _report(project, *, as_json: bool = False, bounds: dict | None = None, use_decisions=True, hard=None, soft=None,
            fail_on_shortcut=False, document=None, top: int | None = None, pairs=None) -> int:
    """Print the rates (or the JSON report) and apply the CI gate: `bounds` is {check: {degree: percent}}; in the
    terminal, the `top` (10) strongest flagged images of each evaluation split are named with their match. `pairs`:
    the stored pairs already scored by the score in force (`project.scores.pairs()`), else read here."""
    from leakcore.api import identical_within_split, matrices

    if as_json:
        import pandas as pd

        document = document or project.report_document(hard=hard, soft=soft, use_decisions=use_decisions)
        data = document.data
        print(document.to_json())
        table = pd.DataFrame(data["rates"])
    else:
        ci = project.checks.inputs(hard=hard, soft=soft, use_decisions=False)
        source = project.scores.thresholds().source if hard is None and soft is None else "given here"
        print(f"encoder {project.workspace.encoder}, {project.settings.score_words}: hard >= {ci.hard:.4f}, soft >= {ci.soft:.4f} ({source})"
              + (" (curator decisions applied where they exist)" if use_decisions else "")
              + "; the soft counts include the hard ones")
        # the pairs read and scored once for every check and list below (the fused score's were scored five times)
        pairs = project.scores.pairs() if pairs is None else pairs
        table = project.checks.rates(hard=hard, soft=soft, use_decisions=use_decisions, pairs=pairs)
        if table.empty:
            print("no results yet: run `leakcore scan`")
        items = project.workspace.items()
        unread = (items[items["status"].astype(str) != "ok"].assign(split_id=lambda d: d["dataset"].astype(str) + "/"
                  + d["split"].astype(str))["split_id"].value_counts())  # per split: images no check read
        for i, (check, part) in enumerate(table.groupby("check", sort=False)):
            if i:  # the headline check first, as before; each other one in its own words, its numbers in a sentence
                w = project.checks.words(check)
                print(f"\n{w.title or check}: evaluation images that {w.verdict or 'it flags'}\n"
                      f"  hard: {w.hard}; soft (hard included): {w.soft}")
                for r in part.itertuples():
                    print(f"  {r.eval_split:<24} vs {r.train_split:<26} {r.soft:>6} of {r.n_eval:>7} images "
                          f"({100 * r.soft_rate:.2f}%): hard {r.hard} ({100 * r.hard_rate:.2f}%), soft {r.soft}")
                continue
            for r in part.itertuples():
                # images the scan could not read are not in n: a rate over a few read images is no all-clear (a
                # tree of links read as 1 image of 163 reported 0% leakage)
                missing = int(unread.get(r.eval_split, 0))
                print(f"  {r.eval_split:<24} vs {r.train_split:<26} n={r.n_eval:>7}  hard {r.hard:>6} ({100 * r.hard_rate:6.2f}%)"
                      f"  soft {r.soft:>6} ({100 * r.soft_rate:6.2f}%)"
                      + (f"  ({missing} more not read: not checked, listed below)" if missing else ""))
        mats = matrices(table)
        if not mats["soft_rate"].empty:
            for kind in ("hard", "soft"):
                print(f"\n{kind} leakage matrix (%, rows = training sources, columns = evaluation splits; * = same dataset)")
                shown = (100 * mats[f"{kind}_rate"]).round(2).astype(str) + mats["intra"].map(lambda x: "*" if x else "")
                print(shown.to_string())
        _strongest(project, items, pairs, hard=hard, soft=soft, use_decisions=use_decisions,
                   top=10 if top is None else top)
        for dataset, a in project.audits.shortcut_results().items():
            print(f"\nshortcut audit of {dataset} ({a['created']}): " + "; ".join(a["verdict"]))
        bad = items[items["status"].astype(str) != "ok"].sort_values("item_id")
        if len(bad):  # not checked for leakage: named here as in the HTML report (a reader saw them nowhere else)
            print(f"\nfiles no check could read (not checked; an export leaves them out): {len(bad)}")
            for r in bad.head(5).itertuples():
                print(f"  {r.item_id}: {r.reason}")
            if len(bad) > 5:
                print(f"  … and {len(bad) - 5} more (`leakcore report WS --html` names them all)")
        same = identical_within_split(items)  # a new user's copies inside training were seen nowhere
        same = same[same.duplicated(["dataset", "split", "sha256"])]  # each set but its first
        if len(same):
            counts = (same["dataset"].astype(str) + "/" + same["split"].astype(str)).value_counts().sort_index()
            print("\nbyte-identical copies inside a split (the same file again; a re-split keeps each set on one side): "
                  + ", ".join(f"{s} {n}" for s, n in counts.items()) + " (`leakcore report WS --html` lists them)")
        future = project.audits.future_training()
        if len(future):
            print(f"\ntraining on the future: {len(future)} training images are dated after the cutoff "
                  f"{project.workspace.group_settings['cutoff']} (e.g. {', '.join(future['item_id'].head(3))})")
    failures = project.checks.gate(table, bounds or {})
    unscanned = project.checks.unscanned()
    if unscanned:  # their rates read 0%: an added, never scanned workspace was "clean" and passed the gate
        said = ", ".join(f"{e} vs {t}" for e, t in unscanned[:4]) + (" …" if len(unscanned) > 4 else "")
        print(f"NOT SCANNED: {said} (no search stored, so their rates read 0%): run `leakcore scan {project.path}`",
              file=sys.stderr)
        if bounds or fail_on_shortcut:
            failures.insert(0, f"not scanned: {said}")
    elif project.checks.verification_pending():  # a scan stopped before its fit: the raw similarity's rates, said
        print(f"note: verification is on but not done yet (a scan stopped before it), so these rates use the raw "
              f"similarity; `leakcore scan {project.path}` finishes it", file=sys.stderr)
    if not table.empty:
        for check in bounds or {}:
            if not (table["check"] == check).any():
                print(f"note: the {check} check has no rates in this workspace (nothing it found to bound)",
                      file=sys.stderr)
    if fail_on_shortcut and not project.audits.shortcut_results():
        print("note: no shortcut audit is stored, so --fail-on-shortcut has nothing to check "
              "(run `leakcore shortcuts WS` first)", file=sys.stderr)
    if fail_on_shortcut:
        for dataset, a in project.audits.shortcut_results().items():
            f = a["found"]
            if f["metadata"] or f["marker"]:
                failures.append(f"{dataset}: shortcut audit found " + " and ".join(
                    x for x in ("a metadata shortcut" if f["metadata"] else "", f"a {f['marker']} marker" if f["marker"] else "") if x)
                    + (" that the benchmark rewards" if f["transfers"] else ""))
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    if bounds and not failures:  # a passing gate says what it held to (a CI log showed nothing either way)
        held = "; ".join(f"{check} {degree} <= {pct:g}%" for check, by in bounds.items() for degree, pct in by.items())
        print(f"PASS every evaluation split within the bounds: {held}", file=sys.stderr)
    return 1 if failures else 0


def _strongest(project, items, pairs, *, hard, soft, use_decisions: bool, top: int) -> None:
    """The flagged evaluation images of each split, strongest first, each with its best training match, score and
    degree (a new user's terminal report gave rates only, and `--top` promised findings it did not show). `items`: the
    workspace's item table and `pairs` the scored pairs, both read by the caller."""
    from leakcore.api import listed_once

    if top <= 0:
        return
    f = project.checks.findings("similarity", hard=hard, soft=soft, use_decisions=use_decisions, pairs=pairs)
    if f.empty:
        return
    f = f.assign(within=f["train_split"] == f["eval_split"])
    f = f[listed_once(f)].sort_values(["within", "score"], ascending=[True, False], kind="stable")
    f = f.drop_duplicates(["eval_split", "eval_item_id", "within"])
    live = project.decisions.latest() if use_decisions else None
    who = {} if live is None else {k: r for r in live.itertuples() for k in ((r.eval_item_id, r.train_item_id),
                                                                            (r.train_item_id, r.eval_item_id))}
    differ = project.decisions.disagreements() if use_decisions else None
    # a flagged pair whose two images carry different labels says so (a new user could not tell which of the flags
    # were the label conflicts the report counted)
    conflicts = project.checks.findings("label_conflict", hard=hard, soft=soft, use_decisions=use_decisions,
                                        pairs=pairs)
    label = items.drop_duplicates("item_id").set_index("item_id")["label"] if len(conflicts) else {}
    labels_of = {(e, t): f"{label.get(e)!r} / {label.get(t)!r}"
                 for e, t in zip(conflicts["eval_item_id"], conflicts["train_item_id"])}
    print(f"\nflagged images, strongest first ({project.settings.score_words}; `leakcore report --html` shows them):")
    for (split, within), part in f.groupby(["eval_split", "within"], sort=True):
        print(f"  {split}, " + ("pairs of duplicates inside the split" if within else "with a match in training")
              + f": {len(part)}")
        for r in part.head(top).itertuples():
            d = who.get((r.eval_item_id, r.train_item_id))
            said = (f", curator: {r.decision}" + (f" ({d.reviewer})" if d is not None else "")
                    + (f", note: {d.note}" if d is not None and isinstance(d.note, str) and d.note.strip() else "")
                    if isinstance(r.decision, str) else "")
            other = labels_of.get((r.eval_item_id, r.train_item_id))
            said += f", labels differ: {other}" if other else ""
            print(f"    {r.eval_item_id}  ~ {r.train_item_id}  {r.degree} {r.score:.4f}{said}")
        if len(part) > top:
            print(f"    … and {len(part) - top} more (--top N lists more)")
    if differ is not None and len(differ):
        pairs = differ.assign(key=[tuple(sorted(p)) for p in zip(differ["eval_item_id"], differ["train_item_id"])])
        print(f"\npairs decided differently by reviewers (the latest in force): {pairs['key'].nunique()}")
        for (a, b), rows in list(pairs.groupby("key", sort=False))[:top]:
            print(f"    {a}  ~ {b}: " + "; ".join(f"{r.reviewer} {r.decision}" for r in rows.itertuples()))


def cmd_report(args) -> int:
    project = _project(args.dir)
    document = None
    if args.json or args.html:  # one data structure for both: the JSON printed and the page written agree
        import time

        from leakcore.api import ImpactRequest, LeakSource

        impact = None
        if args.predictions or args.probe:
            source = LeakSource.LIST if args.leaks else LeakSource.FLAGS if args.auto_only else LeakSource.DECISIONS
            impact = ImpactRequest(args.impact_split, tuple(args.predictions or ()), tuple(args.probe or ()), source,
                                   args.leaks)
        t0 = time.perf_counter()
        document = project.report_document(hard=args.hard, soft=args.soft, use_decisions=not args.auto_only,
                                           top=args.top, impact=impact)
        if args.html:
            size = document.write_html(args.html)
            if document.pictures_unreadable:
                print(f"warning: {len(document.pictures_unreadable)} of the findings' images could not be read now "
                      f"(moved, deleted or damaged since the scan; the page says so), e.g. "
                      f"{document.pictures_unreadable[0]}", file=sys.stderr)
            print(f"wrote {args.html}: {size / 2**20:.2f} MB, self-contained, in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr if args.json else sys.stdout)
    elif args.predictions or args.probe:
        from leakcore.errors import InvalidInput

        raise InvalidInput("predictions and probes add the impact table to the full report",
                           cli="add --html FILE and/or --json")
    return _report(project, as_json=args.json, document=document, bounds=_bounds(project, args),
                   use_decisions=not args.auto_only, hard=args.hard, soft=args.soft,
                   fail_on_shortcut=args.fail_on_shortcut, top=args.top)


def _bounds(project, args) -> dict:
    """`--fail-above CHECK[:hard]=PCT`, with the older per-check flags as aliases of it."""
    specs = list(args.fail_above or ())
    for flag, spec in (("fail_above_hard", "similarity:hard"), ("fail_above_soft", "similarity"),
                       ("fail_above_group", "group"), ("fail_above_temporal", "temporal")):
        if getattr(args, flag) is not None:
            specs.append(f"{spec}={getattr(args, flag)}")
    return project.checks.parse_bounds(specs)


def cmd_calibrate(args) -> int:
    project = _project(args.dir)
    bars = _Bars()
    result = project.calibrate(args.collection, encoder=args.encoder, queries=args.queries, target_fpr=args.target_fpr,
                               progress=bars, apply=args.apply)
    bars.close()
    table = project.scores.robustness_table(result)
    print(f"robustness of {result.encoder} on {result.collection} ({result.settings['queries']} queries): top-1 accuracy")
    for r in table.itertuples():
        print(f"  {r.family:<13} {r.transform:<10} {100 * r.top1:6.1f}%")
    print("AUC (positive vs hardest negative): " + ", ".join(f"{r.family} {r.auc:.4f}" for r in result.auc.itertuples()))
    print(f"chosen thresholds: hard >= {result.hard:.4f}, soft >= {result.soft:.4f} (target FPR {args.target_fpr})")
    if args.apply:
        print("applied to project.toml: pages and `leakcore report` use them now")
    else:
        print("not applied: re-run with --apply, or use the Thresholds page")
    return 0


def cmd_impact(args) -> int:
    import pandas as pd

    from leakcore.api import ImpactRequest, LeakSource

    project = _project(args.dir)
    source = LeakSource.LIST if args.leaks else LeakSource.FLAGS if args.auto_only else LeakSource.DECISIONS
    result = project.impact(ImpactRequest(args.split, tuple(args.predictions or ()), tuple(args.probe or ()), source,
                                          args.leaks, args.random, args.seed))
    table = result.table
    pd.set_option("display.width", 200)
    print(f"{result.split}: {result.models} model(s), leaked set from {result.source}: {result.hard} hard, {result.soft} soft")
    for note in result.notes:
        print(f"note: {note}")
    print(f"\nmean over {result.mean_words}; accuracies in %, gains in percentage points (the random interval and p "
          "of that mean; p two-sided, against random subsets of the same size):")
    print(_in_percent(result.summary()).to_string(index=False))
    soft = table[table["subset"] == "soft-leaked"].set_index("model")
    if not soft.empty:
        print("\nper model, soft-leaked subset:")
        print(_in_percent(soft[["n", "accuracy", "gain", "random_low", "random_high", "p_value"]]).to_string())
    if args.csv:
        table.to_csv(args.csv, index=False)
        print(f"\nfull table written to {args.csv}")
    return 0


def _in_percent(frame):
    """An impact table as the page and the HTML report show it: accuracies in %, gains in percentage points, p as
    it is (the CLI printed 0.9585 where they show 95.85%)."""
    out = frame.copy()
    for col in out.columns:
        if col in ("accuracy", "random_mean", "random_low", "random_high"):
            out[col] = out[col].map(lambda v: "" if v != v else f"{100 * v:.2f}")
        elif col == "gain":
            out[col] = out[col].map(lambda v: "" if v != v else f"{100 * v:+.2f}")
        elif col == "p_value":
            out[col] = out[col].map(lambda v: "" if v != v else f"{v:.4f}")
    return out


def cmd_export(args) -> int:
    project = _project(args.dir)
    policy = project.exports.policy(args.policy, Path(args.keep).read_text() if args.keep else None,
                                    args.dedupe_within, args.groups, also=args.also_remove or ())
    from leakcore.api import WITHIN_KEPT

    preview = project.exports.preview([args.split], policy)  # a split it lacks, or a folder it may not write
    if args.out:  # into, is said before anything is printed (a new user read the preview's heading over an error)
        project.exports.check_folder(args.out)
    print("items each policy removes (before writing):")
    print(preview.to_string(index=False))
    result = project.exports.write(args.split, policy, fmt=args.format, out=args.out, links=args.links)
    print(f"\nkept {result.kept}, removed {result.removed}; wrote"
          + (f" over the export of {result.replaced} in that folder:" if result.replaced else ":"))
    for f in result.files:
        print(f"  {f}")
    kept = int(preview[WITHIN_KEPT].iloc[0]) if WITHIN_KEPT in preview and len(preview) else 0
    if kept:
        print(f"note: near-duplicates of another image inside {args.split}, kept: {kept} (--dedupe-within keeps one "
              "of each; each copy counts twice in a test score)")
    return 0


def cmd_coverage(args) -> int:
    from leakcore.api import ImageSet

    project = _project(args.dir)
    a, b = ImageSet(args.a, args.a_where), ImageSet(args.b, args.b_where)
    bars = _Bars()
    result = project.audits.coverage(a, b, k=args.k, bootstrap=args.bootstrap, progress=bars)
    spectral = project.audits.spectra(a, b, size=args.size, progress=bars) if args.spectra else None
    bars.close()
    if args.json:
        data = {"a": result.a, "b": result.b, "k": result.k, "settings": result.settings,
                "metrics": result.metrics.to_dict("records")}
        if spectral is not None:
            data["spectra"] = {"summary": spectral.summary, "frequencies": spectral.frequencies.tolist(),
                               "a_mean": spectral.a_mean.tolist(), "b_mean": spectral.b_mean.tolist(),
                               "deviation": spectral.deviation.tolist()}
        print(json.dumps(data, indent=2))
        return 0
    print(f"A = {result.a} ({result.settings['a_images']} images), B = {result.b} ({result.settings['b_images']} images), "
          f"k = {result.k}, encoder {result.settings['encoder']}")
    for r in result.metrics.itertuples():
        print(f"  {r.metric:<10} {r.value:6.3f}  [{r.low:.3f}, {r.high:.3f}]  {r.meaning}")
    if args.show:
        far = result.b_scores.sort_values("realism").head(args.show)
        print("\nB images least like A (lowest realism; < 1 is outside A's manifold):")
        for r in far.itertuples():
            print(f"  {r.item_id:<40} realism {r.realism:5.2f}  nearest A {r.nearest_item_id} ({r.nearest_similarity:.3f})")
        lonely = result.a_scores[~result.a_scores["covered"]]
        print(f"\nA images no B image covers: {len(lonely)} of {len(result.a_scores)}"
              + (f" (e.g. {', '.join(lonely['item_id'].head(args.show))})" if len(lonely) else ""))
    if spectral is not None:
        s = spectral.summary
        print(f"\nspectra at {s['size']} px: B's high-frequency half deviates from A's by {s['high_band_deviation']:+.2f} "
              f"standard deviations on average (negative: B lacks fine detail, as upsampled images do)")
        top = spectral.b_scores.sort_values("spectral_score", ascending=False).head(args.show)
        for r in top.itertuples():
            print(f"  {r.item_id:<40} spectral score {r.spectral_score:5.2f}  high band {r.high_band:+.2f}")
    return 0


def cmd_verify(args) -> int:
    project = _project(args.dir)
    if args.use is None or args.use == "fused":
        bars = _Bars()
        project.verify(refit=args.refit, queries=args.queries, progress=bars)
        bars.close()
    if args.use is not None:
        project.configure(score=args.use)
    fm = project.scores.fused_model()
    if fm is None:
        print("no fused model yet: run `leakcore verify DIR`")
        return 0
    m, n = fm.meta, fm.fitting_counts()
    print(f"fused score ({fm.encoder}): fitted on {n['pairs']} pairs ({n['suite']} of edited copies of {n['queries']} "
          f"training images, each against its original and its nearest other image"
          + (f"; {n['lookalikes']} of the collection's look-alikes" if n["lookalikes"] else "")
          + f") + {n['decisions']} curator decisions; AUC on them {m['auc']:.4f} (raw similarity {m['raw_auc']:.4f})")
    print(f"candidate pairs: raw similarity >= {fm.candidate:.4f}; fused thresholds hard {fm.hard:.4f}, soft {fm.soft:.4f}")
    print(project.scores.verification_table(fm).to_string(index=False))
    score = project.settings.score
    print(f"pairs are scored by: {score}" + ("" if score == "fused" else " (use the fused score: --use fused)"))
    return 0


def cmd_groups(args) -> int:
    project = _project(args.dir)
    if args.calibrate:
        bars = _Bars()
        cal = project.calibrate(args.calibrate, kind="groups", queries=args.queries, progress=bars)
        bars.close()
        print(f"same-source threshold on {args.calibrate} ({cal['sources']} images, their overlapping patches and pan "
              f"frames): {cal['threshold']:.4f} at {100 * cal['false_positive_rate']:.2f}% false positives; "
              f"patches linked {100 * cal['patch_recall']:.1f}%, neighbouring frames {100 * cal['frame_recall']:.1f}%; "
              f"candidate links from {cal['candidate_threshold']:.4f} (99.5% of the links; the pixels decide)")
        if args.threshold is None:
            args.threshold = cal["candidate_threshold"]
    if args.threshold is not None or args.window is not None or args.cutoff is not None:
        project.configure(group_threshold=args.threshold, group_window_s=args.window, group_cutoff=args.cutoff)
    bars = _Bars()
    groups = project.groups(use_decisions=not args.auto_only, progress=bars)
    bars.close()
    g = groups.groups
    cand = groups.candidates
    leaking = g[g["leaks"]]
    future = project.audits.future_training()
    if args.json:
        print(json.dumps({"threshold": groups.threshold, "train_searched": groups.train_searched,
                          "candidate_links": int(len(cand)), "verified_links": int(cand["edge"].sum()),
                          "guard": groups.guard,
                          "groups": int(len(g)), "cross_split": int(g["cross_split"].sum()),
                          "leaking": int(len(leaking)), "sizes": g["size"].value_counts().sort_index().to_dict(),
                          # every one unless --show says how many (a script read 10 of 22 with no word of the rest)
                          "leaking_groups": [dict(r, members=_members(groups, r["group_id"])) for r in (
                              leaking if args.show is None else leaking.head(args.show)).to_dict("records")],
                          "training_after_cutoff": int(len(future))}, indent=2, default=str))
        return 0
    print(f"candidate links at similarity >= {groups.threshold:.4f} ({project.settings.encoder}); training splits searched "
          f"against each other: {'yes' if groups.train_searched else 'no (scan with --grouping to link training images too)'}")
    skipped = cand["method"] == "unmeasured"
    reasons = cand.loc[~cand["edge"] & ~skipped, "reason"].value_counts()
    print(f"{int(cand['edge'].sum())} of {len(cand)} candidate links share a region (the pixels agree) and link images; "
          f"{int(skipped.sum())} not measured (their images are linked already); rejected: "
          + (", ".join(f"{n} {r}" for r, n in reasons.head(4).items()) if len(reasons) else "none"))
    print(f"{len(g)} groups of two or more images ({int(g['size'].sum()) if len(g) else 0} images); "
          f"{int(g['cross_split'].sum())} span splits; {len(leaking)} reach from evaluation into training data")
    sizes = g["size"].value_counts().sort_index()
    if len(sizes):
        print("sizes: " + ", ".join(f"{n}×{c}" for n, c in sizes.head(12).items()) + (" …" if len(sizes) > 12 else ""))
    if len(leaking):
        print("groups reaching from evaluation into training, each with its evaluation images:")
    show = 10 if args.show is None else args.show
    for r in leaking.head(show).itertuples():
        print(f"  {r.group_id:<44} size {r.size:>4}  {r.splits}  (linked by {r.links})")
        m = _members(groups, r.group_id)
        shown = m["eval"][:3]
        print("    evaluation: " + ", ".join(shown) + (f" … and {len(m['eval']) - 3} more" if len(m["eval"]) > 3 else "")
              + f"; training images: {len(m['train'])}")
    if len(leaking) > show:
        print(f"  … and {len(leaking) - show} more groups (--show N lists more)")
    if len(future):
        print(f"training on the future: {len(future)} training images after {project.settings.group_cutoff}")
    if groups.guard:
        print(f"warning: {groups.guard}", file=sys.stderr)
    return 0


def _members(groups, group_id: str) -> dict:
    """A group's evaluation and training images, by item id (a new user's listing named a training file only)."""
    m = groups.membership[groups.membership["group_id"] == group_id].sort_values("item_id")
    return {"eval": m.loc[m["role"] == "eval", "item_id"].astype(str).tolist(),
            "train": m.loc[m["role"] != "eval", "item_id"].astype(str).tolist()}


def cmd_resplit(args) -> int:
    from leakcore.api import resplit_other_datasets_words, resplit_pairs_words

    project = _project(args.dir)
    result = project.resplit(args.dataset, test_size=args.test_size, stratify=None if args.stratify == "none" else args.stratify,
                             time_cutoff=args.time_cutoff, seed=args.seed, out=args.out, write=not args.dry_run,
                             links=args.links)
    s = result.summary
    print(f"{s['dataset']}: {s['method']}")
    print(f"  train {s['train']}, test {s['test']} (test share {100 * s['test_share']:.1f}%, target "
          f"{100 * s['target_test_share']:.1f}%); {s['groups']} groups, {s['multi_item_groups']} of several images "
          f"(largest {s['largest_group']}); groups across splits: {s['cross_split_groups']}")
    print(f"  {resplit_pairs_words(s)}")
    if s.get("unreadable_left_out"):
        print(f"  left out, no check could read them: {s['unreadable_left_out']} files")
    if s.get("test_duplicate_pairs"):
        print(f"  note: near-duplicate pairs both in test (each copy counts twice in a test score): "
              f"{s['test_duplicate_pairs']}; the manifest's group column names each such group")
    if resplit_other_datasets_words(s):
        print(f"  note: {resplit_other_datasets_words(s)}")
    if s.get("label_conflicts_kept"):
        print(f"  note: one picture under two labels, kept on one side: {s['label_conflicts_kept']} (a re-split cannot "
              "fix a label: the label_conflict check lists them)")
    if not s.get("train_searched", True):
        print(f"  note: training images were not compared with one another (`leakcore scan {args.dir} --grouping` "
              "does): near-duplicates inside training may fall on both sides; exact copies are kept together")
    if s["label_share_by_split"]:
        print(f"  class balance: largest gap from the overall share {100 * s['max_label_share_gap']:.1f} points")
    for f in result.files:
        print(f"  wrote {f}")
    for command in s.get("add_again", []):
        print(f"  to scan it: {command}")
    return 0


def cmd_shortcuts(args) -> int:
    project = _project(args.dir)
    if args.dataset:
        datasets = [args.dataset]
    else:
        datasets = project.audits.shortcut_datasets()
        for skipped in sorted(set(project.workspace.datasets) - set(datasets)):
            print(f"{skipped}: skipped (no training split with two or more labels to audit)", file=sys.stderr)
        if not datasets:
            from leakcore.errors import InvalidInput

            raise InvalidInput("no dataset has a training split with two or more labels: add one, or name a dataset")
    bars = _Bars()
    results = {d: project.audits.shortcuts(d, regions=not args.no_regions, permutations=args.permutations, progress=bars)
               for d in datasets}
    bars.close()
    if args.json:
        print(json.dumps(project.audits.shortcut_results(), indent=2, default=str))
        return 0
    for dataset, a in results.items():
        m = a.metadata
        print(f"{dataset} (fit on {a.train_split}" + (f", scored on {a.eval_split})" if a.eval_split else ")"))
        for line in a.verdict:
            print("  " + line)
        print(f"  metadata probe: balanced accuracy {m.balanced_accuracy:.3f}, chance {m.chance:.3f}, p {m.p_value:.3f}; "
              "features by importance: " + ", ".join(f"{r.family} {r.importance:+.3f}" for r in m.importance.head(4).itertuples()))
        if a.regions is not None:
            print("  region probe (balanced accuracy): " + ", ".join(
                f"{r.region} {r.balanced_accuracy:.3f}" for r in a.regions.regions.itertuples()))
            for cls, grid in a.regions.occlusion.items():
                r, c = np.unravel_index(int(np.argmax(grid)), grid.shape)
                print(f"  {cls}: masking cell (row {r}, column {c}) lowers its class score most ({grid.max():+.3f})")
        print(f"  took: {project.audits.shortcut_results()[dataset].get('timing', '')}")
    return 0


def cmd_demo(args) -> int:
    from leakcore import demo

    bars = _Bars()
    if args.cifar10:
        project = demo.build_cifar_demo(args.dir, args.cifar10, progress=bars)
    else:
        project = demo.build_demo(args.dir, progress=bars)
    bars.close()
    truth = demo.planted_truth(project.workspace)
    print(f"demo workspace ready at {project.path}" + (f" ({len(truth)} planted leaks)" if truth is not None else ""))
    return _report(project)


def cmd_decide(args) -> int:
    """A curator decision from the terminal: on one pair, or on a whole group (the links the Review page's group
    buttons record)."""
    from leakcore.errors import InvalidInput

    project = _project(args.dir)
    reviewer = project.team.acting_user
    if args.group:
        if args.pair:
            raise InvalidInput("decide a pair or a group, not both", cli="pass EVAL_ID TRAIN_ID, or --group GROUP_ID")
        groups = project.groups(in_force=True)
        if args.group not in set(groups.groups["group_id"].astype(str)):
            raise InvalidInput(f"no group {args.group}", cli=f"`leakcore groups {args.dir}` lists them")
        n = project.decisions.decide_group(args.group, args.decision, reviewer=reviewer, note=args.note, groups=groups)
        if n:
            print(f"{args.decision} on group {args.group}: {n} link(s) recorded by {reviewer}")
            return 0
        print(f"group {args.group}: {args.decision} is already the decision on each of its links; nothing recorded")
        return 0
    if len(args.pair) != 2:
        raise InvalidInput("a pair is two item ids", cli="pass EVAL_ID TRAIN_ID, or --group GROUP_ID")
    project.decisions.decide(*args.pair, args.decision, reviewer=reviewer, note=args.note)
    print(f"{args.decision} on {args.pair[0]} / {args.pair[1]} recorded by {reviewer}")
    return 0


def cmd_roles(args) -> int:
    from leakcore.api import Roles

    project = _project(args.dir)
    team = project.team
    if args.set or args.remove or args.default:
        roles = team.roles() or Roles()
        users = dict(roles.users)
        for pair in args.set or []:
            user, _, role = pair.rpartition("=")
            users[user] = role
        for user in args.remove or []:
            users.pop(user.strip().lower(), None)
        team.set_roles({"default": args.default or roles.default.value, "users": users})
    roles = team.roles()
    if roles is None:
        print(f"no roles file in {project.path}: everyone acts as a lead (`--set YOU=lead` writes one)")
        return 0
    print(f"default role: {roles.default.value}")
    for user, role in sorted(roles.users.items()):
        print(f"  {user:<40} {role.value}")
    print(f"you ({team.acting_user}): {team.role().value}")
    return 0


def cmd_audit(args) -> int:
    project = _project(args.dir)
    log = project.team.audit_log
    count = log.verify()
    rows = log.entries()[-args.last:] if args.last else log.entries()
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for e in rows:
        change = "" if e["before"] is None and e["after"] is None else f"  {e['before']} -> {e['after']}"
        print(f"{e['time']}  {e['user']} ({e['role']})  {e['action']}" + (f" {e['target']}" if e["target"] else "") + change)
    print(f"{count} entries, chain intact")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from leakcore import api

    parser = argparse.ArgumentParser(prog="leakcore", description="Find and review data leakage in visual datasets.")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--reviewer", metavar="NAME",
                        help="act as NAME (default: the operating-system user); a workspace's roles.toml gives the role")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("init", help="create a workspace")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("--encoder", default="sscd-distilled", help="the embedding model (`leakcore encoders` lists them)")
    p.add_argument("--k", type=int, default=10, help="nearest training images kept per evaluation image")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("add", help="ingest a dataset (folder, manifest, hf-parquet, cifar, coco, embeddings)")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("--dataset", required=True, metavar="NAME",
                   help="the dataset's name in the workspace (letters, digits, _ - .; items are NAME/SPLIT/...); "
                        "adding again under a name replaces the splits the source provides")
    p.add_argument("--source", required=True, metavar="PATH",
                   help="the folder or file to read: an image folder tree ROOT/<split>/[<class>/]*.jpg, a manifest "
                        "(CSV, TSV, Parquet, JSON, JSON Lines), Hugging Face Parquet, COCO JSON, CIFAR batches, "
                        "or clip-retrieval embeddings")
    p.add_argument("--format", choices=api.format_names(),
                   help="the source's layout (default: detected from --source, the first of these that matches)")
    p.add_argument("--role", action="append", default=[], metavar="SPLIT=ROLE",
                   help="a split's role, train or eval (default: from its name: train, val, test ...); "
                        "repeatable, one split each; '*=eval' for every split")
    p.add_argument("--root", help="image root for manifests and COCO files")
    p.add_argument("--split", help="split name for single-split sources")
    p.add_argument("--encoder", help="embeddings-only sources: the encoder that made the vectors")
    p.add_argument("--max-pixels", type=int, help="decompression-bomb limit in pixels (kept in the workspace)")
    p.add_argument("--group-from", metavar="REGEX",
                   help="the item's group from its path, e.g. 'patient_(?P<group>\\d+)' (where the source gives none)")
    p.add_argument("--group-level", type=int, metavar="N", help="the item's group is the N-th folder of its path (0 = first)")
    p.add_argument("--follow-links", action="store_true",
                   help="read the files that links under the source's folder lead to elsewhere (a tree of links to a "
                        "shared store, a re-split's image folders); their folders are then served as the dataset's")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("encoders", help="list encoders and whether they can run here")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_encoders)

    p = sub.add_parser("scan", help="embed and search every eval split against every training split (resumable)")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("--encoder", help="the embedding model (default: the workspace's; `leakcore encoders` lists them)")
    p.add_argument("--k", type=int, help="nearest training images kept per evaluation image (default: the workspace's)")
    p.add_argument("--batch-size", type=int, default=64, help="images embedded at a time")
    p.add_argument("--input-size", type=int, help="override the encoder's input size")
    p.add_argument("--weights", help="a local weights file for the encoder")
    p.add_argument("--flip-queries", action=argparse.BooleanOptionalAction, default=None,
                   help="also search each evaluation image's mirror image (catches flipped copies)")
    p.add_argument("--plan", action="store_true", help="show the scan's jobs and which are done, and run nothing")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run the jobs on a Ray cluster (ADDRESS: auto, host:6379 or ray://host:10001); "
                        "alone: a local Ray on this machine. The workspace must be on a file system all nodes see")
    p.add_argument("--workers", type=int, help="embedding actors on the cluster (default: one per CPU, or per GPU)")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=None,
                   help="check candidate pairs on their pixels and fit the fused score (default: on for photos, "
                        "off for images under 64 px, such as CIFAR-10's); remembered for later scans of the workspace. "
                        "On photos the flags then use the fused score, unless a score was chosen (`leakcore verify WS "
                        "--use similarity`); on small images with `leakcore verify WS --use fused`")
    p.add_argument("--grouping", action=argparse.BooleanOptionalAction, default=None,
                   help="also search training splits against each other, so groups are recovered across all splits")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("report", help="hard and soft leakage rates; exit 1 above a bound (for CI)")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("--json", action="store_true")
    p.add_argument("--fail-above", action="append", metavar="CHECK=PCT",
                   help="exit 1 when an evaluation split's rate of a check is above PCT percent (every finding; "
                        "CHECK:hard=PCT bounds the hard ones); repeat for several checks, e.g. --fail-above "
                        f"similarity=1 --fail-above label_conflict=0. Checks: {', '.join(api.Checks.names())}")
    p.add_argument("--fail-above-hard", type=float, metavar="PCT", help="= --fail-above similarity:hard=PCT")
    p.add_argument("--fail-above-soft", type=float, metavar="PCT", help="= --fail-above similarity=PCT")
    p.add_argument("--fail-above-group", type=float, metavar="PCT", help="= --fail-above group=PCT")
    p.add_argument("--fail-above-temporal", type=float, metavar="PCT", help="= --fail-above temporal=PCT")
    p.add_argument("--fail-on-shortcut", action="store_true", help="exit 1 when a stored shortcut audit found one")
    p.add_argument("--hard", type=float, help="use this hard threshold instead of the project's")
    p.add_argument("--soft", type=float, help="use this soft threshold instead of the project's")
    p.add_argument("--auto-only", action="store_true", help="ignore curator decisions")
    p.add_argument("--html", metavar="FILE", help="also write the report as one self-contained HTML page (thumbnails, "
                                                  "heatmaps, calibration, provenance; opens without a network)")
    p.add_argument("--top", type=int, metavar="N", help="strongest findings listed: per check in --html and --json "
                   "(default 60), per evaluation split in the terminal (default 10)")
    p.add_argument("--predictions", nargs="+", metavar="FILE", help="add the accuracy impact table (as `leakcore impact`)")
    p.add_argument("--probe", nargs="+", choices=list(api.PROBES), help="built-in probes for the impact table")
    p.add_argument("--leaks", metavar="CSV", help="impact: a human-labelled list of (eval key, train key) pairs")
    p.add_argument("--impact-split", "--split", dest="impact_split", metavar="DATASET/SPLIT",
                   help="impact: the evaluation split (when there are several)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("calibrate", help="robustness table, ROC and thresholds from non-semantic edits of a collection")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("--collection", required=True, metavar="DATASET/SPLIT")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--encoder")
    p.add_argument("--target-fpr", type=float, default=0.001)
    p.add_argument("--apply", action="store_true", help="make the chosen thresholds the project's")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("impact", help="accuracy on full / leaked / non-leaked / random subsets of an evaluation split")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("--predictions", nargs="+", metavar="FILE", help="CSV / Parquet / JSONL with key + predicted label, or a JSON list")
    p.add_argument("--probe", nargs="+", choices=list(api.PROBES),
                   help="built-in probes: k-NN over the training embeddings; zero-shot CLIP (needs CLIP weights)")
    p.add_argument("--split", metavar="DATASET/SPLIT", help="the evaluation split (needed where there are several)")
    p.add_argument("--leaks", metavar="CSV", help="a human-labelled list of (eval key, train key) pairs instead of our flags")
    p.add_argument("--random", type=int, default=1000, help="random subsets per leaked set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--auto-only", action="store_true", help="ignore curator decisions")
    p.add_argument("--csv", help="write the full table here")
    p.set_defaults(func=cmd_impact)

    p = sub.add_parser("export", help="write the evaluation split without its leaked images, with removed.csv and provenance")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("--split", required=True, metavar="DATASET/SPLIT")
    p.add_argument("--policy", default="soft", choices=list(api.EXPORT_POLICIES),
                   help="which unreviewed automatic flags remove an item (confirmed leaks are always removed)")
    p.add_argument("--format", default="same", choices=list(api.EXPORT_FORMATS))
    p.add_argument("--out", help="output folder (default: WORKSPACE/exports/<split>-<policy>): new, empty or an earlier "
                                 "export's; never where a dataset keeps its files")
    p.add_argument("--keep", metavar="FILE", help="item ids or keys, one per line, never removed by automatic flags")
    p.add_argument("--dedupe-within", action="store_true", help="also remove within-split duplicates, keeping the first")
    p.add_argument("--links", choices=["symlink", "copy"], help="also make a folder of the kept image files")
    p.add_argument("--also-remove", action="append", metavar="CHECK",
                   choices=[c["name"] for c in api.Checks.exportable() if not c["default"]],
                   help="also remove the evaluation images another check flags, at --policy's level as the "
                        "similarity flags are (hard, soft; with none only the findings a curator confirmed) "
                        "(repeatable): "
                        + "; ".join(f"{c['name']}: {c['description']}" for c in api.Checks.exportable()
                                    if not c["default"]))
    p.add_argument("--groups", action="store_true", help="= --also-remove group")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("coverage", help="how set B covers reference set A: precision, recall, density, coverage, spectra")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("--a", required=True, metavar="SET", help="the reference set: DATASET or DATASET/SPLIT")
    p.add_argument("--b", required=True, metavar="SET", help="the set measured against A")
    p.add_argument("--a-where", metavar="QUERY", help="narrow A: columns of the item table compared with values (and / or / not, in, .str.contains ...), e.g. \"label != 'cat'\"")
    p.add_argument("--b-where", metavar="QUERY", help="narrow B the same way")
    p.add_argument("--k", type=int, default=5, help="neighbours that set each image's ball (default 5, as the papers)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals (0: none)")
    p.add_argument("--spectra", action="store_true", help="also compare the sets' power spectra (decodes every image)")
    p.add_argument("--size", type=int, default=128, help="working size of the spectra in pixels")
    p.add_argument("--show", type=int, default=10, help="how many outliers to list")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_coverage)

    p = sub.add_parser("verify", help="check candidate pairs on their pixels; fit and use the fused leak score")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("--refit", action="store_true", help="fit the fused score again (curator decisions join it)")
    p.add_argument("--queries", type=int, help="training images the fitting suite edits (default: one per 24, "
                   "12 to 64, as scan --verify)")
    p.add_argument("--use", choices=["fused", "similarity"], help="score pairs by this everywhere (kept)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("groups", help="groups of one source across splits (explicit, recovered, confirmed); settings")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("--threshold", type=float,
                   help="similarity at which a link is a candidate, verified on its pixels (kept in the workspace)")
    p.add_argument("--window", type=float, metavar="SECONDS", help="time window of one recording (default 60, kept)")
    p.add_argument("--cutoff", metavar="TIME", help="training images after this time are training on the future (kept)")
    p.add_argument("--calibrate", metavar="DATASET/SPLIT",
                   help="measure the threshold on this collection's patches and pan frames, and keep it")
    p.add_argument("--queries", type=int, default=200, help="images to calibrate on")
    p.add_argument("--show", type=int, default=None, metavar="N",
                   help="groups reaching into training listed, with their evaluation images (default 10; --json: all)")
    p.add_argument("--auto-only", action="store_true", help="ignore curator decisions")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_groups)

    p = sub.add_parser("resplit", help="a new train/test split of one dataset in which no group and no flagged pair spans splits")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("--dataset", required=True)
    p.add_argument("--test-size", type=float, default=0.2)
    p.add_argument("--stratify", default="label", choices=["label", "none"])
    p.add_argument("--time-cutoff", metavar="TIME", help="split by time instead: groups first seen at or after TIME are test")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output folder (default WORKSPACE/exports/<dataset>-resplit): new, empty or an "
                                 "earlier re-split's; never where a dataset keeps its files")
    p.add_argument("--links", choices=["symlink", "copy"],
                   help="also the image files, in images/<train|test>/ (a folder dataset's own layout)")
    p.add_argument("--dry-run", action="store_true", help="report sizes and balance, write nothing")
    p.set_defaults(func=cmd_resplit)

    p = sub.add_parser("shortcuts", help="target leakage: what gives the label away besides the content")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("--dataset", help="one dataset (default: every dataset)")
    p.add_argument("--no-regions", action="store_true", help="the metadata probe only (no embedding of regions)")
    p.add_argument("--permutations", type=int, default=100,
                   help="at most this many label permutations for the p-value (it stops once the verdict is settled)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_shortcuts)

    p = sub.add_parser("decide", help="record a curator decision on a pair, or on a whole group (--group)")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("pair", nargs="*", metavar="ITEM_ID", help="the evaluation item and the training item")
    p.add_argument("--group", metavar="GROUP_ID", help="decide every link of this group (see `leakcore groups`)")
    p.add_argument("--decision", required=True, choices=list(api.DECISION_LABELS))
    p.add_argument("--note")
    p.set_defaults(func=cmd_decide)

    p = sub.add_parser("roles", help="who may do what in a workspace (viewer, curator, lead); a lead edits them")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("--set", action="append", metavar="USER=ROLE", help="give USER a role (repeatable)")
    p.add_argument("--remove", action="append", metavar="USER", help="take USER off the list (repeatable)")
    p.add_argument("--default", choices=["none", "viewer", "curator", "lead"],
                   help="the role of everyone not listed (none: the dashboard shows them nothing; for a sign-in that "
                        "accepts anyone)")
    p.set_defaults(func=cmd_roles)

    p = sub.add_parser("audit", help="the audit log: every threshold change, calibration, export, re-split, role change")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("--last", type=int, default=0, metavar="N", help="only the last N entries")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("demo", help="build (or refresh) the demo workspace with planted leaks, and scan it")
    p.add_argument("dir", metavar="WS", help="the workspace folder")
    p.add_argument("--cifar10", metavar="PATH|download",
                   help="a realistic demo from a CIFAR-10 batches folder or Parquet, or 'download' (md5-checked)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from leakcore.errors import LeakcoreError

    from leakcore.api import acting_as

    try:
        with acting_as(args.reviewer):
            return int(args.func(args) or 0)
    except LeakcoreError as exc:
        print(f"leakcore {args.command}: error: {exc.for_terminal()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        for bar in list(getattr(tqdm, "_instances", ())):  # ended on their own lines first: the message was printed
            bar.close()  # inside the bar's line, and the bar drawn again after it
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `leakcore report DIR | head`: the reader left; stop quietly, as other command-line tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush does not fail again
        return 141
    except Exception as exc:  # a bug: one line in the terminal, the traceback kept in a file (printed with --verbose)
        if args.verbose:
            raise
        print(f"leakcore {args.command}: internal error (a bug in leakcore): {type(exc).__name__}: {exc}\n"
              f"  the traceback is in {_traceback_file()} (or run the command again with --verbose to see it)",
              file=sys.stderr)
        return 70  # EX_SOFTWARE (sysexits.h)


def _traceback_file() -> str:
    """The exception being handled, with its traceback, written to a new file in the temporary folder; its path."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="leakcore-error-", suffix=".txt")
    with open(fd, "w", encoding="utf-8") as f:
        f.write(" ".join(sys.argv) + "\n\n" + traceback.format_exc())
    return path


if __name__ == "__main__":
    sys.exit(main())
