"""The trash directories of the content store and the snapshotters: entries named
``BASE.PID.START.REST`` by the process that moved them there (``proc.own_mark``), so that a
removal still running, one that was killed, and this process's own can be told apart."""

from __future__ import annotations

import os

from dist_tool.proc import claimed, marked_alive, marked_by_me


def leftovers(trash_dir: str, claim: bool = False) -> list[tuple[str, str]]:
    """(name, path now) of each entry in ``trash_dir`` whose process is gone, in name order: what a
    killed removal left. With ``claim`` (a gc, under the write lock) each is renamed to carry this
    process's mark, so that its own clean-up deletes it and a concurrent gc takes it for a running
    removal's: neither reports nor deletes it again."""
    try:
        names = sorted(os.listdir(trash_dir))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if marked_alive(name):
            continue
        path = os.path.join(trash_dir, name)
        if claim:
            try:
                os.rename(path, path := os.path.join(trash_dir, claimed(name)))
            except FileNotFoundError:
                continue
        out.append((name, path))
    return out


def own_entries(trash_dir: str) -> list[str]:
    """The paths of what this process moved into (or claimed in) ``trash_dir``: its to delete."""
    try:
        names = os.listdir(trash_dir)
    except FileNotFoundError:
        return []
    return [os.path.join(trash_dir, name) for name in names if marked_by_me(name)]
