"""The metadata database: ``ROOT/metadata.db``, SQLite in WAL mode.

Schema (version ``SCHEMA_VERSION``; every change is a new entry in
``MIGRATIONS``, applied in order inside one write transaction, never edited
once released):

``namespaces(name, labels, created_at, updated_at)``
    Created on first write. Labels are a JSON object.
``images(namespace, name, media_type, digest, size, annotations, labels, created_at, updated_at)``
    A name points at a target descriptor (manifest or index).
``blobs(digest, size, labels, created_at, updated_at)``
    Committed content, shared by all namespaces. A row exists exactly when
    ``content/blobs/<alg>/<hex>`` is committed: the row is written under the
    same lock as the rename that makes the file visible, and garbage
    collection removes file and row under that lock too.
``leases(namespace, id, labels, created_at, expires_at, owner_pid, owner_start)``
    A lease keeps what it references from garbage collection. Leases of
    operations record their owner process; a lease whose owner is gone, or
    whose ``expires_at`` passed, is expired.
``lease_resources(namespace, lease_id, kind, resource)``
    ``kind`` is ``content``, ``ingest`` or ``snapshots/<snapshotter>``.
``snapshots(namespace, snapshotter, key, id, parent, kind, labels, created_at, updated_at, size, inodes)``
    Per namespace and snapshotter (migration 2). ``kind`` is ``active``,
    ``view`` or ``committed``; ``parent`` is the key of a committed snapshot
    of the same namespace and snapshotter, or NULL. ``id`` names the
    snapshot's directory, ``snapshots/<snapshotter>/<id>``: it never changes
    (commit renames the key, not the directory) and is never reused.
    ``size`` and ``inodes`` are the disk usage measured at commit (NULL
    before). Unpacked layers are committed snapshots keyed by chain ID.
``snapshot_ids(snapshotter, last_id)``
    The last directory id handed out per snapshotter.
``containers(namespace, id, image, runtime_name, runtime_options, spec, snapshotter, snapshot_key,
labels, extensions, created_at, updated_at, last_exit)``
    Metadata only (migration 3). ``runtime_options``, ``spec`` (the OCI
    runtime spec), ``labels`` and ``extensions`` are JSON objects;
    ``last_exit`` is JSON ``{"status", "exitedAt"}`` or NULL. The container
    pins the active snapshot ``(snapshotter, snapshot_key)``, not the image.

Times are seconds since the epoch (REAL). Concurrency: readers use WAL
snapshots and take no file lock; writers take ``ROOT/metadata.lock`` (a
``filelock``) and ``BEGIN IMMEDIATE`` for transactions of milliseconds. No
read transaction is ever upgraded into a write, so ``database is locked``
cannot reach a user; bytes never stream while the lock is held.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import NamedTuple

from dist_tool.errors import DataError, DistError, InvalidArgument, Unavailable

WRITE_LOCK_TIMEOUT = 120.0  # seconds; transactions are milliseconds, so this only trips on a hung peer
BUSY_TIMEOUT_MS = 60_000
# Room kept for the metadata on a full disk (``ROOT/metadata.reserve``). Every run makes SQLite's
# 32 KiB ``-shm`` and grows the ``-wal``, so on a disk with no free block even ``dist images`` fails,
# and ``rmi`` or ``gc``, which would free space, cannot commit. The reserve is given up as soon as
# less than its size is free, and made again (as large as leaves several times its size free).
RESERVE_NAME = "metadata.reserve"
RESERVE_BYTES = 1 << 20  # the least it holds; it grows with the database (``Metadata.reserve_size``)
RESERVE_MAX_BYTES = 256 << 20
RESERVE_REMADE_TIMES = 4  # made (or grown) only to a size of which this many times is free


class Migration(NamedTuple):
    version: int
    description: str
    statements: tuple[str, ...]

    def apply(self, conn: sqlite3.Connection) -> None:
        for statement in self.statements:
            conn.execute(statement)


MIGRATIONS: list[Migration] = [
    Migration(1, "namespaces, images, blobs, leases", (
        """CREATE TABLE namespaces (
            name TEXT PRIMARY KEY,
            labels TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL)""",
        """CREATE TABLE images (
            namespace TEXT NOT NULL,
            name TEXT NOT NULL,
            media_type TEXT NOT NULL,
            digest TEXT NOT NULL,
            size INTEGER NOT NULL,
            annotations TEXT NOT NULL DEFAULT '{}',
            labels TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (namespace, name))""",
        "CREATE INDEX images_by_digest ON images (digest)",
        """CREATE TABLE blobs (
            digest TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL)""",
        """CREATE TABLE leases (
            namespace TEXT NOT NULL,
            id TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            expires_at REAL,
            owner_pid INTEGER,
            owner_start TEXT,
            PRIMARY KEY (namespace, id))""",
        """CREATE TABLE lease_resources (
            namespace TEXT NOT NULL,
            lease_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            resource TEXT NOT NULL,
            PRIMARY KEY (namespace, lease_id, kind, resource))""",
        "CREATE INDEX lease_resources_by_resource ON lease_resources (kind, resource)",
    )),
    Migration(2, "snapshots", (
        """CREATE TABLE snapshots (
            namespace TEXT NOT NULL,
            snapshotter TEXT NOT NULL,
            key TEXT NOT NULL,
            id INTEGER NOT NULL,
            parent TEXT,
            kind TEXT NOT NULL,
            labels TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            size INTEGER,
            inodes INTEGER,
            PRIMARY KEY (namespace, snapshotter, key))""",
        "CREATE UNIQUE INDEX snapshots_by_id ON snapshots (snapshotter, id)",
        "CREATE INDEX snapshots_by_parent ON snapshots (namespace, snapshotter, parent)",
        """CREATE TABLE snapshot_ids (
            snapshotter TEXT PRIMARY KEY,
            last_id INTEGER NOT NULL)""",
    )),
    Migration(3, "containers", (
        """CREATE TABLE containers (
            namespace TEXT NOT NULL,
            id TEXT NOT NULL,
            image TEXT NOT NULL,
            runtime_name TEXT NOT NULL,
            runtime_options TEXT NOT NULL DEFAULT '{}',
            spec TEXT NOT NULL DEFAULT '{}',
            snapshotter TEXT NOT NULL DEFAULT '',
            snapshot_key TEXT NOT NULL DEFAULT '',
            labels TEXT NOT NULL DEFAULT '{}',
            extensions TEXT NOT NULL DEFAULT '{}',
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            last_exit TEXT,
            PRIMARY KEY (namespace, id))""",
        "CREATE INDEX containers_by_snapshot ON containers (snapshotter, snapshot_key)",
    )),
]

# Each issue appends its migration with a fixed version number; the list may briefly be out of
# order while work lands in parallel, so apply in version order and derive the current version.
MIGRATIONS.sort(key=lambda m: m.version)
SCHEMA_VERSION = MIGRATIONS[-1].version


def dump_labels(labels: object) -> str:
    return json.dumps(dict(labels), sort_keys=True)  # type: ignore[call-overload]


def merge_map(current: Mapping, new: Mapping, path: str, prefix: str) -> dict:
    """A field-path update of a map field: ``prefix`` replaces the whole map; ``prefix.KEY``
    sets KEY from ``new``, or removes it when ``new`` lacks it (containerd's update paths)."""
    if path == prefix:
        return dict(new)
    out = dict(current)
    key = path[len(prefix) + 1:]
    if key in new:
        out[key] = new[key]
    else:
        out.pop(key, None)
    return out


def load_labels(raw: str | None) -> dict[str, str]:
    # Most records carry no labels: skip the decoder for them (1,001-name listings).
    return json.loads(raw) if raw and raw != "{}" else {}


def _run_all(tasks: list, *args) -> BaseException | None:
    """Runs every task whatever the others do (after a COMMIT nothing may be skipped); returns
    the first error."""
    first = None
    for task in tasks:
        try:
            task(*args)
        except Exception as e:  # noqa: BLE001 - reported once all have run
            first = first or e
    return first


# SQLite's primary result codes for what is wrong with the disk or the file, not with dist's SQL.
# PERM, BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN, NOLFS; CORRUPT, NOTADB
_SQLITE_UNAVAILABLE = frozenset({3, 5, 6, 8, 10, 13, 14, 22})
_SQLITE_DAMAGED = frozenset({11, 26})


@contextmanager
def translated(path: str) -> Iterator[None]:
    """SQLite's errors of the environment as dist's, naming the path at fault when one can be found
    (``_what_is_wrong``): ``store PATH: no space left on device``, ``store ROOT: read-only file
    system`` (Unavailable), ``... database disk image is malformed`` (DataError). Others, an error in
    dist's own SQL, go on as they are: an internal error with its traceback under --debug.
    A parameter SQLite cannot take as text is an argument's fault: InvalidArgument."""
    try:
        yield
    except UnicodeEncodeError as e:  # a query parameter from an argument that is not UTF-8 text
        raise InvalidArgument("argument", str(e.object), "is not valid UTF-8") from None
    except sqlite3.Error as e:
        code = getattr(e, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary in _SQLITE_DAMAGED or _tables_unlike_the_schema(e):
            raise DataError("store", path, f"{e} (the metadata database is damaged)") from e
        if primary in _SQLITE_UNAVAILABLE:
            which, why = _what_is_wrong(path, primary) or (path, str(e))
            raise Unavailable("store", which, why) from e
        raise


# SQLite says "unable to open database file", "attempt to write a readonly database" or "disk I/O
# error" whatever the cause, and Python's sqlite3 does not pass on the errno: the cause is found by
# looking at the files and their file system, once SQLite has failed.
_SQLITE_FILES = (("", "the metadata database"), ("-wal", "SQLite's write-ahead log"),
                 ("-shm", "SQLite's shared-memory index"))
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 3, 8, 10, 13, 14


def _what_is_wrong(path: str, primary: int) -> tuple[str, str] | None:
    """``(which, why)`` naming the path at fault and the fault, or None when nothing looks wrong
    (SQLite's own words are then the best there is). Busy and locked are not looked into."""
    if primary not in (_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN):
        return None
    import stat

    for suffix, role in _SQLITE_FILES:
        try:
            mode = os.lstat(path + suffix).st_mode
        except OSError:
            continue  # absent (SQLite makes the -wal and -shm), or the directory is the fault
        if not stat.S_ISREG(mode):
            kind = "directory" if stat.S_ISDIR(mode) else "symbolic link" if stat.S_ISLNK(mode) else "special file"
            return path + suffix, f"is a {kind}, not a file ({role})"
    root = os.path.dirname(path)
    try:
        fs = os.statvfs(root)
    except OSError:
        return None
    if fs.f_flag & os.ST_RDONLY:
        return root, "read-only file system (dist writes its metadata there, even to read it)"
    if not os.access(root, os.W_OK | os.X_OK, effective_ids=True):
        return root, (f"directory not writable by uid {os.geteuid()} (dist makes the metadata "
                      "database's -wal and -shm files there, even to read it)")
    for suffix, role in _SQLITE_FILES:
        if os.path.exists(path + suffix) and not os.access(path + suffix, os.R_OK | os.W_OK, effective_ids=True):
            return path + suffix, f"not readable and writable by uid {os.geteuid()} ({role})"
    # FULL may also be max_page_count, IOERR any failed read or write: the disk must say it is full.
    if primary in (_SQLITE_FULL, _SQLITE_IOERR) and fs.f_bavail * fs.f_frsize < RESERVE_BYTES:
        return path, "no space left on device"
    return None


def _tables_unlike_the_schema(e: sqlite3.Error) -> bool:
    """A table or column missing, or one a migration would make already there: the database's
    tables are not what its schema version says (dropped or altered by hand), not a bug of ours,
    which the tests would meet first."""
    text = str(e)
    return isinstance(e, sqlite3.OperationalError) and (
        text.startswith(("no such table", "no such column")) or text.endswith("already exists"))


class Metadata:
    """One process's handle on ``metadata.db``: ``read()`` and ``write()`` transactions."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = os.path.join(root, "metadata.db")
        self._conn: sqlite3.Connection | None = None
        self._write_depth = 0
        self._on_commit: list[Callable[[sqlite3.Connection], None]] = []
        self._after_release: list[Callable[[], None]] = []
        self._lock = None
        self._thread_lock = threading.RLock()
        self.reserve_path = os.path.join(root, RESERVE_NAME)

    # -------------------------------------------------------------- the space reserve

    def reserve_size(self) -> int:
        """What the reserve should hold: room for a transaction that rewrites every page of the
        database into the ``-wal`` (a gc deleting tens of thousands of rows does nearly that:
        20,000 blob rows needed more than 1 MiB), a quarter more for pages a spilling cache
        writes twice, and the ``-shm``; in whole MiB, at least one."""
        try:
            database = os.stat(self.path).st_size
        except OSError:
            database = 0
        need = database + database // 4 + (64 << 10)
        return min(RESERVE_MAX_BYTES, max(RESERVE_BYTES, -(-need // RESERVE_BYTES) * RESERVE_BYTES))

    def mind_reserve(self, may_make: bool) -> None:
        """Gives up the reserve when less than it holds is free, so that this run's SQLite files
        (and an ``rmi`` or ``gc`` that frees space) find room; with ``may_make`` (a writer, under
        the write lock) makes it again, or larger as the database grew, when the disk has room
        to spare. Best effort: a reserve that cannot be made is no error, the disk has none."""
        try:
            st = os.statvfs(self.root)
        except OSError:  # no root yet (made by the connect that follows) or not a directory
            return
        free = st.f_bavail * st.f_frsize
        try:
            held = os.stat(self.reserve_path).st_size
        except OSError:
            held = 0
        if free < max(held, RESERVE_BYTES):
            # No lock: an unlink is atomic, and a reader on a full disk needs the room as much. A
            # killed maker's file aside is given up too; a running maker's rename then fails.
            for path in (self.reserve_path, self._reserve_aside):
                with contextlib.suppress(OSError):
                    os.unlink(path)
        elif may_make:
            # As large as the database wants, or as many whole MiB as leave the disk three times
            # that to spare: a disk with no room for the full size still gets a smaller reserve
            # (at least 1 MiB, enough for small transactions), rather than none at all.
            fits = free // RESERVE_REMADE_TIMES // RESERVE_BYTES * RESERVE_BYTES
            size = min(self.reserve_size(), fits)
            if size >= RESERVE_BYTES and held < size:
                self._make_reserve(size)

    @property
    def _reserve_aside(self) -> str:
        return f"{self.reserve_path}.tmp"

    def _make_reserve(self, size: int) -> None:
        # Made aside and renamed (over a smaller one): a reserve is whole or absent. The write lock
        # keeps makers apart, so one name for the file aside will do.
        aside = self._reserve_aside
        try:
            fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)  # blocks allocated, not a sparse file
            finally:
                os.close(fd)
            os.rename(aside, self.reserve_path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(aside)

    # -------------------------------------------------------------- connection

    def connection(self) -> sqlite3.Connection:
        """The process's connection, its schema current (migrated under the write lock)."""
        if self._conn is None:
            with translated(self.path):
                self._conn = self._connect()
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            self._refuse_newer(version)
            if version < SCHEMA_VERSION:
                with self.write():
                    pass  # write() migrates inside its transaction
        return self._conn

    def _refuse_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise Unavailable("metadata", self.path,
                              f"schema version {version} is newer than this dist ({SCHEMA_VERSION})")

    def _connect(self) -> sqlite3.Connection:
        os.makedirs(self.root, exist_ok=True)
        self.mind_reserve(may_make=False)  # SQLite makes its -shm on opening: 32 KiB it may not find
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a commit survives any process crash (kill -9) and the database never
        # corrupts; only a power loss may roll back the last commits, which leaves at worst a blob file
        # without its row, an orphan the next gc removes. FULL would fsync every commit: a task run
        # makes several.
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Applies the migrations this database lacks, inside the caller's write transaction."""
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for migration in MIGRATIONS:
            if migration.version > version:
                migration.apply(conn)
                conn.execute(f"PRAGMA user_version = {migration.version}")

    def schema_version(self) -> int:
        return self.connection().execute("PRAGMA user_version").fetchone()[0]

    # -------------------------------------------------------------- transactions

    def _file_lock(self):
        if self._lock is None:
            from filelock import FileLock  # lazy: filelock costs ~20 ms to import; readers never need it

            os.makedirs(self.root, exist_ok=True)
            self._lock = FileLock(os.path.join(self.root, "metadata.lock"), timeout=WRITE_LOCK_TIMEOUT,
                                  poll_interval=0.002, preserve_lock_file=True)
        return self._lock

    @contextmanager
    def write(self, wait: bool = True) -> Iterator[sqlite3.Connection]:
        """A short write transaction under the store's write lock (with ``wait=False``,
        Unavailable at once when another process holds it). SQLite's failures of the disk or
        the file come out as DistErrors naming the database (``translated``).

        Re-entrant: a nested ``write()`` joins the outer transaction. Callbacks
        registered with ``on_commit`` run after COMMIT, still under the lock;
        those registered with ``after_release`` run once the lock is released.
        A rollback drops both. Never stream bytes, hash, decompress or touch
        the network in here.
        """
        with translated(self.path), self._transaction(wait) as conn:
            yield conn

    @contextmanager
    def _transaction(self, wait: bool) -> Iterator[sqlite3.Connection]:
        with self._thread_lock:
            if self._write_depth:
                self._write_depth += 1
                try:
                    yield self._conn  # type: ignore[misc]
                finally:
                    self._write_depth -= 1
                return
            lock = self._file_lock()
            from filelock import Timeout

            try:
                lock.acquire(timeout=None if wait else 0)
            except Timeout:
                raise Unavailable("store", self.root, "timed out waiting for the write lock" if wait
                                  else "another process is writing") from None
            try:
                self.mind_reserve(may_make=True)
                if self._conn is None:
                    self._conn = self._connect()
                conn = self._conn
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                # A newer dist's tables may hold references this one cannot see: its gc would sweep
                # what they keep. Writes are refused as reads are.
                self._refuse_newer(version)
                if version < SCHEMA_VERSION:
                    # Migrations commit on their own: a failing caller must not roll the schema back.
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        self._migrate(conn)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                conn.execute("BEGIN IMMEDIATE")
                self._write_depth = 1
                hooks: list[Callable[[sqlite3.Connection], None]] = []
                later: list[Callable[[], None]] = []
                try:
                    yield conn
                except BaseException:
                    self._on_commit.clear()
                    self._after_release.clear()
                    if conn.in_transaction:  # SQLite may have rolled back already (a full disk)
                        conn.execute("ROLLBACK")
                    raise
                else:
                    hooks, self._on_commit = self._on_commit, []
                    later, self._after_release = self._after_release, []
                    try:
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                    first = _run_all(hooks, conn)
                finally:
                    self._write_depth = 0
            finally:
                lock.release()
        late = _run_all(later)
        first = first or late
        if first is not None:
            raise first  # the records committed; what failed is the clean-up of files gc also does

    def on_commit(self, hook: Callable[[sqlite3.Connection], None]) -> None:
        """Runs ``hook`` once after the current write transaction commits (under the lock)."""
        if not self._write_depth:
            raise DistError("metadata", "", "on_commit outside a write transaction")
        if hook not in self._on_commit:
            self._on_commit.append(hook)

    def after_release(self, task: Callable[[], None]) -> None:
        """Runs ``task`` once the current write transaction has committed and the lock is
        released: slow clean-up of what the transaction made unreachable (a snapshot's tree)."""
        if not self._write_depth:
            raise DistError("metadata", "", "after_release outside a write transaction")
        self._after_release.append(task)

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent WAL snapshot for several queries; takes no lock, never writes."""
        with translated(self.path), self._thread_lock:  # one connection per process: threads take turns
            conn = self.connection()
            if self._write_depth or conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def ensure_namespace(self, conn: sqlite3.Connection, namespace: str, now: float) -> None:
        """Namespaces are created on first write (SPEC)."""
        conn.execute(
            "INSERT OR IGNORE INTO namespaces (name, labels, created_at, updated_at) VALUES (?, '{}', ?, ?)",
            (namespace, now, now),
        )
