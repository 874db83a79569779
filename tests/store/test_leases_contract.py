"""The LeaseManager contract, run on the SQLite store and on the remote one behind ``dist serve``."""

from __future__ import annotations

import pytest
from helpers import dead_pid
from remote_support import Served

from dist_tool.errors import AlreadyExists, NotFound
from dist_tool.remote.client import RemoteLeaseManager
from dist_tool.store.api import Lease, LeaseResource
from dist_tool.store.leases import SqliteLeaseManager
from dist_tool.store.metadata import Metadata


@pytest.fixture(params=["local", "remote"], ids=["local", "remote"])
def make_leases(request, tmp_path):
    root = str(tmp_path / "root")
    meta = Metadata(root)
    served = Served(root) if request.param == "remote" else None

    def make(namespace: str = "default"):
        return SqliteLeaseManager(meta, namespace) if served is None else RemoteLeaseManager(served.client(namespace))

    yield make
    if served is not None:
        served.stop()
    meta.close()


@pytest.fixture
def leases(make_leases):
    return make_leases()


def test_create_get_list_delete(leases):
    made = leases.create(Lease("l1", {"k": "v"}, expires_at=4102444800.0))
    assert leases.get("l1") == made and made.created_at > 0 and made.expires_at == 4102444800.0
    leases.create(Lease("l2"))
    assert [x.id for x in leases.list()] == ["l1", "l2"]
    assert [x.id for x in leases.list("labels.k==v")] == ["l1"]
    leases.delete("l1")
    with pytest.raises(NotFound):
        leases.get("l1")
    with pytest.raises(NotFound):
        leases.delete("l1")


def test_duplicate_is_already_exists(leases):
    leases.create(Lease("l1"))
    with pytest.raises(AlreadyExists):
        leases.create(Lease("l1"))


def test_resources(leases):
    leases.create(Lease("l1"))
    leases.add_resource("l1", LeaseResource("content", "sha256:" + "a" * 64))
    leases.add_resource("l1", LeaseResource("content", "sha256:" + "a" * 64))  # idempotent
    leases.add_resource("l1", LeaseResource("snapshots/native", "k"))
    assert leases.resources("l1") == [LeaseResource("content", "sha256:" + "a" * 64),
                                      LeaseResource("snapshots/native", "k")]
    leases.delete("l1")
    assert leases.resources("l1") == []


def test_temporary_lease_goes_when_the_operation_ends(leases):
    with leases.temporary("import") as (ns, lease_id):
        assert ns == "default" and leases.get(lease_id).owner_pid is not None
    with pytest.raises(NotFound):
        leases.get(lease_id)


def test_namespaces_isolate(make_leases):
    one, two = make_leases("one"), make_leases("two")
    one.create(Lease("l1"))
    assert two.list() == []
    with pytest.raises(NotFound):
        two.get("l1")


def _lease_of_a_killed_operation(leases) -> None:
    """An operation's lease, "dead-work", whose process died before it could delete it. Through
    dist serve the owner is whoever the server sees on the socket: a client process that died."""
    import os
    import subprocess
    import sys

    if isinstance(leases, SqliteLeaseManager):
        leases.create(Lease("dead-work", owner_pid=dead_pid(), owner_start="1"), operation=True)
        return
    client = ("import os, sys\n"
              "from dist_tool.remote.client import Client, RemoteLeaseManager\n"
              "from dist_tool.store.api import Lease\n"
              "RemoteLeaseManager(Client(sys.argv[1])).create(Lease('dead-work'), operation=True)\n"
              "os._exit(9)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    assert subprocess.run([sys.executable, "-c", client, leases.client.address], env=env).returncode == 9


def test_a_killed_operations_lease_is_not_listed(leases):
    """SPEC: leases ls sees user leases and those of running work; dead work waits for gc."""
    _lease_of_a_killed_operation(leases)
    leases.create(Lease("mine"))
    assert [x.id for x in leases.list()] == ["mine"]
    assert leases.get("dead-work").id == "dead-work"  # still there, for gc to expire


def test_a_killed_operations_lease_does_not_keep_its_namespace(tmp_path):
    from dist_tool.store.namespaces import SqliteNamespaceStore

    meta = Metadata(str(tmp_path / "root"))
    team = SqliteLeaseManager(meta, "team")
    team.create(Lease("dead-work", owner_pid=dead_pid(), owner_start="1"))
    team.add_resource("dead-work", LeaseResource("content", "sha256:" + "0" * 64))
    namespaces = SqliteNamespaceStore(meta)
    namespaces.delete("team")
    assert [n.name for n in namespaces.list()] == []
    with meta.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM lease_resources").fetchone()[0] == 0
    meta.close()
