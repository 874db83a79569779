"""Unpacking without root (README: "Without root, device nodes are skipped"): the real CLI run as
``nobody`` on images whose modes shut out their own owner, as Fedora's do (``/etc/shadow`` 0000,
``/usr/bin`` 0555). The native snapshotter (non-root's default) copies, applies and measures such
trees by opening entries up for the moment (``dist_tool.unpriv``); the unpacked tree must keep the
image's exact modes, and removal must leave nothing."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from layerkit import directory, file, hardlink, layer, oci_archive, opaque, whiteout

NOBODY = 65534
REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="runs the CLI as nobody: needs root to switch user"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="no setpriv(1)"),
]

# (id, layers, the top snapshot's modes by path: the image's)
CASES = [
    pytest.param(
        [[directory("etc/"), file("etc/shadow", b"root:*::\n", mode=0o000), file("etc/ro", b"r", mode=0o444)],
         [file("etc/new", b"n")]],
        {"etc": 0o755, "etc/shadow": 0o000, "etc/ro": 0o444, "etc/new": 0o644},
        id="0000-file-copied-to-the-next-layer"),
    pytest.param(
        [[directory("secret/"), file("secret/f", b"s"), directory("sub/", mode=0o755),
          directory("secret/", mode=0o000)]],
        {"secret": 0o000, "secret/f": 0o644, "sub": 0o755},
        id="0000-dir-with-a-file-committed"),
    pytest.param(
        [[directory("root/", mode=0o000), directory("root/inner/", mode=0o000), file("root/inner/f", b"x", mode=0)],
         [file("root/inner/g", b"g", mode=0o400), file("root/added", b"a", mode=0o600), file("other", b"o")]],
        {"root": 0o000, "root/inner": 0o000, "root/inner/f": 0o000, "root/inner/g": 0o400, "root/added": 0o600,
         "other": 0o644},
        id="0000-dirs-written-into-by-a-later-layer"),
    pytest.param(
        [[directory("usr/"), directory("usr/bin/", mode=0o555), file("usr/bin/old", b"o", mode=0o755),
          directory("usr/bin/sub/", mode=0o555), file("usr/bin/sub/x", b"x")],
         [file("usr/bin/new", b"n", mode=0o755), whiteout("usr/bin/old"), whiteout("usr/bin/sub"),
          directory("usr/lib/", mode=0o555)],
         [file("usr/lib/late", b"l")]],
        {"usr": 0o755, "usr/bin": 0o555, "usr/bin/new": 0o755, "usr/lib": 0o555, "usr/lib/late": 0o644},
        id="0555-dir-a-later-layer-writes-and-deletes-in"),
    pytest.param(
        [[directory("etc/", mode=0o555, xattrs={"user.a": "1"}),
          file("etc/shadow", b"", mode=0, xattrs={"user.b": "2"})],
         [file("etc/new", b"n", mode=0o444, xattrs={"user.c": "3"}),
          directory("etc/", mode=0o555, xattrs={"user.d": "4"})]],  # named again: its xattrs replace etc's
        {"etc": (0o555, {"user.d": b"4"}), "etc/shadow": (0o000, {"user.b": b"2"}),
         "etc/new": (0o444, {"user.c": b"3"})},
        id="user-xattrs-on-closed-entries"),
    # Whiteouts and replacements inside closed directories: a whiteout in a 0000 directory failed
    # with "Permission denied" (looked at past Root, so nothing opened the directory up).
    pytest.param(
        [[directory("a/", mode=0o000), directory("a/b/", mode=0o000), file("a/b/f", b"f", mode=0)],
         [whiteout("a"), file("z", b"z")]],
        {"z": 0o644}, id="whiteout-of-a-0000-tree"),
    pytest.param(
        [[directory("a/", mode=0o000), directory("a/b/", mode=0o000), file("a/b/f", b"f", mode=0)],
         [file("a", b"x")]],
        {"a": 0o644}, id="file-replaces-a-0000-tree"),
    pytest.param(
        [[directory("a/", mode=0o000), directory("a/b/", mode=0o000), file("a/b/f", b"f", mode=0)],
         [opaque("a"), file("a/n", b"n")]],
        {"a": 0o000, "a/n": 0o644}, id="opaque-0000-directory"),
    pytest.param(
        [[directory("a/", mode=0o000), file("a/f", b"f", mode=0)], [hardlink("a/h", "a/f"), hardlink("l", "a/f")]],
        {"a": 0o000, "a/f": 0, "a/h": 0, "l": 0}, id="hard-links-to-a-0000-file"),
    pytest.param(
        [[directory("etc/", mode=0o555), file("etc/shadow", b"s", mode=0)], [file("etc/shadow", b"new", mode=0o640)]],
        {"etc": 0o555, "etc/shadow": 0o640}, id="0000-file-replaced-in-a-0555-dir"),
    pytest.param(
        [[directory("a/", mode=0o755), file("a/f", b"f")], [directory("a/", mode=0o000), file("a/g", b"g")],
         [file("a/h", b"h")]],
        {"a": 0o000, "a/f": 0o644, "a/g": 0o644, "a/h": 0o644}, id="dir-closed-by-a-later-layer"),
    pytest.param(
        [[directory("a/", mode=0o000), directory("a/b/", mode=0o000), file("a/b/f", b"f")],
         [whiteout("a/b"), directory("a/b/", mode=0o500), file("a/b/g", b"g")]],
        {"a": 0o000, "a/b": 0o500, "a/b/g": 0o644}, id="whiteout-then-remade-in-0000"),
    pytest.param(
        [[directory("a/", mode=0o000), directory("a/b/", mode=0o000), file("a/b/f", b"f")], [whiteout("a/b")]],
        {"a": 0o000}, id="whiteout-of-a-0000-subdir"),
    pytest.param(
        [[directory("a/", mode=0o000), file("a/f", b"f")], [whiteout("a/f")]],
        {"a": 0o000}, id="whiteout-of-a-file-in-0000"),
    pytest.param(
        [[directory("a/", mode=0o555), directory("a/b/", mode=0o000), file("a/b/f", b"f")], [whiteout("a/b")]],
        {"a": 0o555}, id="whiteout-of-a-0000-subdir-of-0555"),
    pytest.param(
        [[directory("a/", mode=0o000), file("a/f", b"f")], [whiteout("a/nothere")]],
        {"a": 0o000, "a/f": 0o644}, id="whiteout-of-nothing-in-0000"),
]


@pytest.fixture(scope="module")
def runtime():
    """The interpreter and PYTHONPATH nobody runs dist with. The checkout and its venv may sit in a
    directory closed to nobody (a clone under /root): then the package and its dependencies are
    copied to one nobody can read, and the system interpreter the venv was made from runs them."""
    import sysconfig

    probe = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", sys.executable, "-c",
             "import dist_tool, typer, filelock"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)}
    if subprocess.run(probe, env=env, cwd="/", capture_output=True).returncode == 0:
        yield sys.executable, str(REPO)
        return
    copy = Path(tempfile.mkdtemp(prefix="dist-rootless-code-"))
    os.chmod(copy, 0o755)
    shutil.copytree(REPO / "dist_tool", copy / "code" / "dist_tool")
    shutil.copytree(sysconfig.get_paths()["purelib"], copy / "site")
    try:
        yield os.path.realpath(sys.executable), f"{copy / 'code'}{os.pathsep}{copy / 'site'}"
    finally:
        shutil.rmtree(copy)


@dataclass
class Nobody:
    home: Path  # a directory nobody owns (pytest's tmp_path is root's 0700, closed to nobody)
    python: str
    pythonpath: str


@pytest.fixture
def nobody(runtime):
    path = Path(tempfile.mkdtemp(prefix="dist-rootless-"))
    os.chmod(path, 0o755)
    os.chown(path, NOBODY, NOBODY)
    yield Nobody(path, *runtime)
    # as root: nobody's 0000 entries are no obstacle
    shutil.rmtree(path)


def dist(user: Nobody, *args: str) -> subprocess.CompletedProcess:
    """The real CLI as nobody, on a ROOT and STATE that nobody owns."""
    home = user.home
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "PYTHONPATH": user.pythonpath,
           "DIST_NAMESPACE": "default"}
    cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", user.python, "-m",
           "dist_tool", "--root", str(home / "root"), "--state", str(home / "state"), *args]
    return subprocess.run(cmd, env=env, cwd=home, capture_output=True, text=True, timeout=120)


def ok(user: Nobody, *args: str) -> str:
    proc = dist(user, *args)
    assert proc.returncode == 0, f"dist {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
    return proc.stdout


def modes(tree: Path) -> dict[str, int | tuple[int, dict]]:
    """Mode of everything under ``tree`` (looked at as root), with its user.* xattrs if it has any."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            st = full.lstat()
            assert st.st_uid == NOBODY, f"{full} is owned by {st.st_uid}"
            xattrs = {n: os.getxattr(full, n) for n in os.listxattr(full) if n.startswith("user.")}
            mode = stat.S_IMODE(st.st_mode)
            out[str(full.relative_to(tree))] = (mode, xattrs) if xattrs else mode
    return out


@pytest.mark.parametrize(("layers", "expected"), CASES)
def test_unpack_as_nobody_keeps_modes_and_removes_cleanly(nobody: Nobody, layers, expected) -> None:
    image = oci_archive(nobody.home / "image.tar", [layer(members) for members in layers],
                        name="docker.io/library/rl:1")
    os.chmod(image.archive, 0o644)

    ok(nobody, "images", "import", str(image.archive))

    keys = ok(nobody, "snapshot", "ls", "-q").split()
    assert sorted(keys) == sorted(image.chain)
    mounts = json.loads(ok(nobody, "snapshot", "mounts", "--json", "/mnt", image.chain[-1]))
    assert mounts[0]["type"] == "bind"
    assert modes(Path(mounts[0]["source"])) == expected

    ok(nobody, "container", "create", image.name, "c1")
    (container_key,) = set(ok(nobody, "snapshot", "ls", "-q").split()) - set(image.chain)
    mounts = json.loads(ok(nobody, "snapshot", "mounts", "--json", "/mnt", container_key))
    assert modes(Path(mounts[0]["source"])) == expected  # the container's copy too
    ok(nobody, "container", "rm", "c1")
    ok(nobody, "rmi", image.name)

    assert ok(nobody, "snapshot", "ls", "-q") == ""
    assert ok(nobody, "content", "ls", "-q") == ""
    native = nobody.home / "root" / "snapshots" / "native"
    leftovers = [str(p.relative_to(native)) for p in native.rglob("*")] if native.exists() else []
    assert sorted(leftovers) in ([], ["staging"], ["staging", "trash"], ["trash"])


def test_a_walker_killed_mid_walk_leaves_the_modes_to_put_back(nobody: Nobody) -> None:
    """A native copy killed (SIGKILL, OOM) while a committed snapshot's 0000 directory was opened
    up left it 0700 for good, and every later container took 0700 for the image's mode."""
    tree = nobody.home / "snap" / "fs"
    (tree / "closed").mkdir(parents=True)
    for path in (nobody.home / "snap", tree, tree / "closed"):
        os.chown(path, NOBODY, NOBODY)
    (tree / "closed").chmod(0o000)
    killed = ("import os, sys\n"
              "from dist_tool.unpriv import Widened\n"
              "walk = Widened(sys.argv[1]).__enter__()\n"
              "assert walk(sys.argv[1] + '/closed')\n"
              "os._exit(9)  # killed before it could put the mode back\n")
    next_walk = ("import sys\n"
                 "from dist_tool.unpriv import Widened\n"
                 "with Widened(sys.argv[1]):\n"
                 "    pass\n")
    for code, status in ((killed, 9), (next_walk, 0)):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": nobody.pythonpath}
        run = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", nobody.python,
                              "-c", code, str(tree)], env=env, cwd=nobody.home, capture_output=True, text=True)
        assert run.returncode == status, run.stderr
        if status == 9:
            assert stat.S_IMODE((tree / "closed").stat().st_mode) == 0o700  # what the kill left
    assert stat.S_IMODE((tree / "closed").stat().st_mode) == 0o000
    assert not (nobody.home / "snap" / "widened").exists()
