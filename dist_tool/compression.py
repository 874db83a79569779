"""Streaming readers: detect compression, decompress, hash as bytes pass.

Everything here reads in bounded chunks, so a gzip bomb costs time and disk
(bounded by the caller) but never memory.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import BinaryIO

from dist_tool.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def detect(head: bytes) -> str:
    """``gzip``, ``zstd`` or ``none`` from a stream's first bytes."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "none"


class PeekReader:
    """A reader that can show its first bytes without consuming them."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self._head = b""

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            chunk = self.raw.read(n - len(self._head))
            if not chunk:
                break
            self._head += chunk
        return self._head[:n]

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n < 0:
                data, self._head = self._head + self.raw.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            if len(data) < n:
                data += self.raw.read(n - len(data))
            return data
        return self.raw.read(n)


class HashingReader:
    """Passes reads through, hashing them (and counting) on the way."""

    def __init__(self, raw, algorithm: str = "sha256") -> None:
        self.raw = raw
        self.hash = hashlib.new(algorithm)
        self.algorithm = algorithm
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        self.count += len(data)
        return data

    def drain(self, chunk: int = 1 << 20) -> None:
        while self.read(chunk):
            pass

    @property
    def digest(self) -> str:
        return f"{self.algorithm}:{self.hash.hexdigest()}"


def _inflater():
    """ISA-L's inflate where python-isal is installed (about twice zlib's speed), else zlib's."""
    try:
        from isal import isal_zlib

        return isal_zlib
    except ImportError:
        return zlib


class GzipReader:
    """Decompresses a gzip stream (members concatenated, as gzip allows) in bounded chunks."""

    def __init__(self, raw, what: str = "layer", which: str = "") -> None:
        self.raw = raw
        self.what, self.which = what, which
        self._zlib = _inflater()
        self._z = self._zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._buf = b""
        self._eof = False
        self._between = False  # a member ended and no byte of another has been seen yet
        self._pending = b""  # input read past the end of the last member

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 20
        while len(self._buf) < n and not self._eof:
            if self._z.unconsumed_tail:
                data = self._z.unconsumed_tail
            elif self._pending:
                data, self._pending = self._pending, b""
            else:
                data = self.raw.read(1 << 18)
                if not data:
                    if not self._z.eof and not self._between:
                        raise DataError(self.what, self.which, "truncated gzip stream")
                    self._eof = True
                    break
            self._between = False
            try:
                self._buf += self._z.decompress(data, max(n - len(self._buf), 1 << 16))
            except (zlib.error, self._zlib.error) as e:
                raise DataError(self.what, self.which, f"corrupt gzip stream ({e})") from None
            if self._z.eof:
                # The member ended; what follows is another member (gzip allows many, bgzip
                # writes thousands) or trailing bytes, ignored as gzip -d does.
                rest = self._z.unused_data
                self._z = self._zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._between = True
                if len(rest) < len(GZIP_MAGIC):
                    rest += self.raw.read(len(GZIP_MAGIC) - len(rest))
                if rest and not rest.startswith(GZIP_MAGIC):
                    self._eof = True
                    break
                self._pending = rest
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


class ZstdReader:
    def __init__(self, raw, what: str = "layer", which: str = "") -> None:
        try:
            import zstandard
        except ImportError:
            raise DataError(what, which, "zstd-compressed, but the zstandard module is not installed") from None
        self._reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        self.what, self.which = what, which

    def read(self, n: int = -1) -> bytes:
        try:
            return self._reader.read(n if n and n > 0 else 1 << 20)
        except Exception as e:  # noqa: BLE001 - zstandard raises its own ZstdError
            raise DataError(self.what, self.which, f"corrupt zstd stream ({e})") from None


def decompressed(raw, what: str = "layer", which: str = ""):
    """A reader of ``raw``'s uncompressed bytes, whatever its compression; its errors are
    DataError(what, which, …)."""
    peek = PeekReader(raw)
    kind = detect(peek.peek(4))
    if kind == "gzip":
        return GzipReader(peek, what, which)
    if kind == "zstd":
        return ZstdReader(peek, what, which)
    return peek
