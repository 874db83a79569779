"""Streaming import of OCI image-layout and docker-save archives; OCI-layout tar export.

Import reads the archive once, front to back (a file or a pipe, plain or
gzip): every blob goes straight into the content store through a verified
ingest, and only the small JSON documents (``index.json``, ``manifest.json``)
are held in memory, bounded. Names and platform requirements are resolved
after the stream ends; the whole import runs under a lease, and a failure
collects whatever the import added, so the store is left as it was.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import posixpath
import sys
import tarfile
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from dist_tool import compression, oci, platforms, reference
from dist_tool.errors import AlreadyExists, DataError, DistError, InvalidArgument, NotFound, Unavailable
from dist_tool.gc import collect_added
from dist_tool.oci import Descriptor
from dist_tool.progress import NullProgress, item_label
from dist_tool.store.api import Image
from dist_tool.store.limits import COPY_CHUNK, MAX_ARCHIVE_JSON_BYTES, MAX_ARCHIVE_LINK_BYTES, TAR_BUFSIZE
from dist_tool.tarstream import strict_tarinfo
from dist_tool.unpack import unpack_under
from dist_tool.walk import ChildrenCache, reachable, require_present


@dataclass
class _Scan:
    """What one pass over an archive found."""

    index: bytes | None = None
    docker_manifest: bytes | None = None
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # member path → (digest, size)
    links: dict[str, str] = field(default_factory=dict)  # member path → path it links to
    link_bytes: int = 0  # the length of the names in links, bounded
    added: set[str] = field(default_factory=set)  # digests this import committed
    # every member stored as a blob, a member listed twice under one name included (files keeps its last)
    stored: set[str] = field(default_factory=set)


def _member_path(name: str) -> str:
    path = posixpath.normpath(name.lstrip("/"))
    return "" if path == "." else path


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo, what: str) -> bytes:
    if member.size > MAX_ARCHIVE_JSON_BYTES:
        raise DataError("archive", what, f"larger than {MAX_ARCHIVE_JSON_BYTES} bytes")
    f = tar.extractfile(member)
    return f.read() if f else b""


def _blob_digest(path: str) -> str | None:
    """``blobs/<alg>/<hex>`` → ``<alg>:<hex>`` when well formed."""
    parts = path.split("/")
    if len(parts) == 3 and parts[0] == "blobs":
        digest = f"{parts[1]}:{parts[2]}"
        if _valid(digest):
            return digest
    return None


def _valid(digest: str) -> bool:
    try:
        oci.Descriptor.from_json({"mediaType": "", "digest": digest, "size": 0})
    except DataError:
        return False
    return True


def _is_docker_blob(path: str) -> bool:
    """Files a legacy ``docker save`` archive may reference from manifest.json."""
    return path.endswith("/layer.tar") or path.endswith(".tar") or (
        path.endswith(".json") and "/" not in path and path not in ("manifest.json", "index.json"))


def _scan(session, stream, source: str, lease: tuple[str, str], progress, scan: _Scan) -> None:
    content = session.content
    pid = os.getpid()
    try:
        peek = compression.PeekReader(stream)
        head = peek.peek(6)
        if head.startswith(_BZIP2_MAGIC) or head.startswith(_XZ_MAGIC):  # as docker load and podman load take
            tar = tarfile.open(fileobj=peek, mode="r|bz2" if head.startswith(_BZIP2_MAGIC) else "r|xz",
                               bufsize=TAR_BUFSIZE, tarinfo=strict_tarinfo())
        else:  # compression's reader, not tarfile's "r|*": that stops after a gzip file's first member
            plain = compression.decompressed(peek, "archive", source)
            tar = tarfile.open(fileobj=plain, mode="r|", bufsize=TAR_BUFSIZE, tarinfo=strict_tarinfo())
    except (tarfile.ReadError, tarfile.CompressionError, EOFError, OSError) as e:
        raise DataError("archive", source, f"not a tar archive ({_tar_why(e)})") from None
    except RecursionError:  # opening reads the first member, and with it a chain of extended headers
        raise DataError("archive", source, "corrupt tar (too many extended headers in a row)") from None
    try:
        for member in tar:
            path = _member_path(member.name)
            if member.issparse():  # no image tool writes one; its few bytes would expand to any size
                raise DataError("archive", source, f"member {item_label(path)}: a sparse file")
            if member.issym() or member.islnk():
                target = member.linkname if member.islnk() else posixpath.join(posixpath.dirname(path),
                                                                             member.linkname)
                scan.links[path] = _member_path(target)
                scan.link_bytes += len(path) + len(scan.links[path])
                if scan.link_bytes > MAX_ARCHIVE_LINK_BYTES:
                    raise DataError("archive", source, f"the names of its links exceed {MAX_ARCHIVE_LINK_BYTES} "
                                    "bytes")
                continue
            if not member.isfile():
                continue
            if path == "index.json":
                scan.index = _read_small(tar, member, path)
            elif path == "manifest.json":
                scan.docker_manifest = _read_small(tar, member, path)
            elif (digest := _blob_digest(path)) is not None:
                _ingest_member(content, tar, member, digest, f"import-{digest}", lease, scan, progress)
                scan.files[path] = (digest, member.size)
                scan.stored.add(digest)
            elif _is_docker_blob(path):
                # Named by a hash of the path: a member name may hold any byte but NUL, and a ref must
                # be one line of UTF-8.
                ref = f"import-{pid}-{hashlib.sha256(path.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}"
                digest = _ingest_member(content, tar, member, None, ref, lease, scan, progress)
                scan.files[path] = (digest, member.size)
                scan.stored.add(digest)
    except (tarfile.ReadError, EOFError) as e:
        raise DataError("archive", source, f"truncated or corrupt tar ({_tar_why(e)})") from None
    except RecursionError:  # tarfile reads each extended header of a chain by recursion
        raise DataError("archive", source, "corrupt tar (too many extended headers in a row)") from None
    except (tarfile.TarError, OSError, zlib_error()) as e:
        raise DataError("archive", source, f"unreadable ({_tar_why(e)})") from None


_BZIP2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"


def zlib_error():
    import zlib

    return zlib.error


def _tar_why(e: BaseException) -> str:
    return str(e) or e.__class__.__name__


def _ingest_member(content, tar, member, digest: str | None, ref: str, lease, scan: _Scan, progress) -> str:
    f = tar.extractfile(member)
    if digest is not None and content.add_to_lease(digest, lease):
        # Already present (now protected by our lease): nothing is written, but the archive's
        # bytes are still checked: a hostile archive is refused even where the store has the truth.
        _verify_member(f, digest, member.size)
        return digest
    label = item_label(digest or member.name)
    progress.start(label, member.size)
    try:
        committed = content.ingest(ref, f, size=member.size, digest=digest, lease=lease,
                                  progress=lambda n: progress.update(label, n), wait=True,
                                  keep_partial=False)
    except DataError as e:
        raise DataError("blob", digest or member.name, e.why) from None
    except Unavailable as e:  # no room for it: named by the blob, not by our ingest's ref
        raise Unavailable("blob", digest or member.name, e.why) from None
    progress.done(label)
    scan.added.add(committed)
    return committed


def _verify_member(stream, digest: str, size: int) -> None:
    hashing = compression.HashingReader(stream, digest.partition(":")[0])
    hashing.drain(COPY_CHUNK)
    if hashing.count != size or hashing.digest != digest:
        raise DataError("blob", digest, f"digest mismatch: the archive's copy hashes to {hashing.digest}")


# ---------------------------------------------------------------- entries


@dataclass
class _Entry:
    target: Descriptor
    name: str | None
    where: str  # how to name the entry in an error


def _oci_entries(scan: _Scan) -> list[_Entry]:
    doc = oci.decode_json(scan.index or b"", "archive", "index.json")
    entries = []
    for i, desc in enumerate(oci.index_children(doc, "index.json")):
        name = desc.annotations.get(oci.ANNOTATION_CONTAINERD_NAME)
        ref_name = desc.annotations.get(oci.ANNOTATION_REF_NAME)
        if not name and ref_name and reference.is_full_reference(ref_name):
            name = ref_name
        entries.append(_Entry(desc.without_annotations(), name,
                              f"index.json manifests[{i}]" + (f" ({ref_name})" if ref_name else "")))
    return entries


def _docker_entries(session, scan: _Scan, lease) -> list[_Entry]:
    import json

    try:
        manifest = json.loads(scan.docker_manifest or b"")
    except ValueError:
        raise DataError("archive", "manifest.json", "not valid JSON") from None
    except RecursionError:  # json's decoder recurses once per level: [[[[… is a hostile document
        raise DataError("archive", "manifest.json", "JSON nested too deeply") from None
    if not isinstance(manifest, list):
        raise DataError("archive", "manifest.json", "not a JSON list")
    entries = []
    for i, item in enumerate(manifest):
        if not isinstance(item, dict) or not isinstance(item.get("Config"), str) \
                or not isinstance(item.get("Layers"), list):
            raise DataError("archive", f"manifest.json[{i}]", "needs Config and Layers")
        # Typed as docker load types them: a RepoTags string was iterated into one-letter names.
        tags = item.get("RepoTags") or []
        for key, value in (("Layers", item["Layers"]), ("RepoTags", tags)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise DataError("archive", f"manifest.json[{i}] {key}", "not a list of strings")
        config = _docker_file(scan, item["Config"], f"manifest.json[{i}] Config")
        layers = []
        for layer_path in item["Layers"]:
            digest, size = _docker_file(scan, layer_path, f"manifest.json[{i}] layer")
            layers.append(Descriptor(_layer_type(session.content, digest, f"manifest.json[{i}] {layer_path}"),
                                     digest, size))
        doc = {"schemaVersion": 2, "mediaType": oci.MEDIA_DOCKER_MANIFEST,
               "config": Descriptor(oci.MEDIA_DOCKER_CONFIG, *config).to_json(),
               "layers": [d.to_json() for d in layers]}
        data = oci.encode_json(doc)
        digest = session.content.ingest(f"import-{os.getpid()}-manifest-{i}", io.BytesIO(data),
                               lease=lease)
        scan.added.add(digest)
        target = Descriptor(oci.MEDIA_DOCKER_MANIFEST, digest, len(data))
        where = f"manifest.json[{i}]"
        if tags:
            entries.extend(_Entry(target, t, where) for t in tags)
        else:
            entries.append(_Entry(target, None, where))
    return entries


def _docker_file(scan: _Scan, path: str, where: str) -> tuple[str, int]:
    path = _member_path(path)
    for _ in range(8):  # follow a few links: docker dedups identical layers by symlink
        if path in scan.files:
            return scan.files[path]
        if path not in scan.links:
            break
        path = scan.links[path]
    raise DataError("archive", where, f"references {path}, which the archive does not hold")


def _layer_type(content, digest: str, where: str) -> str:
    with content.open_blob(digest) as f:
        head = f.read(6)
    if head.startswith(_BZIP2_MAGIC) or head.startswith(_XZ_MAGIC):
        # No layer media type holds them: typed as a plain tar, such an image imported with --no-unpack
        # and failed at its first use as "not a tar archive (invalid header)".
        packer = "bzip2" if head.startswith(_BZIP2_MAGIC) else "xz"
        raise DataError("layer", digest, f"{packer}-compressed ({where}): a layer is a plain, gzip or zstd tar")
    kind = compression.detect(head[:4])
    return {"gzip": oci.MEDIA_DOCKER_LAYER_GZIP, "zstd": oci.MEDIA_OCI_LAYER_ZSTD}.get(kind, oci.MEDIA_DOCKER_LAYER)


def _name_entries(entries: list[_Entry], name: str | None) -> list[tuple[str, Descriptor]]:
    if name is not None:
        name = reference.normalize(name)
        targets = {e.target.digest for e in entries}
        if len(targets) == 1:
            return [(name, entries[0].target)]
        unnamed = [e for e in entries if not e.name]
        if len(unnamed) != 1:
            raise InvalidArgument("--name", name, f"the archive holds {len(targets)} images, "
                                  f"{len(unnamed) or 'none'} of them unnamed: --name names its one image, "
                                  "or its one unnamed image")
        unnamed[0].name = name
    out: dict[str, Descriptor] = {}
    for e in entries:
        if not e.name:
            raise InvalidArgument("archive entry", e.where, "has no usable name; give one with --name")
        try:
            entry_name = reference.normalize(e.name)
        except InvalidArgument as err:  # SPEC: an entry with no usable name is exit 2, naming the entry
            raise InvalidArgument("archive entry", e.where, f"has no usable name ({e.name!r}: {err.why}); "
                                  "give one with --name") from None
        if out.get(entry_name, e.target).digest != e.target.digest:
            raise DataError("archive", entry_name, "names two different images")
        out[entry_name] = e.target
    return list(out.items())


def _matcher(platform: str | None, all_platforms: bool):
    if all_platforms:
        return platforms.any_platform
    return platforms.matcher(platforms.parse(platform) if platform else platforms.host())


def _check_required(session, named: list[tuple[str, Descriptor]], matcher, platform: str | None) -> None:
    present = session.content.present()
    cache = ChildrenCache()
    for name, target in named:
        if not oci.is_image_target(target.media_type):
            raise DataError("image", name, oci.unsupported_target(target.media_type))
        req = require_present(session.content, target, matcher, present.__contains__, cache, sizes=present)
        if req.missing:
            raise DataError("blob", req.missing[0].digest,
                            f"missing from the archive ({oci.kind_of(req.missing[0].media_type)} of {name})")
        if not req.matched:
            raise platforms.no_manifest(name, platform)


# ---------------------------------------------------------------- import


def import_archive(session, source: str | None, *, name: str | None = None, platform: str | None = None,
                   all_platforms: bool = False, unpack: bool = True, progress=None) -> list[str]:
    """Imports an OCI-layout or docker-save archive (``-`` or None reads stdin); returns the names.

    With ``unpack``, each image's host platform (or ``platform``) is unpacked before its name
    is written, so a layer that fails its diff_id check leaves no image, blob or snapshot."""
    progress = progress or NullProgress()
    if name is not None:
        reference.normalize(name)  # a bad --name is a usage error before any byte is read
    matcher = _matcher(platform, all_platforms)
    source = source or "-"
    session.content.ensure_layout()
    stream, close = _open_input(source)
    scan = _Scan()
    try:
        with session.leases.temporary("import") as lease:
            _scan(session, stream, source, lease, progress, scan)
            if scan.index is not None:
                entries = _oci_entries(scan)
            elif scan.docker_manifest is not None:
                entries = _docker_entries(session, scan, lease)
            else:
                raise DataError("archive", source, "holds neither index.json (OCI layout) nor "
                                "manifest.json (docker save)")
            if not entries:
                raise DataError("archive", source, "lists no images")
            named = _name_entries(entries, name)
            _check_required(session, named, matcher, platform)
            if unpack:
                for target in {t.digest: t for _, t in named}.values():
                    unpack_under(session, target, platform=platform, lease=lease, progress=progress,
                                 added=scan.added)
            with session.transaction():
                for image_name, target in named:
                    _put_image(session, image_name, target)
    except BaseException:
        collect_added(session, scan.added)  # the lease is gone by now: collect what we added
        raise
    finally:
        close()
    collect_added(session, _unreferenced(session, scan, named))
    return [n for n, _ in named]


def _unreferenced(session, scan: _Scan, named: list[tuple[str, Descriptor]]) -> set[str]:
    """Members that looked like blobs but that no imported image references (a stray file in
    blobs/, a docker-save leftover, the first of two members of one name), stored only because the
    stream is read in order. Best effort, like ``collect_added``: the import has succeeded, and
    ``dist gc`` finds the rest."""
    stored = scan.stored & scan.added
    if not stored:
        return set()
    present = session.content.present()
    cache = ChildrenCache()
    try:
        for _, target in named:
            stored.difference_update(reachable(session.content, target, present.__contains__, cache))
    except DistError:
        return set()
    return stored


def _put_image(session, name: str, target: Descriptor) -> None:
    """Names ``target``; an existing name keeps its labels. Each step is one store call, so a
    concurrent import or label of the same name (through ``dist serve`` too) loses nothing."""
    try:
        session.images.create(Image(name, target))
    except AlreadyExists:
        session.images.update(Image(name, target), "target")


def _open_input(source: str):
    if source == "-":
        return sys.stdin.buffer, lambda: None
    try:
        f = open(source, "rb")
    except FileNotFoundError:
        raise NotFound("archive", source, "no such file") from None
    except IsADirectoryError:
        raise InvalidArgument("archive", source, "is a directory (use --rootfs for a root filesystem)") from None
    except OSError as e:
        raise DataError("archive", source, e.strerror or str(e)) from None
    return f, f.close


# ---------------------------------------------------------------- import --rootfs


def import_rootfs(session, rootfs: str, name: str | None, config_cmd: Sequence[str], progress=None,
                  unpack: bool = True) -> list[str]:
    """Makes a one-layer image from a root-filesystem tar (plain or compressed) or directory,
    and (with ``unpack``) unpacks it."""
    progress = progress or NullProgress()
    if not name:
        raise InvalidArgument("--name", "", "is required with --rootfs")
    name = reference.normalize(name)
    if not os.path.exists(rootfs):
        raise NotFound("rootfs", rootfs, "no such file or directory")
    session.content.ensure_layout()
    added: set[str] = set()
    try:
        with session.leases.temporary("import") as lease:
            if os.path.isdir(rootfs):
                layer, diff_id = _layer_from_dir(session, rootfs, lease, progress)
            else:
                layer, diff_id = _layer_from_tar(session, rootfs, lease, progress)
            added.add(layer.digest)
            plat = platforms.host()
            config = {"created": _now_rfc3339(), "architecture": plat.architecture, "os": plat.os,
                      "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
                      "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                      "history": [{"created": _now_rfc3339(), "created_by": "dist images import --rootfs"}]}
            if plat.variant:
                config["variant"] = plat.variant
            if config_cmd:
                config["config"]["Cmd"] = list(config_cmd)
            config_desc = _put_json(session, config, oci.MEDIA_OCI_CONFIG, lease, added)
            manifest = {"schemaVersion": 2, "mediaType": oci.MEDIA_OCI_MANIFEST,
                        "config": config_desc.to_json(), "layers": [layer.to_json()]}
            target = _put_json(session, manifest, oci.MEDIA_OCI_MANIFEST, lease, added)
            if unpack:
                unpack_under(session, target, platform=None, lease=lease, progress=progress, added=added)
            _put_image(session, name, target)
    except BaseException:
        collect_added(session, added)
        raise
    return [name]


def _put_json(session, doc: dict, media_type: str, lease, added: set[str]) -> Descriptor:
    data = oci.encode_json(doc)
    digest = session.content.ingest(f"import-{os.getpid()}-{media_type}", io.BytesIO(data), lease=lease)
    added.add(digest)
    return Descriptor(media_type, digest, len(data))


class _WriterSink:
    """A file-like sink that feeds an ingest writer (which hashes what it is given)."""

    def __init__(self, writer) -> None:
        self.writer = writer

    def write(self, data) -> int:
        self.writer.write(bytes(data))
        return len(data)

    def flush(self) -> None: ...


class _DiffSink:
    """Hashes the uncompressed tar (its diff_id) on its way into gzip."""

    def __init__(self, inner) -> None:
        import hashlib

        self.inner = inner
        self.hash = hashlib.sha256()

    def write(self, data) -> int:
        self.hash.update(data)
        return self.inner.write(data)

    def flush(self) -> None: ...


def _layer_from_dir(session, rootfs: str, lease, progress) -> tuple[Descriptor, str]:
    import gzip

    with session.content.writer(f"import-{os.getpid()}-rootfs", lease=lease) as w, _aborting(w):
        gz = gzip.GzipFile(fileobj=_WriterSink(w), mode="wb", compresslevel=1, mtime=0)
        diff = _DiffSink(gz)
        with tarfile.open(fileobj=diff, mode="w|", format=tarfile.PAX_FORMAT, bufsize=TAR_BUFSIZE) as tar:
            linked: dict[tuple[int, int], str] = {}  # (device, inode) → first arcname, for what tarfile does not link
            for path in _walk_sorted(rootfs):
                arcname = os.path.relpath(path, rootfs)
                try:
                    info = tar.gettarinfo(path, arcname)
                    if info is not None:
                        _exact_attributes(info, path, os.lstat(path), linked)
                except OSError as e:
                    raise DataError("rootfs", path, e.strerror or str(e)) from None
                if info is None:
                    continue  # a socket: not something a tar holds (GNU tar and docker import skip them too)
                info.uname = info.gname = ""
                if info.isreg():
                    try:
                        with open(path, "rb") as f:
                            tar.addfile(info, f)
                    except OSError as e:  # errno None: tarfile's "unexpected end of data"
                        why = e.strerror if e.errno else "shrank while it was read"
                        raise DataError("rootfs", path, why or str(e)) from None
                else:
                    tar.addfile(info)
        gz.close()
        digest = w.commit()
        size = w.offset
    progress.event(f"layer {digest[:19]}: {size} bytes from {rootfs}")
    return Descriptor(oci.MEDIA_OCI_LAYER_GZIP, digest, size), f"sha256:{diff.hash.hexdigest()}"


def _exact_attributes(info: tarfile.TarInfo, path: str, st: os.stat_result,
                      linked: dict[tuple[int, int], str]) -> None:
    """What ``tar --xattrs --posix`` keeps and tarfile's ``gettarinfo`` does not: the mtime to
    the nanosecond (tarfile's float holds ~0.1 µs), xattrs (file capabilities among them; never
    overlayfs's own marks), and hard links between entries other than regular files."""
    from dist_tool.fsattrs import OVERLAY_XATTRS

    negative, magnitude = st.st_mtime_ns < 0, abs(st.st_mtime_ns)
    seconds, fraction = divmod(magnitude, 1_000_000_000)
    if fraction:
        info.pax_headers["mtime"] = f"{'-' if negative else ''}{seconds}.{fraction:09d}".rstrip("0")
    for name in _xattr_names(path):
        if not name.startswith(OVERLAY_XATTRS):
            try:
                value = os.getxattr(path, name, follow_symlinks=False)
            except OSError as e:
                if e.errno == errno.ENODATA:  # removed since it was listed
                    continue
                raise
            info.pax_headers[f"SCHILY.xattr.{name}"] = value.decode("utf-8", "surrogateescape")
    if st.st_nlink > 1 and not (info.isreg() or info.isdir() or info.islnk()):
        first = linked.setdefault((st.st_dev, st.st_ino), info.name)
        if first != info.name:
            info.type, info.linkname = tarfile.LNKTYPE, first


def _xattr_names(path: str) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):  # a file system without xattrs
            return []
        raise


def _walk_sorted(top: str):
    """Every path under ``top``, depth first in name order: a directory, its other entries, its
    symlinks to directories (not followed), then its subdirectories' trees. A stack, not
    os.walk, which recurses once per level (a deep tree is a RecursionError)."""
    stack = [top]
    while stack:
        dirpath = stack.pop()
        try:
            with os.scandir(dirpath) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:  # silence would store a layer short of this directory's contents
            where = dirpath[len(top):] or "/"
            raise DataError("rootfs", top, f"cannot list {where if len(where) <= 80 else '…' + where[-79:]}: "
                            f"{e.strerror}") from None
        if dirpath != top:
            yield dirpath
        subdirs, linked_dirs = [], []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.path)
            elif entry.is_symlink() and _is_dir(entry):
                linked_dirs.append(entry.path)
            else:
                yield entry.path
        yield from linked_dirs
        stack.extend(reversed(subdirs))


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _layer_from_tar(session, rootfs: str, lease, progress) -> tuple[Descriptor, str]:
    """Stores the tar as it is, checking while it streams that it really is a tar."""
    try:
        opened = open(rootfs, "rb")
    except OSError as e:
        raise DataError("rootfs", rootfs, e.strerror or str(e)) from None
    with opened:
        raw = compression.PeekReader(opened)  # not seek: a pipe (<(zcat …), /dev/stdin) cannot
        head = raw.peek(6)
        if head.startswith(_BZIP2_MAGIC) or head.startswith(_XZ_MAGIC):  # no layer media type holds them
            packer = "bzip2" if head.startswith(_BZIP2_MAGIC) else "xz"
            raise DataError("rootfs", rootfs, f"{packer}-compressed: a layer is a plain, gzip or zstd tar "
                            f"(decompress it first: {packer} -d)")
        kind = compression.detect(head[:4])
        stored = compression.HashingReader(raw)
        tee = _TeeToWriter(stored)
        with session.content.writer(f"import-{os.getpid()}-rootfs", lease=lease) as w, _aborting(w):
            tee.writer = w
            plain = compression.HashingReader(compression.decompressed(tee, "rootfs", rootfs))
            try:
                with tarfile.open(fileobj=plain, mode="r|", bufsize=TAR_BUFSIZE, tarinfo=strict_tarinfo()) as tar:
                    for _ in tar:
                        pass
                plain.drain()
                tee.drain()
            except (tarfile.TarError, EOFError, RecursionError) as e:
                raise DataError("rootfs", rootfs, f"not a tar archive ({_tar_why(e)})") from None
            except DataError as e:
                raise DataError("rootfs", rootfs, e.why) from None
            digest = w.commit()
            size = w.offset
    media_type = {"gzip": oci.MEDIA_OCI_LAYER_GZIP, "zstd": oci.MEDIA_OCI_LAYER_ZSTD}.get(kind, oci.MEDIA_OCI_LAYER)
    progress.event(f"layer {digest[:19]}: {size} bytes from {rootfs}")
    return Descriptor(media_type, digest, size), plain.digest


@contextmanager
def _aborting(writer):
    """Discards the ingest when the block fails: a pid-named ref can never be resumed."""
    try:
        yield
    except BaseException:
        writer.abort()
        raise


class _TeeToWriter:
    def __init__(self, raw) -> None:
        self.raw = raw
        self.writer = None

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            self.writer.write(data)
        return data

    def drain(self) -> None:
        while self.read(COPY_CHUNK):
            pass


def _now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


__all__ = ["import_archive", "import_rootfs"]
