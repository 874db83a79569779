"""The registries' HTTP client on the standard library: keep-alive, redirects, stale
connections, proxies from the environment. Against small in-test HTTP servers."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from registry_support import RawHTTPServer

from dist_tool.remote import transport
from dist_tool.remote.registry import is_localhost


class Server:
    """Answers by path: /data (a body), /redirect-*, /close (closes after answering), an upload to
    /v2/rel/ (a relative Location); records requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None, int]] = []  # method, path, Authorization, port
        self.connections = 0
        self.other: Server | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None: ...

            def setup(self) -> None:
                server.connections += 1
                super().setup()

            def handle_one(self, body: bytes = b"") -> None:
                length = int(self.headers.get("Content-Length") or 0)
                sent = self.rfile.read(length) if length else b""
                server.requests.append((self.command, self.path, self.headers.get("Authorization"),
                                        self.client_address[1]))
                if self.path.startswith("/loop"):
                    return self.reply(307, b"", {"Location": "/loop"})
                if self.path.startswith("/redirect-same"):
                    return self.reply(307, b"", {"Location": "/data"})
                if self.path.startswith("/redirect-ftp"):
                    return self.reply(307, b"", {"Location": "ftp://u:pw@127.0.0.1:1/blob?sig=SECRET"})
                if self.path.startswith("/redirect-file"):
                    return self.reply(302, b"", {"Location": "file:///etc/passwd"})
                if self.path.startswith("/redirect-dead"):
                    return self.reply(307, b"", {"Location": "http://127.0.0.1:1/blob?sig=SECRET"})
                if self.path.startswith("/redirect-other-auth"):
                    return self.reply(307, b"", {"Location": f"http://127.0.0.1:{server.other.port}/auth"})
                if self.path.startswith("/redirect-other"):
                    return self.reply(307, b"", {"Location": f"http://127.0.0.1:{server.other.port}/data"})
                if self.path.startswith("/auth") and not self.headers.get("Authorization"):
                    return self.reply(401, b"", {"WWW-Authenticate": 'Basic realm="r"'})
                if self.path.startswith("/see-other"):
                    return self.reply(303, b"", {"Location": "/data"})
                if self.path == "/v2/rel/blobs/uploads/" and self.command == "POST":
                    return self.reply(202, b"", {"Location": "session-1?_state=abc"})
                if self.path.startswith("/v2/rel/blobs/uploads/session-1?_state=abc&digest=") \
                        and self.command == "PUT":
                    return self.reply(201, b"", {"Docker-Content-Digest": self.path.rpartition("=")[2]
                                                 .replace("%3A", ":")})
                if self.path.startswith("/close"):
                    self.close_connection = True
                    return self.reply(200, b"bye", {"Connection": "close"})
                self.reply(200, sent or b"x" * 100_000)

            def reply(self, status: int, body: bytes, headers: dict | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = handle_one

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    a, b = Server(), Server()
    a.other = b
    yield a, b
    a.stop()
    b.stop()


def get(client, url, **kw) -> tuple[int, bytes]:
    resp = client.send("GET", url, **kw)
    try:
        return resp.status_code, resp.read(1 << 20)
    finally:
        resp.close()


def test_keep_alive_reuses_connections(servers):
    a, _ = servers
    client = transport.Client()
    for _ in range(3):
        assert get(client, a.url("/data")) == (200, b"x" * 100_000)
    head = client.send("HEAD", a.url("/data"))
    head.close()
    assert head.status_code == 200
    assert a.connections == 1
    client.close()


def test_streaming_bodies_both_ways(servers):
    a, _ = servers
    client = transport.Client()
    resp = client.send("PUT", a.url("/echo"), {"Content-Length": "6"}, iter([b"abc", b"def"]))
    buffer = memoryview(bytearray(4))
    parts = []
    while n := resp.readinto(buffer):
        parts.append(bytes(buffer[:n]))
    resp.close()
    assert b"".join(parts) == b"abcdef"


def test_redirects_keep_credentials_only_on_the_same_origin(servers):
    a, b = servers
    client = transport.Client()
    secret = {"Authorization": "Bearer secret"}
    assert get(client, a.url("/redirect-same"), headers=secret)[0] == 200
    assert [r[2] for r in a.requests] == ["Bearer secret", "Bearer secret"]
    assert get(client, a.url("/redirect-other"), headers=secret)[0] == 200
    assert [(r[1], r[2]) for r in b.requests] == [("/data", None)]
    resp = client.send("POST", a.url("/see-other"), {"Content-Length": "1"}, b"z")
    resp.close()
    assert a.requests[-1][:2] == ("GET", "/data")


def test_registry_credentials_go_to_the_registry_only(servers):
    """An upload Location or a redirect may name another host: it gets no credentials, and its
    401 is not answered with them (docker's and containerd's rule)."""
    from dist_tool.remote.auth import Credentials
    from dist_tool.remote.registry import Registry

    a, b = servers
    scopes = ("repository:x:pull,push",)
    with Registry(f"127.0.0.1:{a.port}", plain_http=True, credentials=Credentials("alice", "s3cret")) as reg:
        with reg.request("GET", "/auth", scopes) as resp:
            assert resp.status_code == 200  # answered the registry's own challenge with basic auth
        assert [r[2] for r in a.requests] == [None, Credentials("alice", "s3cret").basic()]
        with reg.request("PUT", b.url("/upload?session=1"), scopes, content=b"blob") as resp:
            assert resp.status_code == 200
        with reg.request("GET", "/redirect-other-auth", scopes) as resp:
            assert resp.status_code == 401  # another host's challenge: not ours to answer
    assert [(r[1], r[2]) for r in b.requests] == [("/upload?session=1", None), ("/auth", None)]


def test_a_connection_the_server_closed_is_replaced(servers):
    a, _ = servers
    client = transport.Client()
    assert get(client, a.url("/close")) == (200, b"bye")
    assert get(client, a.url("/data"))[0] == 200
    assert a.connections == 2


def test_refused_connections_are_transport_errors():
    with pytest.raises(transport.TransportError) as e:
        transport.Client().send("GET", "http://127.0.0.1:1/")
    assert e.value.connecting and e.value.why == "connection refused"


def test_a_tls_client_on_a_plain_port_says_tls(servers):
    a, _ = servers
    with pytest.raises(transport.TransportError) as e:
        transport.Client().send("GET", f"https://127.0.0.1:{a.port}/data")
    assert e.value.tls and e.value.connecting
    assert e.value.why == "TLS handshake failed: the server answers plain HTTP (--plain-http)"


@pytest.mark.parametrize("no_proxy, host, proxied", [
    ("", "r.example", True), ("r.example", "r.example", False), (".example", "r.example", False),
    ("example", "r.example", False), ("other.example,*", "r.example", False), ("other.example", "r.example", True),
], ids=["none", "exact", "dot-suffix", "suffix", "star", "other"])
def test_proxies_from_the_environment(monkeypatch, no_proxy, host, proxied):
    for name in ("http_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", "http://u:p%40ss@proxy.example:3128")
    monkeypatch.setenv("no_proxy", no_proxy)
    found = transport._proxy_for("https", host)
    if proxied:
        assert found == ("proxy.example", 3128, "Basic dTpwQHNz")
    else:
        assert found is None
    assert transport._proxy_for("http", host) is None


@pytest.mark.parametrize("host, proxied", [
    ("localhost", False), ("LOCALHOST", False), ("127.0.0.1", False), ("127.9.8.7", False), ("::1", False),
    ("::ffff:127.0.0.1", False), ("localhost.example", True), ("128.0.0.1", True), ("10.0.0.1", True),
    ("::2", True),
])
def test_loopback_registries_are_never_proxied(monkeypatch, host, proxied):
    """Go's ProxyFromEnvironment (containerd, docker) never proxies localhost or loopback addresses."""
    for name in ("no_proxy", "NO_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    for scheme in ("http", "https"):
        assert (transport._proxy_for(scheme, host) is not None) is proxied, scheme


@pytest.mark.parametrize("host, local", [("localhost:5000", True), ("127.0.0.1", True), ("127.1.2.3:80", True),
                                         ("[::1]:5000", True), ("registry.example", False),
                                         ("localhost.example:5000", False)])
def test_localhost(host, local):
    assert is_localhost(host) is local


@pytest.fixture
def untrusted_tls_server(tmp_path):
    """A TLS server on localhost whose self-signed certificate nobody trusts; counts connections
    and what each sent first (a TLS ClientHello starts with 0x16, plain HTTP with a method)."""
    import socket
    import ssl
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    first_bytes: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    first_bytes.append(conn.recv(1, socket.MSG_PEEK))
                    with context.wrap_socket(conn, server_side=True):
                        pass
                except (OSError, ssl.SSLError):
                    pass

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[1], first_bytes
    listener.close()


def test_an_untrusted_certificate_on_localhost_is_an_error_not_a_fall_back_to_http(untrusted_tls_server):
    """containerd falls back to plain HTTP only when the server does not speak TLS."""
    from dist_tool.remote.registry import Registry, TransportFailure

    port, first_bytes = untrusted_tls_server
    with Registry(f"127.0.0.1:{port}", sleep=lambda s: None) as reg, pytest.raises(TransportFailure) as e:
        with reg.request("GET", "/v2/", ("repository:x:pull",)):
            pass
    assert "TLS certificate not trusted" in str(e.value)
    assert first_bytes and all(b == b"\x16" for b in first_bytes)  # never a cleartext request
    assert reg.scheme == "https"


def test_a_redirect_loop_is_not_retried(servers):
    from dist_tool.remote.registry import Registry, TransportFailure

    a, _ = servers
    with Registry(f"127.0.0.1:{a.port}", plain_http=True, sleep=lambda s: None) as reg:
        with pytest.raises(TransportFailure) as e, reg.request("GET", "/loop", None):
            pass
    assert "redirects (the last to http://127.0.0.1:" in str(e.value) and "attempts" not in str(e.value)
    assert len(a.requests) == transport.MAX_REDIRECTS + 1


def test_a_relative_upload_location_is_resolved_against_the_upload_url(servers):
    """``Location: <uuid>?_state=...`` (no leading slash) is relative to the POST's URL (RFC 3986),
    as docker's distribution client resolves it, not to the host's root."""
    import hashlib

    from dist_tool.oci import Descriptor
    from dist_tool.remote.registry import Registry

    a, _ = servers
    blob = b"relative"
    desc = Descriptor("application/octet-stream", "sha256:" + hashlib.sha256(blob).hexdigest(), len(blob))
    with Registry(f"127.0.0.1:{a.port}", plain_http=True, sleep=lambda s: None) as reg:
        repo = reg.repository("rel", f"127.0.0.1:{a.port}/rel:1", actions="pull,push")
        assert repo.upload_blob(desc, lambda: iter([blob])) == "uploaded"
    assert [(m, p.split("&")[0]) for m, p, _, _ in a.requests] == [
        ("POST", "/v2/rel/blobs/uploads/"), ("PUT", "/v2/rel/blobs/uploads/session-1?_state=abc")]


@pytest.mark.parametrize("path, why", [
    ("/redirect-ftp", "redirected to ftp://127.0.0.1:1, which is not HTTP(S)"),
    ("/redirect-file", "redirected to a file: URL, which is not HTTP(S)"),
    ("/redirect-dead", "connection refused at http://127.0.0.1:1 (a redirect's target)"),
], ids=["ftp", "file", "unreachable-target"])
def test_redirect_errors_name_the_target_and_only_http_is_followed(servers, path, why):
    """An ftp:// or file:// Location is refused, not fetched over HTTP on port 80; a failure at a
    redirect's target names that origin (never its user info, path or query)."""
    from dist_tool.remote.registry import Registry, TransportFailure

    a, _ = servers
    with Registry(f"127.0.0.1:{a.port}", plain_http=True, sleep=lambda s: None) as reg:
        with pytest.raises(TransportFailure) as e, reg.request("GET", path, None):
            pass
    assert str(e.value).startswith(f"registry 127.0.0.1:{a.port}: {why}")
    assert "SECRET" not in str(e.value) and "pw" not in str(e.value) and "\n" not in str(e.value)
    assert [r[1] for r in a.requests].count(path) <= 2  # not retried as a dropped connection would be


@pytest.mark.parametrize("retry_after, low, high", [("3", 3, 3), ("600", 8, 8), ("\u00b2", 0.125, 0.25),
                                                    ("Wed, 21 Oct 2026 07:28:00 GMT", 0.125, 0.25)])
def test_backoff_takes_only_a_plain_number_of_seconds_from_the_registry(retry_after, low, high):
    """A "Retry-After: ²" (latin-1, so a header can carry it) was an internal error."""
    from dist_tool.remote.registry import backoff

    assert low <= backoff(1, retry_after) <= high


class EarlyAnswerServer(RawHTTPServer):
    """A registry whose blob PUTs are answered 413 after the headers, the body unread, the
    connection closed (a proxy's body size limit); POST opens an upload; counts the PUTs."""

    def __init__(self) -> None:
        self.puts = 0
        super().__init__()

    def answer(self, conn, body, method: bytes, target: bytes, length: int) -> bool:
        import time

        if method == b"PUT":
            self.puts += 1
            conn.sendall(b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            time.sleep(0.05)
            return False  # closed with the body unread: the client's writes fail
        body.read(length)
        conn.sendall(b"HTTP/1.1 202 Accepted\r\nLocation: /v2/r/blobs/uploads/u\r\nContent-Length: 0\r\n\r\n")
        return True


def test_an_answer_before_the_body_was_read_is_the_answer_not_a_dropped_connection():
    """The upload was sent five times and failed as "connection dropped": the 413 was lost."""
    from dist_tool.errors import Unavailable
    from dist_tool.oci import Descriptor
    from dist_tool.remote.registry import Registry

    server = EarlyAnswerServer()
    size = 8 << 20
    chunk = bytes(1 << 20)
    try:
        with Registry(f"127.0.0.1:{server.port}", plain_http=True, lookup=lambda host: None) as registry:
            repo = registry.repository("r", "127.0.0.1/r:1", "pull,push")
            desc = Descriptor("application/vnd.oci.image.layer.v1.tar", "sha256:" + "0" * 64, size)
            with pytest.raises(Unavailable, match="answered 413 Request Entity Too Large$"):
                repo.upload_blob(desc, lambda: (chunk for _ in range(size // len(chunk))))
    finally:
        server.stop()
    assert server.puts == 1


def test_a_token_server_that_cannot_be_reached_is_named_not_the_registry():
    """"registry H: connection refused" sent people to a registry that was up."""
    import socket

    from dist_tool.remote.registry import Registry, TransportFailure

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens once it is closed

    class Challenging(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None: ...

        def do_HEAD(self) -> None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="http://127.0.0.1:{dead}/token",service="s"')
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Challenging)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    host = f"127.0.0.1:{httpd.server_address[1]}"
    try:
        with Registry(host, plain_http=True, lookup=lambda h: None, sleep=lambda s: None) as registry:
            with pytest.raises(TransportFailure) as caught:
                registry.repository("r", f"{host}/r:1").head_manifest("1")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert str(caught.value) == (f"registry {host}: token server http://127.0.0.1:{dead}: "
                                 "connection refused after 2 attempts")


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:pass@auth.example/token", "https://auth.example"),
    ("http://u%40x:p@ss@Host.example:8080/a?b=c", "http://Host.example:8080"),
    ("https://:secret@[::1]:5000/", "https://[::1]:5000"),
    ("https://user@auth.example", "https://auth.example"),
    ("https://auth.example/p@th", "https://auth.example"),
])
def test_shown_origin_never_shows_user_info_path_or_query(url, shown):
    assert transport.shown_origin(url) == shown
