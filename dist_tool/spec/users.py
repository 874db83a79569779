"""``--user`` and the image's ``User``: names and numbers resolved against the root filesystem's
``/etc/passwd`` and ``/etc/group``, with containerd's and docker's rules.

* ``""`` is root: uid 0 and the groups of uid 0's entry (containerd's
  ``WithAdditionalGIDs("root")`` when the image names no user).
* ``UID`` is that uid; its gid is the primary group of the passwd entry with that
  uid, or 0 when there is none (containerd's ``WithUserID``).
* ``NAME`` must be in ``/etc/passwd``; uid and gid come from its entry.
* ``USER:GROUP`` — either side a number or a name; a group name must be in ``/etc/group``.
* ``additionalGids``: the gid first, then the groups of ``/etc/group`` that list the user's
  name as a member (``WithAdditionalGIDs``, when the user has a passwd entry). The gid is
  always there (containerd's ``ensureAdditionalGids``, the fix for CVE-2023-25173): without
  it a process could drop its primary group with setgroups and get past a deny-by-group.
* uids and gids go up to 2^31-1, as runc takes them.

Files are read only when a name must be resolved or a uid's entry looked up; an
image without ``/etc/passwd`` still runs as ``0`` or ``1000:1000``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from dist_tool.errors import InvalidArgument, NotFound
from dist_tool.validate import decimal, digits, utf8

# containerd reads these whole with no bound; one is kept against a hostile image, far above the
# ~9 MB of an /etc/passwd of 200,000 users
MAX_ACCOUNT_FILE_BYTES = 64 * 1024 * 1024
UID_MAX = 2**31 - 1  # runc refuses larger ones ("uids and gids must be in range 0-2147483647")

# path -> file bytes or None; given by the caller so this module never touches a filesystem
ReadFile = Callable[[str], bytes | None]


# NamedTuples, not dataclasses: they cost a tenth as much to define, and create imports this.
class PasswdEntry(NamedTuple):
    name: str
    uid: int
    gid: int
    home: str = ""


class GroupEntry(NamedTuple):
    name: str
    gid: int
    members: tuple[str, ...] = ()


class ResolvedUser(NamedTuple):
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    name: str | None = None

    def to_spec(self) -> dict:
        out: dict = {"uid": self.uid, "gid": self.gid}
        if self.additional_gids:
            out["additionalGids"] = list(self.additional_gids)
        return out


def _number(text: str) -> int | None:
    value = decimal(text)
    return value if value is not None and value <= UID_MAX else None


def _lines(data: bytes | None):
    for raw in (data or b"").decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and not line.startswith(("+", "-")):  # NIS compat lines
            yield line.split(":")


def parse_passwd(data: bytes | None) -> list[PasswdEntry]:
    """Entries of a passwd file; malformed lines are skipped, as libc does."""
    out = []
    for f in _lines(data):
        if len(f) >= 4 and f[0] and _number(f[2]) is not None and _number(f[3]) is not None:
            out.append(PasswdEntry(f[0], int(f[2]), int(f[3]), f[5] if len(f) > 5 else ""))
    return out


def parse_group(data: bytes | None) -> list[GroupEntry]:
    out = []
    for f in _lines(data):
        if len(f) >= 3 and f[0] and _number(f[2]) is not None:
            members = tuple(m.strip() for m in f[3].split(",") if m.strip()) if len(f) > 3 else ()
            out.append(GroupEntry(f[0], int(f[2]), members))
    return out


def check_format(user: str) -> str:
    """Checks ``UID[:GID]`` or ``NAME[:GROUP]`` without reading any file (usage errors first)."""
    utf8("user", user)  # other bytes could match no name: the files are read as UTF-8
    name, sep, group = user.partition(":")
    if sep and (not name or not group):
        raise InvalidArgument("user", user, "expected UID[:GID] or NAME[:GROUP]")
    for part in (name, group):
        if part and (":" in part or any(c.isspace() for c in part)):
            raise InvalidArgument("user", user, "expected UID[:GID] or NAME[:GROUP]")
        if digits(part) and _number(part) is None:  # decimal() has no value for 5000 digits
            raise InvalidArgument("user", user, f"{part} is out of range")
    return user


def resolve(user: str, read_file: ReadFile) -> ResolvedUser:
    """The uid, gid and supplementary gids ``user`` means inside the root filesystem.

    Raises InvalidArgument for a malformed value, NotFound for a name that the image's
    ``/etc/passwd`` or ``/etc/group`` does not hold.
    """
    check_format(user)
    name, _, group = user.partition(":")
    uid = _number(name or "0")
    gid = _number(group) if group else None
    if uid is not None and gid is not None:
        return ResolvedUser(uid, gid, (gid,))  # all numeric: nothing to look up (and no file needed)
    passwd = parse_passwd(read_file("/etc/passwd"))
    if uid is None:
        entry = next((e for e in passwd if e.name == name), None)
        if entry is None:
            raise NotFound("user", name, "no such user in the image's /etc/passwd")
    else:
        entry = next((e for e in passwd if e.uid == uid), None)
    resolved_uid = uid if uid is not None else entry.uid  # type: ignore[union-attr]
    groups: list[GroupEntry] | None = None
    if not group:
        resolved_gid = entry.gid if entry is not None else 0
    elif gid is not None:
        resolved_gid = gid
    else:
        groups = parse_group(read_file("/etc/group"))
        match = next((g for g in groups if g.name == group), None)
        if match is None:
            raise NotFound("group", group, "no such group in the image's /etc/group")
        resolved_gid = match.gid
    extra: tuple[int, ...] = ()
    if entry is not None and not group:  # a group given is the only one, as with docker, runc and containerd
        if groups is None:
            groups = parse_group(read_file("/etc/group"))
        extra = tuple(sorted({g.gid for g in groups if entry.name in g.members and g.gid != resolved_gid}))
    return ResolvedUser(resolved_uid, resolved_gid, (resolved_gid, *extra), entry.name if entry else None)
