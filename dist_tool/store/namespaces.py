"""SqliteNamespaceStore: namespaces and their labels."""

from __future__ import annotations

import time

from dist_tool.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from dist_tool.store.api import Namespace
from dist_tool.store.leases import drop_expired
from dist_tool.store.metadata import Metadata, dump_labels, load_labels, merge_map
from dist_tool.store.snapshots import drop_unkept

# Every table whose rows belong to a namespace; a namespace holding any row cannot be removed.
# Snapshots come last: only a namespace without the others can hold snapshots nothing keeps.
NAMESPACED_TABLES = ("images", "leases", "containers", "snapshots")


def _namespace(row) -> Namespace:
    return Namespace(row[0], load_labels(row[1]), row[2], row[3])


def _unlisted(conn, tables: set[str], name: str) -> str:
    """Why rows may name a namespace that does not exist: an operation's lease and snapshots
    create none (the image or container it makes does), so a killed one's stay unlisted until gc."""
    for table in NAMESPACED_TABLES:
        if table in tables and conn.execute(f"SELECT 1 FROM {table} WHERE namespace = ? LIMIT 1",
                                            (name,)).fetchone():
            return (" (only an unfinished or killed operation's records name it; garbage collection"
                    " removes a killed one's)")
    return ""


class SqliteNamespaceStore:
    def __init__(self, meta: Metadata) -> None:
        self.meta = meta

    def get(self, name: str) -> Namespace:
        with self.meta.read() as conn:
            row = conn.execute("SELECT name, labels, created_at, updated_at FROM namespaces WHERE name = ?",
                               (name,)).fetchone()
        if row is None:
            raise NotFound("namespace", name, "not found")
        return _namespace(row)

    def list(self, *filters: str) -> list[Namespace]:
        with self.meta.read() as conn:
            rows = conn.execute("SELECT name, labels, created_at, updated_at FROM namespaces ORDER BY name")
            spaces = [_namespace(r) for r in rows]
        if not filters:
            return spaces
        from dist_tool.filters import select

        return select(spaces, filters, lambda n: {"name": n.name, "labels": dict(n.labels)})

    def create(self, namespace: Namespace) -> Namespace:
        now = time.time()
        with self.meta.write() as conn:
            if conn.execute("SELECT 1 FROM namespaces WHERE name = ?", (namespace.name,)).fetchone():
                raise AlreadyExists("namespace", namespace.name, "already exists")
            conn.execute("INSERT INTO namespaces (name, labels, created_at, updated_at) VALUES (?, ?, ?, ?)",
                         (namespace.name, dump_labels(namespace.labels), now, now))
        return self.get(namespace.name)

    def update(self, namespace: Namespace, *fieldpaths: str) -> Namespace:
        now = time.time()
        with self.meta.write() as conn:
            row = conn.execute("SELECT labels FROM namespaces WHERE name = ?", (namespace.name,)).fetchone()
            if row is None:
                raise NotFound("namespace", namespace.name, "not found")
            labels = load_labels(row[0])
            for path in fieldpaths or ("labels",):
                if path.split(".", 1)[0] == "labels":
                    labels = merge_map(labels, namespace.labels, path, "labels")
                else:
                    raise InvalidArgument("field path", path, "namespaces update labels or labels.KEY")
            conn.execute("UPDATE namespaces SET labels = ?, updated_at = ? WHERE name = ?",
                         (dump_labels(labels), now, namespace.name))
        return self.get(namespace.name)

    def delete(self, name: str) -> None:
        with self.meta.write() as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if conn.execute("SELECT 1 FROM namespaces WHERE name = ?", (name,)).fetchone() is None:
                raise NotFound("namespace", name, "not found" + _unlisted(conn, tables, name))
            # SPEC: namespaces rm sees only user leases and those of running work; a lease that
            # has expired holds nothing any more (gc would delete it).
            drop_expired(conn, name)
            for table in NAMESPACED_TABLES:
                if table == "snapshots" and table in tables:
                    # Reached only without images, containers and leases, so what a killed unpack
                    # left is garbage nobody can use (or see as the user's): gone as gc would take it.
                    drop_unkept(self.meta, conn, name)
                if table in tables and conn.execute(
                        f"SELECT 1 FROM {table} WHERE namespace = ? LIMIT 1", (name,)).fetchone():
                    raise Conflict("namespace", name, f"not empty: it still holds {table}")
            conn.execute("DELETE FROM namespaces WHERE name = ?", (name,))
