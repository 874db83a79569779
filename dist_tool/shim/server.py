"""The shim: it supervises one task from ``runc create`` to the removal of its state.

Lifecycle (``start`` then ``serve``; the same code runs in a detached shim
process, ``python -m dist_tool.shim``, and inside a foreground ``dist run``):

1. become a child subreaper, so the task's init is our child once ``runc
   create`` exits (and exec'd processes once ``runc exec -d`` exits);
2. listen on ``shim.sock`` and ``runc create`` on ``rootfs/``, which the CLI
   mounted (stdio inherited, or a console socket for a terminal), ``runc start``;
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
import posix
import select
import time

from dist_tool.shim import host, proto
from dist_tool.shim.proto import Refused
from dist_tool.shim.runc import Runc, RuntimeFailure, read_pid_file

TYPE_CHECKING = False  # not typing's: typing imports re and enum, a megabyte a shim cannot spare
if TYPE_CHECKING:
    from dist_tool.shim.execs import Exec, Execs

SIGCHLD, SIGWINCH = _signal.SIGCHLD, _signal.SIGWINCH
# A foreground task gets the signals its CLI gets (docker's --sig-proxy); SIGCHLD and SIGWINCH
# are the shim's own.
FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT, _signal.SIGUSR1,
             _signal.SIGUSR2)
IN = select.EPOLLIN
OUT = select.EPOLLOUT


class Conn:
    __slots__ = ("sock", "buf", "fds")

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.fds: list[int] = []


class Shim:
    """Supervises one task. ``cfg`` (written by ``dist_tool.tasks``) holds: ``id``, ``namespace``,
    ``root`` (the store), ``dir`` (task directory = bundle), ``runtime``, ``runcRoot``,
    ``mounts`` (the snapshot's, which the CLI mounts), ``terminal``, ``detached``, ``log`` (detached output),
    ``recordExit``, ``syspath`` (for the exit path's imports)."""

    def __init__(self, cfg: dict, stdio: tuple[int, int, int] | None = None) -> None:
        self.cfg = cfg
        self.id: str = cfg["id"]
        self.dir: str = cfg["dir"]
        self.rootfs = f"{self.dir}/rootfs"
        self.runc = Runc(cfg["runtime"], cfg["runcRoot"], f"{self.dir}/runc.log")
        self.stdio = stdio  # foreground: the CLI's own descriptors, passed to the init as they are
        self.detached: bool = cfg.get("detached", False)
        self.terminal: bool = cfg.get("terminal", False)
        self.status = "creating"
        self.pid = 0
        self.started_at: float | None = None
        self.exit_status: int | None = None
        self.exited_at: float | None = None
        self.waiters: list[Conn] = []
        self.execs: Execs | None = None  # dist_tool.shim.execs, loaded on the first exec
        self.conns: dict[int, Conn] = {}
        self.ep = select.epoll()
        self.reaped: dict[int, int] = {}  # pid → status of children reaped before we knew them
        self.master = -1  # the init's terminal
        self.out = -1  # where a terminal's output goes
        self.tty_in = -1  # foreground terminal input (our stdin)
        self.file_in = -1  # ... when it is a regular file or /dev/null, which epoll cannot watch
        self.pending_in = b""  # read from file_in, not yet taken by the terminal
        self.last_in = b"\n"  # the last byte the terminal took: ^D ends a line first, then the input
        # rootfs/ is mounted by the CLI before any shim exists (tasks._mount_checked), so a running
        # shim never loads ctypes to mount; whatever happens from here on, teardown unmounts it.
        self.mounted = True
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
        console = None
        if self.terminal:
            from dist_tool.shim.console import ConsoleSocket

            console = ConsoleSocket(self.dir)
        stdio, opened = self._init_stdio()
        pid_file = f"{self.dir}/init.pid"
        try:
            for retry in (False, True):
                try:
                    if console is None:  # nothing to do between create and start: one runtime call
                        self.runc.run_detached(self.id, self.dir, pid_file, stdio)
                    else:
                        self.runc.create(self.id, self.dir, pid_file, stdio, console.for_pid(posix.getpid()))
                    break
                except RuntimeFailure as e:
                    if retry or not self._removed_stale_state(e):
                        raise
        finally:
            for fd in opened:
                posix.close(fd)
        self.pid = read_pid_file(pid_file)
        if console is not None:
            self.status = "created"
            self.master = console.receive_master()
            self._setup_terminal()  # sized before the process runs
            self.runc.start(self.id)
        self.status = "running"
        self.started_at = time.time()

    def _removed_stale_state(self, failure: RuntimeFailure) -> bool:
        """Whether the runtime refused the ID for a stopped container of an earlier task, and
        that state is now deleted. Only there when the runtime failed the delete at that task's
        end: every later start of the container failed "container with given ID already exists".
        We hold the task's claim, so no live task of ours has this ID; a stopped one runs nothing.
        Looked at only on that failure, so a start costs no runtime call more."""
        if "already exists" not in failure.message:
            return False
        state = self.runc.state(self.id)
        if state is None or state.get("status") != "stopped":
            return False
        self.runc.delete(self.id, force=False)
        return True

    def _init_stdio(self) -> tuple[tuple[int, int, int], list[int]]:
        """The init's stdio and the descriptors we opened for it (closed once it has them)."""
        if self.stdio is not None and not self.cfg.get("nullIO"):
            return self.stdio, []
        null = posix.open("/dev/null", posix.O_RDWR | posix.O_CLOEXEC)
        if self.detached and self.cfg.get("log") and not self.terminal and not self.cfg.get("nullIO"):
            log = host.open_log(self.cfg["log"])
            return (null, log, log), [null, log]
        return (null, null, null), [null]

    # ------------------------------------------------------------------ signals

    def _setup_signals(self) -> None:
        self._wake_r, self._wake_w = posix.pipe2(posix.O_NONBLOCK | posix.O_CLOEXEC)
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
        posix.close(self._wake_r)
        posix.close(self._wake_w)
        self._wake_r = self._wake_w = -1

    def _on_signals(self) -> None:
        try:
            data = posix.read(self._wake_r, 256)
        except BlockingIOError:
            return
        for sig in set(data):
            if sig == SIGCHLD:
                self.reap()
            elif sig == SIGWINCH:
                self._resize()
            elif self.pid and self.exit_status is None:
                _kill(self.pid, sig)

    def reap(self) -> None:
        while True:
            try:
                pid, wait_status = posix.waitpid(-1, posix.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            status = host.exit_status(wait_status)
            if pid == self.pid:
                self.exit_status, self.exited_at = status, time.time()
                self.status = "stopped"
            elif self.execs is None or not self.execs.reaped(pid, status):
                self.reaped[pid] = status

    # ------------------------------------------------------------------ terminal

    def _setup_terminal(self) -> None:
        """Foreground: our terminal in raw mode, copied both ways. Detached: output to the log."""
        from dist_tool.shim.console import open_output

        posix.set_blocking(self.master, False)
        if self.detached or self.stdio is None or self.cfg.get("nullIO"):
            # --null-io: no log then, so nowhere, as without -t; not the CLI's own stdout
            self.out = open_output(self.cfg.get("log"))
        else:
            self.out = self.stdio[1]
            if posix.isatty(self.stdio[0]):
                import termios
                import tty

                self.tty_in = self.stdio[0]
                self._saved_tty = termios.tcgetattr(self.tty_in)
                tty.setraw(self.tty_in)
                self.ep.register(self.tty_in, IN)
            elif not self.cfg.get("nullIO"):
                try:
                    self.ep.register(self.stdio[0], IN)
                    self.tty_in = self.stdio[0]
                except PermissionError:  # a regular file or /dev/null: fed as the terminal takes it
                    self.file_in = self.stdio[0]
            self._resize()
        self.ep.register(self.master, IN | (OUT if self.file_in >= 0 else 0))

    def _resize(self) -> None:
        if self.master < 0 or self.stdio is None:
            return
        from dist_tool.shim.console import copy_size

        copy_size(self.stdio, self.master)

    def _copy_out(self) -> bool:
        """Copies the terminal's output; False once the terminal is closed."""
        from dist_tool.shim.console import copy_out

        try:
            return copy_out(self.master, self.out)
        except BrokenPipeError:
            self._output_gone()
            return True

    def _on_terminal_output(self) -> None:
        if not self._copy_out() and self.master >= 0:
            self._close_master()

    def _output_gone(self) -> None:
        """Our output's reader left (``run -t … | head -1``): the terminal hangs up, as a closed
        terminal window's does. Its processes' writes fail (EIO) and its reads see the end, where
        without a terminal the writer would have met EPIPE; SIGPIPE or SIGHUP cannot stand in,
        since a container's init ignores signals it has no handler for. We still serve until
        the init exits."""
        if self.stdio is None or self.out != self.stdio[1]:
            posix.close(self.out)
        self.out = posix.open("/dev/null", posix.O_WRONLY | posix.O_CLOEXEC)
        if self.master >= 0 and self.exit_status is None:
            self._close_master()

    def _close_master(self) -> None:
        """Closes our end of the terminal (the other end's readers see the end, its writers EIO);
        the input we copied to it has nowhere to go."""
        self.ep.unregister(self.master)
        posix.close(self.master)
        self.master = -1
        if self.tty_in >= 0:
            self.ep.unregister(self.tty_in)
        self.tty_in = self.file_in = -1

    def _copy_in(self) -> None:
        try:
            data = posix.read(self.tty_in, 65536)
        except OSError:
            data = b""
        if not data:
            self.ep.unregister(self.tty_in)
            self.tty_in = -1
            if self._saved_tty is None:  # a pipe, not our terminal: its end is the reader's end of input
                self._end_input()
            return
        from dist_tool.shim.console import write_all

        try:
            write_all(self.master, data)
            self.last_in = data[-1:]
        except OSError:
            pass

    def _feed_in(self) -> None:
        """The terminal can take more: the next piece of a file stdin, or at its end, ^D."""
        if not self.pending_in:
            try:
                self.pending_in = posix.read(self.file_in, 65536)
            except OSError:
                self.pending_in = b""
            if not self.pending_in:
                self.file_in = -1
                self.ep.modify(self.master, IN)
                self._end_input()
                return
        try:
            taken = posix.write(self.master, self.pending_in)
        except BlockingIOError:
            return
        except OSError:  # the terminal is gone: nobody reads the rest
            self.pending_in, self.file_in = b"", -1
            self.ep.modify(self.master, IN)
            return
        self.last_in = self.pending_in[taken - 1:taken] if taken else self.last_in
        self.pending_in = self.pending_in[taken:]

    def _end_input(self) -> None:
        from dist_tool.shim.console import end_of_input  # loaded already: a terminal task's

        try:
            posix.write(self.master, end_of_input(self.last_in))
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
                if mask & OUT:
                    self._feed_in()
                if mask & ~OUT:
                    self._on_terminal_output()
            elif fd == self.tty_in:
                self._copy_in()
            elif fd in self.conns:
                self._on_conn(self.conns[fd], mask)
            elif self.execs is None or not self.execs.on_tty(fd):
                try:
                    self.ep.unregister(fd)
                except OSError:  # closed earlier in this batch (an exec's terminal when it exited)
                    pass

    def _accept(self) -> None:
        while True:
            try:
                sock = host.accept(self.listener)  # type: ignore[arg-type]
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
            posix.close(other)
        conn.fds = []
        conn.sock.close()
        if conn in self.waiters:
            self.waiters.remove(conn)
        if self.execs is not None:
            self.execs.forget(conn)

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
                    posix.set_inheritable(fd, False)
                    conn.fds.append(fd)
        if not data:
            self._drop(conn)
            return
        conn.buf += data
        while b"\n" in conn.buf:
            line, _, conn.buf = conn.buf.partition(b"\n")
            self._request(conn, line)
        if len(conn.buf) > proto.MAX_LINE:
            self.reply(conn, {"ok": False, "kind": "invalid", "error": "request too long"})
            self._drop(conn)

    def reply(self, conn: Conn, message: dict, fds: tuple[int, ...] = ()) -> None:
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
                raise Refused("invalid", f"protocol version {req.get('v')} (this shim speaks {proto.VERSION})")
            op = req.get("op")
            handler = getattr(self, f"_op_{op}", None) if isinstance(op, str) and op.isalpha() else None
            if handler is None:
                raise Refused("invalid", f"unknown op {op!r}")
            handler(conn, req)
        except Refused as e:
            self.reply(conn, {"ok": False, "kind": e.kind, "error": e.message})
        except RuntimeFailure as e:
            reply = {"ok": False, "kind": "failed", "error": e.message}
            if req.get("op") == "exec":
                # Only an exec's failure is a process's that could not start (proto): a status
                # makes the CLI exit with it (125/126/127), where a failed pause or kill is 1.
                reply["status"] = e.status
            self.reply(conn, reply)
        except (ValueError, KeyError, TypeError) as e:
            self.reply(conn, {"ok": False, "kind": "invalid", "error": f"bad request: {e}"})
        except OSError as e:
            self.reply(conn, {"ok": False, "kind": "failed", "error": str(e)})

    # ------------------------------------------------------------------ operations

    def _op_status(self, conn: Conn, req: dict) -> None:
        self.reply(conn, {"ok": True, "id": self.id, "pid": self.pid, "status": self.status,
                           "shimPid": posix.getpid(), "startedAt": self.started_at,
                           "execs": self.execs.summary() if self.execs is not None else []})

    def _op_wait(self, conn: Conn, req: dict) -> None:
        exec_id = req.get("exec")
        if exec_id is None:
            if self.exit_status is not None and not self.mounted:
                self.reply(conn, {"ok": True, "status": self.exit_status, "exitedAt": self.exited_at})
            else:
                self.waiters.append(conn)
            return
        ex = self._exec(exec_id)
        if ex.status is not None:
            self.reply(conn, {"ok": True, "status": ex.status, "exitedAt": ex.exited_at})
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
        elif self.exit_status is None and self.status == "paused":
            # Frozen (cgroup v1): a signal would wait for the resume. runc thaws for SIGKILL.
            self.runc.kill(self.id, signal)
        elif self.exit_status is None:
            _kill(self.pid, signal)
        self.reply(conn, {"ok": True})

    def _op_pause(self, conn: Conn, req: dict) -> None:
        self.running_only("pause")
        self.runc.pause(self.id)
        self.status = "paused"
        self.reply(conn, {"ok": True})

    def _op_resume(self, conn: Conn, req: dict) -> None:
        if self.status != "paused":
            raise Refused("conflict", f"the task is {self.status}, not paused")
        self.runc.resume(self.id)
        self.status = "running"
        self.reply(conn, {"ok": True})

    def running_only(self, what: str) -> None:
        if self.status != "running":
            raise Refused("conflict", f"cannot {what} a task that is {self.status}")

    def _exec(self, exec_id: object) -> Exec:
        if self.execs is None:
            raise Refused("not-found", f"exec {exec_id}: not found")
        return self.execs.get(exec_id)

    def _op_exec(self, conn: Conn, req: dict) -> None:
        """Starts another process in the task (``dist_tool.shim.execs``)."""
        if self.execs is None:
            from dist_tool.shim.execs import Execs

            self.execs = Execs(self)
        self.execs.start(conn, req)

    # ------------------------------------------------------------------ exit

    def _finish(self) -> None:
        """The init has exited: release everything, record lastExit, answer the waiters."""
        self._note_exit()
        if self.master >= 0:
            self._copy_out()
        try:
            self.runc.delete(self.id, force=True)
        except RuntimeFailure as e:
            self._log(f"runc delete {self.id}: {e.message}")
        if self.execs is not None:
            self.execs.drain()
        self._teardown(delete=False)
        if self.cfg.get("recordExit", True):
            try:
                from dist_tool.shim import exits

                exits.record_or_keep(self.cfg, self.exit_status, self.exited_at)  # type: ignore[arg-type]
            except Exception as e:  # noqa: BLE001 - a shim must still clean up; the log says why
                self._log(f"recording lastExit of {self.id}: {e.__class__.__name__}: {e}")
        for conn in self.waiters:
            self.reply(conn, {"ok": True, "status": self.exit_status, "exitedAt": self.exited_at})
        self.waiters = []
        for conn in list(self.conns.values()):
            self._drop(conn)
        self._remove_dir()

    def _note_exit(self) -> None:
        """``exit``: the status, before anything is released, so that a command cleaning up after
        this shim (killed from here on) records it rather than "nobody saw it exit" (255)."""
        tmp = f"{self.dir}/.exit"
        try:
            with open(tmp, "w") as f:
                f.write(f"{self.exit_status} {self.exited_at!r}\n")
            posix.rename(tmp, f"{self.dir}/exit")
        except OSError as e:
            self._log(f"noting the exit of {self.id}: {e}")

    def _teardown(self, delete: bool) -> None:
        """Undoes ``start``: runtime state (if ``delete``), mount, terminal, socket."""
        if delete and self.status != "creating":
            try:
                self.runc.delete(self.id, force=True)
            except RuntimeFailure as e:
                self._log(f"runc delete {self.id}: {e.message}")
            if self.pid:
                try:
                    posix.waitpid(self.pid, 0)
                except ChildProcessError:
                    pass
        if self.mounted:
            host.unmount_all(self.rootfs)
            self.mounted = False
        if self.execs is not None:
            self.execs.close_ttys()
        if self.master >= 0:
            try:
                self.ep.unregister(self.master)
            except OSError:
                pass
            posix.close(self.master)
            self.master = -1
        if self.out >= 0 and (self.stdio is None or self.out != self.stdio[1]):
            posix.close(self.out)
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
            posix.write(2, f"dist-shim {self.id}: {message}\n".encode())
        except OSError:
            pass


def _noop(signum: int, frame: object) -> None:
    pass


def _kill(pid: int, signal: int) -> None:
    try:
        posix.kill(pid, signal)
    except ProcessLookupError:
        pass
