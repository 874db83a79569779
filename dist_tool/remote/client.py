"""The client side of ``dist serve``: remote stores with the local stores' Protocols.

``RemoteContentStore``, ``RemoteImageStore``, ``RemoteContainerStore`` and
``RemoteLeaseManager`` satisfy ``store/api.py`` as the SQLite stores do, so
the domain and ``commands/`` run unchanged; ``session.py`` alone picks them
for ``--address``. Every call is one request, atomic on the server.

The transport is the standard library's ``http.client`` (as for registries,
see ``remote/transport.py``: httpx would add ~80 ms of imports to every
``dist images``), with an ``AF_UNIX`` connect for ``unix://`` and one
keep-alive connection per process; uploads and blob downloads take a
connection of their own so a half-read stream never blocks the next call.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import BinaryIO
from urllib.parse import quote, urlencode

from dist_tool.errors import DistError, InvalidArgument, NotFound, Unavailable
from dist_tool.oci import Descriptor
from dist_tool.remote import wire
from dist_tool.store.api import (
    Container,
    ContentInfo,
    Image,
    IngestStatus,
    Lease,
    LeaseResource,
    operation_lease,
)

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 600.0  # a gc or a verify of a large blob answers only when done
UPLOAD_CHUNK = 1024 * 1024
TOKEN_FILE_ENV = "DIST_TOKEN_FILE"
MAX_TOKEN_FILE = 4096  # a token is one header value; http.server refuses header lines past 64 KiB


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        # A unix socket whose backlog is full refuses a timed connect with EAGAIN at once rather
        # than queueing it as TCP does; a busy server is worth waiting for, up to the timeout.
        deadline = time.monotonic() + CONNECT_TIMEOUT
        pause = 0.005
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect(self.path)
                break
            except BlockingIOError:
                sock.close()
                if time.monotonic() + pause > deadline:
                    raise TimeoutError(f"connect to {self.path}") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.2)
            except OSError:
                sock.close()
                raise
        sock.settimeout(self.timeout)
        self.sock = sock


def _q(part: str) -> str:
    return quote(part, safe="")


def read_token_file(path: str) -> str:
    """The token in ``path`` (``--token-file``, ``DIST_TOKEN_FILE``), surrounding blanks removed.
    It travels in an HTTP header: a blank, a second line or a control character inside it could
    never be sent, so such a file is refused here, by the server and by every client alike."""
    import stat

    try:
        # O_NONBLOCK: a FIFO opens at once (and is refused below) instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # /dev/zero would be read until memory ran out
                raise InvalidArgument("token file", path, "is not a regular file")
            data = f.read(MAX_TOKEN_FILE + 1)
    except FileNotFoundError:
        raise NotFound("token file", path, "no such file") from None
    except IsADirectoryError as e:  # open() refused it before; os.open lets fstat see it
        raise InvalidArgument("token file", path, e.strerror) from None
    except OSError as e:  # unreadable: the path is wrong, not missing
        raise InvalidArgument("token file", path, e.strerror or "cannot read") from None
    if len(data) > MAX_TOKEN_FILE:
        raise InvalidArgument("token file", path, f"is larger than {MAX_TOKEN_FILE} bytes")
    token = data.decode("utf-8", errors="replace").strip()
    if not all("!" <= c <= "~" for c in token):
        raise InvalidArgument("token file", path, "the token must be one word of printable ASCII")
    return token


class Client:
    """One server address, its token, a namespace, and a keep-alive connection."""

    def __init__(self, address: str, namespace: str = "default", token: str | None = None) -> None:
        self.address = address
        self.namespace = namespace
        kind, where = wire.parse_address(address)
        self._unix = where if kind == "unix" else None
        self._tcp = where if kind == "tcp" else None
        if token is None and os.environ.get(TOKEN_FILE_ENV):
            token = read_token_file(os.environ[TOKEN_FILE_ENV])
        self.token = token
        self._conn: http.client.HTTPConnection | None = None

    def connection(self, timeout: float = READ_TIMEOUT) -> http.client.HTTPConnection:
        if self._unix is not None:
            return _UnixConnection(self._unix, timeout)
        return http.client.HTTPConnection(*self._tcp, timeout=timeout)

    def headers(self, **extra: str) -> dict[str, str]:
        out = {wire.NAMESPACE_HEADER: self.namespace, **extra}
        if self.token:
            out["Authorization"] = f"Bearer {self.token}"
        return out

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -------------------------------------------------------------- requests

    def request(self, method: str, path: str, body: object = None, params: Mapping | None = None,
                raw: bool = False):
        """One call: the decoded JSON answer (bytes when ``raw``), or the server's error raised as
        its DistError class. A keep-alive connection the server dropped is retried once."""
        url = f"{wire.PREFIX}{path}"
        if params:
            url += "?" + urlencode(params, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        headers = self.headers(**({"Content-Type": "application/json"} if data is not None else {}))
        for attempt in (0, 1):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = self.connection()
            try:
                self._conn.request(method, url, body=data, headers=headers)
                response = self._conn.getresponse()
                payload = response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if reused and attempt == 0:
                    continue
                raise self.unavailable(e) from None
            except (OSError, http.client.HTTPException) as e:
                self.close()
                raise self.unavailable(e) from None
            if response.will_close:
                self.close()
            break
        return self.answer(response.status, payload, raw)

    def answer(self, status: int, payload: bytes, raw: bool = False):
        if status == 401:
            raise Unavailable("--address", self.address, "refused: missing or wrong token "
                                                           f"(set {TOKEN_FILE_ENV} to the server's --token-file)")
        if status >= 400:
            try:
                body = json.loads(payload)
            except ValueError:
                body = None
            raise wire.error_from(body, f"HTTP {status}")
        if raw:
            return payload
        return json.loads(payload) if payload else None

    def unavailable(self, e: BaseException) -> Unavailable:
        if isinstance(e, FileNotFoundError | ConnectionRefusedError):
            why = "no server is listening (start one with dist serve)"
        elif isinstance(e, TimeoutError):
            why = "timed out"
        elif isinstance(e, http.client.HTTPException | ConnectionError):
            why = "connection dropped"
        else:
            why = (e.strerror if isinstance(e, OSError) and e.strerror else e.__class__.__name__)
        return Unavailable("--address", self.address, why)


# ---------------------------------------------------------------- images


class RemoteImageStore:
    """The ImageStore Protocol over ``/v1/images``."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.namespace = client.namespace

    def get(self, name: str) -> Image:
        return wire.image_from(self.client.request("GET", f"/images/{_q(name)}"))

    def list(self, *filters: str) -> list[Image]:
        return [wire.image_from(i) for i in self.client.request("GET", "/images", params={"filter": filters})]

    def create(self, image: Image) -> Image:
        return wire.image_from(self.client.request("POST", "/images", wire.image_to(image)))

    def put(self, image: Image) -> Image:
        """Creates or replaces the name's target and labels, keeping ``createdAt``."""
        return wire.image_from(self.client.request("PUT", f"/images/{_q(image.name)}", wire.image_to(image)))

    def update(self, image: Image, *fieldpaths: str) -> Image:
        body = {"image": wire.image_to(image), "fieldpaths": list(fieldpaths)}
        return wire.image_from(self.client.request("PATCH", f"/images/{_q(image.name)}", body))

    def delete(self, name: str) -> None:
        self.client.request("DELETE", f"/images/{_q(name)}")

    def all_namespaces(self) -> Iterator[tuple[str, Image]]:
        for row in self.client.request("GET", "/images", params={"scope": "all"}):
            yield row["namespace"], wire.image_from(row["image"])


# ---------------------------------------------------------------- containers


class RemoteContainerStore:
    """The ContainerStore Protocol over ``/v1/containers``."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.namespace = client.namespace

    def get(self, container_id: str) -> Container:
        return wire.container_from(self.client.request("GET", f"/containers/{_q(container_id)}"))

    def list(self, *filters: str, with_spec: bool = False) -> list[Container]:
        params = {"filter": filters, "spec": "1" if with_spec else "0"}
        return [wire.container_from(c) for c in self.client.request("GET", "/containers", params=params)]

    def create(self, container: Container) -> Container:
        return wire.container_from(self.client.request("POST", "/containers", wire.container_to(container)))

    def update(self, container: Container, *fieldpaths: str) -> Container:
        body = {"container": wire.container_to(container), "fieldpaths": list(fieldpaths)}
        return wire.container_from(self.client.request("PATCH", f"/containers/{_q(container.id)}", body))

    def delete(self, container_id: str) -> None:
        self.client.request("DELETE", f"/containers/{_q(container_id)}")


# ---------------------------------------------------------------- leases


class RemoteLeaseManager:
    """The LeaseManager Protocol over ``/v1/leases``."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.namespace = client.namespace

    def get(self, lease_id: str) -> Lease:
        return wire.lease_from(self.client.request("GET", f"/leases/{_q(lease_id)}"))

    def list(self, *filters: str) -> list[Lease]:
        return [wire.lease_from(x) for x in self.client.request("GET", "/leases", params={"filter": filters})]

    def create(self, lease: Lease, *, operation: bool = False) -> Lease:
        body = {**wire.lease_to(lease), "temporary": True} if operation else wire.lease_to(lease)
        return wire.lease_from(self.client.request("POST", "/leases", body))

    def delete(self, lease_id: str) -> None:
        self.client.request("DELETE", f"/leases/{_q(lease_id)}")

    def add_resource(self, lease_id: str, resource: LeaseResource) -> None:
        self.client.request("POST", f"/leases/{_q(lease_id)}/resources", wire.resource_to(resource))

    def resources(self, lease_id: str) -> list[LeaseResource]:
        return [wire.resource_from(r) for r in self.client.request("GET", f"/leases/{_q(lease_id)}/resources")]

    def temporary(self, purpose: str) -> AbstractContextManager[tuple[str, str]]:
        """The server's gc sees this client's operation lease expire when this process dies (on
        the same host: the same pid namespace)."""
        return operation_lease(self, purpose)


# ---------------------------------------------------------------- content


class _BlobReader:
    """A committed blob streamed from the server on a connection of its own."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
                 client: Client) -> None:
        self._conn = conn
        self._response = response
        self._client = client

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._response.read(None if n is None or n < 0 else n)
        except (OSError, http.client.HTTPException) as e:
            raise self._client.unavailable(e) from None
        if not data and n != 0:
            self._check_whole()
        return data

    def readinto(self, buffer) -> int:
        try:
            count = self._response.readinto(buffer)
        except (OSError, http.client.HTTPException) as e:
            raise self._client.unavailable(e) from None
        if not count and len(buffer):
            self._check_whole()
        return count

    def _check_whole(self) -> None:
        """At the end of the stream: http.client's sized reads return b"" when the server goes
        away early, so a blob cut short would pass for a whole one."""
        if self._response.length:  # bytes of Content-Length still owed
            raise self._client.unavailable(http.client.IncompleteRead(b"", self._response.length))

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._response.close()
        self._conn.close()

    def __enter__(self) -> _BlobReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Upload:
    """A chunked PUT to ``/v1/content/ingests/REF`` on its own connection; ``finish`` reads the answer."""

    def __init__(self, client: Client, ref: str, params: dict) -> None:
        self.client = client
        self.conn = client.connection()
        url = f"{wire.PREFIX}/content/ingests/{_q(ref)}?{urlencode({k: v for k, v in params.items() if v is not None})}"
        try:
            self.conn.putrequest("PUT", url, skip_accept_encoding=True)
            for key, value in client.headers(**{"Transfer-Encoding": "chunked",
                                                "Content-Type": "application/octet-stream"}).items():
                self.conn.putheader(key, value)
            self.conn.endheaders()
        except OSError as e:
            self.conn.close()
            raise client.unavailable(e) from None

        self.done = False
        self._answer = None

    def send(self, data) -> bool:
        """False once the server has answered early (an error, or a blob it already holds)."""
        if self.done:
            return False
        if not data:
            return True
        try:
            self.conn.send(b"%x\r\n" % len(data))
            self.conn.send(data)
            self.conn.send(b"\r\n")
        except OSError:
            self.finish({})  # raises the server's error, if its answer was one
            return False
        return True

    def finish(self, trailers: Mapping[str, str]):
        if self.done:
            return self._answer
        self.done = True
        try:
            try:
                self.conn.send(b"0\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in trailers.items()) + b"\r\n")
            except OSError:
                pass  # the server may have answered already; read it
            response = self.conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise self.client.unavailable(e) from None
        finally:
            self.conn.close()
        self._answer = self.client.answer(response.status, payload)
        return self._answer


class RemoteWriter:
    """Writer over one chunked upload in ``append`` mode: bytes go out as they are written; the
    server commits only when ``commit`` sends the Dist-Commit trailer after the last chunk."""

    def __init__(self, store: RemoteContentStore, ref: str, expected: Descriptor | None,
                 lease: tuple[str, str] | None, wait: bool, digest: str | None) -> None:
        self.store = store
        self.ref = ref
        status = next((s for s in store.ingests() if s.ref == ref), None)
        if status is not None and status.active and not wait:
            from dist_tool.errors import Conflict

            raise Conflict("ingest", ref, "locked by another writer")
        self.offset = status.offset if status else 0
        self._upload = _Upload(store.client, ref, {
            "mode": "append", "offset": self.offset, "wait": "1" if wait else None,
            "expected": json.dumps(expected.to_json()) if expected else None, "digest": digest,
            "lease": "/".join(lease) if lease else None})
        self._closed = False

    def write(self, data: bytes) -> None:
        self._upload.send(data)
        self.offset += len(data)

    def check_room(self, size: int) -> None:
        """The server checks its own disk when the upload opens with an expected size."""

    def commit(self, size: int | None = None, digest: str | None = None,
               labels: Mapping[str, str] | None = None) -> str:
        self._closed = True
        args = {"size": size, "digest": digest, "labels": dict(labels) if labels else None}
        answer = self._upload.finish({wire.COMMIT_TRAILER: json.dumps(args)})
        return answer["digest"]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._upload.finish({})

    def abort(self) -> None:
        self.close()
        try:
            self.store.abort_ingest(self.ref)
        except NotFound:
            pass

    def __enter__(self) -> RemoteWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._upload.finish({wire.ABORT_TRAILER: "1"} if exc[0] is not None else {})
            except DistError:
                if exc[0] is None:
                    raise


class RemoteContentStore:
    """The ContentStore Protocol over ``/v1/content``."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def ensure_layout(self) -> None:
        """The server's store has its layout (made when the server opens it)."""

    # Provider / InfoProvider
    def open_blob(self, digest: str) -> BinaryIO:
        conn = self.client.connection()
        try:
            conn.request("GET", f"{wire.PREFIX}/content/blobs/{_q(digest)}", headers=self.client.headers())
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise self.client.unavailable(e) from None
        if response.status >= 400:
            payload = response.read()
            conn.close()
            self.client.answer(response.status, payload)
        return _BlobReader(conn, response, self.client)  # type: ignore[return-value]

    def read_blob(self, digest: str, limit: int) -> bytes:
        return self.client.request("GET", f"/content/blobs/{_q(digest)}", params={"limit": limit}, raw=True)

    def exists(self, digest: str) -> bool:
        try:
            self.info(digest)
        except NotFound:
            return False
        return True

    def info(self, digest: str) -> ContentInfo:
        return wire.info_from(self.client.request("GET", f"/content/blobs/{_q(digest)}/info"))

    def present(self) -> dict[str, int]:
        return self.client.request("GET", "/content/blobs", params={"view": "present"})

    # Ingester
    def writer(self, ref: str, expected: Descriptor | None = None,
               lease: tuple[str, str] | None = None, wait: bool = False, digest: str | None = None) -> RemoteWriter:
        return RemoteWriter(self, ref, expected, lease, wait, digest)

    def ingest(self, ref: str, stream: BinaryIO, *, size: int | None = None, digest: str | None = None,
               labels: Mapping[str, str] | None = None, lease: tuple[str, str] | None = None,
               progress: Callable[[int], None] | None = None, wait: bool = False,
               keep_partial: bool = True) -> str:
        """The whole stream goes to the server, which resumes, verifies and commits it as a local
        ``content ingest`` does. If reading ``stream`` fails, the server is told (Dist-Abort) and
        keeps the partial ingest only when ``keep_partial``."""
        upload = _Upload(self.client, ref, {
            "mode": "stream", "size": size, "digest": digest, "labels": json.dumps(dict(labels or {})),
            "lease": "/".join(lease) if lease else None, "wait": "1" if wait else None,
            "keep_partial": "1" if keep_partial else "0"})
        sent = 0
        try:
            while chunk := stream.read(UPLOAD_CHUNK):
                if not upload.send(chunk):
                    break  # the server holds the blob already and said so
                sent += len(chunk)
                if progress:
                    progress(sent)
        except BaseException:
            try:
                upload.finish({wire.ABORT_TRAILER: "1"})
            except DistError:
                pass
            raise
        return upload.finish({})["digest"]

    def add_to_lease(self, digest: str, lease: tuple[str, str]) -> bool:
        body = {"namespace": lease[0], "id": lease[1]}
        return self.client.request("POST", f"/content/blobs/{_q(digest)}/lease", body)["present"]

    # IngestManager
    def ingests(self) -> list[IngestStatus]:
        return [wire.ingest_from(i) for i in self.client.request("GET", "/content/ingests")]

    def abort_ingest(self, ref: str) -> None:
        self.client.request("DELETE", f"/content/ingests/{_q(ref)}")

    # ContentManager
    def list(self, *filters: str) -> list[ContentInfo]:
        infos = [wire.info_from(i) for i in self.client.request("GET", "/content/blobs")]
        if not filters:
            return infos
        from dist_tool.filters import select

        return select(infos, filters, ContentInfo.to_json)

    def delete(self, digest: str) -> None:
        self.client.request("DELETE", f"/content/blobs/{_q(digest)}")

    def update_labels(self, digest: str, labels: Mapping[str, str]) -> ContentInfo:
        return wire.info_from(self.client.request("PATCH", f"/content/blobs/{_q(digest)}",
                                                  {"labels": dict(labels)}))

    def verify(self, digest: str) -> str | None:
        """Re-hashes the blob on the server; None when intact, else what is wrong."""
        return self.client.request("POST", f"/content/blobs/{_q(digest)}/verify")["problem"]


# ---------------------------------------------------------------- the rest


def collect_garbage(client: Client, dry_run: bool = False, only: set[str] | None = None):
    """``POST /v1/gc``: the server's gc.collect, as a GcResult."""
    from dist_tool.gc import GcResult

    raw = client.request("POST", "/gc", {"dryRun": dry_run, "only": sorted(only) if only is not None else None})
    removed = raw["removed"]
    blobs = [(b["digest"], b["size"]) for b in removed["content"]]
    return GcResult(blobs=blobs,
                    leases=[(x["namespace"], x["id"]) for x in removed["leases"]],
                    ingests=list(removed["ingests"]),
                    snapshots=[("snapshot", x["namespace"], x["snapshotter"], x["key"]) for x in removed["snapshots"]],
                    directories=list(removed.get("directories") or []),
                    # bytesFreed is the blobs' sizes plus the directories' disk usage.
                    directory_bytes=max(0, raw.get("bytesFreed", 0) - sum(size for _, size in blobs)),
                    dry_run=raw["dryRun"], unreadable=list(raw.get("unreadable") or []))


def unpack_target(client: Client, target: Descriptor, *, platform: str | None,
                  keep: tuple[str, str] | None) -> str | None:
    """``POST /v1/unpack``: the server unpacks ``target`` (its layers are in its content store)."""
    raw = client.request("POST", "/unpack", {"target": target.to_json(), "platform": platform,
                                              "keep": list(keep) if keep else None})
    return raw.get("chain")


def unpacked_snapshot_sizes(client: Client, snapshotter: str | None) -> dict[str, int]:
    return client.request("GET", "/snapshots/unpacked-sizes",
                          params={"snapshotter": snapshotter} if snapshotter else None)
