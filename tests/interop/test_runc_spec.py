"""The spec `dist container create` writes is one runc runs: a bundle of that config.json and a
busybox root filesystem, run with the real runc, checked by exit status and output.

The bundle's rootfs here is a copy of the image's directory: mounting the container's
snapshot there is the tasks issue's job, and its tests run the same specs from snapshots.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from helpers import make_busybox_rootfs, need

pytestmark = [pytest.mark.interop, pytest.mark.root]
NAMESPACE = "runctest"
EXTRA_APPLETS = ("touch", "pwd", "hostname")


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    path = make_busybox_rootfs(tmp_path_factory.mktemp("runc") / "rootfs")
    for applet in EXTRA_APPLETS:
        os.symlink("busybox", path / "bin" / applet)
    with open(path / "etc" / "passwd", "a") as f:
        f.write("bob:x:1000:1000::/home/bob:/bin/sh\n")
    with open(path / "etc" / "group", "a") as f:
        f.write("bob:x:1000:\nstaff:x:50:bob\n")
    (path / "srv").mkdir()
    return path


@pytest.fixture
def runc(dist, image_dir, tmp_path):
    """run(create options...) → (exit status, stdout) of runc running the container's spec."""
    if os.geteuid() != 0:
        pytest.skip("runc run needs root (namespaces, mounts, cgroups)")
    need("runc")
    dist.ok("-n", NAMESPACE, "images", "import", "--rootfs", str(image_dir), "--name", "busybox",
            "--config-cmd", "/bin/sh")
    state = tmp_path / "runc-state"
    cgroup_parents = []

    def run(*create_args: str, write: str | None = None) -> tuple[int, str]:
        cid = f"spec-{uuid.uuid4().hex[:10]}"
        dist.ok("-n", NAMESPACE, "c", "create", "busybox", cid, *create_args)
        spec = dist.ok("-n", NAMESPACE, "c", "info", cid, "--json").json["spec"]
        bundle = tmp_path / cid
        shutil.copytree(image_dir, bundle / spec["root"]["path"], symlinks=True)
        (bundle / "config.json").write_text(json.dumps(spec))
        cgroup_parents.append(os.path.dirname(spec["linux"]["cgroupsPath"]))
        proc = subprocess.run(["runc", "--root", str(state), "run", "--bundle", str(bundle), cid],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        print(f"runc run {cid}: exit {proc.returncode}\n{proc.stderr}")  # shown when a test fails
        return proc.returncode, proc.stdout

    yield run
    subprocess.run(["runc", "--root", str(state), "list"], capture_output=True)
    for parent in set(cgroup_parents):  # runc removes each task's cgroup; the empty parents are ours
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            for d in (hierarchy / parent.lstrip("/"), hierarchy / os.path.dirname(parent).lstrip("/")):
                try:
                    d.rmdir()
                except OSError:
                    pass


def test_runc_runs_the_default_spec(runc):
    code, out = runc("--", "sh", "-c", "echo hi; id -u; pwd; hostname; exit 3")
    assert code == 3
    lines = out.split()
    assert lines[:3] == ["hi", "0", "/"] and lines[3].startswith("spec-")


def test_runc_runs_user_cwd_env_and_args(runc):
    code, out = runc("--user", "bob", "--cwd", "/srv", "--env", "GREETING=hello",
                     "--", "sh", "-c", 'echo "$GREETING $(id -u):$(id -g) $(id -G) $(pwd)"')
    assert (code, out.strip()) == (0, "hello 1000:1000 1000 50 /srv")


def test_runc_honours_read_only_and_the_network_namespace(runc):
    code, out = runc("--read-only", "--", "sh", "-c", "touch /x 2>/dev/null && echo rw || echo ro; "
                                                       "wc -l < /proc/net/dev")
    lines = out.split()
    assert code == 0 and lines[0] == "ro"
    assert int(lines[1]) == 3  # two header lines + lo: its own network namespace
    code, out = runc("--net-host", "--", "sh", "-c", "wc -l < /proc/net/dev")
    with open("/proc/net/dev") as f:
        assert (code, int(out)) == (0, len(f.readlines()))


def test_runc_applies_bind_mounts(runc, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f").write_text("from the host\n")
    code, out = runc("--mount", f"type=bind,src={data},dst=/data,options=ro", "--", "cat", "/data/f")
    assert (code, out) == (0, "from the host\n")


def test_runc_sets_the_primary_group_among_the_supplementary_ones(runc):
    """containerd's ensureAdditionalGids (CVE-2023-25173): a process whose Groups lack its own
    gid could drop it with setgroups and get past a deny-by-group."""
    code, out = runc("--user", "bob", "--", "sh", "-c", "grep '^Groups:' /proc/self/status")
    assert code == 0 and set(out.split()[1:]) == {"1000", "50"}  # the kernel sorts them


def test_runc_mounts_a_users_hosts_file_over_net_hosts(runc, tmp_path):
    mine = tmp_path / "hosts"
    mine.write_text("1.2.3.4 mine\n")
    code, out = runc("--net-host", "--mount", f"type=bind,src={mine},dst=/etc/hosts,options=ro",
                     "--", "cat", "/etc/hosts")
    assert (code, out) == (0, "1.2.3.4 mine\n")


def test_runc_mounts_nothing_under_a_users_dev(runc):
    """The default /dev/pts, /dev/shm and /dev/mqueue were mounted first and then hidden under
    the user's /dev (docker drops them)."""
    code, out = runc("--mount", "type=tmpfs,dst=/dev,options=mode=755", "--", "cat", "/proc/mounts")
    under_dev = [line.split()[1] for line in out.splitlines() if line.split()[1].startswith("/dev")]
    assert code == 0 and under_dev == ["/dev"], out
