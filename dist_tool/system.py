"""``dist info``: what this store, runtime and namespace look like."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

from dist_tool import __version__


def runtime_binary() -> str:
    """The OCI runtime: ``$DIST_RUNTIME`` names another binary with runc's CLI."""
    return os.environ.get("DIST_RUNTIME") or "runc"


def runtime_info() -> dict:
    path = shutil.which(runtime_binary())
    version = None
    if path:
        try:
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
            version = out.splitlines()[0].split()[-1] if out else None
        except (OSError, subprocess.SubprocessError):
            version = None
    return {"path": path, "version": version}


def default_snapshotter(root: str | None = None) -> str:
    """overlayfs where it can mount, else native (SPEC).

    With ``root``: an overlay must really mount in that root's file system (a
    small one is mounted and unmounted under ``ROOT/snapshots``); the answer is
    kept in ``ROOT/snapshots/default-snapshotter`` with the device it was found
    on, so it is probed once per root and again if the root moves. Without
    root privileges nothing can mount: native. Without ``root``: whether the
    kernel offers overlay at all.
    """
    if root is None:
        return "overlayfs" if _kernel_has_overlay() else "native"
    if os.geteuid() != 0:
        return "native"
    base = os.path.join(root, "snapshots")
    os.makedirs(base, exist_ok=True)
    cache = os.path.join(base, "default-snapshotter")
    device = str(os.stat(base).st_dev)
    try:
        with open(cache) as f:
            name, _, seen_on = f.read().strip().partition(" ")
        if seen_on == device and name in ("overlayfs", "native"):
            return name
    except (OSError, ValueError):
        pass
    name = "overlayfs" if _overlay_mounts(base) else "native"
    tmp = f"{cache}.{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(f"{name} {device}\n")
        os.replace(tmp, cache)
    except OSError:  # only a cache (something else is at its path): probed again next time
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return name


def _kernel_has_overlay() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        return False


def _overlay_mounts(base: str) -> bool:
    """Mounts a two-lower overlay in a temporary directory under ``base``, then unmounts it."""
    import ctypes
    import tempfile

    libc = ctypes.CDLL(None, use_errno=True)
    probe = tempfile.mkdtemp(prefix=".overlay-probe-", dir=base)
    try:
        for d in ("l1", "l2", "upper", "work", "merged"):
            os.mkdir(os.path.join(probe, d))
        options = (f"lowerdir={probe}/l1:{probe}/l2,upperdir={probe}/upper,workdir={probe}/work").encode()
        target = os.path.join(probe, "merged").encode()
        if libc.mount(b"overlay", target, b"overlay", 0, options) != 0:
            return False
        libc.umount2(target, 2)  # MNT_DETACH: nothing can be using it
        return True
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def info(session) -> dict:
    counts = {}
    with session.meta.read() as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        counts["images"] = conn.execute("SELECT count(*) FROM images WHERE namespace = ?",
                                        (session.namespace,)).fetchone()[0]
        counts["content"] = conn.execute("SELECT count(*) FROM blobs").fetchone()[0]
        for table in ("containers", "snapshots"):
            if table in tables:
                counts[table] = conn.execute(f"SELECT count(*) FROM {table} WHERE namespace = ?",
                                             (session.namespace,)).fetchone()[0]
        counts["namespaces"] = conn.execute("SELECT count(*) FROM namespaces").fetchone()[0]
    counts["leases"] = len(session.leases.list())  # as leases ls counts them: no killed operation's
    return {"version": __version__, "root": session.root, "state": session.state,
            "namespace": session.namespace, "snapshotter": session.chosen_snapshotter(),
            "runtime": runtime_info(), "counts": counts}
