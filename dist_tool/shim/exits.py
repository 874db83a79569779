"""The shim's one write to the store: the container's ``lastExit``, when its task has exited.

Imported only on the exit path, so a running shim never loads sqlite3 or the
store; the detached shim starts with ``-I -S`` and gets the CLI's import path
from its config here.
"""

from __future__ import annotations

import json
import os
import sys


def record(cfg: dict, status: int, exited_at: float) -> None:
    """Sets ``lastExit = {"status", "exitedAt"}`` on the container (one short write transaction).
    A container deleted while its task ran is not an error."""
    for path in cfg.get("syspath") or ():
        if path not in sys.path:
            sys.path.append(path)
    from dist_tool.errors import NotFound
    from dist_tool.store.api import Container
    from dist_tool.store.containers import SqliteContainerStore
    from dist_tool.store.metadata import Metadata

    meta = Metadata(cfg["root"])
    try:
        store = SqliteContainerStore(meta, cfg["namespace"])
        store.update(Container(id=cfg["id"], image="", last_exit={"status": status, "exitedAt": exited_at}),
                     "lastExit")
    except NotFound:
        pass
    finally:
        meta.close()


def record_or_keep(cfg: dict, status: int, exited_at: float) -> None:
    """``record``; when the store will not take the write (a full disk, a read-only root), the exit
    is kept in a file beside the task's directory in STATE (a tmpfs the store's disk does not fill)
    for the next ``task wait``, ``task logs`` or ``container info`` to record. Raises what
    ``record`` raised, for the caller's log."""
    try:
        record(cfg, status, exited_at)
    except Exception:
        try:
            keep_pending(cfg["dir"], {"status": status, "exitedAt": exited_at})
        except OSError:
            pass
        raise


def pending_path(task_dir: str) -> str:
    """``STATE/<namespace>/.exit-<id>.json`` for the task directory ``STATE/<namespace>/<id>``."""
    head, name = os.path.split(task_dir.rstrip("/"))
    return os.path.join(head, f".exit-{name}.json")


def keep_pending(task_dir: str, last_exit: dict) -> None:
    path = pending_path(task_dir)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(last_exit, f)
    os.replace(tmp, path)


def read_pending(task_dir: str) -> dict | None:
    """The kept exit, None when there is none (or what is there is not one)."""
    try:
        with open(pending_path(task_dir)) as f:
            found = json.load(f)
    except (OSError, ValueError):
        return None
    if not (isinstance(found, dict) and isinstance(found.get("status"), int)
            and isinstance(found.get("exitedAt"), int | float)):
        return None
    return {"status": found["status"], "exitedAt": found["exitedAt"]}


def drop_pending(task_dir: str) -> None:
    try:
        os.unlink(pending_path(task_dir))
    except (FileNotFoundError, NotADirectoryError):  # none kept (STATE itself may be wrong: not ours to say)
        pass
