"""What the lake holds against what the source publishes, after a fault and a re-run.

The source's `.CHECKSUM` sidecars are the truth: every archive zip has one, and a zip in
bronze is good only when its size and SHA-256 equal the published ones. The audit reads
every object of a case's bronze bucket and the case's manifest, and counts:

  lost      archive files with no object in bronze (the re-run did not bring them back,
            or a verified file's object vanished);
  corrupt   objects in bronze whose size or SHA-256 differ from the sidecar (a partial
            or torn write that survived); a sidecar copied to bronze must equal the
            source's sidecar;
  stray     objects in bronze that are not archive files at all (temporary keys);
  unasked   archive files in bronze that the case did not expect there (a file that
            should have been refused, e.g. one above the staging cap);
  lying     manifest rows `verified` whose object is missing or wrong (the worst kind:
            the next run skips them, so they never come back);
  repeated  verified rows that are not version 1 or have history (verified twice).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from crypto_lakehouse.archive.checksum import parse_checksum
from crypto_lakehouse.archive.paths import CHECKSUM_SUFFIX
from crypto_lakehouse.storage import S3Storage

READERS = 8  # concurrent GETs while hashing a bucket
EXAMPLES = 5  # keys kept per kind, for the report


@dataclass(frozen=True)
class Published:
    """One archive file as the source publishes it (and its sidecar's own size and digest)."""

    size: int
    sha256: str
    sidecar: tuple[int, str] | None = None


def published(storage: S3Storage, bucket: str, prefix: str = "data/") -> dict[str, Published]:
    """Every zip under `prefix` with its listed size and its sidecar's SHA-256.

    A zip whose own bytes differ from its sidecar is left out (a planted defect is not
    the lake's to keep); the campaign writes a clean archive, so none is.
    """
    sizes: dict[str, int] = {}
    sidecars: set[str] = set()
    for obj in storage.list_objects(bucket, prefix):
        if obj.key.endswith(CHECKSUM_SUFFIX):
            sidecars.add(obj.key)
        elif obj.key.endswith(".zip"):
            sizes[obj.key] = obj.size
    keys = [k for k in sizes if k + CHECKSUM_SUFFIX in sidecars]

    def digest(key: str) -> tuple[str, Published]:
        text = storage.get_bytes(bucket, key + CHECKSUM_SUFFIX)
        sha = parse_checksum(text, key.rsplit("/", 1)[-1]).sha256
        return key, Published(sizes[key], sha, (len(text), hashlib.sha256(text).hexdigest()))

    with ThreadPoolExecutor(READERS) as pool:
        return dict(pool.map(digest, keys))


@dataclass
class Audit:
    """The counts above, with a few example keys of each kind."""

    expected: int = 0
    in_bronze: int = 0
    verified: int = 0
    lost: int = 0
    corrupt: int = 0
    stray: int = 0
    unasked: int = 0
    lying: int = 0
    repeated: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """Nothing lost, nothing corrupt, no manifest row that lies."""
        return self.lost == 0 and self.corrupt == 0 and self.lying == 0

    def note(self, kind: str, key: str) -> None:
        keys = self.examples.setdefault(kind, [])
        if len(keys) < EXAMPLES:
            keys.append(key)

    def as_json(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "in_bronze": self.in_bronze,
            "verified": self.verified,
            "lost": self.lost,
            "corrupt": self.corrupt,
            "stray": self.stray,
            "unasked": self.unasked,
            "lying": self.lying,
            "repeated": self.repeated,
            "examples": self.examples,
        }


def bronze_digests(storage: S3Storage, bucket: str) -> dict[str, tuple[int, str]]:
    """key -> (size, SHA-256) of every object in `bucket`, read in full."""
    keys = [obj.key for obj in storage.list_objects(bucket, "")]

    def read(key: str) -> tuple[str, tuple[int, str]]:
        data = storage.get_bytes(bucket, key)
        return key, (len(data), hashlib.sha256(data).hexdigest())

    with ThreadPoolExecutor(READERS) as pool:
        return dict(pool.map(read, keys))


def audit(
    source: dict[str, Published],
    bronze: dict[str, tuple[int, str]],
    manifest_rows: list[Any],
    history_paths: set[str],
    *,
    expected_keys: set[str] | None = None,
) -> Audit:
    """Compare one bronze bucket and its manifest with the source.

    `manifest_rows` are the manifest's entries (`path`, `status`, `version`, `bronze_key`);
    `history_paths` the paths with superseded versions; `expected_keys` the archive files
    the case asked for (default: all of `source`).
    """
    wanted = set(source) if expected_keys is None else expected_keys
    result = Audit(expected=len(wanted), in_bronze=len(bronze))
    for key, (size, sha) in sorted(bronze.items()):
        truth = source.get(key)
        zipped = source.get(key.removesuffix(CHECKSUM_SUFFIX))
        if key.endswith(CHECKSUM_SUFFIX) and zipped is not None:  # ingest copies sidecars
            if zipped.sidecar is not None and (size, sha) != zipped.sidecar:
                result.corrupt += 1
                result.note("corrupt", key)
            continue
        if truth is None:
            result.stray += 1
            result.note("stray", key)
        elif (size, sha) != (truth.size, truth.sha256):
            result.corrupt += 1
            result.note("corrupt", key)
        elif key not in wanted:
            result.unasked += 1
            result.note("unasked", key)
    for key in sorted(wanted):
        if key not in bronze:
            result.lost += 1
            result.note("lost", key)
    for row in manifest_rows:
        if str(row.status) != "verified":
            continue
        result.verified += 1
        key = row.bronze_key or row.path
        truth, held = source.get(row.path), bronze.get(key)
        if truth is None or held is None or held != (truth.size, truth.sha256):
            result.lying += 1
            result.note("lying", row.path)
        if row.version != 1 or row.path in history_paths:
            result.repeated += 1
            result.note("repeated", row.path)
    return result
