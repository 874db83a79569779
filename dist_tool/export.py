"""Export: an OCI image-layout tar of named images, digests unchanged, that skopeo, podman load
and docker load read. Everything is checked present before a byte is written, and the file
appears only when complete. Timestamps are fixed: the same image exports to the same bytes."""

import errno
import io
import json
import os
import stat
import sys
import tarfile
from collections.abc import Sequence

from dist_tool import compression, oci, platforms, reference
from dist_tool.errors import DataError, DistError, InvalidArgument
from dist_tool.oci import Descriptor
from dist_tool.progress import NullProgress, item_label
from dist_tool.store.api import Image
from dist_tool.store.limits import TAR_BUFSIZE
from dist_tool.walk import (
    ChildrenCache,
    children,
    filter_platforms,
    platform_manifests,
    read_document,
    skip_missing,
    visitor,
    walk,
)

EXPORT_MTIME = 0


def export_archive(session, dest: str, names: Sequence[str], *, platform: str | None = None,
                   progress=None) -> None:
    """Writes an OCI image-layout tar of the named images, digests unchanged.

    Everything the images reference must be present (checked before a byte is
    written); a regular file appears only when complete (``_write_to``).
    """
    progress = progress or NullProgress()
    where = _destination(dest) if dest != "-" else None
    cache = ChildrenCache()
    present = session.content.present()
    matcher = platforms.matcher(platforms.parse(platform)) if platform else None
    exported: list[tuple[str, Descriptor]] = []
    blobs: dict[str, int] = {}
    for raw in dict.fromkeys(reference.normalize(n) for n in names):
        # Each name once ("a" and "docker.io/library/a:latest" are one): an index that listed an
        # image twice was "more than one image" to skopeo's oci-archive: without a name.
        image = session.images.get(raw)
        target = _export_target(session, image, platform, matcher, cache, present) if matcher else image.target
        missing: list[Descriptor] = []
        handler = skip_missing(children(session.content, cache), present.__contains__, missing)
        if matcher is not None:
            handler = filter_platforms(handler, matcher)
        walk(visitor(handler, lambda d: blobs.setdefault(d.digest, d.size)), [target])
        if missing:
            raise DataError("blob", missing[0].digest, f"missing: cannot export {image.name}")
        exported.append((image.name, target))
    docker_manifest = _docker_manifest(session, exported, cache, present)
    if where is None:  # "-"
        _write_layout_tar(session, sys.stdout.buffer, exported, blobs, docker_manifest, progress)
        sys.stdout.buffer.flush()
        return
    _write_to(dest, where, lambda out: _write_layout_tar(session, out, exported, blobs, docker_manifest, progress))


def _destination(dest: str) -> tuple[str, bool]:
    """Where to write for ``dest``, and whether aside-then-rename: a regular file (or a new one),
    found through symlinks (tar and ctr write through them; the link stays a link); anything else
    (a fifo, a device, /dev/stdout) is written into as named. Refused when empty or a directory,
    before any work."""
    if not dest:
        raise InvalidArgument("output file", "", "must not be empty (- writes to stdout)")
    try:
        st = os.stat(dest)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise DataError("file", dest, e.strerror or str(e)) from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise DataError("file", dest, "is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        return dest, False
    return os.path.realpath(dest), True


# Errors of writing the output (a full disk or device): errno only, no file name attached.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EPIPE)


def _write_to(dest: str, where: tuple[str, bool], write) -> None:
    """A regular file appears only when complete: written aside, then renamed over it. Anything
    else is written into: renaming over it would replace the node itself."""
    path, aside = where
    tmp = f"{path}.dist-tmp-{os.getpid()}" if aside else None
    try:
        with open(tmp or path, "wb") as out:
            write(out)
        if tmp:
            os.replace(tmp, path)
    except BaseException as e:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and (e.filename in (tmp, path) or (e.filename is None and e.errno in _WRITE_ERRNOS)):
            raise DataError("file", dest, e.strerror or str(e)) from None  # the user's path, not our temporary
        raise


def _export_target(session, image: Image, platform: str | None, matcher, cache, present) -> Descriptor:
    if image.target.digest not in present:
        raise DataError("blob", image.target.digest, f"missing: cannot export {image.name}")
    found = platform_manifests(session.content, image.target, matcher, cache)
    if not found:
        raise platforms.no_manifest(image.name, platform)
    return found[0]


def _docker_manifest(session, exported, cache, present) -> list[dict]:
    """``manifest.json`` entries (docker load compatibility) for single-platform targets."""
    out = []
    host = platforms.matcher(platforms.host())
    for name, target in exported:
        try:
            manifests = platform_manifests(session.content, target, host, cache)
            if not manifests or manifests[0].digest not in present:
                continue
            kids = oci.manifest_children(read_document(session.content, manifests[0], cache), manifests[0].digest)
        except DistError:
            continue
        out.append({"Config": _blob_path(kids[0].digest),
                    "RepoTags": [name],
                    "Layers": [_blob_path(k.digest) for k in kids[1:]]})
    return out


def _blob_path(digest: str) -> str:
    """Where the layout keeps a blob: ``blobs/<algorithm>/<hex>`` (a sha512 one under sha512)."""
    algorithm, _, hexpart = digest.partition(":")
    return f"blobs/{algorithm}/{hexpart}"


def _write_layout_tar(session, out, exported, blobs: dict[str, int], docker_manifest, progress) -> None:
    index = {"schemaVersion": 2, "mediaType": oci.MEDIA_OCI_INDEX, "manifests": []}
    for name, target in exported:
        desc = target.to_json()
        desc["annotations"] = {**desc.get("annotations", {}), oci.ANNOTATION_REF_NAME: name,
                               oci.ANNOTATION_CONTAINERD_NAME: name}
        index["manifests"].append(desc)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, bufsize=TAR_BUFSIZE) as tar:
        _add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": oci.OCI_LAYOUT_VERSION}).encode())
        _add_dir(tar, "blobs")
        for algorithm in sorted({"sha256"} | {digest.partition(":")[0] for digest in blobs}):
            _add_dir(tar, f"blobs/{algorithm}")
        for digest, size in blobs.items():
            info = _file_info(_blob_path(digest), size)
            label = item_label(digest)
            progress.start(label, size)
            with session.content.open_blob(digest) as f:
                # Read once anyway, so checked on the way: a blob that rotted on disk must not leave
                # in an archive that claims its digest (the archive file is then not made).
                hashing = compression.HashingReader(f, digest.partition(":")[0])
                try:
                    tar.addfile(info, hashing)
                except OSError as e:
                    if e.errno is None:  # tarfile's "unexpected end of data": the file is short
                        raise DataError("blob", digest, f"shorter than its recorded {size} bytes "
                                        "(see dist content verify)") from None
                    raise
                if hashing.digest != digest:
                    raise DataError("blob", digest, f"its stored bytes hash to {hashing.digest} "
                                    "(see dist content verify)")
            progress.done(label)
        _add_bytes(tar, "index.json", json.dumps(index).encode())
        if docker_manifest:
            _add_bytes(tar, "manifest.json", json.dumps(docker_manifest).encode())


def _file_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = EXPORT_MTIME
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_file_info(name, len(data)), io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    info.mtime = EXPORT_MTIME
    tar.addfile(info)
