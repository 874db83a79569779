"""``dist serve``: the store's images, content, containers and leases over HTTP/JSON.

The standard library's ``ThreadingHTTPServer`` (one thread per client
connection, HTTP/1.1 keep-alive) on a unix socket or a TCP port. Each
connection gets its own local stores (one Session per namespace, built by the
``make_session`` the command passes in), because a Session's metadata
connection serves one thread at a time; every request is then one call on
those stores, so it is as atomic as the same call made locally.

A dropped connection never leaves a half-written record or blob: records are
written by one store call after the whole JSON body arrived, and an upload
streams into an ingest that is committed only after the terminating chunk
(and the size and digest checks); a cut stream leaves at most an ingest that
the same ref resumes or that ``gc`` removes. The routes are in
``dist_tool.remote.routes`` and listed in README ("dist serve").
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import json
import os
import re
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

from dist_tool.errors import DataError, DistError, InvalidArgument, NotFound
from dist_tool.remote import wire
from dist_tool.remote.routes import ROUTES
from dist_tool.store.limits import COPY_CHUNK
from dist_tool.validate import decimal, identifier

# A record, never a blob: the largest is a container whose spec took an image config's Env and
# labels (configs are at most 8 MiB, MAX_CONFIG_BYTES). Parsing costs about 6 bytes per byte.
MAX_JSON_BODY = 16 * 1024 * 1024
MAX_TRAILERS = 16  # an upload's trailer carries the abort flag; http.server caps headers at 100
REQUEST_TIMEOUT = 60.0  # seconds a client may take to send a request line or a header
TRANSFER_TIMEOUT = 3600.0  # seconds an authorized blob upload or download may stall (a slow pipe)
STOP_GRACE = 10.0  # seconds a stopping server waits for requests in progress (docker stop's default)
POLL_INTERVAL = 0.2  # how soon a stop request is noticed
STALLED_HEAD = 10.0  # seconds idle or mid-head after which a full server takes a connection's slot back
MAX_CONNECTIONS = 512  # served at once; more wait in the listen queue until one ends
DESCRIPTORS_PER_CONNECTION = 8  # its socket and its Session's database files, with room to spare
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_REFUSALS = {  # http.server's limits, in the words a client's user can act on
    414: "its line is longer than 65536 bytes (too long a filter or name to send)",
    431: "a header is longer than 65536 bytes, or there are more than 100",
    501: "no route has this method in API v1",
}


class _Dropped(Exception):
    """The client went away in the middle of its request body."""


class _Aborted(Exception):
    """The client's own source failed while it uploaded (the ``Dist-Abort`` trailer)."""


class ChunkedBody:
    """Reads a ``Transfer-Encoding: chunked`` body; a premature end raises, never looks like EOF."""

    def __init__(self, rfile) -> None:
        self.rfile = rfile
        self.left = 0
        self.done = False
        self.trailers: dict[str, str] = {}

    def _line(self) -> bytes:
        line = self.rfile.readline(65537)
        if not line.endswith(b"\n"):
            raise _Dropped
        return line.rstrip(b"\r\n")

    def read(self, n: int = -1) -> bytes:
        if self.done:
            return b""
        if self.left == 0:
            size = self._line().split(b";")[0].strip()
            if not size or not _HEX.fullmatch(size):  # int() would take "-1", "+1" or "1_0"
                raise _Dropped
            self.left = int(size, 16)
            if self.left == 0:
                while line := self._line():
                    if len(self.trailers) >= MAX_TRAILERS:
                        raise _Dropped
                    key, _, value = line.decode("latin-1").partition(":")
                    self.trailers[key.strip().lower()] = value.strip()
                self.done = True
                if wire.ABORT_TRAILER.lower() in self.trailers:
                    raise _Aborted
                return b""
        want = self.left if n is None or n < 0 else min(n, self.left)
        data = self.rfile.read(want)
        if len(data) < want:
            raise _Dropped
        self.left -= len(data)
        if self.left == 0 and self.rfile.read(2) != b"\r\n":
            raise _Dropped
        return data


_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")  # then decimal(): digits int() reads, as many as it reads


def parse_range(ranged: str, size: int) -> tuple[int, int] | None:
    """The first and last byte of a blob of ``size`` bytes that a client's ``Range`` header asks
    for: ``bytes=START-``, ``bytes=START-END`` (an END past the blob is its last byte) or
    ``bytes=-SUFFIX`` (the last SUFFIX bytes). None when it starts past the blob (RFC 9110
    15.5.17: unsatisfiable, as any range of an empty blob is)."""
    m = _RANGE.fullmatch(ranged.strip())
    first, last = (m.group(1), m.group(2)) if m else ("", "")
    if not first and not last:
        raise InvalidArgument("range", ranged, "expected bytes=START-[END]")
    # None for "", and for more digits than int reads: a number past any blob's size, so a START
    # that long is unsatisfiable, an END that long the blob's end and a SUFFIX that long all of it.
    start, end = decimal(first), decimal(last)
    if first:
        if start is None:
            return None
        end = size - 1 if end is None else min(end, size - 1)
    else:
        start, end = (0 if end is None else max(0, size - end)), size - 1
    if start >= size:
        return None
    if end < start:
        raise InvalidArgument("range", ranged, "ends before it starts")
    return start, end


# ---------------------------------------------------------------- the server


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A client that stops sending (a half-sent request, an idle connection) is dropped, so it
    # cannot hold a thread and a descriptor for ever; the token is only checked once a request
    # is complete.
    timeout = REQUEST_TIMEOUT
    server: _Serving

    def setup(self) -> None:
        super().setup()
        self.current: tuple[str, object] | None = None  # (namespace, Session) of the last request
        self.busy = False  # between a request line and the end of its answer
        self.waiting_since: float | None = None  # since when it waits for, or reads, a request's head
        self.evicted = False  # hung up for stalling while the server was full: its request is not run
        self.server.track(self)

    def finish(self) -> None:
        self.server.untrack(self)
        try:
            super().finish()
        finally:
            self._close_session()

    def parse_request(self) -> bool:
        # Called once a request line has arrived: from here on a stopping server lets it finish.
        if not self.server.begin(self):
            self.close_connection = True  # arrived as the server stopped: not read, not answered
            return False
        parsed = super().parse_request()  # reads the headers
        if self.evicted:  # its head was cut short by the hang-up: never run half a request
            self.close_connection = True
            return False
        self.waiting_since = None
        return parsed

    def handle_one_request(self) -> None:
        self.waiting_since = time.monotonic()
        try:
            super().handle_one_request()
        except ConnectionError:  # reset while waiting for its next request: gone, not a server error
            self.close_connection = True
        finally:
            self.server.end(self)
            self.connection.settimeout(self.timeout)  # back to REQUEST_TIMEOUT after a transfer

    def transferring(self) -> None:
        """A blob moves at the pace of the client's pipe (``producer | dist content ingest``,
        ``dist content get D | consumer``), which may pause for longer than a request may take:
        an authorized transfer gets TRANSFER_TIMEOUT per read or write instead."""
        self.connection.settimeout(TRANSFER_TIMEOUT)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (a request line or header too long, a method no route has)
        in the JSON every other error travels in: its HTML page reached the client as "dist serve:
        HTTP 414", which named neither the request nor what was wrong with it."""
        from http import HTTPStatus

        why = _REFUSALS.get(code) or message or HTTPStatus(code).phrase
        data = json.dumps(wire.error_body(InvalidArgument("request", "", why))).encode()
        self.log_error("code %d, message %s", code, message)
        self.send_response(code, message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers_closing(True)  # what follows a refused head cannot be told from a request
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        if self.server.debug:
            sys.stderr.write(f"dist serve: {format % args}\n")

    def peer_pid(self) -> int | None:
        """The client's pid in this server's pid namespace, on a unix socket (0 from the kernel:
        not visible here); None over TCP."""
        if self.server.address_family != socket.AF_UNIX:
            return None
        import struct

        creds = self.connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid = struct.unpack("3i", creds)[0]
        return pid or None

    def session(self):
        """The request's namespace's Session. A connection keeps one open (clients use one
        namespace per connection): one that switched namespace with every request kept a Session,
        and its descriptors, per namespace until the server ran out of them."""
        ns = self.headers.get(wire.NAMESPACE_HEADER) or "default"
        if self.current is None or self.current[0] != ns:
            identifier("namespace", ns)
            self._close_session()
            self.current = (ns, self.server.make_session(ns))
        return self.current[1]

    def _close_session(self) -> None:
        if self.current is not None:
            _, session = self.current
            self.current = None
            session.close()

    # -------------------------------------------------------------- requests

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def do_PATCH(self) -> None:
        self.dispatch("PATCH")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    def dispatch(self, method: str) -> None:
        self._body_read = not (self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding"))
        self._replied = False
        path, _, query = self.path.partition("?")
        try:
            self._check_framing()
            if not self.authorized():
                self.close_connection = True
                self.reply(401, {"error": {"kind": "failed", "what": "dist serve", "which": "",
                                           "why": "unauthorized: missing or wrong token"}})
                return
            for m, pattern, fn in ROUTES:
                match = pattern.match(path)
                if match and m == method:
                    args = {k: unquote(v) for k, v in match.groupdict().items()}
                    fn(self, self.session(), parse_qs(query), **args)
                    return
            raise NotFound("route", f"{method} {path}", "no such route in API v1")
        except _Aborted:
            self.fail(DataError("upload", "", "the client's source failed; nothing was committed"))
        except (_Dropped, ConnectionError, TimeoutError):
            self.close_connection = True  # the store is as the store calls left it: nothing half-done
        except DistError as e:
            self.fail(e)
        except Exception as e:  # noqa: BLE001 - a server thread reports, and keeps serving the others
            if self.server.debug:
                import traceback

                traceback.print_exc()
            self.fail(DistError("dist serve", "", f"internal error: {e.__class__.__name__}: {e}"))

    def _check_framing(self) -> None:
        """One way to tell where the body ends. With both headers, a proxy that went by the other
        one would see a different next request (RFC 9112 6.3 lets a server refuse them)."""
        lengths = self.headers.get_all("Content-Length") or []
        encodings = self.headers.get_all("Transfer-Encoding") or []
        if len(lengths) > 1 or len(encodings) > 1:  # which one counts is for the reader to guess
            raise InvalidArgument("request", "", "has more than one Content-Length or Transfer-Encoding")
        if not encodings:
            return
        if lengths:
            raise InvalidArgument("request", "", "has both Transfer-Encoding and Content-Length")
        if not self._is_chunked():
            raise InvalidArgument("request", "", f"Transfer-Encoding {encodings[0]!r}: only chunked is understood")

    def _is_chunked(self) -> bool:
        return (self.headers.get("Transfer-Encoding") or "").strip().lower() == "chunked"

    def authorized(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        scheme, _, credentials = given.partition(" ")
        # RFC 7235: the scheme is case-insensitive ("bearer" is as good as "Bearer")
        return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode())

    def fail(self, e: DistError) -> None:
        if self._replied:
            self.close_connection = True
            return
        if not self._body_read:
            self.close_connection = True  # an unread body would be taken for the next request
        self.reply(wire.STATUS.get(e.kind, 500), wire.error_body(e))

    # -------------------------------------------------------------- bodies

    def body(self) -> dict:
        if self.headers.get("Transfer-Encoding") is not None:  # left unread, it would pass for a request
            raise InvalidArgument("request body", "", "JSON bodies are sent with Content-Length")
        raw_length = self.headers.get("Content-Length") or "0"
        length = decimal(raw_length)
        if length is None:
            raise InvalidArgument("request body", "", f"Content-Length {raw_length!r} is not a size")
        if length > MAX_JSON_BODY:
            raise InvalidArgument("request body", "", f"larger than {MAX_JSON_BODY} bytes")
        data = self.rfile.read(length)
        if len(data) < length:
            raise _Dropped
        self._body_read = True
        try:
            doc = json.loads(data) if data else {}
        except RecursionError:
            raise InvalidArgument("request body", "", "JSON nested too deeply") from None
        except ValueError as e:  # not JSON, or not UTF-8: the request's fault, never the server's
            raise InvalidArgument("request body", "", f"not JSON ({e})") from None
        if not isinstance(doc, dict):
            raise InvalidArgument("request body", "", "not a JSON object")
        return doc

    def chunked(self) -> ChunkedBody:
        if not self._is_chunked():
            raise InvalidArgument("request", self.path, "uploads are sent with Transfer-Encoding: chunked")
        self.transferring()
        body = ChunkedBody(self.rfile)
        self._chunked = body
        return body

    def reply(self, status: int, obj: object) -> None:
        data = b"" if obj is None else json.dumps(obj).encode()
        self.reply_bytes(status, data, "application/json")

    def reply_bytes(self, status: int, data: bytes, content_type: str = "application/octet-stream") -> None:
        chunked = getattr(self, "_chunked", None)
        if chunked is not None:
            self._body_read = chunked.done
            self._chunked = None
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers_closing(not self._body_read)  # an unread body would be taken for a request
        self.wfile.write(data)
        self._replied = True

    def _range_not_satisfiable(self, ranged: str, size: int) -> None:
        data = json.dumps(wire.error_body(InvalidArgument("range", ranged, f"starts past the blob's {size} bytes")))
        self.send_response(416)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Range", f"bytes */{size}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers_closing(False)
        self.wfile.write(data.encode())
        self._replied = True

    def end_headers_closing(self, close: bool) -> None:
        if close or self.server.stopping:  # a stopping server takes no next request either
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()

    def send_blob(self, content, digest: str) -> None:
        with content.open_blob(digest) as f:
            size = os.fstat(f.fileno()).st_size
            start, end = 0, size - 1
            ranged = self.headers.get("Range")
            status = 200
            if ranged:
                span = parse_range(ranged, size)
                if span is None:
                    self._range_not_satisfiable(ranged, size)
                    return
                (start, end), status = span, 206
            length = max(0, end - start + 1)
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers_closing(False)
            self._replied = True
            self.transferring()
            f.seek(start)
            left = length
            while left > 0:
                chunk = f.read(min(COPY_CHUNK, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)


class _Serving(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default backlog of 5 turns a burst of clients into EAGAIN on a unix socket
    request_queue_size = socket.SOMAXCONN
    make_session: Callable[[str], object]
    token: str | None
    debug: bool
    max_connections = MAX_CONNECTIONS

    def __init__(self, *args, **kwargs) -> None:
        self.stopping = False
        self._guard = threading.Condition()  # over stopping, _handlers, _running and each handler's busy
        self._handlers: set[Handler] = set()
        self._running = 0  # request threads started and not yet finished
        super().__init__(*args, **kwargs)

    def serve_until(self, stop_requested: Callable[[], bool]) -> None:
        """``serve_forever`` with the stop as a flag a signal handler sets. A handler that raised
        instead could land in whatever Python code the main thread ran, a weakref callback
        among them, where the exception is printed and dropped: the server ran on."""
        self.timeout = POLL_INTERVAL
        while not stop_requested():
            self.handle_request()

    def stop(self, grace: float = STOP_GRACE, cut_short: Callable[[], bool] = lambda: False) -> int:
        """Stops listening, hangs up idle connections and waits up to ``grace`` seconds for the
        requests in progress; returns how many requests were still in progress."""
        self.server_close()
        deadline = time.monotonic() + grace
        with self._guard:
            self.stopping = True
            for handler in self._handlers:
                if not handler.busy or handler.waiting_since is not None:  # idle, or its head unsent
                    handler.evicted = True
                    _hang_up(handler.connection)
            while self._running and not cut_short():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._guard.wait(min(left, POLL_INTERVAL))
            # not the idle or half-sent ones still closing
            return sum(handler.busy and not handler.evicted for handler in self._handlers)

    def track(self, handler: Handler) -> None:
        with self._guard:
            self._handlers.add(handler)
            if self.stopping:
                _hang_up(handler.connection)

    def untrack(self, handler: Handler) -> None:
        with self._guard:
            self._handlers.discard(handler)

    def begin(self, handler: Handler) -> bool:
        with self._guard:
            handler.busy = not self.stopping
            return handler.busy

    def end(self, handler: Handler) -> None:
        with self._guard:
            handler.busy = False
            if self.stopping:
                handler.close_connection = True

    def get_request(self):
        """Accepts the next client once fewer than ``max_connections`` are being served; until then
        it stays in the listen queue (a client waits, as for a busy server, rather than being
        refused), and the serving loop comes back here after POLL_INTERVAL to notice a stop."""
        with self._guard:
            if self._running >= self.max_connections:
                self._hang_up_stalled()
                self._guard.wait(POLL_INTERVAL)
                if self._running >= self.max_connections:
                    raise BlockingIOError(errno.EAGAIN, "serving as many connections as allowed")
        return self._accept()

    def _hang_up_stalled(self) -> None:
        """With every slot taken, a connection that has sat idle, or sent part of a request's head,
        for STALLED_HEAD seconds gives its slot up (as a web server closes idle keep-alive
        connections when it runs out): else a few clients trickling header bytes, who need no token
        for that, would lock out every client that has one. Called under the guard."""
        now = time.monotonic()
        for handler in self._handlers:
            since = handler.waiting_since
            if since is not None and now - since > STALLED_HEAD and not handler.evicted:
                handler.evicted = True
                _hang_up(handler.connection)

    def _accept(self):
        return self.socket.accept()

    def process_request(self, request, client_address) -> None:
        with self._guard:
            self._running += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._finished()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._finished()

    def _finished(self) -> None:
        with self._guard:
            self._running -= 1
            self._guard.notify_all()


def _connections_the_descriptors_allow() -> int:
    """MAX_CONNECTIONS, or fewer when the descriptor limit would run out first. The soft limit is
    raised to the hard one first, as Go programs (containerd among them) do at start."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    spare = 64  # the listening socket, the store's own files, a Session for gc
    return max(1, min(MAX_CONNECTIONS, (soft - spare) // DESCRIPTORS_PER_CONNECTION))


def _hang_up(connection: socket.socket) -> None:
    """Ends an idle keep-alive connection: its thread's read sees end of file."""
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone


class TcpServer(_Serving):
    allow_reuse_address = True


class UnixServer(_Serving):
    address_family = socket.AF_UNIX

    def server_bind(self) -> None:
        path = self.server_address
        directory = os.path.dirname(path) or "."
        os.makedirs(directory, exist_ok=True)
        # Two servers starting on one path at once could both find a stale socket, and the later
        # one's unlink would remove the earlier one's live socket: the check, the unlink, the bind
        # and the listen happen under a lock on the directory (filelock locks files only).
        with _locked_directory(directory):
            _remove_stale_socket(path)
            old = os.umask(0o117)  # the socket is born 0660: never briefly open to others
            try:
                socketserver.TCPServer.server_bind(self)
            finally:
                os.umask(old)
            self.bound = True
            self.socket.listen(self.request_queue_size)  # from here on a probe finds it live
        os.chmod(path, 0o660)
        self.server_name, self.server_port = "localhost", 0

    def _accept(self):
        sock, _ = self.socket.accept()
        return sock, ("unix", 0)

    def server_close(self) -> None:
        if not getattr(self, "bound", False):
            super().server_close()
            return  # the bind failed (socketserver closes then too): whatever is at the path is not ours
        # Under the start-up lock: a server starting on this path between the close and the
        # unlink would take the closed socket for stale and bind anew, and lose its socket here.
        with _locked_directory(os.path.dirname(self.server_address) or "."):
            super().server_close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.server_address)
            self.bound = False  # a second close must not unlink what another server bound since


@contextlib.contextmanager
def _locked_directory(directory: str) -> Iterator[None]:
    import fcntl

    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:  # gone, or not readable by this user: nothing to lock, go on as before
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and with it the lock


def _remove_stale_socket(path: str) -> None:
    """A socket file nobody listens on is left by a killed server; a live one is a Conflict."""
    from dist_tool.errors import Conflict

    if not os.path.lexists(path):
        return
    import stat

    if not stat.S_ISSOCK(os.lstat(path).st_mode):
        raise Conflict("address", path, "exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        return
    except OSError as e:
        raise Conflict("address", path, f"cannot reuse: {e.strerror or e}") from None
    finally:
        probe.close()
    raise Conflict("address", f"unix://{path}", "another server is listening there")


def read_token(path: str) -> str:
    from dist_tool.remote.client import read_token_file

    token = read_token_file(path)
    if len(token) < 16:
        raise InvalidArgument("token file", path, "holds fewer than 16 characters")
    if os.stat(path).st_mode & 0o007:  # the group may share it, as it shares the 0660 socket
        raise InvalidArgument("token file", path, "can be read by others (chmod o-rwx it)")
    return token


def make_server(address: str, make_session: Callable[[str], object], token: str | None = None,
                debug: bool = False) -> _Serving:
    """Binds (not yet serving). TCP needs a token, whatever the host: every TCP request carries it."""
    kind, where = wire.parse_address(address)
    if kind == "tcp" and token is None:
        raise InvalidArgument("dist serve", address, "a TCP address needs --token-file (clients send the token)")
    try:
        server: _Serving = (UnixServer if kind == "unix" else TcpServer)(where, Handler)
    except OSError as e:
        from dist_tool.errors import Conflict, Unavailable

        if e.errno == errno.EADDRINUSE:  # in use (SPEC: 4), as a live unix socket is
            raise Conflict("address", address, f"cannot listen: {e.strerror}") from None
        raise Unavailable("address", address, f"cannot listen: {e.strerror or e}") from None
    server.make_session = make_session
    server.max_connections = _connections_the_descriptors_allow()
    server.token = token
    server.debug = debug
    return server
