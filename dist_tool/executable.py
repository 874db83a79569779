"""Whether a process's command can start in a root filesystem, decided before the runtime tries.

When the command cannot start, runc says so on the task's stderr, which is the user's own, before
dist can say anything; SPEC wants one line, dist's, and 126 or 127 ("Exit status"). So the task's
side looks first, the way runc 1.1's init does (Go's ``exec.LookPath``, then ``execve``):

* a command holding a ``/`` is that path, a relative one from the process's ``cwd``: 127 when it
  does not exist; 126 when it is a directory, not a regular file, has no execute bit, or a
  non-directory or a symlink loop is on the way;
* a bare name is looked up in each directory of the process env's ``PATH`` (``DEFAULT_PATH`` when
  it has none; an empty one searches nothing) and, as runc does, a candidate that is missing or
  cannot run is skipped: 127 when none can run (the message names one that is there but cannot).

Lookups stay inside the root (``rootpath.Root``): a symlink, an absolute one too, is followed
inside the root and ``..`` stops at its top. What the runtime changes before its exec cannot be
seen from here: anything at or below a mount destination or masked path (``hidden``, both where
it is written and where the root's symlinks take it), a ``cwd`` it will create, a relative
``PATH`` directory (runc refuses what it finds there). A lookup that needs one of these raises
``Unseen``, and ``check`` then leaves the verdict to the runtime (``shim.runc.classify``), as it
does for what it cannot read. So ``check`` refuses only commands the runtime would refuse too;
it does not see a missing ELF interpreter, a bad ``#!`` line or the process user's permissions.
An argument list and environment that execve(2) refuses (E2BIG) is 126 whatever the command.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterable

from dist_tool.rootpath import MAX_SYMLINKS, MissingPath, NotDirectory, PathError, Root, TooManyLinks, join

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOT_FOUND = 127
NOT_INVOKABLE = 126


class CannotRun(Exception):
    """The command certainly cannot start. ``status`` is SPEC's: 127 not found, 126 cannot be
    invoked; ``str()`` reads like runc's own line, ``exec: "CMD": WHY``."""

    def __init__(self, command: str, why: str, status: int) -> None:
        super().__init__(command, why, status)
        self.command = command
        self.why = why
        self.status = status

    def __str__(self) -> str:
        return f'exec: "{self.command}": {self.why}'


class Unseen(Exception):
    """The lookup needs a path that only the runtime will see (mounted over, or created by it)."""


class _Root(Root):
    """A root whose lookups refuse the paths at or below ``hidden`` (relative; ``""`` is all)."""

    def __init__(self, path: str, hidden: Iterable[str]) -> None:
        super().__init__(path)
        self.hidden = tuple(hidden)

    def lstat(self, rel: str) -> os.stat_result:
        for h in self.hidden:
            if not h or rel == h or rel.startswith(h + "/"):
                raise Unseen(f"/{rel} is not visible before the runtime sets up /{h}")
        return super().lstat(rel)


def check(root: str, process: dict, hidden: Iterable[str] = ()) -> None:
    """Raises CannotRun when the OCI ``process`` certainly cannot start in ``root`` once the
    runtime has mounted over ``hidden`` (absolute paths inside the container); returns when it
    can start, and when this side cannot tell (Unseen, an unreadable path, no args)."""
    args = process.get("args") or []
    if not args or not isinstance(args[0], str) or not args[0]:
        return  # the runtime's own complaint
    too_long = _too_long(args, process.get("env") or [], process.get("rlimits") or [])
    if too_long:
        raise CannotRun(args[0], too_long, NOT_INVOKABLE)
    try:
        resolve(root, args[0], cwd=process.get("cwd") or "/", path=path_of(process.get("env") or []),
                hidden=hidden)
    except (Unseen, OSError, ValueError):  # ValueError: a NUL byte, which no path holds (the runtime says so)
        return


def _too_long(args: list, env: list, rlimits: list) -> str | None:
    """Why execve(2) certainly fails with E2BIG (runc's init then says so on the task's stderr and
    the task exits 1), or None. The kernel's rules (fs/exec.c): one string of more than 32 pages
    with its NUL, or the strings and their pointers past a quarter of the stack limit (at most
    6 MiB, at least 32 pages). The limit is the process's RLIMIT_STACK: the spec's, else the one
    this process passes down through the runtime. The runtime adds to the environment (HOME) and
    the kernel counts the file name too, so what passes here may still fail, never the reverse."""
    import resource

    page = os.sysconf("SC_PAGE_SIZE")
    strings = [s.encode("utf-8", "surrogateescape") for s in (*args, *env) if isinstance(s, str)]
    if any(len(s) + 1 > 32 * page for s in strings):
        return f"argument list too long (one argument or variable is over {32 * page} bytes)"
    stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
    for rlimit in rlimits:
        if isinstance(rlimit, dict) and rlimit.get("type") == "RLIMIT_STACK" and isinstance(rlimit.get("soft"), int):
            stack = rlimit["soft"]
    limit = 6 << 20 if stack == resource.RLIM_INFINITY else min(6 << 20, stack // 4)
    limit = max(limit, 32 * page)
    size = sum(len(s) + 1 for s in strings) + 8 * (len(args) + len(env))
    if size > limit:
        return f"argument list too long ({size} bytes of arguments and environment, over the {limit}-byte limit)"
    return None


def path_of(env: Iterable[str]) -> str:
    """The ``PATH`` of a ``KEY=VALUE`` list (the last one wins, as each is set in turn), else
    DEFAULT_PATH."""
    found = DEFAULT_PATH
    for item in env:
        name, eq, value = item.partition("=")
        if eq and name == "PATH":
            found = value
    return found


def resolve(root: str, command: str, *, cwd: str = "/", path: str = DEFAULT_PATH,
            hidden: Iterable[str] = ()) -> str:
    """The file ``command`` runs, as an absolute path inside ``root`` with every symlink resolved
    there (when a ``PATH`` directory is Unseen, a later one's runnable file may be returned: the
    command starts either way). Raises CannotRun (126/127), Unseen, or OSError for what cannot be
    read."""
    plain = Root(root)
    look = _Root(root, [m for dest in hidden for m in _landings(plain, dest)])
    if "/" in command:
        base = [] if command.startswith("/") else _cwd(look, cwd)
        return "/" + _by_path(look, command, base)
    unseen = False
    skipped: tuple[str, str] | None = None  # a candidate that is there but cannot run, for the message
    for directory in path.split(":") if path else ():
        if not directory.startswith("/"):
            unseen = True
            continue
        try:
            rel, mode = _entry(look, *_split(f"{directory}/{command}"))
        except PathError:
            continue
        except Unseen:
            unseen = True
            continue
        why = _unrunnable(mode)
        if why is None:
            return "/" + rel
        skipped = skipped or ("/" + rel, why)
    if unseen:
        raise Unseen(f"{command} may be in a PATH directory that is not visible yet")
    hint = f" ({skipped[0]}: {skipped[1]})" if skipped else ""
    raise CannotRun(command, f"executable file not found in $PATH{hint}", NOT_FOUND)


def _by_path(root: Root, command: str, base: list[str]) -> str:
    parts, directory = _split(command)
    try:
        rel, mode = _entry(root, [*base, *parts], directory)
    except MissingPath:
        raise CannotRun(command, "no such file or directory", NOT_FOUND) from None
    except NotDirectory:
        raise CannotRun(command, "not a directory", NOT_INVOKABLE) from None
    except TooManyLinks:
        raise CannotRun(command, "too many levels of symbolic links", NOT_INVOKABLE) from None
    why = _unrunnable(mode)
    if why is not None:
        raise CannotRun(command, f"permission denied ({why})", NOT_INVOKABLE)
    return rel


def _cwd(root: Root, cwd: str) -> list[str]:
    """The process's working directory as real directories under the root; Unseen when the
    runtime would have to create it first."""
    try:
        rel = root.resolve_dir(_split(cwd)[0])
    except PathError:
        raise Unseen(f"the working directory {cwd} does not exist yet") from None
    return rel.split("/") if rel else []


def _split(path: str) -> tuple[list[str], bool]:
    """``path``'s components and whether it must name a directory (a trailing ``/``, ``.``, ``..``)."""
    raw = path.split("/")
    return [p for p in raw if p not in ("", ".")], raw[-1] in ("", ".", "..")


def _entry(root: Root, parts: list[str], directory: bool) -> tuple[str, int]:
    """What ``parts`` names with every symlink followed inside the root: its path relative to
    the root and its mode. Raises MissingPath, NotDirectory or TooManyLinks (or Unseen)."""
    links = 0
    while True:
        if directory or not parts:
            return root.resolve_dir(parts), stat.S_IFDIR
        parent = root.resolve_dir(parts[:-1])
        rel = join(parent, parts[-1])
        try:
            mode = root.lstat(rel).st_mode
        except FileNotFoundError:
            raise MissingPath(f"{rel} does not exist") from None
        if not stat.S_ISLNK(mode):
            return rel, mode
        links += 1
        if links > MAX_SYMLINKS:
            raise TooManyLinks("too many levels of symbolic links")
        target = os.readlink(root.full(rel))
        rest, directory = _split(target)
        parts = rest if target.startswith("/") else [*(parent.split("/") if parent else []), *rest]


def _unrunnable(mode: int) -> str | None:
    """Why ``execve`` refuses a file of ``mode`` (EACCES), or None."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if not mode & 0o111:
        return "not executable"
    return None


def _landings(root: Root, dest: str) -> list[str]:
    """Where a mount on ``dest`` hides the root's content, relative to it: as written, and where
    the runtime puts it (the existing part of ``dest`` resolved inside the root)."""
    literal = posixpath.normpath("/" + dest).lstrip("/")
    parts = literal.split("/") if literal else []
    for i in range(len(parts), -1, -1):
        try:
            base = root.resolve_dir(parts[:i])
        except PathError:
            continue
        return [literal, "/".join(p for p in (base, *parts[i:]) if p)]
    return [literal]
