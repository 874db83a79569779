"""The local content store: verified commit, resumable ingests, labels, verify, listing."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import time

import pytest

from dist_tool.errors import Conflict, DataError, InvalidArgument, NotFound
from dist_tool.oci import Descriptor
from dist_tool.store.content import LocalContentStore, ingest_stream
from dist_tool.store.metadata import Metadata


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path) -> LocalContentStore:
    meta = Metadata(str(tmp_path / "root"))
    s = LocalContentStore(str(tmp_path / "root"), meta)
    s.ensure_layout()
    yield s
    meta.close()


def test_layout_is_an_oci_image_layout(store):
    layout = store.layout
    assert open(os.path.join(layout, "oci-layout")).read() == '{"imageLayoutVersion": "1.0.0"}'
    assert os.path.isdir(os.path.join(layout, "blobs", "sha256"))
    assert '"manifests": []' in open(os.path.join(layout, "index.json")).read()


def test_layout_index_is_rewritten_only_when_it_changes(store):
    from dist_tool.store.content import write_layout_index

    path = os.path.join(store.layout, "index.json")
    target = Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + "a" * 64, 10)
    write_layout_index(store.layout, [("example.com/a:1", target)])
    first = os.stat(path).st_ino
    write_layout_index(store.layout, [("example.com/a:1", target)])
    assert os.stat(path).st_ino == first  # same bytes: no rename, no fsync
    write_layout_index(store.layout, [("example.com/a:2", target)])
    assert os.stat(path).st_ino != first
    assert '"example.com/a:2"' in open(path).read()
    write_layout_index(store.layout, [])
    assert '"manifests": []' in open(path).read()


def test_commit_makes_a_verified_read_only_blob_visible(store):
    data = b"hello world\n" * 1000
    digest = ingest_stream(store, "ref-1", io.BytesIO(data), size=len(data), digest=digest_of(data))
    assert digest == digest_of(data)
    assert store.info(digest).size == len(data)
    assert store.read_blob(digest, 1 << 20) == data
    mode = os.stat(store.blob_path(digest)).st_mode
    assert stat.S_IMODE(mode) == 0o444
    assert store.ingests() == []


@pytest.mark.parametrize("size_delta,digest_ok,why", [
    (1, True, "size mismatch"),
    (0, False, "digest mismatch"),
], ids=["size", "digest"])
def test_mismatch_stores_nothing_and_frees_the_ref(store, size_delta, digest_ok, why):
    data = b"x" * 5000
    digest = digest_of(data) if digest_ok else digest_of(b"other")
    with pytest.raises(DataError, match=why):
        ingest_stream(store, "ref-bad", io.BytesIO(data), size=len(data) + size_delta, digest=digest)
    assert store.list() == []
    assert store.ingests() == []
    assert os.listdir(os.path.join(store.blobs_dir, "sha256")) == []


def test_an_already_present_digest_is_not_an_error(store):
    data = b"same"
    first = ingest_stream(store, "a", io.BytesIO(data))
    second = ingest_stream(store, "b", io.BytesIO(data), digest=first, size=len(data))
    assert first == second
    assert [i.digest for i in store.list()] == [first]


def test_interrupted_ingest_resumes_without_rewriting(store):
    data = os.urandom(3 * 1024 * 1024 + 17)
    w = store.writer("resume-me")
    w.write(data[:2_000_000])
    w._data.flush()
    w.close()  # as if killed: the bytes stay, the ref stays
    [status] = store.ingests()
    assert (status.ref, status.offset, status.active) == ("resume-me", 2_000_000, False)
    written = []
    original_write = store.writer

    def spy_writer(*a, **k):
        w = original_write(*a, **k)
        real = w.write
        w.write = lambda b: (written.append(len(b)), real(b))[1]
        return w

    store.writer = spy_writer
    digest = ingest_stream(store, "resume-me", io.BytesIO(data), size=len(data), digest=digest_of(data))
    assert digest == digest_of(data)
    assert sum(written) == len(data) - 2_000_000  # the first 2,000,000 bytes were not written again
    assert store.read_blob(digest, 10 << 20) == data


def test_resume_with_a_diverging_stream_rewrites_from_the_divergence(store):
    w = store.writer("diverge")
    w.write(b"A" * 1000)
    w.close()
    data = b"A" * 500 + b"B" * 700
    digest = ingest_stream(store, "diverge", io.BytesIO(data))
    assert store.read_blob(digest, 10_000) == data


def test_a_live_writer_locks_its_ref(store):
    w = store.writer("busy")
    try:
        with pytest.raises(Conflict, match="locked"):
            store.writer("busy")
        assert [s.active for s in store.ingests()] == [True]
    finally:
        w.close()


def test_expected_descriptor_checks_commit(store):
    data = b"descriptor"
    w = store.writer("exp", Descriptor("application/octet-stream", digest_of(data), len(data)))
    w.write(data)
    assert w.commit() == digest_of(data)


def test_labels_set_and_remove(store):
    digest = ingest_stream(store, "l", io.BytesIO(b"labelled"))
    info = store.update_labels(digest, {"a": "1", "b": "2"})
    assert dict(info.labels) == {"a": "1", "b": "2"}
    assert info.updated_at >= info.created_at
    info = store.update_labels(digest, {"a": ""})
    assert dict(info.labels) == {"b": "2"}


def test_verify_reports_corruption(store):
    digest = ingest_stream(store, "v", io.BytesIO(b"intact bytes"))
    assert store.verify(digest) is None
    path = store.blob_path(digest)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(b"X")
    assert "hashes to" in store.verify(digest)


def test_delete_and_not_found(store):
    digest = ingest_stream(store, "d", io.BytesIO(b"gone soon"))
    store.delete(digest)
    with pytest.raises(NotFound):
        store.info(digest)
    with pytest.raises(NotFound):
        store.delete(digest)
    assert not os.path.exists(store.blob_path(digest))


def test_delete_unlinks_the_file_only_once_the_record_is_gone(store):
    """Records first, files after COMMIT: a transaction that fails (or a crash before COMMIT)
    keeps record and file; a crash after COMMIT leaves only a file no record names."""
    digest = ingest_stream(store, "d", io.BytesIO(b"kept"))
    with pytest.raises(RuntimeError), store.meta.write():
        store.delete(digest)
        assert os.path.exists(store.blob_path(digest))
        raise RuntimeError("the caller's next step failed")
    assert store.info(digest).size == 4 and store.verify(digest) is None


def test_read_blob_is_bounded(store):
    digest = ingest_stream(store, "big", io.BytesIO(b"x" * 2048))
    with pytest.raises(DataError, match="limit"):
        store.read_blob(digest, 1024)


@pytest.mark.parametrize("bad", ["sha256:../../etc", "sha256:", "../x"], ids=["dotdot", "empty", "noalg"])
def test_blob_path_refuses_malformed_digests(store, bad):
    with pytest.raises(InvalidArgument):
        store.blob_path(bad)


def test_remove_dead_ingests_spares_live_writers(store):
    dead = store.writer("dead")
    dead.write(b"partial")
    dead.close()
    live = store.writer("live")
    try:
        removed = store.remove_dead_ingests()
        assert [s.ref for s in removed] == ["dead"]
        assert [s.ref for s in store.ingests()] == ["live"]
    finally:
        live.close()


def test_leftover_ingest_dirs_are_directories_a_killed_writer_left_unnamed(store):
    """A kill between a writer's mkdir and its ref (or between removing its files and its rmdir)
    leaves a directory no ingest names; gc removes it, lists it for its report, and spares a live
    writer's."""
    live = store.writer("live")
    empty = os.path.join(store.ingest_dir, "0" * 64)
    os.makedirs(empty)
    half = os.path.join(store.ingest_dir, "1" * 64)
    os.makedirs(half)
    open(os.path.join(half, "lock"), "w").close()
    young = os.path.join(store.ingest_dir, "2" * 64)  # a writer between its mkdir and its lock
    os.makedirs(young)
    renamed = os.path.join(store.ingest_dir, ".removed-" + "3" * 64 + "-00")  # its remover killed
    os.makedirs(renamed)
    with open(os.path.join(renamed, "data"), "wb") as f:
        f.write(b"x" * 8192)
    old = time.time() - 3600
    for d in (empty, half):
        os.utime(d, (old, old))
    try:
        assert store.remove_dead_ingests(dry_run=True) == [] and os.path.isdir(empty)
        left = [f"content/ingest/.removed-{'3' * 64}-00", f"content/ingest/{'0' * 64}", f"content/ingest/{'1' * 64}"]
        planned = store.remove_leftover_ingest_dirs(dry_run=True)
        assert [path for path, _ in planned] == left and planned[0][1] >= 8192  # its data's disk
        assert os.path.isdir(empty) and os.path.isdir(renamed)
        assert store.remove_leftover_ingest_dirs() == planned
        assert sorted(os.listdir(store.ingest_dir)) == sorted([os.path.basename(live.dir), "2" * 64])
    finally:
        live.close()
    assert [s.ref for s in store.ingests()] == ["live"]


def test_an_unsupported_algorithm_is_refused_before_anything_is_written(store):
    with pytest.raises(InvalidArgument, match="sha384"):
        ingest_stream(store, "r", io.BytesIO(b"hi"), digest="sha384:" + "0" * 96)
    assert not os.path.exists(store.ingest_dir) or os.listdir(store.ingest_dir) == []


def test_a_probe_during_a_removal_leaves_no_directory_behind(store, monkeypatch):
    """'content active' and gc probe each ingest's lock. A probe landing while a committing
    writer removes its directory must not make the directory again (filelock would)."""
    import shutil

    from dist_tool.store import content as content_module

    real_rmtree = shutil.rmtree
    seen = []

    def probe_then_rmtree(path, ignore_errors=False):
        seen.append([s.ref for s in store.ingests()])  # the ingest was renamed away: not listed
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(content_module.shutil, "rmtree", probe_then_rmtree)
    digest = ingest_stream(store, "r", io.BytesIO(b"data"))
    assert store.exists(digest) and seen == [[]]
    assert os.listdir(store.ingest_dir) == []


def test_a_writer_resuming_a_ref_while_gc_removes_it_keeps_its_own_files(store, monkeypatch):
    """gc removes a dead ingest while the same ref is taken up again: the new writer must get a
    directory of its own, not one whose files the removal is deleting (it lost its data file
    after streaming the whole blob, or was refused as 'locked by another writer')."""
    import shutil

    from dist_tool.store import content as content_module

    dead = store.writer("r")
    dead.write(b"stale partial")
    dead.close()
    real_rmtree = shutil.rmtree
    newcomers = []

    def resume_then_rmtree(path, ignore_errors=False):
        if not newcomers:  # the writer arrives while gc is deleting
            newcomers.append(store.writer("r"))
            newcomers[0].write(b"fresh")
        real_rmtree(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(content_module.shutil, "rmtree", resume_then_rmtree)
    assert [s.ref for s in store.remove_dead_ingests()] == ["r"]
    [writer] = newcomers
    assert writer.offset == len(b"fresh")  # started over: the stale bytes went with the old directory
    digest = writer.commit()
    assert store.read_blob(digest, 100) == b"fresh" and digest == digest_of(b"fresh")
    assert os.listdir(store.ingest_dir) == []


def test_blob_files_are_unlinked_after_the_write_lock_is_released(tmp_path, monkeypatch):
    """The unlink of a gigabyte blob held the lock for a third of a second (a concurrent label
    waited); under the lock a blob's file is now only renamed into the trash."""
    from dist_tool.session import Session
    from dist_tool.store import content as content_module

    s = Session(root=str(tmp_path / "root"), state=str(tmp_path / "state"))
    gone = s.content.ingest("a", io.BytesIO(b"collected by gc"))
    deleted = s.content.ingest("b", io.BytesIO(b"deleted by content rm"))
    leftover = tmp_path / "root" / "content" / "trash" / "left-by-a-killed-gc"
    leftover.write_bytes(b"x")
    unlinked: list[tuple[str, int]] = []
    unlink = os.unlink

    def watched(path, *args, **kwargs):
        if "/content/" in str(path):
            unlinked.append((os.path.basename(str(path)), s.meta._write_depth))
        return unlink(path, *args, **kwargs)

    monkeypatch.setattr(content_module.os, "unlink", watched)
    s.content.delete(deleted)
    s.collect_garbage()
    assert [depth for _, depth in unlinked] == [0] * len(unlinked) and len(unlinked) >= 3
    assert os.listdir(tmp_path / "root" / "content" / "trash") == []
    assert s.content.list() == [] and not s.content.exists(gone)
    s.close()
