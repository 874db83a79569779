"""Tasks, the CLI's side: start a container's task, and talk to its shim for everything else.

State (``--state``, removed when the task exits)::

    STATE/<namespace>/<container id>/   the task directory, which is also the OCI bundle
        config.json    the container's spec, root at rootfs/
        rootfs/        the snapshot's mounts, mounted by the shim
        shim.json      the shim's configuration (dist_tool.shim.server.Shim)
        shim.pid       "PID START" of the process that answers for the task
        shim.sock      the shim's socket (dist_tool.shim.proto)
        init.pid       the init process, as runc --pid-file wrote it
        exit           "STATUS EXITED_AT", written by the shim once it reaped the init
    STATE/.runc/<namespace>/            runc --root (namespace names never start with a dot)

Persistent (``--root``, removed with the container): ``ROOT/tasks/<namespace>/<id>/log``,
the output of the last detached run (a symlink when ``--log FILE`` chose the file),
and ``shim.log``, a detached shim's own diagnostics.

Claiming a task is one ``rename(2)`` of a fully written directory into place, so
two starts of one container cannot both win, and no lock is held while the task
runs. A start reads its container again after the claim, and ``container rm`` looks
for a claim, each in a write transaction: of a start and an rm, exactly one wins.
A task whose ``shim.pid`` process is gone is cleaned up by whichever command finds
it first: runtime state, mount and directory, and a ``lastExit``
of 137 when the init was still running (we kill it), the status in ``exit`` when
the shim saw the init exit before it died, or 255 when nobody saw it exit.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dist_tool import shims
from dist_tool.errors import Conflict, DistError, InvalidArgument, NotFound, TaskFailed, Unavailable
from dist_tool.proc import alive, process_start
from dist_tool.store.api import Container
from dist_tool.validate import decimal

DEFAULT_RUNTIMES = ("io.containerd.runc.v2", "io.containerd.runc.v1", "runc")
READY_TIMEOUT = 60.0  # seconds a detached start waits for its shim to say the task runs
FORCE_CALL_TIMEOUT = 3.0  # rm -f: a shim this slow to take a SIGKILL is taken for hung
UNANSWERED_SHIM_GRACE = 1.0  # ... and gets this long to go by itself before it is killed too
LIST_CALL_TIMEOUT = 5.0  # for all tasks at once: long enough for a loaded machine, short for a stuck shim
SHIM_EXIT_WAIT = 5.0  # after a wait returns, how long we let the shim finish removing its state
EXEC_CALL_TIMEOUT = 60.0  # an exec's start: the runtime's exec may be slow on a loaded machine
_BOOT = ("import sys;sys.path.insert(0,sys.argv[1]);"
         "from dist_tool.shim.__main__ import main;sys.exit(main(sys.argv[2:]))")
# What a ``run --rm -d`` shim becomes once its task has exited and it has cleaned up: the CLI
# (not isolated: typer is in site-packages), deleting the container.
_BOOT_CLI = "import sys;sys.path.insert(0,sys.argv[1]);from dist_tool.cli import main;sys.exit(main(sys.argv[2:]))"


@dataclass(frozen=True)
class TaskInfo:
    id: str
    pid: int
    status: str
    shim_pid: int
    started_at: float | None

    def to_json(self) -> dict:
        return {"id": self.id, "pid": self.pid, "status": self.status, "shimPid": self.shim_pid,
                "startedAt": self.started_at}


# ---------------------------------------------------------------- where things are


def persist_dir(session, container_id: str) -> str:
    """ROOT/tasks/<namespace>/<id>; InvalidArgument for a malformed ID."""
    from dist_tool.validate import identifier

    session.local_only("tasks")
    return os.path.join(session.root, "tasks", session.namespace, identifier("container id", container_id))


def _task_container(session, container_id: str) -> Container:
    """The container a task command works on. Tasks are not served: through --address the refusal
    comes before the lookup, which the server would answer (a missing ID as not found)."""
    session.local_only("tasks")
    return session.containers.get(container_id)


def runtime_binary(container: Container) -> str:
    """The runtime's executable: runc (or ``$DIST_RUNTIME``) for the default runtime names, else
    the container's runtime name itself, a binary with runc's command line."""
    from dist_tool.system import runtime_binary as default_binary

    name = container.runtime_name
    wanted = default_binary() if name in DEFAULT_RUNTIMES else name
    found = shutil.which(wanted)
    if found is None:
        there = shutil.which(wanted, mode=os.F_OK)
        if there is not None:  # which() skips what it may not execute: "not found" blamed a file that is there
            where = "" if os.sep in wanted else f" ({os.path.abspath(there)})"
            raise TaskFailed("runtime", wanted, f"is not executable{where}")
        raise TaskFailed("runtime", wanted, "not found (install runc, or set DIST_RUNTIME)")
    return os.path.abspath(found)


# ---------------------------------------------------------------- start


def _bundle(session, container: Container, path: str, *, detached: bool, log: str | None,
            null_io: bool, record_exit: bool, then: list[str] | None = None) -> dict:
    """Writes config.json and shim.json into ``path`` (a fresh directory); returns the shim's cfg."""
    from dist_tool.shim import exits

    if not container.spec:
        raise TaskFailed("container", container.id, "has no runtime spec")
    spec = json.loads(json.dumps(container.spec))
    final = shims.task_dir(session, container.id)
    exits.drop_pending(final)  # an earlier run's exit that never reached the store: this run's is next
    spec.setdefault("root", {})["path"] = os.path.join(final, "rootfs")  # where the rename puts it
    mounts: list[dict] = []
    if container.snapshot_key:
        snapshotter = session.snapshotter_named(container.snapshotter) if container.snapshotter \
            else session.snapshotter
        mounts = [m.to_json() for m in snapshotter.mounts(container.snapshot_key)]
    cfg = {"id": container.id, "namespace": session.namespace, "root": session.root,
           "dir": final, "runtime": runtime_binary(container),
           "runcRoot": shims.runc_root(session), "mounts": mounts,
           "terminal": bool((spec.get("process") or {}).get("terminal")), "detached": detached,
           "log": log, "nullIO": null_io, "recordExit": record_exit, "then": then,
           "subreaper": detached,
           "shimLog": os.path.join(persist_dir(session, container.id), "shim.log") if detached else None,
           "syspath": [p for p in sys.path if p and os.path.isdir(p)]}
    os.mkdir(os.path.join(path, "rootfs"))
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(spec, f)
    with open(os.path.join(path, "shim.json"), "w") as f:
        json.dump(cfg, f)
    return cfg


def _claim(session, container: Container, **options) -> dict:
    """Makes the task directory appear complete, or not at all (one rename); Conflict when the
    container already has a live task. The directory names this process as its shim until a
    detached shim takes over."""
    base = shims.namespace_dir(session)
    os.makedirs(base, exist_ok=True)
    os.makedirs(shims.runc_root(session), exist_ok=True)
    shims.finish_abandoned(session)  # a half-done cleanup of this ID would hold its runtime state
    final = shims.task_dir(session, container.id)
    for _ in range(3):
        tmp = os.path.join(base, f".new-{container.id}-{os.getpid()}-{time.monotonic_ns()}")
        os.mkdir(tmp)
        try:
            try:
                cfg = _bundle(session, container, tmp, **options)
            except NotFound:  # a `container rm` since we read it took the snapshot: name the container
                _still_there(session, container)
                raise
            with open(os.path.join(tmp, "shim.pid"), "w") as f:
                f.write(f"{os.getpid()} {process_start(os.getpid())}\n")
            os.rename(tmp, final)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):  # the container has a task directory
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        else:
            try:
                _still_there(session, container)
            except BaseException:
                shutil.rmtree(final, ignore_errors=True)  # unclaim: nothing is mounted or started yet
                raise
            return cfg
        if shims.shim_alive(final):
            raise Conflict("task", container.id, "already exists")
        shims.cleanup_dead(session, container.id)
    raise Conflict("task", container.id, "already exists")


def _still_there(session, container: Container) -> None:
    """NotFound unless ``container`` is still the container of its ID. A ``container rm`` checks
    for a claimed task inside its write transaction; this check is made in one too, after the
    claim, so of an rm and a start that read the container at once exactly one wins: the rm saw
    the claim and refused, or we see the container gone (and not a later one of the same ID)."""
    with session.transaction():
        current = session.containers.get(container.id)
    if current.created_at != container.created_at:
        raise NotFound("container", container.id, "not found (removed while its task was starting)")


def _mount_checked(cfg: dict, container: Container) -> None:
    """Mounts the claimed task's root filesystem, then makes sure its command can start there
    (``executable.check``), so that a command that cannot start is dist's one line and not the
    runtime's too. On failure nothing remains (mount, task directory) and TaskFailed says why:
    127 not found, 126 cannot be invoked, 125 the mount failed."""
    from dist_tool import executable
    from dist_tool.shim import host

    rootfs = os.path.join(cfg["dir"], "rootfs")
    try:
        host.mount_all(cfg["mounts"], rootfs)
    except OSError as e:
        shutil.rmtree(cfg["dir"], ignore_errors=True)
        raise TaskFailed("task", container.id, f"mounting its root filesystem: {e}") from None
    spec = container.spec or {}
    hidden = [m.get("destination", "") for m in spec.get("mounts") or ()]
    hidden += (spec.get("linux") or {}).get("maskedPaths") or []
    try:
        executable.check(rootfs, spec.get("process") or {}, hidden)
    except executable.CannotRun as e:
        _unmount_and_remove(cfg)
        raise TaskFailed("task", container.id, str(e), status=e.status) from None
    except BaseException:
        _unmount_and_remove(cfg)
        raise


def _unmount_and_remove(cfg: dict) -> None:
    from dist_tool.shim import host

    host.unmount_all(os.path.join(cfg["dir"], "rootfs"))
    shutil.rmtree(cfg["dir"], ignore_errors=True)


def _check_log(log: str) -> None:
    """InvalidArgument for a ``--log`` that is there and no file (/dev/null is one)."""
    try:
        mode = os.stat(log).st_mode
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode)):
        raise InvalidArgument("--log", log, "must be a file (a FIFO or socket would block the task's shim "
                              "until something reads it)")


def _log_target(session, container_id: str, log: str | None) -> str:
    """Where a detached run's output goes: ROOT/tasks/NS/ID/log, or ``log`` (checked)."""
    if log:
        _check_log(log)
        return os.path.abspath(log)
    return os.path.join(persist_dir(session, container_id), "log")


def _prepare_log(session, container_id: str, target: str) -> None:
    """Empties the log for a new detached run (and links ROOT/tasks/NS/ID/log to a ``--log``
    file). Only once the run has claimed the task: a refused start must not empty the log of
    the task that is running."""
    d = persist_dir(session, container_id)
    os.makedirs(d, exist_ok=True)
    link = os.path.join(d, "log")
    if os.path.lexists(link):
        os.unlink(link)
    if target != link:
        os.symlink(target, link)
    with open(target, "wb"):
        pass


def start_foreground(session, container_id: str, *, null_io: bool = False, record_exit: bool = True,
                     stdio: tuple[int, int, int] = (0, 1, 2), container: Container | None = None,
                     then: list[str] | None = None) -> int:
    """Runs the task with this process as its shim: the init gets ``stdio`` as they are (no copy),
    signals we receive are forwarded, and we return its exit status once everything of it is
    gone. Raises TaskFailed (125/126/127) when it cannot start. ``then`` is run only by whoever
    cleans up should this process die (``run --rm``: ours removes the container itself)."""
    from dist_tool.shim.runc import RuntimeFailure
    from dist_tool.shim.server import Shim

    container = container or _task_container(session, container_id)
    cfg = _claim(session, container, detached=False, log=None, null_io=null_io, record_exit=record_exit, then=then)
    # Until the shim serves, the claimed task directory names this process as its shim: an
    # interrupt (^C, SIGTERM) must take it away, or `run --rm`'s removal would wait for this
    # very process to bury its task, and then SIGKILL it.
    try:
        _mount_checked(cfg, container)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        shim = Shim(cfg, stdio)
    except BaseException:
        _unmount_and_remove(cfg)
        raise
    try:
        shim.start()  # undoes what it did (runtime state, mounts) whatever it raises
    except BaseException as e:
        shutil.rmtree(cfg["dir"], ignore_errors=True)
        if isinstance(e, RuntimeFailure):
            raise TaskFailed("task", container_id, e.message, status=e.status) from None
        if isinstance(e, OSError):
            raise TaskFailed("task", container_id, str(e)) from None
        raise
    return shim.serve()


def start_detached(session, container_id: str, *, log: str | None = None, null_io: bool = False,
                   remove: bool = False) -> TaskInfo:
    """Starts the task under its own shim process and returns once the process runs; its output
    goes to the task log. The shim is a fresh ``python -I -S`` of the standard library alone
    (``shim/__main__``): we mount the root filesystem for it, and the forked child that becomes it
    starts a new session, forks again (leaving our process tree) and makes itself a child
    subreaper before its exec, so the shim needs no ``ctypes`` of its own."""
    import select

    container = _task_container(session, container_id)
    log_file = None if null_io else _log_target(session, container_id, log)
    # --null-io writes no log, yet this is now the last detached run: its log is the empty
    # store log, or `task logs` would print an earlier run's output as this one's.
    emptied = log_file or _log_target(session, container_id, None)
    os.makedirs(persist_dir(session, container_id), exist_ok=True)
    package_parent = _package_parent()
    # ``remove`` (run --rm -d): the shim, its task gone and cleaned up, execs `container rm`.
    then = _remove_command(session, container_id) if remove else None
    cfg = _claim(session, container, detached=True, log=log_file, null_io=null_io, record_exit=True, then=then)
    try:
        _prepare_log(session, container_id, emptied)
    except BaseException:
        shutil.rmtree(cfg["dir"], ignore_errors=True)  # unclaim: nothing was mounted or started yet
        raise
    _mount_checked(cfg, container)
    argv = [sys.executable, "-I", "-S", "-c", _BOOT, package_parent, os.path.join(cfg["dir"], "shim.json")]
    r, w = os.pipe()
    try:
        shims.spawn_detached(argv, keep=w, log=cfg.get("shimLog"), subreaper=True)
    finally:
        os.close(w)
    data = b""
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                raise TaskFailed("shim", container_id, "did not report the task started")
            chunk = os.read(r, 4096)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
    try:
        ready = json.loads(data)
    except ValueError:
        shims.cleanup_dead(session, container_id)
        raise TaskFailed("shim", container_id, "exited before the task started") from None
    if not ready.get("ok"):
        raise TaskFailed("task", container_id, ready.get("error", "failed"), status=int(ready.get("status", 125)))
    return TaskInfo(container_id, ready["pid"], "running", ready["shimPid"], time.time())


def _package_parent() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _remove_command(session, container_id: str) -> list[str]:
    """``dist container rm ID``, for after a ``run --rm`` task: what its detached shim execs once
    the task is cleaned up, and what whoever cleans up after a dead shim runs (``shims._bury``).
    Not -f: a task started again meanwhile keeps its container (rm then fails, exit 4)."""
    return [sys.executable, "-c", _BOOT_CLI, _package_parent(), "--root", session.root, "--state", session.state,
            "-n", session.namespace, "container", "rm", container_id]


def run(session, image: str, container_id: str, options, *, remove: bool = False, detach: bool = False,
        log: str | None = None, null_io: bool = False, progress=None) -> int | None:
    """``dist run``: container create + task start; with ``remove``, the container is deleted
    after the task exits whatever its status. The status of a foreground task, else None.
    ``progress`` shows the create's unpack and is closed before the task starts."""
    from dist_tool import containers

    if detach and log:
        _check_log(log)  # before the container exists
    container = containers.create(session, image, container_id, options, progress=progress)
    if progress is not None:
        progress.close()  # a foreground task owns the terminal: no bar may be drawn over its output
    started = False
    try:
        if detach:
            start_detached(session, container_id, log=log, null_io=null_io, remove=remove)
            started = True
            return None
        return start_foreground(session, container_id, null_io=null_io, record_exit=not remove,
                                container=container, then=_remove_command(session, container_id) if remove else None)
    finally:
        if remove and not started:  # a started detached task's shim removes it when the task exits
            error = containers.remove(session, [container_id], force=True)[2]
            if error is not None:
                raise error


def parse_signal(text: str) -> int:
    """``SIGKILL``, ``KILL`` or ``9`` (SPEC "Signals")."""
    number = decimal(text)
    if number is not None and 0 < number < signal.NSIG:
        return number
    # str.upper makes "ſ" an S and "ı" an I, but "ſigkıll" is no signal's name
    name = text.upper().removeprefix("SIG") if text.isascii() else ""
    try:
        return int(signal.Signals["SIG" + name])
    except KeyError:
        pass
    # Real-time signals by offset, as moby's signal map (ctr, docker) names them: RTMIN+3 is
    # systemd's stop signal.
    for base, sign, top, limit in (("RTMIN+", 1, signal.SIGRTMIN, 15), ("RTMAX-", -1, signal.SIGRTMAX, 14)):
        offset = decimal(name[len(base):]) if name.startswith(base) else None
        if offset is not None and 0 < offset <= limit:
            return int(top) + sign * offset
    raise InvalidArgument("signal", text, "expected a name such as SIGKILL or KILL, or a number")


# ---------------------------------------------------------------- operations


def list_tasks(session, *filters: str) -> list[TaskInfo]:
    """The namespace's live tasks matching any filter (over their JSON fields), asking each shim;
    dead ones are cleaned up on the way."""
    keep = None
    if filters:
        from dist_tool.filters import matcher

        keep = matcher(filters, TaskInfo.to_json)  # a bad filter is a usage error before any shim is asked
    from dist_tool.validate import IDENTIFIER_RE

    shims.finish_abandoned(session)
    try:  # graves (.dead-*) and anything else that cannot be a container ID are no tasks
        names = sorted(n for n in os.listdir(shims.namespace_dir(session)) if IDENTIFIER_RE.match(n))
    except FileNotFoundError:
        return []
    out = []
    deadline = time.monotonic() + LIST_CALL_TIMEOUT  # one wait for them all: N stuck shims cost one, not N
    for name in names:
        try:
            reply = shims.call(session, name, {"op": "status"}, timeout=max(deadline - time.monotonic(), 0.2))
        except NotFound:
            continue
        except Unavailable:  # stopped or hung: what the runtime says of the task, as ctr lists it
            task = _as_the_runtime_sees_it(session, name)
            if task is not None:
                out.append(task)
            continue
        out.append(TaskInfo(name, reply["pid"], reply["status"], reply["shimPid"], reply.get("startedAt")))
    return out if keep is None else [t for t in out if keep(t)]


def _as_the_runtime_sees_it(session, container_id: str) -> TaskInfo | None:
    """A task whose shim lives but does not answer, from ``runc state`` (None when the runtime
    has no live container for it: then SPEC's STATUS has no word for it)."""
    from dist_tool.shim.runc import RuntimeFailure

    path = shims.task_dir(session, container_id)
    shim = shims.read_pid(os.path.join(path, "shim.pid"))
    try:
        state = shims.task_runtime(shims.task_config(path)).state(container_id)
    except (OSError, ValueError, KeyError, RuntimeFailure):
        return None
    if shim is None or state is None or state.get("status") not in ("created", "running", "paused"):
        return None
    return TaskInfo(container_id, int(state.get("pid") or 0), state["status"], shim[0], None)


def info(session, container_id: str) -> TaskInfo:
    reply = shims.call(session, container_id, {"op": "status"})
    return TaskInfo(container_id, reply["pid"], reply["status"], reply["shimPid"], reply.get("startedAt"))


def kill(session, container_id: str, signal: int, all_processes: bool = False, exec_id: str | None = None) -> None:
    request: dict = {"op": "kill", "signal": signal, "all": all_processes}
    if exec_id is not None:
        from dist_tool.validate import identifier

        request["exec"] = identifier("exec id", exec_id)
    shims.call(session, container_id, request)


def pause(session, container_id: str) -> None:
    shims.call(session, container_id, {"op": "pause"})


def resume(session, container_id: str) -> None:
    shims.call(session, container_id, {"op": "resume"})


def wait(session, container_id: str) -> int:
    """Blocks until the task exits and its shim is gone; its status. After the exit, lastExit at
    once; NotFound (exit 3) only when the container never had a task."""
    path = shims.task_dir(session, container_id)
    try:
        with shims.connect(session, container_id, timeout=shims.CALL_TIMEOUT) as client:
            client.settimeout(None)
            try:
                reply = shims.checked(container_id, client.call({"op": "wait"}))
            except ConnectionError:
                reply = None
        shim = shims.read_pid(os.path.join(path, "shim.pid"))
        deadline = time.monotonic() + SHIM_EXIT_WAIT
        while shim is not None and alive(*shim) and time.monotonic() < deadline:
            time.sleep(0.005)
        if reply is not None:
            return int(reply["status"])
        shims.alive_task(session, container_id)  # the shim died mid-wait: clean up after it
    except NotFound:
        pass  # no task dir: none ran, or another command renamed it away to bury it
    # Whoever is burying the task records lastExit before its grave goes: let them finish.
    shims.await_cleanup(session, container_id)
    try:
        container = session.containers.get(container_id)
    except Unavailable:  # the store cannot even be read (a full disk): the kept exit still answers
        from dist_tool.shim import exits

        kept = exits.read_pending(shims.task_dir(session, container_id))
        if kept is None:
            raise
        return int(kept["status"])
    last = last_exit(session, container)
    if last is None:
        raise NotFound("task", container_id, "not found (the container never ran a task)")
    return int(last["status"])  # type: ignore[call-overload]


def last_exit(session, container: Container) -> dict | None:
    """The container's lastExit. A shim whose store refused the write (a full disk) kept the exit
    beside the task's directory (``exits.record_or_keep``): that one is newer, and is recorded
    now if the store takes it; if not, it is still the answer, and stays for the next reader."""
    from dist_tool.shim import exits

    if session.address:
        return container.last_exit
    path = shims.task_dir(session, container.id)
    pending = exits.read_pending(path)
    if pending is None:
        return container.last_exit
    try:
        session.containers.update(Container(id=container.id, image="", last_exit=pending), "lastExit")
    except DistError:
        return pending
    exits.drop_pending(path)
    return pending


def kill_and_wait(session, container_id: str, timeout: float) -> None:
    """SIGKILLs the task and waits until its shim has recorded the exit and gone (``rm -f``).
    A task with no answering shim has its init killed directly. Conflict after ``timeout``."""
    path = shims.task_dir(session, container_id)
    wait = timeout
    try:
        # Every process, through the runtime: a paused task's are frozen, and runc thaws them
        # for the signal; a SIGKILL to the frozen init alone would wait for a resume.
        shims.call(session, container_id, {"op": "kill", "signal": int(signal.SIGKILL), "all": True},
                   timeout=FORCE_CALL_TIMEOUT)
    except Unavailable:  # the shim lives but does not answer: it will not record this exit either
        shims.sigkill_recorded(os.path.join(path, "init.pid"))
        wait = min(timeout, UNANSWERED_SHIM_GRACE)
    except DistError:  # gone meanwhile, or the runtime refused the kill: the init is still ours to end
        shims.sigkill_recorded(os.path.join(path, "init.pid"))
    deadline = time.monotonic() + wait
    while shims.alive_task(session, container_id):
        if time.monotonic() > deadline:
            # A stopped or hung shim would keep its task (and the container) forever: force is
            # force. The cleanup after a dead shim then deletes the runtime state and the mount.
            if shims.sigkill_recorded(os.path.join(path, "shim.pid")):
                shims.cleanup_dead(session, container_id)
            elif shims.alive_task(session, container_id):  # else it went just now, by itself
                raise Conflict("task", container_id, "did not exit after SIGKILL")
            return
        time.sleep(0.01)


def remove(session, container_id: str, force: bool = False) -> None:
    """``task rm``: a created task is removed; a running or paused one only with ``force``, which
    needs no answer from the shim: a stopped or hung one is killed with its task (as ``rm -f``)."""
    if force:
        if not shims.alive_task(session, container_id):  # a dead shim's task is cleaned up here
            raise NotFound("task", container_id, "not found")
    else:
        status = info(session, container_id).status
        if status in ("running", "paused"):
            raise Conflict("task", container_id, f"is {status} (kill it first, or use -f)")
    kill_and_wait(session, container_id, timeout=10.0)


def forget(session, container_id: str) -> None:
    """Removes what a container's tasks left (the last log, an exit kept for the store); with
    the container, and before a new one of the same ID, which never ran a task."""
    from dist_tool.shim import exits

    shutil.rmtree(persist_dir(session, container_id), ignore_errors=True)
    exits.drop_pending(shims.task_dir(session, container_id))


def ps(session, container_id: str) -> list[dict]:
    """The task's processes: {"pid", "command"} (host pids, from ``runc ps``)."""
    from dist_tool.shim.runc import RuntimeFailure

    info(session, container_id)  # NotFound when there is no live task
    runc = shims.task_runtime(shims.task_config(shims.task_dir(session, container_id)))
    try:
        pids = runc.ps(container_id)
    except RuntimeFailure as e:
        raise Unavailable("task", container_id, e.message) from None
    return [{"pid": pid, "command": _cmdline(pid)} for pid in sorted(pids)]


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return " ".join(a.decode(errors="replace") for a in f.read().split(b"\0") if a)
    except OSError:
        return ""


def log_file(session, container_id: str) -> str:
    """The last detached run's log; empty when only foreground tasks ran (their output went to
    their terminal). NotFound when the container never had a task (SPEC)."""
    path = os.path.join(persist_dir(session, container_id), "log")
    if not os.path.exists(path):
        container = session.containers.get(container_id)  # NotFound for the container itself
        if last_exit(session, container) is not None or shims.alive_task(session, container_id):
            return os.devnull
        raise NotFound("task", container_id, "has no log (the container never had a task)")
    return path


def follow_log(session, container_id: str, out, follow: bool, poll: float = 0.1) -> None:
    """Copies the log to ``out`` (a binary stream); with ``follow``, until the task has exited."""
    path = log_file(session, container_id)
    with open(path, "rb") as f:
        while True:
            chunk = f.read(65536)
            if chunk:
                out.write(chunk)
                continue
            out.flush()
            if not follow or not shims.alive_task(session, container_id):
                rest = f.read()
                if rest:
                    out.write(rest)
                    out.flush()
                return
            time.sleep(poll)


# ---------------------------------------------------------------- exec


def exec_process(container: Container, args: Sequence[str], tty: bool) -> dict:
    """The OCI process of an exec: the container's (user, env, cwd, capabilities) with ``args``."""
    if not args:
        raise InvalidArgument("exec", container.id, "a command is required after --")
    from dist_tool.validate import utf8

    process = json.loads(json.dumps((container.spec or {}).get("process") or {}))
    # Other bytes than UTF-8 would reach runc as U+FFFD: it would run or pass something else.
    process["args"] = [utf8("argument", arg) for arg in args]
    process["terminal"] = tty
    if tty and not any(e.startswith("TERM=") for e in process.get("env", [])):
        process.setdefault("env", []).append("TERM=xterm")
    return process


def _check_exec(session, container_id: str, process: dict) -> None:
    """TaskFailed (127/126) when the exec's command certainly cannot start in the task: looked up
    in the init's own root (``/proc/PID/root``, its mounts included) while that init lives."""
    from dist_tool import executable

    init = shims.read_pid(os.path.join(shims.task_dir(session, container_id), "init.pid"))
    start = process_start(init[0]) if init is not None else None
    if init is None or start is None:
        return  # no running task: the shim says so
    try:
        executable.check(f"/proc/{init[0]}/root", process)
    except executable.CannotRun as e:
        if alive(init[0], start):  # else the pid's root may be another's by now
            raise TaskFailed("task", container_id, str(e), status=e.status) from None


def exec_detached(session, container_id: str, exec_id: str, args: Sequence[str], tty: bool = False) -> int:
    """Starts another process in the task; its output goes to the task log. Returns its pid."""
    container = _task_container(session, container_id)
    process = exec_process(container, args, tty)
    _check_exec(session, container_id, process)
    request = {"op": "exec", "exec": exec_id, "detach": True, "terminal": tty, "process": process}
    _check_request_size(exec_id, request)
    reply = shims.call(session, container_id, request, timeout=EXEC_CALL_TIMEOUT)
    return int(reply["pid"])


def _check_request_size(exec_id: str, request: dict) -> None:
    """InvalidArgument for an exec the shim would refuse as too long (``proto.MAX_LINE``): said
    here, since the shim hangs up on the rest of the request, and a hang-up read as the task
    having exited (exit 3, or 125 in the foreground) while it ran on."""
    from dist_tool.shim import proto

    size = len(proto.encode(request))
    if size > proto.MAX_LINE:
        raise InvalidArgument("exec", exec_id, f"its process (arguments and environment) is {size} bytes "
                              f"of JSON, more than a shim takes ({proto.MAX_LINE})")


def exec_foreground(session, container_id: str, exec_id: str, args: Sequence[str], tty: bool = False,
                    stdio: tuple[int, int, int] = (0, 1, 2)) -> int:
    """Runs another process in the task attached to ``stdio`` (passed to it as they are; with
    ``tty`` a terminal copied to them) with our signals forwarded; its exit status."""
    import signal

    from dist_tool import terminal

    container = _task_container(session, container_id)
    client = shims.connect(session, container_id, timeout=EXEC_CALL_TIMEOUT)
    forwarded = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
    saved = {}
    try:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        process = exec_process(container, args, tty)
        _check_exec(session, container_id, process)
        if tty:
            size = terminal.window_size(stdio)
            if size is not None:  # set by the runtime as it makes the pty: no race with the process
                process["consoleSize"] = {"height": size[0], "width": size[1]}
        request = {"op": "exec", "exec": exec_id, "detach": False, "terminal": tty, "process": process}
        _check_request_size(exec_id, request)
        shims.checked(container_id, client.call(request, () if tty else stdio))
        if not tty:
            def forward(signum: int, frame: object) -> None:
                try:
                    kill(session, container_id, signum, exec_id=exec_id)
                except DistError:
                    pass

            for sig in forwarded:
                saved[sig] = signal.signal(sig, forward)
            client.settimeout(None)
            return int(shims.checked(container_id, client.call({"op": "wait", "exec": exec_id}))["status"])
        master = client.fds.pop()
        client.send({"op": "wait", "exec": exec_id})
        terminal.attach(master, stdio)
        client.settimeout(None)
        return int(shims.checked(container_id, client.receive())["status"])
    except TimeoutError:  # only the exec's start has a timeout: a stopped or hung shim
        raise shims.unanswered(session, container_id, EXEC_CALL_TIMEOUT) from None
    except ConnectionError:
        path = shims.task_dir(session, container_id)
        # A killed shim's descriptors close (our end sees it) a moment before its process is
        # gone: judged at once, a dying shim looked alive and its task stayed up with nobody to
        # clean it up. So, as wait() does, give it that moment before asking.
        deadline = time.monotonic() + SHIM_EXIT_WAIT
        while os.path.isdir(path) and shims.shim_alive(path) and time.monotonic() < deadline:
            time.sleep(0.005)
        if os.path.isdir(path) and not shims.shim_alive(path):
            shims.cleanup_dead(session, container_id)  # as any command that finds a dead shim does
            raise TaskFailed("task", container_id, "its shim died while the exec ran (cleaned up)") from None
        raise TaskFailed("task", container_id, "exited while the exec ran") from None
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        client.close()
