"""Long work the dashboard runs in a thread of its server: a scan, a calibration, a shortcut audit. It goes on while
the curator switches pages or reloads (a page's script is stopped by either, and the work with it), every page
shows it in the sidebar, and its Stop button ends it at the next progress step, where the work resumes from what it
finished (each is resumable, as after a Ctrl-C in a terminal).

A job belongs to the server, not to a browser session: one of each kind runs on a workspace at a time, whoever
started it, and a teammate's page shows it too. The thread never touches Streamlit: progress and the outcome are
plain attributes the pages read."""
from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, Callable

import streamlit as st

from leakcore.errors import LeakcoreError, page_text

log = logging.getLogger(__name__)

KEEP_FINISHED_S = 3600  # a finished job's outcome is shown this long (or until the next of its kind replaces it)

Progress = Callable[[str, int, int], None]


class Stopped(BaseException):
    """Raised from a job's progress callback once Stop was pressed: a BaseException, as a Ctrl-C is, so that no
    `except Exception` on the way swallows it (the work's writes are atomic; it resumes from what it finished)."""


class Job:
    """One piece of long work in a thread. `work(progress)` does it and returns the words said when it is done (or
    any result the page reads from `result`); a LeakcoreError becomes the page's message, never a traceback."""

    def __init__(self, kind: str, path: str, title: str, work: Callable[[Progress], Any], *, page: str,
                 started_by: str | None = None, resumes: bool = True, key: Any = None):
        self.id = uuid.uuid4().hex
        self.kind, self.path, self.title, self.page = kind, path, title, page
        self.started_by = started_by  # the page's user, taken when it started (the thread has no session to ask)
        self.key = key  # what it measures, for a page that keeps one result per inputs (`ui.data._session_cached`)
        self.caches_dropped = False  # the shared caches of what it changed, dropped once by the first page to see it end
        self.resumes = resumes  # a stopped run keeps what it finished (a scan, an audit), or starts over (coverage)
        self.stage, self.done, self.total = "starting", 0, 1
        self.result: Any = None
        self.error: str | None = None
        self.stopped = False
        self.stopped_by: str | None = None  # who pressed Stop (a teammate's page shows the job too)
        self.finished = False
        self.started, self.ended = time.time(), None
        self.stop = threading.Event()
        self._work = work
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"leakcore-{kind}")

    def request_stop(self, by: str | None) -> None:
        """Stop at the next progress step, saying who asked."""
        if not self.stop.is_set():
            self.stopped_by = by
            self.stop.set()

    def progress(self, stage: str, done: int, total: int) -> None:
        if self.stop.is_set():
            raise Stopped
        self.stage, self.done, self.total = stage, done, total

    @property
    def fraction(self) -> float:
        return min(self.done / max(self.total, 1), 1.0)

    @property
    def running(self) -> bool:
        return not self.finished

    def status_text(self) -> str:
        """The bar's words: what runs, its stage and count, and who started it."""
        by = f" · started by {self.started_by}" if self.started_by else ""
        return (f"{self.title} · {self.stage}: {self.done}/{self.total}{by}"
                + (" · stopping…" if self.stop.is_set() and not self.finished else ""))

    def outcome(self) -> tuple[str, str]:
        """("success" | "warning" | "error", words) once finished."""
        if self.error:
            return "error", self.error
        if self.stopped:
            by = f" by {self.stopped_by}" if self.stopped_by else ""
            return "warning", (f"{self.title} was stopped{by} at {self.stage} ({self.done}/{self.total}). "
                               + ("What it finished is kept: run it again to go on from there." if self.resumes
                                  else "Nothing of it is stored: run it again."))
        return "success", self.result if isinstance(self.result, str) else f"{self.title} done."

    def _run(self) -> None:
        try:
            self.result = self._work(self.progress)
        except Stopped:
            self.stopped = True
        except LeakcoreError as exc:
            self.error = exc.for_page()
        except OSError as exc:  # a file vanished or is unreadable: said, as `widgets.user_errors` says it
            log.warning("%s failed: %s", self.kind, exc)
            self.error = page_text(f"Could not read or write a file: {exc}")
        except Exception as exc:  # noqa: BLE001 - shown as a message on the page, never a traceback
            log.exception("%s failed", self.kind)
            self.error = f"{self.title} failed: {page_text(exc)}"
        finally:
            self.ended = time.time()
            self.finished = True


@st.cache_resource(show_spinner=False)
def _registry() -> tuple[threading.Lock, dict]:
    """The server's jobs: (kind, workspace path) -> the latest job of that kind there, shared by every session (a
    Streamlit resource: one per server process)."""
    return threading.Lock(), {}


class AlreadyRunning(LeakcoreError):
    """A job of this kind already runs on this workspace."""


def start(kind: str, path: str, title: str, work: Callable[[Progress], Any], *, page: str,
          started_by: str | None = None, resumes: bool = True, key: Any = None) -> Job:
    """Start `work` in a thread of the server, unless one of its kind already runs on this workspace (refused with
    who started it: two scans of one workspace would write the same files)."""
    lock, registry = _registry()
    with lock:
        old = registry.get((kind, path))
        if old is not None and old.running:
            raise AlreadyRunning(f"{old.title} is already running on this workspace"
                                 + (f" (started by {old.started_by})" if old.started_by else "")
                                 + ": its progress is on this page; wait for it or press its Stop button.")
        job = Job(kind, path, title, work, page=page, started_by=started_by, resumes=resumes, key=key)
        registry[(kind, path)] = job
        job.thread.start()
    return job


def latest(kind: str, path: str) -> Job | None:
    """The latest job of this kind on this workspace, running or finished (a finished one for KEEP_FINISHED_S)."""
    lock, registry = _registry()
    with lock:
        job = registry.get((kind, path))
    if job is not None and job.finished and time.time() - (job.ended or 0) > KEEP_FINISHED_S:
        return None
    return job


def running(path: str) -> list[Job]:
    """The jobs running on this workspace, oldest first."""
    lock, registry = _registry()
    with lock:
        jobs = [j for (_, p), j in registry.items() if p == path and j.running]
    return sorted(jobs, key=lambda j: j.started)


def finished(path: str) -> list[Job]:
    """The jobs on this workspace that have ended (a page refreshes what they changed)."""
    lock, registry = _registry()
    with lock:
        return [j for (_, p), j in registry.items() if p == path and j.finished]


def wait(timeout: float = 120.0) -> None:
    """Wait for every running job to end (tests; a server's shutdown)."""
    lock, registry = _registry()
    with lock:
        threads = [j.thread for j in registry.values() if j.running]
    for t in threads:
        t.join(timeout)
