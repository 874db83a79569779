"""Snapshot stores: records in the metadata DB, one directory per snapshot on disk.

Layout (containerd's overlay layout; the native snapshotter uses it too)::

    snapshots/<snapshotter>/<id>/fs          the snapshot's tree (overlayfs: its upper directory)
    snapshots/<snapshotter>/<id>/work        overlayfs's workdir
    snapshots/<snapshotter>/staging/<owner>  a directory being filled before it has a record
    snapshots/<snapshotter>/trash/<id>.<tag> removed; emptied outside the write lock

The metadata DB (table ``snapshots``) is the truth: a snapshot exists exactly
when its row does. A directory becomes a snapshot by a rename from
``staging/`` to ``<id>`` in the same write transaction that inserts its row
(a directory already at that id, left by a crash before a COMMIT, is trashed
first); removal deletes the row, renames the directory into ``trash/`` once
that has committed (still under the lock), and runs the (slow) recursive
delete after the lock is released. So a crash at any instant leaves at worst
a staging directory of a dead process, an ``<id>`` directory without a row,
or something in the trash; ``SnapshotJanitor.sweep`` (run by ``dist gc``)
removes those.

Snapshots are per namespace: a layer unpacked in two namespaces is two
directories (simple, and a namespace's data never depends on another's).
Ids are per snapshotter and never reused (table ``snapshot_ids``).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Mapping

from dist_tool.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from dist_tool.proc import alive, own_mark, process_start
from dist_tool.store import trash
from dist_tool.store.api import GC_ROOT_LABEL, Mount, SnapshotInfo, Staged, Usage
from dist_tool.store.metadata import Metadata, dump_labels, load_labels, merge_map
from dist_tool.unpriv import Widened
from dist_tool.validate import decimal, utf8

SNAPSHOTTERS = ("overlayfs", "native")
KINDS = ("active", "view", "committed")
MAX_KEY_BYTES = 4096
MAX_CHAIN_DEPTH = 4096  # a deeper chain is taken for a loop in the records
_COLUMNS = "key, parent, kind, labels, created_at, updated_at"


def _info(row) -> SnapshotInfo:
    return SnapshotInfo(row[0], row[1], row[2], load_labels(row[3]), row[4], row[5])


def snapshot_fields(info: SnapshotInfo) -> dict:
    """The fields filters see: key, parent, kind, labels.KEY."""
    return {"key": info.key, "name": info.key, "parent": info.parent or "", "kind": info.kind,
            "labels": dict(info.labels)}


def disk_usage(path: str) -> Usage:
    """Bytes of disk (blocks) and inodes under ``path``, each hard-linked inode counted once.
    Without root, a directory that shuts out its owner (a layer's 0000 one) is opened up while it
    is read and gets its exact mode back (``unpriv.Widened``)."""
    seen: set[int] = set()
    size = inodes = 0
    stack = [path]
    with Widened(path) as widen:
        while stack:
            top = stack.pop()
            try:
                entries = os.scandir(top)
            except FileNotFoundError:
                continue
            except PermissionError:
                if not widen(top):
                    raise
                entries = os.scandir(top)
            with entries:
                for entry in entries:
                    st = entry.stat(follow_symlinks=False)
                    if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                        if st.st_ino in seen:
                            continue
                        seen.add(st.st_ino)
                    size += st.st_blocks * 512
                    inodes += 1
                    if stat.S_ISDIR(st.st_mode):
                        widen(entry.path, st)  # before its entries are listed, and stat'ed (search)
                        stack.append(entry.path)
    return Usage(size, inodes)


def make_root(path: str) -> None:
    """A new snapshot's ``fs``, the image's "/": 0755 whatever the caller's umask (chain IDs share
    snapshots, so the first unpacker's umask would decide for everyone)."""
    os.mkdir(path)
    os.chmod(path, 0o755)


def remove_tree(path: str) -> None:
    """rm -rf that never follows a symlink (see ``trees.remove_trees``)."""
    from dist_tool.trees import remove_trees

    remove_trees([path])


class SnapshotDirs:
    """The directories of one snapshotter (see the module's layout)."""

    def __init__(self, root: str, snapshotter: str) -> None:
        self.base = os.path.join(root, "snapshots", snapshotter)
        self.staging = os.path.join(self.base, "staging")
        self.trash_dir = os.path.join(self.base, "trash")

    def path(self, snapshot_id: int) -> str:
        return os.path.join(self.base, str(snapshot_id))

    def fs(self, snapshot_id: int) -> str:
        return os.path.join(self.base, str(snapshot_id), "fs")

    def new_staging(self) -> str:
        """A fresh directory owned by this process (its name records pid and start time)."""
        os.makedirs(self.staging, exist_ok=True)
        pid = os.getpid()
        path = os.path.join(self.staging, f"{pid}.{process_start(pid)}.{os.urandom(4).hex()}")
        os.mkdir(path, 0o711)
        return path

    def trash(self, snapshot_id: int, mine: bool = True) -> str | None:
        """Moves a snapshot's directory into the trash (call under the write lock). Without
        ``mine`` it carries no process's mark: this process will not delete it, the next full gc
        reports and removes it as any crash leftover."""
        os.makedirs(self.trash_dir, exist_ok=True)
        mark = own_mark() if mine else "left"
        target = os.path.join(self.trash_dir, f"{snapshot_id}.{mark}.{os.urandom(4).hex()}")
        try:
            os.rename(self.path(snapshot_id), target)
        except FileNotFoundError:
            return None
        return target

    def empty_trash(self) -> int:
        """Deletes what this process moved into the trash (outside the write lock), with what a
        gc claimed (``SnapshotJanitor.trash_entries``); what other processes moved is theirs.
        Returns how many."""
        from dist_tool.trees import remove_trees

        paths = trash.own_entries(self.trash_dir)
        remove_trees(paths)
        return len(paths)


def allocate_id(conn, snapshotter: str) -> int:
    """The next directory id of ``snapshotter`` (inside a write transaction); never reused."""
    row = conn.execute("SELECT last_id FROM snapshot_ids WHERE snapshotter = ?", (snapshotter,)).fetchone()
    next_id = (row[0] if row else 0) + 1
    conn.execute("INSERT OR REPLACE INTO snapshot_ids (snapshotter, last_id) VALUES (?, ?)",
                 (snapshotter, next_id))
    return next_id


class LocalSnapshotter:
    """What both local snapshotters share: records, staging, commit, removal, usage.

    Subclasses say how a new snapshot's directory is filled (``_populate``) and
    how it is mounted (``mounts``).
    """

    name = ""
    layers_independent = False
    max_layers = MAX_CHAIN_DEPTH - 1  # a container's own snapshot goes on top

    def __init__(self, root: str, meta: Metadata, namespace: str) -> None:
        self.root = root
        self.meta = meta
        self.namespace = namespace
        self.dirs = SnapshotDirs(root, self.name)

    # ------------------------------------------------------------ records

    def _row(self, conn, key: str):
        return conn.execute(f"SELECT {_COLUMNS}, id, size, inodes FROM snapshots "
                            "WHERE namespace = ? AND snapshotter = ? AND key = ?",
                            (self.namespace, self.name, key)).fetchone()

    def _get(self, conn, key: str):
        row = self._row(conn, key)
        if row is None:
            raise NotFound("snapshot", key, "not found")
        return row

    def stat(self, key: str) -> SnapshotInfo:
        """Raises NotFound."""
        with self.meta.read() as conn:
            return _info(self._get(conn, key))

    def list(self, *filters: str) -> list[SnapshotInfo]:
        """Snapshots of this namespace and snapshotter matching any filter (containerd syntax)."""
        with self.meta.read() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM snapshots WHERE namespace = ? AND snapshotter = ? "
                                "ORDER BY key", (self.namespace, self.name)).fetchall()
        infos = [_info(r) for r in rows]
        if not filters:
            return infos
        from dist_tool.filters import select

        return select(infos, filters, snapshot_fields)

    def chain(self, key: str) -> list[tuple[str, int]]:
        """``(key, id)`` from ``key`` down to its base, ``key`` first. Raises NotFound."""
        out: list[tuple[str, int]] = []
        with self.meta.read() as conn:
            cursor: str | None = key
            while cursor is not None:
                row = self._get(conn, cursor)
                out.append((cursor, row[6]))
                cursor = row[1]
                if len(out) > MAX_CHAIN_DEPTH:
                    raise Conflict("snapshot", key, "parent chain loops")
        return out

    def update(self, info: SnapshotInfo, *fieldpaths: str) -> SnapshotInfo:
        """Replaces ``labels`` (or ``labels.KEY``: absent in ``info`` removes it); all labels when no
        field path is given. ``parent`` re-parents an active snapshot onto a committed one where
        layers are independent (``layers_independent``): parallel unpack stacks its layers so.
        Raises NotFound, InvalidArgument."""
        now = time.time()
        with self.meta.write() as conn:
            row = self._get(conn, info.key)
            labels = load_labels(row[3])
            parent = row[1]
            for path in fieldpaths or ("labels",):
                if path.split(".", 1)[0] == "labels":
                    labels = merge_map(labels, info.labels, path, "labels")
                elif path == "parent" and self.layers_independent and row[2] == "active":
                    if info.parent is not None:
                        self._committed_parent(conn, info.parent)
                    parent = info.parent
                else:
                    raise InvalidArgument("field path", path, "snapshots update labels or labels.KEY")
            conn.execute("UPDATE snapshots SET labels = ?, parent = ?, updated_at = ? "
                         "WHERE namespace = ? AND snapshotter = ? AND key = ?",
                         (dump_labels(labels), parent, now, self.namespace, self.name, info.key))
            return _info(self._get(conn, info.key))

    def _committed_parent(self, conn, parent: str) -> int:
        row = self._row(conn, parent)
        if row is None:
            raise NotFound("snapshot", parent, "parent not found")
        if row[2] != "committed":
            raise InvalidArgument("snapshot", parent, f"parent is {row[2]}, not committed")
        return row[6]

    # ------------------------------------------------------------ create

    def prepare(self, key: str, parent: str | None = None,
                labels: Mapping[str, str] | None = None, *, operation: bool = False) -> list[Mount]:
        """A new active (writable) snapshot on ``parent`` (a committed snapshot, or none).

        Raises AlreadyExists for a used key, NotFound for a missing parent,
        InvalidArgument for a parent that is not committed. The directory is
        filled before the record exists, so a crash leaves no half snapshot.
        ``operation``: an unpack's, under its lease; it does not create the namespace (the
        image it unpacks for does, once named), so a failed import leaves no namespace behind.
        """
        self._create(key, parent, "active", labels, operation)
        return self.mounts(key)

    def view(self, key: str, parent: str, labels: Mapping[str, str] | None = None) -> list[Mount]:
        """A read-only snapshot of ``parent`` (committed). Errors as ``prepare``."""
        self._create(key, parent, "view", labels)
        return self.mounts(key)

    def _create(self, key: str, parent: str | None, kind: str, labels: Mapping[str, str] | None,
                operation: bool = False) -> None:
        _check_key(key)
        with self.meta.read() as conn:
            if self._row(conn, key) is not None:
                raise AlreadyExists("snapshot", key, "already exists")
        self.install(self.stage(parent, kind), key, labels, operation=operation)

    def stage(self, parent: str | None, kind: str = "active") -> Staged:
        """A new snapshot's directory on ``parent``, filled now (native copies the parent's tree)
        and outside any lock, so that a caller can ``install`` it inside its own short write
        transaction. Raises NotFound, InvalidArgument for the parent; ``discard`` what is not
        installed."""
        with self.meta.read() as conn:
            parent_id = self._committed_parent(conn, parent) if parent is not None else None
        staging = self.dirs.new_staging()
        try:
            self._populate(staging, parent_id, kind)
        except BaseException as e:
            remove_tree(staging)
            # The parent is read outside any lock: a concurrent remove (an rmi's gc) takes its
            # tree away under a native copy. That is the parent not found, not a disk failure.
            if isinstance(e, OSError) and parent is not None and not self._still_committed(parent, parent_id):
                raise NotFound("snapshot", parent, "parent was removed meanwhile") from None
            raise
        return Staged(staging, parent, parent_id, kind)

    def _still_committed(self, parent: str, parent_id: int) -> bool:
        try:
            with self.meta.read() as conn:
                return self._committed_parent(conn, parent) == parent_id
        except (NotFound, InvalidArgument):
            return False

    def install(self, staged: Staged, key: str, labels: Mapping[str, str] | None = None, *,
                operation: bool = False) -> None:
        """Records a staged directory as snapshot ``key`` (joining the caller's write transaction
        if there is one). Raises AlreadyExists, NotFound when the parent went meanwhile; the
        staged directory is removed on any failure. ``operation``: as ``prepare``'s."""
        try:
            _check_key(key)
            now = time.time()
            with self.meta.write() as conn:
                if self._row(conn, key) is not None:
                    raise AlreadyExists("snapshot", key, "already exists")
                if staged.parent is not None and self._committed_parent(conn, staged.parent) != staged.parent_id:
                    raise NotFound("snapshot", staged.parent, "parent was replaced meanwhile")
                if not operation:
                    self.meta.ensure_namespace(conn, self.namespace, now)
                snapshot_id = allocate_id(conn, self.name)
                # A crash between the rename and COMMIT leaves <id> with no row, and the id is handed
                # out again (its counter rolled back too): whatever is there is garbage, a crash
                # leftover for the next gc to report. Marked as this process's it was hidden from
                # every gc for as long as this one ran (a foreground run), and this one never
                # deletes it.
                self.dirs.trash(snapshot_id, mine=False)
                os.rename(staged.path, self.dirs.path(snapshot_id))
                conn.execute("INSERT INTO snapshots (namespace, snapshotter, key, id, parent, kind, labels, "
                             "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (self.namespace, self.name, key, snapshot_id, staged.parent, staged.kind,
                              dump_labels(labels or {}), now, now))
        except BaseException:
            self.discard(staged)
            raise

    @staticmethod
    def discard(staged: Staged) -> None:
        """Removes a staged directory that was not installed (nothing, once it is)."""
        remove_tree(staged.path)

    def _populate(self, path: str, parent_id: int | None, kind: str) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ commit, remove

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        """Turns active ``key`` into committed ``name`` (same directory, usage measured now);
        ``key`` is gone afterwards. Labels are the active snapshot's, updated by ``labels``.
        Raises NotFound, AlreadyExists for a used ``name``, Conflict unless ``key`` is active (the
        state, not the request, is wrong: containerd's failed precondition) and while a container
        uses ``key`` (it would be left naming a snapshot that is gone)."""
        _check_key(name)
        with self.meta.read() as conn:
            row = self._get(conn, key)
            if row[2] != "active":
                raise Conflict("snapshot", key, f"is {row[2]}: only an active snapshot can be committed")
            if self._row(conn, name) is not None:
                raise AlreadyExists("snapshot", name, "already exists")
        usage = disk_usage(self.dirs.fs(row[6]))  # outside the lock: an active tree is not shared
        now = time.time()
        with self.meta.write() as conn:
            current = self._get(conn, key)
            if current[6] != row[6] or current[2] != "active":
                raise Conflict("snapshot", key, "changed while being committed")
            user = _container_using(conn, self.namespace, self.name, key)
            if user:
                raise Conflict("snapshot", key, f"in use by container {user}")
            if self._row(conn, name) is not None:
                raise AlreadyExists("snapshot", name, "already exists")
            merged = load_labels(current[3])
            for k, v in (labels or {}).items():
                if v:
                    merged[k] = v
                else:
                    merged.pop(k, None)
            conn.execute("UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, created_at = ?, "
                         "updated_at = ?, size = ?, inodes = ? WHERE namespace = ? AND snapshotter = ? AND key = ?",
                         (name, dump_labels(merged), now, now, usage.size, usage.inodes,
                          self.namespace, self.name, key))

    def remove(self, key: str) -> None:
        """Removes a snapshot: its record, then its directory. The directory is renamed into the
        trash once the record's removal commits and deleted once the write lock is released,
        also when this joins a caller's transaction (``container rm``): a crash leaves at worst
        a directory no record names, never a record without its tree.
        Raises NotFound; Conflict while a snapshot has it as parent or a container uses it."""
        with self.meta.write() as conn:
            row = self._get(conn, key)
            children = conn.execute("SELECT key FROM snapshots WHERE namespace = ? AND snapshotter = ? "
                                    "AND parent = ? ORDER BY key LIMIT 1",
                                    (self.namespace, self.name, key)).fetchone()
            if children:
                raise Conflict("snapshot", key, f"in use: snapshot {children[0]} is its child")
            user = _container_using(conn, self.namespace, self.name, key)
            if user:
                raise Conflict("snapshot", key, f"in use by container {user}")
            conn.execute("DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
                         (self.namespace, self.name, key))
            trashed: list[str] = []

            def to_trash(_conn) -> None:
                path = self.dirs.trash(row[6])
                if path:
                    trashed.append(path)

            def delete_trashed() -> None:
                for path in trashed:
                    remove_tree(path)

            self.meta.on_commit(to_trash)
            self.meta.after_release(delete_trashed)

    def empty(self, key: str) -> None:
        """Deletes the files of active snapshot ``key`` and keeps its record (``remove`` takes
        both later): a layer that filled the disk leaves SQLite no room to record a removal
        until its files are gone. Raises NotFound, InvalidArgument unless ``key`` is active."""
        with self.meta.read() as conn:
            row = self._get(conn, key)
        if row[2] != "active":
            raise InvalidArgument("snapshot", key, f"is {row[2]}: only an active snapshot can be emptied")
        remove_tree(self.dirs.fs(row[6]))

    # ------------------------------------------------------------ usage, mounts

    def usage(self, key: str) -> Usage:
        """Disk usage of the snapshot's own directory: measured at commit for committed ones."""
        with self.meta.read() as conn:
            row = self._get(conn, key)
        if row[2] == "committed" and row[7] is not None:
            return Usage(row[7], row[8])
        return disk_usage(self.dirs.fs(row[6]))

    def mounts(self, key: str) -> list[Mount]:
        raise NotImplementedError


def _check_key(key: str) -> None:
    if not key or "\n" in key or "\x00" in key or len(utf8("snapshot key", key).encode()) > MAX_KEY_BYTES:
        raise InvalidArgument("snapshot key", key[:80], "must be one non-empty line")


def _container_using(conn, namespace: str, snapshotter: str, key: str) -> str | None:
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'containers'").fetchone() is None:
        return None
    row = conn.execute("SELECT id FROM containers WHERE namespace = ? AND snapshotter = ? AND snapshot_key = ? "
                       "LIMIT 1", (namespace, snapshotter, key)).fetchone()
    return row[0] if row else None


def drop_unkept(meta: Metadata, conn, namespace: str) -> list[str]:
    """Deletes the namespace's snapshots when nothing keeps any of them, in the caller's write
    transaction, which has found the namespace without images, containers and live leases: they
    are what is left of a killed unpack. The only roots that could remain are snapshots labelled
    ``containerd.io/gc.root`` (made by hand); with one of them the namespace is not empty and
    nothing is deleted. As in ``remove``, the directories go into the trash once the transaction
    commits and are deleted after the lock is released. Returns the keys deleted."""
    rows = conn.execute("SELECT snapshotter, key, id, labels FROM snapshots WHERE namespace = ? "
                        "ORDER BY snapshotter, key", (namespace,)).fetchall()
    if any(GC_ROOT_LABEL in load_labels(labels) for *_, labels in rows):
        return []
    unkept = [(sn, key, snapshot_id) for sn, key, snapshot_id, _ in rows]
    conn.executemany("DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND key = ?",
                     [(namespace, sn, key) for sn, key, _ in unkept])
    trashed: list[str] = []

    def to_trash(_conn) -> None:
        for sn, _, snapshot_id in unkept:
            path = SnapshotDirs(meta.root, sn).trash(snapshot_id)
            if path:
                trashed.append(path)

    def delete_trashed() -> None:
        for path in trashed:
            remove_tree(path)

    if unkept:
        meta.on_commit(to_trash)
        meta.after_release(delete_trashed)
    return [key for _, key, _ in unkept]


class SnapshotJanitor:
    """What garbage collection does to snapshot directories of every snapshotter: move those
    without a record (and dead processes' staging directories) into the trash under the write
    lock, then empty the trash outside it."""

    def __init__(self, root: str, meta: Metadata) -> None:
        self.root = root
        self.meta = meta

    def trash(self, snapshotter: str, snapshot_id: int) -> None:
        """Moves a removed snapshot's directory into the trash (under the write lock)."""
        SnapshotDirs(self.root, snapshotter).trash(snapshot_id)

    def empty_trash(self) -> None:
        """Deletes what this process moved into (or claimed in) every snapshotter's trash, outside
        the write lock."""
        for name in SNAPSHOTTERS:
            SnapshotDirs(self.root, name).empty_trash()

    def trash_entries(self, claim: bool = False) -> list[tuple[str, str]]:
        """(ROOT-relative path, where it is now) of what is in every snapshotter's trash
        (``snapshots/<snapshotter>/trash/<entry>``). Called under the write lock before this
        process trashes anything, it is what killed removals left (a ``container rm`` between its
        rename and its delete), which ``sweep`` then reports and removes with the rest. With
        ``claim`` each is renamed to carry this process's mark (``claimed``): a concurrent gc
        then leaves it to this one rather than report and delete it too."""
        return sorted((f"snapshots/{name}/trash/{entry}", where) for name in SNAPSHOTTERS
                      for entry, where in trash.leftovers(SnapshotDirs(self.root, name).trash_dir, claim))

    def sweep(self, dry_run: bool = False, leftovers: list[tuple[str, str]] | None = None) -> list[tuple[str, int]]:
        """(path, bytes of disk) of each directory removed (or, with ``dry_run``, to be removed),
        ROOT-relative: ``snapshots/<snapshotter>/<id>`` without a record, ``…/staging/<entry>`` of
        dead writers, and ``leftovers`` (``trash_entries``, which emptying the trash removes). The
        bytes are measured outside the lock: nothing else writes to any of them."""
        base = os.path.join(self.root, "snapshots")
        try:
            names = sorted(n for n in os.listdir(base) if n in SNAPSHOTTERS)
        except FileNotFoundError:
            return []  # no snapshot was ever made, so none was trashed either
        found: list[tuple[str, str | None]] = []  # (ROOT-relative path, where it is now)
        with self.meta.write() as conn:
            for name in names:
                dirs = SnapshotDirs(self.root, name)
                known = {r[0] for r in conn.execute("SELECT id FROM snapshots WHERE snapshotter = ?", (name,))}
                for entry in os.listdir(dirs.base):
                    snapshot_id = decimal(entry)
                    if snapshot_id is not None and snapshot_id not in known:
                        rel = f"snapshots/{name}/{entry}"
                        found.append((rel, os.path.join(self.root, rel) if dry_run else dirs.trash(snapshot_id)))
                for entry in _listdir(dirs.staging):
                    pid, _, rest = entry.partition(".")
                    start = rest.rpartition(".")[0]
                    writer = decimal(pid)
                    if writer is not None and alive(writer, start):
                        continue
                    where = os.path.join(dirs.staging, entry)
                    if not dry_run:
                        os.makedirs(dirs.trash_dir, exist_ok=True)
                        trashed = os.path.join(dirs.trash_dir, f"staging.{own_mark()}.{entry}")
                        os.rename(where, trashed)
                        where = trashed
                    found.append((f"snapshots/{name}/staging/{entry}", where))
        found += leftovers or []
        measured = sorted((rel, leftover_bytes(where)) for rel, where in found)
        if not dry_run:
            self.empty_trash()
        return measured


def leftover_bytes(path: str | None) -> int:
    """What a leftover directory holds (blocks of disk, hard links once, links never followed),
    for gc's report only: one that cannot be read all through counts 0 rather than fail the
    collection that removes it. The content store's leftover ingest directories use it too."""
    try:
        return disk_usage(path).size if path else 0
    except OSError:
        return 0


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
