"""Unpacking: an image's layers become committed snapshots named by their chain IDs.

For the host platform (or ``platform``) the manifest's layers are applied in
order, each one's uncompressed digest checked against the config's
``rootfs.diff_ids``, and committed as ``chainID(layers[:i+1])`` (OCI
image-spec): a layer whose chain ID is already committed is not unpacked
again, so images sharing a base share its snapshots.

Where the snapshotter's layers are independent directories (overlayfs), every
missing layer is extracted at once into its own active snapshot, in a small
thread pool (decompression, hashing and file writes release the GIL), and the
snapshots are stacked and committed in chain order once all are verified.
Otherwise (native) each layer is applied to an active copy of its parent and
committed before the next one starts.

Crash safety: an unpack runs under its own lease, which holds its active
``extract-<pid>-<tag>-<chainID>`` snapshots and the chain it builds on. A
failure removes what this unpack created; a ``kill -9`` leaves only active
snapshots held by a lease whose owner is gone, which the next ``dist gc``
removes. A chain ID is committed only after its layer was wholly written and
verified, so a committed snapshot is never partial.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from dist_tool import layerstack, platforms
from dist_tool.chains import Layers, image_layers
from dist_tool.errors import AlreadyExists, Conflict, DataError, DistError, NotFound
from dist_tool.layer import Cancelled, LayerResult, apply_layer
from dist_tool.oci import Descriptor
from dist_tool.store.api import LeaseResource, Mount, SnapshotInfo

MAX_WORKERS = 4


def unpack(session, name: str, platform: str | None = None, progress=None) -> str | None:
    """Unpacks the named image (for ``platform``, else the host's); returns its top chain ID,
    or None when there is nothing to unpack for the platform."""
    from dist_tool import reference

    image = session.images.get(reference.normalize(name))
    return unpack_target(session, image.target, platform=platform, progress=progress)


def unpack_target(session, target: Descriptor, *, platform: str | None = None,
                  keep: tuple[str, str] | None = None, progress=None) -> str | None:
    """Unpacks ``target`` into the session's snapshotter; returns the top chain ID (None when
    there is nothing to unpack for the platform).

    ``keep`` (namespace, lease id) is a lease of the caller that is to hold the
    result once this unpack's own lease ends (an import holds it until the
    image record exists). On any failure nothing this call committed remains.
    """
    plan = image_layers(session.content, target, platforms.parse(platform) if platform else None)
    if plan is None or not plan.layers:
        return None
    snapshotter = session.snapshotter
    if len(plan.layers) > snapshotter.max_layers:
        raise DataError("manifest", plan.manifest.digest, f"has {len(plan.layers)} layers: the {snapshotter.name}"
                        f" snapshotter stacks at most {snapshotter.max_layers}")
    chain = plan.chain
    kind = f"snapshots/{snapshotter.name}"
    with session.leases.temporary("unpack") as lease:
        # Protect the whole chain first, then look at what is committed: a concurrent rmi's gc
        # could otherwise take a layer between the look and the protection.
        with session.transaction():
            for key in chain:
                session.leases.add_resource(lease[1], LeaseResource(kind, key))
        done = _committed(snapshotter, chain)
        if done < len(chain):
            job = _Job(session, snapshotter, plan, lease, kind, progress)
            if snapshotter.layers_independent:
                job.parallel(done)
            else:
                job.sequential(done)
        if keep is not None:
            session.leases.add_resource(keep[1], LeaseResource(kind, chain[-1]))
    return chain[-1]


def _committed(snapshotter, chain: list[str]) -> int:
    """How many of ``chain`` (from the bottom) are committed already."""
    for i in range(len(chain), 0, -1):
        try:
            if snapshotter.stat(chain[i - 1]).kind == "committed":
                return i
        except NotFound:
            continue
    return 0


def target_dir(mounts: list[Mount]) -> str:
    """The directory a layer is written into: a bind mount's source, an overlay's upperdir."""
    mount = mounts[0]
    if mount.type == "bind":
        return mount.source
    for option in mount.options:
        if option.startswith("upperdir="):
            return option[len("upperdir="):]
    raise DataError("snapshot", mount.source, f"cannot apply a layer to a {mount.type} mount without upperdir")


def lower_dirs(mounts: list[Mount]) -> list[str]:
    """The directories that make up a committed snapshot's tree, top first."""
    mount = mounts[0]
    if mount.type == "bind":
        return [mount.source]
    for option in mount.options:
        if option.startswith("lowerdir="):
            return option[len("lowerdir="):].split(":")
    return []


class _Job:
    def __init__(self, session, snapshotter, plan: Layers, lease: tuple[str, str], kind: str, progress) -> None:
        self.session = session
        self.snapshotter = snapshotter
        self.plan = plan
        self.chain = plan.chain
        self.lease = lease
        self.kind = kind
        self.progress = progress
        self.tag = f"extract-{os.getpid()}-{os.urandom(3).hex()}"
        self.active: list[str] = []
        self.committed: list[str] = []

    def _key(self, i: int) -> str:
        return f"{self.tag}-{self.chain[i]}"

    def _prepare(self, i: int, parent: str | None) -> str:
        key = self._key(i)
        self.session.leases.add_resource(self.lease[1], LeaseResource(self.kind, key))
        mounts = self.snapshotter.prepare(key, parent, {"dist.unpack.layer": self.plan.layers[i].digest},
                                          operation=True)
        self.active.append(key)
        return target_dir(mounts)  # the directory the layer is written to

    def _extract(self, i: int, blob, dest: str, whiteouts: str,
                 cancel: threading.Event | None = None) -> LayerResult:
        """Applies layer ``i`` from the open ``blob``; touches no store (it runs in worker threads)."""
        layer = self.plan.layers[i]
        label = f"unpack {layer.digest[:19]}"
        # An image may list one blob twice (an empty layer): each is its own bar, or the first's
        # would be replaced by the second's and never finish.
        seen = sum(earlier.digest == layer.digest for earlier in self.plan.layers[:i])
        if seen:
            label += f" ({seen + 1})"
        progress = self.progress
        if progress is not None:
            progress.start(label, layer.size)
        with blob:
            result = apply_layer(blob, dest, whiteouts=whiteouts, what=layer.digest, cancel=cancel,
                                 progress=(lambda n: progress.update(label, n)) if progress else None)
        if result.diff_id != self.plan.diff_ids[i]:
            raise DataError("layer", layer.digest, f"uncompressed content hashes to {result.diff_id}, "
                            f"but the config's diff_id is {self.plan.diff_ids[i]}")
        if progress is not None:
            progress.done(label, "unpacked")
        return result

    def _commit(self, i: int) -> None:
        key, name = self._key(i), self.chain[i]
        self.session.leases.add_resource(self.lease[1], LeaseResource(self.kind, name))
        try:
            self.snapshotter.commit(name, key)
        except AlreadyExists:
            # Another unpack committed the same layer meanwhile: theirs is as good as ours. An active
            # snapshot made by hand under the chain ID is not a layer: the image could never be used.
            kind = self.snapshotter.stat(name).kind
            if kind != "committed":
                raise Conflict("snapshot", name, f"is {kind}: the layer with this chain ID cannot be "
                               "committed (snapshot rm it first)") from None
            self.snapshotter.remove(key)
        else:
            self.committed.append(name)
        self.active.remove(key)

    def _undo(self) -> None:
        """Removes what this unpack created; keeps what something else has come to use.

        Best effort: the unpack's own error is the one to report, and what cannot be removed
        now is under the lease, which the next ``gc`` expires (its owner gone)."""
        for key in self.active:
            # First: a layer that filled the disk leaves SQLite no room to record the removals below.
            try:
                self.snapshotter.empty(key)
            except (OSError, DistError):
                pass
        # Children before parents: the active snapshots are the leaves (a native one's parent is the
        # last layer committed), then the chain from its top. A parent first is refused as in use, and
        # was left behind.
        for key in [*reversed(self.active), *reversed(self.committed)]:
            try:
                self.snapshotter.remove(key)
            except Exception:  # noqa: BLE001, S112 - see the docstring (gone, in use, or worse)
                continue
        self.active.clear()
        self.committed.clear()

    def sequential(self, start: int) -> None:
        """Native: each layer on an active copy of its parent, committed before the next."""
        try:
            for i in range(start, len(self.chain)):
                dest = self._prepare(i, self.chain[i - 1] if i else None)
                self._extract(i, self.session.content.open_blob(self.plan.layers[i].digest), dest, "delete")
                self._commit(i)
        except BaseException:
            self._undo()
            raise

    def parallel(self, start: int) -> None:
        """overlayfs: every missing layer into its own directory at once, then stacked in order."""
        todo = list(range(start, len(self.chain)))
        cancel = threading.Event()
        blobs: dict[int, object] = {}
        try:
            dests = {i: self._prepare(i, None) for i in todo}
            for i in todo:  # opened here: the workers never touch the metadata DB
                blobs[i] = self.session.content.open_blob(self.plan.layers[i].digest)
            order = sorted(todo, key=lambda i: -self.plan.layers[i].size)  # longest first
            workers = max(1, min(len(todo), os.cpu_count() or 1, MAX_WORKERS))

            def run(i: int) -> LayerResult:
                try:
                    return self._extract(i, blobs[i], dests[i], "overlay", cancel)
                except BaseException:
                    cancel.set()
                    raise

            results: dict[int, LayerResult] = {}
            errors: list[BaseException] = []
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="unpack") as pool:
                try:
                    futures = {i: pool.submit(run, i) for i in order}
                    for i, future in futures.items():
                        try:
                            results[i] = future.result()
                        except Exception as e:  # noqa: BLE001 - collected; the most telling one is raised below
                            errors.append(e)
                except BaseException:
                    cancel.set()  # before the pool waits for its workers: they stop at their next member
                    raise
            if errors:
                raise next((e for e in errors if not isinstance(e, Cancelled)), errors[0])
            for i in todo:
                below = lower_dirs(self.snapshotter.mounts(self.chain[i - 1])) if i else []
                layerstack.settle(dests[i], results[i], below)
                if i:
                    self.snapshotter.update(SnapshotInfo(self._key(i), self.chain[i - 1], "active"), "parent")
                self._commit(i)
        except BaseException:
            cancel.set()
            self._undo()
            raise
        finally:
            for blob in blobs.values():
                blob.close()


def unpack_under(session, target: Descriptor, *, platform: str | None, lease: tuple[str, str], progress,
                 added: set[str]) -> None:
    """Unpacks ``target`` for an import or pull still under ``lease``, before the image is named: the
    lease holds the chain until then, and its chain IDs join ``added`` so that a later failure of the
    operation collects them with its blobs."""
    plan = image_layers(session.content, target, platforms.parse(platform) if platform else None)
    if plan is not None:
        added.update(plan.chain)
    session.unpack_target(target, platform=platform, keep=lease, progress=progress)
