"""dist serve and dist --address, end to end through the real entry point (issue 7)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import Dist, run_dist

IMG = "docker.io/library/umoci-test:1"  # the umoci fixture image's name


class Server:
    """``dist serve`` as a subprocess on a store root."""

    def __init__(self, root: Path, address: str, *extra: str) -> None:
        self.root, self.address, self.extra = root, address, extra
        self.proc: subprocess.Popen | None = None

    def start(self, **popen) -> Server:
        env = {**os.environ}
        env.pop("DIST_ADDRESS", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "dist_tool", "--root", str(self.root), "serve",
                                      "--address", self.address, *self.extra],
                                     stderr=subprocess.PIPE, env=env, **popen)
        line = self.proc.stderr.readline().decode()  # "dist serve: listening on ADDRESS" once bound
        assert "listening" in line, line + self.proc.stderr.read().decode()
        return self

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)  # more than the server's 10 s grace for requests in progress
        if self.proc:
            self.proc.stderr.close()


@pytest.fixture
def sockdir():
    d = tempfile.mkdtemp(prefix="dist-serve-")  # a socket path must stay under 108 bytes
    yield Path(d)
    import shutil

    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def served(tmp_path, sockdir):
    server = Server(tmp_path / "root", f"unix://{sockdir}/s.sock").start()
    yield server
    server.kill()


@contextlib.contextmanager
def in_process_server(address: str, make_session):
    """``make_server`` serving from a thread of the test: for sessions a test builds itself."""
    from dist_tool.remote import server as server_module

    srv = server_module.make_server(address, make_session)
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


class Remote:
    """``dist --address ...``, with a --root of its own that must stay unused."""

    def __init__(self, server: Server, tmp_path: Path) -> None:
        self.address, self.root = server.address, tmp_path / "client-root"

    def __call__(self, *args, **kw):
        return run_dist("--address", self.address, *args, root=self.root, **kw)

    def ok(self, *args, **kw):
        r = self(*args, **kw)
        assert r.code == 0, f"dist {' '.join(args)} exited {r.code}: {r.stderr}"
        return r


def test_socket_is_0660_and_image_commands_match_the_local_store(served, tmp_path, umoci_image):
    assert os.stat(served.address[len("unix://"):]).st_mode & 0o777 == 0o660
    r = Remote(served, tmp_path)
    local = Dist(served.root)
    assert r.ok("images", "import", "--no-unpack", str(umoci_image.oci_archive)).lines == [IMG]
    assert r.ok("images", "tag", IMG, "a", "b").lines == ["docker.io/library/a:latest",
                                                              "docker.io/library/b:latest"]
    assert r.ok("images", "label", "a", "app=web", "tier=1").lines == ["app=web", "tier=1"]
    assert r.ok("images", "label", "a", "tier=").lines == ["app=web"]
    for args in (["images", "--json"], ["images", "ls", "--json", "labels.app==web"], ["images", "-q"],
                 ["images", "inspect", "a", "--json"], ["images", "check", "--verify", "--json"],
                 ["content", "ls", "--json"], ["content", "verify", "--json"]):
        assert r.ok(*args).stdout == local.ok(*args).stdout, args
    r.ok("images", "export", str(tmp_path / "out.tar"), "a")
    local.ok("images", "export", str(tmp_path / "local.tar"), "a")
    assert (tmp_path / "out.tar").read_bytes() == (tmp_path / "local.tar").read_bytes()
    # Errors cross the wire with their exit codes and SPEC's one line.
    miss = r("images", "inspect", "nope")
    assert (miss.code, miss.stderr) == (3, "dist: error: image docker.io/library/nope:latest: not found\n")
    assert r("images", "tag", IMG, "a").code == 4
    assert r("images", "label", "a", "novalue").code == 2
    gone = r("rmi", "a", "b", "nope")
    assert gone.code == 3 and gone.lines == ["deleted docker.io/library/a:latest", "deleted docker.io/library/b:latest"]
    assert r.ok("rmi", IMG).lines == [f"deleted {IMG}"]
    assert local.ok("content", "ls", "-q").lines == []  # gc ran on the server's store
    assert not (tmp_path / "client-root").exists()  # the client never opened a root of its own


def test_not_served_is_one_clear_line(served, tmp_path):
    r = Remote(served, tmp_path)
    for args in (["snapshot", "ls"], ["namespaces", "ls"], ["info"], ["pull", "127.0.0.1:1/x:1"],
                 ["push", "127.0.0.1:1/x:1", "nope"], ["container", "create", "busybox", "nope"],
                 ["container", "rm", "nope"], ["container", "rm", "-f", "nope"]):
        res = r(*args)
        assert res.code == 1 and res.stderr.count("\n") == 1 and "not served over --address" in res.stderr, args
    # Task commands read no STATE of the client's: it could hold another store's live task.
    for args in (["task", "ls"], ["task", "kill", "web"], ["task", "wait", "web"], ["task", "logs", "web"],
                 ["task", "pause", "web"], ["task", "resume", "web"], ["task", "ps", "web"], ["task", "rm", "web"],
                 ["task", "start", "web"], ["task", "start", "-d", "web"],
                 ["task", "exec", "--exec-id", "x", "web", "--", "true"]):
        res = r(*args)
        foreground = args[1] in ("wait", "exec") or args[1:] == ["start", "web"]
        assert (res.code, res.stderr) == (125 if foreground else 1,
                                          f"dist: error: tasks {served.address}: not served over --address\n"), args


def test_no_server_is_one_line_naming_the_address(tmp_path, sockdir):
    res = run_dist("--address", f"unix://{sockdir}/none.sock", "images", root=tmp_path / "root")
    assert res.code == 1
    assert res.stderr == f"dist: error: --address unix://{sockdir}/none.sock: no server is listening " \
                         "(start one with dist serve)\n"


def test_a_burst_of_connections_is_queued_not_refused(served):
    # A unix socket with a full backlog fails a connect with EAGAIN at once; a burst of clients must
    # wait for the server instead (CI once lost a `tag` to this among twenty concurrent clients).
    from dist_tool.remote.client import Client

    def connect(_: int) -> str:
        conn = Client(served.address, "default").connection()
        try:
            conn.connect()
            return "ok"
        except OSError as e:
            return repr(e)
        finally:
            conn.close()

    with ThreadPoolExecutor(200) as pool:
        outcomes = list(pool.map(connect, range(400)))
    assert [o for o in outcomes if o != "ok"] == []


def _open_upload(address: str, ref: str, first: bytes) -> socket.socket:
    """A chunked append upload begun on its own connection, its first chunk sent, the rest owed."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(20)
    sock.connect(address[len("unix://"):])
    sock.sendall(f"PUT /v1/content/ingests/{ref}?mode=append HTTP/1.1\r\nHost: x\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n".encode() + b"%x\r\n%s\r\n" % (len(first), first))
    return sock


def _answer(sock: socket.socket) -> bytes:
    answer = b""
    while part := sock.recv(65536):
        answer += part
    return answer


def _wait_for_ingest(root: Path, ref: str, offset: int) -> None:
    """Until the server holds ``offset`` bytes of ingest ``ref`` on disk."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        offsets = [i["offset"] for i in run_dist("content", "active", "--json", root=root).json if i["ref"] == ref]
        if offsets == [offset]:
            return
        time.sleep(0.05)
    pytest.fail(f"the server never wrote {offset} bytes of ingest {ref}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_finishes_requests_in_progress_and_hangs_up_idle_ones(served, sig):
    """SIGTERM (or Ctrl-C) stops listening at once, lets a request already begun finish, and does
    not wait for clients that merely keep a connection open."""
    import hashlib
    import json

    from dist_tool.remote.client import Client

    idle = Client(served.address, "default")
    assert idle.request("GET", "/version")["api"] == 1  # the keep-alive connection stays open
    upload = _open_upload(served.address, "drain", b"x" * (4 << 20))  # more than one write's worth
    _wait_for_ingest(served.root, "drain", 4 << 20)
    served.proc.send_signal(sig)
    socket_path = served.address[len("unix://"):]
    deadline = time.monotonic() + 10
    while os.path.exists(socket_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(socket_path), "the server still listens after the signal"
    assert served.proc.poll() is None, "the server left before the request in progress ended"
    data = b"x" * ((4 << 20) + 500)
    commit = json.dumps({"size": len(data), "digest": "sha256:" + hashlib.sha256(data).hexdigest()})
    upload.sendall(b"1f4\r\n" + b"x" * 500 + f"\r\n0\r\nDist-Commit: {commit}\r\n\r\n".encode())
    answer = _answer(upload)
    upload.close()
    assert answer.split(b" ", 2)[1] == b"200", answer
    assert b"connection: close" in answer.lower()  # no further request on it
    assert served.proc.wait(timeout=8) == 0  # well inside the grace: the idle client held nothing
    assert served.proc.stderr.read() == b""
    idle.close()
    assert Dist(served.root).ok("content", "ls", "-q").lines == [json.loads(commit)["digest"]]


def test_a_second_stop_signal_cuts_the_wait_short(served):
    upload = _open_upload(served.address, "cut", b"y" * (4 << 20))
    _wait_for_ingest(served.root, "cut", 4 << 20)
    served.proc.send_signal(signal.SIGTERM)
    socket_path = served.address[len("unix://"):]
    deadline = time.monotonic() + 10
    while os.path.exists(socket_path) and time.monotonic() < deadline:
        time.sleep(0.02)
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=8) == 0
    assert "stopped with 1 request(s) in progress cut off" in served.proc.stderr.read().decode()
    upload.close()
    local = Dist(served.root)
    assert [(i["ref"], i["offset"]) for i in local.ok("content", "active", "--json").json] == [("cut", 4 << 20)]
    assert local.ok("content", "ls", "-q").lines == []


def test_a_server_started_with_sigint_ignored_keeps_ignoring_it(tmp_path, sockdir):
    # a background job of a non-interactive shell (`dist serve &` in a script) starts so
    from dist_tool.remote.client import Client

    server = Server(tmp_path / "root", f"unix://{sockdir}/s.sock")
    server.start(preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        server.proc.send_signal(signal.SIGINT)
        with pytest.raises(subprocess.TimeoutExpired):
            server.proc.wait(timeout=1)
        assert Client(server.address, "default").request("GET", "/version")["api"] == 1
    finally:
        server.kill()
    assert server.proc.returncode == 0


_BIND_AT_THE_SIGNAL = """
import sys
from dist_tool.errors import Conflict
from dist_tool.remote.server import make_server
sys.stdin.read()  # the test closes every starter's stdin at once
try:
    server = make_server(sys.argv[1], lambda namespace: None)
except Conflict as e:
    print("conflict", e, flush=True)
else:
    print("listening", flush=True)
    sys.stdout.close()
    import time
    time.sleep(60)
"""


def test_two_servers_starting_on_one_stale_socket_leave_one_listening():
    """Both used to find the stale socket; the later one's unlink could remove the earlier one's
    live socket (a server nobody could reach) or its bind failed (not a Conflict, exit 1)."""
    import shutil

    for _ in range(12):
        d = Path(tempfile.mkdtemp(prefix="dist-race-"))
        starters = []
        try:
            stale = socket.socket(socket.AF_UNIX)  # as a killed server leaves it
            stale.bind(str(d / "s.sock"))
            stale.close()
            starters = [subprocess.Popen([sys.executable, "-c", _BIND_AT_THE_SIGNAL, f"unix://{d}/s.sock"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                        for _ in range(2)]
            time.sleep(0.3)  # both imported and waiting
            for starter in starters:
                starter.stdin.close()
            outcomes = sorted(starter.stdout.readline().decode().split(" ")[0].strip() for starter in starters)
            assert outcomes == ["conflict", "listening"], [s.stderr.read().decode()[-300:] for s in starters]
            probe = socket.socket(socket.AF_UNIX)
            probe.connect(str(d / "s.sock"))  # the winner's socket is still there, and live
            probe.close()
        finally:
            for starter in starters:
                starter.kill()
                starter.wait()
                starter.stdout.close()
                starter.stderr.close()
            shutil.rmtree(d, ignore_errors=True)


def test_a_server_stopping_never_removes_the_socket_of_one_starting(sockdir):
    """The stopping server closed its socket, and a server starting in that moment took the file
    for stale and bound anew; the stopping one's unlink then removed the new socket (a server no
    client could reach), or the two unlinks raced (the new one failed, exit 1)."""
    from dist_tool.errors import Conflict
    from dist_tool.remote import server as server_module

    address = f"unix://{sockdir}/r.sock"
    for _ in range(20):
        old = server_module.make_server(address, lambda namespace: None)
        started = []

        def start() -> None:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    started.append(server_module.make_server(address, lambda namespace: None))  # noqa: B023
                    return
                except Conflict:  # the old one still listens
                    continue

        starter = threading.Thread(target=start, daemon=True)
        starter.start()
        old.stop(grace=0)
        starter.join(10)
        [new] = started
        try:
            probe = socket.socket(socket.AF_UNIX)
            probe.connect(f"{sockdir}/r.sock")  # the new server's socket is there, and live
            probe.close()
        finally:
            new.server_close()


def test_a_client_resetting_its_connection_prints_nothing(tmp_path):
    import struct

    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789\n")
    token.chmod(0o600)  # dist serve refuses a token others can read
    server = Server(tmp_path / "root", f"tcp://127.0.0.1:{_free_port()}", "--token-file", str(token)).start()
    host, port = server.address[len("tcp://"):].split(":")
    try:
        for _ in range(3):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(b"GET /v1/version HTTP/1.1\r\nHost: x\r\n"
                         b"Authorization: Bearer s3cret-token-0123456789\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # an RST, not a FIN, while the server waits for the next request
        time.sleep(0.5)
    finally:
        server.proc.send_signal(signal.SIGTERM)
        code = server.proc.wait(timeout=10)
    assert (code, server.proc.stderr.read().decode()) == (0, "")
    server.kill()


def test_idle_connections_are_not_counted_as_requests_cut_off(sockdir):
    """A stop cut short at once (two quick signals) said "stopped with 5 request(s) in progress
    cut off" for five keep-alive clients that had no request running."""
    from dist_tool.remote.client import Client

    idle = [Client(f"unix://{sockdir}/i.sock", "default") for _ in range(5)]
    from types import SimpleNamespace

    no_stores = SimpleNamespace(close=lambda: None)  # /v1/version uses none
    with in_process_server(f"unix://{sockdir}/i.sock", lambda namespace: no_stores) as srv:
        try:
            for client in idle:
                assert client.request("GET", "/version")["api"] == 1
            srv.shutdown()
            assert srv.stop(grace=0) == 0
        finally:
            for client in idle:
                client.close()


def test_twenty_concurrent_clients_lose_nothing(served, tmp_path, umoci_image):
    r = Remote(served, tmp_path)
    r.ok("images", "import", "--no-unpack", str(umoci_image.oci_archive))

    def client(i: int) -> list[str]:
        results = [r("images", "tag", IMG, f"n{i}"),
                   r("images", "label", f"n{i}", f"i={i}"),
                   r("images", "label", IMG, f"c{i}={i}")]  # 20 writers of one record's labels
        if i % 2:
            results.append(r("images", "import", "--no-unpack", "--name", f"imp{i}", str(umoci_image.oci_archive)))
        if i % 4 == 0:
            results.append(r("rmi", f"n{i}"))
        return [f"{res.code} {res.stderr}" for res in results if res.code]

    with ThreadPoolExecutor(20) as pool:
        failures = [failure for failures in pool.map(client, range(20)) for failure in failures]
    assert failures == []
    images = {i["name"]: i for i in Dist(served.root).ok("images", "--json").json}
    want = {f"docker.io/library/n{i}:latest" for i in range(20) if i % 4} | \
           {f"docker.io/library/imp{i}:latest" for i in range(20) if i % 2} | {IMG}
    assert set(images) == want
    assert images[IMG]["labels"] == {f"c{i}": str(i) for i in range(20)}
    assert all(images[f"docker.io/library/n{i}:latest"]["labels"] == {"i": str(i)} for i in range(20) if i % 4)
    assert Dist(served.root).ok("content", "verify").code == 0


def test_a_killed_server_mid_ingest_leaves_a_consistent_resumable_store(tmp_path, sockdir):
    import hashlib

    root = tmp_path / "root"
    address = f"unix://{sockdir}/s.sock"
    server = Server(root, address).start()
    data = os.urandom(1 << 20) * 24  # 24 MiB
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    env = {**os.environ}
    env.pop("DIST_ADDRESS", None)
    client = subprocess.Popen([sys.executable, "-m", "dist_tool", "--address", address, "content", "ingest",
                               "--ref", "big"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env)
    try:
        client.stdin.write(data[: 8 << 20])
        client.stdin.flush()
        deadline = time.time() + 20
        while time.time() < deadline:  # the server holds some of it on disk
            active = run_dist("content", "active", "--json", root=root).json
            if active and active[0]["offset"] > 0:
                break
            time.sleep(0.1)
        server.kill(signal.SIGKILL)
        try:
            client.stdin.write(data[8 << 20:])
            client.stdin.close()
        except BrokenPipeError:
            pass
        out, err = client.communicate(timeout=30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 1 and err.decode().startswith("dist: error: --address"), err
    local = Dist(root)
    assert local.ok("content", "ls", "-q").lines == []  # no blob became visible
    local.ok("content", "verify")
    [status] = local.ok("content", "active", "--json").json
    assert status["ref"] == "big" and 0 < status["offset"] <= 8 << 20
    server = Server(root, address).start()  # same root, same (stale) socket path
    try:
        r = Remote(server, tmp_path)
        assert r.ok("content", "ingest", "--ref", "big", "--expected-digest", digest, input=data).lines == [digest]
        assert r.ok("content", "active", "--json").json == []
        local.ok("content", "verify")
    finally:
        server.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tcp_needs_the_token(tmp_path):
    root = tmp_path / "root"
    address = f"tcp://127.0.0.1:{_free_port()}"
    refused = run_dist("serve", "--address", address, root=root)
    assert refused.code == 2 and "--token-file" in refused.stderr
    # A token file that is missing is not found (3); one that is a directory is a wrong argument (2).
    for path, code, why in ((tmp_path / "missing", 3, "no such file"), (tmp_path, 2, "Is a directory")):
        for res in (run_dist("serve", "--address", address, "--token-file", str(path), root=root),
                    run_dist("--address", address, "images", root=root, env={"DIST_TOKEN_FILE": str(path)})):
            assert (res.code, res.stderr) == (code, f"dist: error: token file {path}: {why}\n")
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789\n")
    token.chmod(0o600)  # dist serve refuses a token others can read
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-token-0123456789\n")
    server = Server(root, address, "--token-file", str(token)).start()
    try:
        none = run_dist("--address", address, "images", root=tmp_path / "c")
        bad = run_dist("--address", address, "images", root=tmp_path / "c", env={"DIST_TOKEN_FILE": str(wrong)})
        for res in (none, bad):
            assert res.code == 1 and res.stderr.startswith(f"dist: error: --address {address}: refused")
            assert res.stderr.count("\n") == 1
        good = run_dist("--address", address, "images", "--json", root=tmp_path / "c",
                        env={"DIST_TOKEN_FILE": str(token)})
        assert (good.code, good.json) == (0, [])
        import http.client

        host, port = address[len("tcp://"):].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", "/v1/images")
        assert conn.getresponse().status == 401
        conn.close()
    finally:
        server.kill()


def test_import_unpacks_on_the_server_and_rmi_frees_the_chain(served, tmp_path, umoci_image):
    """The default import (with unpack) works through --address: the server unpacks into its own
    snapshotter, under the importing client's lease."""
    r = Remote(served, tmp_path)
    local = Dist(served.root)
    assert r.ok("images", "import", str(umoci_image.oci_archive)).lines == [IMG]
    [image] = r.ok("images", "--json").json
    assert image["unpackedSize"] and image["unpackedSize"] > 0
    committed = [s for s in local.ok("snapshot", "ls", "--json").json if s["kind"] == "committed"]
    assert len(committed) == len(umoci_image.diff_ids)
    assert local.ok("leases", "-q").lines == []  # the import's lease ended with it
    assert r.ok("images", "--json").stdout == local.ok("images", "--json").stdout
    r.ok("rmi", IMG)
    assert local.ok("snapshot", "ls", "-q").lines == []
    assert local.ok("content", "ls", "-q").lines == []


def _raw(served, request: bytes, then: bytes = b"", timeout: float = 10) -> bytes:
    """Sends raw bytes to the server's socket; the first answer's status line and headers."""
    import socket

    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(timeout)
    sock.connect(served.address[len("unix://"):])
    try:
        sock.sendall(request)
        if then:
            try:
                sock.sendall(then)
            except OSError:
                pass  # the server may close before taking it all: what it answered is what counts
        answer = b""
        while b"\r\n\r\n" not in answer:
            try:
                part = sock.recv(65536)
            except ConnectionResetError:  # dropped without an answer: refused all the same
                part = b""
            if not part:
                break
            answer += part
        return answer
    finally:
        sock.close()


def _server_rss(served) -> int:
    with open(f"/proc/{served.proc.pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) * 1024


ZEROS = b"\0" * (64 << 20)


@pytest.mark.parametrize("request_head, then", [
    (b"POST /v1/images HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", ZEROS),
    (b"PUT /v1/content/ingests/neg HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", ZEROS),
    (b"PUT /v1/content/ingests/trl?mode=append HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
     + b"".join(b"x-t%d: v\r\n" % i for i in range(100)), b"\r\n"),
], ids=["negative-content-length", "negative-chunk-size", "endless-trailers"])
def test_hostile_bodies_are_refused_before_they_are_read(served, request_head, then):
    """The first two once made the server read whatever the client sent next into memory; the
    third kept every trailer line (thousands of 60 KB ones grew it by 350 MB)."""
    before = _server_rss(served)
    answer = _raw(served, request_head, then=then)
    assert not answer or answer.split(b" ", 2)[1] in (b"400", b"413"), answer[:200]
    assert _server_rss(served) - before < 32 << 20
    assert not list((served.root / "content" / "ingest").glob("*/data")) or \
        all(p.stat().st_size == 0 for p in (served.root / "content" / "ingest").glob("*/data"))
    assert _raw(served, b"GET /v1/version HTTP/1.1\r\nHost: x\r\n\r\n").split(b" ", 2)[1] == b"200"


def test_a_negative_read_limit_is_refused(served, tmp_path):
    remote = Remote(served, tmp_path)
    digest = remote.ok("content", "ingest", "--ref", "r", input=b"x" * 1000).lines[0]
    answer = _raw(served, f"GET /v1/content/blobs/{digest}?limit=-2 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.split(b" ", 2)[1] == b"400", answer


def test_leases_in_requests_are_the_requests_own(served, tmp_path):
    import json as json_

    remote = Remote(served, tmp_path)
    body = json_.dumps({"id": "../../x"}).encode()
    answer = _raw(served, b"POST /v1/leases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert answer.split(b" ", 2)[1] == b"400", answer
    head = (b"PUT /v1/content/ingests/other?lease=tenantb/victim HTTP/1.1\r\nHost: x\r\n"
            b"Dist-Namespace: tenanta\r\nTransfer-Encoding: chunked\r\n\r\n")
    answer = _raw(served, head, then=b"1\r\nx\r\n0\r\n\r\n")
    assert answer.split(b" ", 2)[1] == b"400", answer
    assert remote.ok("-n", "tenantb", "leases", "ls", "-q").lines == []


def test_serve_refuses_an_address_that_is_a_file(tmp_path, sockdir):
    precious = sockdir / "precious.txt"
    precious.write_text("data")
    r = run_dist("serve", "--address", f"unix://{precious}", root=tmp_path / "root", timeout=30)
    assert r.code == 4 and "is not a socket" in r.stderr, r.stderr
    assert precious.read_text() == "data"


def test_a_client_that_stops_sending_is_dropped(sockdir, monkeypatch):
    """A half-sent request held a server thread and a descriptor for ever, so enough of them
    (no token needed: it is checked once a request is complete) stopped a server answering."""
    from dist_tool.remote import server as server_module

    assert 0 < server_module.Handler.timeout == server_module.REQUEST_TIMEOUT <= 120  # the default
    monkeypatch.setattr(server_module.Handler, "timeout", 0.5)  # the same mechanism, quicker
    with in_process_server(f"unix://{sockdir}/t.sock", lambda ns: pytest.fail("no request completes")):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        sock.connect(f"{sockdir}/t.sock")
        sock.sendall(b"GET /v1/version HTTP/1.1\r\n")  # and nothing more
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 5
        sock.close()


@pytest.mark.parametrize("body", [b"[]", b"[" * 100_000 + b"]" * 100_000], ids=["a-list", "deeply-nested"])
def test_request_bodies_that_are_not_objects_are_400_not_500(served, body):
    answer = _raw(served, b"POST /v1/gc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert answer.split(b" ", 2)[1] == b"400", answer


@pytest.mark.parametrize("ranged, status", [("bytes=5-2", b"400"), ("bytes=" + "1" * 5000 + "-", b"416"),
                                            ("bytes=0-" + "9" * 5000, b"206"), ("bytes=-" + "9" * 5000, b"206")],
                         ids=["ends-before-start", "start-too-long", "end-too-long", "suffix-too-long"])
def test_a_range_that_ends_before_it_starts_is_refused_and_a_long_number_is_past_the_end(served, tmp_path, ranged,
                                                                                          status):
    """5000 digits were int()'s ValueError: a 500 "internal error" for the client's mistake. Such a
    number is past any blob's end: as a START unsatisfiable (416), as an END or SUFFIX the whole."""
    digest = Remote(served, tmp_path).ok("content", "ingest", "--ref", "r", input=b"x" * 1000).lines[0]
    answer = _raw(served, f"GET /v1/content/blobs/{digest} HTTP/1.1\r\nHost: x\r\nRange: {ranged}\r\n\r\n".encode())
    assert answer.split(b" ", 2)[1] == status, answer
    if status == b"206":
        assert b"Content-Range: bytes 0-999/1000" in answer, answer


BLOB = "sha256:" + "ab" * 32
TARGET = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": BLOB, "size": 2}


@pytest.mark.parametrize("method, path, body, field", [
    ("POST", "/images", {"name": 7, "target": TARGET}, "name"),
    ("POST", "/images", {"name": "docker.io/library/x:1"}, "target"),
    ("PATCH", "/images/x", {"fieldpaths": ["labels"]}, "image"),
    ("PATCH", "/images/docker.io%2Flibrary%2Fx:1",
     {"image": {"name": "docker.io/library/x:1", "target": TARGET}, "fieldpaths": "labels"}, "fieldpaths"),
    ("POST", "/containers", {"id": "c1", "labels": {"a": 1}}, "labels"),
    ("POST", "/containers", {"id": "c1", "spec": ["not", "a", "spec"]}, "spec"),
    ("POST", "/containers", {"id": "c1", "runtime": "runc"}, "runtime"),
    ("POST", "/leases", {"id": "l1", "temporary": "yes"}, "temporary"),
    ("POST", "/leases", {"id": "l1", "expiresAt": "tomorrow"}, "expiresAt"),  # ownerPid is the server's to set
    ("POST", f"/content/blobs/{BLOB}/lease", {"namespace": "default"}, "id"),
    ("PATCH", f"/content/blobs/{BLOB}", {"labels": ["a=b"]}, "labels"),
    ("POST", "/gc", {"only": "images"}, "only"),
    ("POST", "/unpack", {"target": TARGET, "keep": ["default"]}, "keep"),
])
def test_malformed_records_are_invalid_and_name_the_field(served, method, path, body, field):
    """Each was a KeyError or TypeError that the server reported as a malformed request only
    because it took every ValueError, KeyError and TypeError for the client's fault, its own
    bugs too. Fields are now checked where the request is read."""
    from dist_tool.errors import InvalidArgument
    from dist_tool.remote.client import Client

    client = Client(served.address)
    try:
        with pytest.raises(InvalidArgument) as e:
            client.request(method, path, body)
    finally:
        client.close()
    assert field in str(e.value), str(e.value)
    assert not (served.root / "metadata.db").exists() or \
        Remote(served, served.root.parent).ok("images", "ls", "-q").lines == []


@pytest.mark.parametrize("query, field", [
    ("size=1%C2%B2", "size"),  # "1²": str.isdigit() says yes, int() says no
    ("labels=%7Bnot-json", "labels"),
    ("labels=%7B%22a%22%3A1%7D", "labels"),
    ("mode=append&offset=-1", "offset"),
    ("mode=append&expected=%5B", "expected"),
])
def test_malformed_upload_queries_are_400(served, query, field):
    head = (f"PUT /v1/content/ingests/q?{query} HTTP/1.1\r\nHost: x\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    answer = _raw(served, head, then=b"1\r\nx\r\n0\r\n\r\n")
    assert answer.split(b" ", 2)[1] == b"400", answer


def test_a_commit_trailer_that_is_not_json_is_400_and_leaves_the_ingest(served, tmp_path):
    head = (b"PUT /v1/content/ingests/trailer?mode=append HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    answer = _raw(served, head, then=b"1\r\nx\r\n0\r\nDist-Commit: {size\r\n\r\n")
    assert answer.split(b" ", 2)[1] == b"400", answer
    active = Remote(served, tmp_path).ok("content", "active", "--json").json
    assert [(i["ref"], i["offset"]) for i in active] == [("trailer", 1)]


def test_a_server_bug_is_an_internal_error_not_the_clients_fault(sockdir):

    from dist_tool.errors import DistError, InvalidArgument
    from dist_tool.remote.client import Client

    class Images:
        def get(self, name):
            raise KeyError("a bug in the store")

    class BuggySession:
        images = Images()

        def close(self):
            pass

    client = Client(f"unix://{sockdir}/b.sock")
    with in_process_server(f"unix://{sockdir}/b.sock", lambda ns: BuggySession()):
        try:
            with pytest.raises(DistError) as e:
                client.request("GET", "/images/x")
            assert not isinstance(e.value, InvalidArgument)
            assert "internal error: KeyError" in str(e.value)
        finally:
            client.close()


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:\u00b2", "tcp://127.0.0.1:1\u00b2", "tcp://127.0.0.1:70000",
                                     "tcp://127.0.0.1:0"])
def test_a_port_that_is_not_one_is_a_usage_error(tmp_path, address):
    r = run_dist("--address", address, "images", root=tmp_path / "root")
    assert r.code == 2 and "expected tcp://HOST:PORT" in r.stderr, r.stderr
    r = run_dist("serve", "--address", address, root=tmp_path / "root", timeout=30)
    assert r.code == 2, r.stderr


def test_a_remote_writer_hashes_with_the_digest_it_is_given(served, tmp_path):
    """Without ``digest`` passed on, an append-mode upload of a sha512 blob whose size is not
    known was hashed with sha256 and refused at commit."""
    import hashlib

    from dist_tool.remote.client import Client, RemoteContentStore

    data = b"sha512 content " * 1000
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    client = Client(served.address)
    try:
        store = RemoteContentStore(client)
        with store.writer("five-twelve", digest=digest) as w:
            w.write(data)
            assert w.commit(digest=digest) == digest
    finally:
        client.close()
    assert Remote(served, tmp_path).ok("content", "get", digest).stdout == data.decode()


def test_a_blob_cut_short_by_the_server_is_an_error_not_a_shorter_blob(sockdir):
    """http.client's sized reads return b"" when the peer goes away early: 'content get' printed
    1.2 of 22 MB and exited 0 when its server died mid-stream."""
    import threading

    from dist_tool.errors import Unavailable
    from dist_tool.remote.client import Client, RemoteContentStore

    path = str(sockdir / "short.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)

    def answer_short() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n"
                     + b"x" * 10)
        conn.close()

    threading.Thread(target=answer_short, daemon=True).start()
    client = Client(f"unix://{path}")
    try:
        with RemoteContentStore(client).open_blob("sha256:" + "a" * 64) as blob:
            assert blob.read(10) == b"x" * 10
            with pytest.raises(Unavailable, match="connection dropped"):
                blob.read(990)
    finally:
        client.close()
        listener.close()


def test_bodies_that_are_not_json_are_the_requests_fault(served):
    for body in (b"{bad}", b'{"name": "\xff"}', b"{}{}"):
        head = b"POST /v1/images HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        answer = _raw(served, head + body)
        assert answer.split(b" ", 2)[1] == b"400", answer[:300]


def test_a_token_that_no_header_can_carry_is_refused_by_server_and_client(tmp_path):
    token = tmp_path / "two-lines"
    token.write_text("a" * 20 + "\nsecond line\n")
    token.chmod(0o600)  # dist serve refuses a token others can read
    port = _free_port()
    result = run_dist("serve", "--address", f"tcp://127.0.0.1:{port}", "--token-file", str(token),
                      root=tmp_path / "root", timeout=20)
    assert result.code == 2
    assert result.stderr == f"dist: error: token file {token}: the token must be one word of printable ASCII\n"
    result = run_dist("--address", f"tcp://127.0.0.1:{port}", "images", root=tmp_path / "root",
                      env={"DIST_TOKEN_FILE": str(token)})
    assert result.code == 2 and "internal error" not in result.stderr


@pytest.mark.parametrize("kind", ["fifo", "huge"])
def test_a_token_file_that_is_no_small_file_is_refused_by_server_and_client(tmp_path, kind):
    """A FIFO with no writer hung dist serve (and every client) in open(); /dev/zero was read
    until memory ran out; a token longer than any header line started a server no client could
    authenticate to."""
    token = tmp_path / "token"
    if kind == "fifo":
        os.mkfifo(token, 0o600)
        why = "is not a regular file"
    else:
        token.write_text("a" * 70_000)
        token.chmod(0o600)
        why = "is larger than 4096 bytes"
    address = f"tcp://127.0.0.1:{_free_port()}"
    for result in (run_dist("serve", "--address", address, "--token-file", str(token), root=tmp_path / "root",
                            timeout=20),
                   run_dist("--address", address, "images", root=tmp_path / "root", timeout=20,
                            env={"DIST_TOKEN_FILE": str(token)})):
        assert (result.code, result.stderr) == (2, f"dist: error: token file {token}: {why}\n")


def test_a_tcp_address_in_use_is_a_conflict_as_a_live_unix_socket_is(tmp_path):
    token = tmp_path / "token"
    token.write_text("t" * 24)
    token.chmod(0o600)  # dist serve refuses a token others can read
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        result = run_dist("serve", "--address", f"tcp://127.0.0.1:{port}", "--token-file", str(token),
                          root=tmp_path / "root", timeout=20)
    finally:
        holder.close()
    assert result.code == 4
    assert result.stderr == f"dist: error: address tcp://127.0.0.1:{port}: cannot listen: Address already in use\n"


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/images", {"name": "BAD", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                      "digest": "sha256:" + "0" * 64, "size": 1}}),
    ("POST", "/v1/images", {"name": "docker.io/library/x:1", "labels": {"": "x"},
                            "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                       "digest": "sha256:" + "0" * 64, "size": 1}}),
    ("POST", "/v1/images", {"name": "busybox", "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                          "digest": "sha256:" + "0" * 64, "size": 1}}),
    ("POST", "/v1/leases", {"id": "x", "labels": {"": ""}}),
    ("POST", "/v1/leases/missing/resources", {"kind": "anything", "id": "y"}),
    ("PUT", "/v1/content/ingests/r?mode=bogus", None),
], ids=["uppercase-name", "empty-label-key", "short-name", "lease-empty-label-key", "resource-kind",
        "ingest-mode"])
def test_the_server_checks_values_as_the_cli_does(served, tmp_path, method, path, body):
    """A raw client stored an image named BAD, or busybox, that no rmi could remove; every record
    and query value is checked, not only its type."""
    import json

    if body is None:
        raw = (f"{method} {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode()
    else:
        data = json.dumps(body).encode()
        raw = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data
    answer = _raw(served, raw)
    assert answer.split(b" ", 2)[1] == b"400", answer[:300]
    remote = Remote(served, tmp_path)
    assert remote.ok("images", "-q").lines == [] and remote.ok("leases", "-q").lines == []
    assert remote.ok("content", "active", "-q").lines == []


def test_a_container_record_names_a_snapshotter_the_store_has(served, tmp_path):
    """A raw client stored a container whose snapshotter was "../y": the server's own `container rm`,
    -f too, failed on it with "snapshotter ../y: unknown", so nothing could remove the record."""
    import json

    def send(method, path, body):
        data = json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        return _raw(served, head + data).split(b" ", 2)[1]

    record = {"id": "c1", "image": "docker.io/library/x:1", "snapshotter": "overlayfs", "snapshotKey": "c1"}
    assert send("POST", "/v1/containers", {**record, "id": "c2", "snapshotter": "../y"}) == b"400"
    assert send("POST", "/v1/containers", record) == b"201"
    assert send("PATCH", "/v1/containers/c1", {"container": {**record, "snapshotter": "../y"},
                                                "fieldpaths": ["snapshot"]}) == b"400"
    local = Dist(served.root)
    assert local("container", "ls", "-q").lines == ["c1"]
    assert local("container", "rm", "c1").code == 0


@pytest.mark.parametrize("expires", [1e308, float("inf"), float("nan"), -1.0])
def test_a_lease_expires_at_a_time_every_listing_can_print(served, expires):
    """A raw client's lease expiring at 1e308 made `dist leases ls`, local and remote, fail with
    "internal error: OverflowError: timestamp out of range for platform time_t"."""
    from dist_tool.errors import InvalidArgument
    from dist_tool.remote.client import Client

    client = Client(served.address)
    try:
        with pytest.raises(InvalidArgument, match="expiresAt"):
            client.request("POST", "/leases", {"id": "far", "expiresAt": expires})
    finally:
        client.close()
    assert Dist(served.root).ok("leases", "ls", "-q").lines == []


@pytest.mark.parametrize("change, field", [
    ({"lastExit": {"status": 3, "exitedAt": 1e300}}, "exitedAt"),
    ({"lastExit": {"status": "x", "exitedAt": "y"}}, "status"),
    ({"lastExit": {"status": 3}}, "exitedAt"),
    ({"runtime": {"name": "../../bin/sh"}}, "runtime"),
], ids=["exited-too-late", "mistyped", "no-exit-time", "runtime-name"])
def test_a_container_record_holds_what_the_cli_can_show(served, change, field):
    """Each was stored as sent, and `container info` then failed with an internal OverflowError or
    TypeError; a runtime named "../../bin/sh" is one no `container create` accepts."""
    from dist_tool.errors import InvalidArgument
    from dist_tool.remote.client import Client

    record = {"id": "c1", "image": "docker.io/library/x:1", "snapshotter": "overlayfs", "snapshotKey": "c1"}
    client = Client(served.address)
    try:
        client.request("POST", "/containers", record)
        with pytest.raises(InvalidArgument, match=field):
            client.request("POST", "/containers", {**record, "id": "c2", **change})
        with pytest.raises(InvalidArgument, match=field):
            client.request("PATCH", "/containers/c1", {"container": {**record, **change}})
    finally:
        client.close()
    local = Dist(served.root)
    assert local("container", "ls", "-q").lines == ["c1"]
    assert local.ok("container", "info", "c1", "--json").json["lastExit"] is None


def test_what_http_server_refuses_itself_is_a_json_error_naming_the_request(served, tmp_path):
    """A filter past the 64 KiB request line got http.server's HTML 414 page, which the client
    printed as "dist serve: HTTP 414"; a HEAD got an HTML page a client could not read either."""
    result = Remote(served, tmp_path)("images", "ls", "labels.a==" + "a" * 70_000)
    assert (result.code, result.stderr) == (2, "dist: error: request: its line is longer than 65536 bytes "
                                               "(too long a filter or name to send)\n")
    answer = _raw(served, b"OPTIONS /v1/version HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.split(b" ", 2)[1] == b"501" and b"Content-Type: application/json" in answer, answer
    assert Remote(served, tmp_path).ok("images", "-q").lines == []  # and it keeps serving


def test_a_resource_for_a_lease_that_does_not_exist_is_not_found(served):
    import json

    data = json.dumps({"kind": "content", "id": "sha256:" + "0" * 64}).encode()
    raw = (b"POST /v1/leases/missing/resources HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(data)) + data
    assert _raw(served, raw).split(b" ", 2)[1] == b"404"


_LEASE_HOLDER = """
import sys
from dist_tool.remote.client import Client, RemoteLeaseManager
from dist_tool.store.api import LeaseResource

leases = RemoteLeaseManager(Client(sys.argv[1], "default"))
with leases.temporary("import") as (_, lease_id):
    leases.add_resource(lease_id, LeaseResource("content", sys.argv[2]))
    print(lease_id, flush=True)
    sys.stdin.read()
"""


def test_a_client_in_another_pid_namespace_keeps_its_lease_until_it_dies(served, tmp_path):
    """The server judged a temporary lease by the pid the client reported, read in the server's
    /proc: a client in its own pid namespace (pid 1 there) had its lease expired by the next gc,
    which swept the blobs its import was about to reference."""
    local = Dist(served.root)
    digest = local.ok("content", "ingest", "--ref", "held", input=b"held by a lease" * 100).lines[0]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount-proc",
                               sys.executable, "-c", _LEASE_HOLDER, served.address, digest],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        lease_id = holder.stdout.readline().decode().strip()
        assert lease_id.startswith("import-1-"), holder.stderr.read().decode()  # pid 1 in its namespace
        [lease] = local.ok("leases", "--json").json
        assert lease["id"] == lease_id and lease["ownerPid"] not in (None, 1)
        local.ok("gc")
        assert local.ok("content", "ls", "-q").lines == [digest]
    finally:
        holder.kill()  # unshare and, with it, the client: the lease is left behind, abandoned
        holder.wait(timeout=30)
        holder.stdout.close()
        holder.stderr.close()
    deadline = time.monotonic() + 10
    while local.ok("leases", "-q").lines and time.monotonic() < deadline:
        time.sleep(0.1)  # the client, pid 1 of its namespace, dies with unshare a moment later
    local.ok("gc")
    assert local.ok("content", "ls", "-q").lines == []


def test_the_server_decides_who_owns_a_lease(served, tmp_path):
    """A pid in the request body is the client's word about its own /proc: the server takes the
    client's pid from the socket, and a lease that is not an operation's has no owner at all."""
    import json

    local = Dist(served.root)
    for temporary in (True, False):  # ownerStart of the wrong type, too: ignored, not checked
        body = json.dumps({"id": f"claim-{temporary}", "labels": {}, "createdAt": 0, "expiresAt": None,
                           "ownerPid": 1, "ownerStart": 5, "temporary": temporary}).encode()
        answer = _raw(served, b"POST /v1/leases HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        assert answer.split(b" ", 2)[1] == b"201", answer
    owners = {lease["id"]: lease["ownerPid"] for lease in local.ok("leases", "--json").json}
    assert owners == {"claim-True": os.getpid(), "claim-False": None}  # this test is the client


def test_a_tcp_clients_temporary_lease_expires_after_a_day(tmp_path):
    import json

    root = tmp_path / "root"
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789\n")
    token.chmod(0o600)  # dist serve refuses a token others can read
    address = f"tcp://127.0.0.1:{_free_port()}"
    server = Server(root, address, "--token-file", str(token)).start()
    try:
        import http.client

        host, port = address[len("tcp://"):].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        body = json.dumps({"id": "op", "labels": {}, "createdAt": 0, "expiresAt": None, "ownerPid": 1,
                           "ownerStart": "1", "temporary": True})
        conn.request("POST", "/v1/leases", body, {"Authorization": "Bearer s3cret-token-0123456789"})
        assert conn.getresponse().status == 201
        conn.close()
        [lease] = Dist(root).ok("leases", "--json").json
        assert lease["ownerPid"] is None
        from datetime import datetime

        expires = datetime.fromisoformat(lease["expiresAt"].replace("Z", "+00:00")).timestamp()
        assert abs(expires - (time.time() + 24 * 3600)) < 60
        Dist(root).ok("gc")
        assert Dist(root).ok("leases", "-q").lines == ["op"]
    finally:
        server.kill()


def _open_connection(address: str, namespace: str = "default") -> socket.socket:
    """A keep-alive connection that has had one request answered (so the server is serving it)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(address[len("unix://"):])
    _get_images(sock, namespace)
    return sock


def _get_images(sock: socket.socket, namespace: str) -> bytes:
    sock.sendall(f"GET /v1/images HTTP/1.1\r\nHost: x\r\nDist-Namespace: {namespace}\r\n\r\n".encode())
    answer = b""
    while not answer.endswith(b"\r\n\r\n[]"):
        part = sock.recv(65536)
        assert part, answer
        answer += part
    return answer


def test_switching_namespace_on_one_connection_does_not_pile_up_descriptors(served):
    """One keep-alive connection naming a new Dist-Namespace per request held a Session per
    namespace: enough of them ran the server out of descriptors."""
    fds = Path(f"/proc/{served.proc.pid}/fd")
    sock = _open_connection(served.address)
    try:
        before = len(list(fds.iterdir()))
        for i in range(60):
            _get_images(sock, f"ns{i}")
        assert len(list(fds.iterdir())) <= before + 4
    finally:
        sock.close()


def test_clients_past_the_connection_cap_wait_for_a_free_one(tmp_path, sockdir):
    from dist_tool.session import Session

    address = f"unix://{sockdir}/cap.sock"
    with in_process_server(address, lambda ns: Session(root=tmp_path / "root", state=tmp_path / "state",
                                                       namespace=ns)) as srv:
        srv.max_connections = 2
        held = [_open_connection(address), _open_connection(address)]
        waiting = socket.socket(socket.AF_UNIX)
        waiting.settimeout(10)
        waiting.connect(address[len("unix://"):])  # queued by the kernel, not yet accepted
        waiting.sendall(b"GET /v1/version HTTP/1.1\r\nHost: x\r\n\r\n")
        waiting.settimeout(1)
        with pytest.raises(TimeoutError):
            waiting.recv(1)
        held.pop().close()
        waiting.settimeout(10)
        assert waiting.recv(65536).startswith(b"HTTP/1.1 200 ")
        for sock in (*held, waiting):
            sock.close()


def test_blobs_move_at_the_pace_of_a_slow_pipe(tmp_path, sockdir, monkeypatch):
    """A producer pausing longer than a request may take (60 s; 0.5 s here) failed the upload, and
    a consumer as slow failed the download: the server gave up writing to it."""
    import hashlib

    from dist_tool.remote import server as server_module
    from dist_tool.remote.client import Client, RemoteContentStore
    from dist_tool.session import Session

    monkeypatch.setattr(server_module.Handler, "timeout", 0.5)
    address = f"unix://{sockdir}/slow.sock"
    blob = os.urandom(8 << 20)  # more than the socket buffers hold, so the server's writes block
    with in_process_server(address, lambda ns: Session(root=tmp_path / "root", state=tmp_path / "state",
                                                       namespace=ns)):
        read_end, write_end = os.pipe()

        def produce() -> None:
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(blob[:1000])
                pipe.flush()
                time.sleep(1.5)
                pipe.write(blob[1000:])

        producer = threading.Thread(target=produce)
        producer.start()
        content = RemoteContentStore(Client(address, "default"))
        with os.fdopen(read_end, "rb") as pipe:
            digest = content.ingest("slow", pipe, size=len(blob))
        producer.join()
        assert digest == "sha256:" + hashlib.sha256(blob).hexdigest()
        with content.open_blob(digest) as reader:
            first = reader.read(1000)
            time.sleep(1.5)
            assert first + reader.read() == blob
        content.client.close()


def test_serve_refuses_a_token_file_others_can_read(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789\n")
    token.chmod(0o644)
    address = f"tcp://127.0.0.1:{_free_port()}"
    result = run_dist("serve", "--address", address, "--token-file", str(token), root=tmp_path / "root", timeout=20)
    assert (result.code, result.stderr) == (2, f"dist: error: token file {token}: can be read by others "
                                               "(chmod o-rwx it)\n")
    token.chmod(0o640)  # shared with a group, as the unix socket is
    Server(tmp_path / "root", address, "--token-file", str(token)).start().kill()


@pytest.mark.parametrize("head", [
    b"POST /v1/gc HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 14\r\n\r\n",
    b"PUT /v1/content/ingests/r HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"POST /v1/gc HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"PUT /v1/content/ingests/r HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    b"POST /v1/gc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
], ids=["two-lengths", "two-encodings", "both-lengths", "not-only-chunked", "chunked-json"])
def test_a_body_framed_two_ways_is_refused_and_the_connection_closed(served, head):
    """The server went by Content-Length where Transfer-Encoding should win: the chunked bytes it
    left unread were then taken for the client's next request."""
    smuggled = b"2\r\n{}\r\n0\r\n\r\nDELETE /v1/images/docker.io%2Flibrary%2Fx%3A1 HTTP/1.1\r\nHost: x\r\n\r\n"
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(served.address[len("unix://"):])
    try:
        sock.sendall(head + smuggled)
        answer = b""
        while part := sock.recv(65536):
            answer += part
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 400 ") and answer.count(b"HTTP/1.1 ") == 1, answer


def test_a_range_past_the_end_is_416_with_the_size(served, tmp_path):
    remote = Remote(served, tmp_path)
    for data, ranged in ((b"x" * 1000, "bytes=1000-"), (b"x" * 1000, "bytes=-0"), (b"", "bytes=0-")):
        digest = remote.ok("content", "ingest", "--ref", "r", input=data).lines[0]
        answer = _raw(served, f"GET /v1/content/blobs/{digest} HTTP/1.1\r\nHost: x\r\nRange: {ranged}\r\n\r\n"
                      .encode())
        assert answer.startswith(b"HTTP/1.1 416 "), (ranged, answer)  # an empty blob's was 206 "bytes 0--1/0"
        assert f"\r\nContent-Range: bytes */{len(data)}\r\n".encode() in answer, answer


def test_a_chunked_upload_may_say_chunked_as_http_allows(served, tmp_path):
    """'Chunked ' passed the framing check and was then refused by the upload route."""
    head = b"PUT /v1/content/ingests/caps HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked \r\n\r\n"
    answer = _raw(served, head, then=b"2\r\nhi\r\n0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert Remote(served, tmp_path).ok("content", "ls", "-q").lines == ["sha256:" + hashlib.sha256(b"hi").hexdigest()]


def test_clients_trickling_a_request_head_give_their_slots_up_to_waiting_ones(tmp_path, sockdir, monkeypatch):
    """With the connection cap, a few clients sending one header byte now and then (no token
    needed for that) held every slot, and a client with the token waited for ever. Their half
    requests are never run, and a stopping server does not count them as in progress."""
    from dist_tool.remote import server as server_module
    from dist_tool.remote.client import Client, RemoteLeaseManager
    from dist_tool.session import Session
    from dist_tool.store.api import Lease

    monkeypatch.setattr(server_module, "STALLED_HEAD", 0.5)
    address = f"unix://{sockdir}/slow.sock"
    with in_process_server(address, lambda ns: Session(root=tmp_path / "root", state=tmp_path / "state",
                                                       namespace=ns)) as srv:
        srv.max_connections = 2
        leases = RemoteLeaseManager(Client(address))
        leases.create(Lease("keep"))
        leases.client.close()
        trickling = []
        for _ in range(2):
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(10)
            sock.connect(address[len("unix://"):])
            sock.sendall(b"DELETE /v1/leases/keep HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and no more
            trickling.append(sock)
        time.sleep(0.2)  # both are being served: the next client waits in the listen queue
        started = time.monotonic()
        assert leases.get("keep").id == "keep"  # answered once the stalled heads gave their slots up
        assert time.monotonic() - started < 5
        for sock in trickling:
            assert sock.recv(1024) == b""  # hung up without an answer: its DELETE never ran
            sock.close()
        leases.client.close()
        assert [lease.id for lease in leases.list()] == ["keep"]
        leases.client.close()
        half = socket.socket(socket.AF_UNIX)
        half.connect(address[len("unix://"):])
        half.sendall(b"GET /v1/version HTTP/1.1\r\nX-Slow: ")
        time.sleep(0.2)
        srv.shutdown()
        assert srv.stop(grace=0) == 0  # a half-sent head is no request in progress
        half.close()
