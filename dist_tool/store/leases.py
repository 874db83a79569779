"""SqliteLeaseManager: leases and the resources they keep from garbage collection."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager

from dist_tool.errors import AlreadyExists, NotFound
from dist_tool.store.api import Lease, LeaseResource, operation_lease
from dist_tool.store.metadata import Metadata, dump_labels, load_labels

_COLUMNS = "id, labels, created_at, expires_at, owner_pid, owner_start"


def _lease(row) -> Lease:
    return Lease(row[0], load_labels(row[1]), row[2], row[3], row[4], row[5])


def lease_fields(lease: Lease) -> dict:
    return {"id": lease.id, "labels": dict(lease.labels)}


class SqliteLeaseManager:
    def __init__(self, meta: Metadata, namespace: str) -> None:
        self.meta = meta
        self.namespace = namespace

    def get(self, lease_id: str) -> Lease:
        with self.meta.read() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM leases WHERE namespace = ? AND id = ?",
                               (self.namespace, lease_id)).fetchone()
        if row is None:
            raise NotFound("lease", lease_id, "not found")
        return _lease(row)

    def list(self, *filters: str) -> list[Lease]:
        """User leases and those of running work (SPEC): a killed operation's lease is dead work,
        left for the next gc to expire."""
        with self.meta.read() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM leases WHERE namespace = ? ORDER BY created_at, id",
                                (self.namespace,)).fetchall()
        leases = [lease for lease in map(_lease, rows) if not lease.abandoned]
        if not filters:
            return leases
        from dist_tool.filters import select

        return select(leases, filters, lease_fields)

    def create(self, lease: Lease, *, operation: bool = False) -> Lease:
        now = time.time()
        with self.meta.write() as conn:
            if conn.execute("SELECT 1 FROM leases WHERE namespace = ? AND id = ?",
                            (self.namespace, lease.id)).fetchone():
                raise AlreadyExists("lease", lease.id, "already exists")
            if not operation:
                self.meta.ensure_namespace(conn, self.namespace, now)
            conn.execute(f"INSERT INTO leases (namespace, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (self.namespace, lease.id, dump_labels(lease.labels), now, lease.expires_at,
                          lease.owner_pid, lease.owner_start))
        return self.get(lease.id)

    def delete(self, lease_id: str) -> None:
        with self.meta.write() as conn:
            if not delete_rows(conn, self.namespace, lease_id):
                raise NotFound("lease", lease_id, "not found")

    def add_resource(self, lease_id: str, resource: LeaseResource) -> None:
        with self.meta.write() as conn:
            add_resource_row(conn, (self.namespace, lease_id), resource)

    def resources(self, lease_id: str) -> list[LeaseResource]:
        with self.meta.read() as conn:
            rows = conn.execute("SELECT kind, resource FROM lease_resources WHERE namespace = ? AND lease_id = ? "
                                "ORDER BY kind, resource", (self.namespace, lease_id)).fetchall()
        return [LeaseResource(k, r) for k, r in rows]

    def temporary(self, purpose: str) -> AbstractContextManager[tuple[str, str]]:
        return operation_lease(self, purpose)


def require_lease(conn, lease: tuple[str, str]) -> None:
    """NotFound unless ``lease`` (namespace, id) exists, in the caller's transaction: a resource
    recorded for no lease keeps nothing, and would be inherited by a later lease of that ID."""
    if conn.execute("SELECT 1 FROM leases WHERE namespace = ? AND id = ?", lease).fetchone() is None:
        raise NotFound("lease", lease[1], "not found")


def add_resource_row(conn, lease: tuple[str, str], resource: LeaseResource) -> None:
    require_lease(conn, lease)
    conn.execute("INSERT OR IGNORE INTO lease_resources (namespace, lease_id, kind, resource) "
                 "VALUES (?, ?, ?, ?)", (*lease, resource.kind, resource.id))


def delete_rows(conn, namespace: str, lease_id: str) -> bool:
    """A lease's record and its resources, in the caller's write transaction; False when absent."""
    conn.execute("DELETE FROM lease_resources WHERE namespace = ? AND lease_id = ?", (namespace, lease_id))
    return conn.execute("DELETE FROM leases WHERE namespace = ? AND id = ?", (namespace, lease_id)).rowcount > 0


def drop_expired(conn, namespace: str) -> None:
    """Deletes the namespace's expired leases (their ``--expires`` passed, or the operation that
    owned them was killed), in the caller's write transaction, as the next gc would: what they
    held is then that gc's to collect."""
    now = time.time()
    rows = conn.execute(f"SELECT {_COLUMNS} FROM leases WHERE namespace = ? "
                        "AND (owner_pid IS NOT NULL OR expires_at IS NOT NULL)", (namespace,)).fetchall()
    for lease in map(_lease, rows):
        if lease.expired(now):
            delete_rows(conn, namespace, lease.id)
