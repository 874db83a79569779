"""The Session: one invocation's settings and its lazily opened stores.

Built once in the CLI callback. It is a locator, not a god object: it holds
no logic beyond choosing implementations (local SQLite/file stores, or the
remote ones behind ``--address``) and opening them on first use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dist_tool.remote.client import Client
    from dist_tool.render import Renderer
    from dist_tool.store.api import ContainerStore, ContentStore, ImageStore, LeaseManager, NamespaceStore, Snapshotter
    from dist_tool.store.images import SqliteImageStore
    from dist_tool.store.metadata import Metadata
    from dist_tool.store.snapshots import SnapshotJanitor


def default_root() -> str:
    if os.geteuid() == 0:
        return "/var/lib/dist"
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "dist")


def default_state() -> str:
    if os.geteuid() == 0:
        return "/run/dist"
    base = os.environ.get("XDG_RUNTIME_DIR") or os.path.join("/tmp", f"dist-{os.getuid()}")
    return os.path.join(base, "dist")


@dataclass
class Session:
    root: str
    state: str
    namespace: str = "default"
    snapshotter_name: str | None = None
    address: str | None = None
    debug: bool = False
    render: Renderer = field(default=None)  # type: ignore[assignment]
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = os.path.abspath(self.root)
        self.state = os.path.abspath(self.state)
        if self.render is None:
            from dist_tool.render import Renderer

            self.render = Renderer()

    def _once(self, key: str, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def remote(self) -> Client:
        """The connection to ``dist serve`` (only with ``--address``)."""
        from dist_tool.remote.client import Client

        return self._once("remote", lambda: Client(self.address, self.namespace))  # type: ignore[arg-type]

    def _not_served(self, what: str):
        from dist_tool.errors import Unavailable

        return Unavailable(what, self.address or "", "not served over --address")

    def local_only(self, what: str) -> None:
        """Raises for what ``dist serve`` does not serve when this session goes through it."""
        if self.address:
            raise self._not_served(what)

    @property
    def task_state(self) -> str:
        """STATE, where tasks live. Tasks are not served: with ``--address`` a task command must
        not act on whatever the client's own STATE holds (it could kill another store's task)."""
        self.local_only("tasks")
        return self.state

    @property
    def meta(self) -> Metadata:
        from dist_tool.store.metadata import Metadata

        self.local_only("the metadata database")

        def make() -> Metadata:
            layout = os.path.join(self.root, "content")
            if not os.path.exists(os.path.join(layout, "oci-layout")):
                from dist_tool.store.content import create_layout

                create_layout(layout)  # a missing root is created whole, on first use
            return Metadata(self.root)

        return self._once("meta", make)

    @property
    def content(self) -> ContentStore:
        if self.address:
            from dist_tool.remote.client import RemoteContentStore

            return self._once("content", lambda: RemoteContentStore(self.remote))
        from dist_tool.store.content import LocalContentStore

        return self._once("content", lambda: LocalContentStore(self.root, self.meta))

    @property
    def images(self) -> ImageStore:
        return self.images_in(self.namespace)

    def images_in(self, namespace: str) -> ImageStore:
        if self.address:
            if namespace != self.namespace:
                raise self._not_served(f"namespace {namespace} (this session's is {self.namespace})")
            from dist_tool.remote.client import RemoteImageStore

            return self._once("images", lambda: RemoteImageStore(self.remote))
        return self._local_images(namespace)

    def _local_images(self, namespace: str) -> SqliteImageStore:
        from dist_tool.store.images import SqliteImageStore

        return self._once(f"images/{namespace}",
                          lambda: SqliteImageStore(self.meta, namespace, os.path.join(self.root, "content")))

    @property
    def leases(self) -> LeaseManager:
        if self.address:
            from dist_tool.remote.client import RemoteLeaseManager

            return self._once("leases", lambda: RemoteLeaseManager(self.remote))
        from dist_tool.store.leases import SqliteLeaseManager

        return self._once("leases", lambda: SqliteLeaseManager(self.meta, self.namespace))

    @property
    def containers(self) -> ContainerStore:
        if self.address:
            from dist_tool.remote.client import RemoteContainerStore

            return self._once("containers", lambda: RemoteContainerStore(self.remote))
        from dist_tool.store.containers import SqliteContainerStore

        return self._once(f"containers/{self.namespace}", lambda: SqliteContainerStore(self.meta, self.namespace))

    @property
    def namespaces(self) -> NamespaceStore:
        if self.address:
            raise self._not_served("namespaces")
        from dist_tool.store.namespaces import SqliteNamespaceStore

        return self._once("namespaces", lambda: SqliteNamespaceStore(self.meta))

    @property
    def snapshotter(self) -> Snapshotter:
        """``--snapshotter`` / ``DIST_SNAPSHOTTER``, else overlayfs where an overlay mounts in this
        root's file system (probed once per root), else native. Raises InvalidArgument."""
        return self.snapshotter_named(self.chosen_snapshotter())

    def chosen_snapshotter(self) -> str:
        """The snapshotter's name (see ``snapshotter``); InvalidArgument for an unknown one. Checked
        where it is used, not when the session is made: ``--help`` must work whatever it says."""
        if self.snapshotter_name is None:
            return self.default_snapshotter()
        return self.known_snapshotter(self.snapshotter_name)

    @staticmethod
    def known_snapshotter(name: str) -> str:
        """``name`` when the store has a snapshotter of that name; InvalidArgument otherwise."""
        from dist_tool.store.snapshots import SNAPSHOTTERS

        if name not in SNAPSHOTTERS:
            from dist_tool.errors import InvalidArgument

            raise InvalidArgument("snapshotter", name, f"unknown: choose {' or '.join(SNAPSHOTTERS)}")
        return name

    def default_snapshotter(self) -> str:
        if self.address:
            raise self._not_served("snapshots")
        from dist_tool.system import default_snapshotter

        return self._once("default-snapshotter", lambda: default_snapshotter(self.root))

    def snapshotter_named(self, name: str) -> Snapshotter:
        if self.address:
            raise self._not_served("snapshots")

        def make() -> Snapshotter:
            if name == "overlayfs":
                from dist_tool.store.snapshots.overlay import OverlaySnapshotter

                return OverlaySnapshotter(self.root, self.meta, self.namespace)
            if name == "native":
                from dist_tool.store.snapshots.native import NativeSnapshotter

                return NativeSnapshotter(self.root, self.meta, self.namespace)
            from dist_tool.errors import InvalidArgument

            raise InvalidArgument("snapshotter", name, "unknown: choose overlayfs or native")

        return self._once(f"snapshotter/{name}/{self.namespace}", make)

    @property
    def snapshot_janitor(self) -> SnapshotJanitor:
        from dist_tool.store.snapshots import SnapshotJanitor

        return self._once("snapshot-janitor", lambda: SnapshotJanitor(self.root, self.meta))

    # -------------------------------------------------------------- store-wide operations
    #
    # What domain code needs beyond the stores' Protocols, here so that it never touches the
    # local metadata database itself (and so works the same through ``--address``).

    def transaction(self):
        """Groups store calls into one metadata write transaction. Through ``--address`` it groups
        nothing: each remote call is one transaction on the server."""
        if self.address:
            from contextlib import nullcontext

            return nullcontext()
        return self.meta.write()

    def collect_garbage(self, dry_run: bool = False, only: set[str] | None = None):
        """``gc.collect`` on this session's store (the server's, through ``--address``)."""
        if self.address:
            from dist_tool.remote.client import collect_garbage

            return collect_garbage(self.remote, dry_run=dry_run, only=only)
        from dist_tool import gc
        from dist_tool.store.images import DEFAULT_NAMESPACE

        return gc.collect(self.meta, self.content, self.snapshot_janitor, dry_run=dry_run, only=only,
                          sync_layout_index=self._local_images(DEFAULT_NAMESPACE).sync_layout_index)

    def unpack_target(self, target, *, platform: str | None = None, keep: tuple[str, str] | None = None,
                      progress=None) -> str | None:
        """``unpack.unpack_target`` into this session's snapshotter (the server's, through
        ``--address``, where progress is not reported); returns the top chain ID."""
        if self.address:
            from dist_tool.remote.client import unpack_target

            return unpack_target(self.remote, target, platform=platform, keep=keep)
        from dist_tool import unpack

        return unpack.unpack_target(self, target, platform=platform, keep=keep, progress=progress)

    def unpacked_snapshot_sizes(self, snapshotter: str | None = None) -> dict[str, int]:
        """Committed snapshot key → recorded size in this namespace, for ``snapshotter`` (default:
        the session's); empty, without probing for a default, when nothing is unpacked."""
        if self.address:
            from dist_tool.remote.client import unpacked_snapshot_sizes

            return unpacked_snapshot_sizes(self.remote, snapshotter or self.snapshotter_name)
        with self.meta.read() as conn:
            rows = conn.execute("SELECT snapshotter, key, size FROM snapshots "
                                "WHERE namespace = ? AND kind = 'committed'", (self.namespace,)).fetchall()
        if not rows:
            return {}
        name = snapshotter or self.snapshotter_name or self.default_snapshotter()
        return {key: size or 0 for sn, key, size in rows if sn == name}

    def close(self) -> None:
        remote = self._cache.get("remote")
        if remote is not None:
            remote.close()
        meta = self._cache.get("meta")
        if meta is not None:
            meta.close()
