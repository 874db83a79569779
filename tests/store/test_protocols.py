"""Every store implementation provides its Protocol: the domain is written against the Protocols
(CONVENTIONS; test_layers checks it imports no implementation), so a method the domain calls that
a Protocol lacks, or that one implementation lacks, would only fail on the path that uses it
(through --address, say). mypy would check this, but dist's code is not annotated enough for it."""

from __future__ import annotations

import inspect
from typing import Protocol

import pytest

from dist_tool.remote import client
from dist_tool.store import api
from dist_tool.store.containers import SqliteContainerStore
from dist_tool.store.content import LocalContentStore, LocalWriter
from dist_tool.store.images import SqliteImageStore
from dist_tool.store.leases import SqliteLeaseManager
from dist_tool.store.namespaces import SqliteNamespaceStore
from dist_tool.store.snapshots.native import NativeSnapshotter
from dist_tool.store.snapshots.overlay import OverlaySnapshotter

IMPLEMENTATIONS = [
    (api.ContentStore, LocalContentStore), (api.ContentStore, client.RemoteContentStore),
    (api.Writer, LocalWriter), (api.Writer, client.RemoteWriter),
    (api.ImageStore, SqliteImageStore), (api.ImageStore, client.RemoteImageStore),
    (api.LeaseManager, SqliteLeaseManager), (api.LeaseManager, client.RemoteLeaseManager),
    (api.ContainerStore, SqliteContainerStore), (api.ContainerStore, client.RemoteContainerStore),
    (api.NamespaceStore, SqliteNamespaceStore),
    (api.Snapshotter, OverlaySnapshotter), (api.Snapshotter, NativeSnapshotter),
]


def _members(protocol: type) -> tuple[dict[str, inspect.Signature], set[str]]:
    methods: dict[str, inspect.Signature] = {}
    attributes: set[str] = set()
    for base in reversed(protocol.__mro__):
        if base is Protocol or base is object or Protocol not in base.__bases__:
            continue
        attributes |= set(base.__dict__.get("__annotations__", {}))
        methods |= {name: inspect.signature(fn) for name, fn in vars(base).items()
                    if inspect.isfunction(fn) and not name.startswith("_")}
    return methods, attributes


@pytest.mark.parametrize("protocol, implementation", IMPLEMENTATIONS,
                         ids=[f"{p.__name__}-{i.__name__}" for p, i in IMPLEMENTATIONS])
def test_implementation_has_every_member_of_its_protocol(protocol, implementation):
    methods, attributes = _members(protocol)
    assert methods, protocol
    source = inspect.getsource(implementation)
    for name in attributes:
        assert hasattr(implementation, name) or f"self.{name} =" in source, f"{implementation.__name__}.{name}"
    for name, wanted in methods.items():
        method = getattr(implementation, name, None)
        assert method is not None, f"{implementation.__name__} lacks {name}"
        have = {n: p for n, p in inspect.signature(method).parameters.items() if n != "self"}
        if any(p.kind is p.VAR_KEYWORD for p in have.values()):
            continue  # takes whatever its Protocol passes on (LocalContentStore.ingest)
        for param in wanted.parameters.values():
            if param.name == "self":
                continue
            assert param.name in have, f"{implementation.__name__}.{name} lacks parameter {param.name}"
            assert have[param.name].kind == param.kind, \
                f"{implementation.__name__}.{name}({param.name}) is {have[param.name].kind}, not {param.kind}"
