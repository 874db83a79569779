"""The ImageStore contract, run on the SQLite store and on the remote one behind ``dist serve``."""

from __future__ import annotations

import pytest
from remote_support import Served

from dist_tool.errors import AlreadyExists, InvalidArgument, NotFound
from dist_tool.oci import Descriptor
from dist_tool.remote.client import RemoteImageStore
from dist_tool.store.api import Image
from dist_tool.store.images import SqliteImageStore
from dist_tool.store.metadata import Metadata

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
X = "docker.io/library/x:latest"  # names as callers pass them: canonical (dist serve takes no other)
NOPE = "docker.io/library/nope:latest"


def target(n: int = 1, media_type: str = MANIFEST) -> Descriptor:
    return Descriptor(media_type, "sha256:" + f"{n:x}" * 64, 100 + n, annotations={"a": str(n)})


@pytest.fixture(params=["local", "remote"], ids=["local", "remote"])
def make_store(request, tmp_path):
    root = str(tmp_path / "root")
    closers = []
    served = None

    def make(namespace: str = "default"):
        nonlocal served
        if request.param == "local":
            meta = Metadata(root)
            closers.append(meta.close)
            return SqliteImageStore(meta, namespace, f"{root}/content")
        if served is None:
            served = Served(root)
        return RemoteImageStore(served.client(namespace))

    yield make
    for close in closers:
        close()
    if served is not None:
        served.stop()


@pytest.fixture
def store(make_store):
    return make_store()


def test_create_get_round_trip(store):
    made = store.create(Image("docker.io/library/a:1", target(), {"k": "v"}))
    got = store.get("docker.io/library/a:1")
    assert got == made
    assert got.target == target() and dict(got.labels) == {"k": "v"}
    assert got.created_at > 0 and got.updated_at >= got.created_at


def test_duplicate_create_is_already_exists(store):
    store.create(Image(X, target(1)))
    with pytest.raises(AlreadyExists):
        store.create(Image(X, target(2)))
    assert store.get(X).target == target(1)


@pytest.mark.parametrize("call", ["get", "delete", "update"])
def test_missing_is_not_found(store, call):
    with pytest.raises(NotFound):
        if call == "update":
            store.update(Image(NOPE, target()), "labels")
        else:
            getattr(store, call)(NOPE)


def test_list_orders_and_filters(store):
    store.create(Image("docker.io/library/b:1", target(2, INDEX), {"app": "web"}))
    store.create(Image("docker.io/library/a:1", target(1)))
    assert [i.name for i in store.list()] == ["docker.io/library/a:1", "docker.io/library/b:1"]
    assert [i.name for i in store.list("labels.app==web")] == ["docker.io/library/b:1"]
    assert [i.name for i in store.list("target.mediatype~=index")] == ["docker.io/library/b:1"]
    assert [i.name for i in store.list("name~=a:", "labels.app")] == ["docker.io/library/a:1",
                                                                       "docker.io/library/b:1"]


def test_bad_filter_is_invalid_argument(store):
    with pytest.raises(InvalidArgument):
        store.list("labels.==")


def test_update_by_field_path_merges_labels_and_keeps_created(store):
    first = store.create(Image(X, target(1), {"a": "1", "b": "2"}))
    store.update(Image(X, target(9), {"a": "10"}), "labels.a", "labels.b")
    got = store.get(X)
    assert dict(got.labels) == {"a": "10"} and got.target == target(1) and got.created_at == first.created_at
    store.update(Image(X, target(3)), "target")
    assert store.get(X).target == target(3) and dict(store.get(X).labels) == {"a": "10"}


def test_update_refuses_unknown_field_paths(store):
    store.create(Image(X, target()))
    with pytest.raises(InvalidArgument):
        store.update(Image(X, target()), "name")


def test_put_creates_or_replaces_keeping_created(store):
    made = store.put(Image(X, target(1), {"k": "v"}))
    again = store.put(Image(X, target(2)))
    assert again.target == target(2) and dict(again.labels) == {} and again.created_at == made.created_at


def test_delete_and_namespaces(make_store):
    one, two = make_store("one"), make_store("two")
    one.create(Image(X, target(1)))
    two.create(Image(X, target(2)))
    one.delete(X)
    with pytest.raises(NotFound):
        one.get(X)
    assert two.get(X).target == target(2)
    assert [(ns, i.name) for ns, i in one.all_namespaces()] == [("two", X)]


def test_names_with_slashes_colons_and_digests(store):
    name = "registry.example:5000/a/b@sha256:" + "c" * 64
    store.create(Image(name, target(12)))  # its digest is the name's
    assert store.get(name).name == name
    store.delete(name)
    assert store.list() == []


def test_a_name_pinned_to_another_digest_is_refused(store):
    with pytest.raises(InvalidArgument, match="names digest sha256:c+, but its target is sha256:1+"):
        store.create(Image("registry.example:5000/a/b@sha256:" + "c" * 64, target()))
    assert store.list() == []
