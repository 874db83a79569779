"""What ``dist serve`` and its client say to each other: records as JSON, errors by kind.

Both ends import this module, so the server and ``dist_tool.remote.client``
cannot drift; a record's field names are its ``to_json`` (SPEC's), read back
here by the ``*_from`` functions. Errors travel as
``{"error": {"kind", "what", "which", "why"}}`` and come out of the client as
the same class (``errors.ERROR_KINDS``), hence the same exit code.
"""

from __future__ import annotations

from collections.abc import Mapping

from dist_tool.errors import ERROR_KINDS, DistError, InvalidArgument
from dist_tool.oci import Descriptor
from dist_tool.store.api import Container, ContentInfo, Image, IngestStatus, Lease, LeaseResource
from dist_tool.validate import decimal

API_VERSION = 1
PREFIX = "/v1"
NAMESPACE_HEADER = "Dist-Namespace"
COMMIT_TRAILER = "Dist-Commit"  # chunked ingest upload: commit with these arguments
ABORT_TRAILER = "Dist-Abort"  # chunked ingest upload: the client's source failed; do not commit

# HTTP status per error kind (the client reads the kind, not the status).
STATUS = {"invalid": 400, "not-found": 404, "already-exists": 409, "conflict": 409, "data": 422,
          "unavailable": 503, "failed": 500, "task-failed": 500}


def parse_address(address: str) -> tuple[str, str | tuple[str, int]]:
    """``unix:///PATH`` → ("unix", PATH); ``tcp://HOST:PORT`` → ("tcp", (HOST, PORT))."""
    if address.startswith("unix://"):
        path = address[len("unix://"):]
        if not path.startswith("/"):
            raise InvalidArgument("address", address, "a unix socket needs an absolute path: unix:///PATH")
        return "unix", path
    if address.startswith("tcp://"):
        host, sep, raw_port = address[len("tcp://"):].rpartition(":")
        if host.startswith("[") and host.endswith("]"):  # an IPv6 address: [::1]
            host = host[1:-1]
        port = decimal(raw_port)
        # strip("[]") made "[]" an empty host and "]h[" the host h
        if not sep or not host or "[" in host or "]" in host or port is None or not 0 < port < 65536:
            raise InvalidArgument("address", address, "expected tcp://HOST:PORT")
        return "tcp", (host, port)
    raise InvalidArgument("address", address, "expected unix:///PATH or tcp://HOST:PORT")


def error_body(e: DistError) -> dict:
    return {"error": {"kind": e.kind, "what": e.what, "which": e.which, "why": e.why}}


def error_from(body: object, fallback: str) -> DistError:
    """The DistError a server's error body names; a body that is not one is a plain failure."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return DistError("dist serve", "", fallback)
    cls = ERROR_KINDS.get(str(err.get("kind")), DistError)
    return cls(str(err.get("what", "")), str(err.get("which", "")), str(err.get("why", "")))


# ---------------------------------------------------------------- reading JSON

_REQUIRED = object()


class Fields:
    """One JSON object of a request or a reply, read field by field. A missing or mistyped field
    is an InvalidArgument naming it, so what a client sends can never pass for a bug in the server
    (whose own ValueErrors and KeyErrors are internal errors)."""

    def __init__(self, raw: object, what: str) -> None:
        if not isinstance(raw, Mapping):
            raise InvalidArgument(what, "", "is not a JSON object")
        self.raw, self.what = raw, what

    def _bad(self, key: str, expected: str) -> InvalidArgument:
        return InvalidArgument(self.what, key, f"is not {expected}")

    def get(self, key: str, kind: type | tuple[type, ...], default: object = _REQUIRED):
        value = self.raw.get(key)
        if value is None:
            if default is _REQUIRED:
                raise InvalidArgument(self.what, key, "is missing")
            return default
        # bool is an int to Python, never to JSON's readers
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            names = kind if isinstance(kind, tuple) else (kind,)
            raise self._bad(key, "a " + " or ".join(_TYPE_NAMES[t] for t in names))
        return value

    def text(self, key: str, default: object = _REQUIRED) -> str:
        return self.get(key, str, default)

    def number(self, key: str, default: float = 0.0) -> float:
        return self.get(key, (int, float), default)

    def mapping(self, key: str) -> dict:
        return dict(self.get(key, dict, {}))

    def strings(self, key: str) -> dict[str, str]:
        return string_map(self.get(key, dict, {}), self.what, key)

    def string_list(self, key: str, default: object = ()) -> list[str] | None:
        value = self.get(key, list, default)
        if value is None:
            return None
        if not all(isinstance(v, str) for v in value):
            raise self._bad(key, "a list of strings")
        return list(value)


def string_map(raw: object, what: str, which: str = "") -> dict[str, str]:
    """Labels, as JSON carries them: an object of strings."""
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise InvalidArgument(what, which, "is not a map of strings")
    return dict(raw)


_TYPE_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "JSON object",
               list: "list"}


# ---------------------------------------------------------------- records


def image_to(image: Image) -> dict:
    return {"name": image.name, "target": image.target.to_json(), "labels": dict(image.labels),
            "createdAt": image.created_at, "updatedAt": image.updated_at}


def image_from(raw: object) -> Image:
    f = Fields(raw, "image")
    return Image(f.text("name"), Descriptor.from_json(f.get("target", dict), "image target"), f.strings("labels"),
                 f.number("createdAt"), f.number("updatedAt"))


def container_to(c: Container) -> dict:
    return c.to_json(full=True)  # container info --json, as README's API table says


def container_from(raw: object) -> Container:
    f = Fields(raw, "container")
    runtime = Fields(f.get("runtime", dict, {}), "container.runtime")
    return Container(f.text("id"), f.text("image", ""), runtime.text("name", "io.containerd.runc.v2"),
                     runtime.mapping("options"), f.mapping("spec"), f.text("snapshotter", ""),
                     f.text("snapshotKey", ""), f.strings("labels"), f.mapping("extensions"),
                     f.number("createdAt"), f.number("updatedAt"), f.get("lastExit", dict, None))


def lease_to(lease: Lease) -> dict:
    return lease.to_json(wire=True)


def lease_from(raw: object) -> Lease:
    f = Fields(raw, "lease")
    return Lease(f.text("id"), f.strings("labels"), f.number("createdAt"), f.get("expiresAt", (int, float), None),
                 f.get("ownerPid", int, None), f.text("ownerStart", None))


def resource_to(r: LeaseResource) -> dict:
    return {"kind": r.kind, "id": r.id}


RESOURCE_KINDS = ("content", "ingest", "snapshots/overlayfs", "snapshots/native")  # what gc marks from a lease


def resource_from(raw: object) -> LeaseResource:
    f = Fields(raw, "lease resource")
    return LeaseResource(f.text("kind"), f.text("id"))


def info_from(raw: object) -> ContentInfo:
    f = Fields(raw, "content info")
    return ContentInfo(f.text("digest"), f.get("size", int), f.number("createdAt"), f.number("updatedAt"),
                       f.strings("labels"))


def ingest_from(raw: object) -> IngestStatus:
    f = Fields(raw, "ingest")
    return IngestStatus(f.text("ref"), f.get("offset", int), f.number("startedAt"), f.number("updatedAt"),
                        f.text("expected", None), f.get("total", int, None), f.get("active", bool, False))
