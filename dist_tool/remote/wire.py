"""What ``dist serve`` and its client say to each other: records as JSON, errors by kind.

Both ends import this module, so the server and ``dist_tool.remote.client``
cannot drift; a record's field names are its ``to_json`` (SPEC's), read back
here by the ``*_from`` functions. Errors travel as
``{"error": {"kind", "what", "which", "why"}}`` and come out of the client as
the same class (``errors.ERROR_KINDS``), hence the same exit code.
"""

from __future__ import annotations

from dist_tool.errors import ERROR_KINDS, DistError
from dist_tool.oci import Descriptor
from dist_tool.store.api import Container, ContentInfo, Image, IngestStatus, Lease, LeaseResource

API_VERSION = 1
PREFIX = "/v1"
NAMESPACE_HEADER = "Dist-Namespace"
COMMIT_TRAILER = "Dist-Commit"  # chunked ingest upload: commit with these arguments
ABORT_TRAILER = "Dist-Abort"  # chunked ingest upload: the client's source failed; do not commit

# HTTP status per error kind (the client reads the kind, not the status).
STATUS = {"invalid": 400, "not-found": 404, "already-exists": 409, "conflict": 409, "data": 422,
          "unavailable": 503, "failed": 500, "task-failed": 500}


def error_body(e: DistError) -> dict:
    return {"error": {"kind": e.kind, "what": e.what, "which": e.which, "why": e.why}}


def error_from(body: object, fallback: str) -> DistError:
    """The DistError a server's error body names; a body that is not one is a plain failure."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return DistError("dist serve", "", fallback)
    cls = ERROR_KINDS.get(str(err.get("kind")), DistError)
    return cls(str(err.get("what", "")), str(err.get("which", "")), str(err.get("why", "")))


# ---------------------------------------------------------------- records


def image_to(image: Image) -> dict:
    return {"name": image.name, "target": image.target.to_json(), "labels": dict(image.labels),
            "createdAt": image.created_at, "updatedAt": image.updated_at}


def image_from(raw: dict) -> Image:
    return Image(raw["name"], Descriptor.from_json(raw["target"], "image target"), dict(raw.get("labels") or {}),
                 raw.get("createdAt", 0.0), raw.get("updatedAt", 0.0))


def container_to(c: Container) -> dict:
    return c.to_json(full=True)  # container info --json, as README's API table says


def container_from(raw: dict) -> Container:
    runtime = raw.get("runtime") or {}
    return Container(raw["id"], raw.get("image", ""), runtime.get("name", "io.containerd.runc.v2"),
                     dict(runtime.get("options") or {}), dict(raw.get("spec") or {}), raw.get("snapshotter", ""),
                     raw.get("snapshotKey", ""), dict(raw.get("labels") or {}), dict(raw.get("extensions") or {}),
                     raw.get("createdAt", 0.0), raw.get("updatedAt", 0.0), raw.get("lastExit"))


def lease_to(lease: Lease) -> dict:
    return lease.to_json(wire=True)


def lease_from(raw: dict) -> Lease:
    return Lease(raw["id"], dict(raw.get("labels") or {}), raw.get("createdAt", 0.0), raw.get("expiresAt"),
                 raw.get("ownerPid"), raw.get("ownerStart"))


def resource_to(r: LeaseResource) -> dict:
    return {"kind": r.kind, "id": r.id}


def resource_from(raw: dict) -> LeaseResource:
    return LeaseResource(raw["kind"], raw["id"])


def info_from(raw: dict) -> ContentInfo:
    return ContentInfo(raw["digest"], raw["size"], raw["createdAt"], raw["updatedAt"], dict(raw.get("labels") or {}))


def ingest_from(raw: dict) -> IngestStatus:
    return IngestStatus(raw["ref"], raw["offset"], raw["startedAt"], raw["updatedAt"], raw.get("expected"),
                        raw.get("total"), bool(raw.get("active")))
