"""Issue 2: a full disk and a broken store environment. An operator frees space with dist itself,
a failed write leaves the store as it was, and every failure is one line naming the path."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
from helpers import Dist, fill, free_bytes, sans_allocations, store_fingerprint, tmpfs

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs")]


@pytest.fixture
def small_disk(tmp_path: Path):
    with tmpfs(tmp_path / "disk", "24m") as disk:
        yield disk


@pytest.fixture
def disk_64m(tmp_path: Path):
    with tmpfs(tmp_path / "disk", "64m") as disk:
        yield disk


def test_a_full_disk_still_lists_removes_and_collects(small_disk, busybox_rootfs):
    """SQLite makes its -shm (32 KiB) on every open and grows its -wal on every write: with no
    free block even ``dist images`` failed ('disk I/O error'), and nothing could free space."""
    dist = Dist(small_disk / "root")
    dist.ok("images", "import", "--rootfs", str(busybox_rootfs), "--name", "dk-bb")
    fill(small_disk)
    assert free_bytes(small_disk) == 0
    assert dist.ok("images", "-q").lines == ["docker.io/library/dk-bb:latest"]
    dist.ok("rmi", "dk-bb")
    dist.ok("gc")
    assert dist.ok("images", "-q").lines == []
    assert free_bytes(small_disk) > 1 << 20  # the layer's blob and its unpacked snapshot are gone


def test_the_reserve_grows_with_the_database_so_a_big_gc_cleans_a_full_disk(disk_64m):
    """One gc deleting 20,000 blob rows writes more than 1 MiB of -wal: with a fixed 1 MiB reserve
    it failed 'no space left on device' on a full disk, and so did every gc after it."""
    import sqlite3

    dist = Dist(disk_64m / "root")
    dist.ok("leases", "create", "--id", "dk-l")  # makes the database (and a 1 MiB reserve)
    conn = sqlite3.connect(dist.root / "metadata.db")
    with conn:  # rows of no file, as a crash or a hand leaves: garbage to a gc
        conn.executemany("INSERT INTO blobs (digest, size, labels, created_at, updated_at) VALUES (?, 1, '{}', 0, 0)",
                         [(f"sha256:{i:064x}",) for i in range(20_000)])
    conn.close()
    dist.ok("leases", "rm", "dk-l")  # a writer: grows the reserve to the database's size
    reserve, database = (dist.root / "metadata.reserve").stat().st_size, (dist.root / "metadata.db").stat().st_size
    assert reserve > database > 1 << 20
    fill(disk_64m)
    result = dist.ok("gc", "--json").json
    assert len(result["removed"]["content"]) == 20_000
    assert dist.ok("content", "ls", "-q").lines == []


def test_a_disk_short_of_room_for_the_full_reserve_still_gets_a_smaller_one(small_disk):
    """With a 2 MiB database the reserve wants 3 MiB, and was made only once 12 MiB were free: on
    a small disk with 8 MiB free none was made again after a full disk had taken it, and at the
    next full disk ``images``, ``leases rm`` and ``gc`` all failed 'no space left on device'."""
    import sqlite3

    dist = Dist(small_disk / "root")
    dist.ok("leases", "create", "--id", "dk-l")
    conn = sqlite3.connect(dist.root / "metadata.db")
    with conn:  # live leases (no expiry): rows no gc removes, so the database stays this large
        conn.executemany("INSERT INTO leases (namespace, id, labels, created_at) VALUES ('default', ?, ?, 0)",
                         [(f"dk-{i:06d}", '{"k": "' + "v" * 40 + '"}') for i in range(16_000)])
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert (dist.root / "metadata.db").stat().st_size > 1_700_000  # so the reserve wants 3 MiB
    filler = fill(small_disk)
    dist.ok("images", "-q")  # gives the reserve up
    assert not (dist.root / "metadata.reserve").exists()
    filler.unlink()
    fill(small_disk, leave=8 << 20)
    dist.ok("leases", "rm", "dk-l")  # a writer, with room for a 2 MiB reserve but not a 3 MiB one
    assert (dist.root / "metadata.reserve").stat().st_size == 2 << 20
    fill(small_disk)
    assert dist.ok("images", "-q").lines == []
    dist.ok("leases", "rm", "dk-000001")
    dist.ok("gc")


def test_a_killed_reserve_makers_file_is_given_up_too(small_disk, busybox_rootfs):
    """A writer killed while making the reserve leaves ``metadata.reserve.tmp``: on a full disk
    that MiB was never given up, and every command failed 'no space left on device'."""
    dist = Dist(small_disk / "root")
    dist.ok("images", "import", "--rootfs", str(busybox_rootfs), "--name", "dk-bb")
    os.rename(dist.root / "metadata.reserve", dist.root / "metadata.reserve.tmp")
    fill(small_disk)
    assert dist.ok("images", "-q").lines == ["docker.io/library/dk-bb:latest"]
    assert not (dist.root / "metadata.reserve.tmp").exists()
    dist.ok("rmi", "dk-bb")


def test_an_import_that_fills_the_disk_leaves_the_store_as_it_was(small_disk, busybox_rootfs, tmp_path):
    """With just room for the layer's blob, the disk filled at the next write (the config, the
    manifest, SQLite's log, the unpack): the clean-up, itself a write, failed and left blob rows,
    files and the operation's leases behind. Tried at several fill levels past the blob's size."""
    import shutil

    rootfs = tmp_path / "rootfs"
    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    (rootfs / "random").write_bytes(os.urandom(3 << 20))  # incompressible: the layer's blob is ~4 MiB
    source = Dist(tmp_path / "source")
    source.ok("images", "import", "--rootfs", str(rootfs), "--name", "dk-big")
    source.ok("images", "export", str(tmp_path / "big.tar"), "dk-big")
    layer_size = max(blob["size"] for blob in source.ok("content", "ls", "--json").json)

    dist = Dist(small_disk / "root")
    dist.ok("images", "import", "--rootfs", str(busybox_rootfs), "--name", "dk-bb")
    before = sans_allocations(store_fingerprint(dist.root))
    for room in range(layer_size + (32 << 10), layer_size + (320 << 10), 32 << 10):
        filler = fill(small_disk, leave=room)
        result = dist("images", "import", "--progress", "none", str(tmp_path / "big.tar"))
        assert result.code == 1, result.stderr
        assert sans_allocations(store_fingerprint(dist.root)) == before, (room, result.stderr)
        filler.unlink()
        assert dist.ok("leases", "ls", "-q").lines == [], room
        assert dist.ok("content", "active", "-q").lines == [], room
        assert dist.ok("gc", "--dry-run").stdout == "would free 0 B in 0 blobs\n", room


def test_no_space_is_one_line_naming_the_file(small_disk):
    """An ingest's small files (ref, started) fail at the flush, whose OSError names no file:
    'I/O error: [Errno 28] ...' came out. SQLite says 'disk I/O error' when it cannot make its
    -shm: with the reserve already spent, that is the disk being full, and says so."""
    dist = Dist(small_disk / "root")
    dist.ok("leases", "create", "--id", "dk-before")
    fill(small_disk)
    result = dist("content", "ingest", "--ref", "dk-r", input=b"hello")
    key = hashlib.sha256(b"dk-r").hexdigest()
    assert (result.code, result.stderr) == (1, f"dist: error: ingest dk-r: No space left on device (writing "
                                               f"{dist.root / 'content' / 'ingest' / key / 'ref'})\n")
    assert os.listdir(dist.root / "content" / "ingest") == []  # nothing of it to resume: nothing left
    os.unlink(dist.root / "metadata.reserve")  # spent: what was freed filled up again
    fill(small_disk)
    for args in (["images"], ["leases", "create", "--id", "dk-after"]):
        result = dist(*args)
        assert (result.code, result.stderr) == (
            1, f"dist: error: store {dist.root / 'metadata.db'}: no space left on device\n"), args


@pytest.fixture
def broken_store(request, busybox_rootfs):
    """A store with an image, then broken as ``request.param`` says; yields (how to run dist on
    it, the path the error must name, why). Under /tmp, not tmp_path (0700): nobody must reach it."""
    import shutil
    import sys
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="dk-broken-"))
    top.chmod(0o755)
    store = top / "store"
    Dist(store).ok("images", "import", "--no-unpack", "--rootfs", str(busybox_rootfs), "--name", "dk-bb")
    root, prefix, mounted = store, [], None
    if request.param == "read-only-mount":
        root = mounted = top / "ro"
        root.mkdir()
        subprocess.run(["mount", "--bind", "-o", "ro", str(store), str(root)], check=True)
        which, why = root, "read-only file system (dist writes its metadata there, even to read it)"
    elif request.param == "root-not-writable":
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        which, why = root, ("directory not writable by uid 65534 (dist makes the metadata database's -wal and -shm"
                            " files there, even to read it)")
    else:
        (store / "metadata.db-wal").mkdir()
        which, why = store / "metadata.db-wal", "is a directory, not a file (SQLite's write-ahead log)"

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*prefix, sys.executable, "-m", "dist_tool", "--root", str(root), "--state",
                               str(top / "state"), *args], capture_output=True, text=True)

    yield run, which, why
    if mounted is not None:
        subprocess.run(["umount", str(mounted)], check=True)
    shutil.rmtree(top)


@pytest.mark.parametrize("broken_store", ["read-only-mount", "root-not-writable", "wal-is-a-directory"],
                         indirect=True)
def test_a_store_sqlite_cannot_open_is_named_with_what_is_wrong(broken_store):
    """SQLite said only 'unable to open database file' or 'attempt to write a readonly database'."""
    run, which, why = broken_store
    for args in (["images"], ["content", "ls"]):
        result = run(*args)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", f"dist: error: store {which}: {why}\n")
    result = run("rmi", "dk-bb")  # a writer meets the write lock's file first on a read-only root
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and str(which) in result.stderr, result.stderr
