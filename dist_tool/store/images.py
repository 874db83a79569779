"""SqliteImageStore: image names → target descriptors, labels, per namespace.

The default namespace's images are mirrored into ``ROOT/content/index.json``
after every change (under the write lock), so OCI tools see them by name.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

from dist_tool.errors import AlreadyExists, DistError, InvalidArgument, NotFound
from dist_tool.oci import Descriptor
from dist_tool.store.api import Image
from dist_tool.store.metadata import Metadata, dump_labels, load_labels, merge_map

DEFAULT_NAMESPACE = "default"
_COLUMNS = "name, media_type, digest, size, annotations, labels, created_at, updated_at"


def _image(row) -> Image:
    name, media_type, digest, size, annotations, labels, created, updated = row
    target = Descriptor(media_type, digest, size, annotations=load_labels(annotations))
    return Image(name, target, load_labels(labels), created, updated)


def image_fields(image: Image) -> dict:
    """The fields filters see (SPEC: name, target.mediaType, target.digest, labels.KEY)."""
    return {"name": image.name,
            "target": {"mediaType": image.target.media_type, "digest": image.target.digest,
                       "size": image.target.size},
            "labels": dict(image.labels)}


class SqliteImageStore:
    def __init__(self, meta: Metadata, namespace: str, layout: str) -> None:
        self.meta = meta
        self.namespace = namespace
        self.layout = layout
        # Made in a default-namespace change's transaction, removed once index.json is rewritten
        # after its COMMIT: still there, the process died in between and the file is stale.
        self.pending = layout + ".index-pending"
        if namespace == DEFAULT_NAMESPACE and os.path.exists(self.pending):
            self._repair()

    def _repair(self) -> None:
        """Rewrites the stale index.json, as SQLite rolls back a hot journal: whoever opens the
        store next. Never waits: while another process holds the write lock, the marker may be
        its own change's, and that process rewrites the file itself. Best effort: the records
        are the truth, and gc repairs the file too."""
        try:
            with self.meta.write(wait=False):
                if os.path.exists(self.pending):
                    self.meta.on_commit(self.sync_layout_index)
        except (DistError, OSError):
            pass

    def get(self, name: str) -> Image:
        with self.meta.read() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM images WHERE namespace = ? AND name = ?",
                               (self.namespace, name)).fetchone()
        if row is None:
            raise NotFound("image", name, "not found")
        return _image(row)

    def list(self, *filters: str) -> list[Image]:
        with self.meta.read() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM images WHERE namespace = ? ORDER BY name",
                                (self.namespace,)).fetchall()
        images = [_image(r) for r in rows]
        if not filters:
            return images
        from dist_tool.filters import select

        return select(images, filters, image_fields)

    def create(self, image: Image) -> Image:
        now = time.time()
        with self.meta.write() as conn:
            if conn.execute("SELECT 1 FROM images WHERE namespace = ? AND name = ?",
                            (self.namespace, image.name)).fetchone():
                raise AlreadyExists("image", image.name, "already exists")
            self.meta.ensure_namespace(conn, self.namespace, now)
            conn.execute(f"INSERT INTO images ({_COLUMNS}, namespace) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (*self._row(image), now, now, self.namespace))
            self._changed()
        return self.get(image.name)

    def put(self, image: Image) -> Image:
        """Creates or replaces the name's target, keeping ``createdAt`` (import, tag --force)."""
        now = time.time()
        with self.meta.write() as conn:
            self.meta.ensure_namespace(conn, self.namespace, now)
            updated = conn.execute(
                "UPDATE images SET media_type = ?, digest = ?, size = ?, annotations = ?, labels = ?, "
                "updated_at = ? WHERE namespace = ? AND name = ?",
                (*self._row(image)[1:], now, self.namespace, image.name)).rowcount
            if not updated:
                conn.execute(f"INSERT INTO images ({_COLUMNS}, namespace) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (*self._row(image), now, now, self.namespace))
            self._changed()
        return self.get(image.name)

    def update(self, image: Image, *fieldpaths: str) -> Image:
        now = time.time()
        with self.meta.write() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM images WHERE namespace = ? AND name = ?",
                               (self.namespace, image.name)).fetchone()
            if row is None:
                raise NotFound("image", image.name, "not found")
            current = _image(row)
            target, labels = current.target, dict(current.labels)
            for path in fieldpaths or ("target", "labels"):
                if path == "target":
                    target = image.target
                elif path.split(".", 1)[0] == "labels":
                    labels = merge_map(labels, image.labels, path, "labels")
                else:
                    raise InvalidArgument("field path", path, "images update target, labels or labels.KEY")
            merged = Image(image.name, target, labels)
            conn.execute(
                "UPDATE images SET media_type = ?, digest = ?, size = ?, annotations = ?, labels = ?, "
                "updated_at = ? WHERE namespace = ? AND name = ?",
                (*self._row(merged)[1:], now, self.namespace, image.name))
            self._changed()
        return self.get(image.name)

    def delete(self, name: str) -> None:
        with self.meta.write() as conn:
            if conn.execute("DELETE FROM images WHERE namespace = ? AND name = ?",
                            (self.namespace, name)).rowcount == 0:
                raise NotFound("image", name, "not found")
            self._changed()

    def all_namespaces(self) -> Iterator[tuple[str, Image]]:
        with self.meta.read() as conn:
            rows = conn.execute(f"SELECT namespace, {_COLUMNS} FROM images ORDER BY namespace, name").fetchall()
        for row in rows:
            yield row[0], _image(row[1:])

    # -------------------------------------------------------------- internals

    @staticmethod
    def _row(image: Image) -> tuple:
        """The record's columns. A name pinned to a digest (``repo@sha256:...``) must point at
        that digest: docker refuses to tag one, and a name that lies about its content would be
        pushed, exported and trusted as if it were that manifest."""
        t = image.target
        pinned = image.name.rpartition("@")[2] if "@" in image.name else None
        if pinned is not None and pinned != t.digest:
            raise InvalidArgument("image name", image.name, f"names digest {pinned}, but its target is {t.digest}")
        return (image.name, t.media_type, t.digest, t.size, json.dumps(dict(t.annotations)),
                dump_labels(image.labels))

    def _changed(self) -> None:
        if self.namespace == DEFAULT_NAMESPACE:
            with open(self.pending, "ab"):  # no fsync: it need only outlive this process, not the machine
                pass
            self.meta.on_commit(self.sync_layout_index)

    def sync_layout_index(self, conn) -> None:
        """Rewrites ``content/index.json`` from the default namespace's records (under the write
        lock, after COMMIT). Garbage collection calls it too: a process killed between an image
        change's COMMIT and this rewrite left the file behind the records."""
        from dist_tool.store.content import write_layout_index

        rows = conn.execute(f"SELECT {_COLUMNS} FROM images WHERE namespace = ? ORDER BY name",
                            (DEFAULT_NAMESPACE,)).fetchall()
        write_layout_index(self.layout, [(i.name, i.target) for i in map(_image, rows)])
        try:
            os.unlink(self.pending)
        except FileNotFoundError:
            pass
