"""dist push: a walker handler that uploads an image from the content store to a registry.

The walk covers the image as stored (the whole index), or with ``--platform P``
only P's manifest, pushed as the image. The handler asks the registry (HEAD by
digest) for each manifest and index: one it already has is complete there
(a registry accepts a manifest only once it holds what the manifest
references), so the walk does not descend below it. Other manifests are
recorded for upload and their children visited. Each config and layer is
queued to a small thread pool that asks the registry for it (HEAD) and uploads
what it lacks: by a cross-repository mount when the store records the blob in
another repository of the same registry (the ``dist.registry.source.<domain>``
label that pull and push leave on blobs), else by POST + monolithic PUT. Then
the manifests go up bottom-up — children before the index that lists them —
and the root last, under the tag.

A tag that already points at the image's digest means there is nothing to
do: one HEAD request.

Threads: store calls of every thread go through ``_Pusher.lock`` (the
metadata handle is shared); blob bytes are read and sent outside it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from dist_tool import oci, platforms, reference
from dist_tool.errors import DataError, InvalidArgument, NotFound
from dist_tool.oci import Descriptor
from dist_tool.progress import NullProgress
from dist_tool.remote.auth import Credentials
from dist_tool.remote.registry import Registry, Repository, record_sources, sources
from dist_tool.store.limits import COPY_CHUNK, MAX_INDEX_BYTES, MAX_MANIFEST_BYTES
from dist_tool.walk import (
    ChildrenCache,
    Handler,
    SkipChildren,
    children,
    platform_manifests,
    skip_missing,
    visitor,
    walk,
)

PUSH_THREADS = 4


class _Cancelled(Exception):
    """Another upload of the same push failed: stop this one."""


@dataclass
class PushResult:
    reference: str  # what was pushed, normalised
    target: Descriptor
    up_to_date: bool = False  # the tag already pointed at the target: nothing was sent
    uploaded: list[str] = field(default_factory=list)
    mounted: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)  # blobs and manifests the registry already had
    manifests: list[str] = field(default_factory=list)  # manifests and indexes PUT, in order

    @property
    def pinned(self) -> str:
        """``REF@DIGEST``: what a script pulls to get exactly this image."""
        return f"{self.reference.partition('@')[0]}@{self.target.digest}"


def push(session, ref_text: str, local: str | None = None, *, platform: str | None = None,
         plain_http: bool = False, credentials: Credentials | None = None, progress=None) -> PushResult:
    """Pushes the local image ``local`` (default: ``ref_text``) to ``ref_text``.

    Everything the pushed tree references must be present locally (checked
    before anything is sent). Raises NotFound for a missing local image, and Unavailable through
    ``--address`` before anything is sent (the sources it records are local metadata).
    """
    session.local_only("push")
    ref = reference.parse(ref_text)
    image = session.images.get(reference.normalize(local or ref_text))
    content = session.content
    cache = ChildrenCache()
    target = image.target
    if platform is not None:
        found = platform_manifests(content, target, platforms.matcher(platforms.parse(platform)), cache)
        if not found:
            raise platforms.no_manifest(image.name, platform)
        target = found[0]
    if ref.digest is not None and ref.digest != target.digest:
        raise InvalidArgument("reference", ref_text, f"names {ref.digest}, but the image is {target.digest}")
    progress = progress or NullProgress()
    result = PushResult(str(ref), target)
    with Registry(reference.registry_host(ref), plain_http=plain_http, credentials=credentials) as registry:
        repo = registry.repository(ref.path, str(ref), actions="pull,push")
        if ref.tag is not None:
            current = repo.head_manifest(ref.tag)
            if current is not None and current.digest == target.digest:
                result.up_to_date = True
                return result
        # The push's lease keeps what it sends from a concurrent rmi's collection, as pull's keeps
        # what it fetches: the image may lose its name meanwhile, never its blobs.
        with session.leases.temporary("push") as lease:
            tree = _local_tree(content, image.name, target, cache)
            _hold(session, tree, lease, image.name)
            pusher = _Pusher(content, repo, ref.domain, progress, result, cache)
            try:
                walk(pusher.handler(target), [target])
                pusher.finish()
            finally:
                pusher.close()
            if ref.tag is not None or not pusher.root_exists:
                pusher.put_manifests(target, ref.tag or target.digest)
            record_sources(session, tree, ref.domain, ref.path)
    return result


def _hold(session, digests: list[str], lease: tuple[str, str], name: str) -> None:
    """Adds every blob of the push to its lease, in one transaction; NotFound (nothing sent yet)
    when one went with a concurrent rmi since the tree was read."""
    with session.transaction():
        for digest in digests:
            if not session.content.add_to_lease(digest, lease):
                raise NotFound("image", name, "removed while it was being pushed")


def _local_tree(content, name: str, target: Descriptor, cache: ChildrenCache) -> list[str]:
    """Every digest the push covers; all of them must be present."""
    present = content.present()
    missing: list[Descriptor] = []
    found: list[str] = []
    walk(visitor(skip_missing(children(content, cache), present.__contains__, missing),
                 lambda d: found.append(d.digest)), [target])
    if missing:
        raise DataError("blob", missing[0].digest,
                        f"missing: cannot push {name} whole (push one platform with --platform)")
    return found


class _Pusher:
    """The state of one push's handler: the queue of blob uploads, the manifests to PUT."""

    def __init__(self, content, repo: Repository, domain: str, progress, result: PushResult,
                 cache: ChildrenCache) -> None:
        self.content = content
        self.repo = repo
        self.domain = domain
        self.progress = progress
        self.result = result
        self.cache = cache
        self.lock = threading.Lock()
        self.cancelled = threading.Event()
        self.pending: list[Descriptor] = []  # manifests and indexes to PUT, in walk (pre-)order
        self.root_exists = False
        self._futures: list = []  # concurrent.futures.Future of each upload
        self._pool = None  # a ThreadPoolExecutor once there is a blob to check

    def handler(self, root: Descriptor) -> Handler:
        inner = children(self.content, self.cache)

        def handle(desc: Descriptor) -> list[Descriptor]:
            if oci.is_index(desc.media_type) or oci.is_manifest(desc.media_type):
                if self.repo.head_manifest(desc.digest) is not None:
                    self.result.existing.append(desc.digest)
                    if desc.digest == root.digest:
                        self.root_exists = True  # only the tag is left to set
                    raise SkipChildren
                self.pending.append(desc)
                with self.lock:
                    return inner(desc)
            self._queue(desc)
            return []

        return handle

    # ------------------------------------------------------------ blobs

    def _queue(self, desc: Descriptor) -> None:
        with self.lock:
            mount_from = [p for p in sources(self.content.info(desc.digest).labels, self.domain)
                          if p != self.repo.path]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(PUSH_THREADS, thread_name_prefix="dist-push")
        self._futures.append(self._pool.submit(self._upload, desc, mount_from))

    def _upload(self, desc: Descriptor, mount_from: list[str]) -> None:
        if self.cancelled.is_set():
            raise _Cancelled
        label = f"{oci.kind_of(desc.media_type)} {desc.digest[:19]}"
        if self.repo.blob_exists(desc):
            self.result.existing.append(desc.digest)
            self.progress.done(label, "already in the registry")
            return
        self.progress.start(label, desc.size)
        how = self.repo.upload_blob(desc, lambda: self._chunks(desc, label), mount_from)
        (self.result.mounted if how == "mounted" else self.result.uploaded).append(desc.digest)
        self.progress.done(label, how)

    def _chunks(self, desc: Descriptor, label: str) -> Iterator[memoryview]:
        """The blob in chunks of one reused buffer (each is sent before the next is read)."""
        with self.lock:
            f = self.content.open_blob(desc.digest)
        buffer = memoryview(bytearray(COPY_CHUNK))
        with f:
            sent = 0
            while n := f.readinto(buffer):
                if self.cancelled.is_set():
                    raise _Cancelled
                sent += n
                self.progress.update(label, sent)
                yield buffer[:n]

    def finish(self) -> None:
        """Waits for every upload; the first failure cancels the rest and is raised."""
        from concurrent.futures import FIRST_EXCEPTION, wait

        try:
            done, _ = wait(self._futures, return_when=FIRST_EXCEPTION)
            if any(f.exception() is not None for f in done):
                self.cancelled.set()  # the others stop at their next chunk instead of sending it all
            wait(self._futures)
        except BaseException:
            self.cancelled.set()
            wait(self._futures)
            raise
        errors = [f.exception() for f in self._futures if f.exception() is not None]
        if errors:
            raise next((e for e in errors if not isinstance(e, _Cancelled)), errors[0])

    def close(self) -> None:
        if self._pool is not None:
            self.cancelled.set()
            self._pool.shutdown(wait=True)
            self._pool = None

    # ------------------------------------------------------------ manifests

    def put_manifests(self, root: Descriptor, root_reference: str) -> None:
        """Children before the indexes that list them; the root last, under its tag."""
        order = [d for d in reversed(self.pending) if d.digest != root.digest]
        for desc in [*order, root]:
            limit = MAX_INDEX_BYTES if oci.is_index(desc.media_type) else MAX_MANIFEST_BYTES
            data = self.content.read_blob(desc.digest, limit)
            where = root_reference if desc.digest == root.digest else desc.digest
            self.repo.put_manifest(where, desc, data)
            self.result.manifests.append(desc.digest)
