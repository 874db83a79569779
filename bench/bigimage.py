"""Writes a ~1 GiB OCI image-layout archive of incompressible data, for the import-1g workload.

By hand rather than with umoci: umoci would need the random files on disk first and would gzip
them at its default level; this streams every layer once (random bytes -> tar -> gzip level 1 ->
blob, hashing both the tar for the diff_id and the blob for the digest). The bytes come from a
seeded PRNG and every header field is fixed, so the same Python writes the same digests.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import shutil
import tarfile
import zlib
from pathlib import Path

CHUNK = 1 << 20
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


class _RandomFile:
    """read(n) of `size` pseudo-random bytes: a file object for TarFile.addfile."""

    def __init__(self, rng: random.Random, size: int) -> None:
        self.rng, self.left = rng, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return self.rng.randbytes(n)


class _GzipBlob:
    """A write-only stream: hashes what it is given (the diff_id), gzips it into a file
    and hashes what it writes (the blob digest)."""

    def __init__(self, path: Path) -> None:
        self.out = open(path, "wb")
        self.comp = zlib.compressobj(1, zlib.DEFLATED, 31)   # 31: gzip header, mtime 0
        self.diff, self.blob, self.size = hashlib.sha256(), hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.diff.update(data)
        self._out(self.comp.compress(data))
        return len(data)

    def _out(self, data: bytes) -> None:
        self.blob.update(data)
        self.size += len(data)
        self.out.write(data)

    def close(self) -> None:
        self._out(self.comp.flush())
        self.out.close()


def _put(blobs: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _layer(blobs: Path, index: int, size: int, rng: random.Random) -> tuple[dict, str]:
    tmp = blobs / f".layer{index}"
    sink = _GzipBlob(tmp)
    with tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT,
                      copybufsize=CHUNK) as tar:
        d = tarfile.TarInfo("data")
        d.type, d.mode, d.mtime = tarfile.DIRTYPE, 0o755, 0
        tar.addfile(d)
        f = tarfile.TarInfo(f"data/random-{index}.bin")
        f.size, f.mode, f.mtime = size, 0o644, 0
        tar.addfile(f, _RandomFile(rng, size))
    sink.close()
    digest = sink.blob.hexdigest()
    tmp.rename(blobs / digest)
    desc = {"mediaType": LAYER_MEDIA_TYPE, "digest": f"sha256:{digest}", "size": sink.size}
    return desc, f"sha256:{sink.diff.hexdigest()}"


def host_arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(m, m)


def write_archive(path: Path, name: str, layers: int = 4, layer_size: int = 256 << 20,
                  seed: int = 1) -> dict:
    """Writes the archive to `path` (atomically: a partial file never has that name) and returns
    {"name", "manifest", "size", "layers", "blobs": [hex digest...]}."""
    stage = path.with_name(f".{path.name}.stage")
    shutil.rmtree(stage, ignore_errors=True)
    blobs = stage / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    rng = random.Random(seed)
    descs, diff_ids = [], []
    for i in range(layers):
        desc, diff_id = _layer(blobs, i, layer_size, rng)
        descs.append(desc)
        diff_ids.append(diff_id)
    config = {"created": "2024-01-01T00:00:00Z", "architecture": host_arch(), "os": "linux",
              "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "history": [{"created": "2024-01-01T00:00:00Z",
                           "created_by": f"bench/bigimage.py: layer {i}"} for i in range(layers)]}
    cfg = _put(blobs, json.dumps(config, sort_keys=True).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
                "layers": descs}
    man = _put(blobs, json.dumps(manifest, sort_keys=True).encode())
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": manifest["mediaType"], **man,
         "annotations": {"org.opencontainers.image.ref.name": name}}]}
    (stage / "index.json").write_text(json.dumps(index))
    (stage / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    blob_names = sorted(p.name for p in blobs.iterdir())

    partial = path.with_name(f".{path.name}.partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        def norm(ti: tarfile.TarInfo) -> tarfile.TarInfo:
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            ti.mtime = 0
            return ti
        for member in ("oci-layout", "index.json", "blobs"):
            tar.add(stage / member, arcname=member, filter=norm)
    os.replace(partial, path)
    shutil.rmtree(stage)
    return {"name": name, "manifest": man["digest"], "size": path.stat().st_size,
            "layers": len(descs), "blobs": blob_names}
