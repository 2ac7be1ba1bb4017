"""The shapes every layer shares: the item table, the split id, and the curator's decision words."""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import pandas as pd

from leakcore.errors import UnknownName, UnknownSplit

ITEM_COLUMNS = {
    "item_id": "string",
    "dataset": "string",
    "split": "string",
    "role": "string",
    "key": "string",  # the item's key in its source: relative path, index or id
    "uri": "string",  # file path, container (Parquet / CIFAR batch) path, or URL for embeddings-only items
    "row": "int64",  # row inside the container; -1 when `uri` is the image file itself
    "label": "string",
    "group": "string",
    "timestamp": "string",
    "caption": "string",
    "width": "int64",
    "height": "int64",
    "sha256": "string",
    "status": "string",  # ok | unreadable
    "reason": "string",
    "fsize": "int64",  # size and mtime of the file the bytes came from, for cheap change detection
    "mtime_ns": "int64",
    "camera": "string",  # EXIF make, model and body serial, where present
    "time": "datetime64[ns, UTC]",  # `timestamp` (or EXIF DateTimeOriginal) parsed; NaT when none or unparseable
    "time_error": "string",  # why `timestamp` could not be parsed (never dropped silently)
}

_EXIF_TIME = re.compile(r"^(\d{4}):(\d{2}):(\d{2})([ T].*)?$")


def parse_times(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Timestamps as written in sources -> (UTC datetimes, reason per unparseable value).

    Accepts ISO 8601 (a zone-less time is taken as UTC), epoch seconds (or milliseconds, when the number
    is too large for seconds), and EXIF's "YYYY:MM:DD HH:MM:SS"."""
    text = values.astype("string").str.strip()
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    errors = pd.Series(pd.NA, index=values.index, dtype="string")
    present = text.notna() & (text != "")
    if not present.any():
        return out, errors
    t = text[present]
    numeric = pd.to_numeric(t, errors="coerce")
    is_num = numeric.notna()
    if is_num.any():
        n = numeric[is_num].astype("float64")
        unit_ms = n.abs() > 1e11  # seconds would be past the year 5000
        out.loc[n.index[~unit_ms]] = pd.to_datetime(n[~unit_ms], unit="s", utc=True)
        out.loc[n.index[unit_ms]] = pd.to_datetime(n[unit_ms], unit="ms", utc=True)
    rest = t[~is_num].str.replace(_EXIF_TIME, lambda m: f"{m[1]}-{m[2]}-{m[3]}{m[4] or ''}", regex=True)
    for idx, value in rest.items():
        try:
            out.loc[idx] = pd.to_datetime(value, utc=True, format="ISO8601")
        except (ValueError, TypeError, OverflowError):
            errors.loc[idx] = f"unparseable timestamp {value!r} (expected ISO 8601, epoch seconds or EXIF time)"
    return out, errors


def empty_items() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in ITEM_COLUMNS.items()})


def normalise_items(df: pd.DataFrame) -> pd.DataFrame:
    """Give an item table exactly the canonical columns and dtypes."""
    df = df.copy()
    if "time" not in df.columns and "timestamp" in df.columns:  # a workspace written before times were parsed
        df["time"], df["time_error"] = parse_times(df["timestamp"])
    for col, dtype in ITEM_COLUMNS.items():
        if col not in df.columns:
            df[col] = -1 if dtype == "int64" else pd.NaT if dtype.startswith("datetime") else pd.NA
        if dtype.startswith("datetime"):
            df[col] = pd.to_datetime(df[col], utc=True)
        elif dtype == "int64":
            df[col] = pd.to_numeric(df[col], errors="coerce").fillna(-1).astype("int64")
        else:
            df[col] = df[col].astype("string")
    return df[list(ITEM_COLUMNS)]


@dataclass(frozen=True, order=True)
class SplitId:
    """One split of one dataset. Written "dataset/split" where a person reads it, "dataset~split" in file names."""

    dataset: str
    split: str

    @classmethod
    def parse(cls, value: "str | SplitId") -> "SplitId":
        if isinstance(value, SplitId):
            return value
        dataset, sep, split = str(value).partition("/")
        if not sep or not dataset or not split:
            raise UnknownSplit(f"a split is written DATASET/SPLIT (e.g. cifar10/test), got {value!r}")
        return cls(dataset, split)

    def __str__(self) -> str:
        return f"{self.dataset}/{self.split}"

    @property
    def file_name(self) -> str:
        return f"{self.dataset}~{self.split}"


def split_column(items: pd.DataFrame) -> pd.Series:
    """The "dataset/split" id of every item row (the one place it is built from the two columns)."""
    return items["dataset"].astype(str) + "/" + items["split"].astype(str)


def split_ids(items: pd.DataFrame, role: str | None = None) -> list[SplitId]:
    """The splits present in an item table, optionally only those of one role, in name order."""
    sub = items if role is None else items[items["role"] == role]
    pairs = sub[["dataset", "split"]].drop_duplicates().itertuples(index=False)
    return sorted(SplitId(str(d), str(s)) for d, s in pairs)


def split_items(items: pd.DataFrame, split: "str | SplitId", *, role: str | None = None) -> pd.DataFrame:
    """The rows of one split (sorted by item id), else an error that lists the valid splits."""
    sid = SplitId.parse(split)
    mask = (items["dataset"] == sid.dataset) & (items["split"] == sid.split)
    if role is not None:
        mask &= items["role"] == role
    sub = items[mask]
    if sub.empty:
        valid = ", ".join(str(s) for s in split_ids(items, role)) or "none yet"
        kind = f"{role} split" if role else "split"
        raise UnknownSplit(f"no {kind} {str(sid)!r} in this workspace; valid: {valid}")
    return sub.sort_values("item_id").reset_index(drop=True)


class Decision(enum.StrEnum):
    """What a curator said about one pair (stored as these words in review.sqlite)."""

    HARD = "hard"
    SOFT = "soft"
    NOT_LEAK = "not_leak"
    UNSURE = "unsure"
    SAME_SOURCE = "same_source"  # a group decision: one source, keep together (no degree of its own)

    @property
    def label(self) -> str:
        return {"hard": "hard leak", "soft": "soft leak", "not_leak": "not a leak", "unsure": "unsure",
                "same_source": "one source: keep together"}[self.value]

    @property
    def confirms_leak(self) -> bool:
        return self in (Decision.HARD, Decision.SOFT)

    @classmethod
    def parse(cls, value: "str | Decision") -> "Decision":
        try:
            return cls(value)
        except ValueError:
            raise UnknownName(
                f"decision must be one of {', '.join(d.value for d in cls)}, got {value!r}") from None


# the fused score's features (`verify.FEATURES` and the second model's `similarity_2`) in the words the Review page's
# evidence table and the HTML report name them (a new user read `orb_inliers` and `overlap_refined`)
FEATURE_WORDS = {
    "similarity": "similarity (this encoder)", "similarity_2": "similarity (second model)",
    "ncc": "NCC (luminance)", "ncc_grad": "NCC (gradients)", "ssim": "SSIM on the overlap",
    "overlap": "overlap (share of the smaller image)", "orb_inliers": "ORB + RANSAC inliers",
    "orb_ratio": "share of matches that are inliers", "orb_used": "local features used (1 = yes)",
    "ncc_detail": "NCC (fine detail)", "abs_diff": "median |difference| (0-1)",
    "ncc_refined": "NCC after refinement", "detail_refined": "fine detail after refinement",
    "diff_refined": "|difference| after refinement (0-1)", "overlap_refined": "overlap after refinement (canvas)"}


__all__ = ["Decision", "FEATURE_WORDS", "ITEM_COLUMNS", "SplitId", "empty_items", "normalise_items", "split_column", "split_ids",
           "split_items"]
