"""Reading a layer: decompress → hash → tar headers, forward only, in bounded memory.

``tarfile`` parses the headers (PAX, GNU long names, base-256 numbers) and
nothing else: it never extracts. It reads from ``Forward``, which gives it
``tell`` and a forward ``seek`` over the decompressed stream, hands out slices
of one buffered chunk (tarfile's own stream mode copies the rest of its
buffer on every read), and bounds the header bytes of one member so that a
hostile PAX or long-name header cannot exhaust memory. Member data is read by
the caller with ``Forward.read_data``, in chunks of at most ``CHUNK``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import BinaryIO

from dist_tool import compression
from dist_tool.errors import DataError

CHUNK = 1 << 20
MAX_MEMBER_HEADER_BYTES = 1 << 20  # PAX and GNU long-name headers of one member; a bound, not a buffer


@functools.cache
def strict_tarinfo():
    """A ``tarfile.TarInfo`` that fails on a corrupt or cut-off header after the first member.

    tarfile reads a bad checksum or a partial header block there as the end of the archive, so
    a damaged layer would lose its remaining members without an error (and its diff_id, computed
    over the same damaged bytes, would still match). Only a zero block, or the stream ending on a
    block boundary, ends an archive — as in Go's archive/tar, which containerd unpacks with.
    """
    import tarfile

    class StrictTarInfo(tarfile.TarInfo):
        @classmethod
        def fromtarfile(cls, tar):
            offset = tar.offset
            try:
                info = super().fromtarfile(tar)
            except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError) as e:
                if offset == 0:
                    raise  # tarfile's own "not a tar archive"
                raise tarfile.ReadError(f"{e} at byte {offset}") from None
            if info.size < 0:
                # tarfile takes a PAX size of -1 (or a negative base-256 one) and reads the member's
                # data as the next headers: members GNU tar and Go's archive/tar never see (both refuse).
                raise tarfile.ReadError(f"a member's size is negative ({info.size}) at byte {offset}")
            return info

        def _proc_member(self, tar):
            # tarfile reads a PAX or GNU long-name header whole into memory: bound it, as Go's
            # archive/tar does (an archive's 6 MB of gzip held a 1.5 GB header).
            if self.type in _META_TYPES and self.size > MAX_MEMBER_HEADER_BYTES:
                raise tarfile.ReadError(f"a tar header is larger than {MAX_MEMBER_HEADER_BYTES} bytes "
                                        f"at byte {self.offset}")
            return super()._proc_member(tar)

        def _proc_pax(self, tar):
            if self.type != tarfile.XGLTYPE:
                return super()._proc_pax(tar)
            # A global header's records are skipped, as Go's archive/tar (an entry of its own) and
            # containerd (which ignores that entry) skip them: tarfile applied them to the members
            # after it, so a global size=0 read the next member's data as headers, smuggling in
            # members containerd never sees.
            tar.fileobj.read(self._block(self.size))
            try:
                return self.fromtarfile(tar)
            except tarfile.HeaderError as e:
                raise tarfile.SubsequentHeaderError(str(e)) from None

    _META_TYPES = frozenset((tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                             tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK))
    return StrictTarInfo


class Forward:
    """The decompressed stream as tarfile's non-stream mode wants it: ``tell`` and forward ``seek``."""

    def __init__(self, raw, what: str) -> None:
        self.raw = raw
        self.what = what
        self.pos = 0
        self._buf = b""
        self._off = 0
        self.header_bytes = 0

    def tell(self) -> int:
        return self.pos

    def _fill(self) -> bool:
        self._buf = self.raw.read(CHUNK)
        self._off = 0
        return bool(self._buf)

    def read_data(self, n: int) -> bytes:
        """Up to ``n`` (at most CHUNK) bytes of member data; short only at the end of the stream."""
        if self._off >= len(self._buf) and not self._fill():
            return b""
        out = self._buf[self._off:self._off + n]
        if self._off == 0 and len(out) == len(self._buf):
            out = self._buf  # a whole chunk: no copy
        self._off += len(out)
        self.pos += len(out)
        return out

    def read(self, n: int = -1) -> bytes:
        """tarfile's reads: headers only (member data is read with ``read_data``)."""
        self.header_bytes += n
        if n < 0 or self.header_bytes > MAX_MEMBER_HEADER_BYTES:
            raise DataError("layer", self.what, f"a tar header is larger than {MAX_MEMBER_HEADER_BYTES} bytes")
        parts = []
        while n > 0:
            chunk = self.read_data(min(n, CHUNK))
            if not chunk:
                break
            parts.append(chunk)
            n -= len(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence != 0 or pos < self.pos:
            raise DataError("layer", self.what, "tar reader tried to seek backwards")
        while self.pos < pos:
            if not self.read_data(min(pos - self.pos, CHUNK)):
                break
        return self.pos

    def drain(self) -> None:
        while self.read_data(CHUNK):
            pass


class _Counting:
    """Reports how many compressed bytes were read (progress)."""

    def __init__(self, raw: BinaryIO, report: Callable[[int], None]) -> None:
        self.raw = raw
        self.report = report
        self.count = 0
        self._next = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        if self.count >= self._next:
            self._next = self.count + (4 << 20)
            self.report(self.count)
        return data


class Layer:
    """One layer's tar stream: ``members()``, then ``drain()``; ``diff_id`` and ``size`` after."""

    def __init__(self, blob: BinaryIO, what: str, progress: Callable[[int], None] | None) -> None:
        if progress is not None:
            blob = _Counting(blob, progress)
        self.what = what
        self._plain = compression.HashingReader(compression.decompressed(blob, "layer", what))
        self.stream = Forward(self._plain, what)

    def members(self) -> Iterator:
        """Each member's TarInfo, in order; its data is next in ``stream`` (at ``offset_data``).
        DataError for a stream that is not a tar (an empty stream is an empty layer)."""
        import tarfile

        try:
            try:
                tar = tarfile.TarFile(fileobj=self.stream, mode="r", encoding="utf-8", errors="surrogateescape",
                                      tarinfo=strict_tarinfo())
            except tarfile.ReadError as e:
                if self.stream.pos == 0 and not self.stream.read_data(1):
                    return
                raise DataError("layer", self.what, f"not a tar archive ({e})") from None
            while True:
                self.stream.header_bytes = 0
                member = tar.next()
                if member is None:
                    return
                tar.members.clear()  # tarfile keeps every header it parsed: not here
                yield member
        except tarfile.TarError as e:
            raise DataError("layer", self.what, f"corrupt tar stream ({e})") from None
        except RecursionError:  # tarfile reads each extended header of a chain by recursion
            raise DataError("layer", self.what, "corrupt tar stream (too many extended headers in a row)") from None

    def drain(self) -> None:
        """Reads to the end of the stream (tar padding included), so ``diff_id`` covers it all."""
        self.stream.drain()

    @property
    def diff_id(self) -> str:
        return self._plain.digest

    @property
    def size(self) -> int:
        return self._plain.count


def open_layer(blob: BinaryIO, what: str = "", progress: Callable[[int], None] | None = None) -> Layer:
    return Layer(blob, what, progress)
