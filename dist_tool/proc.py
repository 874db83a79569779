"""Process identity from /proc: a pid plus its start time names one process, even after
the pid is recycled. Pure stdlib; the shim imports this too."""

from __future__ import annotations


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":  # a zombie has exited; only its parent has not reaped it yet
        return None
    return fields[19]


def alive(pid: int | None, start: str | None) -> bool:
    return pid is not None and start is not None and process_start(pid) == start
