"""SqliteContainerStore: container records, per namespace.

A record is metadata only: the image name, the runtime and its options, the
OCI runtime spec, the snapshot that holds the root filesystem, labels, an
``extensions`` map for tools that build on dist, and ``lastExit``. It owns no
file; what it pins (its snapshot) is kept by garbage collection because the
row exists.
"""

from __future__ import annotations

import json
import time

from dist_tool.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from dist_tool.store.api import Container
from dist_tool.store.metadata import Metadata, dump_labels, load_labels, merge_map
from dist_tool.validate import identifier

_COLUMNS = ("id, image, runtime_name, runtime_options, spec, snapshotter, snapshot_key, labels, extensions, "
            "created_at, updated_at, last_exit")
_SUMMARY = ("id, image, runtime_name, runtime_options, NULL, snapshotter, snapshot_key, labels, extensions, "
            "created_at, updated_at, last_exit")
# Field paths update() accepts; "labels.KEY" and "extensions.KEY" name one entry.
MUTABLE_FIELDS = ("image", "runtime", "spec", "snapshot", "labels", "extensions", "lastExit")


def _loads(raw: str | None) -> dict:
    return json.loads(raw) if raw else {}


def _container(row) -> Container:
    (cid, image, runtime_name, runtime_options, spec, snapshotter, snapshot_key, labels, extensions,
     created, updated, last_exit) = row
    return Container(cid, image, runtime_name, _loads(runtime_options), _loads(spec), snapshotter, snapshot_key,
                     load_labels(labels), _loads(extensions), created, updated,
                     json.loads(last_exit) if last_exit else None)


def container_fields(c: Container) -> dict:
    """The fields filters see: ``id``, ``image``, ``runtime.name``, ``snapshotter``,
    ``snapshotKey``, ``labels.KEY`` (containerd's container adaptor, in SPEC's spelling)."""
    return {"id": c.id, "image": c.image, "runtime": {"name": c.runtime_name}, "snapshotter": c.snapshotter,
            "snapshotKey": c.snapshot_key, "labels": dict(c.labels)}


class SqliteContainerStore:
    """Container records of one namespace in the metadata database.

    Every method is one short transaction. ``create`` joins an enclosing
    ``meta.write()`` (the create use case prepares the snapshot and inserts the
    record in one transaction), so a failure after it leaves no record behind.
    """

    def __init__(self, meta: Metadata, namespace: str) -> None:
        self.meta = meta
        self.namespace = namespace

    def get(self, container_id: str) -> Container:
        """Raises InvalidArgument for a malformed ID, NotFound."""
        identifier("container id", container_id)
        with self.meta.read() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM containers WHERE namespace = ? AND id = ?",
                               (self.namespace, container_id)).fetchone()
        if row is None:
            raise NotFound("container", container_id, "not found")
        return _container(row)

    def list(self, *filters: str, with_spec: bool = False) -> list[Container]:
        """Containers matching any filter (containerd syntax), ordered by ID; all without filters.

        Specs are left out (empty) unless ``with_spec``: listings do not need them and they are
        the bulk of a row.
        """
        keep = None
        if filters:
            from dist_tool.filters import matcher

            keep = matcher(filters, container_fields)  # a bad filter fails before any read
        columns = _COLUMNS if with_spec else _SUMMARY
        with self.meta.read() as conn:
            rows = conn.execute(f"SELECT {columns} FROM containers WHERE namespace = ? ORDER BY id",
                                (self.namespace,)).fetchall()
        containers = [_container(r) for r in rows]
        return containers if keep is None else [c for c in containers if keep(c)]

    def create(self, container: Container) -> Container:
        """Inserts the record with ``createdAt = updatedAt = now``.

        Raises InvalidArgument for a malformed ID, AlreadyExists when the namespace holds the ID,
        Conflict when another container's record names its snapshot.
        """
        identifier("container id", container.id)
        if not container.image:
            raise InvalidArgument("container", container.id, "an image name is required")
        now = time.time()
        with self.meta.write() as conn:
            if conn.execute("SELECT 1 FROM containers WHERE namespace = ? AND id = ?",
                            (self.namespace, container.id)).fetchone():
                raise AlreadyExists("container", container.id, "already exists")
            self._refuse_shared_snapshot(conn, container)
            self.meta.ensure_namespace(conn, self.namespace, now)
            conn.execute(f"INSERT INTO containers (namespace, {_COLUMNS}) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (self.namespace, *self._row(container, now, now)))
        return self.get(container.id)

    def update(self, container: Container, *fieldpaths: str) -> Container:
        """Replaces the named fields of the stored record from ``container``: ``image``,
        ``runtime`` (name and options), ``spec``, ``snapshot`` (snapshotter and key),
        ``labels``, ``labels.KEY`` (absent in ``container`` removes it), ``extensions``,
        ``extensions.KEY``, ``lastExit``; all of them when none are named.

        ``updatedAt`` becomes now; ``createdAt`` never changes. Raises NotFound,
        InvalidArgument for an unknown field path, and Conflict for a snapshot another
        container's record names.
        """
        for path in fieldpaths:
            base = path.split(".", 1)[0]
            if base not in MUTABLE_FIELDS or ("." in path and base not in ("labels", "extensions")):
                raise InvalidArgument("field path", path, f"containers update {', '.join(MUTABLE_FIELDS)}, "
                                      "labels.KEY or extensions.KEY")
        now = time.time()
        with self.meta.write() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM containers WHERE namespace = ? AND id = ?",
                               (self.namespace, container.id)).fetchone()
            if row is None:
                raise NotFound("container", container.id, "not found")
            cur = _container(row)
            fields = {"image": cur.image, "runtime_name": cur.runtime_name,
                      "runtime_options": cur.runtime_options, "spec": cur.spec, "snapshotter": cur.snapshotter,
                      "snapshot_key": cur.snapshot_key, "labels": dict(cur.labels),
                      "extensions": dict(cur.extensions), "last_exit": cur.last_exit}
            for path in fieldpaths or MUTABLE_FIELDS:
                if path == "image":
                    fields["image"] = container.image
                elif path == "runtime":
                    fields["runtime_name"] = container.runtime_name
                    fields["runtime_options"] = container.runtime_options
                elif path == "spec":
                    fields["spec"] = container.spec
                elif path == "snapshot":
                    fields["snapshotter"] = container.snapshotter
                    fields["snapshot_key"] = container.snapshot_key
                elif path == "lastExit":
                    fields["last_exit"] = container.last_exit
                elif path.split(".", 1)[0] == "labels":
                    fields["labels"] = merge_map(fields["labels"], container.labels, path, "labels")
                else:
                    fields["extensions"] = merge_map(fields["extensions"], container.extensions, path,
                                                      "extensions")
            merged = Container(container.id, created_at=cur.created_at, **fields)
            self._refuse_shared_snapshot(conn, merged)
            conn.execute("UPDATE containers SET image = ?, runtime_name = ?, runtime_options = ?, spec = ?, "
                         "snapshotter = ?, snapshot_key = ?, labels = ?, extensions = ?, created_at = ?, "
                         "updated_at = ?, last_exit = ? WHERE namespace = ? AND id = ?",
                         (*self._row(merged, cur.created_at, now)[1:], self.namespace, container.id))
        return self.get(container.id)

    def delete(self, container_id: str) -> None:
        """Removes the record (not its snapshot: the rm use case does that). Raises
        InvalidArgument for a malformed ID, NotFound."""
        identifier("container id", container_id)
        with self.meta.write() as conn:
            if conn.execute("DELETE FROM containers WHERE namespace = ? AND id = ?",
                            (self.namespace, container_id)).rowcount == 0:
                raise NotFound("container", container_id, "not found")

    # -------------------------------------------------------------- internals

    def _refuse_shared_snapshot(self, conn, container: Container) -> None:
        """One snapshot, one container: ``container rm`` removes the record, then the snapshot,
        which the snapshotter refuses while another record names it. Two records naming one
        snapshot (a ``dist serve`` client can write any record) could then never be removed."""
        if not container.snapshot_key:
            return
        other = conn.execute("SELECT id FROM containers WHERE namespace = ? AND snapshotter = ? AND snapshot_key = ? "
                             "AND id != ? LIMIT 1", (self.namespace, container.snapshotter, container.snapshot_key,
                                                     container.id)).fetchone()
        if other:
            raise Conflict("container", container.id,
                           f"snapshot {container.snapshot_key} belongs to container {other[0]}")

    @staticmethod
    def _row(c: Container, created: float, updated: float) -> tuple:
        return (c.id, c.image, c.runtime_name, json.dumps(dict(c.runtime_options), sort_keys=True),
                json.dumps(dict(c.spec)), c.snapshotter, c.snapshot_key, dump_labels(c.labels),
                json.dumps(dict(c.extensions), sort_keys=True), created, updated,
                json.dumps(dict(c.last_exit)) if c.last_exit is not None else None)
