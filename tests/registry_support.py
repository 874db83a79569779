"""Real registries for the tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1, with
no auth, htpasswd basic auth, or token auth from a small in-test token server; and a façade in
front of a registry that records requests and can stall, corrupt or refuse a blob.

Only what cannot run here is simulated: the façade stands in for a slow network, a registry
that lies and one that fails for a while; the token server for an auth service.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REGISTRY_BIN = shutil.which("docker-registry") or shutil.which("registry")
ACCESS_RE = re.compile(r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Registry:
    """``docker-registry serve CONFIG`` on a free port of 127.0.0.1, storage in ``base``."""

    def __init__(self, base: Path, auth: str = "") -> None:
        self.base = base
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.log_path = base / "registry.log"
        (base / "data").mkdir(parents=True, exist_ok=True)
        config = base / "config.yml"
        config.write_text(f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {base / "data"}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {self.addr}
{auth}""")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_port(self.port, self.proc)
        except RuntimeError:
            self.stop()
            raise RuntimeError(f"docker-registry did not start: {self.log_path.read_text()[-2000:]}") from None

    def requests(self, since: int = 0) -> list[tuple[str, str, int]]:
        """(method, uri, status) of each request in the access log, from line ``since``."""
        out = []
        for line in self._settled_log()[since:]:
            m = ACCESS_RE.search(line)
            if m:
                out.append((m["method"], m["uri"], int(m["status"])))
        return out

    def mark(self) -> int:
        return len(self._settled_log())

    def _settled_log(self) -> list[str]:
        """The access log once no line has come for 0.1 s: a line is written after its response,
        so the client may be done before the registry logged its last request."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.1)
            again = self.log_path.read_text(errors="replace").splitlines()
            if len(again) == len(lines):
                break
            lines = again
        return lines

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def htpasswd_auth(base: Path, user: str, password: str) -> str:
    """The registry's ``auth: htpasswd:`` section, with a bcrypt entry made by ``htpasswd -B``."""
    entry = subprocess.run(["htpasswd", "-Bbn", user, password], check=True, capture_output=True,
                           text=True).stdout.strip()
    path = base / "htpasswd"
    path.write_text(entry + "\n")
    return f"auth:\n  htpasswd:\n    realm: dist-test\n    path: {path}\n"


# ---------------------------------------------------------------- token auth


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues registry tokens (RS256 JWTs, signed by ``openssl``, certificate in ``x5c``).

    With the right basic credentials it grants the actions asked for; anonymously only ``pull``;
    with wrong credentials it answers 401. With ``refuse_many`` set, a request for more than one
    scope gets a 403 (an auth service that will not grant pull on another, private repository).
    Repositories in ``pull_only`` are granted ``pull`` alone, whoever asks (someone else's).
    ``requests`` records (user, scopes) of each request.

    It has no OAuth2 endpoint: a POST gets ``post_status`` (http.server's 501 unless set), as
    GCR's 404 or ACR's 400. A GET whose basic password is ``identity_token`` is the user's.
    """

    SERVICE = "dist-test"
    ISSUER = "dist-test-issuer"

    def __init__(self, base: Path, user: str, password: str) -> None:
        self.base = base
        self.user, self.password = user, password
        self.key = base / "token.key"
        self.cert = base / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-days", "2", "-subj", "/CN=dist-test-token"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.requests: list[tuple[str | None, list[str]]] = []
        self.refuse_many = False
        self.pull_only: set[str] = set()
        self.post_status = 501
        self.identity_token: str | None = None
        self.posts = 0
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None: ...

            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                scopes = [s for value in query.get("scope", []) for s in value.split()]
                user = None
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                    if server.identity_token is not None and password == server.identity_token:
                        user = server.user
                    elif (user, password) != (server.user, server.password):
                        server.requests.append((user, scopes))
                        self.send_response(401)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                server.requests.append((user, scopes))
                if server.refuse_many and len(scopes) > 1:
                    self.send_response(403)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"token": server.token(user, scopes), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                server.posts += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(server.post_status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def token(self, user: str | None, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = user is not None and name not in self.pull_only
            granted = [a for a in actions.split(",") if a == "pull" or allowed]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.ISSUER, "sub": user or "", "aud": self.SERVICE, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(signature)}"

    def registry_auth(self) -> str:
        return (f"auth:\n  token:\n    realm: {self.realm}\n    service: {self.SERVICE}\n"
                f"    issuer: {self.ISSUER}\n    rootcertbundle: {self.cert}\n")

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------- the façade


class Facade:
    """A proxy in front of a registry that records requests and misbehaves on demand.

    * ``log``: (method, path, Range header) of every request;
    * ``stall[digest] = n``: a GET of that blob sends its first n bytes, then waits for
      ``release`` (the test kills the client meanwhile);
    * ``corrupt``: blobs and manifests (by digest or tag) served with the first byte flipped;
    * ``fail[substring] = k``: the first k requests whose path contains it get a 503;
    * ``refuse[substring] = status``: every request whose path contains it gets that status;
    * ``redirect[substring] = location``: every request whose path contains it gets a 307 there;
    * ``hold``: requests whose path contains one of these wait for ``release`` (``held`` is set
      when the first arrives);
    * ``canned[path suffix] = (content type, body)``: GETs of such paths get that, never the registry;
    * ``wrong_range``: blobs (by digest) whose ranged GETs are answered with the whole blob as a
      206 "from byte 0", whatever range was asked for.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.log: list[tuple[str, str, str | None]] = []
        self.stall: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.fail: dict[str, int] = {}
        self.refuse: dict[str, int] = {}
        self.redirect: dict[str, str] = {}
        self.wrong_range: set[str] = set()
        self.canned: dict[str, tuple[str, bytes]] = {}
        self.hold: set[str] = set()
        self.held = threading.Event()
        self.release = threading.Event()
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        facade = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None: ...

            def do_GET(self) -> None:
                facade.handle(self)

            do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        self.log.append((req.command, req.path, req.headers.get("Range")))
        length = int(req.headers.get("Content-Length") or 0)
        sent = req.rfile.read(length) if length else None  # read even when refused: keeps the connection
        for part, left in list(self.fail.items()):
            if part in req.path and left > 0:
                self.fail[part] = left - 1
                req.send_response(503)
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
        for part, status in self.refuse.items():
            if part in req.path:
                req.send_response(status)
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
        if any(part in req.path for part in self.hold):
            self.held.set()
            self.release.wait(60)
        for suffix, (content_type, body) in self.canned.items():
            if req.path.endswith(suffix) and req.command == "GET":
                req.send_response(200)
                req.send_header("Content-Type", content_type)
                req.send_header("Content-Length", str(len(body)))
                req.end_headers()
                req.wfile.write(body)
                return
        for part, location in self.redirect.items():
            if part in req.path:
                req.send_response(307)
                req.send_header("Location", location)
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
        digest = req.path.rsplit("/", 1)[-1] if "/blobs/" in req.path or "/manifests/" in req.path else ""
        wrong_range = digest in self.wrong_range and req.headers.get("Range") is not None
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        headers = {k: v for k, v in req.headers.items()
                   if k.lower() not in ("connection", "host") and not (wrong_range and k.lower() == "range")}
        headers["Host"] = self.addr
        conn.request(req.command, req.path, body=sent, headers=headers)
        resp = conn.getresponse()
        req.send_response(206 if wrong_range and resp.status == 200 else resp.status)
        if wrong_range and resp.status == 200:
            size = int(resp.getheader("Content-Length"))
            req.send_header("Content-Range", f"bytes 0-{size - 1}/{size}")
        for key, value in resp.getheaders():
            if key.lower() not in ("connection", "transfer-encoding", "keep-alive"):
                req.send_header(key, value)
        body = resp.read() if req.command != "HEAD" else b""
        if req.command != "HEAD" and resp.getheader("Content-Length") is None:
            req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        conn.close()
        if digest in self.corrupt and body:
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        try:
            if digest in self.stall and req.command == "GET":
                n = self.stall[digest]
                req.wfile.write(body[:n])
                req.wfile.flush()
                self.release.wait(60)
                req.close_connection = True
                return
            req.wfile.write(body)
        except OSError:
            req.close_connection = True  # the client went away (killed): nothing to tell it

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class RawHTTPServer:
    """An HTTP/1.1 server on loopback written on raw sockets, for what http.server will not do
    (answer before reading a body, read a body slowly). A subclass answers each request in
    ``answer(conn, body, method, target, length)``, reading its ``length`` body bytes from
    ``body`` as it likes; a false return closes the connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._serve, daemon=True).start()

    def answer(self, conn, body, method: bytes, target: bytes, length: int) -> bool:
        raise NotImplementedError

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn) -> None:
        with conn, conn.makefile("rb") as f:
            try:
                while line := f.readline():
                    method, target = line.split()[:2]
                    length = 0
                    while (header := f.readline()) not in (b"\r\n", b""):
                        name, _, value = header.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    if not self.answer(conn, f, method, target, length):
                        return
            except OSError:
                return

    def stop(self) -> None:
        self.sock.close()
