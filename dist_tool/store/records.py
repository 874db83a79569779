"""The store's records: what the stores return and take.

Records are NamedTuples: immutable like frozen dataclasses, but a dataclass costs ~1 ms of code
generation per class at every start, and the CLI's start-up is benchmarked. No ``from __future__
import annotations`` here: NamedTuple would turn every string annotation into a compiled ForwardRef.
Empty maps are shared read-only proxies, so a default can never be mutated by accident.
"""

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from dist_tool.oci import Descriptor

EMPTY: Mapping = MappingProxyType({})


class ContentInfo(NamedTuple):
    digest: str
    size: int
    created_at: float
    updated_at: float
    labels: Mapping[str, str] = EMPTY

    def to_json(self) -> dict:
        return {"digest": self.digest, "size": self.size, "createdAt": self.created_at,
                "updatedAt": self.updated_at, "labels": dict(self.labels)}


class IngestStatus(NamedTuple):
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


class Image(NamedTuple):
    name: str
    target: Descriptor
    labels: Mapping[str, str] = EMPTY
    created_at: float = 0.0
    updated_at: float = 0.0


class Lease(NamedTuple):
    id: str
    labels: Mapping[str, str] = EMPTY
    created_at: float = 0.0
    expires_at: float | None = None
    owner_pid: int | None = None
    owner_start: str | None = None  # /proc/PID/stat start time: a recycled pid is not the owner

    @classmethod
    def for_operation(cls, purpose: str) -> "Lease":
        """The lease of one multi-step operation of this process (an import, a pull, a create):
        once the process is gone it is abandoned, and the next gc expires it."""
        import os

        from dist_tool.proc import process_start

        pid = os.getpid()
        return cls(f"{purpose}-{pid}-{os.urandom(4).hex()}", {"dist.operation": purpose},
                   owner_pid=pid, owner_start=process_start(pid))

    def expired(self, now: float) -> bool:
        """SPEC: a lease whose owner process is gone, or whose expiry passed, is expired."""
        if self.expires_at is not None and self.expires_at <= now:
            return True
        return self.abandoned

    @property
    def abandoned(self) -> bool:
        """An operation's lease whose process is gone (killed): dead work, no lease of anyone's."""
        from dist_tool.proc import alive

        return self.owner_pid is not None and not alive(self.owner_pid, self.owner_start)

    def to_json(self, wire: bool = False) -> dict:
        """SPEC's ``leases ls --json`` record; ``wire`` adds ``ownerStart`` (dist serve's record:
        with the pid it tells a live owner from a reused pid)."""
        out = {"id": self.id, "labels": dict(self.labels), "createdAt": self.created_at,
               "expiresAt": self.expires_at, "ownerPid": self.owner_pid}
        if wire:
            out["ownerStart"] = self.owner_start
        return out


class LeaseResource(NamedTuple):
    kind: str  # "content", "ingest", "snapshots/<snapshotter>"
    id: str


class Staged(NamedTuple):
    """A filled snapshot directory not recorded yet (``Snapshotter.stage``)."""

    path: str
    parent: str | None
    parent_id: int | None
    kind: str


class Namespace(NamedTuple):
    name: str
    labels: Mapping[str, str] = EMPTY
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_json(self) -> dict:
        return {"name": self.name, "labels": dict(self.labels),
                "createdAt": self.created_at, "updatedAt": self.updated_at}


class SnapshotInfo(NamedTuple):
    key: str
    parent: str | None
    kind: str  # "active", "committed" or "view"
    labels: Mapping[str, str] = EMPTY
    created_at: float = 0.0
    updated_at: float = 0.0

    def to_json(self) -> dict:
        return {"key": self.key, "parent": self.parent, "kind": self.kind, "createdAt": self.created_at,
                "updatedAt": self.updated_at, "labels": dict(self.labels)}


class Mount(NamedTuple):
    """One mount(2) call: what ``mount -t TYPE -o OPTIONS SOURCE TARGET`` would do."""

    type: str
    source: str
    options: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"type": self.type, "source": self.source, "options": list(self.options)}


class Usage(NamedTuple):
    size: int
    inodes: int

    def to_json(self) -> dict:
        return {"size": self.size, "inodes": self.inodes}


class Container(NamedTuple):
    """A container is metadata only: what a task needs, pinned."""

    id: str
    image: str
    runtime_name: str = "io.containerd.runc.v2"
    runtime_options: Mapping[str, object] = EMPTY
    spec: Mapping[str, object] = EMPTY
    snapshotter: str = ""
    snapshot_key: str = ""
    labels: Mapping[str, str] = EMPTY
    extensions: Mapping[str, object] = EMPTY
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
            out["lastExit"] = dict(self.last_exit) if self.last_exit is not None else None
        return out
