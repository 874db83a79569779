"""Finding a task's shim and talking to it: where task state lives, whether the shim that
answers for a task still lives, one request and its reply, and the cleanup after a shim that
died (whichever command finds it first). ``dist_tool.tasks`` builds the task operations on this;
the task directory's layout is described there."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

from dist_tool.errors import DistError, NotFound, TaskFailed, Unavailable
from dist_tool.proc import alive, process_start
from dist_tool.validate import decimal

STATUS_KILLED_BY_CLEANUP = 128 + 9
STATUS_UNKNOWN = 255
CALL_TIMEOUT = 10.0


def namespace_dir(session) -> str:
    return os.path.join(session.task_state, session.namespace)


def task_dir(session, container_id: str) -> str:
    """STATE/<namespace>/<id>; InvalidArgument for a malformed ID (``../x`` names no task)."""
    from dist_tool.validate import identifier

    return os.path.join(namespace_dir(session), identifier("container id", container_id))


def runc_root(session) -> str:
    return os.path.join(session.task_state, ".runc", session.namespace)


def read_pid(path: str) -> tuple[int, str | None] | None:
    try:
        with open(path) as f:
            fields = f.read().split()
    except (FileNotFoundError, NotADirectoryError):
        return None
    pid = decimal(fields[0]) if fields else None
    if pid is None:
        return None
    return pid, fields[1] if len(fields) > 1 else None


def shim_alive(path: str) -> bool:
    shim = read_pid(os.path.join(path, "shim.pid"))
    if shim is None:
        return False
    pid, start = shim
    return alive(pid, start) if start is not None else process_start(pid) is not None


def connect(session, container_id: str, timeout: float | None = CALL_TIMEOUT):
    """A connection to the container's live shim. NotFound (exit 3) when it has no task; a
    task whose shim is gone is cleaned up first, and is then not found either."""
    from dist_tool.shim.proto import Client

    path = task_dir(session, container_id)
    if not os.path.isdir(path):
        raise NotFound("task", container_id, "not found")
    if not shim_alive(path):
        cleanup_dead(session, container_id)
        raise NotFound("task", container_id, "not found (its shim had died; cleaned up)")
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        try:
            return Client(path, timeout)
        except TimeoutError:  # its listen backlog is full: nobody accepts
            raise unanswered(session, container_id, timeout) from None
        except (FileNotFoundError, ConnectionRefusedError):
            # Starting (not listening yet) or exiting (socket closed): look again shortly.
            if not os.path.isdir(path) or not shim_alive(path):
                if os.path.isdir(path):
                    cleanup_dead(session, container_id)
                raise NotFound("task", container_id, "not found") from None
            if deadline is not None and time.monotonic() > deadline:
                raise Unavailable("task", container_id, "its shim does not answer") from None
            time.sleep(0.01)


def call(session, container_id: str, request: dict, timeout: float | None = CALL_TIMEOUT) -> dict:
    with connect(session, container_id, timeout) as client:
        try:
            return checked(container_id, client.call(request))
        except ConnectionError:
            raise NotFound("task", container_id, "exited") from None
        except TimeoutError:
            raise unanswered(session, container_id, timeout) from None


def unanswered(session, container_id: str, waited: float | None) -> Unavailable:
    """The error for a shim that did not answer a request in ``waited`` seconds: which process
    it is, whether it is stopped, and what the user can do, since "timed out" named nothing."""
    from dist_tool.proc import stopped

    in_time = f"in {waited:g} s" if waited else "in time"
    shim = read_pid(os.path.join(task_dir(session, container_id), "shim.pid"))
    if shim is None:
        return Unavailable("task", container_id, f"its shim did not answer {in_time}")
    pid = shim[0]
    if stopped(pid):
        return Unavailable("task", container_id, f"its shim (pid {pid}) is stopped and did not answer "
                           f"{in_time}: resume it (kill -CONT {pid}) or end the task (dist task rm -f "
                           f"{container_id})")
    return Unavailable("task", container_id, f"its shim (pid {pid}) did not answer {in_time}: "
                       f"end the task (dist task rm -f {container_id}) if it stays hung")


def checked(container_id: str, reply: dict) -> dict:
    if reply.get("ok"):
        return reply
    from dist_tool.errors import ERROR_KINDS

    cls = ERROR_KINDS.get(reply.get("kind", "failed"), DistError)
    if "status" in reply:
        raise TaskFailed("task", container_id, reply.get("error", ""), status=int(reply["status"]))
    raise cls("task", container_id, reply.get("error", ""))


def alive_task(session, container_id: str) -> bool:
    """True while the container has a task whose shim lives (a dead one is cleaned up)."""
    path = task_dir(session, container_id)
    if not os.path.isdir(path):
        return False
    if shim_alive(path):
        return True
    cleanup_dead(session, container_id)
    return False


def cleanup_dead(session, container_id: str) -> None:
    """Cleans up after a task whose shim is gone: kills what still runs, deletes the runtime
    state, unmounts, records lastExit, removes the directory. Whoever renames the directory
    away first does it; the others return."""
    grave = _grave(session, container_id)
    try:
        os.rename(task_dir(session, container_id), grave)
    except OSError:  # gone, or another command renamed it first: let it finish (lastExit)
        await_cleanup(session, container_id)
        return
    _bury(container_id, grave)


def await_cleanup(session, container_id: str, timeout: float = CALL_TIMEOUT) -> None:
    """Waits while another live command is burying this container's task, so that whoever
    asked (``task wait`` above all) reads the lastExit it records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            names = os.listdir(namespace_dir(session))
        except FileNotFoundError:
            return
        cleaners = [(pid, start) for head, pid, start in map(_grave_owner, names)
                    if head == container_id and pid != os.getpid()]
        if not any(alive(pid, start) for pid, start in cleaners):
            return
        time.sleep(0.005)


def _grave_owner(name: str) -> tuple[str | None, int | None, str | None]:
    """(container ID, cleaner's pid, its start time) of a grave's name (``_grave``)."""
    parts = name.rsplit("-", 2)
    if not name.startswith(".dead-") or len(parts) != 3:
        return None, None, None
    return parts[0][len(".dead-"):], decimal(parts[1]), parts[2].partition(".")[0]


def finish_abandoned(session) -> None:
    """Finishes the cleanups whose command died half-way (a ``kill -9`` of a ``task ls`` that
    was cleaning up): their graves would keep a mount, a process and the runtime's state of
    the ID, which could then never start a task again. Each is claimed by a rename, as above."""
    base = namespace_dir(session)
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return
    for name in names:
        container_id, pid, start = _grave_owner(name)
        if container_id is None or pid is None:
            continue
        if alive(pid, start):
            continue  # its cleaner is still at work (not merely a process that reuses its pid)
        grave = _grave(session, container_id)
        try:
            os.rename(os.path.join(base, name), grave)
        except OSError:  # another command claimed it first
            continue
        _bury(container_id, grave)


def spawn_detached(argv: list[str], *, keep: int | None = None, log: str | None = None,
                   subreaper: bool = False) -> None:
    """fork → setsid → fork → exec ``argv`` (+ ``keep``, the one descriptor it inherits, as its
    last argument), stdio on /dev/null, stderr appended to ``log``: nobody's child but init's
    (no zombie for a long-lived caller), holding none of our descriptors. ``subreaper``: the
    process adopts its descendants' orphans (a shim reaps its task's processes)."""
    if subreaper:
        from dist_tool.shim import host

        host.libc()  # loaded before fork: the child only calls into it
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, which execs or exits
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            if subreaper:
                host.set_child_subreaper()
            null = os.open(os.devnull, os.O_RDWR)
            err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640) if log else null
            for fd, target in ((null, 0), (null, 1), (err, 2)):
                os.dup2(fd, target)
            # Nothing else of ours, nor what our own parent let us inherit (a pipe whose reader
            # waits for EOF), may live as long as what we start.
            if keep is None:
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            else:
                os.closerange(3, keep)
                os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))
                os.set_inheritable(keep, True)
            os.execv(argv[0], argv if keep is None else [*argv, str(keep)])
        finally:
            os._exit(127)
    os.waitpid(pid, 0)


def _grave(session, container_id: str) -> str:
    """``.dead-<id>-<pid>-<start>.<ns>``: whose cleanup it is (pid and start time, so that a
    reused pid is no cleaner), unique within the process."""
    me = os.getpid()
    return os.path.join(namespace_dir(session), f".dead-{container_id}-{me}-{process_start(me)}.{time.monotonic_ns()}")


def task_config(path: str) -> dict:
    """The ``shim.json`` of a task directory (or grave). OSError, ValueError when unreadable."""
    with open(os.path.join(path, "shim.json")) as f:
        return json.load(f)


def task_runtime(cfg: dict, log: str = os.devnull):
    """The runtime (``Runc``) a task's ``shim.json`` names, with its state directory."""
    from dist_tool.shim.runc import Runc

    return Runc(cfg["runtime"], cfg["runcRoot"], log)


def sigkill_recorded(pid_file: str) -> bool:
    """SIGKILLs the process a pid file names, if it is still that process (when the file gives
    its start time); False if there was none."""
    found = read_pid(pid_file)
    if found is None or (found[1] is not None and not alive(*found)):
        return False
    if found[0] == os.getpid():  # a foreground task's shim is the CLI itself: never kill ourselves
        return False
    try:
        os.kill(found[0], 9)
    except ProcessLookupError:
        return False
    return True


def _bury(container_id: str, grave: str) -> None:
    from dist_tool.shim import exits, host
    from dist_tool.shim.runc import RuntimeFailure

    try:
        cfg = task_config(grave)
    except (OSError, ValueError):
        cfg = None
    status, exited_at = STATUS_UNKNOWN, None
    noted = _noted_exit(os.path.join(grave, "exit"))
    if noted is not None:  # the shim saw the init exit, then died while releasing it
        status, exited_at = noted
    if cfg is not None:
        runc = task_runtime(cfg, os.path.join(grave, "runc.log"))
        try:
            state = runc.state(container_id)
            if state is not None and state.get("status") in ("created", "running", "paused"):
                status, exited_at = STATUS_KILLED_BY_CLEANUP, None
            if state is not None:
                runc.delete(container_id, force=True)
        except RuntimeFailure:
            pass
    if cfg is None:
        sigkill_recorded(os.path.join(grave, "init.pid"))
    host.unmount_all(os.path.join(grave, "rootfs"))
    if cfg is not None and cfg.get("recordExit", True):
        try:
            exits.record_or_keep(cfg, status, exited_at if exited_at is not None else time.time())
        except DistError:
            pass  # kept beside the task's directory for the next reader
    shutil.rmtree(grave, ignore_errors=True)
    if cfg is not None and cfg.get("then"):
        # ``run --rm``: what its shim would have done, in a process of its own, since we may be
        # inside a command on this very container (a start of it, which then keeps it).
        spawn_detached(cfg["then"], log=cfg.get("shimLog"))


def _noted_exit(path: str) -> tuple[int, float] | None:
    """The shim's ``exit`` note, ``STATUS EXITED_AT``; None when absent or cut short."""
    try:
        with open(path) as f:
            fields = f.read().split()
        return int(fields[0]), float(fields[1])
    except (OSError, ValueError, IndexError):
        return None
