"""Test helpers: the real CLI in a subprocess, store fingerprints, fixture images."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
APPLETS = ("sh", "echo", "sleep", "cat", "ls", "true", "false", "id", "env", "ps", "wc")


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self):
        return json.loads(self.stdout)

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


def run_dist(*args: str, root: Path | str, state: Path | str | None = None, input: bytes | None = None,
             env: dict | None = None, timeout: float = 120, check: bool = False) -> Result:
    """Runs ``python -m dist_tool`` against a private root, as a user would."""
    state = state or f"{root}-state"
    full_env = {**os.environ, "DIST_NAMESPACE": "default", **(env or {})}
    full_env.pop("DIST_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-m", "dist_tool", "--root", str(root), "--state", str(state), *args],
                          input=input, capture_output=True, timeout=timeout, env=full_env)
    result = Result(proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace"))
    if check and result.code != 0:
        raise AssertionError(f"dist {' '.join(args)} exited {result.code}: {result.stderr}")
    return result


class Dist:
    """``dist(...)`` bound to one test's root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root.parent / f"{root.name}-state"

    def __call__(self, *args: str, **kwargs) -> Result:
        return run_dist(*args, root=self.root, state=self.state, **kwargs)

    def ok(self, *args: str, **kwargs) -> Result:
        result = self(*args, **kwargs)
        assert result.code == 0, f"dist {' '.join(args)} exited {result.code}: {result.stderr}"
        return result


def store_fingerprint(root: Path) -> dict:
    """Everything a user could observe in a store: files (with hashes) and metadata rows."""
    files = {}
    if root.exists():
        for path in sorted(root.rglob("*")):
            rel = str(path.relative_to(root))
            # metadata.reserve: room kept for a full disk, given up and made again as space goes and comes
            if rel.startswith(("metadata.db", "metadata.reserve")) or rel.endswith(".lock") or "/ingest" in f"/{rel}":
                continue
            if path.is_file():
                files[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                files[rel] = "dir"
    rows = {}
    db = root / "metadata.db"
    if db.exists():
        import sqlite3

        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name"):
                rows[table] = sorted(map(repr, conn.execute(f"SELECT * FROM {table}")))
        finally:
            conn.close()
    ingests = sorted(p.name for p in (root / "content" / "ingest").glob("*")) if root.exists() else []
    return {"files": files, "rows": rows, "ingests": ingests}


def sans_allocations(fingerprint: dict) -> dict:
    """What a failed unpack may change and no user can observe: the snapshot ID counter moves on,
    and the (empty) trash directory exists once something was removed."""
    rows = {k: v for k, v in fingerprint["rows"].items() if k != "snapshot_ids"}
    files = {k: v for k, v in fingerprint["files"].items() if not k.endswith("/trash")}
    return {**fingerprint, "rows": rows, "files": files}


def make_busybox_rootfs(path: Path) -> Path:
    (path / "bin").mkdir(parents=True)
    (path / "etc").mkdir()
    (path / "tmp").mkdir()
    shutil.copy2(BUSYBOX, path / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", path / "bin" / applet)
    (path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
    (path / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return path


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it)")


@dataclass
class UmociImage:
    """An image built by umoci and converted by skopeo: the interop fixture of issue 2."""

    layout: Path
    oci_archive: Path
    docker_archive: Path
    name: str
    manifest: dict
    manifest_digest: str
    config_digest: str
    layer_digests: list[str]
    diff_ids: list[str]
    packed_size: int


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def build_umoci_image(base: Path, busybox_rootfs: Path) -> UmociImage:
    """A two-layer image built with umoci, archived by skopeo as oci-archive and docker-archive."""
    need("umoci")
    need("skopeo")
    layout = base / "layout"
    name = "docker.io/library/umoci-test:1"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:t")
    layer1 = base / "layer1.tar"
    run("tar", "-C", str(busybox_rootfs), "--numeric-owner", "-cf", str(layer1), ".")
    run("umoci", "raw", "add-layer", "--image", f"{layout}:t", str(layer1))
    extra = base / "extra"
    (extra / "etc").mkdir(parents=True)
    (extra / "etc" / "motd").write_text("hello from layer two\n")
    layer2 = base / "layer2.tar"
    run("tar", "-C", str(extra), "--numeric-owner", "-cf", str(layer2), ".")
    run("umoci", "raw", "add-layer", "--image", f"{layout}:t", str(layer2))
    run("umoci", "config", "--image", f"{layout}:t", "--config.cmd", "/bin/sh", "--os", "linux")
    oci_archive = base / "image-oci.tar"
    docker_archive = base / "image-docker.tar"
    run("skopeo", "copy", "-q", f"oci:{layout}:t", f"oci-archive:{oci_archive}:{name}")
    run("skopeo", "copy", "-q", f"oci:{layout}:t", f"docker-archive:{docker_archive}:{name}")
    index = json.loads((layout / "index.json").read_text())
    mdesc = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "t")
    blob = lambda d: layout / "blobs" / "sha256" / d.split(":")[1]  # noqa: E731
    manifest = json.loads(blob(mdesc["digest"]).read_text())
    config = json.loads(blob(manifest["config"]["digest"]).read_text())
    packed = mdesc["size"] + manifest["config"]["size"] + sum(x["size"] for x in manifest["layers"])
    return UmociImage(layout, oci_archive, docker_archive, name, manifest, mdesc["digest"],
                      manifest["config"]["digest"], [x["digest"] for x in manifest["layers"]],
                      config["rootfs"]["diff_ids"], packed)


def fill(disk: Path, leave: int = 0) -> Path:
    """Writes a file that takes every free block of ``disk`` but ``leave`` bytes' worth."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for chunk in (1 << 20, 64 << 10, 4 << 10):
            try:
                while free_bytes(disk) - chunk >= leave:
                    os.write(fd, bytes(chunk))
            except OSError:
                pass
    finally:
        os.close(fd)
    assert free_bytes(disk) <= leave + (4 << 10)
    return filler


def free_bytes(disk: Path) -> int:
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize


def dead_pid() -> int:
    """A pid whose process has just exited and been reaped: what a killed writer's records name."""
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount's spelling: "24m") at the new directory ``path`` for the block: a
    small disk to fill (no blocks reserved for root, unlike ext4). Unmounted lazily at the end."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)
