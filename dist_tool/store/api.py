"""The store's records and its small role Protocols.

Domain modules (images, archive, gc, ...) take these Protocols, never an
implementation; ``session.py`` is the only place that picks one (the SQLite
and file-backed stores here, or the remote ones behind ``dist serve``).
Times are seconds since the epoch (UTC); ``render`` formats them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import BinaryIO, Protocol

from dist_tool.oci import Descriptor
from dist_tool.store.records import (  # noqa: F401 - the records are part of this module's interface
    EMPTY,
    Container,
    ContentInfo,
    Image,
    IngestStatus,
    Lease,
    LeaseResource,
    Mount,
    Namespace,
    SnapshotInfo,
    Staged,
    Usage,
)

# A snapshot or blob with this label is a root of garbage collection by itself (containerd's).
GC_ROOT_LABEL = "containerd.io/gc.root"

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

    def check_room(self, size: int) -> None:
        """Unavailable when a blob of ``size`` bytes would not fit, from ``offset`` on, in the
        free space of the store's file system: refused before a byte is written (an ingest with
        nothing written yet is discarded with the refusal)."""
        ...

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
               lease: tuple[str, str] | None = None, wait: bool = False, digest: str | None = None) -> Writer:
        """Opens (or resumes) the ingest named ``ref``. Raises Conflict while another
        live writer holds it (unless ``wait``). ``lease`` = (namespace, lease id) protects the blob.
        ``digest`` without ``expected``: the hash to compute when the size is not known."""
        ...

    def ingest(self, ref: str, stream: BinaryIO, *, size: int | None = None, digest: str | None = None,
               labels: Mapping[str, str] | None = None, lease: tuple[str, str] | None = None,
               progress: Callable[[int], None] | None = None, wait: bool = False,
               keep_partial: bool = True) -> str:
        """Copies a whole stream into the store, resuming ``ref``, verifying, committing."""
        ...

    def ensure_layout(self) -> None:
        """Creates the OCI layout before the first blob goes in (the server's exists already)."""
        ...

    def add_to_lease(self, digest: str, lease: tuple[str, str]) -> bool:
        """Protects a present blob with ``lease``; False when it is absent."""
        ...


class IngestManager(Protocol):
    def ingests(self) -> list[IngestStatus]: ...

    def abort_ingest(self, ref: str) -> None: ...


class ContentManager(Protocol):
    def list(self, *filters: str) -> list[ContentInfo]:
        """Blobs matching any filter (containerd syntax, over the JSON fields); all without filters."""
        ...

    def delete(self, digest: str) -> None:
        """Removes a blob. Raises NotFound."""
        ...

    def update_labels(self, digest: str, labels: Mapping[str, str]) -> ContentInfo:
        """Applies KEY=VALUE updates (empty value removes). Raises NotFound."""
        ...

    def verify(self, digest: str) -> str | None:
        """Re-hashes a committed blob: None when intact, else what is wrong. Raises NotFound."""
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

    def put(self, image: Image) -> Image:
        """Creates or replaces the name's target and labels, keeping ``createdAt``."""
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
    namespace: str

    def get(self, lease_id: str) -> Lease: ...

    def list(self, *filters: str) -> list[Lease]: ...

    def create(self, lease: Lease, *, operation: bool = False) -> Lease:
        """A user's lease creates its namespace; an ``operation``'s own (``Lease.for_operation``)
        does not, so that a failed one leaves no namespace behind. AlreadyExists."""
        ...

    def delete(self, lease_id: str) -> None: ...

    def add_resource(self, lease_id: str, resource: LeaseResource) -> None: ...

    def resources(self, lease_id: str) -> list[LeaseResource]: ...

    def temporary(self, purpose: str) -> AbstractContextManager[tuple[str, str]]:
        """``operation_lease`` on this manager: (namespace, id) of a lease held while it is open."""
        ...


@contextmanager
def operation_lease(leases: LeaseManager, purpose: str) -> Iterator[tuple[str, str]]:
    """A lease for one multi-step operation, deleted when it ends. If the process dies the lease
    is abandoned, and the next gc expires it."""
    lease = leases.create(Lease.for_operation(purpose), operation=True)
    try:
        yield (leases.namespace, lease.id)
    except BaseException:
        try:
            leases.delete(lease.id)
        except Exception:  # noqa: BLE001, S110 - the operation's error is the one to report; gc expires the lease
            pass
        raise
    leases.delete(lease.id)


class Snapshotter(Protocol):
    """containerd's snapshotter verbs, per namespace. Committed snapshots are named by chain ID."""

    name: str
    layers_independent: bool  # a layer's diff is applied without its parent's tree (overlayfs)
    max_layers: int  # the most layers of an image it can stack and mount

    def prepare(self, key: str, parent: str | None = None,
                labels: Mapping[str, str] | None = None, *, operation: bool = False) -> list[Mount]:
        """A new active (writable) snapshot on ``parent``. AlreadyExists; NotFound for the parent.
        An ``operation``'s (an unpack under its lease) does not create the namespace."""
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

    def stage(self, parent: str | None, kind: str = "active") -> Staged:
        """A new snapshot's directory, filled outside any lock; ``install`` it in a write
        transaction or ``discard`` it."""
        ...

    def install(self, staged: Staged, key: str, labels: Mapping[str, str] | None = None, *,
                operation: bool = False) -> None:
        """Records a staged directory as snapshot ``key``, in the caller's transaction if any."""
        ...

    def discard(self, staged: Staged) -> None: ...

    def empty(self, key: str) -> None:
        """Deletes an active snapshot's files and keeps its record (a full disk's undo)."""
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
