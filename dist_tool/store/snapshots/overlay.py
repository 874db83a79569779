"""The overlayfs snapshotter: one directory per snapshot, stacked by overlay mounts.

Each snapshot's ``fs`` holds only what its layer (or its container) changed;
a committed snapshot's tree is the overlay of its chain. So the layers of an
image are independent directories (``layers_independent``): they may be
filled in parallel, before their parent exists, and stacked at commit.

Mounts (containerd's shapes):

* active without parent: a read-write bind mount of its ``fs``;
* active with parent: ``overlay`` with ``lowerdir`` = the parent chain's ``fs``
  (top first), ``upperdir`` = its ``fs``, ``workdir`` = its ``work``;
* view, or committed: a read-only bind of the single ``fs`` when the chain is
  one snapshot long, else ``overlay`` with ``lowerdir`` only (read-only by nature).

Needs a kernel and file system where overlay mounts (checked once per root by
``dist_tool.system.default_snapshotter``) and, to unpack whiteouts, root.
"""

from __future__ import annotations

import os

from dist_tool.fsattrs import copy_directory_attributes
from dist_tool.store.api import Mount
from dist_tool.store.snapshots import LocalSnapshotter, make_root


class OverlaySnapshotter(LocalSnapshotter):
    name = "overlayfs"
    layers_independent = True
    max_layers = 500  # the kernel's OVL_MAX_STACK: the most lower directories one mount takes

    def __init__(self, root: str, meta, namespace: str) -> None:
        # Its directories are named in mount options, where "," ends an option and ":" separates
        # lower directories: such a root imported and then failed every mount (the probe that
        # picks the default snapshotter falls back to native there).
        unsayable = sorted(set(",:").intersection(root))
        if unsayable:
            from dist_tool.errors import InvalidArgument

            raise InvalidArgument("snapshotter", self.name, f"cannot be used under root {root}: its path has "
                                  f"{' and '.join(repr(c) for c in unsayable)}, which overlay mount options cannot "
                                  "hold (use --snapshotter native or another --root)")
        super().__init__(root, meta, namespace)

    def _populate(self, path: str, parent_id: int | None, kind: str) -> None:
        fs = os.path.join(path, "fs")
        make_root(fs)
        if kind == "active":
            os.mkdir(os.path.join(path, "work"), 0o711)
            if parent_id is not None:
                # overlayfs shows the upper directory's own root as "/": without this a container
                # of an image whose "/" is 0700 or not root's would see 0755 root:root.
                copy_directory_attributes(self.dirs.fs(parent_id), fs)

    def mounts(self, key: str) -> list[Mount]:
        """The mounts that show the snapshot's tree (see the module docstring). Raises NotFound."""
        info = self.stat(key)
        chain = self.chain(key)
        if info.kind == "active":
            own = chain[0][1]
            if len(chain) == 1:
                return [Mount("bind", self.dirs.fs(own), ("rw", "rbind"))]
            lower = ":".join(self.dirs.fs(i) for _, i in chain[1:])
            return [Mount("overlay", "overlay", (f"workdir={os.path.join(self.dirs.path(own), 'work')}",
                                                 f"upperdir={self.dirs.fs(own)}", f"lowerdir={lower}"))]
        layers = chain[1:] if info.kind == "view" else chain
        if len(layers) == 1:
            return [Mount("bind", self.dirs.fs(layers[0][1]), ("ro", "rbind"))]
        return [Mount("overlay", "overlay", ("lowerdir=" + ":".join(self.dirs.fs(i) for _, i in layers),))]
