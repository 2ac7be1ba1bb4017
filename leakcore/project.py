"""The workspace on disk: project.toml, items.parquet, artefact folders, atomic writes."""
from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import tomllib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import pandas as pd
import tomli_w

from leakcore import images
from leakcore.encoders import get_spec
from leakcore.errors import InvalidInput, ThresholdsUncalibrated, WorkspaceError
from leakcore.io import atomic_write_text, file_stamp, write_parquet  # noqa: F401
from leakcore.schema import SplitId, empty_items, normalise_items, split_ids, split_items

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = 1
CONFIG_NAME = "project.toml"
ITEMS_NAME = "items.parquet"
DEFAULT_ENCODER = "sscd-distilled"
DEFAULT_K = 10
SCORES = ("similarity", "fused")  # what pairs are scored by (see leakcore.fused)
MIN_FIT_IMAGES = 20  # readable training images the fused score's fit needs (leakcore.fused; fewer: no verification
# by default, and `scan --verify` says so)


class Thresholds(tuple):
    """(hard, soft) in force, unpacking as a pair, with `source`: "project" or "encoder default"."""

    def __new__(cls, hard: float, soft: float, source: str):
        self = super().__new__(cls, (float(hard), float(soft)))
        self.source = source
        return self

    @property
    def hard(self) -> float:
        return self[0]

    @property
    def soft(self) -> float:
        return self[1]


@dataclass
class DatasetConfig:
    """One registered dataset: where it came from and how its splits map to roles."""

    name: str
    format: str
    source: str
    root: str
    roles: dict[str, str] = field(default_factory=dict)
    encoder: str | None = None  # embeddings-only sources: the encoder that made the vectors
    link_roots: list[str] = field(default_factory=list)  # folders outside `root` that its followed links lead into

    def to_toml(self) -> dict[str, Any]:
        data = {"format": self.format, "source": self.source, "root": self.root, "roles": dict(self.roles)}
        if self.encoder:
            data["encoder"] = self.encoder
        if self.link_roots:
            data["link_roots"] = list(self.link_roots)
        return data

    @property
    def folders(self) -> list[str]:
        """The folders its files may be read from: its root, and those its followed links lead into."""
        return ([self.root] if self.root else []) + list(self.link_roots)


@dataclass(frozen=True)
class Layout:
    """Where every artefact of a workspace lives: the one place that joins paths under the workspace folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def items(self) -> Path:
        return self.root / ITEMS_NAME

    @property
    def review_db(self) -> Path:
        return self.root / "review.sqlite"

    @property
    def review_wal(self) -> Path:
        return self.root / "review.sqlite-wal"

    def embeddings(self, encoder: str, fingerprint: str | None = None) -> Path:
        """embeddings/<encoder>/[<fingerprint>/]: the vector cache of an encoder (of one build of it)."""
        folder = self.root / "embeddings" / encoder
        return folder / fingerprint if fingerprint else folder

    def neighbors(self, encoder: str) -> Path:
        return self.root / "neighbors" / encoder

    @property
    def calibrations(self) -> Path:
        return self.root / "calibration"

    def calibration(self, encoder: str) -> Path:
        return self.calibrations / encoder

    def calibration_thresholds(self, encoder: str) -> Path:
        return self.calibration(encoder) / "thresholds.json"

    def group_pairs(self, encoder: str) -> Path:
        """groups/<encoder>/: the training-split searches only grouping reads."""
        return self.root / "groups" / encoder

    def geometry(self, version: int) -> Path:
        """groups/geometry-v<version>/: what local features measured on candidate links."""
        return self.root / "groups" / f"geometry-v{version}"

    def evidence(self, version: int) -> Path:
        """verify/evidence-v<version>/: the verification stage's pixel evidence."""
        return self.root / "verify" / f"evidence-v{version}"

    def fused(self, encoder: str) -> Path:
        """verify/<encoder>/: the fused score's model and its fitting suite."""
        return self.root / "verify" / encoder

    def fused_file(self, encoder: str, name: str) -> Path:
        """One file of the fused score: model.json, suite.parquet or suite.json."""
        if name not in FUSED_FILES:
            raise ValueError(f"fused score files are {', '.join(FUSED_FILES)}, got {name!r}")
        return self.fused(encoder) / name

    @property
    def shortcuts(self) -> Path:
        return self.root / "shortcuts"

    def shortcut_audit(self, dataset: str) -> Path:
        return self.shortcuts / f"{dataset}.json"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    @property
    def display_cache(self) -> Path:
        """cache/display/: pictures made for the review loop."""
        return self.root / "cache" / "display"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def images(self) -> Path:
        """images/: pictures a workspace holds itself (the demo's)."""
        return self.root / "images"

    def file(self, name: str) -> Path:
        """A file of its own at the top of the workspace (the demo's truth table)."""
        if "/" in name or "\\" in name or name in ("", ".", ".."):
            raise ValueError(f"a top-level file name has no folder in it, got {name!r}")
        return self.root / name


FUSED_FILES = ("model.json", "suite.parquet", "suite.json")


class Caches:
    """What is derived from a workspace's artefacts and kept in memory: per name, a few keys (usually the
    artefact's `stamp`, so that a new version replaces the old), the least recently used dropped first."""

    def __init__(self) -> None:
        self._named: dict[str, OrderedDict] = {}
        self._lock = threading.RLock()

    def get(self, name: str, key, compute: Callable[[], T], *, entries: int = 1) -> T:
        """The value kept under (`name`, `key`), else `compute()` kept there (computed outside the lock: two
        threads may both compute it once)."""
        with self._lock:
            memo = self._named.setdefault(name, OrderedDict())
            if key in memo:
                memo.move_to_end(key)
                return memo[key]
        value = compute()
        with self._lock:
            memo = self._named.setdefault(name, OrderedDict())
            memo[key] = value
            memo.move_to_end(key)
            while len(memo) > max(1, entries):
                memo.popitem(last=False)
        return value

    def clear(self, *names: str) -> None:
        """Forget what is kept (under these names, or all)."""
        with self._lock:
            for name in names or list(self._named):
                self._named.pop(name, None)

    def __len__(self) -> int:
        with self._lock:
            return sum(len(m) for m in self._named.values())

    def __getstate__(self) -> dict:
        return {}  # a copy (in another process) starts empty: what is kept is this process's memory

    def __setstate__(self, state: dict) -> None:
        self.__init__()


class Workspace:
    """A folder holding one leakage project; see DESIGN.md for the layout.

    It owns where artefacts live (`paths`), their versions (`stamp`) and what is derived from them and kept in
    memory (`cache`, held in `caches`): they live as long as this object, or longer where the dashboard hands
    every object it opens on one folder the same `Caches` (keys are versions, so sharing them is safe)."""

    def __init__(self, path: str | os.PathLike, config: dict[str, Any]):
        self.path = Path(path).resolve()
        self.paths = Layout(self.path)
        self.config = config
        self.caches = Caches()
        images.allow(self.max_pixels)  # a limit above the default is honoured wherever this workspace's images are read

    # ---- creation and loading -------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, *, encoder: str = DEFAULT_ENCODER, k: int = DEFAULT_K) -> "Workspace":
        """Create a new workspace, or open the existing one at `path`."""
        path = Path(path)
        if (path / CONFIG_NAME).exists():
            return cls.open(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {
            "schema_version": SCHEMA_VERSION,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "settings": {"encoder": encoder, "k": int(k)},
            "thresholds": {},
            "datasets": {},
        }
        ws = cls(path, config)
        for folder in (ws.paths.embeddings(""), ws.paths.neighbors(""), ws.paths.calibrations, ws.paths.exports):
            folder.mkdir(exist_ok=True)
        ws.save_config()
        write_parquet(empty_items(), ws.items_path)
        return ws

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Workspace":
        """Open a workspace; fail clearly if it is missing or written by a newer schema."""
        path = Path(path)
        cfg_path = path / CONFIG_NAME
        if not cfg_path.exists():
            if not path.exists():  # a typo, most often: a new user's `scan wss` was told to create `wss`
                raise WorkspaceError(f"there is no folder {path}", cli="check the path; a new workspace is made by "
                                     "`leakcore init DIR` or `leakcore add DIR --dataset NAME --source DATA`",
                                     page="Check the path, or use 'Create here' to make a workspace there")
            near = sorted(p.parent.name for p in path.parent.glob(f"*/{CONFIG_NAME}"))[:3] if path.parent.is_dir() else []
            raise WorkspaceError(f"{path} is not a workspace (no {CONFIG_NAME})",
                                 cli=(f"workspaces beside it: {', '.join(near)}; " if near else "")
                                 + f"`leakcore init DIR` makes one in a new folder beside the data, not in it",
                                 page="Use 'Create here' to make one")
        try:
            config = tomllib.loads(cfg_path.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise WorkspaceError(f"{cfg_path} is not valid TOML: {exc}") from exc
        version = config.get("schema_version")
        if not isinstance(version, int):
            raise WorkspaceError(f"{cfg_path} has no integer schema_version")
        if version > SCHEMA_VERSION:
            raise WorkspaceError(
                f"{path} was written by a newer leakcore (workspace schema {version}; this version reads up to "
                f"{SCHEMA_VERSION}). Upgrade leakcore to open it."
            )
        config.setdefault("settings", {}).setdefault("encoder", DEFAULT_ENCODER)
        config["settings"].setdefault("k", DEFAULT_K)
        config.setdefault("thresholds", {})
        config.setdefault("datasets", {})
        return cls(path, config)

    def save_config(self) -> None:
        atomic_write_text(self.paths.config, tomli_w.dumps(self.config))

    # ---- paths --------------------------------------------------------------------------------
    @property
    def items_path(self) -> Path:
        return self.paths.items

    @property
    def review_db(self) -> Path:
        return self.paths.review_db

    def embeddings_dir(self, encoder: str) -> Path:
        return self.paths.embeddings(encoder)

    def neighbors_dir(self, encoder: str) -> Path:
        return self.paths.neighbors(encoder)

    def calibration_dir(self, encoder: str) -> Path:
        return self.paths.calibration(encoder)

    @property
    def exports_dir(self) -> Path:
        return self.paths.exports

    # ---- versions and the caches keyed on them -------------------------------------------------------
    def stamp(self, artefact: str, *args) -> tuple:
        """The version of one artefact: (path, mtime_ns, size, inode) of each of its files, read from the disk on
        each call (a few stat calls), so a write by this process or another (the CLI beside the dashboard) shows at
        once. Artefacts:
        config, items, review, neighbors [encoder], groups [encoder], embeddings [encoder [fingerprint]],
        evidence, geometry, fused [encoder], calibration [encoder], shortcuts, source <file> (a dataset's file)."""
        if artefact not in STAMPS:
            raise ValueError(f"unknown artefact {artefact!r}; artefacts are {', '.join(sorted(STAMPS))}")
        return STAMPS[artefact](self, *args)

    def cache(self, name: str, key, compute: Callable[[], T], *, entries: int = 1) -> T:
        """`compute()` kept under (`name`, `key`) in this workspace's `caches`; `key` is usually a `stamp`, so a
        new version replaces the old. At most `entries` keys per name (the least recently used go)."""
        return self.caches.get(name, key, compute, entries=entries)

    @property
    def sources(self):
        """The reader of this workspace's dataset files (`catalog.SourceReader`), which keeps the containers
        (Parquet row groups, CIFAR batches) it opened."""
        from leakcore.catalog import SourceReader

        return self.cache("source reader", None, SourceReader)

    def use_caches(self, caches: Caches) -> None:
        """Keep what `cache` derives in `caches` from now on: the dashboard hands every object it opens on one
        folder the same (keys are versions, so an object opened later never reads a stale entry)."""
        self.caches = caches

    def clear_caches(self, *names: str) -> None:
        """Forget what `cache` holds (under these names, or all)."""
        self.caches.clear(*names)

    # ---- settings -------------------------------------------------------------------------
    @property
    def encoder(self) -> str:
        return self.config["settings"]["encoder"]

    @property
    def k(self) -> int:
        return int(self.config["settings"]["k"])

    @property
    def encoder_options(self) -> dict:
        """Overrides the encoder is built with (input_size, weights), kept so re-scans reuse the cache."""
        return dict(self.config["settings"].get("encoder_options", {}).get(self.encoder, {}))

    def set_encoder_options(self, **options) -> None:
        """Remember non-None encoder overrides for the current encoder."""
        opts = {k: v for k, v in options.items() if v is not None}
        if opts:
            self.config["settings"].setdefault("encoder_options", {})[self.encoder] = opts
            self.save_config()

    @property
    def flip_queries(self) -> bool:
        """Also search each evaluation image's mirror image (catches flipped copies)."""
        return bool(self.config["settings"].get("flip_queries", False))

    @property
    def grouping(self) -> bool:
        """Also search training splits against each other, so that groups can be recovered across all splits."""
        return bool(self.config["settings"].get("grouping", False))

    @property
    def group_settings(self) -> dict:
        """Grouping and temporal settings: threshold (None: the encoder's), time window in seconds, time cutoff."""
        g = self.config["settings"].get("groups", {})
        return {"threshold": g.get("threshold"), "window_s": float(g.get("window_s", 60.0)), "cutoff": g.get("cutoff")}

    def set_group_settings(self, *, threshold: float | None = None, window_s: float | None = None,
                           cutoff: str | None = None) -> None:
        """Store grouping settings (None keeps one); the cutoff is a time, e.g. 2024-01-01T00:00:00Z."""
        g = self.config["settings"].setdefault("groups", {})
        for key, value in (("threshold", threshold), ("window_s", window_s), ("cutoff", cutoff)):
            if value is not None:
                g[key] = value
        self.save_config()

    @property
    def verification(self) -> bool:
        """Check candidate pairs on their pixels after the search (the verification stage, leakcore.verify): as
        set (`scan --verify` / `--no-verify`, the Home page's box), else on for photos and off for small images
        (`photos`). On photos it finds planted copies that the raw similarity misses and flags no look-alike
        (docs/verification.md); on 32 px images the fused score misses more leaks than the raw one
        (docs/verification-cifar-default.md), so there it is opt-in."""
        chosen = self.config["settings"].get("verify")
        return bool(chosen) if chosen is not None else self.photos() and self._training_shape()[1] >= MIN_FIT_IMAGES

    @property
    def verification_chosen(self) -> bool:
        """Whether verification was set for this workspace (else it follows `photos`)."""
        return self.config["settings"].get("verify") is not None

    def photos(self) -> bool:
        """Whether the training images are large enough for local features (median shorter side at least
        verify.ORB_MIN_SIDE, as photos are and CIFAR-10's 32 px images are not); False before any are read."""
        from leakcore.verify import ORB_MIN_SIDE

        side = self._training_shape()[0]
        return side is not None and side >= ORB_MIN_SIDE

    def photos_apart(self) -> list[str]:
        """The datasets whose own training images are photos (median shorter side at least verify.ORB_MIN_SIDE) in a
        workspace whose training images as a whole are not (`photos`: a few hundred photos beside CIFAR-10's 32 px
        images), where verification was not chosen: it is then off for them too, and said so (a new user's three
        datasets scanned with no word that the photos were not checked on their pixels). Empty otherwise."""
        from leakcore.verify import ORB_MIN_SIDE

        if self.verification_chosen or self.photos():
            return []

        def read() -> list[str]:
            items = self._items()
            if items.empty or "width" not in items:
                return []
            train = items[(items["role"] == "train") & (items["status"] == "ok")]
            side = np.minimum(train["width"].to_numpy(float), train["height"].to_numpy(float))
            medians = pd.Series(side, index=train["dataset"].astype(str).to_numpy()).groupby(level=0).median()
            return sorted(medians[medians >= ORB_MIN_SIDE].index)

        return self.cache("photo datasets", self.stamp("items"), read)

    def _training_shape(self) -> tuple[float | None, int]:
        """(median shorter side, count) of the readable training images, read once per version of the items."""
        def read() -> tuple[float | None, int]:
            items = self._items()
            if items.empty or "width" not in items:
                return None, 0
            train = items[(items["role"] == "train") & (items["status"] == "ok")]
            side = np.minimum(train["width"].to_numpy(float), train["height"].to_numpy(float))
            side = side[~np.isnan(side)]
            count = int(train["sha256"].nunique()) if "sha256" in train else len(train)  # as the fit counts them
            return (float(np.median(side)) if len(side) else None), count

        return self.cache("training shape", self.stamp("items"), read)

    def set_settings(self, *, encoder: str | None = None, k: int | None = None, flip_queries: bool | None = None,
                     grouping: bool | None = None, verify: bool | None = None, max_pixels: int | None = None) -> None:
        """Change the encoder, k, query flips, grouping, verification or the decoder's pixel limit; `None` keeps
        the current value."""
        if max_pixels is not None:
            self.config["settings"]["max_pixels"] = int(max_pixels)
            images.allow(int(max_pixels))
        if verify is not None:
            self.config["settings"]["verify"] = bool(verify)
        if grouping is not None:
            self.config["settings"]["grouping"] = bool(grouping)
        if flip_queries is not None:
            self.config["settings"]["flip_queries"] = bool(flip_queries)
        if encoder is not None:
            self.config["settings"]["encoder"] = encoder
        if k is not None:
            self.config["settings"]["k"] = int(k)
        self.save_config()

    @property
    def max_pixels(self) -> int | None:
        """The largest image (in pixels) ingest decodes; None: the decoder's default."""
        value = self.config["settings"].get("max_pixels")
        return None if value is None else int(value)

    @property
    def score(self) -> str:
        """What pairs are scored by: "similarity" (the embedding's) or "fused" (with pixel verification)."""
        return str(self.config["settings"].get("score", "similarity"))

    @property
    def score_chosen(self) -> bool:
        """Whether the score was set (`verify --use`, the Thresholds page), not left at its default."""
        return self.config["settings"].get("score") is not None

    def set_score(self, score: str) -> None:
        if score not in SCORES:
            raise InvalidInput(f"score must be one of {', '.join(SCORES)}, got {score!r}")
        self.config["settings"]["score"] = score
        self.save_config()

    def _threshold_key(self, encoder: str, score: str | None) -> str:
        score = score or self.score
        return encoder if score == "similarity" else f"{encoder}+{score}"

    def thresholds(self, encoder: str | None = None, *, score: str | None = None) -> Thresholds:
        """(hard, soft) in force for `encoder`: the project's own, else the encoder's measured defaults.

        An encoder nobody calibrated has no defaults: that raises `ThresholdsUncalibrated` (calibrate first)
        rather than borrowing another encoder's numbers."""
        encoder = encoder or self.encoder
        own = self.config["thresholds"].get(self._threshold_key(encoder, score))
        if own:
            return Thresholds(float(own["hard"]), float(own["soft"]), "project" if own.get("source") != "fused model"
                              else "fused model")
        if (score or self.score) != "similarity":
            raise ThresholdsUncalibrated(
                f"the {score or self.score} score of {encoder} has no thresholds yet (no fitted model)",
                cli=f"fit it first: `leakcore verify {self.path} --refit`",
                page="Fit the fused score first (Thresholds page, Fused score)")
        spec = get_spec(encoder)
        if not spec.calibrated:
            raise ThresholdsUncalibrated(
                f"{encoder} has no calibrated thresholds yet (nobody measured them for this encoder)",
                cli=f"calibrate first: `leakcore calibrate {self.path} --collection DATASET/SPLIT --encoder {encoder} --apply`",
                page="Calibrate first on the Thresholds page, then apply the suggested values")
        return Thresholds(spec.hard_threshold, spec.soft_threshold, "encoder default")

    def thresholds_or_none(self, encoder: str | None = None, *, score: str | None = None) -> Thresholds | None:
        """Like `thresholds`, but None for an uncalibrated encoder (for views that can go on without them)."""
        try:
            return self.thresholds(encoder, score=score)
        except ThresholdsUncalibrated:
            return None

    def set_thresholds(self, hard: float, soft: float, *, encoder: str | None = None, source: str = "manual",
                       score: str | None = None) -> None:
        """Store project thresholds for an encoder and score (default: the one in use); every reader derives
        degrees from them."""
        if not 0.0 < soft <= hard <= 1.0 + 1e-9:
            raise InvalidInput(f"thresholds must satisfy 0 < soft <= hard <= 1, got hard={hard}, soft={soft}")
        encoder = encoder or self.encoder
        self.config["thresholds"][self._threshold_key(encoder, score)] = {"hard": float(hard), "soft": float(soft),
                                                                          "source": source}
        self.save_config()

    # ---- datasets and items ---------------------------------------------------------------
    @property
    def datasets(self) -> dict[str, DatasetConfig]:
        return {
            name: DatasetConfig(name=name, **{k: v for k, v in cfg.items()
                                              if k in ("format", "source", "root", "roles", "encoder", "link_roots")})
            for name, cfg in self.config["datasets"].items()
        }

    def register_dataset(self, ds: DatasetConfig) -> None:
        existing = self.config["datasets"].get(ds.name, {})
        roles = dict(existing.get("roles", {}))
        roles.update(ds.roles)
        merged = ds.to_toml()
        merged["roles"] = roles
        self.config["datasets"][ds.name] = merged
        self.save_config()

    def dataset_roots(self) -> list[Path]:
        """Folders the app may serve files from: each dataset's root, and the folders its followed links lead into
        (`leakcore add --follow-links`)."""
        return [Path(r).resolve() for ds in self.datasets.values() for r in ds.folders]

    def items(self) -> pd.DataFrame:
        """The item table: read once per version of items.parquet; each caller gets its own copy to change."""
        return self._items().copy(deep=False)  # copy on write: a caller's change never reaches the cache

    def _items(self) -> pd.DataFrame:
        """The cached item table itself (never change it: `items()` hands out copies)."""
        def read() -> pd.DataFrame:
            if not self.paths.items.exists():
                return empty_items()
            return normalise_items(pd.read_parquet(self.paths.items))

        return self.cache("items", self.stamp("items"), read)

    def write_items(self, df: pd.DataFrame) -> None:
        df = normalise_items(df).sort_values(["dataset", "split", "item_id"], kind="stable").reset_index(drop=True)
        write_parquet(df, self.paths.items)

    def splits(self) -> pd.DataFrame:
        """One row per (dataset, split): role and item counts."""
        items = self.items()
        if items.empty:
            return pd.DataFrame(columns=["dataset", "split", "role", "items", "ok", "unreadable"])
        g = items.groupby(["dataset", "split", "role"], sort=True)
        out = g.size().rename("items").to_frame()
        out["ok"] = g["status"].apply(lambda s: int((s == "ok").sum()))
        out["unreadable"] = out["items"] - out["ok"]
        return out.reset_index()

    def split_ids(self, role: str | None = None) -> list[SplitId]:
        """Every split of the workspace (of one role when given), in name order."""
        return split_ids(self._items(), role)

    def split_items(self, split: "str | SplitId", *, role: str | None = None) -> pd.DataFrame:
        """The items of one split, else an error listing the valid ones."""
        return split_items(self._items(), split, role=role)


def _glob_stamp(folder: Path, pattern: str, recursive: bool = False) -> tuple:
    if not folder.exists():
        return ()
    return file_stamp(*sorted(folder.rglob(pattern) if recursive else folder.glob(pattern)))


def _stamp_embeddings(ws: Workspace, encoder: str | None = None, fingerprint: str | None = None) -> tuple:
    folder = ws.paths.embeddings(encoder or ws.encoder, fingerprint)
    return _glob_stamp(folder, "*.keys.parquet", recursive=True)


def _stamp_evidence(ws: Workspace) -> tuple:
    from leakcore.verify import VERSION

    return _glob_stamp(ws.paths.evidence(VERSION), "part-*.parquet")


def _stamp_geometry(ws: Workspace) -> tuple:
    from leakcore.grouping import GEOMETRY_VERSION

    return _glob_stamp(ws.paths.geometry(GEOMETRY_VERSION), "part-*.parquet")


def _stamp_fused(ws: Workspace, encoder: str | None = None) -> tuple:
    encoder = encoder or ws.encoder
    return file_stamp(ws.paths.fused_file(encoder, "model.json"))


STAMPS: dict[str, Callable[..., tuple]] = {  # artefact -> its stamp (a table of the workspace's own, never grown)
    "config": lambda ws: file_stamp(ws.paths.config),
    "items": lambda ws: file_stamp(ws.paths.items),
    "review": lambda ws: file_stamp(ws.paths.review_db, ws.paths.review_wal),
    "neighbors": lambda ws, encoder=None: _glob_stamp(ws.paths.neighbors(encoder or ws.encoder), "*/*.json"),
    "groups": lambda ws, encoder=None: _glob_stamp(ws.paths.group_pairs(encoder or ws.encoder), "*/*.json"),
    "embeddings": _stamp_embeddings,
    "evidence": _stamp_evidence,
    "geometry": _stamp_geometry,
    "fused": _stamp_fused,
    "calibration": lambda ws, encoder=None: file_stamp(ws.paths.calibration_thresholds(encoder or ws.encoder)),
    "shortcuts": lambda ws: _glob_stamp(ws.paths.shortcuts, "*.json"),
    "source": lambda ws, uri: file_stamp(Path(uri)),
}
