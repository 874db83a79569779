"""The local content store: an OCI image layout at ``ROOT/content`` plus an ingest area.

Layout::

    content/oci-layout                  {"imageLayoutVersion": "1.0.0"}
    content/index.json                  the default namespace's images (kept by store/images.py)
    content/blobs/sha256/<hex>          committed blobs, mode 0444
    content/ingest/<sha256(ref)>/       one ingest in progress: data, ref, started, lock
    content/ingest/.removed-<…>/        an ingest being deleted (renamed first, then emptied)

A blob becomes visible only through ``Writer.commit``: fsync the data, check
size and digest, then — under the metadata write lock — rename it into
``blobs/``, fsync the directory and insert its ``blobs`` row (the truth). A
live writer holds its ingest's ``lock``; ``gc`` removes only ingests whose
lock it can take, so a killed ingest stays resumable by ref until then. An
ingest directory is removed by renaming it away while its lock is held: a
writer of the same ref arriving meanwhile starts on a new directory, never in
one whose files are being deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from typing import BinaryIO

from dist_tool.errors import Conflict, DataError, InvalidArgument, NotFound, Unavailable
from dist_tool.oci import ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, OCI_LAYOUT_VERSION, Descriptor
from dist_tool.proc import own_mark, process_start
from dist_tool.store import trash
from dist_tool.store.api import ContentInfo, IngestStatus, LeaseResource
from dist_tool.store.leases import add_resource_row
from dist_tool.store.limits import COPY_CHUNK
from dist_tool.store.metadata import Metadata, dump_labels, load_labels
from dist_tool.validate import decimal, utf8

Progress = Callable[[int], None]
INGEST_LOCK_POLL = 0.02
UNNAMED_INGEST_GRACE = 60.0  # seconds an ingest directory without a ref is left to its writer


def _hasher(digest: str | None):
    # hashlib loads OpenSSL (about 4 ms): only what hashes pays for it, not a listing
    import hashlib

    algorithm = digest.partition(":")[0] if digest else "sha256"
    if algorithm not in ("sha256", "sha512"):
        raise InvalidArgument("digest", digest or "", f"unsupported algorithm {algorithm}")
    return algorithm, hashlib.new(algorithm)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _StaleLock(Exception):
    pass


REMOVED_PREFIX = ".removed-"  # an ingest directory renamed away to be deleted; no ingest


def _held(lock_path: str) -> bool | None:
    """Whether a writer holds the ingest lock at ``lock_path``; None when the file is gone (the
    ingest was committed or removed). A probe must create nothing: filelock makes the file and
    its directory, which would bring back the directory of an ingest just renamed away."""
    import fcntl

    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # filelock's UnixFileLock takes the same lock
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases the probe's lock with the descriptor
    return False


def _lock_ingest(directory: str, ref: str, wait: bool):
    """Takes the lock of the ingest in ``directory`` (made if needed): its holder alone writes,
    commits or removes the ingest. Conflict when another writer holds it and ``wait`` is off."""
    from filelock import Timeout, UnixFileLock

    lock_path = os.path.join(directory, "lock")

    def still_linked(fd: int) -> None:
        # A peer that committed or removed the ingest renamed its directory away while holding the
        # lock; a waiter that then wins the lock holds a file of the old one and must start over.
        try:
            same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            raise _StaleLock

    while True:
        os.makedirs(directory, exist_ok=True)
        lock = UnixFileLock(lock_path, timeout=-1 if wait else 0, poll_interval=INGEST_LOCK_POLL,
                            preserve_lock_file=True, on_acquired=still_linked)
        try:
            lock.acquire()
            return lock
        except Timeout:
            raise Conflict("ingest", ref, "locked by another writer") from None
        except (_StaleLock, FileNotFoundError):
            continue  # the directory went under us: take the new one


def _remove_locked(directory: str, lock) -> None:
    """Deletes an ingest directory whose lock the caller holds, and releases the lock. The rename
    comes first, under the lock: the ref's path is free at once for a new writer, whose files the
    deletion can then never reach."""
    import secrets

    parent, key = os.path.split(directory)
    removed = os.path.join(parent, f"{REMOVED_PREFIX}{key}-{secrets.token_hex(8)}")
    try:
        os.rename(directory, removed)
    except FileNotFoundError:
        removed = None
    finally:
        lock.release()
    if removed is not None:
        shutil.rmtree(removed, ignore_errors=True)


def _ingest_key(ref: str) -> str:
    import hashlib

    return hashlib.sha256(utf8("ref", ref).encode()).hexdigest()


class LocalWriter:
    """One open ingest. Not thread-safe; one writer per ref at a time (the lock)."""

    def __init__(self, store: LocalContentStore, ref: str, expected: Descriptor | None,
                 lease: tuple[str, str] | None, wait: bool, digest: str | None = None) -> None:
        if not ref or "\n" in ref:
            raise InvalidArgument("ingest ref", ref, "must be a non-empty single line")
        # The hash first: an unsupported algorithm must be refused before anything is on disk.
        self.algorithm, self._hash = _hasher(expected.digest if expected else digest)
        self.store = store
        self.ref = ref
        self.expected = expected
        self.lease = lease
        self.dir = os.path.join(store.ingest_dir, _ingest_key(ref))
        self._lock = _lock_ingest(self.dir, ref, wait)
        fresh = not os.path.exists(os.path.join(self.dir, "data"))
        try:
            self._write_small("ref", ref)
            if not os.path.exists(os.path.join(self.dir, "started")):
                self._write_small("started", repr(time.time()))
            if expected is not None:
                self._write_small("expected", json.dumps(expected.to_json()))
            elif digest is not None:  # its size unknown: content active still shows what it should hash to
                self._write_small("expected", json.dumps({"digest": digest}))
            self._data = open(os.path.join(self.dir, "data"), "ab+")
            self.offset = self._rehash_existing()
        except BaseException:
            if fresh:  # nothing of a killed writer's to resume: what this one began goes (a full disk)
                _remove_locked(self.dir, self._lock)
            else:
                self._lock.release()
            raise
        self._closed = False

    def check_room(self, size: int) -> None:
        """Refuses, before a byte is written, a blob larger than the free space: a small archive
        whose header claims gigabytes (a gzip bomb), or a registry's descriptor that does, would
        otherwise fill the disk every process shares before its digest could be found wrong.
        An ingest with nothing written yet goes with the refusal: it leaves no trace."""
        needed = size - self.offset
        free = shutil.disk_usage(self.store.ingest_dir).free
        if needed > free:
            if self.offset == 0:
                self.abort()
            raise Unavailable("ingest", self.ref, f"needs {needed} bytes and the store's file system has {free} free")

    def _write_small(self, name: str, text: str) -> None:
        try:
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)
        except OSError as e:  # ENOSPC comes from the flush at close, an error that names no file
            raise self._write_error(e, name) from None

    def _rehash_existing(self) -> int:
        """Resumes the hash over bytes a previous (killed) writer left, in bounded chunks."""
        self._data.seek(0)
        total = 0
        while chunk := self._data.read(COPY_CHUNK):
            self._hash.update(chunk)
            total += len(chunk)
        self._data.seek(0, os.SEEK_END)
        return total

    def read_existing(self, offset: int, size: int) -> bytes:
        """Bytes already written at ``offset`` (to compare a resumed stream against)."""
        self._data.flush()
        return os.pread(self._data.fileno(), size, offset)

    def truncate(self, offset: int) -> None:
        """Drops everything after ``offset`` (a resumed stream diverged there)."""
        self._data.flush()
        self._data.truncate(offset)
        self._data.seek(0, os.SEEK_END)
        self._hash = _hasher(f"{self.algorithm}:")[1]
        self.offset = 0
        self.offset = self._rehash_existing()

    def write(self, data: bytes) -> None:
        try:
            self._data.write(data)
        except OSError as e:
            raise self._write_error(e) from None
        self._hash.update(data)
        self.offset += len(data)

    def _write_error(self, e: OSError, name: str = "data") -> Unavailable:
        """A failed write to the ingest (a full disk) is the store's, named as such: the stream
        being read, an archive or a registry, is not to blame."""
        return Unavailable("ingest", self.ref, f"{e.strerror or e} (writing {os.path.join(self.dir, name)})")

    def commit(self, size: int | None = None, digest: str | None = None,
               labels: Mapping[str, str] | None = None) -> str:
        """Verifies size and digest, then makes the blob visible by an atomic rename.

        On mismatch raises DataError, discards the ingest and leaves nothing
        visible. An already-present digest is not an error. Returns the digest.
        """
        if self.expected is not None:
            size = self.expected.size if size is None else size
            digest = self.expected.digest if digest is None else digest
        try:
            self._data.flush()
            os.fsync(self._data.fileno())
        except OSError as e:
            raise self._write_error(e) from None
        actual = f"{self.algorithm}:{self._hash.hexdigest()}"
        if size is not None and self.offset != size:
            self.abort()
            raise DataError("blob", digest or actual, f"size mismatch: expected {size} bytes, got {self.offset}")
        if digest is not None and actual != digest:
            self.abort()
            raise DataError("blob", digest, f"digest mismatch: content hashes to {actual}")
        self._data.close()
        self.store._commit_file(os.path.join(self.dir, "data"), actual, self.offset, labels, self.lease)
        self._remove()
        return actual

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if not self._data.closed:
                self._data.close()
            self._lock.release()

    def abort(self) -> None:
        if not self._data.closed:
            self._data.close()
        self._remove()

    def _remove(self) -> None:
        if not self._closed:
            self._closed = True
            if not self._data.closed:
                self._data.close()
            _remove_locked(self.dir, self._lock)

    def __enter__(self) -> LocalWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalContentStore:
    """Blobs in an OCI image layout, their records in the metadata DB."""

    def __init__(self, root: str, meta: Metadata) -> None:
        self.layout = os.path.join(root, "content")
        self.blobs_dir = os.path.join(self.layout, "blobs")
        self.ingest_dir = os.path.join(self.layout, "ingest")
        self.trash_dir = os.path.join(self.layout, "trash")  # blob files on their way out (see trash_file)
        self.meta = meta
        self._initialized = False

    # -------------------------------------------------------------- layout

    def ensure_layout(self) -> None:
        if not self._initialized:
            create_layout(self.layout)
            self._initialized = True

    def blob_path(self, digest: str) -> str:
        algorithm, _, hexpart = digest.partition(":")
        if not hexpart or "/" in hexpart or "/" in algorithm or hexpart.startswith("."):
            raise InvalidArgument("digest", digest, "malformed digest")
        return os.path.join(self.blobs_dir, algorithm, hexpart)

    # -------------------------------------------------------------- Provider / InfoProvider

    def open_blob(self, digest: str) -> BinaryIO:
        if not self.exists(digest):
            raise NotFound("blob", digest, "not found")
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:  # the store is damaged, not the name wrong: exit 1 (SPEC: a missing blob)
            raise DataError("blob", digest, "recorded but its file is missing (see dist content verify)") from None

    def read_blob(self, digest: str, limit: int) -> bytes:
        with self.open_blob(digest) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise DataError("blob", digest, f"larger than the {limit}-byte limit for documents")
        return data

    def exists(self, digest: str) -> bool:
        with self.meta.read() as conn:
            return conn.execute("SELECT 1 FROM blobs WHERE digest = ?", (digest,)).fetchone() is not None

    def info(self, digest: str) -> ContentInfo:
        with self.meta.read() as conn:
            row = conn.execute("SELECT digest, size, created_at, updated_at, labels FROM blobs WHERE digest = ?",
                               (digest,)).fetchone()
        if row is None:
            raise NotFound("blob", digest, "not found")
        return _info(row)

    def present(self) -> dict[str, int]:
        with self.meta.read() as conn:
            return dict(conn.execute("SELECT digest, size FROM blobs"))

    # -------------------------------------------------------------- Ingester

    def writer(self, ref: str, expected: Descriptor | None = None,
               lease: tuple[str, str] | None = None, wait: bool = False, digest: str | None = None) -> LocalWriter:
        """``digest``: what the content should hash to when its size is not known (``expected``
        needs both); it chooses the hash (sha256 or sha512), and commit checks it."""
        self.ensure_layout()
        return LocalWriter(self, ref, expected, lease, wait, digest)

    def ingest(self, ref: str, stream: BinaryIO, **options) -> str:
        """``ingest_stream`` on this store: copy, verify, commit (see there)."""
        return ingest_stream(self, ref, stream, **options)

    def _commit_file(self, path: str, digest: str, size: int, labels: Mapping[str, str] | None,
                     lease: tuple[str, str] | None) -> None:
        target = self.blob_path(digest)
        now = time.time()
        with self.meta.write() as conn:
            if lease is not None:  # first: a lease removed meanwhile stops the commit before the rename
                add_resource_row(conn, lease, LeaseResource("content", digest))
            present = conn.execute("SELECT 1 FROM blobs WHERE digest = ?", (digest,)).fetchone()
            if not present:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.chmod(path, 0o444)
                os.rename(path, target)
                _fsync_dir(os.path.dirname(target))
                conn.execute(
                    "INSERT INTO blobs (digest, size, labels, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                    (digest, size, dump_labels(labels or {}), now, now))
            elif labels:
                self._merge_labels(conn, digest, labels, now)

    def add_to_lease(self, digest: str, lease: tuple[str, str]) -> bool:
        """Protects an already-present blob with ``lease``; False when the blob is absent, NotFound
        when the lease is."""
        with self.meta.write() as conn:
            if conn.execute("SELECT 1 FROM blobs WHERE digest = ?", (digest,)).fetchone() is None:
                return False
            add_resource_row(conn, lease, LeaseResource("content", digest))
            return True

    # -------------------------------------------------------------- IngestManager

    def ingests(self) -> list[IngestStatus]:
        out = []
        try:
            keys = sorted(os.listdir(self.ingest_dir))
        except FileNotFoundError:
            return []
        for key in keys:
            if key.startswith(REMOVED_PREFIX):
                continue
            d = os.path.join(self.ingest_dir, key)
            if os.path.islink(d):  # not an ingest of ours (gc removes the link, never what it names)
                continue
            try:
                ref = _read_text(os.path.join(d, "ref"))
                started = float(_read_text(os.path.join(d, "started")))
                st = os.stat(os.path.join(d, "data"))
            except (FileNotFoundError, ValueError, NotADirectoryError):
                continue
            expected = None
            total = None
            try:
                exp = json.loads(_read_text(os.path.join(d, "expected")))
                expected, total = exp.get("digest"), exp.get("size")
            except (FileNotFoundError, ValueError):
                pass
            active = _held(os.path.join(d, "lock"))
            if active is None:  # no lock file: no writer, unless committed or removed meanwhile
                if not os.path.isdir(d):
                    continue
                active = False
            out.append(IngestStatus(ref, st.st_size, started, st.st_mtime, expected, total, active))
        return out

    def abort_ingest(self, ref: str) -> None:
        d = os.path.join(self.ingest_dir, _ingest_key(ref))
        if not os.path.isdir(d):
            raise NotFound("ingest", ref, "not found")
        _remove_locked(d, _lock_ingest(d, ref, wait=False))

    def remove_dead_ingests(self, dry_run: bool = False) -> list[IngestStatus]:
        """Removes the ingests no live writer holds (what ``gc`` does); returns them. The
        directories that name no ingest are ``remove_leftover_ingest_dirs``'s, after this."""
        dead = [s for s in self.ingests() if not s.active]
        if not dry_run:
            for status in dead:
                d = os.path.join(self.ingest_dir, _ingest_key(status.ref))
                try:
                    _remove_locked(d, _lock_ingest(d, status.ref, wait=False))
                except Conflict:
                    continue  # a writer took it meanwhile: it is alive again
        return dead

    def remove_leftover_ingest_dirs(self, dry_run: bool = False) -> list[tuple[str, int]]:
        """(ROOT-relative path, bytes of disk) of each ingest directory without a readable ref,
        start or data that is removed (or, with ``dry_run``, would be), in path order: a writer
        killed while it made or removed one (an import's layer thread between ``expected`` and
        ``data``) left it, and it names no ingest to resume. Spared while a writer holds the lock
        or the directory is young (a writer between its mkdir and its lock; taking the lock then
        would fail that writer as a conflict). What a remover renamed away and was killed before
        deleting is no one's: gone at once. Measured before removal, for gc's report; a non-
        directory entry (a link, a file) is no ingest of ours and goes unreported."""
        from filelock import Timeout, UnixFileLock

        from dist_tool.store.snapshots import leftover_bytes

        try:
            keys = sorted(os.listdir(self.ingest_dir))
        except FileNotFoundError:
            return []
        named = {_ingest_key(s.ref) for s in self.ingests()}
        young = time.time() - UNNAMED_INGEST_GRACE
        out = []
        for key in keys:
            d = os.path.join(self.ingest_dir, key)
            rel = os.path.join(os.path.basename(self.layout), "ingest", key)
            try:
                st = os.lstat(d)  # never followed: a link here must not lead gc out of the store
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):  # a symlink or a file is no ingest of ours: the entry goes
                if not dry_run:
                    with contextlib.suppress(OSError):
                        os.unlink(d)
                continue
            if key.startswith(REMOVED_PREFIX):
                out.append((rel, leftover_bytes(d)))
                if not dry_run:
                    shutil.rmtree(d, ignore_errors=True)
                continue
            if key in named or st.st_mtime > young:
                continue
            if dry_run:
                if not _held(os.path.join(d, "lock")):
                    out.append((rel, leftover_bytes(d)))
                continue
            lock = UnixFileLock(os.path.join(d, "lock"), timeout=0, preserve_lock_file=True)
            try:
                lock.acquire()
            except (Timeout, OSError):  # held, or its directory went meanwhile (a commit, an abort)
                continue
            out.append((rel, leftover_bytes(d)))
            _remove_locked(d, lock)
        return out

    # -------------------------------------------------------------- ContentManager

    def list(self, *filters: str) -> list[ContentInfo]:
        with self.meta.read() as conn:
            rows = conn.execute("SELECT digest, size, created_at, updated_at, labels FROM blobs ORDER BY digest")
            infos = [_info(r) for r in rows]
        if not filters:
            return infos
        from dist_tool.filters import select

        return select(infos, filters, ContentInfo.to_json)

    def delete(self, digest: str) -> None:
        with self.meta.write() as conn:
            cur = conn.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
            if cur.rowcount == 0:
                raise NotFound("blob", digest, "not found")
            # After COMMIT, still under the lock: a crash in between leaves a file no record
            # names (gc removes it), never a record without its file.
            self.meta.on_commit(lambda _conn: self.trash_file(digest))
        self.empty_trash()

    def trash_file(self, digest: str) -> None:
        """Moves a blob's file out of the layout into the trash, under the write lock: a rename is
        instant whatever the size, where the unlink of a gigabyte file holds the lock for a large
        part of a second. ``empty_trash`` unlinks it once the lock is released. A writer committing
        the same digest meanwhile finds the path free, as after an unlink."""
        os.makedirs(self.trash_dir, exist_ok=True)
        try:
            os.rename(self.blob_path(digest), os.path.join(
                self.trash_dir, f"{digest.replace(':', '-')}.{own_mark()}.{time.monotonic_ns()}"))
        except FileNotFoundError:
            pass

    def trash_leftovers(self, claim: bool = False) -> list[tuple[str, int]]:
        """(digest, size) of each blob file in the trash whose remover is gone (``trash.leftovers``):
        what a process killed between ``trash_file`` and ``empty_trash`` left. Called under the
        write lock before this process trashes anything; garbage collection reports them and,
        with ``claim``, takes them for its ``empty_trash`` to unlink."""
        out = []
        for name, path in trash.leftovers(self.trash_dir, claim):
            try:
                size = os.lstat(path).st_size
            except FileNotFoundError:
                continue
            out.append((name.partition(".")[0].replace("-", ":", 1), size))
        return out

    def empty_trash(self) -> None:
        """Unlinks what this process moved into the trash (``trash_file``, and a gc's
        ``trash_leftovers``), outside the lock; what other processes moved is theirs."""
        for path in trash.own_entries(self.trash_dir):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def update_labels(self, digest: str, labels: Mapping[str, str]) -> ContentInfo:
        now = time.time()
        with self.meta.write() as conn:
            if conn.execute("SELECT 1 FROM blobs WHERE digest = ?", (digest,)).fetchone() is None:
                raise NotFound("blob", digest, "not found")
            self._merge_labels(conn, digest, labels, now)
        return self.info(digest)

    @staticmethod
    def _merge_labels(conn, digest: str, labels: Mapping[str, str], now: float) -> None:
        current = load_labels(conn.execute("SELECT labels FROM blobs WHERE digest = ?", (digest,)).fetchone()[0])
        for key, value in labels.items():
            if value:
                current[key] = value
            else:
                current.pop(key, None)
        conn.execute("UPDATE blobs SET labels = ?, updated_at = ? WHERE digest = ?",
                     (dump_labels(current), now, digest))

    # -------------------------------------------------------------- verification

    def verify(self, digest: str) -> str | None:
        """Re-hashes a committed blob; returns None when intact, else what is wrong."""
        info = self.info(digest)
        algorithm, hasher = _hasher(digest)
        size = 0
        try:
            with open(self.blob_path(digest), "rb") as f:
                while chunk := f.read(COPY_CHUNK):
                    hasher.update(chunk)
                    size += len(chunk)
        except FileNotFoundError:
            return "file missing"
        except OSError as e:  # replaced by a directory, unreadable: as damaged as a wrong hash
            return f"file unreadable: {e.strerror or e}"
        if size != info.size:
            return f"size {size}, expected {info.size}"
        actual = f"{algorithm}:{hasher.hexdigest()}"
        if actual != digest:
            return f"hashes to {actual}"
        return None

    def remove_stale_temporaries(self) -> int:
        """Removes what a killed writer of ``index.json`` or ``oci-layout`` left (``NAME.tmp.PID``
        of a process that is gone); returns how many. Call under the write lock."""
        removed = 0
        try:
            names = os.listdir(self.layout)
        except FileNotFoundError:
            return 0
        for name in names:
            _, sep, pid = name.rpartition(".tmp.")
            writer = decimal(pid) if sep else None
            if writer is not None and process_start(writer) is None:
                try:
                    os.unlink(os.path.join(self.layout, name))
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def orphan_files(self, known: Mapping[str, int]) -> list[tuple[str, int]]:
        """(digest, size) of each blob file no record in ``known`` names, in digest order: left
        by a collection killed between its COMMIT and its unlinks, or by hand. Garbage
        collection reports and removes them."""
        out = []
        for algorithm, hex_length in (("sha256", 64), ("sha512", 128)):
            try:
                with os.scandir(os.path.join(self.blobs_dir, algorithm)) as entries:
                    for entry in entries:
                        digest = f"{algorithm}:{entry.name}"
                        if digest not in known and _could_be_a_blob(entry, hex_length):
                            out.append((digest, _size_or_zero(entry)))
            except FileNotFoundError:
                continue
        return sorted(out)


def _could_be_a_blob(entry: os.DirEntry, hex_length: int) -> bool:
    """A file (or symlink) named like a digest's hex. Anything else there (a directory, a
    "notes.txt") is no blob of ours, so gc leaves it alone: a directory made every gc fail."""
    name = entry.name
    if len(name) != hex_length or name.strip("0123456789abcdef"):
        return False
    try:
        return entry.is_symlink() or entry.is_file(follow_symlinks=False)
    except OSError:  # gone meanwhile
        return False


def _size_or_zero(entry: os.DirEntry) -> int:
    try:
        return entry.stat(follow_symlinks=False).st_size
    except OSError:  # gone meanwhile: removed all the same
        return 0


def create_layout(layout: str) -> None:
    """An empty OCI image layout with an ingest area and a trash; idempotent (``oci-layout`` is
    written last)."""
    marker = os.path.join(layout, "oci-layout")
    if os.path.exists(marker):
        return
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    os.makedirs(os.path.join(layout, "ingest"), exist_ok=True)
    os.makedirs(os.path.join(layout, "trash"), exist_ok=True)
    if not os.path.exists(os.path.join(layout, "index.json")):
        write_layout_index(layout, [])
    _atomic_write(marker, json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}).encode())


def ingest_stream(store: LocalContentStore, ref: str, stream: BinaryIO, *, size: int | None = None,
                  digest: str | None = None, labels: Mapping[str, str] | None = None,
                  lease: tuple[str, str] | None = None, progress: Progress | None = None,
                  wait: bool = False, keep_partial: bool = True) -> str:
    """Copies ``stream`` into the store under ``ref`` in constant memory and commits it.

    The stream is read whole every time. When ``ref`` names an interrupted
    ingest, the bytes it already holds are compared with the stream's and not
    written again; a divergence truncates the ingest there. The result is
    checked against the whole stream (and ``size``/``digest`` when given).
    If reading the stream fails, the partial ingest stays resumable by ``ref``
    unless ``keep_partial`` is false (bad input must leave the store as it was).
    """
    expected = Descriptor("application/octet-stream", digest, size) if digest and size is not None else None
    with store.writer(ref, expected, lease=lease, wait=wait, digest=digest) as w:
        if digest is None:
            present = False
        else:
            present = store.add_to_lease(digest, lease) if lease else store.exists(digest)
        if present:
            w.abort()  # present already, or a peer committed it while we waited for the ref
            if size is not None and (held := store.info(digest).size) != size:  # type: ignore[arg-type]
                raise DataError("blob", digest, f"is present with {held} bytes, not the {size} expected")
            return digest  # type: ignore[return-value]
        try:
            if size is not None:
                w.check_room(size)
            return _copy_resuming(w, stream, size, digest, labels, progress)
        except BaseException:
            if not keep_partial and not w._closed:
                w.abort()
            raise


def _copy_resuming(w: LocalWriter, stream: BinaryIO, size: int | None, digest: str | None,
                   labels: Mapping[str, str] | None, progress: Progress | None) -> str:
    already = w.offset
    position = 0
    while position < already:
        chunk = stream.read(min(COPY_CHUNK, already - position))
        if not chunk:
            break
        if w.read_existing(position, len(chunk)) != chunk:
            w.truncate(position)
            w.write(chunk)
            position += len(chunk)
            already = position
            break
        position += len(chunk)
        if progress:
            progress(position)
    if position < already:  # the stream is shorter than what the ingest holds
        w.truncate(position)
    while chunk := stream.read(COPY_CHUNK):
        w.write(chunk)
        if progress:
            progress(w.offset)
    return w.commit(size, digest, labels)


def write_layout_index(layout: str, images: Iterable[tuple[str, Descriptor]]) -> None:
    """Rewrites ``index.json`` so OCI tools see the images by their full names."""
    manifests = []
    for name, target in images:
        desc = target.to_json()
        annotations = dict(desc.get("annotations", {}))
        annotations[ANNOTATION_REF_NAME] = name
        annotations[ANNOTATION_CONTAINERD_NAME] = name
        desc["annotations"] = annotations
        manifests.append(desc)
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    os.makedirs(layout, exist_ok=True)
    path = os.path.join(layout, "index.json")
    data = json.dumps(doc, indent=1).encode()
    try:
        with open(path, "rb") as f:
            unchanged = f.read(len(data) + 1) == data
    except FileNotFoundError:
        unchanged = False
    if not unchanged:  # most collections (after every container rm) change no image: no fsync for them
        _atomic_write(path, data)


def _atomic_write(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:  # a full disk fails the flush, whose error names no file
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise Unavailable("file", path, f"{e.strerror or e} (writing {tmp})") from None
    os.replace(tmp, path)


def _read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def _info(row) -> ContentInfo:
    return ContentInfo(row[0], row[1], row[2], row[3], load_labels(row[4]))
