"""Process identity from /proc: a pid plus its start time names one process, even after
the pid is recycled. Pure stdlib; the shim imports this too."""

from __future__ import annotations


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3 on), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return stat[stat.rindex(")") + 2:].split()


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat), or None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":  # a zombie has exited; only its parent has not reaped it yet
        return None
    return fields[19]


def stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped (SIGSTOP, SIGTSTP) or traced (state T or t in /proc/PID/stat)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] in ("T", "t")


def alive(pid: int | None, start: str | None) -> bool:
    return pid is not None and start is not None and process_start(pid) == start


_own_mark: str | None = None


def own_mark() -> str:
    """``PID.START`` of this process. Put into the name of what it moves into a trash, after the
    name's first dot-separated part, it lets another process tell the entries of a removal still
    running (``marked_alive``) from those a killed one left, and this one find its own."""
    global _own_mark
    if _own_mark is None:
        from posix import getpid  # not os: the shim imports this module, and os costs it memory

        _own_mark = f"{getpid()}.{process_start(getpid())}"
    return _own_mark


def marked_alive(name: str) -> bool:
    """Whether ``BASE.PID.START[.MORE]`` was made by a process that still runs (this one too)."""
    parts = name.split(".")
    pid = parts[1] if len(parts) > 2 else ""
    if not (pid.isascii() and pid.isdigit() and len(pid) < 12):
        return False
    return alive(int(pid), parts[2])


def marked_by_me(name: str) -> bool:
    return name.split(".")[1:3] == own_mark().split(".")


def claimed(name: str) -> str:
    """``name`` with this process's mark put after its first part. A full gc renames what a killed
    removal left to it (under the write lock, after reporting it): a second gc then takes it for a
    running removal's and neither reports nor deletes it again; this one deletes it as its own.
    A mark already there is replaced, so that gcs killed one after another do not lengthen the
    name past NAME_MAX (255 bytes; a sha512 entry is 170 already)."""
    parts = name.split(".")
    if len(parts) > 3 and parts[1].isascii() and parts[1].isdigit():  # BASE.PID.START.REST
        return ".".join([parts[0], own_mark(), *parts[3:]])
    return f"{parts[0]}.{own_mark()}.{name.partition('.')[2]}"
