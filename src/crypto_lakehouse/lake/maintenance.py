"""Table maintenance for every silver and gold table: compact, expire, remove orphans.

    compact   small data files of a partition -> large sorted files (lake/compaction.py),
              one snapshot per group of jobs of at most COMMIT_INPUT_BYTES input
    expire    snapshots older than `expire_older_than` go, except the last `retain_last`
              of the table's history and every branch or tag head: metadata.json then
              lists a bounded number of snapshots however many commits the table took
    orphans   files under the table's location that no kept snapshot, manifest or
              metadata file references and that are older than `orphans_older_than` are
              deleted: files replaced by compaction once their snapshots expired, and data
              files of writers that crashed before their commit

The steps run in that order, so files replaced by a compaction stay readable through the
snapshots kept for time travel and are deleted by a later run, once those expire. The
grace period protects files a running writer has written but not yet committed. Every
step is idempotent: a second run over an unchanged table does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta

from pyiceberg.table import Table
from pyiceberg.table.metadata import TableMetadata

from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.lake.compaction import (
    RewriteJob,
    commit_rewrite,
    current_files,
    delete_paths,
    plan_rewrites,
    rewrite,
    target_file_bytes,
)
from crypto_lakehouse.lake.warehouse import GOLD, SILVER, Warehouse
from crypto_lakehouse.storage import S3Storage

DEFAULT_EXPIRE_OLDER_THAN = timedelta(days=7)
DEFAULT_RETAIN_LAST = 5
DEFAULT_ORPHANS_OLDER_THAN = timedelta(days=1)
COMMIT_INPUT_BYTES = 4 * 1024 * 1024 * 1024  # rewritten input per compaction snapshot

Progress = Callable[[str, str, int, int], None]  # (table, step, done, total)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class MaintenanceOptions:
    """What one run does; `now` is injectable so tests can age files and snapshots."""

    compact: bool = True
    dry_run: bool = False
    expire_older_than: timedelta = DEFAULT_EXPIRE_OLDER_THAN
    retain_last: int = DEFAULT_RETAIN_LAST
    orphans_older_than: timedelta = DEFAULT_ORPHANS_OLDER_THAN
    now: Callable[[], datetime] = utc_now

    def __post_init__(self) -> None:
        if self.retain_last < 1:
            raise ConfigError("retain_last must be at least 1 (the current snapshot)")
        if self.expire_older_than < timedelta(0) or self.orphans_older_than < timedelta(0):
            raise ConfigError("ages must not be negative")


@dataclass
class TableReport:
    """What maintenance found and did on one table (in a dry run: would do)."""

    table: str
    files_before: int = 0
    files_after: int = 0
    rows_before: int = 0
    rows_after: int = 0
    jobs: int = 0  # partitions (or partition parts) compacted
    jobs_abandoned: int = 0  # their files changed meanwhile: left for the next run
    files_rewritten: int = 0
    files_written: int = 0
    snapshots_before: int = 0
    snapshots_expired: int = 0
    orphans: list[str] = field(default_factory=list)  # s3:// URIs
    orphan_bytes: int = 0
    metadata_bytes_before: int = 0
    metadata_bytes_after: int = 0
    seconds: float = 0.0
    note: str = ""
    error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class MaintenanceReport:
    tables: list[TableReport]
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not any(t.error for t in self.tables)

    def as_dict(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "ok": self.ok,
            "tables": [t.as_dict() for t in self.tables],
        }

    def markdown(self) -> str:
        """The report as a Markdown table (a flow-run artifact)."""
        lines = [
            "# maintain-lake" + (" (dry run)" if self.dry_run else ""),
            "",
            "| table | files | rows | snapshots expired | orphans | metadata.json | note |",
            "|---|---|---|---|---|---|---|",
        ]
        for t in self.tables:
            lines.append(
                f"| {t.table} | {t.files_before:,} -> {t.files_after:,} | {t.rows_after:,} "
                f"| {t.snapshots_expired} | {len(t.orphans)} "
                f"| {t.metadata_bytes_before:,} -> {t.metadata_bytes_after:,} B "
                f"| {t.error or t.note} |"
            )
        return "\n".join(lines)


def lake_tables(warehouse: Warehouse) -> list[str]:
    """Every silver and gold table, `namespace.name`."""
    return warehouse.tables(SILVER) + warehouse.tables(GOLD)


def maintain(
    warehouse: Warehouse,
    options: MaintenanceOptions,
    tables: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> MaintenanceReport:
    """Maintain `tables` (default: every silver and gold table), one after another.

    Raises ConfigError for a named table that does not exist. A table whose maintenance
    fails is reported with its error and the others still run.
    """
    known = lake_tables(warehouse)
    chosen = list(tables) if tables else known
    unknown = [t for t in chosen if t.lower() not in known]
    if unknown:
        raise ConfigError(f"no such table: {', '.join(unknown)} (known: {', '.join(known)})")
    storage = S3Storage(warehouse.config.endpoint)
    reports = []
    for identifier in chosen:
        try:
            reports.append(
                maintain_table(warehouse, storage, identifier.lower(), options, progress)
            )
        except Exception as exc:
            reports.append(TableReport(identifier, error=f"{type(exc).__name__}: {exc}"))
    return MaintenanceReport(reports, options.dry_run)


def maintain_table(
    warehouse: Warehouse,
    storage: S3Storage,
    identifier: str,
    options: MaintenanceOptions,
    progress: Progress | None = None,
) -> TableReport:
    """Compact, expire and remove orphans on one table; returns what it did."""
    started = time.monotonic()
    say = progress or (lambda *_: None)
    report = TableReport(identifier)
    table = warehouse.catalog.load_table(identifier)
    report.files_before, report.rows_before = _totals(table)
    report.snapshots_before = len(table.metadata.snapshots)
    report.metadata_bytes_before = _metadata_bytes(storage, table)
    if options.compact:
        say(identifier, "compact", 0, 1)
        _compact(warehouse, table, options.dry_run, report, say)
    say(identifier, "expire", 0, 1)
    now = options.now()
    cutoff_ms = int((now - options.expire_older_than).timestamp() * 1000)
    report.snapshots_expired = expire_snapshots(
        warehouse, identifier, cutoff_ms, options.retain_last, dry_run=options.dry_run
    )
    say(identifier, "orphans", 0, 1)
    orphans = find_orphans(warehouse, storage, identifier, now - options.orphans_older_than)
    report.orphans = [uri for uri, _ in orphans]
    report.orphan_bytes = sum(size for _, size in orphans)
    if orphans and not options.dry_run:
        delete_uris(storage, report.orphans)
    table = warehouse.catalog.load_table(identifier)
    report.files_after, report.rows_after = _totals(table)
    report.metadata_bytes_after = _metadata_bytes(storage, table)
    if options.dry_run:
        report.files_after = report.files_before - report.files_rewritten + report.files_written
    report.seconds = round(time.monotonic() - started, 3)
    say(identifier, "done", 1, 1)
    return report


# -- compaction -----------------------------------------------------------------------


def _compact(
    warehouse: Warehouse, table: Table, dry_run: bool, report: TableReport, say: Progress
) -> None:
    files = current_files(table)
    if files.has_deletes:
        report.note = "not compacted: the table has delete files"
        return
    target = target_file_bytes(table)
    jobs = plan_rewrites(files.data, target, default_spec_id=table.spec().spec_id)
    report.jobs = len(jobs)
    if dry_run:
        report.files_rewritten = sum(len(j.files) for j in jobs)
        report.files_written = sum(1 + j.input_bytes // target for j in jobs)  # an estimate
        return
    done = 0
    for group in commit_groups(jobs):
        written: list[tuple[RewriteJob, list]] = []
        try:
            for job in group:
                written.append((job, rewrite(table, job, target)))
                done += 1
                say(report.table, "compact", done, len(jobs))
        except BaseException:
            delete_paths(table, (f.file_path for _, new in written for f in new))
            raise
        commit_group(warehouse, table, report, written)


def commit_groups(jobs: list[RewriteJob]) -> Iterator[list[RewriteJob]]:
    """Consecutive jobs whose input adds up to at most COMMIT_INPUT_BYTES (at least one)."""
    group: list[RewriteJob] = []
    size = 0
    for job in jobs:
        if group and size + job.input_bytes > COMMIT_INPUT_BYTES:
            yield group
            group, size = [], 0
        group.append(job)
        size += job.input_bytes
    if group:
        yield group


def commit_group(
    warehouse: Warehouse, table: Table, report: TableReport, written: list[tuple[RewriteJob, list]]
) -> None:
    """One snapshot for the group; when some of its files changed meanwhile, job by job."""
    identifier = report.table
    old = [f for job, _ in written for f in job.files]
    new = [f for _, files in written for f in files]
    if commit_rewrite(warehouse, identifier, old, new):
        report.files_rewritten += len(old)
        report.files_written += len(new)
        return
    for job, files in written:
        if commit_rewrite(warehouse, identifier, list(job.files), files):
            report.files_rewritten += len(job.files)
            report.files_written += len(files)
        else:
            report.jobs_abandoned += 1
            delete_paths(table, (f.file_path for f in files))


# -- snapshot expiry ------------------------------------------------------------------


def snapshots_to_expire(metadata: TableMetadata, cutoff_ms: int, retain_last: int) -> list[int]:
    """Snapshots older than `cutoff_ms`, minus the last `retain_last` of the current
    snapshot's history and every branch or tag head."""
    keep = {ref.snapshot_id for ref in metadata.refs.values()}
    walk, kept = metadata.current_snapshot(), 0
    while walk is not None and kept < retain_last:
        keep.add(walk.snapshot_id)
        kept += 1
        parent = walk.parent_snapshot_id
        walk = metadata.snapshot_by_id(parent) if parent is not None else None
    return sorted(
        s.snapshot_id
        for s in metadata.snapshots
        if s.timestamp_ms < cutoff_ms and s.snapshot_id not in keep
    )


def expire_snapshots(
    warehouse: Warehouse, identifier: str, cutoff_ms: int, retain_last: int, *, dry_run: bool
) -> int:
    """Remove expired snapshots from the table's metadata; returns how many (would) go."""

    def change(table: Table) -> int:
        ids = snapshots_to_expire(table.metadata, cutoff_ms, retain_last)
        if ids and not dry_run:
            table.maintenance.expire_snapshots().by_ids(ids).commit()
        return len(ids)

    return warehouse.commit(identifier, change)


# -- orphan files ---------------------------------------------------------------------


def find_orphans(
    warehouse: Warehouse, storage: S3Storage, identifier: str, older_than: datetime
) -> list[tuple[str, int]]:
    """(URI, size) of every file under the table's location that nothing kept references
    and that was last written before `older_than`.

    The location is listed before the table is loaded: a file committed in between is
    then in the references, and one written after the listing is not looked at.
    """
    table = warehouse.catalog.load_table(identifier)
    bucket, prefix = split_uri(table.metadata.location)
    listed = [
        (obj.key, obj.size)
        for obj in storage.list_objects(bucket, prefix.rstrip("/") + "/")
        if obj.last_modified < older_than
    ]
    referenced = referenced_keys(warehouse.catalog.load_table(identifier))
    return [
        (f"s3://{bucket}/{key}", size)
        for key, size in listed
        if f"{bucket}/{key}" not in referenced
    ]


def referenced_keys(table: Table) -> set[str]:
    """`bucket/key` of every file the table's metadata reaches: metadata files (current
    and logged), statistics, and each kept snapshot's manifest list, manifests and live
    data and delete files."""
    uris = {table.metadata_location}
    uris.update(entry.metadata_file for entry in table.metadata.metadata_log)
    uris.update(s.statistics_path for s in table.metadata.statistics)
    uris.update(s.statistics_path for s in table.metadata.partition_statistics)
    seen: set[str] = set()
    for snapshot in table.metadata.snapshots:
        uris.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            if manifest.manifest_path in seen:
                continue
            seen.add(manifest.manifest_path)
            uris.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                uris.add(entry.data_file.file_path)
    return {"/".join(split_uri(uri)) for uri in uris}


def split_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` (or s3a://, s3n://) -> (bucket, key)."""
    _, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"not an object-store URI: {uri}")
    bucket, _, key = rest.partition("/")
    return bucket, key


def delete_uris(storage: S3Storage, uris: list[str]) -> None:
    by_bucket: dict[str, list[str]] = {}
    for uri in uris:
        bucket, key = split_uri(uri)
        by_bucket.setdefault(bucket, []).append(key)
    for bucket, keys in by_bucket.items():
        storage.delete_keys(bucket, keys)


# -- small helpers --------------------------------------------------------------------


def _totals(table: Table) -> tuple[int, int]:
    """(data files, rows) of the current snapshot, from its summary."""
    snapshot = table.current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return 0, 0
    summary = snapshot.summary
    return int(summary.get("total-data-files", 0)), int(summary.get("total-records", 0))


def _metadata_bytes(storage: S3Storage, table: Table) -> int:
    bucket, key = split_uri(table.metadata_location)
    info = storage.head(bucket, key)
    return info.size if info is not None else 0
