"""The server's jobs (`ui.jobs`) on the pages: a live bar with a Stop button where the work is started, a line in
every page's sidebar while it runs, and its outcome once it ends. Whichever page a session is on when a job ends,
it is drawn again once, so what the job changed shows at once."""
from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from leakcore.api import Action, Project, normalise_user
from ui import jobs, state


def page_name(page: str) -> str:
    """A page file's name in the sidebar: app.py is Home, pages/7_Shortcuts.py is Shortcuts."""
    return "Home" if page == "app.py" else Path(page).stem.split("_", 1)[-1]


def _seen() -> set:
    """Ids of the jobs whose end this session has drawn (so it reruns once for each, not twice a second)."""
    return st.session_state.setdefault("jobs_seen", set())


def _ended(job: jobs.Job) -> None:
    """A job this session sees ended for the first time: the shared caches of what it changed are dropped (once per
    job, by the first session to see it), and the whole page is drawn again."""
    _seen().add(job.id)
    if not job.caches_dropped:
        job.caches_dropped = True
        st.cache_data.clear()
    st.rerun(scope="app")


def start(kind: str, ws, title: str, work, *, page: str, resumes: bool = True, key=None) -> jobs.Job | None:
    """Start a job for the workspace open in this session, started by its user (the work opens the project as that
    user itself: the thread has no session to ask who is signed in); a refusal (one already running) is shown, not
    raised."""
    from ui.widgets import user_errors

    job = None
    with user_errors(stop=False):
        job = jobs.start(kind, str(ws.path), title, work, page=page, started_by=ws.team.acting_user,
                         resumes=resumes, key=key)
    return job


def bar(kind: str, path: str, *, stop_key: str) -> None:
    """The running job's bar and Stop button, redrawn twice a second without rerunning the page; nothing once it
    ended (`outcome` then says how)."""
    job = jobs.latest(kind, path)
    if job is not None and (job.running or job.id not in _seen()):
        _live_bar(kind, path, stop_key)


# the right a job's work needs, which stopping it needs too (or having started it): a curator pressed Stop on the
# lead's scan, a viewer on the lead's calibration, and the lead's page did not say who
KIND_ACTION = {"scan": Action.SCAN, "add": Action.ADD, "calibration": Action.CALIBRATE, "shortcuts": Action.ANALYSE}


def stop_refusal(job: jobs.Job, team) -> str | None:
    """Why `team`'s acting user may not stop the job, or None: whoever started it may, and whoever may run its kind."""
    me = team.acting_user
    if me and job.started_by and normalise_user(me) == normalise_user(job.started_by):
        return None
    action = KIND_ACTION.get(job.kind)
    if action is None:
        return f"Only {job.started_by or 'whoever started it'} may stop it"
    return team.refusal(action)


@state.fragment(run_every=0.5)
def _live_bar(kind: str, path: str, stop_key: str) -> None:
    job = jobs.latest(kind, path)
    if job is None:
        return
    if job.finished:
        if job.id not in _seen():
            _ended(job)
        return
    c1, c2 = st.columns([4, 1])
    c1.progress(job.fraction, text=job.status_text())
    team = Project.open(path).team  # once a tick: who is asking, and what they may do
    why = stop_refusal(job, team)
    c2.button("Stop", key=stop_key, on_click=job.request_stop, args=(team.acting_user,),
              disabled=job.stop.is_set() or why is not None, width="stretch",
              help=why or ("Ends the work at its next step: a scan keeps what it finished and goes on from there "
                           "when run again"))


def latest_ended(kind: str, path: str) -> jobs.Job | None:
    """The latest job of this kind on the workspace once it has ended (None while one runs)."""
    job = jobs.latest(kind, path)
    return job if job is not None and job.finished else None


def outcome(kind: str, path: str) -> None:
    """How the latest job of this kind on the workspace ended: its words, a stop, or its error; when and by whom
    (a teammate's Home shows the scan they did not start)."""
    job = latest_ended(kind, path)
    if job is None:
        return
    level, words = job.outcome()
    {"success": st.success, "warning": st.warning, "error": st.error}[level](words)
    st.caption(ended_words(job))


def ended_words(job: jobs.Job) -> str:
    when = time.strftime("%H:%M", time.localtime(job.ended or job.started))
    return f"Ended at {when}" + (f", started by {job.started_by}" if job.started_by else "")


def running(kind: str, path: str) -> bool:
    job = jobs.latest(kind, path)
    return job is not None and job.running


def sidebar(path: str, current: str) -> None:
    """Every page: a line per job running on the open workspace, with a link to the page that shows its bar; not
    on that page itself, whose own bar follows the job (one fragment redrawn twice a second, not two)."""
    if any(page_name(j.page) != current for j in jobs.running(path)):
        with st.sidebar:
            _sidebar_lines(path, current)


@state.fragment(run_every=1.0)
def _sidebar_lines(path: str, current: str) -> None:
    for job in jobs.running(path):
        if page_name(job.page) == current:
            continue
        st.caption(f":material/progress_activity: {job.status_text()}")
        st.progress(job.fraction)
        st.page_link(job.page, label=f"Its bar on {page_name(job.page)}", icon=":material/arrow_forward:")
    for job in jobs.finished(path):
        if job.id not in _seen():  # it ended while this page was open: drawn again with what it changed
            _ended(job)
