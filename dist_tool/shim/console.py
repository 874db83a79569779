"""A task's terminals, for the shim: the console socket on which the runtime hands over a pty
master (``runc --console-socket``), and copying to and from a terminal. Imported only by a shim
whose task or exec has a terminal, and by the CLI's end of an ``exec -t`` (``dist_tool.terminal``)."""

from __future__ import annotations

import _socket
import posix
import select

from dist_tool.shim import host, proto
from dist_tool.shim.runc import RuntimeFailure

TIOCSWINSZ, TIOCGWINSZ = 0x5414, 0x5413
RECEIVE_TIMEOUT = 10.0


class ConsoleSocket:
    """``TASKDIR/console.sock``, listening until the runtime has sent the pty master."""

    def __init__(self, task_dir: str) -> None:
        self.path = proto.ShortPath(task_dir, "console.sock")
        host.remove_file(self.path.path)
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
        self.sock.bind(self.path.path)
        self.sock.listen(1)

    def for_pid(self, pid: int) -> str:
        return self.path.for_pid(pid)

    def receive_master(self) -> int:
        """The pty master the runtime sent (SCM_RIGHTS); the socket is closed either way."""
        try:
            self.sock.settimeout(RECEIVE_TIMEOUT)
            conn = host.accept(self.sock)
            try:
                conn.settimeout(RECEIVE_TIMEOUT)
                _, ancdata, _, _ = conn.recvmsg(4096, _socket.CMSG_SPACE(4))
            finally:
                conn.close()
        finally:
            self.close()
        for level, kind, payload in ancdata:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                master = int.from_bytes(payload[:4], "little")
                posix.set_inheritable(master, False)
                return master
        raise RuntimeFailure("the runtime sent no terminal")

    def close(self) -> None:
        self.sock.close()
        host.remove_file(self.path.path)
        self.path.close()


def copy_out(master: int, out: int) -> bool:
    """Copies what the terminal has; False once it is closed (the process exited)."""
    while True:
        try:
            data = posix.read(master, 65536)
        except BlockingIOError:
            return True
        except OSError:  # EIO: every slave end is closed
            return False
        if not data:
            return False
        write_all(out, data)


EOT = b"\x04"  # ^D: end of input for the terminal's reader, as script(1) sends it


def end_of_input(last: bytes) -> bytes:
    """What tells a terminal's reader its input has ended, after ``last`` was the last byte it
    took: ^D at the start of a line; else twice, as the first only ends the partial line."""
    return EOT if last == b"\n" else EOT + EOT


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[posix.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [], 1.0)


def copy_size(sources: tuple[int, ...], master: int) -> None:
    """The window size of the first of ``sources`` that is a terminal, onto ``master``."""
    import fcntl

    for fd in sources:
        try:
            size = fcntl.ioctl(fd, TIOCGWINSZ, b"\0" * 8)
        except OSError:
            continue
        fcntl.ioctl(master, TIOCSWINSZ, size)
        return


def open_output(log: str | None) -> int:
    """Where a detached terminal's output goes: the task's log, or nowhere."""
    if log:
        return host.open_log(log)
    return posix.open("/dev/null", posix.O_WRONLY | posix.O_CLOEXEC)

