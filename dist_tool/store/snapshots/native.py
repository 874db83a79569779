"""The native snapshotter: every snapshot is a full copy of its parent's tree (for file systems
where overlayfs cannot mount). Mounts are bind mounts of the snapshot's own ``fs``; a layer is
applied to a copy of its parent, whiteouts as deletions.

The copy keeps what unpacking keeps: hard links (within the tree), symlinks, devices, fifos,
ownership (as root), modes, times and xattrs. File data goes through ``copy_file_range``, so
file systems that can share extents (XFS, btrfs) do.
"""

from __future__ import annotations

import errno
import os
import stat

from dist_tool.fsattrs import copy_xattrs
from dist_tool.store.api import Mount
from dist_tool.store.snapshots import LocalSnapshotter, make_root
from dist_tool.unpriv import Widened

IS_ROOT = os.geteuid() == 0


class NativeSnapshotter(LocalSnapshotter):
    name = "native"
    layers_independent = False

    def _populate(self, path: str, parent_id: int | None, kind: str) -> None:
        fs = os.path.join(path, "fs")
        if parent_id is None:
            make_root(fs)
            return
        copy_tree(self.dirs.fs(parent_id), fs)

    def mounts(self, key: str) -> list[Mount]:
        """A bind mount of the snapshot's own tree: read-write while active. Raises NotFound."""
        info = self.stat(key)
        own = self.chain(key)[0][1]
        if info.kind == "view":
            return [Mount("bind", self.dirs.fs(own), ("ro", "rbind"))]
        return [Mount("bind", self.dirs.fs(own), ("rw" if info.kind == "active" else "ro", "rbind"))]


def copy_tree(src: str, dst: str) -> None:
    """Copies the tree ``src`` to the new directory ``dst`` with everything a layer can hold.

    Without root, entries of ``src`` that shut out their owner (a 0000 file, a 0000 directory) are
    opened up while they are read and get their exact modes back before this returns
    (``unpriv.Widened``, which also keeps other walkers of ``src`` out meanwhile).
    """
    with Widened(src) as widened:
        _copy_tree(src, dst, None if IS_ROOT else widened)


def _copy_tree(src: str, dst: str, widen: Widened | None) -> None:
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, os.stat_result]] = []
    st = os.lstat(src)
    if widen is not None:
        widen(src, st)
    os.mkdir(dst, 0o700)
    _copy_meta(src, dst, st)
    dirs.append((dst, st))
    stack = [(src, dst)]
    while stack:
        s_dir, d_dir = stack.pop()
        with os.scandir(s_dir) as entries:
            for entry in entries:
                s, d = entry.path, os.path.join(d_dir, entry.name)
                st = entry.stat(follow_symlinks=False)
                mode = st.st_mode
                if stat.S_ISDIR(mode):
                    if widen is not None:
                        widen(s, st)
                    os.mkdir(d, 0o700)
                    _copy_meta(s, d, st)
                    dirs.append((d, st))
                    stack.append((s, d))
                    continue
                if st.st_nlink > 1:
                    first = links.get((st.st_dev, st.st_ino))
                    if first is not None:
                        os.link(first, d, follow_symlinks=False)
                        continue
                    links[(st.st_dev, st.st_ino)] = d
                if stat.S_ISREG(mode):
                    if widen is not None:
                        widen(s, st)
                    _copy_file(s, d, st)
                elif stat.S_ISLNK(mode):
                    os.symlink(os.readlink(s), d)
                    _copy_meta(s, d, st)
                elif stat.S_ISFIFO(mode):
                    os.mkfifo(d, 0o600)
                    _copy_meta(s, d, st)
                elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                    os.mknod(d, stat.S_IFMT(mode) | 0o600, st.st_rdev)
                    _copy_meta(s, d, st)
    for d, st in reversed(dirs):  # times last: creating entries changed them
        os.chmod(d, stat.S_IMODE(st.st_mode))
        os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_file(src: str, dst: str, st: os.stat_result) -> None:
    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            left = st.st_size
            while left > 0:
                try:
                    n = os.copy_file_range(fin, fout, min(left, 1 << 30))
                except OSError as e:
                    if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    n = os.sendfile(fout, fin, None, min(left, 1 << 30))
                if n == 0:
                    break
                left -= n
            _copy_meta(fout, fout, st, xattrs_from=fin)
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _copy_meta(src, dst, st: os.stat_result, xattrs_from=None) -> None:
    """Ownership, mode, xattrs and times of ``src`` (a path or fd) onto ``dst`` (same kind)."""
    is_link = stat.S_ISLNK(st.st_mode)
    fd = isinstance(dst, int)
    follow = {} if fd else {"follow_symlinks": False}
    if IS_ROOT:
        os.chown(dst, st.st_uid, st.st_gid, **follow)
    # xattrs before the mode: a user.* xattr needs write permission, which a 0444 file's owner lacks
    copy_xattrs(xattrs_from if xattrs_from is not None else src, dst)
    if not is_link and not stat.S_ISDIR(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode), **follow)
    if not stat.S_ISDIR(st.st_mode):
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), **follow)
