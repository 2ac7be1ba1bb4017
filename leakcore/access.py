"""Who may do what in a workspace, what they did, and which folders a web user may touch.

Three pieces, all plain files in the workspace so that a team can read and version them:

- roles.toml: viewer (reads everything), curator (also decides pairs), lead (also sets thresholds, calibrates,
  exports, re-splits, adds data, scans and edits roles). Without the file every user acts as a lead: one person
  on their own machine works as before. Users the file does not list get its `default` role (viewer).
- audit.jsonl: one JSON object per line, appended and never rewritten, for every change that alters what later
  exports contain: who, when, what, before and after. Each line carries the SHA-256 of the line before it, so a
  rewritten or truncated history is detected (`AuditLog.verify`).
- allowed roots: with sign-in on, the web layer lists the folders (the operator's `LEAKCORE_ROOTS`) under which
  workspaces may be opened or created and datasets added; `check_path` refuses the rest with a reason.

The acting user is given explicitly (`Project.open(path, actor=...)`, the CLI's `--reviewer`), else asked of an
identity source the web layer installs (the signed-in user of the session running the code), else the operating
system user.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import enum
import fcntl
import getpass
import hashlib
import json
import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pandas as pd
import tomli_w

from leakcore.errors import InvalidInput, LeakcoreError, WorkspaceError, as_code
from leakcore.io import atomic_write_text

log = logging.getLogger(__name__)

ROLES_NAME = "roles.toml"
AUDIT_NAME = "audit.jsonl"
ROOTS_ENV = "LEAKCORE_ROOTS"


class Role(enum.StrEnum):
    """What a user may do in one workspace; each role includes the ones before it. NONE may not even look: on a
    server whose sign-in accepts anyone (a public provider), `--default none` keeps everyone unlisted out."""

    NONE = "none"
    VIEWER = "viewer"
    CURATOR = "curator"
    LEAD = "lead"

    @classmethod
    def parse(cls, value: "str | Role") -> "Role":
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise InvalidInput(f"role must be one of {', '.join(r.value for r in cls)}, got {value!r}") from None


class Action(enum.StrEnum):
    """The changes a role is checked for, in the words of the refusal."""

    DECIDE = "record decisions"
    ANALYSE = "run and store an audit"
    THRESHOLDS = "change thresholds"
    CALIBRATE = "calibrate"
    EXPORT = "export"
    RESPLIT = "re-split"
    ADD = "add a dataset"
    SCAN = "scan or change scan settings"
    ROLES = "edit roles"


NEEDS = {Action.DECIDE: Role.CURATOR, Action.ANALYSE: Role.CURATOR}  # everything else needs a lead
_RANK = {Role.NONE: -1, Role.VIEWER: 0, Role.CURATOR: 1, Role.LEAD: 2}


def needed_role(action: Action) -> Role:
    return NEEDS.get(action, Role.LEAD)


def allows(role: Role, action: Action) -> bool:
    return _RANK[role] >= _RANK[needed_role(action)]


class AccessDenied(LeakcoreError, PermissionError):
    """The acting user's role does not allow the action; the message says who, what and which role it needs."""


class PathNotAllowed(WorkspaceError):
    """A folder lies outside the roots the server's operator lists."""


def normalise_user(user: str | None) -> str:
    """Identities compare case-blind and without surrounding blanks (e-mail addresses, login names)."""
    return (user or "").strip().lower()


# ---- the acting user ------------------------------------------------------------------------------------------
_identity_source: Callable[[], "str | None"] | None = None


def set_identity_source(source: Callable[[], "str | None"] | None) -> None:
    """Install (or with None remove) what names the acting user when a Project was opened without one. The web
    layer installs one that answers the signed-in user of the session whose code runs, and None where there is no
    session (a background thread): such an action is then refused when the workspace has roles."""
    global _identity_source
    _identity_source = source


@contextlib.contextmanager
def acting_as(user: str | None) -> Iterator[None]:
    """Within the block, projects opened without an actor act as `user` (the CLI's --reviewer); None: unchanged."""
    global _identity_source
    previous = _identity_source
    if user:
        _identity_source = lambda: user.strip()
    try:
        yield
    finally:
        _identity_source = previous


def os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in the environment or the password database
        return f"uid-{os.getuid()}"


def current_user(explicit: str | None = None) -> str | None:
    """The acting user: `explicit`, else the installed identity source's answer, else the operating-system user."""
    if explicit:
        return explicit.strip()
    if _identity_source is not None:
        return _identity_source()
    return os_user()


# ---- roles --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Roles:
    """The roles file of a workspace: users (normalised identity -> role) and the role of everyone else."""

    users: dict[str, Role] = field(default_factory=dict)
    default: Role = Role.VIEWER

    def role_of(self, user: str | None) -> Role:
        return self.users.get(normalise_user(user), self.default) if normalise_user(user) else Role.VIEWER

    def leads(self) -> list[str]:
        return sorted(u for u, r in self.users.items() if r == Role.LEAD)

    def to_dict(self) -> dict:
        return {"default": self.default.value, "users": {u: r.value for u, r in sorted(self.users.items())}}

    @classmethod
    def from_dict(cls, data: dict) -> "Roles":
        users = data.get("users", {})
        if not isinstance(users, dict):
            raise InvalidInput("[users] must map identities to roles")
        unknown = sorted(set(data) - {"default", "users"})
        if unknown:
            raise InvalidInput(f"unknown key(s) {', '.join(unknown)} in {ROLES_NAME}; valid: default, users")
        parsed = {}
        for user, role in users.items():
            if not normalise_user(user):
                raise InvalidInput("an empty identity cannot have a role")
            parsed[normalise_user(user)] = Role.parse(role)
        return cls(parsed, Role.parse(data.get("default", Role.VIEWER)))


def roles_path(ws_path: str | os.PathLike) -> Path:
    return Path(ws_path) / ROLES_NAME


def load_roles(ws_path: str | os.PathLike) -> Roles | None:
    """The workspace's roles, or None when it has no roles file (everyone acts as a lead, as on one machine)."""
    path = roles_path(ws_path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return None
    try:
        return Roles.from_dict(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        # a broken file must not open the workspace to everyone: refuse every change until it is fixed
        raise WorkspaceError(f"{path} is not valid TOML ({exc}); nobody may change the workspace until it is fixed",
                             cli=f"fix or remove {path}", page=f"Fix {path} on the server") from exc


_without_roles = Role.LEAD  # everyone's role in a workspace without a roles file (`set_without_roles`)


def set_without_roles(role: Role) -> None:
    """Everyone's role in a workspace that has no roles file: lead on one person's machine; a server with sign-in
    sets viewer, so that such a workspace is read-only there until its operator gives the roles (a viewer of the
    team's workspace opened another one without roles, led it, and made themselves its lead on the Team page)."""
    global _without_roles
    _without_roles = Role(role)


def role_of(ws_path: str | os.PathLike, user: str | None) -> Role:
    """The user's role in the workspace (`set_without_roles`' role, lead by default, when it has no roles file)."""
    roles = load_roles(ws_path)
    return _without_roles if roles is None else roles.role_of(user)


def require(ws_path: str | os.PathLike, user: str | None, action: Action, *, new_workspace: bool = False) -> Role:
    """The user's role if it allows `action`, else AccessDenied naming who, what and the role it needs.
    `new_workspace`: the workspace was made in this very call, so its maker may write its first roles file."""
    roles = load_roles(ws_path)
    if roles is None:
        if new_workspace or allows(_without_roles, action):
            return Role.LEAD if new_workspace else _without_roles
        raise AccessDenied(f"this workspace has no roles file, and on this server a workspace without one is "
                           f"read-only: to {action.value} needs a role its operator gives",
                           cli=f"write its roles: leakcore --reviewer YOU roles {ws_path} --set YOU=lead",
                           page="Ask the server's operator to give this workspace its roles (`leakcore roles`, "
                                "docs/deploy.md)")
    if not normalise_user(user):
        raise AccessDenied(f"nobody is named for this action ({action.value}), and this workspace has roles",
                           cli="pass --reviewer NAME", page="Sign in first")
    role = roles.role_of(user)
    if role == Role.NONE:
        raise AccessDenied(f"{as_code(user, 120)} is not on this workspace's team: to {action.value} needs the "
                           f"{needed_role(action).value} role",
                           cli=f"ask a lead to add you in {roles_path(ws_path)}", page="Ask a lead to add you")
    if not allows(role, action):
        need = needed_role(action)
        # the identity as text (a code span): an identity "[x](http://evil.example/)@example.org" was a link on the page
        raise AccessDenied(f"{as_code(user, 120)} is a {role.value} in this workspace: to {action.value} needs the "
                           f"{need.value} role",
                           cli=f"ask a lead to give you the {need.value} role in {roles_path(ws_path)}",
                           page=f"Ask a lead to give you the {need.value} role (Team page)")
    return role


def template_roles(lead: str, default: "Role | str" = Role.VIEWER) -> Roles:
    """The first roles file: the user who writes it is its lead, everyone else `default` (a viewer unless said)."""
    return Roles({normalise_user(lead): Role.LEAD}, Role.parse(default))


MAX_IDENTITY = 254  # an e-mail address's longest


def save_roles(ws_path: str | os.PathLike, roles: Roles, *, actor: str | None, new_workspace: bool = False) -> Roles:
    """Write the roles file as `actor` (a lead, or anyone while there is no file yet where a workspace without one
    is led by everyone; `new_workspace`: its maker, in the call that made it) and audit the change. A file without a
    lead, or one that would take the lead role from the actor, is refused: someone must be able to change it
    again."""
    role = require(ws_path, actor, Action.ROLES, new_workspace=new_workspace)
    for user in roles.to_dict().get("users", {}):  # an e-mail or a login name: the Team grid took any text
        if len(user) > MAX_IDENTITY or any(c.isspace() or not c.isprintable() for c in user):
            raise InvalidInput(f"{as_code(user, 80)} is not an identity: an e-mail address or a login name, without "
                               f"spaces, at most {MAX_IDENTITY} characters")
    if not roles.leads():
        raise InvalidInput("the roles file needs at least one lead (who else could change it?)")
    if roles.role_of(actor) != Role.LEAD:
        raise InvalidInput(f"{actor} would no longer be a lead: let another lead change your own role")
    before = load_roles(ws_path)
    if before is not None and before.to_dict() == roles.to_dict():
        return roles  # nothing changed: nothing written or logged (each Save on the Team page logged an entry)
    text = ("# Who may do what in this workspace (leakcore). viewer: reads everything; curator: also decides pairs;\n"
            "# lead: also thresholds, calibration, export, re-split, adding data, scans, roles. `default` is the role\n"
            "# of everyone not listed. Identities are the sign-in e-mail (or login name on the command line).\n"
            + tomli_w.dumps(roles.to_dict()))
    atomic_write_text(roles_path(ws_path), text)
    AuditLog(ws_path).append(actor, "roles", role=role.value, before=None if before is None else before.to_dict(),
                             after=roles.to_dict())
    return roles


# ---- the audit log --------------------------------------------------------------------------------------------
class AuditLog:
    """audit.jsonl of a workspace: appended under a file lock, never rewritten; each line holds the hash of the
    line before it."""

    def __init__(self, ws_path: str | os.PathLike):
        self.path = Path(ws_path) / AUDIT_NAME

    @contextlib.contextmanager
    def _locked(self) -> Iterator:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield fh
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _last_line(fh) -> bytes:
        fh.seek(0, os.SEEK_END)
        end = fh.tell()
        if end == 0:
            return b""
        step, start = 4096, end
        while start > 0:
            start = max(0, start - step)
            fh.seek(start)
            chunk = fh.read(end - start)
            lines = chunk.rstrip(b"\n").split(b"\n")
            if len(lines) > 1 or start == 0:
                return lines[-1]
            step *= 2
        return b""

    def append(self, user: str | None, action: str, *, target: str | None = None, before=None, after=None,
               role: str | None = None, **details) -> dict:
        """Append one entry (who, when, what, before, after, details) and return it."""
        with self._locked() as fh:
            last = self._last_line(fh)
            entry = {"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
                     "user": user or "", "role": role, "action": action, "target": target, "before": before,
                     "after": after, "details": details or None,
                     "prev": hashlib.sha256(last).hexdigest() if last else None}
            line = json.dumps(entry, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8")
            fh.seek(0, os.SEEK_END)
            fh.write(line + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        log.info("audit: %s %s %s", user, action, target or "")
        return entry

    def entries(self) -> list[dict]:
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def table(self) -> pd.DataFrame:
        """Newest first, before/after and details as JSON text (a page shows it as text, never as markup)."""
        rows = self.entries()
        cols = ["time", "user", "role", "action", "target", "before", "after", "details"]
        if not rows:
            return pd.DataFrame(columns=cols)
        df = pd.DataFrame(rows).reindex(columns=cols)
        for c in ("before", "after", "details"):
            # an entry without the key has NaN here (the frame fills it), not None: json would write "NaN"
            df[c] = [None if v is None or (isinstance(v, float) and v != v) else
                     json.dumps(v, sort_keys=True, ensure_ascii=False) for v in df[c]]
        return df.iloc[::-1].reset_index(drop=True)

    def verify(self) -> int:
        """The number of entries when every line's `prev` is the hash of the line before it, else WorkspaceError."""
        try:
            lines = [ln for ln in self.path.read_bytes().splitlines() if ln.strip()]
        except FileNotFoundError:
            return 0
        prev = None
        for i, line in enumerate(lines):
            try:
                entry = json.loads(line)
            except ValueError as exc:
                raise WorkspaceError(f"{self.path}: line {i + 1} is not JSON ({exc})") from exc
            if entry.get("prev") != prev:
                raise WorkspaceError(f"{self.path}: line {i + 1} does not follow the line before it: the log was "
                                     "edited, truncated or reordered")
            prev = hashlib.sha256(line).hexdigest()
        return len(lines)

    def last(self, action: str, target: str | None = None) -> dict | None:
        for entry in reversed(self.entries()):
            if entry["action"] == action and (target is None or entry["target"] == target):
                return entry
        return None


# ---- paths a web user may touch -------------------------------------------------------------------------------
_roots_override: list[Path] | None = None


def set_allowed_roots(roots: "list[str | os.PathLike] | None") -> None:
    """The folders under which workspaces and datasets may be opened (None: those of $LEAKCORE_ROOTS, or any)."""
    global _roots_override
    _roots_override = None if roots is None else [Path(r).expanduser().resolve() for r in roots]


def allowed_roots() -> list[Path] | None:
    """The operator's roots (set by the server, else $LEAKCORE_ROOTS separated by os.pathsep), None: anywhere."""
    if _roots_override is not None:
        return _roots_override
    env = os.environ.get(ROOTS_ENV, "").strip()
    if not env:
        return None
    return [Path(p).expanduser().resolve() for p in env.split(os.pathsep) if p.strip()]


def path_allowed(path: str | os.PathLike, roots: list[Path] | None = None) -> bool:
    roots = allowed_roots() if roots is None else roots
    if roots is None:
        return True
    resolved = Path(path).expanduser().resolve()  # symlinks followed: a link inside a root to outside is outside
    return any(resolved == r or resolved.is_relative_to(r) for r in roots)


def check_path(path: str | os.PathLike, what: str) -> None:
    """PathNotAllowed unless `path` (symlinks resolved) lies under an allowed root; no path holds a NUL."""
    if "\x00" in str(path):
        raise PathNotAllowed(f"{what} {as_code(repr(str(path)), 200)} holds a NUL character, which no path can",
                             cli="check the path", page="Check the path")
    roots = allowed_roots()
    if roots is not None and not path_allowed(path, roots):
        # the allowed folders are not listed: a refusal went to any signed-in user, who learnt the server's layout
        # (the operator reads them in $LEAKCORE_ROOTS or the secrets)
        raise PathNotAllowed(f"{what} {as_code(path, 200)} is outside the folders this server allows",
                             cli=f"list its folder in ${ROOTS_ENV}", page="Ask the server's operator to list its folder")


RAY_ENV = "LEAKCORE_RAY_ADDRESSES"  # the Ray clusters a server's scans may use besides "local" and "auto"


def check_ray_address(address: str | None) -> None:
    """Where a server lists its roots (a shared server), a scan runs on this machine's Ray ("local", "auto") or on
    a cluster its operator lists in $LEAKCORE_RAY_ADDRESSES: a Ray client exchanges pickles with the address it is
    given, so an address typed on a page could make the server run whatever a host out there sends back."""
    if address in (None, "local", "auto") or allowed_roots() is None:
        return
    listed = set(os.environ.get(RAY_ENV, "").replace(",", " ").split())  # addresses hold ":", so commas or spaces
    if address.strip() not in listed:
        raise PathNotAllowed(f"Ray address {as_code(repr(address), 200)} is not one this server's operator lists "
                             f"({', '.join(sorted(listed)) or 'none besides local and auto'})",
                             cli=f"list it in ${RAY_ENV}", page="Use local or auto, or ask the server's operator to list the cluster")


__all__ = ["AccessDenied", "Action", "AuditLog", "acting_as", "PathNotAllowed", "Role", "Roles", "allowed_roots", "allows",
           "check_path", "check_ray_address", "current_user", "load_roles", "needed_role", "normalise_user", "os_user", "path_allowed",
           "require", "role_of", "save_roles", "set_allowed_roots", "set_identity_source", "template_roles"]
