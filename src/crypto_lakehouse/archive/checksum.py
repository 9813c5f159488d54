"""`.CHECKSUM` sidecars: `<sha256 hex>  <file name>`, as `sha256sum` writes them.

The sidecar is the publisher's claim about the zip's bytes; `verify` turns a disagreement
into `ChecksumMismatch`, which keeps a corrupt file out of bronze.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from crypto_lakehouse.errors import ArchiveError, ChecksumMismatch

_LINE_RE = re.compile(r"^(?P<hex>[0-9A-Fa-f]{64}) [ *](?P<name>[^\s/\\][^/\\]*?)\s*$")


@dataclass(frozen=True)
class Checksum:
    sha256: str  # 64 lower-case hex digits
    filename: str

    def line(self) -> str:
        """The sidecar's text (two spaces, trailing newline, as Binance writes it)."""
        return f"{self.sha256}  {self.filename}\n"

    def matches(self, data: bytes) -> bool:
        return sha256_hex(data) == self.sha256


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checksum_of(data: bytes, filename: str) -> Checksum:
    return Checksum(sha256_hex(data), filename)


def parse_checksum(text: str | bytes, expected_filename: str | None = None) -> Checksum:
    """Parse a sidecar; ArchiveError if it is not one hash line or names another file.

    Accepts `sha256sum`'s text and binary (`*name`) forms and a missing final newline.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ArchiveError("checksum file is not UTF-8 text") from exc
    lines = [line for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    if len(lines) != 1:
        raise ArchiveError(f"checksum file must hold one line, found {len(lines)}")
    match = _LINE_RE.match(lines[0].strip())
    if not match:
        raise ArchiveError(f"not a '<sha256>  <file name>' line: {lines[0][:120]!r}")
    checksum = Checksum(match["hex"].lower(), match["name"])
    if expected_filename is not None and checksum.filename != expected_filename:
        raise ArchiveError(f"checksum names {checksum.filename!r}, expected {expected_filename!r}")
    return checksum


def verify(data: bytes, checksum: Checksum) -> None:
    """Raise ChecksumMismatch unless `data` hashes to the published SHA-256."""
    actual = sha256_hex(data)
    if actual != checksum.sha256:
        raise ChecksumMismatch(
            f"{checksum.filename}: sha256 {actual} does not match published {checksum.sha256}"
        )
