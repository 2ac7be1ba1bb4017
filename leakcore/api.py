"""`Project`: the one facade the CLI and the pages call (cleanvision's Imagelab is the model).

A Project is the workspace grown into the verbs of the product: add a dataset, plan and run a scan, read rates
and findings of any check, calibrate thresholds, record decisions, measure the impact on accuracy, export a
cleaned split. Every orchestration lives here once; the CLI formats what it returns for a terminal, the pages
draw it.
"""
from __future__ import annotations

import enum
import itertools
import logging
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import pandas as pd

from leakcore import access as _access
from leakcore import calibrate as _calibrate
from leakcore import checks as _checks
from leakcore import coverage as _coverage
from leakcore import images as _images
from leakcore import downstream, export as _export, ingest, leakage, review
from leakcore import scan as _scan
from leakcore.errors import InvalidInput, LeakcoreError, UnknownName, as_code
from leakcore.io import atomic_write_text  # noqa: F401  (the pages' own small files: recent workspaces, sign-outs)
from leakcore.access import Action
from leakcore.project import CONFIG_NAME, DEFAULT_ENCODER, DEFAULT_K, Thresholds, Workspace
from leakcore.schema import FEATURE_WORDS, Decision, SplitId

if TYPE_CHECKING:
    from leakcore import fused as _fused

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def _fused_on_photos(ws) -> None:
    """On photos a verified workspace flags by the fused score unless a score was chosen (`verify --use`, the
    Thresholds page): there it finds the planted copies the raw similarity misses and no look-alike
    (docs/verification.md); on small images the raw similarity stays (docs/verification-cifar-default.md)."""
    if ws.photos() and not ws.score_chosen and _stored_model(ws) is not None:
        ws.set_score("fused")


def _stored_model(ws, encoder: str | None = None):
    """The fused score's stored model of `encoder`, or None; a workspace without one never imports the fused
    score's module (it brings scikit-learn: about a second of every server's and every command's start)."""
    if None in ws.stamp("fused", encoder or ws.encoder):
        return None
    from leakcore import fused

    return fused.load(ws, encoder)


class LeakSource(enum.StrEnum):
    """Which leaked set the impact analysis measures."""

    DECISIONS = "decisions"  # curator decisions first, automatic flags elsewhere
    FLAGS = "flags"  # automatic flags only
    LIST = "list"  # an imported, human-labelled list (e.g. ciFAIR's)

    @property
    def label(self) -> str:
        return {"decisions": "decisions first", "flags": "automatic flags only", "list": "an imported list"}[self.value]


EXPLICIT_ONLY = ("only explicit group metadata links it (the dataset's group column, or the file names read by the "
                 "pattern it was added with, `--group-from`), so this group cannot be called unrelated")
PROBES = downstream.PROBES
PROBE_PREFIX = downstream.PROBE_PREFIX  # the built-in probes' names in an impact table start so
ALL_SOURCES = leakage.ALL_SOURCES  # the `train_split` of a rates row over every training source together
CALIBRATION_KINDS = ("thresholds", "groups")  # what `Project.calibrate(kind=...)` measures


@dataclass(frozen=True)
class ImpactRequest:
    """What to measure: an evaluation split, prediction files and/or built-in probes, and the leaked set."""

    split: str | None = None
    predictions: tuple[str, ...] = ()  # paths on this machine; a glob (`*`, `?`, `[`) stands for the files it matches
    probes: tuple[str, ...] = ()
    leak_source: LeakSource = LeakSource.DECISIONS
    leak_list: str | None = None
    n_random: int = 1000
    seed: int = 0
    uploads: tuple[tuple[str, bytes], ...] = ()  # (file name, content): predictions a web user sent
    leak_upload: tuple[str, bytes] | None = None  # the imported list, sent rather than named

    def __post_init__(self):
        unknown = [p for p in self.probes if p not in PROBES]
        if unknown:
            raise UnknownName(f"unknown probe {', '.join(unknown)}; valid probes: {', '.join(PROBES)}")
        if LeakSource(self.leak_source) == LeakSource.LIST and not (self.leak_list or self.leak_upload):
            raise InvalidInput("an imported leak list needs its file", cli="pass --leaks CSV",
                               page="Upload the leak list CSV, or choose another leaked set")


def _prediction_files(patterns) -> list[Path]:
    """The files the request names, each inside the server's allowed roots (a glob is expanded only in an allowed
    folder, so a web user can neither read nor list files elsewhere)."""
    files = []
    for pattern in patterns:
        pattern = str(pattern).strip()
        if not pattern:
            continue
        path = Path(pattern).expanduser()
        if any(c in path.name for c in "*?["):
            _access.check_path(path.parent, "predictions folder")
            try:
                found = sorted(p for p in path.parent.glob(path.name) if p.is_file())
            except ValueError as exc:  # e.g. "'**' can only be an entire path component"
                raise InvalidInput(f"cannot read the pattern {pattern[:200]!r}: {exc}", page="Check the pattern",
                                   cli="check the pattern") from None
            if not found:
                raise InvalidInput(f"no file matches {pattern}", page="Check the pattern", cli="check the pattern")
        else:
            found = [path]
        for f in found:
            _access.check_path(f, "predictions file")
        files.extend(found)
    return files


def _safe_name(name: str, default: str) -> str:
    """A sent file's name as a plain name in one folder: no directories, no odd characters (the browser says it)."""
    name = re.sub(r"[^\w.+-]", "_", Path(str(name).replace("\\", "/")).name).lstrip(".")
    return name[:120] or default


@dataclass(frozen=True)
class ImpactResult:
    split: str
    table: pd.DataFrame
    models: int
    items: int
    hard: int
    soft: int
    source: str
    notes: tuple[str, ...] = ()  # what the inputs held that was left out (predictions or pairs of other images)

    def summary(self) -> pd.DataFrame:
        """Mean over models per subset: accuracy, gain, random interval (the headline table)."""
        return downstream.summary(self.table)

    @property
    def mean_words(self) -> str:
        """What the mean is over, in words (the table's `in_mean` rows): "30 models (the probe knn1 shown apart)", or
        "the probe knn1" where the probes are all there is."""
        in_mean = (self.table.groupby("model")["in_mean"].first() if "in_mean" in self.table
                   else pd.Series(True, index=pd.unique(self.table["model"])))
        named = lambda ms: ", ".join(sorted(str(m).removeprefix(downstream.PROBE_PREFIX) for m in ms))  # noqa: E731
        counted, apart = list(in_mean.index[in_mean.astype(bool)]), list(in_mean.index[~in_mean.astype(bool)])
        if counted and all(str(m).startswith(downstream.PROBE_PREFIX) for m in counted):
            return f"the probe{'s' if len(counted) != 1 else ''} {named(counted)}"
        return f"{len(counted)} model{'s' if len(counted) != 1 else ''}" + (
            f" (the probe{'s' if len(apart) != 1 else ''} {named(apart)} shown apart)" if apart else "")


_HEAVY_IMPORTS = threading.Lock()  # one thread at a time imports the heavy libraries (`import_heavy`)


def import_heavy() -> None:
    """Import torch, OpenCV, SciPy's statistics and scikit-learn's estimators, one thread at a time: two threads
    importing these graphs at once (the dashboard's warm-up and a page, or two pages of one server) can each find the
    other's module half-made, and a page then failed with "partially initialized module 'torch' has no attribute
    'Tensor'" or "module 'scipy.stats' has no attribute 'quantile'" (CI, the every-page walk of the demo). The pages
    that use them call this first; once imported it costs nothing."""
    with _HEAVY_IMPORTS:
        import cv2  # noqa: F401
        import scipy.stats  # noqa: F401
        import sklearn.ensemble  # noqa: F401
        import torch  # noqa: F401


@dataclass
class PairEvidence:
    """`Review.evidence`: the alignment (verify.Explanation), the stored evidence row (None when the pair
    was not verified), the raw similarity, and the fused score with per-feature contributions (None without)."""

    explanation: object
    stored: "pd.Series | None"
    similarity: float | None
    fused: float | None
    contributions: "pd.DataFrame | None"

    @staticmethod
    def warm_up() -> None:
        """Import what the pixel evidence runs on (torch for the alignment, OpenCV for the local features) ahead of
        need: the dashboard calls this on a thread after its first page view, so that the first pair a curator
        shows aligned does not wait for torch's import (1.2 s of the 2.0 s that view took after a server start)."""
        import_heavy()


    def aligned_views(self, eval_image, train_image, side: int, crop=None, matches=None):
        """The alignment applied to the two photos at `side` px: moved, training, overlay, difference (PIL images);
        with `crop` (`crop_found`), the crop search's place instead, and with `matches` (`matches_found`), the local
        matches' map. Both place a pair at 128-512 px, where the whole-image alignment works at 32-48 px: on a strong
        crop it showed a misregistered "scaled x0.8", and a banner pulled it off the photo."""
        from leakcore import verify

        return verify.aligned_views(self.explanation, eval_image, train_image, side, crop, matches)

    def matches_found(self, eval_image, train_image):
        """The local matches (`verify.OrbMatch`, with their map) where their map registers the pair: the fused
        score's match rule (`scores.fused.decided_by_matches` on the stored evidence) from AWAY_FROM_INLIERS inliers,
        where the tiles under the map are compared (a bannered copy with 22 inliers at ratio 0.96, 79% of its tiles
        agreeing, was pulled off the photo by the 32 px alignment); else None."""
        from leakcore import verify
        from leakcore.scores.fused import MATCH_RULE, decided_by_matches

        if self.stored is None:
            return None
        row = pd.DataFrame([{c: pd.to_numeric(self.stored.get(c), errors="coerce")
                             for c in ("orb_inliers", "orb_ratio", "tiles_agree")}])
        if not bool(decided_by_matches(row, (verify.AWAY_FROM_INLIERS, *MATCH_RULE[1:]))[0]):
            return None
        match = verify.find_matches(eval_image, train_image)
        return match if match.transform is not None else None

    def crop_found(self, eval_image, train_image):
        """Where one image of the pair lies inside the other by the crop rule (`scores.fused.decided_by_crop`,
        photos): the `verify.CropFound`, or None where the rule does not decide the pair. A pair its local matches
        decided has no stored crop search (evidence version 13: NaN), so it is searched here."""
        import math

        from leakcore import verify

        stored = self.stored
        if stored is None:
            return None
        ncc = float(stored.get("crop_ncc", 0.0))
        if not math.isnan(ncc) and not verify.crop_decides(ncc, float(stored.get("crop_detail", 0.0))):
            return None
        found = verify.find_crop(eval_image, train_image)
        return found if found is not None and verify.crop_decides(found.ncc, found.detail) else None

    def crop_view(self, eval_image, train_image, side: int, found=None):
        """Where one image of the pair is found inside the other by the crop rule (`crop_found`, or `found` when
        given): (the image the other was found in, with the place outlined; the other; a caption), at most `side`
        px; None otherwise."""
        from PIL import ImageDraw

        found = found if found is not None else self.crop_found(eval_image, train_image)
        if found is None:
            return None
        outer, inner = (train_image, eval_image) if found.inside == "eval" else (eval_image, train_image)
        outer = outer.convert("RGB").copy()
        outer.thumbnail((side, side))
        inner = inner.convert("RGB").copy()
        inner.thumbnail((side, side))
        x, y, w, h = found.box
        W, H = outer.size
        ImageDraw.Draw(outer).rectangle((x * W, y * H, (x + w) * W, (y + h) * H), outline=(255, 40, 40),
                                        width=max(2, W // 150))
        names = ("evaluation", "training") if found.inside == "eval" else ("training", "evaluation")
        caption = (f"the {names[0]} image found inside the {names[1]} image, outlined: {100 * w:.0f}% x "
                   f"{100 * h:.0f}% of its sides (NCC {found.ncc:.3f}; fine detail {found.detail:.3f})")
        return outer, inner, caption


class Decisions:
    """The curator decision store of a project (review.sqlite): record, undo, read."""

    def __init__(self, project: "Project"):
        self._p = project

    def _may_decide(self, reviewer: str | None) -> None:
        """With roles: the reviewer must be the acting user (nobody decides in another's name) and a curator or lead."""
        team = self._p.team
        if team.roles() is None:
            return
        actor = team.acting_user
        if not _access.normalise_user(actor):
            # the session's identity source answers nobody (its user signed out, in this tab or another; or no session
            # runs the code): the reviewer a page passes is not proof of who acts (a tab whose user had signed out
            # elsewhere recorded a decision in that name on its next key press)
            raise _access.AccessDenied("nobody is signed in to record this decision",
                                       cli="pass your own name with --reviewer",
                                       page="You are signed out (in this tab or another): sign in again; nothing was "
                                            "saved")
        if reviewer and _access.normalise_user(actor) != _access.normalise_user(reviewer):
            raise _access.AccessDenied(f"{as_code(actor, 120)} cannot record decisions in the name of "
                                       f"{as_code(reviewer, 120)}",
                                       cli="pass your own name with --reviewer", page="Decide as yourself")
        _access.require(self._p.path, actor, Action.DECIDE)

    def _known(self, pairs) -> None:
        """Refuse ids that are not the workspace's items: decisions are append-only, a typo would stay for good."""
        import pyarrow as pa
        import pyarrow.compute as pc

        asked = list(dict.fromkeys(str(i) for pair in pairs for i in pair))
        known = pa.array(self._p.workspace.items()["item_id"].array)  # pandas' isin on Arrow strings loops in Python
        known = known.combine_chunks() if isinstance(known, pa.ChunkedArray) else known
        found = pc.is_in(pa.array(asked, type=known.type), value_set=known).to_pylist()
        unknown = [i for i, ok in zip(asked, found) if not ok]
        if unknown:
            raise InvalidInput(f"no item {unknown[0]!r} in this workspace" +
                               (f" (and {len(unknown) - 1} more unknown ids)" if len(unknown) > 1 else ""),
                               cli="item ids read DATASET/SPLIT/PATH as `leakcore report` and removed.csv show them",
                               page="Pick the pair on the Review page")

    def decide(self, eval_item_id: str, train_item_id: str, decision: "Decision | str", *, reviewer: str,
               note: str | None = None) -> int:
        self._may_decide(reviewer)
        self._known([(eval_item_id, train_item_id)])
        return review.decide(self._p.workspace, eval_item_id, train_item_id, Decision.parse(decision), reviewer=reviewer, note=note)

    def decide_many(self, pairs: list[tuple[str, str]], decision: "Decision | str", *, reviewer: str,
                    note: str | None = None) -> int:
        self._may_decide(reviewer)
        self._known(pairs)
        return review.decide_many(self._p.workspace, pairs, Decision.parse(decision), reviewer=reviewer, note=note)

    def undo_last(self, reviewer: str) -> dict | None:
        """Undo `reviewer`'s own most recent decision (never another reviewer's)."""
        self._may_decide(reviewer)
        return review.undo_last(self._p.workspace, reviewer)

    def undoable(self, reviewer: str) -> bool:
        """Whether `reviewer` has a decision of their own that `undo_last` would take back."""
        return bool(reviewer) and review.undoable(self._p.workspace, reviewer)

    def latest(self) -> pd.DataFrame:
        return review.latest_decisions(self._p.workspace)

    def history(self, eval_item_id: str | None = None) -> pd.DataFrame:
        return review.history(self._p.workspace, eval_item_id)

    def disagreements(self, pair: tuple[str, str] | None = None) -> pd.DataFrame:
        """Each reviewer's latest decision on the pairs that reviewers decided differently (`review.disagreements`)."""
        return review.disagreements(self._p.workspace, pair)

    @staticmethod
    def group_links(groups, group_id: str, decision: "Decision | str") -> list[tuple[str, str]]:
        """The pairs a decision on a whole group records: the links that make it a group (a group's explicit
        metadata links stay when it is called unrelated: the source's group column says so); a group linked only
        by metadata and kept together gets its first member linked to each other member."""
        decision = Decision.parse(decision)
        ev = groups.evidence[groups.evidence["group_id"] == group_id]
        if decision == Decision.NOT_LEAK:
            ev = ev[ev["kind"] != "explicit"]
        pairs = list(zip(ev["a"].astype(str), ev["b"].astype(str)))
        if not pairs and decision == Decision.SAME_SOURCE:
            members = sorted(groups.membership.loc[groups.membership["group_id"] == group_id, "item_id"])
            pairs = [(members[0], m) for m in members[1:]]
        return pairs

    def decide_group(self, group_id: str, decision: "Decision | str", *, reviewer: str, note: str | None = None,
                     groups=None) -> int:
        """Record a decision on a whole group (`group_links`); returns how many links were recorded (0: every link
        has this decision in force already and no note is given: a second K wrote each link again). "Unrelated" on
        a group that explicit metadata alone links is refused (InvalidInput, EXPLICIT_ONLY). `groups`: the groups
        in force, when the caller holds them."""
        groups = self._p.groups(in_force=True) if groups is None else groups
        pairs = self.group_links(groups, group_id, decision)
        if not pairs and Decision.parse(decision) == Decision.NOT_LEAK:  # said in one place, for the page and the CLI
            raise InvalidInput(EXPLICIT_ONLY, cli="add the dataset again with other group ids (--group-from) to split it",
                               page="Add the dataset again with other group ids to split it")
        if pairs and not note:
            d = leakage.both_ways(self.latest())
            done = set(zip(d["eval_item_id"], d["train_item_id"], d["decision"])) if len(d) else set()
            value = Decision.parse(decision).value
            pairs = [(a, b) for a, b in pairs if (a, b, value) not in done]
        if pairs:
            self.decide_many(pairs, decision, reviewer=reviewer, note=note)
        return len(pairs)


# ---- what the pages show, named once: ui/ and pages/ import these from the facade, never from the modules ----
from leakcore.access import ROOTS_ENV, AccessDenied, Role, Roles  # noqa: E402  (re-exported for the pages)
from leakcore.coverage import ImageSet  # noqa: E402
from leakcore.export import FORMATS as EXPORT_FORMATS, POLICIES as EXPORT_POLICIES, WITHIN_KEPT  # noqa: E402
from leakcore.scores.base import DECIDED_HARD_PRECISION, DECIDED_PRECISION  # noqa: E402
from leakcore.images import NO_PIXELS, OUTSIDE_ROOT  # noqa: E402
from leakcore.leakage import WITHIN  # noqa: E402
from leakcore.review import BORDERLINE, DECISION_LABELS, SORTS, STATES, UNCERTAINTY_SORT  # noqa: E402


def format_names() -> list[str]:
    """The dataset layouts `Project.add` reads (`fmt`), in detection order."""
    from leakcore import formats

    return formats.format_names()


def list_encoders() -> list[dict]:
    """The encoder registry with availability here (`leakcore.encoders.list_encoders`)."""
    from leakcore.encoders import list_encoders as _list

    return _list()


def identical_within_split(items: pd.DataFrame) -> pd.DataFrame:
    """The readable items whose bytes another item of their split has, every copy of each set
    (`catalog.identical_within_split`)."""
    from leakcore import catalog

    return catalog.identical_within_split(items)


def listed_once(pairs: pd.DataFrame):
    """Rows to keep so that a pair within one split found from both ends is listed once (`leakage.one_way`)."""
    return leakage.one_way(pairs)


def degree_of(similarity, hard: float, soft: float):
    """"hard", "soft" or "none" for each score at these thresholds."""
    return leakage.degree_of(similarity, hard, soft)


def matrices(table: pd.DataFrame, order: str = "name", check: str = "similarity") -> dict[str, pd.DataFrame]:
    """The train-source x evaluation-split matrices of a rates table (`Project.checks.rates`), per degree and rate."""
    return leakage.matrices(table, order=order, check=check)


def matrix_csv(mats: dict[str, pd.DataFrame]) -> str:
    """The matrices as one CSV text (the Heatmaps page's download)."""
    return leakage.matrix_csv(mats)


DEMO_TRUTH = "demo_truth.csv"  # written by leakcore.demo (which sits above the facade: it builds a Project)


def planted_truth(project: "Project") -> "pd.DataFrame | None":
    """The demo workspace's planted pairs (kind, eval_item_id, train_item_id), or None for any other workspace."""
    path = project.workspace.paths.file(DEMO_TRUTH)
    return pd.read_csv(path) if path.exists() else None


def refined_worse(explanation) -> bool:
    """`verify.refined_worse` (the Review page's aligned view says when ECC fitted worse), verify imported when asked:
    importing it took 15 ms of every start of the app and the CLI."""
    from leakcore import verify

    return verify.refined_worse(explanation)


def configure_access(identity_source: Callable[[], "str | None"] | None, roots: "list[str] | None",
                     without_roles: "Role | str" = "lead") -> None:
    """Install, for this process, who the signed-in user is, the folders users may open and everyone's role in a
    workspace without a roles file (the dashboard's first step on every page; `leakcore.access`)."""
    _access.set_identity_source(identity_source)
    _access.set_allowed_roots(roots)
    _access.set_without_roles(Role(without_roles))


def acting_as(user: str | None):
    """A context in which projects opened without an actor act as `user` (the CLI's --reviewer); None: unchanged."""
    return _access.acting_as(user)


def os_user() -> str:
    """The operating system's user name (who acts when nobody signed in)."""
    return _access.os_user()


def normalise_user(user: str | None) -> str:
    """A user name as roles and decisions compare it (trimmed, case-folded e-mail)."""
    return _access.normalise_user(user)


class Team:
    """Who acts and what they may do in a project: roles, the acting user, refusals, the audit log."""

    def __init__(self, project: "Project"):
        self._p = project

    @property
    def acting_user(self) -> str | None:
        return _access.current_user(self._p.actor)

    def role(self, user: str | None = None) -> Role:
        """The role of `user` (default: the acting user) here; lead for everyone without a roles file."""
        return _access.role_of(self._p.path, user or self.acting_user)

    def roles(self) -> "_access.Roles | None":
        return _access.load_roles(self._p.path)

    def set_roles(self, roles: "_access.Roles | dict") -> "_access.Roles":
        """Write the roles file (a lead only, or anyone while there is none); audited."""
        roles = roles if isinstance(roles, _access.Roles) else _access.Roles.from_dict(roles)
        return _access.save_roles(self._p.path, roles, actor=self.acting_user)

    def start_roles(self, lead: str) -> "_access.Roles":
        """A first roles file: `lead` leads, everyone else views."""
        return self.set_roles(_access.template_roles(lead))

    def refusal(self, action: "Action | str", user: str | None = None) -> str | None:
        """Why `user` (default: the acting user) may not do `action` here, in a page's words; None when they may."""
        try:
            _access.require(self._p.path, user or self.acting_user, Action(action))
        except LeakcoreError as exc:  # a refusal, or a roles file that cannot be read
            return exc.for_page()
        return None

    @property
    def audit_log(self) -> _access.AuditLog:
        return _access.AuditLog(self._p.path)

    def require(self, action: Action) -> tuple[str, str]:
        """(who, role) when the acting user may do `action`, else AccessDenied."""
        user = self.acting_user
        role = _access.require(self._p.path, user, action)
        return user or f"{_access.os_user()} (no session)", role.value

    def audit(self, who: tuple[str, str], action: str, **entry) -> None:
        self.audit_log.append(who[0], action, role=who[1], **entry)


class Images:
    """Reading an item's pixels for display, only from inside a registered dataset root."""

    NO_PIXELS = NO_PIXELS
    OUTSIDE_ROOT = OUTSIDE_ROOT

    def __init__(self, project: "Project"):
        self._p = project

    @property
    def roots(self) -> tuple[str, ...]:
        """The folders pictures may be read from (every dataset's root)."""
        return tuple(str(r) for r in self._p.workspace.dataset_roots())

    @property
    def without_pixels(self) -> frozenset[str]:
        """Datasets that hold vectors only (nothing to show)."""
        return frozenset(n for n, d in self._p.workspace.datasets.items() if d.format == "embeddings")

    @staticmethod
    def root_of(uri: str, roots: "tuple[str, ...]") -> str | None:
        """The root among `roots` that holds `uri`, or None (then it must not be served)."""
        from leakcore import catalog

        return next((r for r in roots if catalog.is_inside(Path(uri), Path(r))), None)

    @staticmethod
    def read(uri: str, row: int, root: str | None, draft_size: "tuple[int, int] | None" = None, *, reader=None):
        """(PIL image or None, reason) of one item's file or Parquet row, decoded safely (EXIF, modes, limits);
        `reader`: the workspace's (`project.workspace.sources`), which keeps the containers it opened."""
        from leakcore import catalog, images

        if root is None:
            return None, OUTSIDE_ROOT
        kwargs = {"draft_size": draft_size} if draft_size else {}
        result = images.decode(catalog.read_bytes(uri, row, root=root, reader=reader), **kwargs)
        return result.image, result.reason

    def files_since_added(self) -> dict:
        """What a scan would find on disk first (`Project._read_changed_files`), read only: {"changed": image files whose size
        or time changed since they were added, "gone": files removed, "new": {dataset: files not items yet}}; what
        `leakcore scan --plan` says beside its jobs (which are planned on the files as they were added)."""
        from leakcore import catalog

        items = self._p.workspace.items()
        _, now, moved = catalog.moved_files(items)
        gone = int((now[moved][:, 0] < 0).sum())
        return {"changed": int(moved.sum()) - gone, "gone": gone, "new": self.new_files(items)}

    def new_files(self, items: pd.DataFrame) -> dict:
        """{dataset: image files under a folder dataset's root that are not among `items`}, where there are any."""
        from leakcore import formats

        ws = self._p.workspace
        new = {}
        for name, d in ws.datasets.items():
            if d.format != "folder" or not d.source or not Path(d.source).is_dir():
                continue
            try:
                source = formats.load_source(Path(d.source), "folder", root=Path(d.root) if d.root else None)
            except LeakcoreError:
                continue
            known = set(items.loc[items["dataset"] == name, "item_id"].astype(str))
            n = sum(f"{name}/{r.split}/{r.key}" not in known for r in source.records)
            if n:
                new[name] = n
        return new

    @staticmethod
    def changed_since_added(items: pd.DataFrame, ids) -> list[str]:
        """Those of `ids` (items indexed by item_id) whose image file's size or time is no longer the one it was
        scanned with: its picture is the file as it is now, its scores the file as it was (a scan reads it again)."""
        from leakcore import catalog

        out = []
        for i in ids:
            if i not in items.index:
                continue
            fsize, mtime, row = items.at[i, "fsize"], items.at[i, "mtime_ns"], items.at[i, "row"]
            if pd.isna(fsize) or pd.isna(mtime) or int(fsize) < 0 or int(row) >= 0:  # no file of its own to compare
                continue
            if catalog.file_stat(str(items.at[i, "uri"])) != (int(fsize), int(mtime)):
                out.append(str(i))
        return out

    @staticmethod
    def save(path: "str | os.PathLike", data: bytes) -> None:
        """Write a derived picture (a display cache file) atomically."""
        from leakcore.io import atomic_write_bytes

        atomic_write_bytes(Path(path), data)


class Review:
    """What the Review page and `leakcore review` work from: the queue of every check reviewed as pairs, its
    decisions merged in, filters, one pair's evidence, and which links a group decision records."""

    BORDERLINE, STATES, SORTS, UNCERTAINTY_SORT, DECISION_LABELS = (BORDERLINE, STATES, SORTS, UNCERTAINTY_SORT,
                                                                   DECISION_LABELS)

    def __init__(self, project: "Project"):
        self._p = project

    def queue(self, hard: float, soft: float, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
        """The queue of pairs (`checks.review_queue`), built without decisions."""
        return _checks.review_queue(self._p.workspace, hard, soft, pairs=pairs)

    def decisions_after(self, after: int = 0, undone: int | None = None):
        """The decisions in force made after decision id `after`, and the pairs undos touched where the store's
        count of undos is no longer `undone` (`review.DecisionsChange`)."""
        return review.decisions_after(self._p.workspace, after, undone)

    @staticmethod
    def lookup(queue: pd.DataFrame):
        """A queue's pair index, built once per queue (`review.pair_lookup`)."""
        return review.pair_lookup(queue)

    @staticmethod
    def with_decisions(queue: pd.DataFrame, decisions: pd.DataFrame, lookup=None, *, over=None) -> pd.DataFrame:
        return review.with_decisions(queue, decisions, lookup, over=over)

    @staticmethod
    def filter_rows(queue: pd.DataFrame, **filters):
        """Positions of the rows the filters keep, in the order asked (`review.filter_rows`)."""
        return review.filter_rows(queue, **filters)

    def evidence(self, eval_item_id: str, train_item_id: str, *, similarity: float | None = None) -> PairEvidence:
        """The second stage's view of one pair: its alignment and aligned canvases (computed now, so any pair can
        be shown), the stored evidence, and the fused model's score with each feature's share (when fitted)."""
        from leakcore import verify

        ws = self._p.workspace
        items = ws.items().drop_duplicates("item_id").set_index("item_id")
        missing = [i for i in (eval_item_id, train_item_id) if i not in items.index]
        if missing:
            raise UnknownName(f"no item {missing[0]!r} in this workspace")
        a, b = verify.load_images(items.loc[[eval_item_id, train_item_id]].reset_index())
        if a is None or b is None:
            raise InvalidInput("one of the two images cannot be read, so there is nothing to align")
        pair = pd.DataFrame({"eval_item_id": [eval_item_id], "train_item_id": [train_item_id]})
        stored = verify.evidence_for(ws, pair).iloc[0]
        verified = bool(pd.notna(stored["ncc"]))
        fm = _stored_model(ws)
        if similarity is None:  # the raw similarity of the stored pair (pass it when you have it: this reads tables)
            raw = leakage.load_pairs(ws, raw=True)
            hit = raw[(raw["eval_item_id"] == eval_item_id) & (raw["train_item_id"] == train_item_id)]
            similarity = float(hit["similarity"].max()) if len(hit) else None
        fused = contributions = None
        if fm is not None and verified and similarity is not None:
            row = stored.copy()
            row["similarity"] = similarity
            if fm.second:  # the second model's similarity: cached for verified pairs, else computed now
                from leakcore import fused as _fused

                second = _fused.SecondOpinion.of_model(ws, fm)
                row[_fused.SECOND_FEATURE] = float(second.similarity(pair)[0])
                if pd.isna(row[_fused.SECOND_FEATURE]):
                    tv = second.encoder().encode_images([b])
                    row[_fused.SECOND_FEATURE] = float(second.of_images([a], tv)[0])
            fused = float(fm.predict(row.to_frame().T)[0])
            contributions = fm.contributions(row)
        by_map = verified and pd.to_numeric(stored.get("variant"), errors="coerce") == verify.BY_MATCHES
        return PairEvidence(verify.explain(a, b, by_matches=bool(by_map)), stored if verified else None, similarity,
                            fused, contributions)


class Scores:
    """The scored pairs and what the Thresholds page draws of them: calibrations, the fused model, curves."""

    def __init__(self, project: "Project"):
        self._p = project

    def pairs(self, encoder: str | None = None, *, raw: bool = False) -> pd.DataFrame:
        """The stored neighbour pairs scored by the score in force (`leakage.load_pairs`)."""
        return leakage.load_pairs(self._p.workspace, encoder, raw=raw)

    def calibration(self, encoder: str | None = None) -> "_calibrate.CalibrationResult | None":
        """The stored calibration of `encoder` (default: the one in use), or None."""
        return _calibrate.load(self._p.workspace, encoder)

    def calibrated_encoders(self) -> list[str]:
        """Encoders with a stored calibration in this workspace."""
        root = self._p.workspace.paths.calibrations
        return sorted(p.parent.name for p in root.glob("*/thresholds.json"))

    def verification_off_note(self, page: bool = False) -> str | None:
        """Where verification is off by default although some datasets are photos (`Workspace.photos_apart`: their
        training images beside many more small ones), what that means and what to do, for the terminal or (`page`)
        for the Home page; None elsewhere."""
        ws = self._p.workspace
        apart = ws.photos_apart()
        if not apart:
            return None
        side = ws._training_shape()[0]
        names = apart[0] if len(apart) == 1 else ", ".join(apart[:-1]) + " and " + apart[-1]
        todo = ("tick “Verify pairs on their pixels” to check every dataset's pairs" if page else
                f"`leakcore scan {ws.path} --verify` checks every dataset's pairs")
        return (f"Verification is off: the training images' median shorter side is {side:.0f} px (small images, where the "
                f"raw similarity does better), so the pairs of {names}, whose images are photos, are not checked on "
                f"their pixels either. Strong crops and heavy edits of photos may be missed: {todo}, or give the "
                "photos a workspace of their own, where it is on by default.")

    def fused_model(self, encoder: str | None = None) -> "_fused.FusedModel | None":
        """The fused score's fitted model for `encoder` (default: the one in use), or None."""
        return _stored_model(self._p.workspace, encoder)

    def thresholds(self, encoder: str | None = None, *, score: str | None = None, required: bool = True):
        """(hard, soft) in force for `encoder` and `score` (default: those in use), with `.source`. An encoder
        nobody calibrated raises `ThresholdsUncalibrated` (calibrate first), or gives None when not `required`."""
        if required:
            return self._p.workspace.thresholds(encoder, score=score)
        return self._p.workspace.thresholds_or_none(encoder, score=score)

    def calibration_views(self, encoder: str):
        """(result, OperatingPoints, ROC curves per edit family, histogram) of the stored calibration, or None."""
        result = _calibrate.load(self._p.workspace, encoder)
        if result is None:
            return None
        s, y, _ = _calibrate.pair_scores(result.scores)
        curves = {"all edits": _calibrate.curve(s, y)}
        for family, grp in result.scores.groupby("family", sort=False):
            fs, fy, _ = _calibrate.pair_scores(grp)
            curves[family] = _calibrate.curve(fs, fy, max_points=500)
        points = _calibrate.OperatingPoints(s, y)
        return result, points, curves, points.histogram()

    RAW_ON_FUSED = "raw similarity (same pairs)"

    def fused_views(self, encoder: str):
        """(model, OperatingPoints, ROC curves, histogram) of the fused score on its fitting pairs, or None; the raw
        similarity's ROC on the same pairs rides along as `RAW_ON_FUSED`."""
        ws = self._p.workspace
        fm = _stored_model(ws, encoder)
        if fm is None:
            return None
        from leakcore import fused as _fused

        scores = _fused.fitting_scores(ws, encoder)
        if scores is None:
            return None
        y = scores["label"].to_numpy()
        curves = {"all edits": _calibrate.curve(scores["fused"].to_numpy(), y),
                  self.RAW_ON_FUSED: _calibrate.curve(scores["similarity"].to_numpy(), y)}
        negatives = scores[~scores["label"]]
        for family, grp in scores[scores["label"]].groupby("family", sort=False):
            both = pd.concat([grp, negatives])
            curves[family] = _calibrate.curve(both["fused"].to_numpy(), both["label"].to_numpy(), max_points=500)
        points = _calibrate.OperatingPoints(scores["fused"].to_numpy(), y)
        return fm, points, curves, points.histogram()

    @staticmethod
    def decision_views(pairs: pd.DataFrame, decisions: pd.DataFrame):
        """(OperatingPoints, ROC) from curator decisions; None under `MIN_DECISIONS_FOR_ROC` decided pairs."""
        got = _calibrate.decision_scores(pairs, decisions)
        if got is None:
            return None
        return _calibrate.OperatingPoints(*got), _calibrate.curve(*got)

    def best(self, pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
        """(best score per evaluation item, evaluation items per split): what `counts_at` needs."""
        return leakage.best_similarity(pairs), leakage.eval_counts(self._p.workspace)

    @staticmethod
    def closest(pairs: pd.DataFrame, leave_out: set, n: int) -> pd.DataFrame:
        """The `n` evaluation images not in `leave_out` nearest the threshold from below (`leakage.closest`)."""
        return leakage.closest(pairs, leave_out, n)

    @staticmethod
    def counts_at(best: pd.DataFrame, hard: float, soft: float, totals: pd.Series) -> pd.DataFrame:
        """Evaluation items flagged per split at these thresholds (automatic flags)."""
        return leakage.counts_at(best, hard, soft, totals)

    @staticmethod
    def robustness_table(result) -> pd.DataFrame:
        """Top-1 accuracy per edit of a calibration."""
        return _calibrate.robustness_table(result)

    def verification_table(self, fm: "_fused.FusedModel", pairs: pd.DataFrame | None = None) -> pd.DataFrame:
        """Per evaluation split: verified pairs, and images flagged at the raw score's soft threshold and at the
        fused score's (what `leakcore verify` prints after a run). `pairs`: the stored pairs already scored by this
        model (`pairs()` where the fused score is in force), else they are read and scored here."""
        from leakcore import fused as _fused

        ws = self._p.workspace
        if pairs is None or "fused" not in pairs or "verified" not in pairs:
            pairs = leakage.load_pairs(ws, raw=True)
            pairs = _fused.with_fused(ws, pairs[~pairs["within"]], fm)
        scored = pairs[~pairs["within"]]
        raw = ws.thresholds(score="similarity")
        rows = []
        for ev, grp in scored.groupby("eval_split", sort=True):
            rows.append({"eval split": ev, "verified pairs": int(grp["verified"].sum()),
                         "flagged (raw soft)": int(grp.loc[grp["similarity"] >= raw.soft, "eval_item_id"].nunique()),
                         "flagged (fused soft)": int(grp.loc[grp["fused"] >= fm.soft, "eval_item_id"].nunique())})
        return pd.DataFrame(rows)


@dataclass(frozen=True)
class Settings:
    """The project's settings in force, one frozen value (`Project.settings`); change them with
    `Project.configure(**changes)`, which checks the acting user's role, validates, stores and audits."""

    encoder: str
    k: int
    flip_queries: bool
    grouping: bool
    verify: bool
    score: str
    encoder_options: dict
    thresholds: "Thresholds | None"  # (hard, soft) in force for `encoder` and `score`; None: not calibrated yet
    group_threshold: float | None
    group_window_s: float
    group_cutoff: str | None
    max_pixels: int | None

    @property
    def score_words(self) -> str:
        """The score the flags use, as the sidebar and the CLI's report name it: "raw similarity" or "fused score"."""
        from leakcore import scores

        return "raw similarity" if self.score == scores.RAW else scores.label(self.score)

    @classmethod
    def of(cls, ws: Workspace) -> "Settings":
        g = ws.group_settings
        return cls(ws.encoder, ws.k, ws.flip_queries, ws.grouping, ws.verification, ws.score, ws.encoder_options,
                   ws.thresholds_or_none(), g["threshold"], g["window_s"], g["cutoff"], ws.max_pixels)


SCAN_SETTINGS = ("encoder", "k", "flip_queries", "grouping", "verify", "encoder_options")
REVIEW_SETTINGS = ("score", "thresholds", "group_threshold", "group_window_s", "group_cutoff")


class Exports:
    """Cleaned evaluation splits: the policy, what each policy removes, the plan, and the written export."""

    def __init__(self, project: "Project"):
        self._p = project

    @staticmethod
    def policy(flags: str = "soft", keep: "str | frozenset | None" = None, dedupe_within: bool = False,
               groups: bool = False, also=()) -> _export.ExportPolicy:
        """A policy from the page's or the CLI's inputs (`keep` as one-per-line text or a set; `also`: checks
        whose findings remove items besides the default ones, `Project.checks.exportable`)."""
        keep = _export.parse_keep_list(keep) if isinstance(keep, str) else frozenset(keep or ())
        chosen = {c.name for c in _checks.exportable_checks() if c.export_default} | set(also or ())
        return _export.ExportPolicy(flags, keep, dedupe_within, groups, frozenset(chosen))

    def preview(self, splits: "list[str] | None" = None, policy: _export.ExportPolicy | None = None) -> pd.DataFrame:
        """What each policy would remove from each evaluation split."""
        policy = policy or _export.ExportPolicy()
        return _export.preview(self._p.workspace, splits, keep=policy.keep, dedupe_within=policy.dedupe_within,
                               groups=policy.groups, checks=policy.checks)

    def plan(self, split: str, policy: _export.ExportPolicy) -> pd.DataFrame:
        """Every item of `split`, kept or removed under `policy`, with the reason."""
        return _export.plan(self._p.workspace, split, policy)

    def preview_and_plan(self, split: str, policy: _export.ExportPolicy) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(`preview` of `split` under `policy`'s options, `plan` under `policy`), the plan made once."""
        return _export.preview_and_plan(self._p.workspace, split, policy)

    def check_folder(self, out: str) -> None:
        """Refuse a folder an export may not write into (outside the server's allowed folders, where a dataset keeps
        its files, inside the workspace, or among other files: `export.output_folder`), before anything is written."""
        _access.check_path(out, "export folder")
        _export.output_folder(self._p.workspace, out, "export", "provenance.json")

    def write(self, split: str, policy: _export.ExportPolicy, *, fmt: str = "same", out: str | None = None,
              links: str | None = None) -> _export.ExportResult:
        """Write the cleaned split (a lead's act); its provenance names the decisions, thresholds and people."""
        team = self._p.team
        who = team.require(Action.EXPORT)
        if out is not None:
            _access.check_path(out, "export folder")
        result = _export.export(self._p.workspace, split, policy, fmt=fmt, out=out, links=links,
                                provenance={"people": self._people(split, who[0])})
        team.audit(who, "export", target=str(split),
                   after={"folder": str(result.folder), "kept": result.kept, "removed": result.removed},
                   details={"flags": policy.flags, "keep": len(policy.keep), "dedupe_within": policy.dedupe_within,
                            "groups": policy.groups, "format": fmt})
        return result

    def archive_plan(self, result: _export.ExportResult) -> _export.ArchivePlan:
        """What a zip of a written export holds (`export.archive_plan`): its files, and its images read through their
        links where they lead into a dataset's folder."""
        return _export.archive_plan(result, self._p.images.roots)

    @staticmethod
    def archive(plan: _export.ArchivePlan) -> bytes:
        """The zip of an `archive_plan` (`export.write_archive`)."""
        return _export.write_archive(plan)

    def _people(self, split: str, exported_by: str) -> dict:
        """Who shaped an export: who exported it, who decided its pairs (how many, in force), who set its thresholds."""
        ws, team = self._p.workspace, self._p.team
        ids = set(ws.split_items(split)["item_id"].astype(str))
        decided = review.latest_decisions(ws)
        # on a pair with an image of the split at either end: a group's links are decided in the order they were
        # linked, often training image first (an export counted 1 of its 16 "same source" removals' decisions)
        decided = decided[decided["eval_item_id"].astype(str).isin(ids) | decided["train_item_id"].astype(str).isin(ids)]
        set_by = team.audit_log.last("thresholds", target=f"{ws.encoder} ({ws.score})")
        roles = team.roles()
        return {
            "exported_by": exported_by,
            "decisions_in_force": int(len(decided)),
            "decisions_by_reviewer": {str(k): int(v) for k, v in decided["reviewer"].value_counts().sort_index().items()},
            "decisions_by_word": {str(k): int(v) for k, v in decided["decision"].value_counts().sort_index().items()},
            "last_decision_at": None if decided.empty else str(decided["created_at"].max()),
            "thresholds_set_by": None if set_by is None else {k: set_by[k] for k in ("user", "time", "after")},
            "roles": None if roles is None else roles.to_dict(),
            "audit_entries": len(team.audit_log.entries()),
        }


class Audits:
    """Audits beyond near-duplicates: coverage and spectra of two image sets, shortcut probes, training dated
    after the cutoff."""

    def __init__(self, project: "Project"):
        self._p = project

    def coverage(self, a: "str | ImageSet", b: "str | ImageSet", *, k: int = _coverage.DEFAULT_K,
                 bootstrap: int = 1000, seed: int = 0, progress: Progress | None = None) -> _coverage.CoverageResult:
        """Improved precision / recall, density / coverage of set B against reference set A, per-image scores."""
        a = a if isinstance(a, ImageSet) else ImageSet(a)
        b = b if isinstance(b, ImageSet) else ImageSet(b)
        return _coverage.audit(self._p.workspace, a, b, k=k, n_resamples=bootstrap, seed=seed, progress=progress)

    def spectra(self, a: "str | ImageSet", b: "str | ImageSet", *, size: int = 128,
                progress: Progress | None = None) -> _coverage.SpectralResult:
        """Spectral fingerprints of two sets and per-image spectral outlier scores against A."""
        a = a if isinstance(a, ImageSet) else ImageSet(a)
        b = b if isinstance(b, ImageSet) else ImageSet(b)
        return _coverage.spectral_audit(self._p.workspace, a, b, size=size, progress=progress)

    def shortcuts(self, dataset: str, *, train_split: str | None = None, eval_split: str | None = None,
                  regions: bool = True, permutations: int = 100, max_items: int = 4000, region_items: int = 1000,
                  progress: Progress | None = None):
        """The shortcut audit (metadata and region probes) of one dataset, stored; see `leakcore.shortcuts`."""
        from leakcore import shortcuts

        self._p.team.require(Action.ANALYSE)
        ws = self._p.workspace
        result = shortcuts.audit(ws, dataset, train_split=train_split, eval_split=eval_split, regions=regions,
                                 permutations=permutations, max_items=max_items, region_items=region_items,
                                 progress=progress)
        shortcuts.save(ws, result)
        return result

    def shortcut_datasets(self) -> list[str]:
        """Datasets a shortcut audit can run on: those with a training split that carries at least two labels."""
        items = self._p.workspace.items()
        train = items[(items["role"] == "train") & (items["status"] == "ok") & items["label"].notna()]
        counts = train.groupby("dataset")["label"].nunique()
        return sorted(str(d) for d, n in counts.items() if n >= 2)

    def shortcut_results(self) -> dict[str, dict]:
        """The stored shortcut audits, by dataset (what `leakcore report` and the Shortcuts page show)."""
        from leakcore import shortcuts

        return shortcuts.load(self._p.workspace)

    def future_training(self, cutoff: str | None = None) -> pd.DataFrame:
        """Training images dated after the cutoff (training on the future)."""
        from leakcore.checks.temporal import future_training

        return future_training(self._p.workspace, cutoff)


class Checks:
    """The registered checks as the facade shows them: the inputs they read, what each flags, rates per split, how
    each reads, which the Review and Export pages offer, and the CI gate (pages and the CLI iterate these; none
    names a check)."""

    def __init__(self, project: "Project"):
        self._p = project

    def inputs(self, *, hard: float | None = None, soft: float | None = None, use_decisions: bool = True,
               pairs: pd.DataFrame | None = None, decisions: pd.DataFrame | None = None) -> _checks.CheckInputs:
        """The thresholds in force (or those given) and the decisions (unless automatic only)."""
        ws = self._p.workspace
        if hard is None or soft is None:
            t = ws.thresholds()
            hard = t.hard if hard is None else hard
            soft = t.soft if soft is None else soft
        if use_decisions and decisions is None:
            decisions = review.latest_decisions(ws)
        return _checks.CheckInputs(float(hard), float(soft), decisions if use_decisions else None, pairs, ws.encoder)

    def findings(self, check: str = "similarity", **inputs) -> pd.DataFrame:
        """What one registered check flags, one row per finding with its reason (`inputs`: those `inputs` takes)."""
        return _checks.get_check(check).findings(self._p.workspace, self.inputs(**inputs))

    def rates(self, checks: "list[str] | None" = None, **inputs) -> pd.DataFrame:
        """Counts and rates per (eval split x training source) for each check asked (default: all registered)."""
        ci = self.inputs(**inputs)
        ws = self._p.workspace
        frames = [_checks.get_check(name).rates(ws, ci) for name in (checks or _checks.rate_check_names())]
        frames = [f for f in frames if not f.empty]
        return pd.concat(frames, ignore_index=True) if frames else _checks.get_check("similarity").rates(ws, ci)

    @staticmethod
    def names() -> list[str]:
        """The checks every rates table holds (what the CI gate can bound), in registry order."""
        return _checks.rate_check_names()

    @staticmethod
    def words(check: str) -> "_checks.Words":
        """How a check's degrees, score and rates read (`leakcore.checks.Words`)."""
        return _checks.get_check(check).words

    @staticmethod
    def reviewable() -> list[dict]:
        """The checks the Review page shows one by one: name, how ("pairs" or "groups"), and what it says."""
        return [{"name": c.name, "review": c.review, "words": c.words.review or c.description}
                for c in _checks.reviewable_checks()]

    @staticmethod
    def exportable() -> list[dict]:
        """The checks whose findings an export can remove: name, whether by default, and what it says."""
        return [{"name": c.name, "default": c.export_default, "description": c.description}
                for c in _checks.exportable_checks()]

    @staticmethod
    def parse_bounds(specs) -> dict:
        """`CHECK=PCT` / `CHECK:hard=PCT` -> the CI gate's bounds (`leakcore.checks.parse_bounds`)."""
        return _checks.parse_bounds(specs)

    @staticmethod
    def gate(table: pd.DataFrame, bounds: dict) -> list[str]:
        """Every bound a rates table (`rates`) breaks, in words; empty when the gate passes."""
        return _checks.gate(table, bounds)

    def verification_pending(self) -> bool:
        """Whether verification is on but its model is not fitted yet (a scan stopped before its fit ended, or one
        made before it was turned on): the rates use the raw similarity until a scan finishes it, which a report of
        a stopped scan did not say. Asked once every search is stored (`unscanned` says the rest)."""
        ws = self._p.workspace
        return bool(ws.verification) and _stored_model(ws) is None

    def unscanned(self) -> list[tuple[str, str]]:
        """(evaluation split, training split) pairs with readable images whose neighbour table is not stored for the
        encoder in use: never scanned, or a scan stopped before their search. Their rates read 0%: a report called a
        workspace that was only added "clean", and the CI gate passed it."""
        from leakcore.schema import split_ids

        ws = self._p.workspace
        items = ws.items()
        ok = items[items["status"].astype(str) == "ok"]
        return [(str(e), str(t)) for e in split_ids(ok, "eval") for t in split_ids(ok, "train")
                if not _scan.pair_path(ws, ws.encoder, e, t).exists()]


class Project:
    """A leakage project: the product's verbs over a `Workspace` it holds. Open with `Project.open(path)` or
    `Project.create`.

    Verbs: `configure`, `add`, `scan` (`plan_only=True`: the plan), `calibrate` (thresholds, or `kind="groups"`),
    `verify`, `groups`, `resplit`, `impact`, `report`, `report_document`. Components: `workspace` (storage: its
    reads, e.g. `project.workspace.items()`), `settings` (frozen; `configure` changes them), `checks` (inputs,
    findings, rates, words, the CI gate), `decisions`, `review`, `team` (roles, audit log), `scores` (pairs,
    thresholds, calibrations, the fused model), `exports`, `audits`, `images`. `actor` names who acts (None:
    `leakcore.access.current_user()`); with a roles file in the workspace every verb that changes it checks the
    actor's role and refuses with `AccessDenied`, and every change that alters later exports is appended to the
    audit log (`leakcore.access`). The workspace's setters are not for callers: settings change through
    `configure` only, data through `add`."""

    def __init__(self, workspace: Workspace, *, actor: str | None = None):
        self.workspace = workspace
        self.actor = actor.strip() if actor else None

    @classmethod
    def open(cls, path: str | os.PathLike, *, actor: str | None = None) -> "Project":
        """Open a workspace (under the server's allowed roots, when it lists any) as `actor`."""
        _access.check_path(path, "workspace")
        return cls(Workspace.open(path), actor=actor)

    @staticmethod
    def openable(path: str | os.PathLike) -> bool:
        """Whether `path` is a workspace this server may open (under its allowed roots): for lists of workspaces."""
        try:
            _access.check_path(path, "workspace")
        except LeakcoreError:
            return False
        return (Path(path) / "project.toml").is_file()

    @classmethod
    def create(cls, path: str | os.PathLike, *, encoder: str = DEFAULT_ENCODER, k: int = DEFAULT_K,
               actor: str | None = None, lead: str | None = None, others: "Role | str | None" = None) -> "Project":
        """Create a workspace (or open the one at `path`) as `actor`, under the allowed roots: not inside another
        workspace, nor in a folder of images (a team server's viewer made one in a dataset's val folder, which wrote
        project.toml among the photos, and one inside the team's workspace). `lead`: a workspace made here gets a
        roles file naming `lead` its lead and everyone else `others` (a viewer unless said; a team server passes the
        open workspace's, so that one whose strangers see nothing does not make one they read); one that existed
        already is only opened."""
        _access.check_path(path, "workspace")
        _check_new_workspace_folder(Path(path))
        made = not (Path(path) / CONFIG_NAME).exists()
        project = cls(Workspace.create(path, encoder=encoder, k=k), actor=actor)
        if lead and made:
            _access.save_roles(project.path, _access.template_roles(lead, others or Role.VIEWER), actor=lead,
                               new_workspace=True)
        return project

    @property
    def path(self) -> Path:
        return self.workspace.path

    # ---- components ----------------------------------------------------------------------------------------
    @property
    def decisions(self) -> Decisions:
        return Decisions(self)

    @property
    def review(self) -> Review:
        return Review(self)

    @property
    def team(self) -> Team:
        return Team(self)

    @property
    def images(self) -> Images:
        return Images(self)

    @property
    def scores(self) -> Scores:
        return Scores(self)

    @property
    def exports(self) -> Exports:
        return Exports(self)

    @property
    def audits(self) -> Audits:
        return Audits(self)

    @property
    def checks(self) -> Checks:
        return Checks(self)

    # ---- settings (checked and audited here; the workspace stores them) ------------------------------------
    @property
    def settings(self) -> Settings:
        return Settings.of(self.workspace)

    def _snapshot(self) -> dict:
        ws = self.workspace
        s = ws.config["settings"]
        return {"settings": {"encoder": ws.encoder, "k": ws.k, "flip_queries": ws.flip_queries,
                             "grouping": ws.grouping, "verify": ws.verification,
                             "encoder_options": {k: dict(v) for k, v in s.get("encoder_options", {}).items()}},
                "groups": ws.group_settings, "score": ws.score,
                "thresholds": {k: dict(v) for k, v in ws.config["thresholds"].items()}}

    def _audit_changes(self, who: tuple[str, str], before: dict, *, groups_always: bool = False) -> None:
        """Append an audit entry for each kind of setting that changed since `before` (a `_snapshot`)."""
        after, team = self._snapshot(), self.team
        if after["settings"] != before["settings"]:
            team.audit(who, "settings", before=before["settings"], after=after["settings"])
        if groups_always or after["groups"] != before["groups"]:
            team.audit(who, "group settings", before=before["groups"], after=after["groups"])
        if after["score"] != before["score"]:
            team.audit(who, "score", before=before["score"], after=after["score"])
        for key, new in after["thresholds"].items():
            old = before["thresholds"].get(key)
            if new != old:
                encoder, _, score = key.partition("+")
                score = score or "similarity"
                if old is not None:  # what was in force before, as `scores.thresholds()` named it
                    old = {"hard": old["hard"], "soft": old["soft"],
                           "source": "fused model" if old.get("source") == "fused model" else "project"}
                elif score == "similarity":  # the encoder's measured defaults, when it has some
                    from leakcore.encoders import get_spec

                    spec = get_spec(encoder)
                    old = {"hard": spec.hard_threshold, "soft": spec.soft_threshold,
                           "source": "encoder default"} if spec.calibrated else None
                team.audit(who, "thresholds", target=f"{encoder} ({score})", before=old,
                           after={"hard": float(new["hard"]), "soft": float(new["soft"]), "source": new.get("source")})

    def configure(self, *, encoder: str | None = None, k: int | None = None, flip_queries: bool | None = None,
                  grouping: bool | None = None, verify: bool | None = None, encoder_options: dict | None = None,
                  score: str | None = None, thresholds: "tuple[float, float] | None" = None,
                  thresholds_for: "tuple[str | None, str | None]" = (None, None), source: str = "manual",
                  group_threshold: float | None = None, group_window_s: float | None = None,
                  group_cutoff: str | None = None) -> Settings:
        """Change settings (None keeps one) and return those in force. Scan settings (encoder, k, flip_queries,
        grouping, verify, encoder_options) need the scan right; the score, thresholds (`(hard, soft)`, for
        `thresholds_for=(encoder, score)`, default those in use, stored with `source`) and the group settings
        need the thresholds right. Every change is validated, stored and audited with its values before and after."""
        ws = self.workspace
        scan_change = any(v is not None for v in (encoder, k, flip_queries, grouping, verify, encoder_options))
        group_change = any(v is not None for v in (group_threshold, group_window_s, group_cutoff))
        review_change = score is not None or thresholds is not None or group_change
        who = self.team.require(Action.SCAN) if scan_change else None
        if review_change:
            who = self.team.require(Action.THRESHOLDS)
        if who is None:
            return self.settings
        if encoder is not None:
            from leakcore.encoders import get_spec

            get_spec(encoder)  # an unknown name raises, listing the valid ones
        if thresholds is not None and not 0.0 < float(thresholds[1]) <= float(thresholds[0]) <= 1.0 + 1e-9:
            raise InvalidInput(f"thresholds must satisfy 0 < soft <= hard <= 1, got hard={thresholds[0]}, "
                               f"soft={thresholds[1]}")  # checked before anything is stored
        if k is not None and int(k) < 1:
            raise InvalidInput(f"k must be at least 1, got {k}")
        if group_window_s is not None and float(group_window_s) < 0:
            raise InvalidInput(f"the group time window must be >= 0 seconds, got {group_window_s}")
        if score is not None and score == "fused" and _stored_model(ws) is None:
            raise InvalidInput("the fused score has no fitted model yet", cli=f"run `leakcore verify {ws.path}` first",
                               page="Verify the candidate pairs first")
        before = self._snapshot()
        if scan_change:
            _scan.configure_scan(ws, encoder=encoder, k=k, flip_queries=flip_queries, encoder_options=encoder_options,
                                 grouping=grouping, verify=verify)
        if score is not None:
            ws.set_score(score)
        if thresholds is not None:
            hard, soft = thresholds
            t_encoder, t_score = thresholds_for
            ws.set_thresholds(hard, soft, encoder=t_encoder, score=t_score, source=source)
        if group_change:
            ws.set_group_settings(threshold=group_threshold, window_s=group_window_s, cutoff=group_cutoff)
        self._audit_changes(who, before, groups_always=group_change)
        return self.settings

    # ---- ingest ------------------------------------------------------------------------------------------
    def add(self, name: str, source: str | os.PathLike, *, fmt: str | None = None,
            roles: "dict[str, str] | list[str] | str | None" = None, root: str | os.PathLike | None = None,
            split: str | None = None, encoder: str | None = None, progress: Callable[[int, int], None] | None = None,
            max_pixels: int | None = None, group_from: str | None = None, group_level: int | None = None,
            follow_links: bool = False) -> dict:
        """Ingest a dataset (layout detected unless `fmt` names one); returns the ingest summary. `follow_links`:
        read the files that links under its folder lead to elsewhere, inside the server's allowed folders."""
        who = self.team.require(Action.ADD)
        _access.check_path(source, "dataset source")
        if root is not None:
            _access.check_path(root, "dataset root")
        roles = roles if isinstance(roles, dict) else ingest.parse_roles(roles)
        summary = ingest.add_dataset(self.workspace, name, source, fmt=fmt, roles=roles, root=root, split=split,
                                     encoder=encoder, progress=progress, max_pixels=max_pixels, group_from=group_from,
                                     group_level=group_level, follow_links=follow_links, allowed=_access.path_allowed)
        self.team.audit(who, "add dataset", target=name, after={"source": str(source), "items": summary.get("items")})
        return summary

    # ---- scan --------------------------------------------------------------------------------------------
    def scan(self, *, progress: Progress | None = None, batch_size: int = 64, encoder: str | None = None,
             k: int | None = None, flip_queries: bool | None = None, encoder_options: dict | None = None,
             grouping: bool | None = None, verify: bool | None = None, ray: str | None = None,
             workers: int | None = None, plan_only: bool = False) -> "_scan.ScanResult | _scan.ScanPlan":
        """Configure (None keeps a setting), plan, and run the jobs: here, or on a Ray cluster when `ray` is an
        address ("local": a Ray started on this machine); the stored results are the same. `plan_only`: configure
        (through `configure`, when a setting is given), then return the plan, each job marked done or to do, and
        run nothing (with no setting given it only reads)."""
        if plan_only:
            self.configure(encoder=encoder, k=k, flip_queries=flip_queries, encoder_options=encoder_options,
                           grouping=grouping, verify=verify)
            return _scan.plan_scan(self.workspace)
        who = self.team.require(Action.SCAN)
        _access.check_ray_address(ray)
        ws = self.workspace
        before = self._snapshot()
        refreshed = self._read_changed_files()
        if ray is None:
            result = _scan.scan(ws, encoder_name=encoder, k=k, flip_queries=flip_queries,
                                encoder_overrides=encoder_options, grouping=grouping, verify=verify, progress=progress,
                                batch_size=batch_size)
        else:
            from leakcore import distributed

            settings = _scan.configure_scan(ws, encoder=encoder, k=k, flip_queries=flip_queries,
                                            encoder_options=encoder_options, grouping=grouping, verify=verify)
            plan = _scan.plan_scan(ws, settings=settings)
            result = distributed.run_scan_ray(ws, plan, address=None if ray == "local" else ray, workers=workers,
                                              progress=progress, batch_size=batch_size)
        result.refreshed = refreshed
        if ws.verification:
            _fused_on_photos(ws)
        self._audit_changes(who, before)
        if result.pairs_searched or result.verified:  # a scan that found everything done changed nothing: not logged
            self.team.audit(who, "scan", after={"encoder": ws.encoder, "k": ws.k, "ray": ray})  # once it has finished
        return result

    def _read_changed_files(self) -> dict:
        """Probe again the image files that changed on disk since they were added (`catalog.changed_files`), before a
        scan plans: the scan then embeds and searches them as they are now. Returns {"changed": files read again,
        "gone": files removed, "new": {dataset: files under a folder dataset's root that are not items yet}}: new
        files are said, not added (`leakcore add` adds them with the options the dataset was added with, which a scan
        does not know: a pattern that names groups, links followed)."""
        from leakcore import catalog

        ws = self.workspace
        items, changed, gone = catalog.changed_files(ws.items(), {n: d.folders for n, d in ws.datasets.items()},
                                                     ws.max_pixels or _images.DEFAULT_MAX_PIXELS)
        if changed:
            ws.write_items(items)
        return {"changed": changed - gone, "gone": gone, "new": self.images.new_files(items)}

    def report(self, *, hard: float | None = None, soft: float | None = None, use_decisions: bool = True) -> dict:
        """Everything `leakcore report --json` prints: thresholds, rates and the matrices."""
        table = self.checks.rates(hard=hard, soft=soft, use_decisions=use_decisions)
        ci = self.checks.inputs(hard=hard, soft=soft, use_decisions=False)
        data = leakage.report_dict(self.workspace, table.drop(columns="check"))
        data.update(hard_threshold=ci.hard, soft_threshold=ci.soft, checks=_checks.list_checks())
        data["rates"] = table.to_dict("records")
        def plain(m):
            return {r: {c: (None if pd.isna(v) else v) for c, v in row.items()} for r, row in m.to_dict("index").items()}

        data["matrices"] = {k: plain(m) for k, m in leakage.matrices(table).items() if not m.empty}
        data["matrices_by_check"] = {check: {k: plain(m) for k, m in leakage.matrices(table, check=check).items()
                                             if not m.empty} for check in sorted(set(table["check"]))}
        audits = self.audits.shortcut_results()
        if audits:
            data["shortcuts"] = {d: {"found": a["found"], "verdict": a["verdict"], "created": a["created"]}
                                 for d, a in audits.items()}
        future = self.audits.future_training()
        if len(future):
            data["training_after_cutoff"] = {"cutoff": self.workspace.group_settings["cutoff"],
                                             "items": int(len(future)), "examples": future["item_id"].head(10).tolist()}
        return data

    def report_document(self, *, hard: float | None = None, soft: float | None = None, use_decisions: bool = True,
                        top: int | None = None, impact: "ImpactRequest | ImpactResult | None" = None):
        """The whole leakage report as one data structure (`.data`: what `report --json` prints; `report()`'s keys
        and summary, verdicts, findings, impact when `impact` asks (a request, measured now, or a result measured
        already: the Impact page's), thresholds, provenance) that draws itself as one self-contained HTML page
        (`.html()`, `.write_html(path)`); see `leakcore.report`."""
        from leakcore import report as _report

        return _report.build(self, hard=hard, soft=soft, use_decisions=use_decisions,
                             top=_report.DEFAULT_TOP if top is None else top,
                             impact=impact if impact is None or isinstance(impact, ImpactResult) else self.impact(impact))

    # ---- groups and time ---------------------------------------------------------------------------------
    def groups(self, *, threshold: float | None = None, use_decisions: bool = True, progress=None,
               in_force: bool = False, decisions: pd.DataFrame | None = None):
        """Explicit, geometry-verified and confirmed groups with their evidence and the percolation guard
        (`leakcore.grouping.Groups`); candidate links not yet measured are measured (and kept) with `progress`.
        `in_force`: at the candidate threshold in force, and without one (an uncalibrated encoder) from explicit
        groups and decisions alone instead of an error. `decisions`: those in force, when the caller holds them."""
        from leakcore import grouping

        if use_decisions and decisions is None:
            decisions = review.latest_decisions(self.workspace)
        decisions = decisions if use_decisions else None
        if in_force and threshold is None:
            return grouping.groups_in_force(self.workspace, decisions=decisions, progress=progress)
        return grouping.recover_groups(self.workspace, threshold=threshold, progress=progress, decisions=decisions)

    def resplit(self, dataset: str, *, test_size: float = 0.2, stratify: str | None = "label",
                time_cutoff: str | None = None, seed: int = 0, out: str | None = None, write: bool = True,
                links: str | None = None):
        """A new train/test assignment in which no group and no flagged pair spans splits; written (own format +
        manifest, and with `links` "symlink" or "copy" the image files in folders per new split) if `write`."""
        from leakcore import resplit

        who = self.team.require(Action.RESPLIT) if write else None
        ws = self.workspace
        result = resplit.plan_resplit(ws, dataset, test_size=test_size, stratify=stratify, time_cutoff=time_cutoff,
                                      seed=seed)
        if not write:
            return result
        written = resplit.write_resplit(ws, result, out, links=links, made_by=who[0])
        self.team.audit(who, "re-split", target=dataset,
                        after={**{k: v for k, v in written.summary.items() if not isinstance(v, (list, dict))},
                               "files": [str(f) for f in written.files]},
                        details={"test_size": test_size, "stratify": stratify, "time_cutoff": time_cutoff, "seed": seed,
                                 "links": links})
        return written

    # ---- thresholds --------------------------------------------------------------------------------------
    def calibrate(self, collection: "str | SplitId", *, kind: str = "thresholds", encoder: str | None = None,
                  queries: int | None = None, target_fpr: float = 0.001, progress: Progress | None = None,
                  apply: bool = False, should_stop: Callable[[], bool] | None = None):
        """`kind="thresholds"`: run the robustness protocol on a collection (`queries` default 1000), store it, and
        make its thresholds the project's if `apply` (a `CalibrationResult`); `should_stop()` is asked between
        steps: a stopped run stores nothing (CalibrationStopped).
        `kind="groups"`: measure the same-source threshold on a collection (its images' overlapping patches and
        pan frames, `queries` default 100) and, if `apply`, make its candidate threshold the group threshold (the
        dict of `leakcore.grouping.calibrate_group_threshold`; `encoder`, `target_fpr` and `should_stop` are the
        thresholds' only)."""
        if kind not in CALIBRATION_KINDS:
            raise UnknownName(f"unknown calibration kind {kind!r}; valid kinds: {', '.join(CALIBRATION_KINDS)}")
        if kind == "groups":
            return self._calibrate_groups(collection, queries=100 if queries is None else queries,
                                          progress=progress, apply=apply)
        queries = 1000 if queries is None else queries
        team = self.team
        who = team.require(Action.CALIBRATE)
        result = _calibrate.calibrate(self.workspace, str(SplitId.parse(collection)), encoder_name=encoder,
                                      queries=queries, target_fpr=target_fpr, progress=progress,
                                      should_stop=should_stop)
        team.audit(who, "calibration", target=f"{result.encoder} on {collection}",
                   after={"suggested_hard": float(result.hard), "suggested_soft": float(result.soft)},
                   details={"queries": queries, "target_fpr": target_fpr, "applied": apply})
        if apply:
            team.require(Action.THRESHOLDS)
            before = self._snapshot()
            _calibrate.apply(self.workspace, result)
            self._audit_changes(who, before)
        return result

    def _calibrate_groups(self, collection: "str | SplitId", *, queries: int, progress: Progress | None,
                          apply: bool) -> dict:
        from leakcore import grouping

        cal = grouping.calibrate_group_threshold(self.workspace, str(collection), queries=queries, progress=progress)
        if apply:
            self.configure(group_threshold=cal["candidate_threshold"])
        return cal

    # ---- verification and the fused score ------------------------------------------------------------------
    def verify(self, *, refit: bool = False, queries: int | None = None, progress: Progress | None = None,
               should_stop=None) -> "_fused.FusedModel":
        """Fit the fused score when there is none (or `refit`: e.g. after enough decisions), then verify every
        stored candidate pair (evidence is cached by the two images' content; an interrupted run resumes). `queries`:
        training images the fitting suite edits (default: as `scan --verify` does, `fused.fitting_size`)."""
        from leakcore import fused as _fused

        who = self.team.require(Action.CALIBRATE)
        ws = self.workspace
        before = self._snapshot()
        fm = None if refit else _fused.load(ws)
        fm = fm or _fused.fit(ws, queries=queries, progress=progress)
        _fused_on_photos(ws)
        self._audit_changes(who, before)  # a fit stores the fused score's thresholds (and it may be put in force)
        for path in sorted(ws.neighbors_dir(ws.encoder).glob("*/*.parquet")):  # pairs checked below the candidates'
            _fused.rescue_table(ws, path, fm)  # threshold, stored in each table once per model
        pairs = leakage.load_pairs(ws, raw=True)  # cross-split and within-split pairs alike
        _fused.verify_pairs(ws, _fused.candidates(pairs, fm), fm, progress=progress, should_stop=should_stop)
        self.team.audit(who, "verification", target=ws.encoder, after={"refit": refit, "hard": fm.hard, "soft": fm.soft})
        return fm

    # ---- impact ------------------------------------------------------------------------------------------
    def impact(self, request: ImpactRequest) -> ImpactResult:
        """Accuracy on full / leaked / non-leaked / random subsets for every model and probe asked."""
        ws = self.workspace
        split = str(SplitId.parse(request.split)) if request.split else downstream.default_eval_split(ws)
        items = downstream.eval_items(ws, split)
        items = items[items["status"] == "ok"]
        source = LeakSource(request.leak_source)
        files = _prediction_files(request.predictions)
        if source == LeakSource.LIST and request.leak_upload is None:
            _access.check_path(request.leak_list, "leak list")
        with tempfile.TemporaryDirectory(prefix="leakcore-impact-") as tmp:
            for i, (name, content) in enumerate(request.uploads):  # written under a clean name, gone afterwards
                dest = Path(tmp) / str(i) / _safe_name(name, f"predictions-{i}.csv")
                dest.parent.mkdir()
                dest.write_bytes(content)
                files.append(dest)
            notes: list[str] = []
            preds = {f.stem.removesuffix("_predictions"): downstream.load_predictions(f, items, notes=notes)
                     for f in files}
            preds.update(downstream.probe_predictions(ws, split, request.probes))
            if not preds:
                raise InvalidInput("nothing to measure", cli="pass --predictions FILE... and/or --probe knn1 knn20",
                                   page="Add at least one predictions file or a probe")
            if source == LeakSource.LIST:
                leak_list = request.leak_list
                if request.leak_upload is not None:
                    leak_list = Path(tmp) / "leaks.csv"
                    leak_list.write_bytes(request.leak_upload[1])
                leaks = downstream.imported_leak_sets(ws, split, leak_list)
            else:
                leaks = downstream.leak_sets(ws, split, use_decisions=source == LeakSource.DECISIONS)
        mean_over = downstream.mean_models(preds)
        table = downstream.impact(downstream.correctness(items, preds), leaks, n_random=request.n_random,
                                  seed=request.seed, mean_over=mean_over)
        return ImpactResult(split, table, len(preds), int(len(items)), len(leaks.hard), len(leaks.soft), leaks.source,
                            downstream.said_once(notes) + tuple(leaks.notes))


def _check_new_workspace_folder(path: Path) -> None:
    """Refuse a new workspace inside another one or in a folder that holds images (a dataset's); an existing
    workspace opens as it is."""
    path = path.expanduser().resolve()
    if (path / CONFIG_NAME).exists():
        return
    for parent in path.parents:
        if (parent / CONFIG_NAME).exists():
            raise InvalidInput(f"{as_code(path, 200)} is inside the workspace {as_code(parent, 200)}: a new workspace "
                               "needs a folder of its own", cli="choose a folder outside it",
                               page="Choose a folder outside it")
    if path.is_dir():
        def files():  # the folder's files and its subfolders' (a class folder of a split), at most 10,000 looked at
            for p in path.iterdir():
                yield p
                if p.is_dir():
                    yield from p.iterdir()

        if any(p.suffix.lower() in _images.IMAGE_EXTENSIONS for p in itertools.islice(files(), 10_000)):
            raise InvalidInput(f"{as_code(path, 200)} holds images: a workspace is kept beside the data, not in it",
                               cli="choose an empty or new folder", page="Choose an empty or new folder")


def open_project(path: str | os.PathLike) -> Project:
    return Project.open(path)


def resplit_pairs_words(summary: dict) -> str:
    """A re-split's flagged pairs in one sentence (`resplit.pairs_words`), as the terminal and the Export page say it."""
    from leakcore import resplit

    return resplit.pairs_words(summary)


def resplit_other_datasets_words(summary: dict) -> str | None:
    """A re-split's images that copy other datasets' training images (`resplit.other_datasets_words`), or None."""
    from leakcore import resplit

    return resplit.other_datasets_words(summary)


__all__ = ["ALL_SOURCES", "identical_within_split", "import_heavy", "listed_once", "AccessDenied", "Action", "Audits", "acting_as", "BORDERLINE", "Checks", "DECIDED_HARD_PRECISION", "DECIDED_PRECISION",
           "DECISION_LABELS", "DEMO_TRUTH", "Decisions", "EXPORT_FORMATS", "EXPORT_POLICIES", "WITHIN_KEPT", "Exports", "ImageSet", "Images",
           "ImpactRequest", "ImpactResult", "LeakSource", "NO_PIXELS", "OUTSIDE_ROOT", "PROBES", "PairEvidence", "Project",
           "ROOTS_ENV", "Review", "Role", "Roles", "SORTS", "STATES", "Scores", "Settings", "Team", "UNCERTAINTY_SORT", "WITHIN",
           "FEATURE_WORDS", "atomic_write_text", "configure_access", "refined_worse", "degree_of", "format_names", "list_encoders", "matrices", "matrix_csv", "normalise_user",
           "open_project", "os_user", "planted_truth", "resplit_other_datasets_words", "resplit_pairs_words"]
