"""The ContentStore contract, run on the local store and on the remote one behind ``dist serve``.

Local-only matters (the OCI layout on disk, file modes, malformed paths, corruption found by
``verify``, gc of dead ingests) stay in test_content.py.
"""

from __future__ import annotations

import hashlib
import io
import time

import pytest
from remote_support import Served

from dist_tool.errors import Conflict, DataError, NotFound
from dist_tool.oci import Descriptor
from dist_tool.remote.client import RemoteContentStore
from dist_tool.store.content import LocalContentStore
from dist_tool.store.metadata import Metadata


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["local", "remote"], ids=["local", "remote"])
def store(request, tmp_path):
    root = str(tmp_path / "root")
    meta = Metadata(root)
    local = LocalContentStore(root, meta)
    local.ensure_layout()
    if request.param == "local":
        yield local
    else:
        served = Served(root)
        yield RemoteContentStore(served.client())
        served.stop()
    meta.close()


DATA = b"0123456789abcdef" * 40000  # 640 kB: several upload chunks


def test_ingest_commits_a_readable_blob(store):
    digest = store.ingest("r1", io.BytesIO(DATA), size=len(DATA), digest=digest_of(DATA), labels={"k": "v"})
    assert digest == digest_of(DATA)
    info = store.info(digest)
    assert (info.size, dict(info.labels)) == (len(DATA), {"k": "v"})
    assert store.present() == {digest: len(DATA)}
    assert store.read_blob(digest, len(DATA)) == DATA
    with store.open_blob(digest) as f:
        assert f.read(10) == DATA[:10] and f.read() == DATA[10:]
    assert [i.digest for i in store.list()] == [digest]
    assert store.ingests() == []


@pytest.mark.parametrize(("size_delta", "digest_ok"), [(1, True), (0, False)], ids=["size", "digest"])
def test_mismatch_stores_nothing_and_frees_the_ref(store, size_delta, digest_ok):
    digest = digest_of(DATA) if digest_ok else digest_of(b"other")
    with pytest.raises(DataError):
        store.ingest("r1", io.BytesIO(DATA), size=len(DATA) + size_delta, digest=digest)
    assert store.list() == [] and store.ingests() == []
    assert store.ingest("r1", io.BytesIO(DATA)) == digest_of(DATA)  # the ref is free again


@pytest.mark.parametrize("size", [len(DATA), None], ids=["with-size", "digest-alone"])
def test_a_sha512_digest_is_checked_with_sha512(store, size):
    digest = "sha512:" + hashlib.sha512(DATA).hexdigest()
    assert store.ingest("r1", io.BytesIO(DATA), size=size, digest=digest) == digest
    assert store.info(digest).size == len(DATA)
    with pytest.raises(DataError, match="digest mismatch"):
        store.ingest("r2", io.BytesIO(DATA + b"x"), size=None, digest="sha512:" + "0" * 128)


def test_an_already_present_digest_is_not_an_error(store):
    first = store.ingest("r1", io.BytesIO(DATA))
    assert store.ingest("r2", io.BytesIO(DATA), size=len(DATA), digest=first) == first
    assert len(store.list()) == 1 and store.ingests() == []


def test_an_interrupted_ingest_is_listed_and_resumes(store):
    w = store.writer("r1")
    w.write(DATA[:1000])
    w.close()
    [status] = store.ingests()
    assert (status.ref, status.offset, status.active) == ("r1", 1000, False)
    assert store.ingest("r1", io.BytesIO(DATA), size=len(DATA), digest=digest_of(DATA)) == digest_of(DATA)
    assert store.ingests() == [] and store.read_blob(digest_of(DATA), len(DATA)) == DATA


def test_writer_commit_verifies_the_expected_descriptor(store):
    expected = Descriptor("application/octet-stream", digest_of(DATA), len(DATA))
    with store.writer("r1", expected) as w:
        w.write(DATA[:-1])
        with pytest.raises(DataError):
            w.commit()
    assert store.list() == [] and store.ingests() == []
    with store.writer("r2") as w:
        w.write(DATA)
        assert w.commit(len(DATA), digest_of(DATA), {"a": "b"}) == digest_of(DATA)
    assert dict(store.info(digest_of(DATA)).labels) == {"a": "b"}


def test_a_live_writer_locks_its_ref(store):
    w = store.writer("r1")
    w.write(b"x")
    deadline = time.time() + 5
    while not any(s.active for s in store.ingests()) and time.time() < deadline:
        time.sleep(0.01)  # remote: the server opens the writer as the upload's headers arrive
    with pytest.raises(Conflict):
        store.writer("r1")
    w.close()
    store.abort_ingest("r1")
    assert store.ingests() == []


def test_labels_set_and_remove(store):
    digest = store.ingest("r1", io.BytesIO(b"x"), labels={"a": "1"})
    assert dict(store.update_labels(digest, {"b": "2"}).labels) == {"a": "1", "b": "2"}
    assert dict(store.update_labels(digest, {"a": ""}).labels) == {"b": "2"}


@pytest.mark.parametrize("call", ["info", "open_blob", "delete", "labels", "read"])
def test_missing_blob_is_not_found(store, call):
    missing = digest_of(b"missing")
    with pytest.raises(NotFound):
        {"info": lambda: store.info(missing), "open_blob": lambda: store.open_blob(missing),
         "delete": lambda: store.delete(missing), "labels": lambda: store.update_labels(missing, {"a": "b"}),
         "read": lambda: store.read_blob(missing, 10)}[call]()


def test_delete_and_abort(store):
    digest = store.ingest("r1", io.BytesIO(b"x"))
    store.delete(digest)
    assert store.list() == [] and store.present() == {}
    with pytest.raises(NotFound):
        store.abort_ingest("never-started")


def test_read_blob_is_bounded(store):
    digest = store.ingest("r1", io.BytesIO(DATA))
    with pytest.raises(DataError):
        store.read_blob(digest, 100)


def test_lease_protects_a_present_blob(store, tmp_path):
    from dist_tool.store.api import Lease
    from dist_tool.store.leases import SqliteLeaseManager

    leases = SqliteLeaseManager(Metadata(str(tmp_path / "root")), "default")
    leases.create(Lease("l1"))
    digest = store.ingest("r1", io.BytesIO(b"x"))
    assert store.add_to_lease(digest, ("default", "l1")) is True
    assert store.add_to_lease(digest_of(b"absent"), ("default", "l1")) is False
    assert [r.id for r in leases.resources("l1")] == [digest]
    leases.meta.close()


def test_a_blob_is_never_added_to_a_lease_that_does_not_exist(store, tmp_path):
    """Rows were written for any lease ID: for one never made, or one removed while its ingest ran,
    and a later lease of that ID inherited them (gc then kept the blobs)."""
    from dist_tool.store.api import Lease
    from dist_tool.store.leases import SqliteLeaseManager

    leases = SqliteLeaseManager(Metadata(str(tmp_path / "root")), "default")
    digest = store.ingest("present", io.BytesIO(b"present"))
    with pytest.raises(NotFound):
        store.add_to_lease(digest, ("default", "never-made"))
    leases.create(Lease("gone"))
    with store.writer("late", lease=("default", "gone")) as w:
        w.write(b"written while its lease was removed")
        leases.delete("gone")
        with pytest.raises(NotFound):
            w.commit()
    assert [i.digest for i in store.list()] == [digest]  # not committed: still resumable by its ref
    leases.create(Lease("gone"))
    assert leases.resources("gone") == []
    leases.meta.close()


def test_gc_drops_resource_rows_of_no_lease(tmp_path):
    from dist_tool.session import Session

    s = Session(root=str(tmp_path / "root"), state=str(tmp_path / "state"))
    digest = s.content.ingest("r", io.BytesIO(b"kept by no one"))
    with s.meta.write() as conn:  # what stores before this check could hold
        conn.execute("INSERT INTO lease_resources (namespace, lease_id, kind, resource) VALUES "
                     "('default', 'never-made', 'content', ?)", (digest,))
    s.collect_garbage()
    with s.meta.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM lease_resources").fetchone()[0] == 0
    assert s.content.list() == []
    s.close()
