"""Paths inside a root directory that no layer member can lead out of (umoci/securejoin style).

A layer's member names are untrusted. ``clean`` turns a member name into
components under the root: a leading ``/`` or ``./`` is dropped (an absolute
name means "from the layer's root"), and a ``..`` component, a component
longer than ``NAME_MAX`` or a name longer than ``PATH_MAX`` is refused.

``Root.parent`` then resolves a member's parent directory one component at a
time with ``lstat``, never letting the kernel follow a symlink: a symlink met
on the way is re-resolved inside the root (an absolute target starts again at
the root, so ``link -> /`` means the root itself; ``..`` stops at the root),
at most ``MAX_SYMLINKS`` times. What it returns is a path relative to the root
whose every component is a real directory, so the caller may create the
member's last component there with ``O_NOFOLLOW``/``O_EXCL`` and be sure it
lands inside the root. Only this process writes into the root while a layer
is applied, so what was checked stays true until it is used.

Resolved parents are cached by member path; ``forget()`` drops the cache and
must be called whenever a directory or symlink inside the root is removed or
replaced. Every lookup goes through ``Root.lstat``, so a subclass can refuse to
look at part of the root (``dist_tool.executable`` does, where mounts will go).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

MAX_SYMLINKS = 40
NAME_MAX = 255  # bytes in one component (Linux)
PATH_MAX = 4096  # bytes in a path, terminating NUL included (Linux)


class PathError(Exception):
    """A member path that cannot be placed inside the root; the message says why (one line)."""


class MissingPath(PathError):
    """A component does not exist (ENOENT)."""


class NotDirectory(PathError):
    """A component that must be a directory is something else (ENOTDIR)."""


class TooManyLinks(PathError):
    """More than MAX_SYMLINKS symlinks on the way (ELOOP)."""


def clean(name: str) -> tuple[str, ...]:
    """A member name as components under the root; ``()`` is the root itself. A ``..`` is taken
    by its text, as containerd and umoci take it (``a/../b`` is ``b``, whatever ``a`` is); one
    that would climb above the root is refused."""
    kept: list[str] = []
    for part in name.split("/"):
        if part == "..":
            if not kept:
                raise PathError("path climbs out of the root (..)")
            kept.pop()
        elif part not in ("", "."):
            kept.append(part)
    parts = tuple(kept)
    if "\x00" in name:
        raise PathError("a name holds a NUL byte")
    # A character is at most 4 bytes in UTF-8: only long strings need encoding to be measured.
    for part in parts:
        if len(part) > NAME_MAX // 4 and len(os.fsencode(part)) > NAME_MAX:
            raise PathError(f"a name is longer than {NAME_MAX} bytes")
    if len(name) >= PATH_MAX // 4 and len(os.fsencode("/".join(parts))) >= PATH_MAX:
        raise PathError(f"path is longer than {PATH_MAX - 1} bytes")
    return parts


class Root:
    """One directory that a layer is applied into."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._parents: dict[tuple[str, ...], str] = {(): ""}
        self.implicit: list[str] = []  # directories created only because a member needed them
        self.made: set[str] = set()  # the same, to look up
        self.on_create: Callable[[str], None] | None = None  # told each implicit directory's path first
        # Asked about a non-directory met on the way when creating; True: it is a directory now
        self.on_not_directory: Callable[[str, os.stat_result], bool] | None = None
        # Asked when looking at rel was refused (EACCES: a directory above it shuts out its owner,
        # without root); True: it was opened up, look again
        self.on_denied: Callable[[str], bool] | None = None

    def full(self, rel: str) -> str:
        return f"{self.path}/{rel}" if rel else self.path

    def lstat(self, rel: str) -> os.stat_result:
        """``os.lstat`` of ``rel`` (relative to the root): the only way lookups look at the root."""
        try:
            return os.lstat(self.full(rel))
        except PermissionError:
            if self.on_denied is None or not self.on_denied(rel):
                raise
            return os.lstat(self.full(rel))

    def forget(self) -> None:
        """Drops every cached resolution (call after removing or replacing a dir or symlink)."""
        self._parents = {(): ""}

    def remember(self, parts: tuple[str, ...], rel: str) -> None:
        """Records that the member path ``parts`` is the real directory ``rel``."""
        self._parents[parts] = rel

    def knows_parent(self, parts: tuple[str, ...]) -> bool:
        return parts[:-1] in self._parents

    def parent(self, parts: tuple[str, ...], create: bool = True) -> str:
        """The real directory (relative to the root) that holds the last component of ``parts``.

        Missing directories on the way are created (mode 0755, recorded in ``implicit``) when
        ``create``, else MissingPath. A non-directory on the way is a NotDirectory, unless
        ``create`` and ``on_not_directory`` made it one.
        """
        dir_parts = parts[:-1]
        cached = self._parents.get(dir_parts)
        if cached is not None:
            return cached
        rel = self.resolve_dir(dir_parts, create)
        self._parents[dir_parts] = rel
        return rel

    def resolve_dir(self, parts: tuple[str, ...] | list[str], create: bool = False) -> str:
        """Follows ``parts`` inside the root (symlinks included) to a real directory. Raises
        MissingPath (unless ``create``), NotDirectory or TooManyLinks."""
        current: list[str] = []
        todo = list(reversed(parts))
        links = 0
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if current:
                    current.pop()  # every component of current is a real directory
                continue
            current.append(part)
            rel = "/".join(current)
            try:
                st = self.lstat(rel)
            except FileNotFoundError:
                if not create:
                    raise MissingPath(f"{rel} does not exist") from None
                if self.on_create is not None:
                    self.on_create(rel)
                os.mkdir(self.full(rel))
                os.chmod(self.full(rel), 0o755)  # an implied parent: 0755 as in every unpacker, not umask's
                self.implicit.append(rel)
                self.made.add(rel)
                continue
            except NotADirectoryError:
                raise NotDirectory(f"{'/'.join(current[:-1])} is not a directory") from None
            if stat.S_ISDIR(st.st_mode):
                continue
            if create and not stat.S_ISLNK(st.st_mode) and self.on_not_directory is not None \
                    and self.on_not_directory(rel, st):
                continue
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise TooManyLinks("too many levels of symbolic links")
                target = os.readlink(self.full(rel))
                current.pop()
                if target.startswith("/"):
                    current = []
                todo.extend(reversed(target.split("/")))
                continue
            raise NotDirectory(f"{rel} is not a directory")
        return "/".join(current)

    def resolve_entry(self, parts: tuple[str, ...]) -> str:
        """An existing entry (not followed if it is a symlink) whose parents resolve inside the root;
        MissingPath if it does not exist."""
        if not parts:
            return ""
        rel = join(self.resolve_dir(parts[:-1]), parts[-1])
        try:
            self.lstat(rel)
        except FileNotFoundError:
            raise MissingPath(f"{rel} does not exist") from None
        return rel


def join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name
