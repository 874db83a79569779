"""What a file system entry carries beyond its data (owner, mode, xattrs, times), copied from one
entry to another: by the native snapshotter's tree copy, by a container's overlay upper directory
taking its image's "/", and by an overlay layer settling onto the layers below it."""

from __future__ import annotations

import errno
import os
import stat

OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")  # overlayfs's own marks (opaque, redirect)
# What a file system answers for an xattr it does not keep, or a namespace closed to this process
_REFUSED = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.ENODATA)


def copy_xattrs(source, dst, *, skip: tuple[str, ...] = ()) -> None:
    """The extended attributes of ``source`` (a path, not followed, or an fd) onto ``dst`` (the
    same kind), but for names starting with one of ``skip``; those the file system refuses
    (unsupported, or a namespace closed to this process) are left out, as unpacking does."""
    follow_source = {} if isinstance(source, int) else {"follow_symlinks": False}
    follow_dst = {} if isinstance(dst, int) else {"follow_symlinks": False}
    try:
        names = os.listxattr(source, **follow_source)
    except OSError:
        return
    for name in names:
        if skip and name.startswith(skip):
            continue
        try:
            os.setxattr(dst, name, os.getxattr(source, name, **follow_source), **follow_dst)
        except OSError as e:
            if e.errno not in _REFUSED:
                raise


def clear_xattrs(path: str) -> None:
    """Removes the xattrs of ``path`` (not followed) but the file system's own label
    (``security.selinux``); those it will not remove stay, as unpacking leaves them."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name == "security.selinux":
            continue
        try:
            os.removexattr(path, name, follow_symlinks=False)
        except OSError as e:
            if e.errno not in _REFUSED:
                raise


def copy_directory_attributes(src: str, dst: str) -> None:
    """Owner (as root), mode, xattrs and times of the directory ``src`` onto the directory ``dst``,
    both real directories (the caller checks). overlayfs's own xattrs (an opaque mark) stay
    behind: they say what ``src``'s layer hides, not what ``dst``'s does."""
    st = os.lstat(src)
    if os.geteuid() == 0:
        os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    copy_xattrs(src, dst, skip=OVERLAY_XATTRS)
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
