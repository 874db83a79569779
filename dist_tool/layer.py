"""Applying one layer (a tar stream, gzip, zstd or plain) to a directory, safely and in constant memory.

``apply_layer`` reads the blob once through ``tarstream`` (decompress → hash,
the diff ID → tar headers, bounded) and writes each member itself, in bounded
chunks: ``tarfile`` is never asked to extract (nor its ``data`` filter, which
refuses the absolute symlinks and device nodes real layers hold: CONVENTIONS
pitfall 9), and every path goes through ``rootpath`` so nothing lands outside
the directory.

Whiteouts (OCI image-spec: ``.wh.NAME`` hides NAME in lower layers,
``.wh..wh..opq`` hides everything below a directory in lower layers) are
applied in one of two ways:

* ``"overlay"``: the directory is an overlayfs upper layer on its own. A
  whiteout becomes a 0/0 character device, an opaque directory gets
  ``trusted.overlay.opaque=y``. Lower layers are not needed, so the layers
  of an image can be applied in parallel.
* ``"delete"``: the directory already holds the lower layers (native
  snapshotter); what a whiteout hides is deleted, except what this same layer
  wrote (whiteouts apply to lower layers only).

Kept: ownership (as root), modes, mtimes (atimes when given), xattrs
(``SCHILY.xattr.*`` and ``LIBARCHIVE.xattr.*``), hard links, symlinks, fifos
and, as root, device nodes. Not root: ownership is left to the caller and
device nodes are skipped, and in delete mode a lower layer's directory that shuts out its owner
(a 0555 ``/usr/bin`` to write into, a 0000 one to look into) is opened up while the layer is
applied and gets its exact mode back at the end (``unpriv``). ``trusted.overlay.*`` and ``user.overlay.*``
xattrs from a layer are dropped (only the snapshotter may say what overlayfs
hides); an xattr the file system refuses (ENOTSUP, or EPERM for the
``security.``/``trusted.`` namespaces) is skipped. Sparse members are refused.
Directory modes and times are set after the layer's last member.
"""

from __future__ import annotations

import base64
import errno
import os
import stat
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from dist_tool.errors import DataError
from dist_tool.fsattrs import clear_xattrs
from dist_tool.rootpath import MissingPath, NotDirectory, PathError, Root, clean, join
from dist_tool.tarstream import CHUNK
from dist_tool.unpriv import widen
from dist_tool.validate import decimal, digits

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
SMALL_FILE = 64 << 10  # overlay: files up to this size are written by a writer thread
WRITE_QUEUE = 64  # files handed over and not yet written: at most WRITE_QUEUE * SMALL_FILE bytes
IS_ROOT = os.geteuid() == 0
_CREATES_ROOT_OWNED = IS_ROOT and os.getegid() == 0
_O_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class Cancelled(Exception):
    """Another layer of the same unpack failed; this one stopped early."""


class _Writers:
    """Threads that create small files while the reader goes on decompressing and parsing.

    The kernel's work per file (allocating an inode) releases the GIL, so a layer of many
    small files keeps two cores busy. Only a path new to this layer is handed over (nothing
    can be in its way); whoever touches a path that is still pending, removes a directory,
    links to a file or ends the layer first waits for the queue to empty (``drain``).
    """

    def __init__(self, threads: int, what: str) -> None:
        import queue

        self.what = what
        self.jobs: queue.Queue = queue.Queue(maxsize=WRITE_QUEUE)
        self.pending: set[str] = set()
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.stopped = False
        self.threads = [threading.Thread(target=self._work, name=f"layer-writer-{i}", daemon=True)
                        for i in range(threads)]
        for thread in self.threads:
            thread.start()

    def submit(self, rel: str, job: Callable[[], None]) -> None:
        if self.error is not None:
            self.raise_error()
        with self.lock:
            self.pending.add(rel)
        self.jobs.put((rel, job))

    def _work(self) -> None:
        while True:
            item = self.jobs.get()
            try:
                if item is None:
                    return
                rel, job = item
                if self.error is None and not self.stopped:
                    try:
                        job()
                    except BaseException as e:  # noqa: BLE001 - handed to the reader, which raises it
                        self.error = self.error or e
                with self.lock:
                    self.pending.discard(rel)
            finally:
                self.jobs.task_done()

    def drain(self) -> None:
        """Waits until every handed-over file is written; raises the first failure."""
        self.jobs.join()
        if self.error is not None:
            self.raise_error()

    def raise_error(self) -> None:
        raise self.error  # type: ignore[misc]

    def close(self) -> None:
        """Stops the threads; files still queued are not written (the caller drained first,
        or is failing anyway)."""
        self.stopped = True
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()


@dataclass
class LayerResult:
    diff_id: str  # sha256 of the uncompressed tar stream, padding included
    size: int  # uncompressed bytes
    entries: int
    # overlay: directories created only as parents of members, "" (the root) when the layer has no
    # "./" entry, and the whiteouts made; what the layers below say about them is settled at stacking
    implicit_dirs: list[str] = field(default_factory=list)
    whiteouts: list[str] = field(default_factory=list)


def _show(name: str, limit: int = 160) -> str:
    """A member name for a one-line error: control characters escaped, long names shortened."""
    shown = name.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)
    return shown if len(shown) <= limit else shown[:limit] + "…"


def apply_layer(blob: BinaryIO, dest: str, *, whiteouts: str, what: str = "",
                progress: Callable[[int], None] | None = None,
                cancel: threading.Event | None = None, writers: int = 1) -> LayerResult:
    """Applies the layer read from ``blob`` (compressed or not) to the directory ``dest``.

    Raises DataError naming the layer and the member for anything unsafe or
    unreadable (the directory is then in an undefined state: the caller
    discards it), Cancelled when ``cancel`` is set. Reads the stream to its end
    before returning, so ``diff_id`` covers the tar's trailing padding.
    ``writers`` threads create small files (overlay whiteouts only; 0: none).
    """
    from dist_tool import tarstream

    applier = _Applier(Root(dest), whiteouts, what, writers)
    try:
        layer = tarstream.open_layer(blob, what, progress)
        for member in layer.members():
            if cancel is not None and cancel.is_set():
                raise Cancelled
            applier.apply(member, layer.stream)
        layer.drain()
        applier.finish()
    finally:
        applier.close()
    return LayerResult(layer.diff_id, layer.size, applier.entries, applier.implicit_dirs(), applier.whiteouts)


class _Applier:
    def __init__(self, root: Root, whiteouts: str, what: str, writers: int = 0) -> None:
        if whiteouts not in ("overlay", "delete"):
            raise ValueError(whiteouts)
        self.root = root
        self.overlay = whiteouts == "overlay"
        self.what = what
        # overlay: the directory starts empty, so a path this layer has not created is free
        self.writers = _Writers(writers, what) if self.overlay and writers else None
        self.created: set[str] = set()
        self.entries = 0
        # Directory modes and times are set at the end (a read-only directory must still take its
        # members): rel -> (step, mode, (atime, mtime) in ns), the last member for a path winning. A
        # directory removed later in the layer (replaced by a file, a symlink, a link) leaves its
        # entry and those below it stale: ``removed`` says when each path last went, and
        # ``finish`` skips them, or it would chmod what replaced them, or through a symlink.
        self.dirs: dict[str, tuple[int, int, tuple[int, int]]] = {}
        self.listed: set[str] = set()  # every directory a member named ("" for "./")
        self.whiteouts: list[str] = []  # overlay: the whiteout devices made
        self.removed: dict[str, int] = {}
        self.step = 0
        # delete mode: what this layer wrote (whiteouts spare it) and the ancestors of those paths
        self.touched: set[str] = set()
        self.touched_above: set[str] = set()
        # delete mode: the times of each directory the layer changed, from before its first change
        self.times_before: dict[str, tuple[int, int]] = {}
        # delete mode, not root: lower layers' directories opened up (``unpriv``): rel -> (step, mode)
        self.widened: dict[str, tuple[int, int]] = {}
        if not self.overlay:
            root.on_create = self._will_change
            if not IS_ROOT:
                root.on_denied = self._open_path
        else:
            root.on_not_directory = self._revive_whited_out

    # ------------------------------------------------------------ members

    def apply(self, member, stream) -> None:
        self.entries += 1
        try:
            parts = clean(member.name)
            base = parts[-1] if parts else ""
            if base.startswith(WHITEOUT_PREFIX):
                self._whiteout(parts, base)
            elif member.isdir():
                self._dir(parts, member)
            elif member.isreg():
                self._file(parts, member, stream)
            elif member.issym():
                self._symlink(parts, member)
            elif member.islnk():
                self._hardlink(parts, member)
            elif member.ischr() or member.isblk() or member.isfifo():
                self._special(parts, member)
            else:
                raise PathError(f"unsupported member type {member.type!r}")
        except (PathError, OSError, ValueError, OverflowError) as e:
            raise self._member_error(member, e) from None

    def _place(self, parts: tuple[str, ...]) -> str:
        """The real path (relative) for a new entry at ``parts``; see ``_create``."""
        if not parts:
            raise PathError("only a directory can be the root")
        return join(self._parent(parts), parts[-1])

    def _settle(self, rel: str | None = None) -> None:
        """Waits for the writer threads: for all of them, or while ``rel`` is pending."""
        if self.writers is not None and (rel is None or rel in self.writers.pending):
            self.writers.drain()

    def close(self) -> None:
        if self.writers is not None:
            self.writers.close()

    def _parent(self, parts: tuple[str, ...], create: bool = True) -> str:
        """``Root.parent``, after the writers are done when it must look on disk: a file still
        pending there would be invisible to its lstat."""
        if self.writers is not None and not self.root.knows_parent(parts):
            self._settle()
        return self.root.parent(parts, create)

    def _is_new(self, rel: str) -> bool:
        """Nothing was ever put at ``rel`` by this layer (overlay: then nothing is there)."""
        return rel not in self.created and rel not in self.root.made

    def _create(self, rel: str, make):
        """``make()`` creates the entry (never following a symlink); whatever is in its way is
        removed first, found by the EEXIST of trying (most members land where nothing is)."""
        self._settle(rel)
        if not self.overlay:
            self._will_change(rel)
        if self.writers is not None:
            self.created.add(rel)
        try:
            return make()
        except FileExistsError:
            self._remove_existing(rel)
            return make()

    def _owned_as_created(self, member) -> bool:
        """True when a new entry already has the member's owner: root creating root's files in an
        overlay layer, where no directory has its set-group-ID bit yet (modes come at the end)."""
        return self.overlay and _CREATES_ROOT_OWNED and member.uid == 0 and member.gid == 0

    def _revive_whited_out(self, rel: str, st: os.stat_result) -> bool:
        """overlay: a member under a path this layer whited out (``.wh.D`` then ``D/x``, no ``D/``
        entry; tar needs none). As in native and umoci, D is made again, new: a 0755 directory
        that shows nothing of the layers below (opaque), and not implicit, so settling gives it
        nothing of the D they had."""
        if not (is_whiteout(st) and rel in self.created):
            return False
        full = self.root.full(rel)
        os.unlink(full)
        os.mkdir(full)
        os.chmod(full, 0o755)
        os.setxattr(full, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
        self.step += 1
        self.removed[rel] = self.step  # an entry for the whited-out path before now is stale
        return True

    def _will_change(self, rel: str) -> None:
        """Delete mode: an entry is about to be made or removed at ``rel``. The directory holding it
        keeps its times from before (``finish``) unless the layer lists it, as with overlayfs
        (where a layer's directories are its own) and umoci."""
        parent = rel.rpartition("/")[0]
        if parent not in self.times_before:
            st = self.root.lstat(parent)
            self.times_before[parent] = (st.st_atime_ns, st.st_mtime_ns)
            self._open_up(parent, st)  # a lower layer's 0555 directory takes this layer's entries

    def _open_up(self, rel: str, st: os.stat_result | None = None) -> bool:
        """Delete mode, not root: lets this process into the directory ``rel`` (u+rwx) until
        ``finish`` restores its mode; True when that changed anything."""
        if IS_ROOT or self.overlay:
            return False
        known = self.widened.get(rel)
        if known is not None and not self._removed_since(rel, known[0]):
            return False
        mode = widen(self.root.full(rel), st)
        if mode is None:
            return False
        self.step += 1
        self.widened[rel] = (self.step, mode)
        return True

    def _open_path(self, rel: str) -> bool:
        """``Root.on_denied``: opens up the directories above ``rel``, from the root down (each one
        can be looked at once the one above it is open); True when that changed anything."""
        parts = rel.split("/")[:-1]
        changed = False
        for i in range(len(parts) + 1):
            above = "/".join(parts[:i])
            st = os.lstat(self.root.full(above))
            if not stat.S_ISDIR(st.st_mode):
                break
            changed = self._open_up(above, st) or changed
        return changed

    def _remove_existing(self, rel: str) -> None:
        self._settle()  # a pending file may be at rel, or below it
        if not self.overlay:
            self._will_change(rel)
        full = self.root.full(rel)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            from dist_tool.trees import remove_trees  # iterative: any depth

            remove_trees([full])
            self.root.forget()
        else:
            os.unlink(full)
            if stat.S_ISLNK(st.st_mode):
                self.root.forget()
        self.step += 1
        self.removed[rel] = self.step

    def _touch(self, rel: str) -> None:
        if self.overlay:
            return
        self.touched.add(rel)
        while "/" in rel:
            rel = rel.rpartition("/")[0]
            if rel in self.touched_above:
                break
            self.touched_above.add(rel)

    def _dir(self, parts: tuple[str, ...], member) -> None:
        if parts:
            rel = join(self._parent(parts), parts[-1])
            full = self.root.full(rel)
            self._settle(rel)
            self.created.add(rel)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                st = None
            was_whiteout = st is not None and is_whiteout(st)
            if st is not None and not stat.S_ISDIR(st.st_mode):
                self._remove_existing(rel)
                st = None
            if st is None:
                if not self.overlay:
                    self._will_change(rel)
                os.mkdir(full, 0o700)
                if was_whiteout and self.overlay:  # deleted, then made again in this layer: nothing below shows through
                    os.setxattr(full, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
            self.root.remember(parts, rel)
            existed = st is not None
        else:
            rel, full, existed = "", self.root.path, True
        if existed and not self.overlay:
            self._open_up(rel)  # its xattrs are replaced; its mode comes at the end (listed)
            clear_xattrs(full)  # a directory named again: its entry's xattrs replace what it had, as in umoci
        self._touch(rel)
        if IS_ROOT:
            os.chown(full, member.uid, member.gid, follow_symlinks=False)
        self._xattrs(full, member)
        self.step += 1
        self.listed.add(rel)
        self.dirs.pop(rel, None)  # to the end: applied among the last written
        self.dirs[rel] = (self.step, member.mode & 0o7777, _ns(member))

    def _file(self, parts: tuple[str, ...], member, stream) -> None:
        if member.sparse is not None:
            raise PathError("sparse files are not supported")
        rel = self._place(parts)
        full = self.root.full(rel)
        stream.seek(member.offset_data)
        if self.writers is not None and member.size <= SMALL_FILE and self._is_new(rel):
            data = _read_exactly(stream, member.size)
            self.created.add(rel)
            self.writers.submit(rel, lambda: self._write_new(full, data, member))
            return
        fd = self._create(rel, lambda: os.open(full, _O_CREATE, 0o600))
        try:
            left = member.size
            while left > 0:
                chunk = stream.read_data(min(left, CHUNK))
                if not chunk:
                    raise PathError("the layer ends inside this member's data")
                _write_all(fd, chunk)
                left -= len(chunk)
            self._file_meta(fd, member)
        finally:
            os.close(fd)
        self._touch(rel)

    def _write_new(self, full: str, data: bytes, member) -> None:
        """A writer thread's job: a small file at a path nothing is at."""
        try:
            fd = os.open(full, _O_CREATE, 0o600)
            try:
                _write_all(fd, data)
                self._file_meta(fd, member)
            finally:
                os.close(fd)
        except (PathError, OSError, ValueError, OverflowError) as e:
            raise self._member_error(member, e) from None

    def _member_error(self, member, e: Exception) -> DataError:
        """One line naming the member. ValueError and OverflowError come from header values no
        file can carry (an mtime of inf, a uid of 2**40, a NUL in an xattr name)."""
        if isinstance(e, PathError):
            why = str(e)
        elif isinstance(e, OSError):
            why = e.strerror or str(e)
        elif not 0 <= member.uid < 2**32 or not 0 <= member.gid < 2**32:
            # tarfile's own words ("uid is less than minimum") would say the opposite of a too-large id
            why = f"owner {member.uid}:{member.gid} is out of range (0 to {2**32 - 1})"
        else:
            why = f"invalid header value ({e})"
        return DataError("layer", self.what, f"member {_show(member.name)}: {why}")

    def _file_meta(self, fd: int, member) -> None:
        if IS_ROOT and not self._owned_as_created(member):
            os.fchown(fd, member.uid, member.gid)
        self._xattrs(fd, member)  # before the mode: without root, a user.* xattr needs write permission
        os.fchmod(fd, member.mode & 0o7777)  # after chown, which clears set-id bits
        os.utime(fd, ns=_ns(member))

    def _symlink(self, parts: tuple[str, ...], member) -> None:
        rel = self._place(parts)
        full = self.root.full(rel)
        self._create(rel, lambda: os.symlink(member.linkname, full))  # the target is data: never followed
        if IS_ROOT and not self._owned_as_created(member):
            os.chown(full, member.uid, member.gid, follow_symlinks=False)
        self._xattrs(full, member)
        os.utime(full, ns=_ns(member), follow_symlinks=False)
        self._touch(rel)

    def _hardlink(self, parts: tuple[str, ...], member) -> None:
        self._settle()  # the target may be a file still being written
        try:
            target = self.root.resolve_entry(clean(member.linkname))
        except MissingPath as e:
            if self.overlay:  # the layer is applied alone: a lower layer's file is not there to link to
                raise PathError(f"hard link to {_show(member.linkname)}: not in this layer; the overlayfs "
                                "snapshotter cannot link to a lower layer's file (--snapshotter native can)") from None
            raise PathError(f"hard link to {_show(member.linkname)}: {e}") from None
        except PathError as e:
            raise PathError(f"hard link to {_show(member.linkname)}: {e}") from None
        if not parts:
            raise PathError("the root cannot be a hard link")
        if stat.S_ISDIR(os.lstat(self.root.full(target)).st_mode):
            raise PathError(f"hard link to a directory ({_show(member.linkname)})")
        rel = join(self._parent(parts), parts[-1])
        if rel == target:
            return
        self._create(rel, lambda: os.link(self.root.full(target), self.root.full(rel), follow_symlinks=False))
        self._touch(rel)

    def _special(self, parts: tuple[str, ...], member) -> None:
        if member.isfifo():
            rel = self._place(parts)
            full = self.root.full(rel)
            self._create(rel, lambda: os.mkfifo(full, 0o600))
        elif not IS_ROOT:
            return  # device nodes need CAP_MKNOD: skipped when rootless (as umoci does)
        elif self.overlay and member.ischr() and member.devmajor == member.devminor == 0:
            # In an overlayfs upper directory a 0/0 character device is a whiteout: it would hide the
            # lower layers' entry instead of being a device (containerd's overlay snapshotter too).
            raise PathError("a 0/0 character device is overlayfs's whiteout: the overlayfs snapshotter "
                            "cannot store it (--snapshotter native can)")
        else:
            rel = self._place(parts)
            full = self.root.full(rel)
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            self._create(rel, lambda: os.mknod(full, kind | 0o600, os.makedev(member.devmajor, member.devminor)))
        if IS_ROOT:
            os.chown(full, member.uid, member.gid, follow_symlinks=False)
        os.chmod(full, member.mode & 0o7777, follow_symlinks=False)
        self._xattrs(full, member)
        os.utime(full, ns=_ns(member), follow_symlinks=False)
        self._touch(rel)

    # ------------------------------------------------------------ whiteouts

    def _whiteout(self, parts: tuple[str, ...], base: str) -> None:
        if base == OPAQUE:
            self._opaque(parts[:-1])
            return
        name = base[len(WHITEOUT_PREFIX):]
        if name in ("", ".", "..") or name.startswith(WHITEOUT_PREFIX):
            raise PathError("whiteout names no entry")
        hidden = parts[:-1] + (name,)
        if self.overlay:
            revive, self.root.on_not_directory = self.root.on_not_directory, None  # a whiteout makes nothing
            try:
                rel = join(self._parent(hidden), name)
            except NotDirectory:
                return  # under a path deleted (whited out) or replaced by a file: nothing below shows there
            finally:
                self.root.on_not_directory = revive
            self._settle(rel)
            full = self.root.full(rel)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                os.mknod(full, stat.S_IFCHR | 0o600, os.makedev(0, 0))
                self.created.add(rel)
                self.whiteouts.append(rel)
                return
            if stat.S_ISDIR(st.st_mode):  # written by this layer: hide only what is below it
                os.setxattr(full, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
            return
        try:
            rel = join(self._parent(hidden, create=False), name)
        except PathError:
            return  # nothing there to hide
        self._remove_lower(rel)

    def _opaque(self, dir_parts: tuple[str, ...]) -> None:
        if self.overlay:
            # Through _parent, which waits for the writers when it must look on disk: a file of this
            # layer still pending at the path was missed, a directory made there, and the writer's
            # EEXIST blamed the file's member.
            rel = self._parent(dir_parts + (OPAQUE,)) if dir_parts else ""
            os.setxattr(self.root.full(rel), OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)
            return
        try:
            rel = self.root.resolve_dir(dir_parts) if dir_parts else ""
        except PathError:
            return
        self._open_up(rel)
        for name in os.listdir(self.root.full(rel)):
            self._remove_lower(join(rel, name))

    def _remove_lower(self, rel: str) -> None:
        """Deletes what lower layers put at ``rel``, sparing what this layer wrote."""
        full = self.root.full(rel)
        try:
            st = self.root.lstat(rel)  # through Root: without root, on_denied opens up a 0000 parent
        except FileNotFoundError:
            return
        if rel in self.touched or rel in self.touched_above:
            if stat.S_ISDIR(st.st_mode):
                self._open_up(rel, st)
                for name in os.listdir(full):
                    self._remove_lower(f"{rel}/{name}")
            return
        self._remove_existing(rel)

    # ------------------------------------------------------------ metadata

    def _xattrs(self, target, member) -> None:
        headers = member.pax_headers
        if not headers:
            return
        for key, value in headers.items():
            if key.startswith("SCHILY.xattr."):
                name = key[len("SCHILY.xattr."):]
                data = value.encode("utf-8", "surrogateescape")
            elif key.startswith("LIBARCHIVE.xattr."):
                name = urllib.parse.unquote(key[len("LIBARCHIVE.xattr."):])
                try:
                    data = base64.b64decode(value + "=" * (-len(value) % 4))
                except ValueError:
                    raise PathError(f"xattr {name}: not base64") from None
            else:
                continue
            if name.startswith(("trusted.overlay.", "user.overlay.")):
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, data)
                else:
                    os.setxattr(target, name, data, follow_symlinks=False)
            except OSError as e:
                refused = e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP) or (
                    e.errno == errno.EPERM and name.startswith(("security.", "trusted.", "user.")))
                if not refused:
                    raise PathError(f"xattr {_show(name)}: {e.strerror}") from None

    def finish(self) -> None:
        """Directory modes and times, deepest last-written first, once their contents are in."""
        self._settle()
        for rel, times in self.times_before.items():
            if rel not in self.listed and not (self.removed and self._removed_since(rel, 0)):
                os.utime(self.root.full(rel), ns=times, follow_symlinks=False)
        modes = [(rel, mode, times) for rel, (step, mode, times) in reversed(self.dirs.items())
                 if not (self.removed and self._removed_since(rel, step))]
        # what was opened up gets its mode back unless the layer named it (then the member's wins)
        modes += [(rel, mode, None) for rel, (step, mode) in self.widened.items()
                  if rel not in self.dirs and not self._removed_since(rel, step)]
        if not IS_ROOT:  # deepest first: without root, a closed directory shuts out what is below it
            modes.sort(key=lambda m: m[0].count("/") + bool(m[0]), reverse=True)
        for rel, mode, times in modes:
            full = self.root.full(rel)
            os.chmod(full, mode, follow_symlinks=False)
            if times is not None:
                os.utime(full, ns=times, follow_symlinks=False)
        self.dirs.clear()
        self.widened.clear()

    def implicit_dirs(self) -> list[str]:
        """The directories no member named, parents first: the root unless "./" came, then those
        made as parents (a later entry for one makes it listed)."""
        made = [rel for rel in self.root.implicit if rel not in self.listed]
        return made if "" in self.listed else ["", *made]

    def _removed_since(self, rel: str, step: int) -> bool:
        """Whether ``rel`` or a directory above it was removed after ``step``."""
        while True:
            if self.removed.get(rel, 0) > step:
                return True
            if not rel:
                return False
            rel = rel.rpartition("/")[0]


def _read_exactly(stream, size: int) -> bytes:
    parts = []
    while size > 0:
        chunk = stream.read_data(min(size, CHUNK))
        if not chunk:
            raise PathError("the layer ends inside this member's data")
        parts.append(chunk)
        size -= len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _ns(member) -> tuple[int, int]:
    """(atime, mtime) in nanoseconds. A PAX time is read from its text: tarfile's float has 53
    bits, which round ...123456789 to ...123456768 (GNU tar and umoci set it exactly)."""
    headers = member.pax_headers
    mtime = _pax_ns(headers.get("mtime")) if headers else None
    if mtime is None:
        mtime = int(member.mtime) * 1_000_000_000 if isinstance(member.mtime, int) else int(member.mtime * 1e9)
    atime = _pax_ns(headers.get("atime")) if headers else None
    atime = mtime if atime is None else atime
    if not (_NS_MIN <= mtime <= _NS_MAX and _NS_MIN <= atime <= _NS_MAX):
        raise ValueError("time out of range")
    return atime, mtime


# utime takes nanoseconds whose seconds fit a time_t; beyond, Python raises OverflowError
_NS_MIN, _NS_MAX = -(2**63) * 10**9, (2**63 - 1) * 10**9 + 999_999_999


def _pax_ns(text: str | None) -> int | None:
    """A PAX time (``[-]seconds[.fraction]``) in nanoseconds, None when absent or malformed."""
    if not text:
        return None
    negative = text.startswith("-")
    seconds, _, fraction = text[negative:].partition(".")
    whole = decimal(seconds)
    # only the fraction's digits matter, not its value: decimal() has none for 700 of them
    if whole is None or (fraction and not digits(fraction)):
        return None
    value = whole * 1_000_000_000 + int(fraction[:9].ljust(9, "0"))
    return -value if negative else value


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
