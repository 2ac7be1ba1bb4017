"""Who is using the dashboard: optional sign-in (Streamlit's OpenID Connect), the acting user the core checks
roles for, the folders a web user may open, and the refusal to serve a network without sign-in unless asked.

Sign-in is on when .streamlit/secrets.toml (or a file named by the `secrets.files` option) has an [auth] section
(see .streamlit/secrets.toml.example and docs/deploy.md); then the reviewer is the identity provider's user (its
e-mail, else its subject), never a typed name. Off, the app behaves as it did: a typed Reviewer name on localhost.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import sys
import time
from pathlib import Path

import streamlit as st

from leakcore.api import (ROOTS_ENV, Action, Project, Role, Roles, atomic_write_text, configure_access, normalise_user,
                          os_user)
from leakcore.errors import LeakcoreError, as_code, page_text

log = logging.getLogger(__name__)

OPEN_FLAG = "--serve-without-sign-in"
OPEN_ENV = "LEAKCORE_SERVE_WITHOUT_SIGN_IN"


def sign_in_configured() -> bool:
    """An [auth] section in the server's secrets: every page asks who you are."""
    try:
        return bool(st.secrets.load_if_toml_exists() and "auth" in st.secrets)
    except Exception:  # noqa: BLE001 - an unreadable secrets file reads as no sign-in; Streamlit logs why
        return False


def _operator_settings() -> dict:
    """[leakcore] in the secrets: roots (folders a web user may open) and serve_without_sign_in."""
    try:
        if st.secrets.load_if_toml_exists() and "leakcore" in st.secrets:
            return dict(st.secrets["leakcore"])
    except Exception:  # noqa: BLE001 - as above
        pass
    return {}


def _provider_user() -> str | None:
    """The user the provider signed this session in as (e-mail, else subject), normalised; None when nobody."""
    try:
        if not st.user.is_logged_in:
            return None
        who = st.user.get("email") or st.user.get("sub")
    except Exception:  # noqa: BLE001 - no session (a thread of its own): nobody
        return None
    return normalise_user(str(who)) or None


def signed_in_user() -> str | None:
    """The signed-in user, normalised; None when nobody is signed in, or when that user has signed out since this
    session signed in (`signed_out_elsewhere`): the core then acts for nobody, in a fragment's rerun too (a key press
    on Review reruns only its fragment, and another tab of a user who had signed out went on deciding)."""
    user = _provider_user()
    return None if user is not None and signed_out_elsewhere(user) else user


def signed_out_since() -> bool:
    """Whether this session's user has signed out (in another tab, say) since this session signed in."""
    return sign_in_configured() and _provider_user() is not None and signed_in_user() is None


def _sign_outs_file() -> Path:
    """The server's record of who signed out when (LEAKCORE_HOME, beside the recent workspaces)."""
    from ui import state

    return state.home() / "signed-out.json"


def _sign_outs() -> dict:
    try:
        return {str(k): float(v) for k, v in json.loads(_sign_outs_file().read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def record_sign_out(user: str) -> None:
    """Sign `user` out of every session of this server: a sign-out only cleared the cookie of the tab it was
    pressed in, so another open tab went on deciding in that name, and a cookie copied before still signed in.
    Sessions whose sign-in is older than this moment are sent to the sign-in page (`signed_out_elsewhere`)."""
    path = _sign_outs_file()
    said = _sign_outs()
    said[normalise_user(user)] = time.time()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(said))  # whole or not at all: two sign-outs at once never leave half a file
    except OSError as exc:
        log.warning("could not record the sign-out of %s: %s", user, exc)


def _issued_at() -> float | None:
    """When the provider signed this session's identity in (the ID token's `iat`), or None where it does not say."""
    try:
        iat = st.user.get("iat")
    except Exception:  # noqa: BLE001 - no session: nothing to compare
        return None
    try:
        return float(iat) if iat is not None else None
    except (TypeError, ValueError):
        return None


def signed_out_elsewhere(user: str) -> bool:
    """Whether `user` signed out (in any session of this server) after this session signed in."""
    out = _sign_outs().get(normalise_user(user))
    issued = _issued_at()
    return out is not None and issued is not None and issued <= out


def session_identity() -> str | None:
    """The core's identity source: the user of the session whose script is running; None outside any session
    (a background thread), so that a workspace with roles refuses to change for nobody."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if get_script_run_ctx(suppress_warning=True) is None:
        return None
    if sign_in_configured():
        return signed_in_user()
    return (st.session_state.get("reviewer") or "").strip() or os_user()


def _bind_address() -> str:
    return str(st.get_option("server.address") or "")


def _serving() -> bool:
    """A real server runs this script (AppTest runs it with a stand-in runtime and listens nowhere)."""
    from streamlit.runtime import Runtime

    return Runtime.exists() and type(Runtime.instance()) is Runtime


def loopback_only() -> bool:
    """Whether the server listens on loopback only (an unset address listens on every interface)."""
    if not _serving():
        return True
    address = _bind_address().strip("[]")
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # unset, 0.0.0.0 spelt as a name, or a host name: reachable from the network
        return False


def open_serving_allowed() -> bool:
    """The operator's explicit choice to serve a network without sign-in: `-- --serve-without-sign-in`,
    $LEAKCORE_SERVE_WITHOUT_SIGN_IN=1, or serve_without_sign_in = true under [leakcore] in the secrets."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument(OPEN_FLAG, action="store_true")
    args, _ = parser.parse_known_args(sys.argv[1:])
    return bool(args.serve_without_sign_in or os.environ.get(OPEN_ENV, "") in ("1", "true", "yes")
                or _operator_settings().get("serve_without_sign_in") is True)


def may_create_workspace(current: str | None, path: str | None = None) -> bool:
    """On a server with sign-in, a new workspace is made by a lead of the workspace open now (its creator becomes
    the new one's lead: a viewer made workspaces inside the team's and inside a dataset, and led them); says why
    not. Without sign-in (one person's machine) anyone may. Never inside a dataset of the workspace open now (a lead
    made one in the team's validation folder: its files were skipped on the next add, its exports would have joined
    the split)."""
    if not current:
        return True
    if not Path(current, "project.toml").exists():  # the server was started on a folder still to be made
        if not sign_in_configured():
            return True  # one person's machine: nothing to judge by, nothing to refuse
        st.error(f"The server's workspace {as_code(current, 200)} does not exist yet, so nobody leads it: on a server "
                 "with sign-in the first workspace is made in a terminal (`leakcore init DIR`, then `leakcore roles DIR "
                 "--set YOU=lead`), and its lead makes the next ones here.", icon=":material/lock:")
        return False
    try:
        project = Project.open(current)
        if path:
            target = Path(path).expanduser().resolve()
            inside = [r for r in project.images.roots if target == Path(r) or Path(r) in target.parents]
            if inside:
                st.error(f"{as_code(path, 200)} is inside the dataset folder {as_code(inside[0], 200)}: a workspace is kept beside the data, "
                         "not in it.", icon=":material/error:")
                return False
        if not sign_in_configured():
            return True
        role = project.team.role()
    except LeakcoreError as exc:
        st.error(exc.for_page(), icon=":material/error:")
        return False
    if role == Role.LEAD:
        return True
    st.error(f"Only a lead of this workspace may create a new one on this server; you are a {role.value} here.",
             icon=":material/lock:")
    return False


def new_workspace_others(current: str | None) -> "Role | None":
    """The role of everyone unlisted in a workspace created on this server: the open workspace's (a lead of a team
    workspace kept from strangers, `default = "none"`, made one from Home that every signed-in stranger could read)."""
    if not (sign_in_configured() and current and Path(current, "project.toml").exists()):
        return None
    try:
        roles = Project.open(current).team.roles()
    except LeakcoreError:
        return None
    return roles.default if roles is not None else None


def new_workspace_lead() -> str | None:
    """Who leads a workspace created on this server: the signed-in user (`Project.create(lead=…)` writes its roles
    file, everyone else a viewer); None without sign-in. Without a roles file everybody led it (a viewer of the team's
    workspace opened a lead's new one and could add data and scan there)."""
    return signed_in_user() if sign_in_configured() else None


def allowed_roots(start_workspace: str) -> list[str] | None:
    """$LEAKCORE_ROOTS, else roots under [leakcore] in the secrets; with sign-in on and none listed, only the
    workspace the server was started with. None (anywhere) without sign-in and without a list, as before."""
    env = os.environ.get(ROOTS_ENV, "").strip()
    if env:
        return [p for p in env.split(os.pathsep) if p.strip()]
    listed = _operator_settings().get("roots")
    if listed:
        return [str(p) for p in ([listed] if isinstance(listed, str) else listed)]
    return [start_workspace] if sign_in_configured() else None


def gate(start_workspace: str) -> str | None:
    """Every page's first step after the session state: install the identity source and the allowed roots, stop
    the page for a visitor who has not signed in (sign-in on) or for a network server without sign-in that the
    operator did not allow, warn on every page when it did. Returns the signed-in user (None: sign-in off)."""
    # with sign-in, a workspace without a roles file is read-only (everyone led it, and could make themselves its lead)
    configure_access(session_identity, allowed_roots(start_workspace),
                     without_roles=Role.VIEWER if sign_in_configured() else Role.LEAD)
    if sign_in_configured():
        user = signed_in_user()
        if user is None:
            sign_in_page("You signed out (in this browser or another): sign in again to go on."
                         if _provider_user() is not None else None)
            st.stop()
        st.session_state["reviewer"] = user  # the Review page's reviewer: the provider's user, never typed
        not_on_the_team(user, st.session_state.get("workspace") or start_workspace)
        back_to_the_address_asked_for()
        return user
    if not loopback_only():
        where = _bind_address() or "every network interface"
        if not open_serving_allowed():
            st.error(f"This server listens on {where} and has no sign-in: anyone who reaches it could decide in any "
                     "name, move thresholds and export. Configure sign-in ([auth] in .streamlit/secrets.toml, see "
                     f"docs/deploy.md), listen on 127.0.0.1, or start it with `-- {OPEN_FLAG}` to accept that.",
                     icon=":material/lock:")
            st.stop()
        st.warning(f"Served on {where} without sign-in: anyone who can reach this server can decide in any name, "
                   "move thresholds and export. Configure sign-in for a team (docs/deploy.md).",
                   icon=":material/warning:")
    return None


def not_on_the_team(user: str, ws_path: str) -> None:
    """Stop the page for a signed-in user whose role in the open workspace is none (`leakcore roles --default none`
    keeps everyone unlisted out: with a provider that accepts any account, a stranger read the roster, the audit log,
    every image and the report). Only this is shown, and a way to sign out."""
    if not Path(ws_path, "project.toml").exists():
        return
    try:
        role = Project.open(ws_path).team.role(user)
    except LeakcoreError:
        return  # a workspace that cannot be opened is said by the page, which shows nothing of it either
    if role != Role.NONE:
        return
    st.title("Data leakage review")
    st.error(f"You are signed in as {as_code(user, 120)}, who is not on this workspace's team: nothing of it is shown. "
             "A lead adds you on the Team page (or `leakcore roles WS --set YOU=viewer`).", icon=":material/lock:")
    if st.button("Sign out", key="not_on_team_sign_out", icon=":material/logout:"):
        record_sign_out(user)
        st.logout()
    st.stop()


def refusal(ws_path: str, action: "Action" = Action.DECIDE) -> str | None:
    """Why this session's user may not do `action` in the workspace (for a page to disable its buttons and say
    so before the core refuses), or None when they may."""
    try:
        return Project.open(ws_path).team.refusal(action)
    except LeakcoreError as exc:
        return exc.for_page()


# the address a visitor asked for before signing in (a link to a pair, say), kept in this tab's sessionStorage across
# the provider's round trip: Streamlit's sign-in always returns to the app's first page, and the link was lost
AFTER_SIGN_IN_KEY = "leakcore_after_sign_in"
_KEEP_ADDRESS = f"""<script>
(() => {{
  const here = window.location.pathname + window.location.search;
  if (here !== "/" && here.startsWith("/")) window.sessionStorage.setItem("{AFTER_SIGN_IN_KEY}", here);
}})();
</script>"""
_BACK_TO_ADDRESS = f"""<script>
(() => {{
  const next = window.sessionStorage.getItem("{AFTER_SIGN_IN_KEY}");
  window.sessionStorage.removeItem("{AFTER_SIGN_IN_KEY}");
  const here = window.location.pathname + window.location.search;
  // only a path of this site (never "//host" or "https://...") and only where it is not the page on show already
  if (next && next.startsWith("/") && !next.startsWith("//") && next !== here) window.location.replace(next);
}})();
</script>"""


def sign_in_page(why: str | None = None) -> None:
    st.title("Data leakage review")
    if why:
        st.info(why, icon=":material/logout:")
    st.markdown("Sign in to review: every decision, threshold and export is recorded in your name.")
    st.html(_KEEP_ADDRESS, unsafe_allow_javascript=True)  # our own fixed script
    if st.button("Sign in", key="sign_in", type="primary", icon=":material/login:"):
        st.login()


def back_to_the_address_asked_for() -> None:
    """Once per session after sign-in: go on to the address the visitor asked for before signing in (`sign_in_page`
    kept it), where that was not the first page."""
    if not st.session_state.get("_after_sign_in_checked"):
        st.session_state["_after_sign_in_checked"] = True
        st.html(_BACK_TO_ADDRESS, unsafe_allow_javascript=True)


def identity_sidebar(ws_path: str | None) -> None:
    """Sidebar: the signed-in user, their role and a sign-out button; or, without sign-in, the typed Reviewer box."""
    from ui import state

    user = signed_in_user() if sign_in_configured() else None
    role = None
    if ws_path:
        try:
            team = Project.open(ws_path).team
            role = team.role(user or st.session_state.get("reviewer") or os_user())
            has_roles = team.roles() is not None
        except Exception as exc:  # noqa: BLE001 - a broken roles file is reported, not a crash of the sidebar
            st.caption(page_text(f"Roles: {exc}"))
            has_roles = False
    if user is not None:
        st.caption("Signed in as")
        st.text(user if len(user) <= 80 else user[:79] + "…")  # text, never markup; a 3,000-character one filled the
        # sidebar
        if role is not None and has_roles:
            st.caption(f"Role here: **{role.value}**" + (" (reads everything; deciding needs the curator role)"
                                                        if role == Role.VIEWER else ""))
        if st.button("Sign out", key="sign_out", icon=":material/logout:"):
            record_sign_out(user)  # every session of this user on this server, not only this tab's cookie
            st.logout()
        return
    st.text_input("Reviewer", key="reviewer", placeholder="your name (needed to decide)",
                  help="Stored with every decision you make; undo only ever undoes your own last decision. "
                       "Remembered by this browser.")
    state.remember_reviewer()
    if role is not None and has_roles:
        st.caption(f"Role here: **{role.value}** (without sign-in a typed name is not proof of who you are)")


# ---- the Team page ------------------------------------------------------------------------------------------------
def roles_editor(ws) -> None:
    """The roles of this workspace: a lead edits them (saved through the facade, which checks and audits), everyone
    else reads them."""
    import pandas as pd

    me = ws.team.acting_user
    roles = ws.team.roles()
    role = ws.team.role()
    st.subheader("Roles")
    st.caption("viewer: reads everything · curator: also decides pairs · lead: also thresholds, calibration, export, "
               "re-split, adding data, scans and these roles. Kept in roles.toml in the workspace.")
    if roles is None and sign_in_configured():
        st.info("This workspace has no roles file: on this server with sign-in it is read-only for everyone until its "
                "operator gives the roles, on the server's machine: "
                + as_code(f"leakcore --reviewer YOU roles {ws.path} --set YOU=lead") + " (docs/deploy.md).")
        return
    if roles is None:
        st.info("This workspace has no roles file: everyone who reaches the dashboard acts as a lead. Start one to "
                "give roles; you become its lead and everyone not listed a viewer.")
        if st.button(f"Start a roles file with {me} as lead", key="team_start", disabled=not me):
            ws.team.start_roles(me)
            st.session_state["flash"] = "Roles file written"
            st.rerun()
        return
    st.markdown(f"You are **{role.value}** here.")
    table = pd.DataFrame({"user": list(roles.users), "role": [r.value for r in roles.users.values()]})
    if role != Role.LEAD:
        st.dataframe(table, hide_index=True, width="content")
        st.caption(f"Everyone else: {roles.default.value}. Only a lead changes roles.")
        return
    choices = [r.value for r in Role]
    edited = st.data_editor(table, key="team_roles", num_rows="dynamic", hide_index=True, width="content",
                            column_config={"user": st.column_config.TextColumn("user (sign-in e-mail or login)",
                                                                               required=True),
                                           "role": st.column_config.SelectboxColumn("role", options=choices,
                                                                                    required=True)})
    default = st.selectbox("Everyone not listed", choices, index=choices.index(roles.default.value),
                           key="team_default",
                           help="none: the dashboard shows them nothing. Keep it none where the sign-in accepts "
                                "accounts outside the team (a public provider), or anyone signed in reads everything")
    if sign_in_configured() and roles.default != Role.NONE:
        st.caption(f":material/warning: Everyone the sign-in accepts and this list does not name is a "
                   f"{roles.default.value} here. Choose none to keep them out.")
    if st.button("Save roles", key="team_save", type="primary"):
        rows = edited.dropna(how="all")
        users = {str(u): str(r) for u, r in zip(rows["user"], rows["role"]) if str(u).strip()}
        ws.team.set_roles({"default": default, "users": users})
        st.session_state["flash"] = "Roles saved (and written to the audit log)"
        st.rerun()


def audit_view(ws) -> None:
    """The audit log, newest first, every cell as text; whether its chain of hashes is intact."""
    from leakcore.errors import WorkspaceError

    st.subheader("Audit log")
    log_ = ws.team.audit_log
    try:
        n = log_.verify()
        st.caption(f"{n} entries, newest first. Each entry carries the hash of the one before it: none was changed "
                   "or removed since it was written." if n else "Nothing recorded yet: threshold changes, "
                   "calibrations, exports, re-splits and role changes appear here.")
    except WorkspaceError as exc:
        st.error(exc.for_page(), icon=":material/gpp_bad:")
    table = log_.table()
    if table.empty:
        return
    latest = table.head(5)
    if len(table) > len(latest):  # the caption counts every entry; the table below holds them all
        st.caption(f"The newest {len(latest)} at a glance; all {len(table)} in the table below.")
    st.text("\n".join(f"{r.time[:19].replace('T', ' ')}  {r.user} ({r.role})  {r.action}" + (f" {r.target}" if isinstance(r.target, str) else "")
                       for r in latest.itertuples()))  # the newest at a glance, as text
    actions = sorted(table["action"].dropna().unique())
    chosen = st.multiselect("Actions", actions, key="team_actions", placeholder="all")
    if chosen:
        table = table[table["action"].isin(chosen)]
    # an entry without a value there (a first setting has nothing before it) shows an empty cell, not NaN or None
    table = table.astype(object).where(table.notna(), "")  # (the log's table holds None, never the text "NaN")
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: st.column_config.TextColumn(c, width="medium") for c in ("before", "after", "details")})
