"""The shim's one write to the store: the container's ``lastExit``, when its task has exited.

Imported only on the exit path, so a running shim never loads sqlite3 or the
store; the detached shim starts with ``-I -S`` and gets the CLI's import path
from its config here.
"""

from __future__ import annotations

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
