"""dist unpacks an image built by umoci into the same tree as `umoci unpack` does.

The image has two layers made by `umoci repack` from real trees: symlinks (relative, absolute,
dangling), hard links, a fifo, a device node and ownership (as root), set-id and sticky modes,
user xattrs; the second layer deletes a file and a directory and replaces a directory's contents
(umoci writes whiteouts). Paths, types, modes, owners, sizes, link targets, content hashes,
device numbers, user xattrs and hard-link groups are compared, for both snapshotters.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import Dist, need
from layerkit import IS_ROOT, overlay_supported, snapshot_tree, tree

from dist_tool.session import Session

pytestmark = pytest.mark.interop
NO_OVERLAY = overlay_supported()
NAME = "docker.io/library/umoci-unpack:1"


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def first_tree(root: Path) -> None:
    (root / "bin").mkdir(mode=0o755)
    (root / "bin" / "tool").write_bytes(os.urandom(300_000))
    (root / "bin" / "tool").chmod(0o755)
    (root / "bin" / "suid").write_bytes(b"#!/bin/sh\n")
    (root / "bin" / "suid").chmod(0o4755)
    os.symlink("tool", root / "bin" / "alias")
    os.symlink("/bin/busybox", root / "bin" / "absolute")
    os.symlink("../nowhere", root / "bin" / "dangling")
    os.link(root / "bin" / "tool", root / "bin" / "hardlink")
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "shared").mkdir()
    (root / "shared").chmod(0o2775)
    (root / "etc").mkdir()
    (root / "etc" / "secret").write_bytes(b"s")
    (root / "etc" / "secret").chmod(0o600)
    (root / "etc" / "empty").write_bytes(b"")
    os.setxattr(root / "etc" / "secret", "user.comment", b"kept")
    os.setxattr(root / "etc", "user.dir", b"also")
    os.symlink("etc", root / "etc-link")
    os.mkfifo(root / "pipe", 0o640)
    (root / "gone").mkdir()
    (root / "gone" / "a").write_bytes(b"a")
    (root / "gone" / "b").mkdir()
    (root / "replaced").mkdir()
    (root / "replaced" / "old").write_bytes(b"old")
    (root / "delete-me").write_bytes(b"x")
    if IS_ROOT:
        os.mknod(root / "null", 0o666 | 0o020000, os.makedev(1, 3))
        os.chown(root / "etc" / "secret", 1000, 1000)
        os.chown(root / "shared", 65534, 65534)
        os.chown(root / "bin" / "alias", 1, 1, follow_symlinks=False)


def second_change(root: Path) -> None:
    os.unlink(root / "delete-me")
    for p in sorted((root / "gone").rglob("*"), reverse=True):
        p.rmdir() if p.is_dir() else p.unlink()
    (root / "gone").rmdir()
    (root / "replaced" / "old").unlink()
    (root / "replaced" / "new").write_bytes(b"new")
    (root / "bin" / "tool").write_bytes(b"changed in layer two")  # the hard link follows: same inode
    (root / "added").write_bytes(b"layer two")


@pytest.fixture(scope="module")
def umoci_built(tmp_path_factory) -> tuple[Path, Path]:
    """(the image as an OCI layout tar, `umoci unpack`'s rootfs of it)."""
    need("umoci")
    base = tmp_path_factory.mktemp("umoci-unpack")
    layout = base / "layout"
    run("umoci", "init", "--layout", str(layout))
    run("umoci", "new", "--image", f"{layout}:t")
    for step, change in enumerate((first_tree, second_change)):
        bundle = base / f"bundle{step}"
        run("umoci", "unpack", "--image", f"{layout}:t", str(bundle))
        change(bundle / "rootfs")
        run("umoci", "repack", "--image", f"{layout}:t", str(bundle))
    run("umoci", "config", "--image", f"{layout}:t", "--os", "linux", "--architecture", "amd64")
    reference = base / "reference"
    run("umoci", "unpack", "--image", f"{layout}:t", str(reference))
    archive = base / "image.tar"
    run("tar", "-C", str(layout), "-cf", str(archive), ".")
    return archive, reference / "rootfs"


@pytest.mark.parametrize("snapshotter", [
    pytest.param("overlayfs", marks=pytest.mark.skipif(bool(NO_OVERLAY), reason=str(NO_OVERLAY))), "native"])
def test_same_tree_as_umoci_unpack(tmp_path: Path, umoci_built, snapshotter: str) -> None:
    archive, expected_root = umoci_built
    dist = Dist(tmp_path / "root")
    dist.ok("--snapshotter", snapshotter, "images", "import", "--name", NAME, str(archive))
    s = Session(root=str(tmp_path / "root"), state=str(tmp_path / "state"), snapshotter_name=snapshotter)
    top = next(i for i in s.snapshotter.list() if not any(j.parent == i.key for j in s.snapshotter.list()))
    with snapshot_tree(s.snapshotter, top.key, tmp_path / "mnt") as root:
        got = tree(root)
    s.close()
    expected = tree(expected_root)
    assert "gone" not in expected and "replaced/new" in expected  # the fixture has its whiteouts
    assert sorted(got) == sorted(expected)
    assert {k: v for k, v in got.items() if v != expected[k]} == {}
