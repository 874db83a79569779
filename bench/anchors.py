"""The anchors' side of the bench: fixtures, containerd + registry, podman stores, clean-up.

* Fixtures are built once by the shared `make-fixtures.sh` into a cache directory (default
  /var/tmp/dist-bench/fixtures) and reused while its `fixtures.env` is complete. Things the
  bench derives from them (the 1 GiB archive, podman's 1,001-name store) live beside them.
* containerd and the registry are started by the shared `services.sh`, privately to one bench
  run, only when a workload first needs `ctr`; `stop()` stops exactly what was started.
* Nothing here deletes a directory without first unmounting what is mounted under it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import bigimage
from bench.harness import StepError, error_line, sh

SHARED = Path("/work/shared/bench")
MAKE_FIXTURES = SHARED / "make-fixtures.sh"
SERVICES = SHARED / "services.sh"
CACHE_ROOT = Path("/var/tmp/dist-bench")
FIXTURES_DEFAULT = CACHE_ROOT / "fixtures"

Log = Callable[[str], None]


def read_env(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a shell env file such as fixtures.env or services.env."""
    env = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            env[key.strip()] = value.strip().strip('"')
    return env


# ---------------------------------------------------------------------------------- fixtures

class Fixtures:
    """The images of make-fixtures.sh, by the keys of its fixtures.env."""

    # Written last by make-fixtures.sh: an interrupted build lacks it and is built again.
    LAST_KEY = "LARGE_LAYERS"

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.dir, self.env = directory, env

    def path(self, key: str) -> Path:
        return Path(self.env[key])

    def blobs(self, image: str) -> list[str]:
        """Hex digests of every blob of IMAGE's layout ("busybox", "large")."""
        layout = self.path(f"{image.upper()}_LAYOUT") / "blobs" / "sha256"
        return sorted(p.name for p in layout.iterdir())

    def mib(self, key: str) -> str:
        return f"{self.path(key).stat().st_size / 1048576:.1f} MiB"


def ensure_fixtures(directory: Path, log: Log) -> Fixtures:
    env_file = directory / "fixtures.env"
    env = read_env(env_file) if env_file.exists() else {}
    if Fixtures.LAST_KEY not in env:
        log(f"building fixtures in {directory} with make-fixtures.sh (about 20 s)")
        directory.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([str(MAKE_FIXTURES), str(directory)], stdin=subprocess.DEVNULL,
                              stdout=sys.stderr, stderr=sys.stderr)
        if proc.returncode != 0:
            raise StepError(f"make-fixtures.sh {directory}: exit {proc.returncode}")
        env = read_env(env_file)
    return Fixtures(directory, env)


HUGE_NAME = "docker.io/library/huge:latest"


def ensure_huge(fixtures: Fixtures, log: Log) -> tuple[Path, dict]:
    """The ~1 GiB archive (4 layers of 256 MiB of random data), built once beside the fixtures."""
    path, info_file = fixtures.dir / "huge-oci.tar", fixtures.dir / "huge-oci.json"
    if path.exists() and info_file.exists():
        return path, json.loads(info_file.read_text())
    log(f"writing the 1 GiB archive {path} once (about a minute)")
    try:
        info = bigimage.write_archive(path, HUGE_NAME)
        info_file.write_text(json.dumps(info, indent=1))
    except OSError as e:
        raise StepError(f"writing {path}: {e}") from None
    return path, info


# ---------------------------------------------------------------------------------- services

class Services:
    """containerd (for ctr) and the registry via services.sh, private to one directory."""

    def __init__(self, directory: Path, log: Log) -> None:
        self.dir, self.log = directory, log
        self.env: dict[str, str] | None = None
        self.failed: str | None = None

    @property
    def ctr_address(self) -> str:
        return str(self.dir / "containerd" / "containerd.sock")   # where services.sh puts it

    def start(self) -> None:
        """Starts both services on first call; raises StepError (every time) if that failed."""
        if self.env is not None:
            return
        if self.failed:
            raise StepError(self.failed)
        self.log(f"starting containerd and the registry in {self.dir}")
        try:
            sh([str(SERVICES), "start", str(self.dir)], "services.sh start")
            self.env = read_env(self.dir / "services.env")
        except StepError as e:
            self.failed = str(e)
            self.stop()            # a half start (containerd up, registry not) is stopped too
            raise

    def stop(self) -> None:
        if not self.dir.exists():
            return
        proc = subprocess.run([str(SERVICES), "stop", str(self.dir)], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            self.log(f"services.sh stop {self.dir}: {error_line(proc.stderr)}")
        self.env = None

    def ctr(self, namespace: str, *args: str) -> list[str]:
        return ["ctr", "-a", self.ctr_address, "-n", namespace, *args]

    def ctr_clear(self, namespace: str) -> None:
        """Deletes every image of NAMESPACE with a synchronous GC, then checks `ctr_empty()`,
        so that the next import really writes every blob again."""
        names = sh(self.ctr(namespace, "images", "ls", "-q"), "ctr images ls").split()
        if names:
            sh(self.ctr(namespace, "images", "rm", "--sync", *names), "ctr images rm --sync")
        self.ctr_empty(namespace)

    def ctr_empty(self, namespace: str) -> None:
        """Raises StepError unless NAMESPACE holds no image, blob or snapshot."""
        found = {
            "images": sh(self.ctr(namespace, "images", "ls", "-q"), "ctr images ls").split(),
            "blobs": sh(self.ctr(namespace, "content", "ls", "-q"), "ctr content ls").split(),
            "snapshots": sh(self.ctr(namespace, "snapshots", "ls"),
                            "ctr snapshots ls").splitlines()[1:],   # under a header line
        }
        if any(found.values()):
            raise StepError(f"containerd namespace {namespace} still holds " + ", ".join(
                f"{len(v)} {k}" for k, v in found.items() if v))


# ---------------------------------------------------------------------------------- podman

RUNROOTS = Path("/run/dist-bench")


def podman_runroot(base: Path) -> Path:
    """podman refuses a runroot longer than 50 characters: a short one named after BASE."""
    return RUNROOTS / hashlib.sha256(str(base).encode()).hexdigest()[:16]


def podman(base: Path) -> list[str]:
    """podman on a store private to BASE. vfs: listing does not depend on the storage driver,
    and vfs needs no mounts, so nothing is left mounted. podman records these paths in its
    database, so a store must always be opened with the same ones."""
    return ["podman", "--root", str(base / "root"), "--runroot", str(podman_runroot(base)),
            "--tmpdir", str(base / "tmp"), "--storage-driver", "vfs",
            "--events-backend", "file", "--cgroup-manager", "cgroupfs"]


def tagged_store_dir(fixtures: Fixtures, count: int) -> Path:
    return fixtures.dir / "cache" / f"podman-{count}-names"


def ensure_tagged_store(fixtures: Fixtures, source: str, names: Sequence[str], log: Log) -> None:
    """Makes `tagged_store_dir()` a podman store holding the busybox fixture under SOURCE and
    NAMES. It is cached beside the fixtures, as `podman tag` of 1,000 names takes over a minute
    here; the stamp records podman's version, the image and the names, and any change rebuilds
    the store."""
    version = sh(["podman", "--version"], "podman --version").strip()
    want = hashlib.sha256("\n".join(
        [version, fixtures.env["BUSYBOX_MANIFEST"], source, *names]).encode()).hexdigest()
    base = tagged_store_dir(fixtures, len(names) + 1)
    stamp = base / "complete"
    if stamp.exists() and stamp.read_text() == want:
        return base
    log(f"building podman's {len(names) + 1}-name store once in {base} (about 75 s)")
    remove_tree(base)
    remove_tree(podman_runroot(base))
    base.mkdir(parents=True)
    pm = podman(base)
    sh([*pm, "load", "-q", "-i", str(fixtures.path("BUSYBOX_OCI_ARCHIVE"))], "podman load")
    if source != fixtures.env["BUSYBOX_REF"]:
        sh([*pm, "tag", fixtures.env["BUSYBOX_REF"], source], "podman tag")
    sh([*pm, "tag", source, *names], "podman tag")
    stamp.write_text(want)


# ---------------------------------------------------------------------------------- clean-up

def mounts_under(path: Path) -> list[str]:
    """Mount points at or below PATH, deepest first."""
    root = str(path.resolve())
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            target = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[1])
            if target == root or target.startswith(root + "/"):
                found.append(target)
    return sorted(found, reverse=True)


def unmount_under(path: Path, log: Log) -> None:
    for target in mounts_under(path):
        if subprocess.run(["umount", target], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", target], capture_output=True)
        log(f"unmounted {target}")


def remove_tree(path: Path, log: Log = lambda _: None) -> None:
    """rm -rf PATH, after unmounting what is mounted below it; StepError if it stays."""
    if not path.exists() and not path.is_symlink():
        return
    unmount_under(path, log)
    if mounts_under(path):
        raise StepError(f"{path}: still mounted below; not deleted")
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError as e:
        raise StepError(f"rm -rf {path}: {e.strerror}") from None


def tool_version(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    """First line of `TOOL --version`, or why not."""
    try:
        proc = subprocess.run([*argv, "--version"], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, env=env, timeout=30)
    except OSError:
        return "not installed"
    except subprocess.TimeoutExpired:
        return "--version timed out"
    if proc.returncode != 0:
        return f"not runnable: exit {proc.returncode}: {error_line(proc.stderr)}"
    return (proc.stdout.strip().splitlines() or ["?"])[0]


def git_commit(repo: Path) -> str | None:
    """The checked-out commit of REPO (read only), or None (not a repository, no commit yet)."""
    proc = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def dist_env() -> dict[str, str]:
    """The environment for dist: none of the user's DIST_* settings (--root etc. are explicit), and
    bytecode caching as a user has it (a PYTHONDONTWRITEBYTECODE shell recompiles every stale module
    on every run)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("DIST_") and k != "PYTHONDONTWRITEBYTECODE"}
