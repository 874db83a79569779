"""A detached task's shim process: ``python -I -S -m dist_tool.shim CONFIG READY_FD``.

Started by ``dist_tool.tasks.start_detached`` with the task directory already
claimed and its ``shim.json`` written. It forks once more and starts a new
session (so it outlives the CLI and its terminal), takes over ``shim.pid``,
starts the task, then reports on READY_FD one JSON line — ``{"ok": true,
"pid", "shimPid"}`` or ``{"ok": false, "status", "error"}`` — and serves until
the task exits. Standard library only (see ``dist_tool.shim``).
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    config_path, ready = argv[0], int(argv[1])
    with open(config_path) as f:
        cfg = json.load(f)
    if os.fork():
        os._exit(0)  # the CLI reaps this first child; the shim is reparented to init
    os.setsid()
    from dist_tool.proc import process_start
    from dist_tool.shim.runc import RuntimeFailure
    from dist_tool.shim.server import Shim

    write_pid(cfg["dir"], os.getpid(), process_start(os.getpid()) or "")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    if cfg.get("shimLog"):
        log = os.open(cfg["shimLog"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        os.dup2(log, 2)
        os.close(log)
    else:
        os.dup2(null, 2)
    os.close(null)
    shim = Shim(cfg)
    try:
        shim.start()
    except RuntimeFailure as e:
        _report(ready, {"ok": False, "status": e.status, "error": e.message})
        _remove(cfg["dir"])
        return 0
    except OSError as e:
        _report(ready, {"ok": False, "status": 125, "error": str(e)})
        _remove(cfg["dir"])
        return 0
    _report(ready, {"ok": True, "pid": shim.pid, "shimPid": os.getpid()})
    shim.serve()
    return 0


def write_pid(task_dir: str, pid: int, start: str) -> None:
    """``shim.pid``: the process that answers for the task, as ``PID START`` (atomic replace)."""
    tmp = os.path.join(task_dir, f".shim.pid.{pid}")
    with open(tmp, "w") as f:
        f.write(f"{pid} {start}\n")
    os.rename(tmp, os.path.join(task_dir, "shim.pid"))


def _report(fd: int, message: dict) -> None:
    os.write(fd, json.dumps(message).encode() + b"\n")
    os.close(fd)


def _remove(task_dir: str) -> None:
    import shutil

    shutil.rmtree(task_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
