"""dist pull: a walker handler that fetches an image from a registry into the content store.

The handler fetches each descriptor the walk reaches — the index, the
manifests of the chosen platform(s), then each manifest's config and layers
concurrently in a small thread pool — and returns the children to visit
next. A blob already present is not fetched (it is only added to the pull's
lease). Every blob goes through the content store's resumable ingest under
the ref ``pull-<digest>``: a pull that was interrupted resumes from the bytes
its ingest holds, with ``Range: bytes=N-`` when the registry answers 206
(else from 0). Every blob is verified against its descriptor's digest and
size before it becomes visible.

The whole pull runs under a temporary lease; the image is named only once
everything it needs is present. On failure, whatever the pull committed and
nothing else keeps is collected, so the store is left as it was (ingests of
unfinished blobs stay, invisible, for the next pull to resume; ``dist gc``
removes them otherwise).

Threads: the metadata handle is shared by the process and serialises
writes, not reads. Pool threads only write (commit an ingest, extend the
lease); the main thread reads (presence, manifests) only while no pool thread
runs, since a manifest's blobs are all fetched before the walk goes on.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from dist_tool import oci, platforms, reference
from dist_tool.errors import DataError, NotFound, Unavailable
from dist_tool.gc import collect_added
from dist_tool.oci import Descriptor
from dist_tool.progress import NullProgress
from dist_tool.remote.auth import Credentials
from dist_tool.remote.registry import (
    MAX_ATTEMPTS,
    Registry,
    Repository,
    TransportFailure,
    backoff,
    record_sources,
    source_labels,
)
from dist_tool.remote.transport import TransportError
from dist_tool.store.api import Image
from dist_tool.store.limits import COPY_CHUNK
from dist_tool.unpack import unpack_under
from dist_tool.walk import ChildrenCache, Handler, children, filter_platforms, require_present, walk

FETCH_THREADS = 4  # concurrent blob downloads per manifest: enough to fill a link, few enough for 2 cores


class _Cancelled(Exception):
    """Another download of the same pull failed: stop this one, keep its ingest for a resume."""


@dataclass
class PullResult:
    name: str
    target: Descriptor
    fetched: list[str] = field(default_factory=list)  # digests downloaded (committed) by this pull
    present: list[str] = field(default_factory=list)  # digests it found already in the store
    resumed: dict[str, int] = field(default_factory=dict)  # digest → offset an interrupted ingest resumed at


def pull(session, ref_text: str, *, platform: str | None = None, all_platforms: bool = False,
         plain_http: bool = False, credentials: Credentials | None = None, unpack: bool = True,
         progress=None) -> PullResult:
    """Pulls ``ref_text`` (tag or digest), unpacks the host platform (or P) unless told not to,
    then names the image.

    Raises NotFound when the registry does not have the reference, DataError
    when content does not match its digest, Unavailable for other registry failures, and
    through ``--address`` before anything is fetched (the server would store what its client
    downloaded, and names the image in the client's metadata).
    """
    session.local_only("pull")
    ref = reference.parse(ref_text)
    name = str(ref)
    matcher = platforms.any_platform if all_platforms else \
        platforms.matcher(platforms.parse(platform) if platform else platforms.host())
    progress = progress or NullProgress()
    session.content.ensure_layout()
    added: set[str] = set()
    with Registry(reference.registry_host(ref), plain_http=plain_http, credentials=credentials) as registry:
        repo = registry.repository(ref.path, name)
        try:
            with session.leases.temporary("pull") as lease:
                target, data = repo.get_manifest(ref.digest or ref.tag or reference.DEFAULT_TAG)
                if not oci.is_image_target(target.media_type):
                    raise DataError("image", name, oci.unsupported_target(target.media_type))
                result = PullResult(name, target)
                fetcher = _Fetcher(session.content, repo, ref.domain, lease, progress, added, result)
                try:
                    fetcher.documents[target.digest] = data
                    walk(fetcher.handler(matcher), [target])
                finally:
                    fetcher.close()
                _check_complete(session, name, target, matcher, fetcher.cache, platform)
                if unpack:
                    unpack_under(session, target, platform=platform, lease=lease, progress=progress, added=added)
                record_sources(session, result.present, ref.domain, ref.path)
                with session.meta.write():
                    _put_image(session, name, target)
        except BaseException:
            collect_added(session, added)
            raise
    return result


class _Fetcher:
    """The state of one pull's handler: where blobs come from and go, and what it did."""

    def __init__(self, content, repo: Repository, domain: str, lease: tuple[str, str], progress,
                 added: set[str], result: PullResult) -> None:
        self.content = content
        self.repo = repo
        self.lease = lease
        self.progress = progress
        self.added = added
        self.result = result
        self.labels = source_labels(domain, repo.path)
        self.cache = ChildrenCache()
        self.documents: dict[str, bytes] = {}  # prefetched manifests (the root) by digest
        self.cancelled = threading.Event()
        self._pool = None  # a ThreadPoolExecutor once a manifest has two blobs to fetch

    def close(self) -> None:
        if self._pool is not None:
            self.cancelled.set()
            self._pool.shutdown(wait=True)
            self._pool = None

    def handler(self, matcher) -> Handler:
        """Fetches what the walk reaches; below a manifest, fetches its config and layers together."""
        inner = filter_platforms(children(self.content, self.cache), matcher)

        def handle(desc: Descriptor) -> list[Descriptor]:
            if not (oci.is_index(desc.media_type) or oci.is_manifest(desc.media_type)):
                self.fetch_blobs([desc])
                return []
            self.fetch_document(desc)
            kids = inner(desc)
            if oci.is_manifest(desc.media_type):
                self.fetch_blobs(kids)
                return []  # configs and layers have nothing below them
            return kids

        return handle

    # ------------------------------------------------------------ presence

    def _have(self, desc: Descriptor) -> bool:
        """Present (and now leased) or not; a present blob of another size means the manifest lies."""
        try:
            info = self.content.info(desc.digest)
        except NotFound:
            return False
        if info.size != desc.size:
            raise DataError("blob", desc.digest,
                            f"size mismatch: descriptor says {desc.size} bytes, the stored blob has {info.size}")
        if not self.content.add_to_lease(desc.digest, self.lease):
            return False  # collected between the two calls
        self.result.present.append(desc.digest)
        self.progress.done(_label(desc), "already present")
        return True

    # ------------------------------------------------------------ manifests and indexes

    def fetch_document(self, desc: Descriptor) -> None:
        if self._have(desc):
            return
        data = self.documents.pop(desc.digest, None)
        if data is None:
            _, data = self.repo.get_manifest(desc.digest, expected=desc)
        self.content.ingest(f"pull-{desc.digest}", io.BytesIO(data), size=desc.size, digest=desc.digest,
                            labels=self.labels, lease=self.lease, wait=True)
        self.added.add(desc.digest)
        self.result.fetched.append(desc.digest)
        self.progress.done(_label(desc))

    # ------------------------------------------------------------ blobs

    def fetch_blobs(self, descs: Sequence[Descriptor]) -> None:
        """Downloads the absent ones, several at a time; the first failure cancels the others."""
        todo = [d for d in dict((d.digest, d) for d in descs).values() if not self._have(d)]
        if len(todo) <= 1:
            for desc in todo:
                self._download(desc)
            return
        from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

        if self._pool is None:
            self._pool = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="dist-pull")
        futures = [self._pool.submit(self._download, d) for d in todo]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        except BaseException:
            self.cancelled.set()  # Ctrl-C: stop the transfers at their next chunk
            wait(futures)
            raise
        failed = [f for f in done if f.exception() is not None]
        if failed:
            self.cancelled.set()
            wait(futures)
            errors = [f.exception() for f in futures if f.exception() is not None]
            raise next((e for e in errors if not isinstance(e, _Cancelled)), errors[0])

    def _download(self, desc: Descriptor) -> None:
        """One blob through a resumable ingest, verified, committed; runs in a pool thread."""
        ref = f"pull-{desc.digest}"
        label = _label(desc)
        for fresh in (False, True):
            with self.content.writer(ref, desc, lease=self.lease, wait=True) as w:
                if self.content.add_to_lease(desc.digest, self.lease):
                    w.abort()  # another process committed it while we waited for the ref
                    self.result.present.append(desc.digest)
                    self.progress.done(label, "already present")
                    return
                if w.offset > desc.size:
                    w.truncate(0)
                resumed = w.offset
                if resumed:
                    self.result.resumed[desc.digest] = resumed
                self.progress.start(label, desc.size)
                try:
                    try:
                        w.check_room(desc.size)  # the registry's word for its size: checked before a byte
                    except Unavailable as e:
                        raise Unavailable("blob", desc.digest, e.why) from None
                    if w.offset < desc.size:  # a pull killed after the last byte left it whole: just verify
                        self._transfer(w, desc, label)
                except DataError:
                    w.abort()  # a registry that sends more than the descriptor says: keep none of it
                    raise
                except BaseException:
                    if w.offset == 0:
                        w.abort()  # cancelled, or failed before a byte came: nothing to resume, no trace
                    raise
                try:
                    w.commit(labels=self.labels)
                    self.added.add(desc.digest)
                except DataError as e:
                    if resumed and not fresh:
                        continue  # the bytes kept from before may be the bad ones: once more from 0
                    raise DataError("blob", desc.digest, f"{e.why} (from registry {self.repo.host})") from None
            self.result.fetched.append(desc.digest)
            self.progress.done(label)
            return

    def _transfer(self, w, desc: Descriptor, label: str) -> None:
        """Streams the blob into ``w`` from ``w.offset``; a dropped connection resumes where it broke."""
        buffer = memoryview(bytearray(COPY_CHUNK))  # one buffer per transfer: no copy per chunk
        failures = 0
        while True:
            try:
                with self.repo.blob(desc.digest, w.offset) as (resp, start):
                    if start != w.offset:
                        w.truncate(start)  # the registry ignored the range: from the start
                    while n := resp.readinto(buffer):
                        if self.cancelled.is_set():
                            raise _Cancelled
                        if w.offset + n > desc.size:
                            raise DataError("blob", desc.digest, f"registry {self.repo.host} sent more than "
                                            f"the {desc.size} bytes the descriptor says")
                        w.write(buffer[:n])
                        self.progress.update(label, w.offset)
            except TransportError as e:
                failures += 1
                if failures >= MAX_ATTEMPTS:
                    raise TransportFailure("blob", desc.digest, f"download from {self.repo.host} failed "
                                           f"{failures} times ({e.why})") from None
            else:
                if w.offset >= desc.size:
                    return
                failures += 1
                if failures >= MAX_ATTEMPTS:
                    # A body that breaks off short is a dropped connection, not a lie: what came
                    # stays for the next pull to resume (the digest judges it at the commit).
                    raise TransportFailure("blob", desc.digest, f"registry {self.repo.host} sent {w.offset} of "
                                           f"{desc.size} bytes")
            if self.cancelled.is_set():
                raise _Cancelled
            self.repo.registry._sleep(backoff(failures))


def _label(desc: Descriptor) -> str:
    return f"{oci.kind_of(desc.media_type)} {desc.digest[:19]}"


def _check_complete(session, name: str, target: Descriptor, matcher, cache: ChildrenCache,
                    platform: str | None) -> None:
    present = session.content.present()
    req = require_present(session.content, target, matcher, present.__contains__, cache)
    if not req.matched:
        raise platforms.no_manifest(name, platform)
    if req.missing:
        raise DataError("blob", req.missing[0].digest, f"missing after the pull of {name}")


def _put_image(session, name: str, target: Descriptor) -> None:
    try:
        current = session.images.get(name)
    except NotFound:
        session.images.create(Image(name, target))
        return
    session.images.update(Image(name, target, current.labels), "target")
