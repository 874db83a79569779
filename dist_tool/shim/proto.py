"""The shim's socket protocol, version 1: line-delimited JSON over ``TASKDIR/shim.sock``.

A request is one JSON object on one line, ``{"v": 1, "op": OP, ...}``; each
gets one reply line, ``{"v": 1, "ok": true, ...}`` or ``{"v": 1, "ok": false,
"kind": KIND, "error": MESSAGE}`` where KIND is an ``errors.py`` kind
(``not-found``, ``conflict``, ``invalid``, ``failed``). One connection may
carry several requests, answered in order.

=========  ==================================================  ==========================================
op         request fields                                      reply fields
=========  ==================================================  ==========================================
status                                                         id, pid, status, shimPid, startedAt, execs
wait       exec? (an exec ID; else the init process)           status, exitedAt — sent when it has exited
kill       signal, all?, exec?                                 (none)
pause
resume
exec       exec, process (OCI process), detach?, terminal?     pid; ``status`` set when it failed to start
           + SCM_RIGHTS: stdin, stdout, stderr unless detach   + SCM_RIGHTS: the pty master with terminal
=========  ==================================================  ==========================================

``status`` is ``created``, ``running``, ``paused`` or ``stopped`` (the init has
exited and the shim is cleaning up). A ``wait`` on an exited exec answers at
once while the shim lives. Unix socket paths are limited to 107 bytes, so a
long task directory is reached through ``/proc/self/fd/N/shim.sock``.
"""

from __future__ import annotations

import _json
import posix

VERSION = 1
MAX_LINE = 1 << 20  # a request bigger than this is refused: the shim's memory stays bounded
UNIX_PATH_MAX = 100


class _Decoding:
    """What ``_json``'s C scanner reads from its context: standard JSON, all of it in C.
    (The ``json`` package would import ``re`` and ``enum``: a megabyte more per shim.)"""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = float  # NaN, Infinity, -Infinity
    memo: dict = {}


_scan = _json.make_scanner(_Decoding())
_encoder = _json.make_encoder(None, None, _json.encode_basestring_ascii, None, ":", ",", False, False, False)


def dumps(value: object) -> str:
    """Compact JSON of ``value`` (dicts, lists, strings, numbers, booleans, None)."""
    return "".join(_encoder(value, 0))


def loads(text: str | bytes) -> object:
    """One JSON document; ValueError when ``text`` is not exactly that."""
    if isinstance(text, bytes | bytearray):
        text = text.decode()
    text = text.strip()
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("not a JSON document") from None
    if end != len(text):
        raise ValueError(f"extra data after JSON at {end}")
    return value


def encode(message: dict) -> bytes:
    return dumps({"v": VERSION, **message}).encode() + b"\n"


def decode(line: bytes) -> dict:
    message = loads(line)
    if not isinstance(message, dict):
        raise ValueError("a request is a JSON object")
    return message


class Refused(Exception):
    """A request the shim answers with ``ok: false`` and a ``kind`` (see the module docstring)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class ShortPath:
    """A unix socket path under ``directory`` short enough for sockaddr_un: the path itself,
    or ``/proc/self/fd/N/NAME`` through an open descriptor of the directory."""

    def __init__(self, directory: str, name: str) -> None:
        self.fd = -1
        full = f"{directory}/{name}"
        if len(full.encode()) <= UNIX_PATH_MAX:
            self.path = full
        else:
            self.fd = posix.open(directory, posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
            self.path = f"/proc/self/fd/{self.fd}/{name}"

    def for_pid(self, pid: int) -> str:
        """The same path as another process (the runtime) sees it."""
        return self.path if self.fd < 0 else f"/proc/{pid}/fd/{self.fd}/{self.path.rpartition('/')[2]}"

    def close(self) -> None:
        if self.fd >= 0:
            posix.close(self.fd)
            self.fd = -1


class Client:
    """The CLI's side of one connection to a shim (blocking, with a timeout per call)."""

    def __init__(self, task_dir: str, timeout: float | None = 10.0) -> None:
        import socket

        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._sock.settimeout(timeout)
        path = ShortPath(task_dir, "shim.sock")
        try:
            self._sock.connect(path.path)
        except OSError:
            self._sock.close()
            raise
        finally:
            path.close()
        self._buf = b""
        self.fds: list[int] = []  # descriptors the last reply carried

    def fileno(self) -> int:
        return self._sock.fileno()

    def settimeout(self, timeout: float | None) -> None:
        self._sock.settimeout(timeout)

    def send(self, message: dict, fds: list[int] | tuple[int, ...] = ()) -> None:
        import array
        import socket

        data = encode(message)
        if fds:
            # sendmsg sends what the socket's buffer takes (a request bigger than ~200 KiB: an
            # exec's long arguments or environment); the descriptors go with its first part.
            data = data[self._sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                      array.array("i", fds))]):]
        if data:
            self._sock.sendall(data)

    def receive(self) -> dict:
        """The next reply; ConnectionError if the shim went away first."""
        import array
        import socket

        while b"\n" not in self._buf:
            fds = array.array("i")
            data, ancdata, _, _ = self._sock.recvmsg(65536, socket.CMSG_SPACE(4 * fds.itemsize))
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                    self.fds.extend(fds)
            if not data:
                raise ConnectionError("the shim closed the connection")
            self._buf += data
        line, _, self._buf = self._buf.partition(b"\n")
        return decode(line)

    def call(self, message: dict, fds: list[int] | tuple[int, ...] = ()) -> dict:
        self.send(message, fds)
        return self.receive()

    def close(self) -> None:
        for fd in self.fds:
            try:
                posix.close(fd)
            except OSError:
                pass
        self.fds = []
        self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
