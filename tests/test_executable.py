"""dist_tool.executable: a command resolved inside a root filesystem as runc's init would, and
never outside it. A plain directory stands for the root; no runtime, no root privileges."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dist_tool import executable as X
from dist_tool.executable import CannotRun, Unseen

HOST_FILE = os.path.realpath(sys.executable)  # exists on the host, never in the test root


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """bin/busybox (0755) and applet symlinks; links that point at absolute paths meant inside the
    root; a few things that cannot run."""
    r = tmp_path / "root"
    for d in ("bin", "etc", "usr/bin", "usr/sbin", "srv/app", "data"):
        (r / d).mkdir(parents=True)
    (r / "bin" / "busybox").write_bytes(b"\x7fELF")
    (r / "bin" / "busybox").chmod(0o755)
    os.symlink("busybox", r / "bin" / "sh")  # relative applet link
    os.symlink("/bin/busybox", r / "usr" / "bin" / "env")  # absolute: the root's /bin, not the host's
    os.symlink("/bin", r / "usr" / "local")  # an absolute directory link on the way
    os.symlink("../../../../../bin/busybox", r / "usr" / "sbin" / "up")  # .. stops at the root
    os.symlink(HOST_FILE, r / "bin" / "host")  # dangling inside the root
    os.symlink("/etc", r / "bin" / "etclink")
    os.symlink("loop", r / "bin" / "loop")
    (r / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")  # 0644
    (r / "usr" / "bin" / "plain").write_text("not executable\n")
    (r / "usr" / "bin" / "adir").mkdir()
    os.mkfifo(r / "bin" / "fifo")
    os.chmod(r / "bin" / "fifo", 0o755)
    (r / "srv" / "app" / "run").write_bytes(b"#!/bin/sh\n")
    (r / "srv" / "app" / "run").chmod(0o700)
    os.symlink("/srv", r / "opt")  # where --mount dst=/opt/... will really land
    return r


@pytest.mark.parametrize(("command", "kwargs", "found"), [
    ("sh", {}, "/bin/busybox"),
    ("env", {}, "/bin/busybox"),
    ("/usr/bin/env", {}, "/bin/busybox"),
    ("/usr/local/sh", {}, "/bin/busybox"),
    ("/usr/local/../etc/../bin/sh", {}, "/bin/busybox"),
    ("up", {}, "/bin/busybox"),
    ("./run", {"cwd": "/srv/app"}, "/srv/app/run"),
    ("app/run", {"cwd": "/opt"}, "/srv/app/run"),
    ("../bin/sh", {"cwd": "/usr/local"}, "/bin/busybox"),
    ("run", {"path": "/usr/bin:/srv/app"}, "/srv/app/run"),
    ("sh", {"path": "/nosuch:/etc/passwd:/bin"}, "/bin/busybox"),
], ids=["path-applet", "path-absolute-link", "absolute-link", "absolute-dir-link", "dotdot-after-link",
        "dotdot-stops-at-root", "relative-from-cwd", "cwd-through-link", "dotdot-from-linked-cwd",
        "path-order", "path-skips-missing-dirs"])
def test_resolves_inside_the_root(root, command, kwargs, found):
    assert X.resolve(str(root), command, **kwargs) == found


@pytest.mark.parametrize(("command", "kwargs", "status", "why"), [
    ("nosuch", {}, 127, "executable file not found in $PATH"),
    ("plain", {}, 127, "executable file not found in $PATH (/usr/bin/plain: not executable)"),
    ("adir", {}, 127, "executable file not found in $PATH (/usr/bin/adir: a directory)"),
    ("sh", {"path": ""}, 127, "executable file not found in $PATH"),
    ("/bin/nosuch", {}, 127, "no such file or directory"),
    ("nosuch/sh", {}, 127, "no such file or directory"),
    ("/bin/host", {}, 127, "no such file or directory"),
    ("/etc", {}, 126, "permission denied (a directory)"),
    ("/bin/etclink", {}, 126, "permission denied (a directory)"),
    ("/bin/sh/.", {}, 126, "not a directory"),
    ("/etc/passwd", {}, 126, "permission denied (not executable)"),
    ("./passwd", {"cwd": "/etc"}, 126, "permission denied (not executable)"),
    ("/etc/passwd/x", {}, 126, "not a directory"),
    ("/bin/fifo", {}, 126, "permission denied (not a regular file)"),
    ("/bin/loop", {}, 126, "too many levels of symbolic links"),
], ids=["not-on-path", "on-path-not-executable", "on-path-a-directory", "empty-path", "missing-path",
        "missing-relative", "link-to-a-host-path", "directory", "link-to-a-directory", "file-as-directory",
        "not-executable", "relative-not-executable", "file-on-the-way", "fifo", "symlink-loop"])
def test_cannot_run(root, command, kwargs, status, why):
    with pytest.raises(CannotRun) as e:
        X.resolve(str(root), command, **kwargs)
    assert (e.value.status, e.value.why) == (status, why)
    assert str(e.value) == f'exec: "{command}": {why}'


@pytest.mark.parametrize(("command", "kwargs"), [
    ("/data/tool", {"hidden": ["/data"]}),
    ("/data/sub/tool", {"hidden": ["/data/sub"]}),
    ("/srv/tools/x", {"hidden": ["/opt/tools"]}),  # /opt -> /srv: the mount lands on /srv/tools
    ("/opt/tools/x", {"hidden": ["/opt/tools"]}),
    ("/anything", {"hidden": ["/"]}),
    ("tool", {"hidden": ["/data"], "path": "/data:/bin"}),
    ("./x", {"cwd": "/not/yet"}),  # the runtime creates the cwd
    ("tool", {"path": "bin:/usr/bin"}),  # runc refuses what a relative PATH directory holds
], ids=["under-a-mount", "mount-on-a-missing-dir", "mount-through-a-link", "mount-literal",
        "mount-on-root", "path-dir-mounted", "cwd-created-by-runtime", "relative-path-dir"])
def test_what_only_the_runtime_sees_decides_nothing(root, command, kwargs):
    with pytest.raises(Unseen):
        X.resolve(str(root), command, **kwargs)


def test_a_runnable_file_after_an_unseen_path_dir_still_counts(root):
    assert X.resolve(str(root), "sh", path="/data:rel:/bin", hidden=["/data"]) == "/bin/busybox"


def test_a_mount_elsewhere_hides_nothing_on_the_way(root):
    assert X.resolve(str(root), "sh", hidden=["/proc", "/dev", "/data"]) == "/bin/busybox"
    with pytest.raises(CannotRun):
        X.resolve(str(root), "/bin/nosuch", hidden=["/proc", "/dev", "/bin/other"])


def test_path_of_the_process_env():
    assert X.path_of([]) == X.DEFAULT_PATH
    assert X.path_of(["HOME=/", "PATH=/a:/b"]) == "/a:/b"
    assert X.path_of(["PATH=/a", "PATH=/b"]) == "/b"
    assert X.path_of(["PATH="]) == ""


def test_check_raises_only_when_certain(root):
    process = {"args": ["nosuch"], "env": ["PATH=/bin"], "cwd": "/"}
    with pytest.raises(CannotRun) as e:
        X.check(str(root), process)
    assert e.value.status == 127
    X.check(str(root), {"args": ["sh", "-c", "true"], "env": ["PATH=/bin"], "cwd": "/"})
    X.check(str(root), {**process, "env": ["PATH=/data"]}, hidden=["/data"])  # unseen: the runtime decides
    X.check(str(root), {"args": []})
    X.check(str(root), {"args": ["/bin/s\0h"], "cwd": "/"})  # a container made before NULs were refused
    with pytest.raises(CannotRun):
        X.check(str(root), {"args": ["./passwd"], "cwd": "/etc"})


def test_nothing_outside_the_root_is_looked_at(root, tmp_path):
    """A root reached through a symlinked path still resolves absolute links against itself."""
    link = tmp_path / "via"
    os.symlink(root, link)
    assert X.resolve(str(link), "/usr/bin/env") == "/bin/busybox"
    with pytest.raises(CannotRun):
        X.resolve(str(link), "/bin/host")


def _execve_errno(args: list[str], env: list[str]) -> int | None:
    """What the kernel says to this argument list and environment (a host binary runs it)."""
    try:
        subprocess.run(args, env=dict(e.split("=", 1) for e in env), check=True)
    except OSError as e:
        return e.errno
    return None


@pytest.mark.parametrize("args", [
    ["/bin/true", "x" * (32 * os.sysconf("SC_PAGE_SIZE"))],  # one string over 32 pages with its NUL
    ["/bin/true", *["x" * 1000] * 7000],  # an image Cmd of 7 MB: past 6 MiB, the most any stack allows
], ids=["one-string", "all-strings"])
def test_an_argument_list_execve_refuses_is_126_before_the_runtime(root, args):
    """runc's init met E2BIG after the runtime had started: its line on the task's stderr and
    exit 1, not dist's line and 126."""
    env = ["PATH=/bin"]
    assert _execve_errno(args, env) == errno.E2BIG
    with pytest.raises(CannotRun) as e:
        X.check(str(root), {"args": ["sh", *args[1:]], "env": env, "cwd": "/"})
    assert e.value.status == 126 and e.value.why.startswith("argument list too long")


def test_an_argument_list_the_kernel_takes_is_not_refused(root):
    args = ["/bin/true", "x" * (32 * os.sysconf("SC_PAGE_SIZE") - 1), *["x" * 1000] * 500]
    assert _execve_errno(args, ["PATH=/bin"]) is None
    X.check(str(root), {"args": ["sh", *args[1:]], "env": ["PATH=/bin"], "cwd": "/"})
