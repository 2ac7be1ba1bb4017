"""The workspace on disk: project.toml, items.parquet, artefact folders, atomic writes."""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import tomli_w

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CONFIG_NAME = "project.toml"
ITEMS_NAME = "items.parquet"
DEFAULT_ENCODER = "sscd-distilled"
DEFAULT_K = 10


class WorkspaceError(ValueError):
    """A workspace is missing, malformed, or from a newer version of the tool."""


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes so that readers see either the old file or the whole new one."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_parquet(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Atomically write a DataFrame as Parquet (no index)."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


@dataclass
class DatasetConfig:
    """One registered dataset: where it came from and how its splits map to roles."""

    name: str
    format: str
    source: str
    root: str
    roles: dict[str, str] = field(default_factory=dict)
    encoder: str | None = None  # embeddings-only sources: the encoder that made the vectors

    def to_toml(self) -> dict[str, Any]:
        data = {"format": self.format, "source": self.source, "root": self.root, "roles": dict(self.roles)}
        if self.encoder:
            data["encoder"] = self.encoder
        return data


class Workspace:
    """A folder holding one leakage project; see DESIGN.md for the layout."""

    def __init__(self, path: str | os.PathLike, config: dict[str, Any]):
        self.path = Path(path).resolve()
        self.config = config

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
        for sub in ("embeddings", "neighbors", "calibration", "exports"):
            (ws.path / sub).mkdir(exist_ok=True)
        ws.save_config()
        from leakcore.catalog import empty_items

        write_parquet(empty_items(), ws.items_path)
        return ws

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Workspace":
        """Open a workspace; fail clearly if it is missing or written by a newer schema."""
        path = Path(path)
        cfg_path = path / CONFIG_NAME
        if not cfg_path.exists():
            raise WorkspaceError(f"{path} is not a workspace (no {CONFIG_NAME}); create one with `leakcore init {path}`")
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
        atomic_write_text(self.path / CONFIG_NAME, tomli_w.dumps(self.config))

    # ---- paths --------------------------------------------------------------------------------
    @property
    def items_path(self) -> Path:
        return self.path / ITEMS_NAME

    @property
    def review_db(self) -> Path:
        return self.path / "review.sqlite"

    def embeddings_dir(self, encoder: str) -> Path:
        return self.path / "embeddings" / encoder

    def neighbors_dir(self, encoder: str) -> Path:
        return self.path / "neighbors" / encoder

    def calibration_dir(self, encoder: str) -> Path:
        return self.path / "calibration" / encoder

    @property
    def exports_dir(self) -> Path:
        return self.path / "exports"

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

    def set_settings(self, *, encoder: str | None = None, k: int | None = None, flip_queries: bool | None = None) -> None:
        """Change the encoder, k or query flips; `None` keeps the current value."""
        if flip_queries is not None:
            self.config["settings"]["flip_queries"] = bool(flip_queries)
        if encoder is not None:
            self.config["settings"]["encoder"] = encoder
        if k is not None:
            self.config["settings"]["k"] = int(k)
        self.save_config()

    def thresholds(self, encoder: str | None = None) -> tuple[float, float]:
        """(hard, soft) in force for `encoder`: the project's own, else the encoder's defaults."""
        encoder = encoder or self.encoder
        own = self.config["thresholds"].get(encoder)
        if own:
            return float(own["hard"]), float(own["soft"])
        from leakcore.encoders import get_spec

        spec = get_spec(encoder)
        return spec.hard_threshold, spec.soft_threshold

    def set_thresholds(self, hard: float, soft: float, *, encoder: str | None = None, source: str = "manual") -> None:
        """Store project thresholds for an encoder; every reader derives degrees from them."""
        if not 0.0 < soft <= hard <= 1.0 + 1e-9:
            raise ValueError(f"thresholds must satisfy 0 < soft <= hard <= 1, got hard={hard}, soft={soft}")
        encoder = encoder or self.encoder
        self.config["thresholds"][encoder] = {"hard": float(hard), "soft": float(soft), "source": source}
        self.save_config()

    # ---- datasets and items ---------------------------------------------------------------
    @property
    def datasets(self) -> dict[str, DatasetConfig]:
        return {
            name: DatasetConfig(name=name, **{k: v for k, v in cfg.items() if k in ("format", "source", "root", "roles", "encoder")})
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
        """Folders the app may serve files from."""
        return [Path(ds.root).resolve() for ds in self.datasets.values() if ds.root]

    def items(self) -> pd.DataFrame:
        from leakcore.catalog import empty_items, normalise_items

        if not self.items_path.exists():
            return empty_items()
        return normalise_items(pd.read_parquet(self.items_path))

    def write_items(self, df: pd.DataFrame) -> None:
        from leakcore.catalog import normalise_items

        df = normalise_items(df).sort_values(["dataset", "split", "item_id"], kind="stable").reset_index(drop=True)
        write_parquet(df, self.items_path)

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
