"""A detached task's shim process: ``python -I -S -c BOOT PACKAGE_PARENT CONFIG READY_FD``.

Started by ``dist_tool.tasks.start_detached``, which has already claimed the
task directory, written ``shim.json``, mounted the root filesystem, and — in
the process it then replaced by this one — started a new session (so the shim
outlives the CLI and its terminal), left the CLI's process tree and become a
child subreaper. So this process loads neither ``ctypes`` nor anything outside
the standard library's low-level modules. It takes over ``shim.pid``, starts
the task, reports one JSON line on READY_FD — ``{"ok": true, "pid",
"shimPid"}`` or ``{"ok": false, "status", "error"}`` — and serves until the
task exits.
"""

from __future__ import annotations

import posix
import sys

from dist_tool.shim.proto import dumps, loads


def main(argv: list[str]) -> int:
    config_path, ready = argv[0], int(argv[1])
    with open(config_path) as f:
        cfg = loads(f.read())
    from dist_tool.proc import process_start
    from dist_tool.shim.runc import RuntimeFailure
    from dist_tool.shim.server import Shim

    write_pid(cfg["dir"], posix.getpid(), process_start(posix.getpid()) or "")
    shim = Shim(cfg)
    try:
        shim.start()
    except (RuntimeFailure, OSError) as e:
        status = e.status if isinstance(e, RuntimeFailure) else 125
        _report(ready, {"ok": False, "status": status, "error": getattr(e, "message", None) or str(e)})
        _remove(cfg["dir"])
        return 0
    _report(ready, {"ok": True, "pid": shim.pid, "shimPid": posix.getpid()})
    shim.serve()
    then = cfg.get("then")
    if then:  # run --rm -d: the task is gone and cleaned up; this process becomes `container rm`
        posix.execv(then[0], then)
    return 0


def write_pid(task_dir: str, pid: int, start: str) -> None:
    """``shim.pid``: the process that answers for the task, as ``PID START`` (atomic replace)."""
    tmp = f"{task_dir}/.shim.pid.{pid}"
    with open(tmp, "w") as f:
        f.write(f"{pid} {start}\n")
    posix.rename(tmp, f"{task_dir}/shim.pid")


def _report(fd: int, message: dict) -> None:
    """Tells the waiting CLI. One that is gone (interrupted, killed) hears nothing, and a task
    that started runs on under this shim all the same: dying here of its EPIPE would leave the
    task running with nobody to reap it, record its exit or release it."""
    try:
        posix.write(fd, dumps(message).encode() + b"\n")
    except OSError:
        pass
    finally:
        posix.close(fd)


def _remove(task_dir: str) -> None:
    import shutil

    shutil.rmtree(task_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
