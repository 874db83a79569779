"""Building layers and OCI image archives in Python, member by member (hostile ones included)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MTIME = 1_700_000_000
IS_ROOT = os.geteuid() == 0


def _info(name: str, kind: bytes, mode: int, **kw) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = kw.pop("mtime", MTIME)
    info.uid = kw.pop("uid", 0)
    info.gid = kw.pop("gid", 0)
    xattrs = kw.pop("xattrs", None)
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    for key, value in kw.items():
        setattr(info, key, value)
    return info


def file(name: str, data: bytes = b"", mode: int = 0o644, **kw) -> tuple[tarfile.TarInfo, bytes]:
    info = _info(name, tarfile.REGTYPE, mode, **kw)
    info.size = len(data)
    return info, data


def directory(name: str, mode: int = 0o755, **kw) -> tuple[tarfile.TarInfo, None]:
    return _info(name, tarfile.DIRTYPE, mode, **kw), None


def symlink(name: str, target: str, **kw) -> tuple[tarfile.TarInfo, None]:
    return _info(name, tarfile.SYMTYPE, 0o777, linkname=target, **kw), None


def hardlink(name: str, target: str, **kw) -> tuple[tarfile.TarInfo, None]:
    return _info(name, tarfile.LNKTYPE, 0o644, linkname=target, **kw), None


def fifo(name: str, mode: int = 0o600, **kw) -> tuple[tarfile.TarInfo, None]:
    return _info(name, tarfile.FIFOTYPE, mode, **kw), None


def chardev(name: str, major: int, minor: int, mode: int = 0o666, **kw) -> tuple[tarfile.TarInfo, None]:
    return _info(name, tarfile.CHRTYPE, mode, devmajor=major, devminor=minor, **kw), None


def whiteout(path: str) -> tuple[tarfile.TarInfo, bytes]:
    head, _, base = path.rpartition("/")
    return file(f"{head}/.wh.{base}" if head else f".wh.{base}")


def opaque(directory_path: str) -> tuple[tarfile.TarInfo, bytes]:
    return file(f"{directory_path}/.wh..wh..opq")


def layer(members: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """An uncompressed PAX tar of the members, in the order given."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


def compress(tar: bytes, how: str) -> tuple[bytes, str]:
    """(blob, media type) for ``how`` in gzip, zstd, none."""
    if how == "gzip":
        return gzip.compress(tar, compresslevel=1, mtime=0), "application/vnd.oci.image.layer.v1.tar+gzip"
    if how == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(tar), "application/vnd.oci.image.layer.v1.tar+zstd"
    return tar, "application/vnd.oci.image.layer.v1.tar"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else sha256(f"{out[-1]} {d}".encode()))
    return out


@dataclass
class Image:
    archive: Path
    name: str
    diff_ids: list[str]
    layer_digests: list[str]
    chain: list[str]


def oci_archive(path: Path, layers: list[bytes], *, name: str = "docker.io/library/test:1", how: str = "gzip",
                diff_ids: list[str] | None = None, blobs: list[tuple[bytes, str]] | None = None,
                platform: dict | None = None) -> Image:
    """An OCI image-layout tar of one image (linux/amd64 unless ``platform`` gives the config's
    os, architecture and variant) with these (uncompressed) layers.

    ``diff_ids`` overrides the config's list (to lie); ``blobs`` gives ready layer blobs (and
    their media types) instead of compressing ``layers``.
    """
    blobs = blobs if blobs is not None else [compress(t, how) for t in layers]
    real_diff_ids = [sha256(t) for t in layers]
    files, manifest = image_blobs(blobs, diff_ids if diff_ids is not None else real_diff_ids, platform)
    write_layout(path, files, [{**manifest, "annotations": {"io.containerd.image.name": name,
                                                            "org.opencontainers.image.ref.name": name}}])
    return Image(path, name, real_diff_ids, [sha256(b) for b, _ in blobs], chain_ids(real_diff_ids))


def image_blobs(blobs: list[tuple[bytes, str]], diff_ids: list[str],
                platform: dict | None = None) -> tuple[dict[str, bytes], dict]:
    """The config, manifest and layer blobs of one image (by digest), and the manifest's descriptor."""
    config = {**(platform or {"architecture": "amd64", "os": "linux"}), "config": {"Cmd": ["/bin/sh"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    config_bytes = json.dumps(config).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config_bytes),
                           "size": len(config_bytes)},
                "layers": [{"mediaType": mt, "digest": sha256(b), "size": len(b)} for b, mt in blobs]}
    manifest_bytes = json.dumps(manifest).encode()
    files = {sha256(data): data for data in [config_bytes, manifest_bytes, *(b for b, _ in blobs)]}
    return files, {"mediaType": manifest["mediaType"], "digest": sha256(manifest_bytes), "size": len(manifest_bytes)}


def index_blob(manifests: list[dict],
               media_type: str = "application/vnd.oci.image.index.v1+json") -> tuple[bytes, dict]:
    """An index of these descriptors, and its own descriptor."""
    data = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests}).encode()
    return data, {"mediaType": media_type, "digest": sha256(data), "size": len(data)}


def write_layout(path: Path, blobs: dict[str, bytes], named: list[dict]) -> None:
    """An OCI image-layout tar: ``blobs`` by digest, ``named`` as index.json's descriptors."""
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": named}
    files = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', "index.json": json.dumps(index).encode()}
    for digest, data in blobs.items():
        algorithm, _, hexpart = digest.partition(":")
        files[f"blobs/{algorithm}/{hexpart}"] = data
    with tarfile.open(path, "w") as tar:
        for member_name, data in files.items():
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# ------------------------------------------------------------------------------ trees


def tree(root: Path, hashes: bool = True) -> dict[str, tuple]:
    """Everything observable under ``root`` (the root itself excluded): per relative path its
    type, mode, owner, size, link target, content hash, device, user xattrs and inode group."""
    out: dict[str, tuple] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()  # a fixed walk order: hard-link groups are named by their first path
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            kind = stat.S_IFMT(st.st_mode)
            extra: object = None
            if stat.S_ISREG(st.st_mode):
                if hashes:
                    with open(full, "rb") as f:
                        extra = hashlib.sha256(f.read()).hexdigest()
                group = inodes.setdefault(st.st_ino, rel) if st.st_nlink > 1 else rel
            else:
                group = rel
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(full)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                extra = (os.major(st.st_rdev), os.minor(st.st_rdev))
            try:
                xattrs = tuple(sorted((n, os.getxattr(full, n, follow_symlinks=False))
                                      for n in os.listxattr(full, follow_symlinks=False) if n.startswith("user.")))
            except OSError:
                xattrs = ()
            size = st.st_size if stat.S_ISREG(st.st_mode) else None
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size, extra, xattrs, group)
    return out


def overlay_supported() -> str | None:
    """Why overlay tests cannot run here, or None."""
    if not IS_ROOT:
        return "overlayfs snapshots need root (mount, whiteout devices, trusted.* xattrs)"
    if shutil.which("mount") is None:
        return "no mount(8)"
    return None


@contextmanager
def mounted(mounts: list, target: Path) -> Iterator[Path]:
    """Mounts a snapshot's mounts (``Mount`` records) read-only at ``target``; unmounts after."""
    target.mkdir(parents=True, exist_ok=True)
    m = mounts[0]
    options = [o for o in m.options if o not in ("rw", "ro")] + ["ro"]
    subprocess.run(["mount", "-t", m.type, m.source, str(target), "-o", ",".join(options)], check=True,
                   capture_output=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True, capture_output=True)


@contextmanager
def snapshot_tree(snapshotter, key: str, where: Path) -> Iterator[Path]:
    """The tree of committed snapshot ``key``: its directory (native, or a one-layer overlay
    chain) or a read-only overlay mount of its chain."""
    mounts = snapshotter.mounts(key)
    if mounts[0].type == "bind":
        yield Path(mounts[0].source)
        return
    with mounted(mounts, where) as path:
        yield path
