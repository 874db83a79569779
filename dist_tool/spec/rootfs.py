"""Reading a few small files (``/etc/passwd``, ``/etc/group``) from an image's root filesystem
without mounting it, and never following a symlink out of it.

A root filesystem is a stack of layers, top first, merged with overlayfs's
rules: an entry in an upper layer hides the same path below; a whiteout
hides it; an opaque directory hides everything below it in lower layers; a
non-directory hides the lower layers' trees under its path. Two kinds of
layer are read:

* ``DirLayer`` — a directory on disk: an unpacked snapshot (its overlay
  ``upperdir`` and ``lowerdir``s, or a native snapshot's one directory).
  Whiteouts are 0/0 character devices, opaque directories carry the
  ``trusted.overlay.opaque`` (or ``user.overlay.opaque``) xattr.
* ``TarLayer`` — a layer blob in the content store (gzip, zstd or plain tar),
  for images that are not unpacked. Whiteouts are ``.wh.NAME`` members and
  opaque directories hold ``.wh..wh..opq`` (OCI image-spec).

Paths resolve like umoci's and securejoin's: components one at a time, a
symlink's target re-resolved from the root (absolute) or its directory
(relative), ``..`` never climbing above the root, at most ``MAX_SYMLINKS``
links. A file is opened with ``O_NOFOLLOW`` under directories that were each
checked not to be symlinks, so nothing outside the root is ever read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from dist_tool.errors import DataError, NotFound

MAX_SYMLINKS = 40
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")

Parts = tuple[str, ...]


class Layer(Protocol):
    def kind(self, parts: Parts) -> str | None:
        """``dir``, ``opaque`` (a dir hiding lower layers), ``file``, ``symlink``, ``whiteout``,
        ``other``, or None when this layer has nothing at ``parts``."""
        ...

    def link(self, parts: Parts) -> str:
        """The target of the symlink at ``parts``."""
        ...

    def read(self, parts: Parts, limit: int) -> bytes:
        """The regular file at ``parts`` (DataError when larger than ``limit``)."""
        ...


def split(path: str, base: Parts = ()) -> Parts:
    """``path`` as components under the root: relative ones from ``base``; ``..`` stops at the root."""
    parts = [] if path.startswith("/") else list(base)
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return tuple(parts)


class RootfsReader:
    """Reads files of the merged view of ``layers`` (top first)."""

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = list(layers)

    def read(self, path: str, limit: int) -> bytes | None:
        """The file's bytes, or None when the path does not exist or is not a regular file."""
        parts = split(path)
        hops = 0
        i = 0
        while i < len(parts):
            found = self._visible(parts[: i + 1])
            if found is None:
                return None
            layer, kind = found
            if kind == "symlink":
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise DataError("path", path, "too many levels of symbolic links in the image")
                parts = split(layer.link(parts[: i + 1]), parts[:i]) + parts[i + 1:]
                i = 0
                continue
            last = i == len(parts) - 1
            if last:
                return layer.read(parts, limit) if kind == "file" else None
            if kind not in ("dir", "opaque"):
                return None
            i += 1
        return None

    def _visible(self, parts: Parts) -> tuple[Layer, str] | None:
        """The layer whose entry at ``parts`` the merged view shows, and the entry's kind."""
        for layer in self.layers:
            below_hidden = False
            for k in range(1, len(parts)):
                ancestor = layer.kind(parts[:k])
                if ancestor in ("whiteout", "file", "symlink", "other"):
                    return None  # this layer replaces the ancestor: lower trees are hidden
                if ancestor == "opaque":
                    below_hidden = True
            kind = layer.kind(parts)
            if kind == "whiteout":
                return None
            if kind is not None:
                return layer, kind
            if below_hidden:
                return None
        return None


class LazyRootfs:
    """A reader whose layers are found on first use: spec generation rarely reads any file."""

    def __init__(self, make: Callable[[], Sequence[Layer]]) -> None:
        self._make = make
        self._reader: RootfsReader | None = None

    def read(self, path: str, limit: int) -> bytes | None:
        if self._reader is None:
            self._reader = RootfsReader(self._make())
        return self._reader.read(path, limit)


# ---------------------------------------------------------------- directories


class DirLayer:
    """A directory on disk, as overlayfs sees an upper or lower directory."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _join(self, parts: Parts) -> str:
        return os.path.join(self.path, *parts)

    def kind(self, parts: Parts) -> str | None:
        # Callers check every ancestor first (RootfsReader._visible), so no component of the
        # joined path is a symlink: lstat sees this layer's own entry.
        try:
            st = os.lstat(self._join(parts))
        except (FileNotFoundError, NotADirectoryError):
            return None
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            return "opaque" if self._opaque(self._join(parts)) else "dir"
        if stat.S_ISREG(mode):
            return "file"
        if stat.S_ISLNK(mode):
            return "symlink"
        if stat.S_ISCHR(mode) and st.st_rdev == 0:
            return "whiteout"
        return "other"

    @staticmethod
    def _opaque(path: str) -> bool:
        for name in OPAQUE_XATTRS:
            try:
                if os.getxattr(path, name, follow_symlinks=False) == b"y":
                    return True
            except OSError:
                continue
        return False

    def link(self, parts: Parts) -> str:
        return os.readlink(self._join(parts))

    def read(self, parts: Parts, limit: int) -> bytes:
        path = self._join(parts)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise DataError("file", "/" + "/".join(parts), "not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read(limit + 1)
        finally:
            os.close(fd)
        if len(data) > limit:
            raise DataError("file", "/" + "/".join(parts), f"larger than the {limit}-byte limit")
        return data


def dir_layers(mounts: Iterable) -> list[DirLayer] | None:
    """The layers of a snapshot's mounts (``bind`` or ``overlay``), top first; None for others."""
    layers: list[DirLayer] = []
    for m in mounts:
        if m.type in ("bind", "rbind") or "bind" in m.options or "rbind" in m.options:
            layers.append(DirLayer(m.source))
        elif m.type == "overlay":
            opts = dict(o.split("=", 1) for o in m.options if "=" in o)
            if "upperdir" in opts:
                layers.append(DirLayer(opts["upperdir"]))
            layers.extend(DirLayer(d) for d in opts.get("lowerdir", "").split(":") if d)
        else:
            return None
    return layers


# ---------------------------------------------------------------- layer blobs


class TarLayer:
    """A layer blob, indexed by one streaming pass the first time it is asked anything.

    Only the metadata of members is kept, plus the bytes of the members named in ``want``
    (up to ``want_limit``); any other file is read by a second pass.

    Members apply in order, as unpacking applies them: a path named twice is its last member,
    and a hard link holds the bytes its target had when the link came (a file put at the target
    later does not change it). So each path is mapped to the ordinal of the member whose bytes it
    holds, and only that member's bytes are ever returned.
    """

    def __init__(self, provider, digest: str, want: Iterable[str] = (), want_limit: int = 1 << 20) -> None:
        self.provider = provider
        self.digest = digest
        self.want = {split(w) for w in want}
        self.want_limit = want_limit
        self._index: dict[Parts, tuple[str, str]] | None = None
        self._source: dict[Parts, int | None] = {}  # path -> ordinal of the member whose bytes it holds
        self._data: dict[int, bytes] = {}  # ordinal -> bytes

    def _members(self):
        import tarfile

        from dist_tool import compression

        with self.provider.open_blob(self.digest) as raw:
            try:
                with tarfile.open(fileobj=compression.decompressed(raw, "layer", self.digest), mode="r|") as tar:
                    for member in tar:
                        yield tar, member
            except (tarfile.TarError, EOFError) as e:
                raise DataError("layer", self.digest, f"not a readable tar ({e})") from None

    def _scan(self) -> dict[Parts, tuple[str, str]]:
        if self._index is not None:
            return self._index
        index: dict[Parts, tuple[str, str]] = {}
        source = self._source
        holders: dict[int, int] = {}  # ordinal -> how many paths hold its bytes
        for ordinal, (tar, m) in enumerate(self._members()):
            parts = split(m.name)
            if not parts:
                continue
            for k in range(1, len(parts)):  # tars may omit parent directories: they are implied
                index.setdefault(parts[:k], ("dir", ""))
            base = parts[-1]
            if base == OPAQUE_MARKER:
                index[parts[:-1]] = ("opaque", "")
                continue
            if base.startswith(WHITEOUT_PREFIX):
                index[parts[:-1] + (base[len(WHITEOUT_PREFIX):],)] = ("whiteout", "")
                continue
            # What a hard link holds is taken before its own path lets go: a link to itself (which
            # unpacking leaves as it is) keeps the bytes it had.
            held = source.get(split(m.linkname)) if m.islnk() else None
            if held is not None:
                holders[held] += 1
            replaced = source.pop(parts, None)
            if replaced is not None:
                holders[replaced] -= 1
                if not holders[replaced]:
                    self._data.pop(replaced, None)  # no path holds those bytes any more
            if m.isdir():
                if index.get(parts, ("",))[0] != "opaque":
                    index[parts] = ("dir", "")
            elif m.issym():
                index[parts] = ("symlink", m.linkname)
            elif m.islnk():
                index[parts] = ("hardlink", m.linkname)
                source[parts] = held
            elif m.isreg():
                index[parts] = ("file", "")
                source[parts] = ordinal
                holders[ordinal] = 1
                if parts in self.want and m.size <= self.want_limit:
                    self._data[ordinal] = tar.extractfile(m).read()
            else:
                index[parts] = ("other", "")
        self._index = index
        return index

    def kind(self, parts: Parts) -> str | None:
        index = self._scan()
        entry = index.get(parts)
        if entry is None:
            return None
        return "file" if entry[0] == "hardlink" else entry[0]

    def link(self, parts: Parts) -> str:
        return self._scan()[parts][1]

    def read(self, parts: Parts, limit: int) -> bytes:
        self._scan()
        ordinal = self._source.get(parts)
        if ordinal is None:  # a hard link to no file of this layer (unpacking refuses it too)
            raise DataError("file", "/" + "/".join(parts), f"missing from layer {self.digest}")
        if ordinal not in self._data:
            for i, (tar, m) in enumerate(self._members()):
                if i == ordinal:
                    if m.size > limit:
                        raise DataError("file", "/" + "/".join(parts), f"larger than the {limit}-byte limit")
                    self._data[ordinal] = tar.extractfile(m).read()
                    break
        data = self._data[ordinal]
        if len(data) > limit:
            raise DataError("file", "/" + "/".join(parts), f"larger than the {limit}-byte limit")
        return data


def tar_layers(provider, layer_digests: Sequence[str], want: Iterable[str] = ()) -> list[TarLayer]:
    """The layers of an image (given bottom first, as in its manifest), top first."""
    want = tuple(want)
    for digest in layer_digests:
        try:
            provider.info(digest)
        except NotFound:
            raise NotFound("layer", digest, "not in the content store (the image is incomplete)") from None
    return [TarLayer(provider, d, want) for d in reversed(layer_digests)]
