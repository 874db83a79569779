"""Container use cases: create (spec + rootfs snapshot + record), label, remove (+ gc).

A container is metadata that pins what a task needs. ``create`` validates
everything first (ID, labels, options, the image), unpacks the image if it is
not unpacked yet (outside the write lock, under a lease), generates the spec,
and then — in ONE metadata transaction — prepares the active snapshot (key =
container ID) on the image's top chain ID and inserts the record: a failure
leaves neither. ``remove`` deletes record and snapshot in one transaction and
collects garbage before returning, so what only that container kept is gone.

The session passed in is a locator (``images``, ``containers``, ``content``,
``leases``, ``meta``, ``snapshotter``, ``state``, ``namespace``); this module
never picks an implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from dist_tool import oci, platforms, reference, validate
from dist_tool.errors import AlreadyExists, Conflict, DataError, InvalidArgument, NotFound
from dist_tool.oci import Descriptor
from dist_tool.store.api import Container, Image

DEFAULT_RUNTIME = "io.containerd.runc.v2"
TASK_KILL_WAIT = 10.0  # seconds `rm -f` waits for a killed task's shim to exit


class CreateOptions(NamedTuple):
    """``container create``'s options as the user gave them (text); ``create`` validates them."""

    labels: Sequence[str] = ()
    env: Sequence[str] = ()
    cwd: str | None = None
    user: str | None = None
    mounts: Sequence[str] = ()
    net_host: bool = False
    read_only: bool = False
    tty: bool = False
    runtime: str = DEFAULT_RUNTIME
    entrypoint: str | None = None
    args: Sequence[str] = ()  # empty: the image's Cmd


class ImageRootfs(NamedTuple):
    """What an image gives a container on this host: its config and its layer chain."""

    image: Image
    manifest: Descriptor
    config: dict
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]

    @property
    def chain_id(self) -> str:
        from dist_tool.chains import chain_ids

        return chain_ids(self.diff_ids)[-1]


def image_rootfs(session, image: Image) -> ImageRootfs:
    """The host platform's manifest, config, layers and diff IDs of ``image``.

    Raises NotFound when the image has no manifest for this host or its manifest or
    config is absent, DataError when the config's diff IDs do not match its layers.
    """
    from dist_tool.chains import image_layers

    host = platforms.host()
    try:
        plan = image_layers(session.content, image.target)
    except NotFound as e:
        raise NotFound("image", image.name, f"incomplete: {e.which or e.what} is not in the content store") from None
    if plan is None:
        why = f"has no manifest for {host}"
        if oci.is_manifest(image.target.media_type):  # a lone manifest: its config names another platform
            from dist_tool.images import catalog

            why += "".join(f" (it is {p})" for p in catalog(session).platforms_of(image.target)[:1])
        raise NotFound("image", image.name, why)
    if not plan.layers:
        raise DataError("image", image.name, "has no layers")
    return ImageRootfs(image, plan.manifest, plan.config, tuple(plan.layers), tuple(plan.diff_ids))


# ---------------------------------------------------------------- create


def _check_options(container_id: str, options: CreateOptions) -> dict:
    """Every usage error before anything is read or written."""
    from dist_tool import spec

    validate.identifier("container id", container_id)
    labels = validate.label_args(options.labels)
    validate.runtime_name(options.runtime)
    if options.user is not None:
        spec.users.check_format(options.user)
    return {"labels": labels, "env": spec.parse_env(options.env),
            "cwd": spec.check_cwd(options.cwd) if options.cwd is not None else None,
            "mounts": spec.parse_mounts(options.mounts),
            "entrypoint": spec.parse_entrypoint(options.entrypoint), "args": spec.check_args(options.args)}


def _runtime_config(config: dict) -> dict:
    """The image config's ``config`` section (Entrypoint, Cmd, Env, Labels...); {} when it has none."""
    section = config.get("config")
    return section if isinstance(section, dict) else {}


def image_labels(config: dict) -> dict[str, str]:
    """The labels a container starts with: its image config's ``Labels``, as ctr's
    ``WithImageConfigLabels`` gives them and docker's containers inherit them. One dist could
    not store (SPEC's limits; an empty value, which ``--label K=`` means to remove) is left out."""
    found = _runtime_config(config).get("Labels")
    kept: dict[str, str] = {}
    for key, value in found.items() if isinstance(found, dict) else ():
        if isinstance(key, str) and isinstance(value, str) and value:
            try:
                kept.update(validate.labels({key: value}))
            except InvalidArgument:
                continue
    return kept


def _spec_opts(options: CreateOptions, checked: dict, config: dict) -> list:
    from dist_tool import spec as S

    opts = [S.with_image_config(_runtime_config(config))]
    if checked["entrypoint"] is not None:
        opts.append(S.with_entrypoint(checked["entrypoint"]))
    if options.args:
        opts.append(S.with_args(list(options.args)))
    opts.append(S.require_args())
    if checked["env"]:
        opts.append(S.with_env(checked["env"]))
    if checked["cwd"] is not None:
        opts.append(S.with_cwd(checked["cwd"]))
    opts.append(S.require_absolute_cwd())
    opts.append(S.with_user(options.user))
    if checked["mounts"]:
        opts.append(S.with_mounts(checked["mounts"]))
    if options.net_host:
        opts.append(S.with_host_network())
    if options.read_only:
        opts.append(S.with_readonly_rootfs())
    if options.tty:
        opts.append(S.with_tty())
    return opts


def generate_spec(session, container_id: str, image: ImageRootfs, options: CreateOptions,
                  checked: dict | None = None) -> dict:
    """The OCI runtime spec for a container of ``image`` with ``options`` applied in order."""
    from dist_tool import spec as S

    checked = checked if checked is not None else _check_options(container_id, options)
    ctx = S.SpecContext(container_id, session.namespace, rootfs_reader(session, image))
    return S.apply(ctx, S.default_spec(ctx), _spec_opts(options, checked, image.config))


def rootfs_reader(session, image: ImageRootfs):
    """Reads the image's files from its unpacked snapshot when the snapshotter shows its
    directories, else from its layer blobs. Nothing is read until a lookup needs it."""
    from dist_tool.spec import rootfs

    want = ("/etc/passwd", "/etc/group")
    return rootfs.LazyRootfs(lambda: _snapshot_layers(session, image.chain_id) or
                             rootfs.tar_layers(session.content, [d.digest for d in image.layers], want))


def _snapshot_layers(session, chain_id: str):
    """The committed chain's directories, top first, from its mounts (read, never mounted);
    None when it is not unpacked or its mounts are not plain directories."""
    from dist_tool.spec import rootfs

    try:
        return rootfs.dir_layers(session.snapshotter.mounts(chain_id))
    except NotFound:
        return None


def create(session, image_name: str, container_id: str, options: CreateOptions, progress=None) -> Container:
    """Creates the container: record, spec and active snapshot ``container_id`` on the image's
    unpacked layers, unpacking them first (shown on ``progress``) when they are not. Raises
    InvalidArgument (bad ID, label or option), NotFound (image, user, mount source),
    AlreadyExists (the ID, or a snapshot of that key)."""
    checked = _check_options(container_id, options)
    session.local_only("snapshots")  # before the image is looked up: through --address none is served
    name = reference.normalize(image_name)
    image = session.images.get(name)
    _refuse_existing(session, container_id)
    from dist_tool import tasks

    tasks.forget(session, container_id)  # what an earlier container of this ID may have left
    snapshotter = session.snapshotter  # first: an unknown --snapshotter is no fault of the image's files
    try:
        rootfs = image_rootfs(session, image)
        spec = generate_spec(session, container_id, rootfs, options, checked)  # may read its layers
    except NotFound:
        _refuse_removed(session, image)  # an rmi since the lookup: "incomplete" would blame the store
        raise
    try:
        _refuse_existing_snapshot(snapshotter, container_id)  # before an unpack, which would stay
    except AlreadyExists:
        _refuse_existing(session, container_id)  # another create of this ID won since our look: name that
        raise
    record = Container(container_id, name, runtime_name=options.runtime, spec=spec,
                       snapshotter=snapshotter.name, snapshot_key=container_id,
                       labels=validate.apply_labels(image_labels(rootfs.config), checked["labels"]))
    try:
        if _unpacked(snapshotter, rootfs.chain_id):
            # One transaction is the whole write: no lease needed. An rmi + gc that removed the
            # chain since the check makes prepare fail (NotFound) and the transaction roll back.
            _insert(session, snapshotter, record, rootfs.chain_id)
        else:
            with session.leases.temporary("create") as lease:
                from dist_tool import unpack

                # the lease holds the chain
                parent = unpack.unpack_target(session, image.target, keep=lease, progress=progress)
                if parent != rootfs.chain_id:
                    raise DataError("image", name, f"unpacked to {parent}, expected chain {rootfs.chain_id}")
                _insert(session, snapshotter, record, parent)
    except NotFound:
        _refuse_removed(session, image)
        raise
    return session.containers.get(container_id)


def _insert(session, snapshotter, record: Container, parent: str) -> None:
    """Record and active snapshot in one transaction: a failure leaves neither. The snapshot's
    directory is filled first, outside the write lock (native copies the whole parent tree)."""
    staged = snapshotter.stage(parent)
    try:
        with session.meta.write():
            # The record first: nothing may fail after install, whose directory is renamed into
            # place inside this transaction and would outlive a rollback.
            session.containers.create(record)
            snapshotter.install(staged, record.snapshot_key, labels={"dist.container": record.id})
    except BaseException:
        snapshotter.discard(staged)
        raise


def _refuse_removed(session, image) -> None:
    """An rmi that won the race took blobs or layers the unpack needed: say so by the image's
    name, not by the blob it happened to miss."""
    try:
        current = session.images.get(image.name)
    except NotFound:
        current = None
    if current is None or current.target.digest != image.target.digest:
        raise NotFound("image", image.name, "removed or replaced while the container was being created") from None


def _refuse_existing(session, container_id: str) -> None:
    try:
        session.containers.get(container_id)
    except NotFound:
        return
    raise AlreadyExists("container", container_id, "already exists")


def _snapshot_kind(snapshotter, key: str) -> str | None:
    try:
        return snapshotter.stat(key).kind
    except NotFound:
        return None


def _refuse_existing_snapshot(snapshotter, key: str) -> None:
    if _snapshot_kind(snapshotter, key) is not None:
        raise AlreadyExists("snapshot", key, "already exists")


def _unpacked(snapshotter, chain_id: str) -> bool:
    return _snapshot_kind(snapshotter, chain_id) == "committed"


# ---------------------------------------------------------------- label


def label(session, container_id: str, pairs: Sequence[str]) -> dict[str, str]:
    """Sets (``K=V``) and removes (``K=``) labels; returns the resulting labels."""
    updates = validate.label_args(pairs)
    with session.transaction():
        current = session.containers.get(container_id)
        if updates:
            labels = validate.apply_labels(current.labels, updates)
            current = session.containers.update(
                Container(container_id, current.image, labels=labels), *(f"labels.{k}" for k in updates))
    return dict(current.labels)


# ---------------------------------------------------------------- remove


def remove(session, container_ids: Sequence[str], force: bool = False):
    """Removes each container and its snapshot, keeps going past errors, then collects garbage.

    A container with a live task is a Conflict unless ``force``, which kills the task first;
    ``force`` also makes a missing ID no error. Returns (removed IDs, gc result or None,
    the first error or None).
    """
    from dist_tool.gc import remove_each

    # Before any ID is looked up: through --address a missing ID must not answer as if served.
    session.local_only("snapshots")

    def remove_one(container_id: str) -> str:
        _remove_one(session, container_id, force)
        return container_id

    return remove_each(session, container_ids, remove_one, force)


def _remove_one(session, container_id: str, force: bool) -> None:
    """Record and snapshot go in one transaction (the snapshot's files are deleted as it ends)."""
    session.containers.get(container_id)  # NotFound before anything else
    for _ in range(3):
        if task_alive(session, container_id):
            if not force:
                raise Conflict("container", container_id, "has a live task (kill it first, or use -f)")
            kill_task(session, container_id)
        with session.meta.write():
            # A start that read the container before us may have claimed its task since the look
            # above: it checks the container again in a write transaction after its claim, so a
            # claim seen here is one whose start will run (or clean up after itself), and one not
            # seen is one whose start will find the container gone. Look again outside the lock.
            if task_claimed(session, container_id):
                continue
            container = session.containers.get(container_id)
            session.containers.delete(container_id)
            if container.snapshot_key:
                try:
                    session.snapshotter_named(container.snapshotter).remove(container.snapshot_key)
                except NotFound:
                    pass  # already gone: the record was the last thing to remove
            break
    else:  # -f killed a task three times and a start claimed another each time
        raise Conflict("container", container_id, "has a live task (a start keeps claiming one)")
    from dist_tool import tasks

    tasks.forget(session, container_id)  # the last detached run's log goes with the container


# ---------------------------------------------------------------- tasks
#
# What containers need from tasks (dist_tool.tasks owns STATE/<namespace>/<container id>/).


def task_alive(session, container_id: str) -> bool:
    """True while the container's task has a live shim (a task whose shim died is cleaned up)."""
    from dist_tool import shims

    return shims.alive_task(session, container_id)


def task_claimed(session, container_id: str) -> bool:
    """True while the container has a task directory, its shim alive or not (nothing is cleaned up:
    this is asked under the store's write lock, and a cleanup records lastExit)."""
    import os

    from dist_tool import shims

    return os.path.isdir(shims.task_dir(session, container_id))


def kill_task(session, container_id: str) -> None:
    """SIGKILLs the task, then waits for its shim to record the exit and go.
    Raises Conflict when the shim outlives ``TASK_KILL_WAIT``."""
    from dist_tool import tasks

    tasks.kill_and_wait(session, container_id, TASK_KILL_WAIT)
