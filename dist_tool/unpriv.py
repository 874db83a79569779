"""Getting into entries whose modes shut out their own owner, without root (umoci's ``pkg/unpriv``).

Images carry modes like ``/etc/shadow`` 0000 and ``/usr/bin`` 0555. Root ignores them
(CAP_DAC_OVERRIDE); an unprivileged user who unpacked the image owns every entry and is refused
by them all the same: it cannot read the file, list or search a 0000 directory, nor create
anything in a 0555 one. An owner may change a mode, though. So whatever walks or changes such a
tree (the native snapshotter's copy, a layer applied onto its parent's copy, disk usage) opens an
entry up for the moment (``widen``: u+rwx for a directory, u+r for a file) and puts the exact mode
back once done, deepest first. Nothing changes as root, nor for entries of another owner (their
mode cannot be changed: the operation fails as before).

A widened mode must never be taken for the image's: a tree is widened only by the process that
has it to itself (a staged copy a layer is applied to), or under a flock that every walker of a
shared tree takes (``Widened(tree)``: the native snapshotter's copy, disk usage).
"""

from __future__ import annotations

import os
import stat

IS_ROOT = os.geteuid() == 0
_UID = os.geteuid()


def widen(path: str, st: os.stat_result | None = None, before=None) -> int | None:
    """Gives the owner of ``path`` (not followed) what it needs to get in: u+rwx on a directory, u+r
    on anything else but a symlink. ``st`` is its lstat when the caller has it. Returns the mode
    to restore, or None when nothing changed (as root; an entry that already allows it, or that
    this user does not own)."""
    if IS_ROOT:
        return None
    if st is None:
        st = os.lstat(path)
    need = stat.S_IRWXU if stat.S_ISDIR(st.st_mode) else stat.S_IRUSR
    if st.st_mode & need == need or st.st_uid != _UID or stat.S_ISLNK(st.st_mode):
        return None
    mode = stat.S_IMODE(st.st_mode)
    if before is not None:
        before(path, mode)  # told first: a record of the mode must outlive a kill during the chmod
    os.chmod(path, mode | need, follow_symlinks=False)
    return mode


def restore(modes: dict[str, int], removed_ok: bool = False) -> None:
    """Puts back the modes ``widen`` returned (path -> mode), deepest path first: a directory is
    closed only once nothing below it needs it open. ``removed_ok``: a path gone since is skipped."""
    for path in sorted(modes, key=lambda p: p.count("/"), reverse=True):
        try:
            os.chmod(path, modes[path], follow_symlinks=False)
        except FileNotFoundError:
            if not removed_ok:
                raise


class Widened:
    """The entries of one walk opened up so far; leaving the ``with`` (or ``restore``) closes them.

    ``tree``: the walk is of that tree, which others may walk too (a committed snapshot's, copied
    by each snapshot made on it). Without root, the directory holding it is then flock'd for the
    ``with``, so that no walker ever takes another's widened modes for the image's; and each mode
    is written to a journal there (``widened``) before it changes, so that a walker killed
    mid-walk (SIGKILL, OOM) leaves the next one, under the same lock, the modes to put back.
    """

    JOURNAL = "widened"

    def __init__(self, tree: str | None = None) -> None:
        self.modes: dict[str, int] = {}
        self.tree = tree
        self._lock: int | None = None
        self._journal = None

    def __call__(self, path: str, st: os.stat_result | None = None) -> bool:
        """``widen(path, st)``, remembering the first mode seen; True when it changed something."""
        if IS_ROOT:
            return False
        mode = widen(path, st, self._note if self._lock is not None else None)
        if mode is None:
            return False
        self.modes.setdefault(path, mode)
        return True

    def _note(self, path: str, mode: int) -> None:
        if self._journal is None:
            self._journal = open(self._journal_path(), "a", encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
        self._journal.write(f"{mode:o} {path}\n")
        self._journal.flush()  # in the page cache: what a killed process leaves for the next walker

    def _journal_path(self) -> str:
        return os.path.join(os.path.dirname(os.path.abspath(self.tree)), self.JOURNAL)

    def restore(self) -> None:
        modes, self.modes = self.modes, {}
        restore(modes)
        if self._journal is not None:
            self._journal.close()
            self._journal = None
            os.unlink(self._journal_path())

    def _replay(self) -> None:
        """Puts back the modes a killed walker of this tree had widened (its journal)."""
        try:
            with open(self._journal_path(), encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return
        left: dict[str, int] = {}
        for line in lines:
            mode, _, path = line.partition(" ")
            if path and path not in left:  # the first record of a path holds its own mode
                left[path] = int(mode, 8)
        restore(left, removed_ok=True)  # a killed walker's paths may have been removed since
        os.unlink(self._journal_path())

    def __enter__(self) -> Widened:
        if self.tree is not None and not IS_ROOT:
            import fcntl

            try:
                fd = os.open(os.path.dirname(os.path.abspath(self.tree)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except FileNotFoundError:
                return self  # nothing there to walk
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._replay()
            except BaseException:
                os.close(fd)
                raise
            self._lock = fd
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.restore()
        finally:
            if self._lock is not None:
                os.close(self._lock)  # releases the flock
                self._lock = None
