"""The store's records and its small role Protocols.

Domain modules (images, archive, gc, ...) take these Protocols, never an
implementation; ``session.py`` is the only place that picks one (the SQLite
and file-backed stores here, or the remote ones behind ``dist serve``).
Times are seconds since the epoch (UTC); ``render`` formats them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from dist_tool.oci import Descriptor


@dataclass(frozen=True)
class ContentInfo:
    digest: str
    size: int
    created_at: float
    updated_at: float
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"digest": self.digest, "size": self.size, "createdAt": self.created_at,
                "updatedAt": self.updated_at, "labels": dict(self.labels)}


@dataclass(frozen=True)
class IngestStatus:
    ref: str
    offset: int
    started_at: float
    updated_at: float
    expected: str | None = None
    total: int | None = None
    active: bool = False  # a live writer holds its lock

    def to_json(self) -> dict:
        return {"ref": self.ref, "offset": self.offset, "total": self.total,
                "expected": self.expected, "startedAt": self.started_at,
                "updatedAt": self.updated_at, "active": self.active}


@dataclass(frozen=True)
class Image:
    name: str
    target: Descriptor
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class Lease:
    id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    expires_at: float | None = None
    owner_pid: int | None = None
    owner_start: str | None = None  # /proc/PID/stat start time: a recycled pid is not the owner

    def expired(self, now: float) -> bool:
        """SPEC: a lease whose owner process is gone, or whose expiry passed, is expired."""
        from dist_tool.proc import alive

        if self.expires_at is not None and self.expires_at <= now:
            return True
        return self.owner_pid is not None and not alive(self.owner_pid, self.owner_start)

    def to_json(self) -> dict:
        return {"id": self.id, "labels": dict(self.labels), "createdAt": self.created_at,
                "expiresAt": self.expires_at, "ownerPid": self.owner_pid}


@dataclass(frozen=True)
class LeaseResource:
    kind: str  # "content", "ingest", "snapshots/<snapshotter>"
    id: str


@dataclass(frozen=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_json(self) -> dict:
        return {"name": self.name, "labels": dict(self.labels),
                "createdAt": self.created_at, "updatedAt": self.updated_at}


@dataclass(frozen=True)
class SnapshotInfo:
    key: str
    parent: str | None
    kind: str  # "active", "committed" or "view"
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_json(self) -> dict:
        return {"key": self.key, "parent": self.parent, "kind": self.kind, "createdAt": self.created_at,
                "updatedAt": self.updated_at, "labels": dict(self.labels)}


@dataclass(frozen=True)
class Mount:
    """One mount(2) call: what ``mount -t TYPE -o OPTIONS SOURCE TARGET`` would do."""

    type: str
    source: str
    options: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"type": self.type, "source": self.source, "options": list(self.options)}


@dataclass(frozen=True)
class Usage:
    size: int
    inodes: int

    def to_json(self) -> dict:
        return {"size": self.size, "inodes": self.inodes}


@dataclass(frozen=True)
class Container:
    """A container is metadata only: what a task needs, pinned."""

    id: str
    image: str
    runtime_name: str = "io.containerd.runc.v2"
    runtime_options: Mapping[str, object] = field(default_factory=dict)
    spec: Mapping[str, object] = field(default_factory=dict)
    snapshotter: str = ""
    snapshot_key: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    extensions: Mapping[str, object] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    last_exit: Mapping[str, object] | None = None  # {"status": int, "exitedAt": float}

    def to_json(self, full: bool = False) -> dict:
        out = {"id": self.id, "image": self.image,
               "runtime": {"name": self.runtime_name, "options": dict(self.runtime_options)},
               "snapshotter": self.snapshotter, "snapshotKey": self.snapshot_key,
               "labels": dict(self.labels), "createdAt": self.created_at, "updatedAt": self.updated_at}
        if full:
            out["spec"] = dict(self.spec)
            out["extensions"] = dict(self.extensions)
            out["lastExit"] = dict(self.last_exit) if self.last_exit else None
        return out


# ---------------------------------------------------------------- content


class Provider(Protocol):
    def open_blob(self, digest: str) -> BinaryIO:
        """Opens a committed blob for reading. Raises NotFound."""
        ...

    def read_blob(self, digest: str, limit: int) -> bytes:
        """Reads a whole committed blob of at most ``limit`` bytes (DataError if larger)."""
        ...


class InfoProvider(Protocol):
    def info(self, digest: str) -> ContentInfo:
        """Raises NotFound."""
        ...

    def present(self) -> Mapping[str, int]:
        """Every committed digest and its size, in one scan (no N+1 in listings)."""
        ...


class Writer(Protocol):
    offset: int

    def write(self, data: bytes) -> None: ...

    def commit(self, size: int | None = None, digest: str | None = None,
               labels: Mapping[str, str] | None = None) -> str:
        """Verifies size and digest, then makes the blob visible by an atomic rename.

        On mismatch raises DataError, discards the ingest and leaves nothing
        visible. An already-present digest is not an error. Returns the digest.
        """
        ...

    def close(self) -> None:
        """Releases the writer; an uncommitted ingest stays resumable by its ref."""
        ...

    def abort(self) -> None:
        """Discards the ingest."""
        ...


class Ingester(Protocol):
    def writer(self, ref: str, expected: Descriptor | None = None,
               lease: tuple[str, str] | None = None, wait: bool = False) -> Writer:
        """Opens (or resumes) the ingest named ``ref``. Raises Conflict while another
        live writer holds it (unless ``wait``). ``lease`` = (namespace, lease id) protects the blob."""
        ...

    def ingest(self, ref: str, stream: BinaryIO, *, size: int | None = None, digest: str | None = None,
               labels: Mapping[str, str] | None = None, lease: tuple[str, str] | None = None,
               progress: Callable[[int], None] | None = None, wait: bool = False,
               keep_partial: bool = True) -> str:
        """Copies a whole stream into the store, resuming ``ref``, verifying, committing."""
        ...

    def add_to_lease(self, digest: str, lease: tuple[str, str]) -> bool:
        """Protects a present blob with ``lease``; False when it is absent."""
        ...


class IngestManager(Protocol):
    def ingests(self) -> list[IngestStatus]: ...

    def abort_ingest(self, ref: str) -> None: ...


class ContentManager(Protocol):
    def list(self) -> list[ContentInfo]: ...

    def delete(self, digest: str) -> None:
        """Removes a blob. Raises NotFound."""
        ...

    def update_labels(self, digest: str, labels: Mapping[str, str]) -> ContentInfo:
        """Applies KEY=VALUE updates (empty value removes). Raises NotFound."""
        ...


class ContentStore(Provider, InfoProvider, Ingester, IngestManager, ContentManager, Protocol):
    pass


# ---------------------------------------------------------------- images and the rest


class ImageStore(Protocol):
    """Names → target descriptors, per namespace."""

    def get(self, name: str) -> Image:
        """Raises NotFound."""
        ...

    def list(self, *filters: str) -> list[Image]:
        """Images matching any filter (containerd syntax); all without filters."""
        ...

    def create(self, image: Image) -> Image:
        """Raises AlreadyExists."""
        ...

    def update(self, image: Image, *fieldpaths: str) -> Image:
        """Replaces the named fields (``target``, ``labels``, ``labels.KEY``); all when none.
        Raises NotFound."""
        ...

    def delete(self, name: str) -> None:
        """Raises NotFound."""
        ...

    def all_namespaces(self) -> Iterator[tuple[str, Image]]:
        """Every image of every namespace: the roots garbage collection starts from."""
        ...


class LeaseManager(Protocol):
    def get(self, lease_id: str) -> Lease: ...

    def list(self, *filters: str) -> list[Lease]: ...

    def create(self, lease: Lease) -> Lease: ...

    def delete(self, lease_id: str) -> None: ...

    def add_resource(self, lease_id: str, resource: LeaseResource) -> None: ...

    def resources(self, lease_id: str) -> list[LeaseResource]: ...


class Snapshotter(Protocol):
    """containerd's snapshotter verbs, per namespace. Committed snapshots are named by chain ID."""

    name: str

    def prepare(self, key: str, parent: str | None = None,
                labels: Mapping[str, str] | None = None) -> list[Mount]:
        """A new active (writable) snapshot on ``parent``. AlreadyExists; NotFound for the parent."""
        ...

    def view(self, key: str, parent: str, labels: Mapping[str, str] | None = None) -> list[Mount]:
        """A read-only snapshot of ``parent``."""
        ...

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Turns active ``key`` into committed ``name``; ``key`` is gone afterwards."""
        ...

    def remove(self, key: str) -> None:
        """Removes a snapshot. Conflict while it has children (or a container uses it)."""
        ...

    def stat(self, key: str) -> SnapshotInfo: ...

    def update(self, info: SnapshotInfo, *fieldpaths: str) -> SnapshotInfo: ...

    def list(self, *filters: str) -> list[SnapshotInfo]: ...

    def usage(self, key: str) -> Usage: ...

    def mounts(self, key: str) -> list[Mount]: ...


class ContainerStore(Protocol):
    def get(self, container_id: str) -> Container:
        """Raises NotFound."""
        ...

    def list(self, *filters: str) -> list[Container]: ...

    def create(self, container: Container) -> Container:
        """Raises AlreadyExists."""
        ...

    def update(self, container: Container, *fieldpaths: str) -> Container:
        """Replaces the named fields (``labels``, ``labels.KEY``, ``spec``, ``image``, ``runtime``,
        ``extensions``, ``lastExit``); all mutable ones when none. Raises NotFound."""
        ...

    def delete(self, container_id: str) -> None:
        """Raises NotFound."""
        ...


class NamespaceStore(Protocol):
    def get(self, name: str) -> Namespace: ...

    def list(self, *filters: str) -> list[Namespace]: ...

    def create(self, namespace: Namespace) -> Namespace: ...

    def update(self, namespace: Namespace, *fieldpaths: str) -> Namespace: ...

    def delete(self, name: str) -> None:
        """Raises Conflict unless the namespace holds nothing."""
        ...


__all__: Sequence[str] = (
    "ContentInfo", "IngestStatus", "Image", "Lease", "LeaseResource", "Namespace",
    "Provider", "InfoProvider", "Writer", "Ingester", "IngestManager", "ContentManager",
    "ContentStore", "ImageStore", "LeaseManager", "NamespaceStore", "SnapshotInfo", "Mount", "Usage",
    "Container", "Snapshotter", "ContainerStore",
)
