"""Atomic writes: readers see either the old file or the whole new one, never half of it."""
from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd



def _umask() -> int:
    """This process's umask, read without changing it where Linux shows it (changing it is not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, else remove it. The file gets the
    permissions a plain write would give it (the umask's; an existing file's own): a temporary file is private
    (0600), and an export handed to colleagues was unreadable to them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:
            mode = 0o666 & ~_umask()
        if tmp_path.exists():
            os.chmod(tmp_path, mode)
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


def link_files(files, dest: Path, mode: str) -> Path:
    """A folder `dest` (made anew) of symlinks to (mode "symlink") or copies of files, given as (source path, path
    under `dest`) pairs: an export's kept images, a re-split's folders."""
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    for source, rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "symlink":
            target.symlink_to(Path(source).resolve())
        else:
            shutil.copy2(source, target)
    return dest


def file_stamp(*paths: str | os.PathLike) -> tuple:
    """(path, mtime_ns, size, inode) of each file, None for a missing one: a version that moves with every atomic
    write (the renamed file is a new inode even where two writes fall within one tick of the file clock)."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append(None)
            continue
        out.append((str(p), st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


def plain(value):
    """JSON-able plain values (strict JSON: `json.dumps(.., allow_nan=False)` accepts them): numpy scalars to Python, NaN and infinities to None, times to ISO strings."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(float(value)) else float(value)
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value
