"""Garbage collection: mark from the roots of every namespace, sweep what is unmarked.

Roots are images, live leases, containers (a container references its
snapshot), and snapshots and blobs labelled ``containerd.io/gc.root`` (made by
hand with ``dist snapshot`` and ``dist content``). An image keeps the snapshots
of its unpacked chains (the chain IDs of each of its manifests whose config is
present), a snapshot keeps its parent, a lease keeps its
``snapshots/<snapshotter>`` resources. A manifest or index keeps what it lists;
any blob also keeps the digests its ``containerd.io/gc.ref.content[.*]`` labels
name, containerd's edges for content put together by hand.
``mark`` is generic: a breadth-first walk over ``(kind, id)`` nodes that
remembers the first parent of each node, so the same pass that decides what
to keep can explain why (``dist gc --explain``).

Mark and the deletion of records run in one metadata write transaction.
Files go once it has committed, still under the lock: blob files and snapshot
directories are renamed into their trash (a rename is instant; the unlink of
a gigabyte blob held the lock for a third of a second), and the trash is
emptied after the lock is released, with directories no record names. A
writer committing a digest again meanwhile finds its path free. Records first, files after: a
crash in between leaves only files no record names, which the next
collection removes, never a record whose file is gone.
Ingests whose writer is gone are removed afterwards, each under its own lock.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dist_tool import oci
from dist_tool.errors import DistError, NotFound, keep_going
from dist_tool.oci import Descriptor
from dist_tool.store.api import GC_ROOT_LABEL, Lease
from dist_tool.store.limits import MAX_MANIFEST_BYTES
from dist_tool.walk import ChildrenCache, children

Node = tuple[str, ...]  # ("image", ns, name) | ("lease", ns, id) | ("content", digest) | ...
SnapshotNode = tuple[str, str, str, str]  # ("snapshot", namespace, snapshotter, key)
GC_REF_CONTENT_LABEL = "containerd.io/gc.ref.content"  # the key itself, or followed by ".<anything>"


def _content_label_refs(labels: dict[str, str]) -> list[str]:
    return [value for key, value in sorted(labels.items())
            if key == GC_REF_CONTENT_LABEL or key.startswith(GC_REF_CONTENT_LABEL + ".")]


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
    snapshots: list[SnapshotNode] = field(default_factory=list)
    # Snapshot directories no record names, staging directories of killed unpacks, what killed
    # removals left in the trash and ingest directories that name no ingest (ROOT-relative), and
    # the bytes of disk they held.
    directories: list[str] = field(default_factory=list)
    directory_bytes: int = 0
    dry_run: bool = False
    # Manifests and indexes a root reaches that cannot be read: what they reference is unknown,
    # so nothing was swept (blobs and snapshots); expired leases and dead ingests still go.
    unreadable: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        """The blobs' sizes and the leftover directories' disk usage (snapshots are not measured:
        a writable one would have to be walked under the write lock)."""
        return sum(size for _, size in self.blobs) + self.directory_bytes

    def to_json(self) -> dict:
        return {"dryRun": self.dry_run,
                "removed": {"content": [{"digest": d, "size": s} for d, s in self.blobs],
                            "leases": [{"namespace": n, "id": i} for n, i in self.leases],
                            "ingests": self.ingests,
                            "snapshots": [{"namespace": n, "snapshotter": sn, "key": k}
                                          for _, n, sn, k in self.snapshots],
                            "directories": self.directories},
                "bytesFreed": self.bytes_freed, "unreadable": self.unreadable}


class _Graph:
    """The reference graph of one store, read inside one transaction."""

    def __init__(self, conn, content, expired_leases: set[tuple[str, str]]) -> None:
        self.conn = conn
        self.content = content
        self.present: dict[str, int] = {}
        self.gc_labels: dict[str, dict[str, str]] = {}  # blobs with containerd.io/gc.* labels: their labels
        for digest, size, labels in conn.execute("SELECT digest, size, labels FROM blobs"):
            self.present[digest] = size
            if "containerd.io/gc." in labels:  # most blobs have none: no JSON to decode
                self.gc_labels[digest] = json.loads(labels)
        self.media_types: dict[str, str] = {}
        self.cache = ChildrenCache()
        self.expired = expired_leases
        self.children = children(content, self.cache)
        self.snapshots: dict[SnapshotNode, tuple[str | None, int, dict]] = {
            ("snapshot", ns, sn, key): (parent, snapshot_id, json.loads(labels))
            for ns, sn, key, parent, snapshot_id, labels in conn.execute(
                "SELECT namespace, snapshotter, key, parent, id, labels FROM snapshots")}
        self.unreadable: set[str] = set()  # reached, present, but not a readable manifest or index
        self.snapshot_keys: dict[tuple[str, str], set[str]] = {}
        for _, ns, sn, key in self.snapshots:
            self.snapshot_keys.setdefault((ns, sn), set()).add(key)
        self._chains: dict[str, list[str]] = {}

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
        out.extend(sorted(node for node, (_, _, labels) in self.snapshots.items() if GC_ROOT_LABEL in labels))
        out.extend(("content", d) for d, labels in sorted(self.gc_labels.items()) if GC_ROOT_LABEL in labels)
        return out

    def refs(self, node: Node) -> list[Node]:
        kind = node[0]
        if kind == "image":
            row = self.conn.execute("SELECT media_type, digest FROM images WHERE namespace = ? AND name = ?",
                                    (node[1], node[2])).fetchone()
            return [("content", row[1]), *self._image_snapshots(node[1], row[0], row[1])] if row else []
        if kind == "lease":
            rows = self.conn.execute("SELECT kind, resource FROM lease_resources WHERE namespace = ? "
                                     "AND lease_id = ?", (node[1], node[2])).fetchall()
            return [("snapshot", node[1], k.partition("/")[2], r) if k.startswith("snapshots/") else (k, r)
                    for k, r in rows]
        if kind == "snapshot":
            parent = self.snapshots.get(node)  # type: ignore[call-overload]
            return [("snapshot", node[1], node[2], parent[0])] if parent and parent[0] else []
        if kind == "container":
            # A container pins its root-filesystem snapshot (and so the chain under it), never the
            # image's blobs: after rmi they go at once, the chain with the last container.
            row = self.conn.execute("SELECT snapshotter, snapshot_key FROM containers WHERE namespace = ? "
                                    "AND id = ?", (node[1], node[2])).fetchone()
            return [("snapshot", node[1], row[0], row[1])] if row and row[1] else []
        if kind == "content":
            labelled = _content_label_refs(self.gc_labels.get(node[1], {}))
            return [("content", d.digest) for d in self._content_children(node[1])] + \
                [("content", d) for d in labelled]
        return []

    def _image_snapshots(self, namespace: str, media_type: str, digest: str) -> list[Node]:
        """The committed snapshots of the image's unpacked chains, in every snapshotter."""
        if not any(ns == namespace for ns, _ in self.snapshot_keys):
            return []
        if digest not in self._chains:
            from dist_tool.chains import every_chain

            # A config that cannot be read loses only its chain, which an unpack makes again; a
            # manifest or index that cannot be read is in ``unreadable`` (marking reads it).
            self._chains[digest] = [key for chain in every_chain(self.content, Descriptor(media_type, digest, 0),
                                                                 self.present, self.cache) for key in chain]
        return [("snapshot", ns, sn, key) for (ns, sn), keys in self.snapshot_keys.items() if ns == namespace
                for key in self._chains[digest] if key in keys]

    def _content_children(self, digest: str) -> list[Descriptor]:
        if digest not in self.present:
            return []
        media_type = self.media_types.get(digest) or self._sniff(digest)
        if not (oci.is_index(media_type) or oci.is_manifest(media_type)):
            return []
        try:
            kids = self.children(Descriptor(media_type, digest, self.present[digest]))
        except DistError:
            # What it references cannot be known: collect() then sweeps nothing (containerd keeps
            # its references in labels and would not lose them; dist reads them from the blob).
            self.unreadable.add(digest)
            return []
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


def collect(meta, content, janitor, dry_run: bool = False, only: set[str] | None = None,
            sync_layout_index: Callable | None = None) -> GcResult:
    """Removes every blob and snapshot no root reaches (restricted to the digests and snapshot
    keys in ``only`` when given) and expired leases. ``janitor`` (the store's SnapshotJanitor)
    removes snapshot directories. A full collection also repairs what a crash can leave in the
    OCI layout: ``sync_layout_index(conn)`` (the default image store's) rewrites ``index.json``,
    and half-written temporaries go."""
    result = GcResult(dry_run=dry_run)
    now = time.time()
    with meta.write() as conn:
        expired = _expired_leases(conn, now)
        graph = _Graph(conn, content, expired)
        marked = mark(graph.roots(), graph.refs)
        live = {node[1] for node in marked if node[0] == "content"}
        result.unreadable = sorted(graph.unreadable)
        sweep = not graph.unreadable
        for digest, size in sorted(graph.present.items()):
            if sweep and digest not in live and (only is None or digest in only):
                result.blobs.append((digest, size))
        if only is None:  # files no record names (by hand, or a crash): reported with the rest
            result.blobs += content.orphan_files(graph.present)
        swept_blobs = list(result.blobs)  # the blobs whose records and files this collection removes
        if only is None:
            # Blob files a killed removal left in the trash, which emptying it unlinks: reported
            # too, though their digests may name a blob committed again since, which stays.
            result.blobs += content.trash_leftovers(claim=not dry_run)
        result.leases = sorted(expired)
        result.snapshots = sorted(n for n in graph.snapshots
                                  if sweep and n not in marked and (only is None or n[3] in only))
        # Before this collection trashes the snapshots it removes: what is there already is what
        # killed removals left, which emptying the trash removes too, so it is reported.
        leftovers = janitor.trash_entries(claim=not dry_run) if only is None else []
        if not dry_run:
            for node in result.snapshots:
                conn.execute("DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?", node[1:])
            for ns, lease_id in expired:
                conn.execute("DELETE FROM leases WHERE namespace = ? AND id = ?", (ns, lease_id))
                conn.execute("DELETE FROM lease_resources WHERE namespace = ? AND lease_id = ?", (ns, lease_id))
            if only is None:
                # Rows of no lease (written before leases were checked) would pass to a later lease of that ID.
                conn.execute("DELETE FROM lease_resources WHERE NOT EXISTS (SELECT 1 FROM leases l WHERE "
                             "l.namespace = lease_resources.namespace AND l.id = lease_resources.lease_id)")
            conn.executemany("DELETE FROM blobs WHERE digest = ?", [(d,) for d, _ in swept_blobs])

            def remove_files(_conn) -> None:
                for node in result.snapshots:
                    janitor.trash(node[2], graph.snapshots[node][1])
                for digest, _ in swept_blobs:  # the files of record-less blobs among them
                    content.trash_file(digest)
                if only is None:
                    content.remove_stale_temporaries()
                    if sync_layout_index is not None:
                        sync_layout_index(conn)

            meta.on_commit(remove_files)
    if not dry_run:
        # The blob files, unlinked now the lock is released, with what killed removals left (a
        # full collection has claimed and reported those above).
        content.empty_trash()
    if only is None:
        # Crash leftovers; empties the trash outside the lock.
        swept = janitor.sweep(dry_run=dry_run, leftovers=leftovers)
        result.directories = [path for path, _ in swept]
        result.directory_bytes = sum(size for _, size in swept)
    elif result.snapshots and not dry_run:
        janitor.empty_trash()
    if only is None:
        result.ingests = [s.ref for s in content.remove_dead_ingests(dry_run=dry_run)]
        # Ingest directories that name no ingest (a writer killed before its data) are leftovers
        # like the snapshots' above: listed with them, their disk counted in bytesFreed.
        left = content.remove_leftover_ingest_dirs(dry_run=dry_run)
        result.directories = sorted(result.directories + [path for path, _ in left])
        result.directory_bytes += sum(size for _, size in left)
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
                "labels": json.loads(row[0]) if row else {}}
    if kind == "container":
        return {"kind": "container", "namespace": node[1], "id": node[2]}
    if kind == "snapshot":
        out = {"kind": "snapshot", "namespace": node[1], "snapshotter": node[2], "key": node[3]}
        if GC_ROOT_LABEL in graph.snapshots[node][2]:  # a root by itself (snapshot prepare/commit)
            out["root"] = f"label {GC_ROOT_LABEL}"
        return out
    if kind == "content":
        media_type = graph.media_types.get(node[1], "")
        out = {"kind": oci.kind_of(media_type) if media_type else "blob", "digest": node[1],
               "mediaType": media_type or None}
        if GC_ROOT_LABEL in graph.gc_labels.get(node[1], {}):  # a root by itself (content label)
            out["root"] = f"label {GC_ROOT_LABEL}"
        return out
    return {"kind": kind, "id": "/".join(node[1:])}


def explain(meta, content, targets: Iterable[str]) -> tuple[list[dict], list[str]]:
    """For each digest or snapshot key: the chain of references from a root to it, or that nothing
    keeps it. A snapshot key is looked up in every namespace and snapshotter (one report each).
    Returns the reports and the targets that name nothing."""
    out = []
    missing = []
    now = time.time()
    with meta.read() as conn:
        graph = _Graph(conn, content, _expired_leases(conn, now))
        marked = mark(graph.roots(), graph.refs)
        for target in targets:
            nodes: list[Node] = [("content", target)] if target in graph.present else []
            nodes += sorted(n for n in graph.snapshots if n[3] == target)
            if not nodes:
                missing.append(target)
            for node in nodes:
                report: dict = ({"digest": target} if node[0] == "content" else
                                {"snapshot": target, "namespace": node[1], "snapshotter": node[2]})
                if node not in marked:
                    out.append({**report, "kept": False, "chain": []})
                    continue
                chain = []
                cursor: Node | None = node
                while cursor is not None:
                    chain.append(_describe(cursor, graph))
                    cursor = marked[cursor]
                out.append({**report, "kept": True, "chain": list(reversed(chain))})
    return out, missing


def collect_added(session, added: set[str]) -> None:
    """After a failed import or pull, once its lease is gone: collects what it added (blobs, chains)
    that nothing else keeps. Best effort: the operation's own error is the one to report, and the
    next ``dist gc`` finishes the job."""
    if not added:
        return
    try:
        session.collect_garbage(only=set(added))
    except DistError:
        pass


def remove_each(session, items, remove_one, force: bool = False):
    """Removes every item, keeps going past failures, then collects garbage once.

    Returns (removed, gc result or None, the first error) — ctr's multi-delete: a missing item is
    an error unless ``force``, and the first error is what the command exits with.
    """
    removed: list = []
    first_error = keep_going(items, lambda item: removed.append(remove_one(item)), ignore=(NotFound,) if force else ())
    result = session.collect_garbage() if removed else None
    return removed, result, first_error
