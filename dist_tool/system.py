"""``dist info``: what this store, runtime and namespace look like."""

from __future__ import annotations

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


def default_snapshotter() -> str:
    """overlayfs where the kernel offers it, else native (SPEC)."""
    try:
        with open("/proc/filesystems") as f:
            if any(line.split()[-1] == "overlay" for line in f if line.strip()):
                return "overlayfs"
    except OSError:
        pass
    return "native"


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
        counts["leases"] = conn.execute("SELECT count(*) FROM leases WHERE namespace = ?",
                                        (session.namespace,)).fetchone()[0]
        counts["namespaces"] = conn.execute("SELECT count(*) FROM namespaces").fetchone()[0]
    return {"version": __version__, "root": session.root, "state": session.state,
            "namespace": session.namespace, "snapshotter": session.snapshotter_name or default_snapshotter(),
            "runtime": runtime_info(), "counts": counts}
