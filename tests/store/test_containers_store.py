"""The ContainerStore contract, run on every implementation: the SQLite store (``local``) and
the remote one behind ``dist serve`` (``remote``)."""

from __future__ import annotations

import time

import pytest

from dist_tool.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from dist_tool.store.api import Container
from dist_tool.store.containers import SqliteContainerStore
from dist_tool.store.metadata import Metadata


def _local(root: str, namespace: str):
    meta = Metadata(root)
    return SqliteContainerStore(meta, namespace), meta.close


def _remote(root: str, namespace: str):
    from remote_support import Served

    from dist_tool.remote.client import RemoteContainerStore

    served = Served(root)
    return RemoteContainerStore(served.client(namespace)), served.stop


IMPLEMENTATIONS = {"local": _local, "remote": _remote}


@pytest.fixture(params=sorted(IMPLEMENTATIONS), ids=sorted(IMPLEMENTATIONS))
def make_store(request, tmp_path):
    closers = []

    def make(namespace: str = "default"):
        store, close = IMPLEMENTATIONS[request.param](str(tmp_path / "root"), namespace)
        closers.append(close)
        return store

    yield make
    for close in closers:
        close()


@pytest.fixture
def store(make_store):
    return make_store()


SPEC = {"ociVersion": "1.1.0", "process": {"args": ["sh"], "env": ["PATH=/bin"]}, "root": {"path": "rootfs"}}


def container(cid: str = "web", **kw) -> Container:
    fields = dict(image="docker.io/library/busybox:latest", spec=SPEC, snapshotter="overlayfs",
                  snapshot_key=cid, labels={"app": "web"})
    fields.update(kw)
    return Container(cid, **fields)


def test_create_then_get_round_trips_every_field(store):
    before = time.time()
    created = store.create(container(runtime_options={"systemdCgroup": False}, extensions={"x": {"a": [1]}}))
    got = store.get("web")
    assert got == created
    assert (got.id, got.image, got.runtime_name) == ("web", "docker.io/library/busybox:latest",
                                                     "io.containerd.runc.v2")
    assert got.runtime_options == {"systemdCgroup": False}
    assert got.spec == SPEC and got.extensions == {"x": {"a": [1]}}
    assert (got.snapshotter, got.snapshot_key, got.labels) == ("overlayfs", "web", {"app": "web"})
    assert before <= got.created_at == got.updated_at <= time.time()
    assert got.last_exit is None


@pytest.mark.parametrize("bad", ["", "-web", "web-", "a..b", "a b", "x" * 77, "ünï", "a/b"],
                         ids=["empty", "leading-dash", "trailing-dash", "double-dot", "space", "77-chars",
                              "non-ascii", "slash"])
def test_create_refuses_malformed_ids(store, bad):
    with pytest.raises(InvalidArgument):
        store.create(container(bad))
    assert store.list() == []


def test_76_character_id_is_accepted(store):
    assert store.create(container("x" * 76)).id == "x" * 76


def test_duplicate_is_already_exists_and_keeps_the_first(store):
    store.create(container(labels={"n": "1"}))
    with pytest.raises(AlreadyExists):
        store.create(container(labels={"n": "2"}))
    assert store.get("web").labels == {"n": "1"}


def test_get_update_delete_of_missing_are_not_found(store):
    with pytest.raises(NotFound):
        store.get("nope")
    with pytest.raises(NotFound):
        store.update(container("nope"), "labels")
    with pytest.raises(NotFound):
        store.delete("nope")


def test_list_is_ordered_and_leaves_specs_out_unless_asked(store):
    for cid in ("b", "a", "c"):
        store.create(container(cid))
    assert [c.id for c in store.list()] == ["a", "b", "c"]
    assert store.list()[0].spec == {}
    assert store.list(with_spec=True)[0].spec == SPEC


@pytest.mark.parametrize("filters, expected", [
    (("labels.\"app\"==web",), ["a", "b"]),
    (("labels.app==db",), ["c"]),
    (("labels.tier",), ["b"]),
    (("image~=busybox",), ["a", "b"]),
    (("image~=alpine", "id==a"), ["a", "c"]),
    (("id==b,labels.app==web",), ["b"]),
    (("id==b,labels.app==db",), []),
    (("runtime.name==io.containerd.runc.v2",), ["a", "b", "c"]),
    (("runtime==io.containerd.runc.v2",), []),
    (("snapshotKey==c",), ["c"]),
], ids=["label-quoted", "label", "label-present", "image-regex", "or", "and", "and-none", "runtime-name",
        "runtime-is-a-mapping", "snapshot"])
def test_filters(store, filters, expected):
    store.create(container("a"))
    store.create(container("b", labels={"app": "web", "tier": "front"}))
    store.create(container("c", image="docker.io/library/alpine:3", labels={"app": "db"}))
    assert [c.id for c in store.list(*filters)] == expected


def test_bad_filter_is_invalid_argument(store):
    with pytest.raises(InvalidArgument):
        store.list("labels.app=web")


def test_update_labels_by_field_path_keeps_created_at(store):
    first = store.create(container(labels={"a": "1", "b": "2"}))
    time.sleep(0.01)
    changed = store.update(Container("web", "ignored", labels={"a": "9", "c": "3"}), "labels.a", "labels.b")
    assert changed.labels == {"a": "9"}  # labels.b absent in the update: removed; c not named
    assert changed.image == first.image  # not named: unchanged
    assert changed.created_at == first.created_at and changed.updated_at > first.updated_at
    replaced = store.update(Container("web", "ignored", labels={"z": "1"}), "labels")
    assert replaced.labels == {"z": "1"}


def test_update_extensions_last_exit_and_spec(store):
    store.create(container(extensions={"keep": 1}))
    got = store.update(Container("web", "x", extensions={"tool": {"v": 2}}, last_exit={"status": 3, "exitedAt": 1.5},
                                 spec={"ociVersion": "1.2.0"}), "extensions.tool", "lastExit", "spec")
    assert got.extensions == {"keep": 1, "tool": {"v": 2}}
    assert got.last_exit == {"status": 3, "exitedAt": 1.5}
    assert got.spec == {"ociVersion": "1.2.0"}
    assert got.image == "docker.io/library/busybox:latest"


def test_update_refuses_unknown_field_paths(store):
    store.create(container())
    for path in ("id", "createdAt", "image.x", "nope"):
        with pytest.raises(InvalidArgument):
            store.update(container(), path)


def test_update_without_field_paths_replaces_every_mutable_field(store):
    store.create(container())
    got = store.update(Container("web", "docker.io/library/alpine:3", runtime_name="io.containerd.runsc.v1",
                                 snapshotter="native", snapshot_key="k2"))
    assert (got.image, got.runtime_name, got.snapshotter, got.snapshot_key, got.labels, got.spec) == \
        ("docker.io/library/alpine:3", "io.containerd.runsc.v1", "native", "k2", {}, {})


def test_a_snapshot_belongs_to_one_container(store):
    """A dist serve client stored a second record naming container web's snapshot; then `container
    rm` failed on both ("snapshot web: in use by container ..."), and nothing could remove either."""
    store.create(container("web"))
    with pytest.raises(Conflict, match="belongs to container web"):
        store.create(container("evil", snapshot_key="web"))
    store.create(container("db"))
    with pytest.raises(Conflict, match="belongs to container web"):
        store.update(container("db", snapshot_key="web"), "snapshot")
    assert [(c.id, c.snapshot_key) for c in store.list()] == [("db", "db"), ("web", "web")]
    store.update(container("web", labels={"a": "1"}))  # its own snapshot: no conflict with itself
    store.create(container("native-web", snapshotter="native", snapshot_key="web"))  # another snapshotter's


def test_delete_removes_only_that_record(store):
    store.create(container("a"))
    store.create(container("b"))
    store.delete("a")
    assert [c.id for c in store.list()] == ["b"]


def test_namespaces_isolate(make_store):
    one, two = make_store("one"), make_store("two")
    one.create(container("web", labels={"ns": "one"}))
    two.create(container("web", labels={"ns": "two"}))  # same ID, other namespace: no conflict
    assert one.get("web").labels == {"ns": "one"} and two.get("web").labels == {"ns": "two"}
    one.delete("web")
    with pytest.raises(NotFound):
        one.get("web")
    assert [c.id for c in two.list()] == ["web"]


def test_create_joins_an_enclosing_transaction_that_rolls_back(tmp_path):
    meta = Metadata(str(tmp_path / "root"))
    store = SqliteContainerStore(meta, "default")
    meta.connection()  # migrate first: a rolled-back first write would roll the migration back too
    with pytest.raises(RuntimeError):
        with meta.write():
            store.create(container())
            raise RuntimeError("a later step failed")
    assert store.list() == []
    meta.close()


def test_migration_3_upgrades_a_version_1_database(tmp_path):
    """A database frozen at schema 1 (before containers) gains the table on first open."""
    import sqlite3

    from dist_tool.store import metadata

    path = tmp_path / "root"
    path.mkdir()
    conn = sqlite3.connect(path / "metadata.db", isolation_level=None)
    for m in metadata.MIGRATIONS:
        if m.version == 1:
            m.apply(conn)
    conn.execute("INSERT INTO images (namespace, name, media_type, digest, size, created_at, updated_at) "
                 "VALUES ('default', 'x', 'm', 'sha256:00', 1, 0, 0)")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    meta = Metadata(str(path))
    assert meta.schema_version() == metadata.SCHEMA_VERSION >= 3
    store = SqliteContainerStore(meta, "default")
    store.create(container())
    assert store.get("web").snapshot_key == "web"
    with meta.read() as c:
        assert c.execute("SELECT name FROM images").fetchall() == [("x",)]
    meta.close()
