"""Garbage collection: mark from the roots of every namespace, sweep what is unmarked.

Roots are images, live leases and containers (a container references its
snapshot). ``mark`` is generic: a breadth-first walk over ``(kind, id)``
nodes that remembers the first parent of each node, so the same pass that
decides what to keep can explain why (``dist gc --explain``).

Mark and the deletion of records run in one metadata write transaction.
Blob files are unlinked under that lock too (an unlink is as cheap as the
rename a trash step would need, and it closes the window in which a
concurrent writer could re-commit a digest whose file is about to go).
Ingests whose writer is gone are removed afterwards, each under its own lock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dist_tool import oci
from dist_tool.errors import DistError, NotFound
from dist_tool.oci import Descriptor
from dist_tool.store.api import Lease
from dist_tool.store.limits import MAX_MANIFEST_BYTES
from dist_tool.store.metadata import load_labels
from dist_tool.walk import ChildrenCache, children

Node = tuple[str, ...]  # ("image", ns, name) | ("lease", ns, id) | ("content", digest) | ...


def mark(roots: Iterable[Node], refs: Callable[[Node], Iterable[Node]]) -> dict[Node, Node | None]:
    """Every node reachable from ``roots``, mapped to the node that first reached it."""
    parent: dict[Node, Node | None] = {}
    queue: deque[Node] = deque()
    for root in roots:
        if root not in parent:
            parent[root] = None
            queue.append(root)
    while queue:
        node = queue.popleft()
        for ref in refs(node):
            if ref not in parent:
                parent[ref] = node
                queue.append(ref)
    return parent


@dataclass
class GcResult:
    blobs: list[tuple[str, int]] = field(default_factory=list)
    leases: list[tuple[str, str]] = field(default_factory=list)
    ingests: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def bytes_freed(self) -> int:
        return sum(size for _, size in self.blobs)

    def to_json(self) -> dict:
        return {"dryRun": self.dry_run,
                "removed": {"content": [{"digest": d, "size": s} for d, s in self.blobs],
                            "leases": [{"namespace": n, "id": i} for n, i in self.leases],
                            "ingests": self.ingests},
                "bytesFreed": self.bytes_freed}


class _Graph:
    """The reference graph of one store, read inside one transaction."""

    def __init__(self, conn, content, now: float, expired_leases: set[tuple[str, str]]) -> None:
        self.conn = conn
        self.content = content
        self.present: dict[str, int] = dict(conn.execute("SELECT digest, size FROM blobs"))
        self.media_types: dict[str, str] = {}
        self.cache = ChildrenCache()
        self.expired = expired_leases
        self.children = children(content, self.cache)

    def roots(self) -> list[Node]:
        out: list[Node] = []
        for ns, name, media_type, digest in self.conn.execute(
                "SELECT namespace, name, media_type, digest FROM images ORDER BY namespace, name"):
            out.append(("image", ns, name))
            self.media_types.setdefault(digest, media_type)
        for ns, lease_id in self.conn.execute("SELECT namespace, id FROM leases ORDER BY namespace, id"):
            if (ns, lease_id) not in self.expired:
                out.append(("lease", ns, lease_id))
        for ns, container_id in self.conn.execute("SELECT namespace, id FROM containers ORDER BY namespace, id"):
            out.append(("container", ns, container_id))
        return out

    def refs(self, node: Node) -> list[Node]:
        kind = node[0]
        if kind == "image":
            row = self.conn.execute("SELECT media_type, digest FROM images WHERE namespace = ? AND name = ?",
                                    (node[1], node[2])).fetchone()
            return [("content", row[1])] if row else []
        if kind == "lease":
            rows = self.conn.execute("SELECT kind, resource FROM lease_resources WHERE namespace = ? "
                                     "AND lease_id = ?", (node[1], node[2])).fetchall()
            return [(k, r) for k, r in rows]
        if kind == "container":
            # A container pins its root-filesystem snapshot (and so the chain under it), never the
            # image's blobs: after rmi they go at once, the chain with the last container.
            row = self.conn.execute("SELECT snapshotter, snapshot_key FROM containers WHERE namespace = ? "
                                    "AND id = ?", (node[1], node[2])).fetchone()
            return [("snapshot", node[1], row[0], row[1])] if row and row[1] else []
        if kind == "content":
            return [("content", d.digest) for d in self._content_children(node[1])]
        return []

    def _content_children(self, digest: str) -> list[Descriptor]:
        if digest not in self.present:
            return []
        media_type = self.media_types.get(digest) or self._sniff(digest)
        if not (oci.is_index(media_type) or oci.is_manifest(media_type)):
            return []
        try:
            kids = self.children(Descriptor(media_type, digest, self.present[digest]))
        except DistError:
            return []  # a corrupt manifest keeps nothing below it; `content verify` reports it
        for kid in kids:
            self.media_types.setdefault(kid.digest, kid.media_type)
        return kids

    def _sniff(self, digest: str) -> str:
        """The type of a blob reached without a descriptor (a lease's resource)."""
        if self.present[digest] > MAX_MANIFEST_BYTES:
            return ""
        try:
            doc = oci.decode_json(self.content.read_blob(digest, MAX_MANIFEST_BYTES), "blob", digest)
        except DistError:
            return ""
        return oci.detect_media_type(doc)


def _expired_leases(conn, now: float) -> set[tuple[str, str]]:
    out = set()
    for ns, lease_id, expires_at, pid, start in conn.execute(
            "SELECT namespace, id, expires_at, owner_pid, owner_start FROM leases"):
        if Lease(lease_id, expires_at=expires_at, owner_pid=pid, owner_start=start).expired(now):
            out.add((ns, lease_id))
    return out


def collect(meta, content, dry_run: bool = False, only: set[str] | None = None) -> GcResult:
    """Removes every blob no root reaches (restricted to ``only`` when given) and expired leases."""
    result = GcResult(dry_run=dry_run)
    now = time.time()
    with meta.write() as conn:
        expired = _expired_leases(conn, now)
        graph = _Graph(conn, content, now, expired)
        marked = mark(graph.roots(), graph.refs)
        live = {node[1] for node in marked if node[0] == "content"}
        for digest, size in sorted(graph.present.items()):
            if digest not in live and (only is None or digest in only):
                result.blobs.append((digest, size))
        result.leases = sorted(expired)
        if not dry_run:
            for ns, lease_id in expired:
                conn.execute("DELETE FROM leases WHERE namespace = ? AND id = ?", (ns, lease_id))
                conn.execute("DELETE FROM lease_resources WHERE namespace = ? AND lease_id = ?", (ns, lease_id))
            conn.executemany("DELETE FROM blobs WHERE digest = ?", [(d,) for d, _ in result.blobs])
            for digest, _ in result.blobs:
                content.remove_file(digest)
            if only is None:
                for digest in content.orphan_files():
                    content.remove_file(digest)
    if only is None:
        result.ingests = [s.ref for s in content.remove_dead_ingests(dry_run=dry_run)]
    return result


# ---------------------------------------------------------------- explain


def _describe(node: Node, graph: _Graph) -> dict:
    kind = node[0]
    if kind == "image":
        return {"kind": "image", "namespace": node[1], "name": node[2]}
    if kind == "lease":
        row = graph.conn.execute("SELECT labels FROM leases WHERE namespace = ? AND id = ?",
                                 (node[1], node[2])).fetchone()
        return {"kind": "lease", "namespace": node[1], "id": node[2],
                "labels": load_labels(row[0]) if row else {}}
    if kind == "container":
        return {"kind": "container", "namespace": node[1], "id": node[2]}
    if kind == "content":
        media_type = graph.media_types.get(node[1], "")
        return {"kind": oci.kind_of(media_type) if media_type else "blob", "digest": node[1],
                "mediaType": media_type or None}
    return {"kind": kind, "id": "/".join(node[1:])}


def explain(meta, content, targets: Iterable[str]) -> list[dict]:
    """For each digest: the chain of references from a root to it, or that nothing keeps it."""
    out = []
    now = time.time()
    with meta.read() as conn:
        graph = _Graph(conn, content, now, _expired_leases(conn, now))
        marked = mark(graph.roots(), graph.refs)
        for target in targets:
            node: Node = ("content", target)
            if target not in graph.present:
                raise NotFound("blob", target, "not found")
            if node not in marked:
                out.append({"digest": target, "kept": False, "chain": []})
                continue
            chain = []
            cursor: Node | None = node
            while cursor is not None:
                chain.append(_describe(cursor, graph))
                cursor = marked[cursor]
            out.append({"digest": target, "kept": True, "chain": list(reversed(chain))})
    return out
