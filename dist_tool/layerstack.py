"""Settling an overlay layer onto the layers below it.

With overlayfs each layer is extracted alone into an empty directory, before
the layers below it exist (``unpack.parallel``), so what depends on them is
decided here, once they do, as applying the layer on top of them would have:

* a directory the layer did not list (a parent of a member, or "/" when there
  is no "./" entry) gets the owner, mode, xattrs and times the layers below
  give it; overlayfs shows an upper directory's own attributes, not the
  lower's, and the extractor made it 0755 root;
* an opaque root (``./.wh..wh..opq``), which overlayfs ignores, becomes a
  whiteout for each name the layers below show at "/" and an opaque mark on
  each directory the layer wrote there; under an opaque directory nothing is
  taken from below;
* a whiteout of something the layers below do not show hides nothing
  (image-spec: whiteouts apply to lower layers only), so it is removed, with
  the directories made only to hold it: left, overlayfs would show a new
  empty directory (or a directory over a lower layer's symlink) holding an
  entry nothing can stat.

Only real directories of the layer are touched: a later member may have
replaced an implicit directory, or a parent of it, with a symlink, and
nothing here may follow it out of the layer.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dist_tool.fsattrs import copy_directory_attributes
from dist_tool.layer import OVERLAY_OPAQUE_XATTR, LayerResult, is_whiteout


def settle(dest: str, result: LayerResult, lowers: list[str]) -> None:
    """Settles the layer extracted into ``dest`` onto ``lowers`` (its chain's directories, top first).

    An opaque root is hidden last, from what the layer keeps: a directory made only to hold a
    whiteout that is dropped goes, and the lower one of that name must get a whiteout instead."""
    for rel in result.whiteouts:
        # A whiteout hides nothing when nothing below shows there, or when an opaque directory of
        # this layer already hides it; left behind, overlayfs lists it in a lone opaque directory
        # as a broken entry. The root's opaque mark is not one: overlayfs ignores it, and
        # _hide_lower_root makes the directories under it opaque instead.
        st = lstat_inside(dest, rel)
        if st is not None and is_whiteout(st) and (
                ("/" in rel and _under_opaque(dest, rel)) or merged_lstat(lowers, rel) is None):
            _remove(dest, rel, os.unlink)
    for rel in reversed(result.implicit_dirs):  # children before their parents
        st = lstat_inside(dest, rel)
        if st is None or not stat.S_ISDIR(st.st_mode):
            continue  # replaced later in the layer
        full = os.path.join(dest, rel) if rel else dest
        # Under a directory this layer made opaque (or made again), nothing below shows: the
        # directory is new, as in umoci, and takes nothing from what the lowers had there.
        below = None if _under_opaque(dest, rel) else merged_lstat(lowers, rel)
        if below is not None and stat.S_ISDIR(below[1].st_mode):
            copy_directory_attributes(below[0], full)
        elif rel and not os.listdir(full):
            _remove(dest, rel, os.rmdir)
    if lowers and _is_opaque(dest):
        _hide_lower_root(dest, lowers)


def _under_opaque(dest: str, rel: str) -> bool:
    """Whether a proper ancestor of ``rel`` (the root included) is opaque in this layer; the
    caller has checked that every one is a real directory."""
    if not rel:
        return False
    path = dest
    if _is_opaque(path):
        return True
    for part in rel.split("/")[:-1]:
        path = os.path.join(path, part)
        if _is_opaque(path):
            return True
    return False


def _hide_lower_root(dest: str, lowers: list[str]) -> None:
    """``./.wh..wh..opq``: overlayfs never takes a layer's root as opaque, so what the layers below
    show at "/" is hidden name by name: a whiteout for each this layer did not write, and each
    directory it did write made opaque itself (else the lower one of that name shows through)."""
    shown: set[str] = set()
    gone: set[str] = set()
    for lower in lowers:
        for name in os.listdir(lower):
            if name in shown or name in gone:
                continue
            (gone if is_whiteout(os.lstat(os.path.join(lower, name))) else shown).add(name)
    own = set(os.listdir(dest))
    with _keeping_times(dest):
        for name in sorted(shown - own):
            os.mknod(os.path.join(dest, name), stat.S_IFCHR | 0o600, os.makedev(0, 0))
    for name in sorted(own):
        path = os.path.join(dest, name)
        if stat.S_ISDIR(os.lstat(path).st_mode):  # never a symlink's target
            os.setxattr(path, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)


def merged_lstat(lowers: list[str], rel: str) -> tuple[str, os.stat_result] | None:
    """What the overlay of ``lowers`` (top first) shows at ``rel``: the path in the topmost layer
    that has it and its lstat, or None (absent, whited out, under a non-directory or an opaque one)."""
    if not lowers:
        return None
    if not rel:
        return lowers[0], os.lstat(lowers[0])
    layers = lowers  # the layers whose directory at the prefix so far is part of the merged one
    prefix = ""
    found: tuple[str, os.stat_result] | None = None
    for part in rel.split("/"):
        prefix = f"{prefix}/{part}" if prefix else part
        found, merged = None, []
        for layer in layers:
            path = os.path.join(layer, prefix)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if is_whiteout(st):
                break
            if found is None:
                found = (path, st)
            if not (stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(found[1].st_mode)):
                break  # a non-directory hides what is below it, and a directory hides a non-directory
            merged.append(layer)
            if _is_opaque(path):
                break
        if found is None:
            return None
        layers = merged
    return found


def lstat_inside(top: str, rel: str) -> os.stat_result | None:
    """lstat of ``rel`` under ``top``, None unless every parent on the way is a real directory."""
    if not rel:
        return os.lstat(top)
    path = top
    parts = rel.split("/")
    for i, part in enumerate(parts):
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if i < len(parts) - 1 and not stat.S_ISDIR(st.st_mode):
            return None
    return st


def _remove(dest: str, rel: str, remove: Callable[[str], None]) -> None:
    """Removes ``rel``, its directory keeping its times (a listed directory's come from its tar
    entry; an implicit one's are set after its children)."""
    with _keeping_times(os.path.join(dest, rel.rpartition("/")[0])):
        remove(os.path.join(dest, rel))


@contextmanager
def _keeping_times(directory: str) -> Iterator[None]:
    """The directory's times as they were before the entries made or removed in the block."""
    before = os.lstat(directory)
    yield
    os.utime(directory, ns=(before.st_atime_ns, before.st_mtime_ns), follow_symlinks=False)


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False
