"""The transfer engine's vocabulary: what a caller asks for, and what it gets back.

These are plain dataclasses because they live inside the process; the executor service
and the CLI turn them into pydantic/JSON at their own boundaries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crypto_lakehouse.config import MIB, Settings
from crypto_lakehouse.storage.endpoint import Endpoint
from crypto_lakehouse.storage.urls import QUARANTINE_PREFIX, S3Url

if TYPE_CHECKING:
    from crypto_lakehouse.transfer.listing import ListedObject

MB = 1_000_000


class ListingScope(StrEnum):
    """What a caller's `source_listing` is complete for: what a wildcard line may rely on.

    A wildcard line fetches every object its prefix matches, so the engine writes one only
    over a run of keys that the listing shows with their real neighbours.
    """

    PREFIX = "prefix"  # every object under source_url.prefix
    FOLDERS = "folders"  # every object under each folder (to its last `/`) of a listed key
    OBJECTS = "objects"  # just the objects to copy: one line each


class Mode(StrEnum):
    """How bytes move.

    `direct`: one endpoint, server-side CopyObject. `staged`: two endpoints, bytes pass
    through a capped local staging folder and are SHA-256 checked there. `traditional`:
    one object at a time, download then upload (the baseline we measure against).
    `auto`: direct when both sides are the same service and identity, else staged.
    """

    DIRECT = "direct"
    STAGED = "staged"
    TRADITIONAL = "traditional"
    AUTO = "auto"


class TransferOutcome(StrEnum):
    """What happened to one object."""

    COPIED = "copied"
    SKIPPED = "skipped"  # already up to date at the destination
    FAILED = "failed"  # s5cmd (or S3) reported an error; `error` says which
    CORRUPT = "corrupt"  # checksum mismatch: quarantined, never written to the destination


@dataclass(slots=True)
class ObjectResult:
    """One object's outcome. Keys are full keys in their buckets."""

    source_key: str
    dest_key: str
    size: int
    outcome: TransferOutcome
    sha256: str | None = None  # the verified digest, when the mode verified it
    etag: str | None = None  # the source ETag as listed
    error: str | None = None  # why it failed / was corrupt


def _default(setting: str) -> Any:
    """A knob's default is the one `Settings` declares: one home for each."""
    return Settings.model_fields[setting].default


@dataclass
class EngineOptions:
    """Knobs for every run of one engine; built once from Settings at the edge.

    Defaults are `Settings`' own, except the memory tier: an engine built directly (tests,
    benchmarks) stages on disk unless it is given a tmpfs; `from_settings` passes it on.
    """

    staging_root: Path
    max_concurrent: int = _default("s5cmd_max_concurrent")  # s5cmd --numworkers
    source_workers: int = _default("s5cmd_source_workers")  # --numworkers reading the source
    part_size_mib: int = _default("s5cmd_part_size") // MIB  # s5cmd --part-size (MiB)
    retry_count: int = _default("s5cmd_retry_count")  # the real work's; probes use 0
    staging_cap_bytes: int = _default("staging_cap_bytes")
    staging_memory_root: Path | None = None  # tmpfs for small chunks (STAGING_MEMORY_DIR)
    staging_memory_cap_bytes: int = 0  # of staging_cap_bytes, how much may sit in memory
    log_level: str = _default("s5cmd_log_level")
    stats: bool = _default("s5cmd_stats")  # s5cmd --stat (a global flag)
    probe_timeout: float = 5.0  # seconds for the pre-flight checks of both sides
    batch_objects: int = 5000  # objects per s5cmd process (bounds memory and staging)
    chunk_bytes: int = _default("staging_chunk_bytes")  # staged: bytes per chunk
    overlap: bool = _default("staging_overlap")  # staged: download k+1 while k uploads
    key_covers: bool = _default("s5cmd_key_covers")  # listed objects: `x.zip*` for x + sidecar

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineOptions:
        return cls(
            staging_root=settings.staging_root,
            max_concurrent=settings.s5cmd_max_concurrent,
            source_workers=settings.s5cmd_source_workers,
            part_size_mib=settings.part_size_mib,
            retry_count=settings.s5cmd_retry_count,
            staging_cap_bytes=settings.staging_cap_bytes,
            staging_memory_root=settings.staging_memory_dir,
            staging_memory_cap_bytes=settings.staging_memory_cap_bytes,
            log_level=settings.s5cmd_log_level,
            stats=settings.s5cmd_stats,
            overlap=settings.staging_overlap,
            chunk_bytes=settings.staging_chunk_bytes,
            key_covers=settings.s5cmd_key_covers,
        )

    def as_json(self) -> dict[str, Any]:
        """Every knob as JSON values (paths as strings), for a child process."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(value)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EngineOptions:
        """The inverse of `as_json`."""
        values = dict(data)
        for key in ("staging_root", "staging_memory_root"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        return cls(**values)


@dataclass
class TransferRequest:
    """Copy everything under `source_url` (or just `keys`) to `dest_url`.

    A source key `source_url.prefix + rest` lands at `dest_url.prefix + rest`. With
    explicit `keys`, each must start with `source_url.prefix`.
    """

    source: Endpoint
    source_url: S3Url
    dest: Endpoint
    dest_url: S3Url
    mode: Mode = Mode.AUTO
    keys: Sequence[str] | None = None  # explicit full source keys; None = the whole prefix
    expected_sha256: Mapping[str, str] | None = None  # by source key, from the caller
    verify_sidecars: bool = True  # honour sibling `<key>.CHECKSUM` files when present
    quarantine_prefix: str = QUARANTINE_PREFIX  # on the destination bucket
    delete_extra: bool = False  # remove destination objects the source does not have
    operation: str = "sync"  # "sync" skips up-to-date objects; "copy" always copies
    # The caller's own listing of source_url.prefix, sorted by key, and complete for that
    # prefix (wildcard lines would fetch objects missing from it); None = the engine lists.
    source_listing: Sequence[ListedObject] | None = None
    # What `source_listing` is complete for. FOLDERS or OBJECTS let a caller that knows
    # less than the whole prefix still spare the engine the source listing (under a wide
    # prefix of a big archive, millions of keys): wildcard lines then stay inside each
    # folder (FOLDERS), or every object gets its own line (OBJECTS).
    source_listing_scope: ListingScope = ListingScope.PREFIX

    def dest_key(self, source_key: str) -> str:
        """Where `source_key` lands."""
        return self.dest_url.prefix + source_key[len(self.source_url.prefix) :]


@dataclass
class TransferProgress:
    """A progress snapshot, sent to the caller's callback after each finished object/batch."""

    objects_done: int
    bytes_done: int
    objects_total: int
    bytes_total: int


@dataclass
class TransferSummary:
    """Counts and timing of one run."""

    mode: Mode
    objects: int
    bytes: int
    copied: int
    skipped: int
    failed: int
    corrupt: int
    seconds: float
    bytes_copied: int = 0
    staging_peak_bytes: int = 0  # most bytes held in staging at once (staged mode)
    cancelled: bool = False
    deleted: int = 0  # destination objects removed by delete_extra
    retried: dict[str, int] = field(default_factory=dict)  # retried requests, by cause

    @property
    def retries_text(self) -> str:
        """ "12 (SlowDown 10, connection cut 2)", or "" when nothing was retried."""
        if not self.retried:
            return ""
        causes = ", ".join(f"{cause} {n}" for cause, n in sorted(self.retried.items()))
        return f"{sum(self.retried.values())} ({causes})"

    @property
    def mb_per_s(self) -> float:
        """Throughput of the bytes actually moved, in MB (10^6) per second."""
        return self.bytes_copied / MB / self.seconds if self.seconds > 0 else 0.0

    @property
    def objects_per_s(self) -> float:
        return self.objects / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """True when every object was copied or skipped (and the run was not cancelled)."""
        return self.failed == 0 and self.corrupt == 0 and not self.cancelled

    def as_dict(self) -> dict[str, object]:
        return {
            "mode": str(self.mode),
            "objects": self.objects,
            "bytes": self.bytes,
            "bytes_copied": self.bytes_copied,
            "copied": self.copied,
            "skipped": self.skipped,
            "failed": self.failed,
            "corrupt": self.corrupt,
            "seconds": round(self.seconds, 3),
            "mb_per_s": round(self.mb_per_s, 2),
            "objects_per_s": round(self.objects_per_s, 1),
            "staging_peak_bytes": self.staging_peak_bytes,
            "deleted": self.deleted,
            "retried": self.retried,
            "cancelled": self.cancelled,
            "ok": self.ok,
        }


@dataclass
class TransferReport:
    """The summary plus one result per object considered."""

    summary: TransferSummary
    results: list[ObjectResult] = field(default_factory=list)

    def failures(self) -> list[ObjectResult]:
        return [r for r in self.results if r.outcome is TransferOutcome.FAILED]

    def corrupt(self) -> list[ObjectResult]:
        return [r for r in self.results if r.outcome is TransferOutcome.CORRUPT]

    def copied(self) -> list[ObjectResult]:
        return [r for r in self.results if r.outcome is TransferOutcome.COPIED]
