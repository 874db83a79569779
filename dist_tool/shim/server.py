"""The shim: it supervises one task from ``runc create`` to the removal of its state.

Lifecycle (``start`` then ``serve``; the same code runs in a detached shim
process, ``python -m dist_tool.shim``, and inside a foreground ``dist run``):

1. become a child subreaper, so the task's init is our child once ``runc
   create`` exits (and exec'd processes once ``runc exec -d`` exits);
2. listen on ``shim.sock``, mount the root filesystem on ``rootfs/``, ``runc
   create`` (stdio inherited, or a console socket for a terminal), ``runc start``;
3. serve the socket (``proto``), forward signals (foreground), copy a
   terminal, reap children;
4. when the init exits: ``runc delete``, unmount, record ``lastExit`` in the
   container record, answer the waiters, remove the task directory.

Nothing is held locked while the task runs. The task directory is the
claim: ``shim.pid`` names the process that answers for it (pid + start time),
so a command that finds that process gone cleans the task up itself
(``dist_tool.tasks``).
"""

from __future__ import annotations

import _signal
import _socket
import os
import select
import time

from dist_tool.shim import host, proto
from dist_tool.shim.runc import Runc, RuntimeFailure

SIGCHLD, SIGKILL, SIGWINCH = _signal.SIGCHLD, _signal.SIGKILL, _signal.SIGWINCH
# A foreground task gets the signals its CLI gets (docker's --sig-proxy); SIGCHLD and SIGWINCH
# are the shim's own.
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1,
             _signal.SIGUSR2)
TIOCSWINSZ, TIOCGWINSZ = 0x5414, 0x5413
IN, HUP = select.EPOLLIN, select.EPOLLHUP | select.EPOLLERR
DRAIN_SECONDS = 2.0  # how long the exit path waits for exec'd processes the kernel is killing
EXITED_EXECS_KEPT = 64


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


class Conn:
    __slots__ = ("sock", "buf", "fds")

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.fds: list[int] = []


class Shim:
    """Supervises one task. ``cfg`` (written by ``dist_tool.tasks``) holds: ``id``, ``namespace``,
    ``root`` (the store), ``dir`` (task directory = bundle), ``runtime``, ``runcRoot``,
    ``mounts`` (the snapshot's), ``terminal``, ``detached``, ``log`` (detached output),
    ``recordExit``, ``syspath`` (for the exit path's imports)."""

    def __init__(self, cfg: dict, stdio: tuple[int, int, int] | None = None) -> None:
        self.cfg = cfg
        self.id: str = cfg["id"]
        self.dir: str = cfg["dir"]
        self.rootfs = os.path.join(self.dir, "rootfs")
        self.runc = Runc(cfg["runtime"], cfg["runcRoot"], os.path.join(self.dir, "runc.log"))
        self.stdio = stdio  # foreground: the CLI's own descriptors, passed to the init as they are
        self.detached: bool = cfg.get("detached", False)
        self.terminal: bool = cfg.get("terminal", False)
        self.status = "creating"
        self.pid = 0
        self.started_at: float | None = None
        self.exit_status: int | None = None
        self.exited_at: float | None = None
        self.waiters: list[Conn] = []
        self.execs: dict[str, Exec] = {}
        self.exec_pids: dict[int, Exec] = {}
        self.conns: dict[int, Conn] = {}
        self.ep = select.epoll()
        self.reaped: dict[int, int] = {}  # pid → status of children reaped before we knew them
        self.master = -1  # the init's terminal
        self.out = -1  # where a terminal's output goes
        self.tty_in = -1  # foreground terminal input (our stdin)
        self.mounted = False
        self.listener: _socket.socket | None = None
        self.sock_path: proto.ShortPath | None = None
        self._wake_r = self._wake_w = -1
        self._saved_signals: dict[int, object] = {}
        self._saved_tty = None

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        """Creates and starts the task. Raises RuntimeFailure (with SPEC's 125/126/127) or OSError,
        having undone whatever it did."""
        try:
            self._start()
        except BaseException:
            self._teardown(delete=True)
            self._close_signals()
            raise

    def _start(self) -> None:
        if not self.cfg.get("subreaper"):  # a detached shim is made one before its exec (tasks.py)
            host.set_child_subreaper()
        self._setup_signals()
        self.sock_path = proto.ShortPath(self.dir, "shim.sock")
        self.listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        self.listener.bind(self.sock_path.path)
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.ep.register(self.listener.fileno(), IN)
        if self.cfg.get("premounted"):  # mounted by the CLI: a running shim never loads ctypes
            self.mounted = True
        elif self.cfg.get("mounts"):
            host.mount_all(self.cfg["mounts"], self.rootfs)
            self.mounted = True
        console = None
        if self.terminal:
            console = self._console_listener()
        stdio, opened = self._init_stdio()
        pid_file = os.path.join(self.dir, "init.pid")
        try:
            if console is None:  # nothing to do between create and start: one runtime call
                self.runc.run_detached(self.id, self.dir, pid_file, stdio)
            else:
                self.runc.create(self.id, self.dir, pid_file, stdio, console.for_pid(os.getpid()))
        finally:
            for fd in opened:
                os.close(fd)
        with open(pid_file) as f:
            self.pid = int(f.read().strip())
        if console is not None:
            self.status = "created"
            self.master = self._receive_master(console)
            self._setup_terminal()  # sized before the process runs
            self.runc.start(self.id)
        self.status = "running"
        self.started_at = time.time()

    def _init_stdio(self) -> tuple[tuple[int, int, int], list[int]]:
        """The init's stdio and the descriptors we opened for it (closed once it has them)."""
        if self.stdio is not None and not self.cfg.get("nullIO"):
            return self.stdio, []
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        if self.detached and self.cfg.get("log") and not self.terminal and not self.cfg.get("nullIO"):
            log = os.open(self.cfg["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
            return (null, log, log), [null, log]
        return (null, null, null), [null]

    # ------------------------------------------------------------------ signals

    def _setup_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signals = [SIGCHLD]
        if not self.detached:
            signals += FORWARDED
            if self.terminal:
                signals.append(SIGWINCH)
        for sig in signals:
            self._saved_signals[sig] = _signal.signal(sig, _noop)
            _signal.siginterrupt(sig, False)
        self._saved_wakeup = _signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        self.ep.register(self._wake_r, IN)

    def _close_signals(self) -> None:
        if self._wake_w < 0:
            return
        _signal.set_wakeup_fd(self._saved_wakeup)
        for sig, handler in self._saved_signals.items():
            _signal.signal(sig, handler)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_r = self._wake_w = -1

    def _on_signals(self) -> None:
        try:
            data = os.read(self._wake_r, 256)
        except BlockingIOError:
            return
        for sig in set(data):
            if sig == SIGCHLD:
                self._reap()
            elif sig == SIGWINCH:
                self._resize()
            elif self.pid and self.exit_status is None:
                _kill(self.pid, sig)

    def _reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            status = host.exit_status(wait_status)
            if pid == self.pid:
                self.exit_status, self.exited_at = status, time.time()
                self.status = "stopped"
            elif pid in self.exec_pids:
                self._exec_exited(self.exec_pids.pop(pid), status)
            else:
                self.reaped[pid] = status

    # ------------------------------------------------------------------ terminal

    def _console_listener(self) -> proto.ShortPath:
        path = proto.ShortPath(self.dir, "console.sock")
        try:
            os.unlink(path.path)
        except FileNotFoundError:
            pass
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        sock.bind(path.path)
        sock.listen(1)
        self._console_sock = sock
        return path

    def _receive_master(self, path: proto.ShortPath) -> int:
        """The runtime has connected to the console socket and sent the pty master (SCM_RIGHTS)."""
        sock = self._console_sock
        try:
            sock.settimeout(10)
            conn = _accept(sock)
            try:
                conn.settimeout(10)
                _, ancdata, _, _ = conn.recvmsg(4096, _socket.CMSG_SPACE(4))
            finally:
                conn.close()
        finally:
            sock.close()
            try:
                os.unlink(path.path)
            except FileNotFoundError:
                pass
            path.close()
        for level, kind, payload in ancdata:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fd = int.from_bytes(payload[:4], "little")
                os.set_inheritable(fd, False)
                return fd
        raise RuntimeFailure("the runtime sent no terminal")

    def _setup_terminal(self) -> None:
        """Foreground: our terminal in raw mode, copied both ways. Detached: output to the log."""
        os.set_blocking(self.master, False)
        if self.detached or self.stdio is None:
            self.out = os.open(self.cfg["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640) \
                if self.cfg.get("log") else os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        else:
            self.out = self.stdio[1]
            if os.isatty(self.stdio[0]):
                import termios
                import tty

                self.tty_in = self.stdio[0]
                self._saved_tty = termios.tcgetattr(self.tty_in)
                tty.setraw(self.tty_in)
                self.ep.register(self.tty_in, IN)
            elif not self.cfg.get("nullIO"):
                self.tty_in = self.stdio[0]
                self.ep.register(self.tty_in, IN)
            self._resize()
        self.ep.register(self.master, IN)

    def _resize(self) -> None:
        if self.master < 0 or self.stdio is None:
            return
        import fcntl

        for fd in self.stdio:
            try:
                size = fcntl.ioctl(fd, TIOCGWINSZ, b"\0" * 8)
            except OSError:
                continue
            fcntl.ioctl(self.master, TIOCSWINSZ, size)
            return

    def _copy_out(self, master: int, out: int) -> bool:
        """Copies what the terminal has; False once it is closed (the process exited)."""
        while True:
            try:
                data = os.read(master, 65536)
            except BlockingIOError:
                return True
            except OSError:  # EIO: every slave end is closed
                return False
            if not data:
                return False
            _write_all(out, data)

    def _copy_in(self) -> None:
        try:
            data = os.read(self.tty_in, 65536)
        except OSError:
            data = b""
        if not data:
            self.ep.unregister(self.tty_in)
            self.tty_in = -1
            return
        try:
            _write_all(self.master, data)
        except OSError:
            pass

    # ------------------------------------------------------------------ serving

    def serve(self) -> int:
        """Runs until the init has exited, then cleans up; returns its exit status."""
        try:
            while self.exit_status is None:
                self._step(None)
            self._finish()
        finally:
            self._restore_tty()
            self._close_signals()
        return self.exit_status  # type: ignore[return-value]

    def _step(self, timeout: float | None) -> None:
        try:
            events = self.ep.poll(-1 if timeout is None else timeout)
        except InterruptedError:
            return
        for fd, mask in events:
            if fd == self._wake_r:
                self._on_signals()
            elif self.listener is not None and fd == self.listener.fileno():
                self._accept()
            elif fd == self.master:
                if not self._copy_out(self.master, self.out):
                    self.ep.unregister(self.master)
                    os.close(self.master)
                    self.master = -1
            elif fd == self.tty_in:
                self._copy_in()
            elif fd in self.conns:
                self._on_conn(self.conns[fd], mask)
            else:
                self._on_exec_tty(fd)

    def _accept(self) -> None:
        while True:
            try:
                sock = _accept(self.listener)  # type: ignore[arg-type]
            except BlockingIOError:
                return
            sock.setblocking(False)
            self.conns[sock.fileno()] = Conn(sock)
            self.ep.register(sock.fileno(), IN)

    def _drop(self, conn: Conn) -> None:
        fd = conn.sock.fileno()
        if fd in self.conns:
            self.ep.unregister(fd)
            del self.conns[fd]
        for other in conn.fds:
            os.close(other)
        conn.fds = []
        conn.sock.close()
        if conn in self.waiters:
            self.waiters.remove(conn)
        for ex in self.execs.values():
            if conn in ex.waiters:
                ex.waiters.remove(conn)

    def _on_conn(self, conn: Conn, mask: int) -> None:
        try:
            data, ancdata, _, _ = conn.sock.recvmsg(65536, _socket.CMSG_SPACE(4 * 3))
        except BlockingIOError:
            return
        except OSError:
            data, ancdata = b"", []
        for level, kind, payload in ancdata:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                for i in range(0, len(payload) - len(payload) % 4, 4):
                    fd = int.from_bytes(payload[i:i + 4], "little")
                    os.set_inheritable(fd, False)
                    conn.fds.append(fd)
        if not data:
            self._drop(conn)
            return
        conn.buf += data
        while b"\n" in conn.buf:
            line, _, conn.buf = conn.buf.partition(b"\n")
            self._request(conn, line)
        if len(conn.buf) > proto.MAX_LINE:
            self._reply(conn, {"ok": False, "kind": "invalid", "error": "request too long"})
            self._drop(conn)

    def _reply(self, conn: Conn, message: dict, fds: tuple[int, ...] = ()) -> None:
        data = proto.encode(message)
        try:
            conn.sock.setblocking(True)
            conn.sock.settimeout(5)
            if fds:
                conn.sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                            b"".join(fd.to_bytes(4, "little") for fd in fds))])
            else:
                conn.sock.sendall(data)
            conn.sock.setblocking(False)
        except OSError:
            self._drop(conn)

    def _request(self, conn: Conn, line: bytes) -> None:
        try:
            req = proto.decode(line)
            if req.get("v", proto.VERSION) != proto.VERSION:
                raise _Refused("invalid", f"protocol version {req.get('v')} (this shim speaks {proto.VERSION})")
            op = req.get("op")
            handler = getattr(self, f"_op_{op}", None) if isinstance(op, str) and op.isalpha() else None
            if handler is None:
                raise _Refused("invalid", f"unknown op {op!r}")
            handler(conn, req)
        except _Refused as e:
            self._reply(conn, {"ok": False, "kind": e.kind, "error": e.message})
        except RuntimeFailure as e:
            self._reply(conn, {"ok": False, "kind": "failed", "error": e.message, "status": e.status})
        except (ValueError, KeyError, TypeError) as e:
            self._reply(conn, {"ok": False, "kind": "invalid", "error": f"bad request: {e}"})
        except OSError as e:
            self._reply(conn, {"ok": False, "kind": "failed", "error": str(e)})

    # ------------------------------------------------------------------ operations

    def _op_status(self, conn: Conn, req: dict) -> None:
        self._reply(conn, {"ok": True, "id": self.id, "pid": self.pid, "status": self.status,
                           "shimPid": os.getpid(), "startedAt": self.started_at,
                           "execs": [{"id": e.id, "pid": e.pid, "status": e.status}
                                     for e in self.execs.values()]})

    def _op_wait(self, conn: Conn, req: dict) -> None:
        exec_id = req.get("exec")
        if exec_id is None:
            if self.exit_status is not None and not self.mounted:
                self._reply(conn, {"ok": True, "status": self.exit_status, "exitedAt": self.exited_at})
            else:
                self.waiters.append(conn)
            return
        ex = self._exec(exec_id)
        if ex.status is not None:
            self._reply(conn, {"ok": True, "status": ex.status, "exitedAt": ex.exited_at})
        else:
            ex.waiters.append(conn)

    def _op_kill(self, conn: Conn, req: dict) -> None:
        signal = int(req["signal"])
        if req.get("exec") is not None:
            ex = self._exec(req["exec"])
            if ex.status is None:
                _kill(ex.pid, signal)
        elif req.get("all"):
            self.runc.kill(self.id, signal, all_processes=True)
        elif self.exit_status is None:
            _kill(self.pid, signal)
        self._reply(conn, {"ok": True})

    def _op_pause(self, conn: Conn, req: dict) -> None:
        self._running_only("pause")
        self.runc.pause(self.id)
        self.status = "paused"
        self._reply(conn, {"ok": True})

    def _op_resume(self, conn: Conn, req: dict) -> None:
        if self.status != "paused":
            raise _Refused("conflict", f"the task is {self.status}, not paused")
        self.runc.resume(self.id)
        self.status = "running"
        self._reply(conn, {"ok": True})

    def _running_only(self, what: str) -> None:
        if self.status != "running":
            raise _Refused("conflict", f"cannot {what} a task that is {self.status}")

    def _exec(self, exec_id: object) -> Exec:
        ex = self.execs.get(exec_id) if isinstance(exec_id, str) else None
        if ex is None:
            raise _Refused("not-found", f"exec {exec_id}: not found")
        return ex

    def _op_exec(self, conn: Conn, req: dict) -> None:
        """Starts another process in the task with ``runc exec -d``: it becomes our child, so we
        reap it and answer ``wait`` for it. Foreground stdio arrives as descriptors."""
        exec_id = req["exec"]
        if not isinstance(exec_id, str) or not exec_id or "/" in exec_id or exec_id.startswith("."):
            raise _Refused("invalid", f"exec id {exec_id!r}")
        self._running_only("exec in")
        old = self.execs.get(exec_id)
        if old is not None and old.status is None:
            raise _Refused("conflict", f"exec {exec_id}: already exists")
        fds, conn.fds = conn.fds, []
        terminal, detach = bool(req.get("terminal")), bool(req.get("detach"))
        ex = Exec(exec_id)
        process_file = os.path.join(self.dir, f"exec-{exec_id}.json")
        pid_file = os.path.join(self.dir, f"exec-{exec_id}.pid")
        console = None
        opened: list[int] = []
        try:
            with open(process_file, "w") as f:
                f.write(proto.dumps({**req["process"], "terminal": terminal}))
            if terminal:
                console = self._console_listener()
            if len(fds) == 3 and not detach:
                stdio = (fds[0], fds[1], fds[2])
            else:
                null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                opened.append(null)
                out = null
                if detach and self.cfg.get("log") and not terminal:
                    out = os.open(self.cfg["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
                    opened.append(out)
                stdio = (null, out, out)
            self.runc.exec_detached(self.id, process_file, pid_file, stdio,
                                    console.for_pid(os.getpid()) if console else None)
            with open(pid_file) as f:
                ex.pid = int(f.read().strip())
            master = self._receive_master(console) if console else -1
        except BaseException:
            if console is not None:
                self._console_sock.close()
                console.close()
            raise
        finally:
            for fd in fds + opened:
                os.close(fd)
            for path in (process_file, pid_file):
                _unlink(path)
        self.execs[exec_id] = ex
        self.exec_pids[ex.pid] = ex
        if ex.pid in self.reaped:  # it exited before we read its pid
            self._exec_exited(self.exec_pids.pop(ex.pid), self.reaped.pop(ex.pid))
        if master >= 0 and detach:
            ex.master = master
            os.set_blocking(master, False)
            ex.out = os.open(self.cfg["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640) \
                if self.cfg.get("log") else os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
            self.ep.register(master, IN)
            self._reply(conn, {"ok": True, "pid": ex.pid})
        elif master >= 0:
            self._reply(conn, {"ok": True, "pid": ex.pid}, (master,))
            os.close(master)
        else:
            self._reply(conn, {"ok": True, "pid": ex.pid})

    def _on_exec_tty(self, fd: int) -> None:
        for ex in self.execs.values():
            if ex.master == fd:
                if not self._copy_out(fd, ex.out):
                    self._close_exec_tty(ex)
                return
        self.ep.unregister(fd)

    def _close_exec_tty(self, ex: Exec) -> None:
        if ex.master >= 0:
            self.ep.unregister(ex.master)
            os.close(ex.master)
            os.close(ex.out)
            ex.master = ex.out = -1

    def _exec_exited(self, ex: Exec, status: int) -> None:
        ex.status, ex.exited_at = status, time.time()
        if ex.master >= 0:
            self._copy_out(ex.master, ex.out)
            self._close_exec_tty(ex)
        for conn in ex.waiters:
            self._reply(conn, {"ok": True, "status": status, "exitedAt": ex.exited_at})
        ex.waiters = []
        exited = [e for e in self.execs.values() if e.status is not None]
        for old in exited[:-EXITED_EXECS_KEPT]:
            del self.execs[old.id]

    # ------------------------------------------------------------------ exit

    def _finish(self) -> None:
        """The init has exited: release everything, record lastExit, answer the waiters."""
        if self.master >= 0:
            self._copy_out(self.master, self.out)
        try:
            self.runc.delete(self.id, force=True)
        except RuntimeFailure as e:
            self._log(f"runc delete {self.id}: {e.message}")
        self._drain_execs()
        self._teardown(delete=False)
        if self.cfg.get("recordExit", True):
            try:
                from dist_tool.shim import exits

                exits.record(self.cfg, self.exit_status, self.exited_at)  # type: ignore[arg-type]
            except Exception as e:  # noqa: BLE001 - a shim must still clean up; the log says why
                self._log(f"recording lastExit of {self.id}: {e.__class__.__name__}: {e}")
        for conn in self.waiters:
            self._reply(conn, {"ok": True, "status": self.exit_status, "exitedAt": self.exited_at})
        self.waiters = []
        for conn in list(self.conns.values()):
            self._drop(conn)
        self._remove_dir()

    def _drain_execs(self) -> None:
        """Exec'd processes die with the init's pid namespace (or ``runc delete --force``):
        reap them so their waiters get a status."""
        deadline = time.monotonic() + DRAIN_SECONDS
        while self.exec_pids and time.monotonic() < deadline:
            self._reap()
            if self.exec_pids:
                time.sleep(0.005)
        for pid, ex in list(self.exec_pids.items()):
            self._exec_exited(ex, 128 + SIGKILL)
            del self.exec_pids[pid]

    def _teardown(self, delete: bool) -> None:
        """Undoes ``start``: runtime state (if ``delete``), mount, terminal, socket."""
        if delete and self.status != "creating":
            try:
                self.runc.delete(self.id, force=True)
            except RuntimeFailure as e:
                self._log(f"runc delete {self.id}: {e.message}")
            if self.pid:
                try:
                    os.waitpid(self.pid, 0)
                except ChildProcessError:
                    pass
        if self.mounted:
            host.unmount_all(self.rootfs)
            self.mounted = False
        for ex in self.execs.values():
            self._close_exec_tty(ex)
        if self.master >= 0:
            try:
                self.ep.unregister(self.master)
            except OSError:
                pass
            os.close(self.master)
            self.master = -1
        if self.out >= 0 and (self.stdio is None or self.out != self.stdio[1]):
            os.close(self.out)
        self.out = -1
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def _remove_dir(self) -> None:
        import shutil

        if self.sock_path is not None:
            self.sock_path.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _restore_tty(self) -> None:
        if self._saved_tty is not None:
            import termios

            termios.tcsetattr(self.stdio[0], termios.TCSADRAIN, self._saved_tty)  # type: ignore[index]
            self._saved_tty = None

    def _log(self, message: str) -> None:
        """The shim's own diagnostics: stderr (a detached shim's is ``shim.log`` by the task log)."""
        try:
            os.write(2, f"dist-shim {self.id}: {message}\n".encode())
        except OSError:
            pass


class _Refused(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _accept(listener: _socket.socket) -> _socket.socket:
    """``socket.accept`` for a bare ``_socket.socket`` (the ``socket`` module costs a megabyte)."""
    fd, _ = listener._accept()
    sock = _socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    return sock


def _noop(signum: int, frame: object) -> None:
    pass


def _kill(pid: int, signal: int) -> None:
    try:
        os.kill(pid, signal)
    except ProcessLookupError:
        pass


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
