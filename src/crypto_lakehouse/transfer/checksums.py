"""SHA-256 of staged files and the `.CHECKSUM` sidecar format (`<sha256>  <file name>`)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in large blocks (hashlib releases the GIL while hashing)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def parse_sidecar(text: str) -> str | None:
    """The SHA-256 a sidecar announces, lower-cased; None when the text is not one."""
    first = text.strip().split(maxsplit=1)
    if not first or not _SHA256.match(first[0]):
        return None
    return first[0].lower()


def normalise_sha256(value: str) -> str | None:
    """A caller-supplied digest, lower-cased; None when it is not 64 hex digits."""
    value = value.strip()
    return value.lower() if _SHA256.match(value) else None
