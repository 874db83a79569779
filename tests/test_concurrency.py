"""Many dist processes on one root at once, and kill -9 at any instant (SPEC: Concurrency and durability)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import store_fingerprint

pytestmark = pytest.mark.slow


def _spawn(dist, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dist_tool", "--root", str(dist.root), "--state",
                             str(dist.state), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_twenty_processes_import_tag_label_and_rmi_on_one_root(dist, umoci_image, busybox_rootfs):
    dist.ok("images", "import", "--no-unpack", str(umoci_image.oci_archive))
    jobs = []
    for i in range(5):
        jobs.append(("import", _spawn(dist, "images", "import", "--no-unpack", "--progress", "none",
                                      "--name", f"imp{i}", str(umoci_image.oci_archive))))
        jobs.append(("tag", _spawn(dist, "images", "tag", umoci_image.name, f"tag{i}")))
        jobs.append(("label", _spawn(dist, "images", "label", umoci_image.name, f"k{i}=v{i}")))
        jobs.append(("rootfs", _spawn(dist, "images", "import", "--no-unpack", "--rootfs", str(busybox_rootfs),
                                      "--name", f"root{i}")))
    failures = []
    for kind, proc in jobs:
        out, err = proc.communicate(timeout=180)
        if proc.returncode != 0:
            failures.append((kind, proc.returncode, err.decode()))
        assert b"database is locked" not in err
    assert failures == []
    listed = {i["name"]: i for i in dist.ok("images", "--json").json}
    for i in range(5):
        assert f"docker.io/library/imp{i}:latest" in listed
        assert f"docker.io/library/tag{i}:latest" in listed
        assert f"docker.io/library/root{i}:latest" in listed
    # no label update was lost: each process read-modified-wrote inside one transaction
    assert listed[umoci_image.name]["labels"] == {f"k{i}": f"v{i}" for i in range(5)}
    assert all(i["complete"] for i in listed.values())
    assert dist.ok("content", "active", "--json").json == []
    assert dist("content", "verify").code == 0

    # now remove them all concurrently, with gc running alongside
    names = list(listed)
    removers = [_spawn(dist, "rmi", *names[i::10]) for i in range(10)] + [_spawn(dist, "gc") for _ in range(3)]
    for proc in removers:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err.decode()
    assert dist.ok("images", "-q").lines == []
    assert dist.ok("content", "ls", "-q").lines == []
    assert dist.ok("leases", "-q").lines == []


def test_concurrent_namespace_labels_are_all_kept(dist):
    dist.ok("namespaces", "create", "labelled")
    procs = [_spawn(dist, "namespaces", "label", "labelled", f"k{i}=v") for i in range(8)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    [ns] = [n for n in dist.ok("namespaces", "ls", "--json").json if n["name"] == "labelled"]
    assert ns["labels"] == {f"k{i}": "v" for i in range(8)}


def test_a_tag_racing_an_rmi_of_its_source_never_names_collected_content(dist, busybox_rootfs, tmp_path):
    """rmi deletes the name, then collects; a tag that read the source before the delete used to
    write its name after the collection: a name for blobs that were gone, exit 0. The tag now
    reads in its write transaction: it fails (3), or its name keeps the content."""
    rootfs = tmp_path / "rootfs"
    import shutil

    shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
    for i in range(6):
        (rootfs / "unique").write_text(f"{i}")
        dist.ok("images", "import", "--no-unpack", "--rootfs", str(rootfs), "--name", "src")
        rmi, tag = _spawn(dist, "rmi", "src"), _spawn(dist, "images", "tag", "--force", "src", "dst")
        for proc in (rmi, tag):
            proc.communicate(timeout=120)
        assert rmi.returncode == 0 and tag.returncode in (0, 3)
        if tag.returncode == 0:
            [check] = dist.ok("images", "check", "--json", "dst").json
            assert check["complete"], check
        dist.ok("rmi", "-f", "dst")


def test_gc_never_sweeps_what_a_running_import_needs(dist, umoci_image):
    """gc runs in a loop while imports run: every import still ends complete."""
    stop = time.monotonic() + 60
    collectors = [_spawn(dist, "gc") for _ in range(2)]
    importers = [_spawn(dist, "images", "import", "--no-unpack", "--progress", "none", "--name", f"i{n}",
                        str(umoci_image.oci_archive)) for n in range(6)]
    for proc in importers:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    while any(p.poll() is None for p in collectors) and time.monotonic() < stop:
        time.sleep(0.05)
    for p in collectors:
        p.communicate(timeout=60)
    dist.ok("gc")
    checks = dist.ok("images", "check", "--json").json
    assert len(checks) == 6 and all(c["complete"] for c in checks)


def _big_archive(tmp_path):
    """An OCI archive with one 64 MiB incompressible layer, so a kill lands mid-transfer."""
    import hashlib
    import io
    import json
    import tarfile

    layer = tmp_path / "layer.bin"
    with open(layer, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(1 << 20))
    h = hashlib.sha256()
    with open(layer, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    layer_digest = "sha256:" + h.hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": config_digest, "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                       "digest": layer_digest, "size": layer.stat().st_size}]}).encode()
    manifest_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    index = json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "docker.io/library/big:1"}}]})
    archive = tmp_path / "big.tar"
    with tarfile.open(archive, "w") as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        add(f"blobs/sha256/{config_digest[7:]}", config)
        add(f"blobs/sha256/{manifest_digest[7:]}", manifest)
        tar.add(layer, f"blobs/sha256/{layer_digest[7:]}")
        add("index.json", index.encode())
    return archive


def test_kill_9_during_import_leaves_a_consistent_store_and_the_import_then_completes(dist, tmp_path):
    archive = _big_archive(tmp_path)
    dist.ok("images")
    # Feed the archive through a pipe slowly enough that the kill lands mid-layer.
    importer = subprocess.Popen([sys.executable, "-m", "dist_tool", "--root", str(dist.root), "--state",
                                 str(dist.state), "images", "import", "--no-unpack", "--progress", "none", "-"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sent = 0
    with open(archive, "rb") as f:
        while sent < 24 << 20:
            chunk = f.read(1 << 20)
            importer.stdin.write(chunk)
            sent += len(chunk)
    importer.stdin.flush()
    deadline = time.monotonic() + 30
    ingest_dir = dist.root / "content" / "ingest"
    while time.monotonic() < deadline:
        sizes = [p.stat().st_size for p in ingest_dir.glob("*/data")]
        if sizes and max(sizes) > 8 << 20:
            break
        time.sleep(0.05)
    os.kill(importer.pid, signal.SIGKILL)
    importer.wait()
    importer.stdin.close()
    assert dist.ok("images", "-q").lines == []
    verify = dist("content", "verify")
    assert verify.code == 0, verify.stderr
    active = dist.ok("content", "active", "--json").json
    assert len(active) == 1 and active[0]["active"] is False and active[0]["offset"] > 0
    # the dead import's lease is expired: gc may run now without harming the rerun
    result = dist.ok("images", "import", "--no-unpack", "--progress", "none", str(archive))
    assert result.lines == ["docker.io/library/big:1"]
    assert dist.ok("images", "check", "--json").json[0]["complete"] is True
    assert dist("content", "verify").code == 0
    dist.ok("gc")
    assert dist.ok("content", "active", "--json").json == []
    assert dist.ok("leases", "-q").lines == []
    before = store_fingerprint(dist.root)
    dist.ok("gc")
    assert store_fingerprint(dist.root) == before
