"""Processes exec'd into a running task, for the shim: started with ``runc exec -d`` (so each
becomes the shim's child, reaped and waited for like the init), killed and waited for by exec
ID, their terminals copied. Imported by a shim on its task's first exec."""

from __future__ import annotations

import posix
import select
import time
from _signal import SIGKILL

from dist_tool.shim import host, proto
from dist_tool.shim.proto import Refused
from dist_tool.shim.runc import read_pid_file

TYPE_CHECKING = False  # not typing's: typing imports re and enum, a megabyte a shim cannot spare
if TYPE_CHECKING:
    from dist_tool.shim.server import Conn, Shim

DRAIN_SECONDS = 2.0  # how long the exit path waits for exec'd processes the kernel is killing
EXITED_EXECS_KEPT = 64


def _hung_up(conn: Conn) -> bool:
    """Whether the other end of ``conn`` has closed (its request is still read from the buffer)."""
    poller = select.poll()
    poller.register(conn.sock.fileno(), select.POLLRDHUP)
    return any(events & (select.POLLHUP | select.POLLRDHUP) for _, events in poller.poll(0))


class Exec:
    __slots__ = ("id", "pid", "status", "exited_at", "waiters", "master", "out")

    def __init__(self, exec_id: str) -> None:
        self.id = exec_id
        self.pid = 0
        self.status: int | None = None
        self.exited_at: float | None = None
        self.waiters: list[Conn] = []
        self.master = -1  # a detached exec's terminal, copied to the log
        self.out = -1


class Execs:
    """The execs of one shim's task, by ID and by pid."""

    def __init__(self, shim: Shim) -> None:
        self.shim = shim
        self.by_id: dict[str, Exec] = {}
        self.by_pid: dict[int, Exec] = {}

    def get(self, exec_id: object) -> Exec:
        ex = self.by_id.get(exec_id) if isinstance(exec_id, str) else None
        if ex is None:
            raise Refused("not-found", f"exec {exec_id}: not found")
        return ex

    def summary(self) -> list[dict]:
        return [{"id": e.id, "pid": e.pid, "status": e.status} for e in self.by_id.values()]

    def start(self, conn: Conn, req: dict) -> None:
        """Starts the requested process; foreground stdio arrives as descriptors on ``conn``."""
        shim = self.shim
        exec_id = req["exec"]
        if not isinstance(exec_id, str) or not exec_id or "/" in exec_id or exec_id.startswith("."):
            raise Refused("invalid", f"exec id {exec_id!r}")
        shim.running_only("exec in")
        old = self.by_id.get(exec_id)
        if old is not None and old.status is None:
            raise Refused("conflict", f"exec {exec_id}: already exists")
        fds, conn.fds = conn.fds, []
        terminal, detach = bool(req.get("terminal")), bool(req.get("detach"))
        ex = Exec(exec_id)
        process_file = f"{shim.dir}/exec-{exec_id}.json"
        pid_file = f"{shim.dir}/exec-{exec_id}.pid"
        console = None
        opened: list[int] = []
        try:
            if _hung_up(conn):
                # Its CLI gave up waiting (this shim was stopped, or slow) and reported the exec
                # failed: started now, it would run unasked, a foreground one on that CLI's stdio.
                raise Refused("failed", f"exec {exec_id}: its requester hung up before it started")
            with open(process_file, "w") as f:
                f.write(proto.dumps({**req["process"], "terminal": terminal}))
            if terminal:
                from dist_tool.shim.console import ConsoleSocket

                console = ConsoleSocket(shim.dir)
            if len(fds) == 3 and not detach:
                stdio = (fds[0], fds[1], fds[2])
            else:
                null = posix.open("/dev/null", posix.O_RDWR | posix.O_CLOEXEC)
                opened.append(null)
                out = null
                if detach and shim.cfg.get("log") and not terminal:
                    out = host.open_log(shim.cfg["log"])
                    opened.append(out)
                stdio = (null, out, out)
            shim.runc.exec_detached(shim.id, process_file, pid_file, stdio,
                                    console.for_pid(posix.getpid()) if console else None)
            ex.pid = read_pid_file(pid_file)
            master = console.receive_master() if console else -1
        except BaseException:
            if console is not None:
                console.close()
            raise
        finally:
            for fd in fds + opened:
                posix.close(fd)
            for path in (process_file, pid_file):
                host.remove_file(path)
        self.by_id[exec_id] = ex
        self.by_pid[ex.pid] = ex
        if ex.pid in shim.reaped:  # it exited before we read its pid
            self.exited(self.by_pid.pop(ex.pid), shim.reaped.pop(ex.pid))
        if master >= 0 and detach:
            from dist_tool.shim.console import open_output

            ex.master = master
            posix.set_blocking(master, False)
            ex.out = open_output(shim.cfg.get("log"))
            shim.ep.register(master, select.EPOLLIN)
            shim.reply(conn, {"ok": True, "pid": ex.pid})
        elif master >= 0:
            shim.reply(conn, {"ok": True, "pid": ex.pid}, (master,))
            posix.close(master)
        else:
            shim.reply(conn, {"ok": True, "pid": ex.pid})

    def reaped(self, pid: int, status: int) -> bool:
        """Records the exit of ``pid`` if it is one of ours."""
        ex = self.by_pid.pop(pid, None)
        if ex is None:
            return False
        self.exited(ex, status)
        return True

    def exited(self, ex: Exec, status: int) -> None:
        ex.status, ex.exited_at = status, time.time()
        if ex.master >= 0:
            from dist_tool.shim.console import copy_out

            copy_out(ex.master, ex.out)
            self.close_tty(ex)
        for conn in ex.waiters:
            self.shim.reply(conn, {"ok": True, "status": status, "exitedAt": ex.exited_at})
        ex.waiters = []
        exited = [e for e in self.by_id.values() if e.status is not None]
        for old in exited[:-EXITED_EXECS_KEPT]:
            del self.by_id[old.id]

    def on_tty(self, fd: int) -> bool:
        """Copies a detached exec's terminal output; False when ``fd`` is not one of ours."""
        for ex in self.by_id.values():
            if ex.master == fd:
                from dist_tool.shim.console import copy_out

                if not copy_out(fd, ex.out):
                    self.close_tty(ex)
                return True
        return False

    def close_tty(self, ex: Exec) -> None:
        if ex.master >= 0:
            self.shim.ep.unregister(ex.master)
            posix.close(ex.master)
            posix.close(ex.out)
            ex.master = ex.out = -1

    def close_ttys(self) -> None:
        for ex in self.by_id.values():
            self.close_tty(ex)

    def forget(self, conn: Conn) -> None:
        """``conn`` is gone: it waits for nothing any more."""
        for ex in self.by_id.values():
            if conn in ex.waiters:
                ex.waiters.remove(conn)

    def drain(self) -> None:
        """Exec'd processes die with the init's pid namespace (or ``runc delete --force``):
        reap them so their waiters get a status."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while self.by_pid and time.monotonic() < deadline:
            self.shim.reap()
            if self.by_pid:
                time.sleep(0.005)
        for pid, ex in list(self.by_pid.items()):
            self.exited(ex, 128 + SIGKILL)
            del self.by_pid[pid]
