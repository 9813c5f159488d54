"""The one CSV inside a Binance `.zip`, inflated while the zip streams in, hashed on the way.

A zip keeps its table of contents at the end, so `zipfile` needs a seekable file; the
archive's zips hold exactly one deflated member behind a local header, which is enough to
inflate front to back. Reading the zip once gives both the CSV bytes (for the parser) and
the SHA-256 of the zip itself, so files that reached bronze by server-side copy are
verified by the transform too. The member's CRC-32 is checked against the central
directory when the stream ends.

Memory stays at one network chunk plus the inflater's window, whatever the file's size.
Inflating and the CRC-32 use ISA-L (`isal`, a drop-in for `zlib`): on a 150 MB trades day
it inflates in 0.12 s where zlib takes 0.22 s, and a large file's silver build is bound by
CPU.
"""

from __future__ import annotations

import hashlib
import io
import struct
from typing import BinaryIO

from isal import isal_zlib

from crypto_lakehouse.errors import ChecksumMismatch, ZipFormatError

CHUNK = 1 << 20
_LOCAL = b"PK\x03\x04"
_CENTRAL = b"PK\x01\x02"
_END = b"PK\x05\x06"
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_TAIL_CAP = 4 << 20  # bytes after the member we keep to read the central directory


class ZipMemberStream(io.RawIOBase):
    """A read-only stream of the first member's bytes; `finish()` returns the zip's SHA-256.

    Raises ZipFormatError for anything but one stored or deflated member, and
    ChecksumMismatch when the member's CRC-32 disagrees with the zip's directory.
    """

    def __init__(self, raw: BinaryIO, *, chunk: int = CHUNK) -> None:
        super().__init__()
        self._raw = raw
        self._chunk = chunk
        self._hash = hashlib.sha256()
        self._pending = b""  # raw bytes read but not yet consumed by the inflater
        self._out = b""  # inflated bytes not yet handed out
        self._out_pos = 0
        self._crc = 0
        self._size = 0
        self._member_done = False
        self._tail = bytearray()
        self._digest: str | None = None
        self.member_name = ""
        self.member_name = self._read_local_header()

    # -- raw side --------------------------------------------------------------------------

    def _pull(self) -> bytes:
        data = self._raw.read(self._chunk)
        if data:
            self._hash.update(data)
        return data

    def _need(self, n: int) -> bytes:
        while len(self._pending) < n:
            data = self._pull()
            if not data:
                raise ZipFormatError("zip ends inside its local header")
            self._pending += data
        head, self._pending = self._pending[:n], self._pending[n:]
        return head

    def _read_local_header(self) -> str:
        fields = _LOCAL_HEADER.unpack(self._need(_LOCAL_HEADER.size))
        sig, _ver, flags, method, _t, _d, crc, csize, _usize, name_len, extra_len = fields
        if sig != _LOCAL:
            raise ZipFormatError("not a zip file (no local header at offset 0)")
        if flags & 0x1:
            raise ZipFormatError("encrypted zip members are not supported")
        name = self._need(name_len).decode("utf-8", errors="replace")
        self._need(extra_len)
        self._method = method
        self._header_crc = None if flags & 0x8 else crc
        if method == 8:
            self._inflater: isal_zlib.Decompress | None = isal_zlib.decompressobj(-15)
            self._stored_left = 0
        elif method == 0:
            if flags & 0x8 or csize == 0xFFFFFFFF:
                raise ZipFormatError("stored member without its size in the local header")
            self._inflater = None
            self._stored_left = csize
        else:
            raise ZipFormatError(f"zip compression method {method} is not supported")
        return name

    # -- inflated side -----------------------------------------------------------------------

    def _produce(self) -> bytes:
        """The next piece of member bytes, or b"" once the member has ended."""
        while not self._member_done:
            data = self._pending or self._pull()
            self._pending = b""
            if not data:
                raise ZipFormatError("zip ends before its member does")
            if self._inflater is None:
                piece, rest = data[: self._stored_left], data[self._stored_left :]
                self._stored_left -= len(piece)
                if self._stored_left == 0:
                    self._end_member(rest)
            else:
                try:
                    piece = self._inflater.decompress(data)
                except isal_zlib.error as exc:
                    damaged = f"zip member {self.member_name!r} is damaged: {exc}"
                    raise ChecksumMismatch(damaged) from exc
                if self._inflater.eof:
                    self._end_member(self._inflater.unused_data)
            if piece:
                self._crc = isal_zlib.crc32(piece, self._crc)
                self._size += len(piece)
                return piece
        return b""

    def _end_member(self, rest: bytes) -> None:
        self._member_done = True
        self._tail.extend(rest)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._out_pos >= len(self._out):
            self._out, self._out_pos = self._produce(), 0
            if not self._out:
                return 0
        n = min(len(buffer), len(self._out) - self._out_pos)
        buffer[:n] = self._out[self._out_pos : self._out_pos + n]
        self._out_pos += n
        return n

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        if size is None or size < 0:
            parts = [self._out[self._out_pos :]]
            self._out, self._out_pos = b"", 0
            while piece := self._produce():
                parts.append(piece)
            return b"".join(parts)
        if self._out_pos >= len(self._out):
            self._out, self._out_pos = self._produce(), 0
        piece = self._out[self._out_pos : self._out_pos + size]
        self._out_pos += len(piece)
        return piece

    # -- the end -----------------------------------------------------------------------------

    def finish(self) -> str:
        """Drain the rest of the zip, check the member's CRC-32 and return the zip's SHA-256."""
        if self._digest is not None:
            return self._digest
        while self._produce():
            pass
        while data := self._pull():
            if len(self._tail) < _TAIL_CAP:
                self._tail.extend(data)
        directory_crc = self._directory_crc()
        expected = self._header_crc if self._header_crc is not None else directory_crc
        if expected != self._crc:
            raise ChecksumMismatch(
                f"zip member {self.member_name!r} fails its CRC-32 "
                f"(directory {expected:08x}, inflated {self._crc:08x})"
            )
        self._digest = self._hash.hexdigest()
        return self._digest

    def _directory_crc(self) -> int:
        """The member's CRC-32 from the central directory, which must list exactly one entry."""
        at = self._tail.find(_CENTRAL)
        end = self._tail.rfind(_END)
        if at < 0 or end < 0 or len(self._tail) < max(at + 20, end + 12):
            raise ZipFormatError("zip has no central directory after its member")
        entries = struct.unpack_from("<H", self._tail, end + 10)[0]
        if entries != 1:
            raise ZipFormatError(f"zip holds {entries} members; the archive's hold one")
        return int(struct.unpack_from("<I", self._tail, at + 16)[0])

    @property
    def inflated_bytes(self) -> int:
        return self._size
