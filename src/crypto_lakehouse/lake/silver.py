"""Bronze zips -> silver Iceberg rows, many source files per data file, one commit per batch.

A batch is up to `batch_files` source files of one table, in the order their rows sit in
the data files (interval, month or day, symbol, period). The builder:

1. plans the batch with indexed ledger lookups: files already in at this SHA-256 are
   skipped; a daily file whose month is in silver through its monthly file is
   `superseded` (no rows); a monthly file takes the place of the daily files of its month
   that are in silver (their rows are deleted in the same commit); a replaced file's old
   rows are deleted likewise. No anti-join against the table's rows, ever.
2. reads small files whole (fetched by a thread pool, SHA-256 checked before parsing) and
   streams large ones, parsing with Arrow kernels (lake/reading.py);
3. writes the small files' rows together into a few Parquet data files, large files into
   data files of their own (their checksum is known only at the end);
4. commits through the journal (lake/committer.py): one snapshot, then the ledger.

Outcomes per file: transformed, skipped (this SHA-256 is already in), superseded, drift
(flagged, skipped), corrupt (bytes or zip damaged). Bad rows go to `silver.rejects`.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cached_property

import pyarrow as pa
import sqlalchemy as sa
from pyarrow import fs as pafs
from pyiceberg.expressions import And, BooleanExpression, EqualTo, In
from pyiceberg.table import Table

from crypto_lakehouse.archive.catalog import Frequency
from crypto_lakehouse.archive.paths import ROOT, ArchiveFile, month_end, month_start, parse_key
from crypto_lakehouse.catalog.manifest import ManifestEntry
from crypto_lakehouse.errors import (
    ChecksumMismatch,
    ConfigError,
    EndpointUnreachable,
    LakehouseError,
    SchemaDrift,
    ZipFormatError,
)
from crypto_lakehouse.lake.committer import BatchChange, Journal, drop_journal
from crypto_lakehouse.lake.ledger import FileRecord, Ledger, PendingFile, Status, drop_ledger
from crypto_lakehouse.lake.parser import Layout
from crypto_lakehouse.lake.reading import FileRows, read_streaming, read_whole
from crypto_lakehouse.lake.s3fs import s3_filesystem
from crypto_lakehouse.lake.source import ResumableBody
from crypto_lakehouse.lake.tables import SilverTable, rejects_schema
from crypto_lakehouse.lake.warehouse import SILVER, LakeConfig, Warehouse
from crypto_lakehouse.lake.writer import DataFileWriter
from crypto_lakehouse.lake.zipstream import ZipMemberStream
from crypto_lakehouse.observability import tracing
from crypto_lakehouse.observability.metrics import (
    SILVER_FILES,
    SILVER_REJECTED_LINES,
    SILVER_ROWS,
)
from crypto_lakehouse.storage import S3Storage

CHUNK_ROWS = 1_000_000  # rows buffered before they become data files
BATCH_FILES = 5_000  # source files per commit: what a crash can cost at most
BATCH_BYTES = 1 << 30  # zip bytes per batch
# Zips above this stream and get data files of their own. A zip read whole costs about ten
# times its size in memory (bytes, CSV, Arrow, decorated rows).
LARGE_FILE_BYTES = 8 << 20
# Large files of one batch are read side by side: one stream leaves a core idle while it waits
# on S3 or the writer (docs/decisions.md). The lanes share one chunk's worth of rows.
LARGE_LANES = 2
FETCH_THREADS = 16
FETCH_WINDOW_BYTES = 32 << 20  # zip bytes read whole at once, however many files that is
_LOCK_SPACE = 7_302_115  # pg advisory lock namespace: one batch writer per table


@dataclass(frozen=True)
class BronzeFile:
    """A verified bronze object: its key in the bronze bucket and the manifest's SHA-256.

    `path` is the archive key (`data/...`) when bronze keeps the files under a prefix.
    """

    key: str
    sha256: str
    path: str | None = None
    bucket: str | None = None  # None: the builder's bronze bucket
    size: int | None = None

    @classmethod
    def from_entry(cls, entry: ManifestEntry) -> BronzeFile:
        """From a verified manifest row."""
        if entry.sha256 is None:
            raise ConfigError(f"{entry.path}: the manifest has no SHA-256 for it")
        return cls(
            entry.bronze_key or entry.path,
            entry.sha256,
            entry.path,
            entry.bronze_bucket,
            entry.size,
        )

    @classmethod
    def from_pending(cls, item: PendingFile) -> BronzeFile:
        return cls(
            item.bronze_key or item.path, item.sha256, item.path, item.bronze_bucket, item.size
        )

    @property
    def archive_path(self) -> str:
        return self.path or self.key

    @cached_property
    def archive(self) -> ArchiveFile:
        return parse_key(self.archive_path, ROOT)


@dataclass
class FileOutcome:
    """What the builder did with one bronze file."""

    key: str
    table: str
    status: str  # transformed | skipped | superseded | drift | corrupt
    rows: int = 0
    rejects: int = 0
    duplicates: int = 0
    replaced: bool = False
    mode: str | None = None  # fast | lines
    message: str | None = None
    layout: Layout | None = field(default=None, repr=False)


def schema_fingerprint(layout: SilverTable) -> str:
    """Changes when the data type's columns or types change (drift is retried then)."""
    text = ";".join(f"{c.name}:{c.type}:{c.time}" for c in layout.csv.columns)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def planning_order(bronze: BronzeFile) -> tuple:
    """The order rows sit in the data files: table, monthly first, interval, period, symbol."""
    a = bronze.archive
    return (
        a.market.value,
        a.data_type.value,
        a.frequency is Frequency.DAILY,
        a.interval or "",
        month_start(a.period),
        a.symbol,
        a.period,
    )


def batches(
    files: Iterable[BronzeFile], *, max_files: int = BATCH_FILES, max_bytes: int = BATCH_BYTES
) -> Iterator[list[BronzeFile]]:
    """Consecutive files of one table (in planning order), bounded by count and zip bytes."""
    current: list[BronzeFile] = []
    table, size = None, 0
    for bronze in files:
        a = bronze.archive
        this = (a.market, a.data_type)
        if current and (this != table or len(current) >= max_files or size >= max_bytes):
            yield current
            current, size = [], 0
        current.append(bronze)
        table, size = this, size + (bronze.size or 0)
    if current:
        yield current


class SilverBuilder:
    """Turns batches of bronze files into silver rows; one writer per table at a time."""

    def __init__(
        self,
        warehouse: Warehouse,
        ledger: Ledger,
        storage: S3Storage,
        bronze_bucket: str,
        *,
        chunk_rows: int = CHUNK_ROWS,
        fetch_threads: int = FETCH_THREADS,
        large_file_bytes: int = LARGE_FILE_BYTES,
    ) -> None:
        self.warehouse = warehouse
        self.ledger = ledger
        self.journal = Journal(ledger)
        self.storage = storage
        self.bucket = bronze_bucket
        self.chunk_rows = chunk_rows
        self.fetch_threads = fetch_threads
        self.large_file_bytes = large_file_bytes

    # -- entry points ---------------------------------------------------------------------------

    def transform(self, bronze: BronzeFile) -> FileOutcome:
        """Bring one bronze file version into silver (or flag it); never raises for bad data."""
        return self.transform_many([bronze])[0]

    def transform_many(self, files: list[BronzeFile]) -> list[FileOutcome]:
        """Every file, batched in planning order; outcomes in the order given."""
        outcomes: dict[str, FileOutcome] = {}
        for batch in batches(sorted(files, key=planning_order)):
            for outcome in self.build_batch(batch):
                outcomes[outcome.key] = outcome
        return [outcomes[f.key] for f in files]

    def recover(self) -> dict[str, int]:
        """Finish or undo what a crashed run left (see lake/committer.py)."""
        return self.journal.recover(self.warehouse)

    def ledger_record_for(self, bronze: BronzeFile, status: Status, **counts: object) -> FileRecord:
        """The ledger row a build writes for `bronze` (for tools and tests that seed a ledger)."""
        first = bronze.archive
        layout = SilverTable.of(first.market, first.data_type)
        return _record(bronze, layout, schema_fingerprint(layout), status, "", **counts)

    def table_for(self, layout: SilverTable) -> Table:
        return self.warehouse.ensure_table(
            layout.identifier,
            layout.arrow_schema(),
            layout.partition_by,
            layout.properties,
            sort_by=layout.sort_by,
        )

    # -- one batch ------------------------------------------------------------------------------

    def build_batch(self, files: list[BronzeFile]) -> list[FileOutcome]:
        """Plan, read, write and commit one batch of one table's files."""
        first = files[0].archive
        layout = SilverTable.of(first.market, first.data_type)
        with self._table_lock(layout.identifier):
            return self._build_locked(layout, files)

    def _build_locked(self, layout: SilverTable, files: list[BronzeFile]) -> list[FileOutcome]:
        fingerprint = schema_fingerprint(layout)
        priors = self.ledger.records([f.archive_path for f in files])
        outcomes: list[FileOutcome] = []
        todo: list[BronzeFile] = []
        for bronze in files:
            skipped = _already_in(bronze, priors.get(bronze.archive_path), layout, fingerprint)
            if skipped is None:
                todo.append(bronze)
            else:
                outcomes.append(skipped)
        if not todo:
            return outcomes
        market, data_type = layout.csv.market.value, layout.csv.data_type.value
        batch_id = str(uuid.uuid4())
        change = BatchChange(layout.identifier)
        daily = [f for f in todo if f.archive.frequency is Frequency.DAILY]
        monthly = [f for f in todo if f.archive.frequency is Frequency.MONTHLY]
        covered = self.ledger.monthly_in(market, data_type, {_series(f) for f in daily})
        covered |= {_series(f) for f in monthly}  # a monthly file in this very batch
        replaced_dailies = self.ledger.dailies_under(
            market, data_type, {_series(f) for f in monthly}
        )
        to_read: list[BronzeFile] = []
        for bronze in todo:
            prior = priors.get(bronze.archive_path)
            if bronze.archive.frequency is Frequency.DAILY and _series(bronze) in covered:
                record = _record(bronze, layout, fingerprint, Status.SUPERSEDED, batch_id)
                change.records.append(record)
                if prior is not None and prior.status is Status.TRANSFORMED:
                    change.stale_sources.append(bronze.archive_path)
                outcomes.append(FileOutcome(bronze.key, layout.identifier, "superseded"))
                continue
            to_read.append(bronze)
            if prior is not None and prior.status is Status.TRANSFORMED:
                change.stale_sources.append(bronze.archive_path)
            if prior is not None and prior.rejects:
                change.rejects_stale.append(bronze.archive_path)
        for bronze in monthly:
            for path in replaced_dailies.get(_series(bronze), []):
                change.stale_sources.append(path)
                change.superseded.append(path)
        if change.stale_sources:
            change.stale_where = _stale_partitions(layout, todo)
        self.journal.open(batch_id, layout.identifier)
        table = self.table_for(layout)
        change.table = table
        try:
            with tracing.step(
                "silver.read",
                table=layout.identifier,
                batch_id=batch_id,
                files=len(to_read),
                periods=_periods(to_read),
            ) as span:
                read = self._read_and_write(table, layout, fingerprint, batch_id, to_read, change)
                tracing.note(
                    span,
                    rows=sum(o.rows for o in read),
                    rejects=sum(o.rejects for o in read),
                    data_files=len(change.data_files),
                )
            self.journal.commit(self.warehouse, batch_id, change)
        except BaseException:
            self.journal.abandon(self.warehouse, batch_id, layout.identifier)
            raise
        outcomes.extend(read)
        for outcome in read:
            self._count(layout, outcome)
        return outcomes

    def _read_and_write(
        self,
        table: Table,
        layout: SilverTable,
        fingerprint: str,
        batch_id: str,
        files: list[BronzeFile],
        change: BatchChange,
    ) -> list[FileOutcome]:
        names = itertools.count(0)  # file names are unique per batch: uuid + this counter
        shared = self._writer(table, self.chunk_rows, batch_id, names)
        outcomes: list[FileOutcome] = []
        small = [f for f in files if not self._is_large(f)]
        large = [f for f in files if self._is_large(f)]
        try:
            for bronze, result in self._fetch_and_read(small, layout):
                outcomes.append(
                    self._take(
                        bronze,
                        layout,
                        fingerprint,
                        batch_id,
                        change,
                        lambda r=result: _unwrap(r),
                        shared,
                    )
                )
            shared.flush()
            outcomes.extend(
                self._read_large_files(table, layout, fingerprint, batch_id, large, change, names)
            )
        except BaseException:
            shared.discard()
            raise
        change.data_files.extend(shared.files)
        return outcomes

    def _writer(
        self, table: Table, chunk_rows: int, batch_id: str, names: itertools.count[int]
    ) -> DataFileWriter:
        """A writer of the batch's data files, each path journaled before it is written."""
        return DataFileWriter(
            table, chunk_rows, write_uuid=uuid.UUID(batch_id), counter=names,
            on_paths=lambda paths: self.journal.add_paths(batch_id, paths),
        )  # fmt: skip

    def _read_large_files(
        self,
        table: Table,
        layout: SilverTable,
        fingerprint: str,
        batch_id: str,
        files: list[BronzeFile],
        change: BatchChange,
        names: itertools.count[int],
    ) -> list[FileOutcome]:
        """Large files streamed `LARGE_LANES` at a time, each into data files of its own
        (discarded when the file turns out bad). Each lane buffers `chunk_rows / lanes`
        rows, so the rows held stay those of one lane. Outcomes in the order given."""
        lanes = max(1, min(LARGE_LANES, len(files)))
        chunk_rows = max(1, self.chunk_rows // lanes)

        def one(bronze: BronzeFile) -> FileOutcome:
            own = self._writer(table, chunk_rows, batch_id, names)
            try:
                outcome = self._take(
                    bronze, layout, fingerprint, batch_id, change,
                    lambda: self._read_large(bronze, layout, own), own,
                )  # fmt: skip
                if outcome.status == "transformed":
                    own.flush()
                    change.data_files.extend(own.files)
                else:
                    own.discard()
            except BaseException:
                own.discard()
                raise
            return outcome

        if lanes == 1:
            return [one(bronze) for bronze in files]
        with ThreadPoolExecutor(lanes, thread_name_prefix="silver-large") as pool:
            return list(pool.map(one, files))

    def _take(
        self,
        bronze: BronzeFile,
        layout: SilverTable,
        fingerprint: str,
        batch_id: str,
        change: BatchChange,
        read,
        writer: DataFileWriter,
    ) -> FileOutcome:
        """Read one file; its rows to `writer`, its ledger row and outcome to the batch."""
        try:
            rows: FileRows = read()
        except SchemaDrift as exc:
            return self._flag(bronze, layout, fingerprint, batch_id, change, Status.DRIFT, exc)
        except (ChecksumMismatch, ZipFormatError) as exc:
            return self._flag(bronze, layout, fingerprint, batch_id, change, Status.CORRUPT, exc)
        if rows.rows is not None:
            writer.add(rows.rows)
        rejects = _rejects_table(rows.rejects, bronze, layout)
        if rejects.num_rows:
            change.rejects.append(rejects)
        units = sorted(set(rows.layout.units.values()))
        record = _record(
            bronze,
            layout,
            fingerprint,
            Status.TRANSFORMED,
            batch_id,
            rows=rows.count,
            rejects=rejects.num_rows,
            duplicates=rows.duplicates,
            header=rows.layout.header,
            time_unit=",".join(units) or None,
        )
        change.records.append(record)
        prior_replaced = bronze.archive_path in change.stale_sources
        return FileOutcome(
            bronze.key,
            layout.identifier,
            "transformed",
            rows.count,
            rejects.num_rows,
            rows.duplicates,
            prior_replaced,
            rows.mode,
            layout=rows.layout,
        )

    def _flag(
        self,
        bronze: BronzeFile,
        layout: SilverTable,
        fingerprint: str,
        batch_id: str,
        change: BatchChange,
        status: Status,
        exc: LakehouseError,
    ) -> FileOutcome:
        change.records.append(
            _record(bronze, layout, fingerprint, status, batch_id, message=str(exc))
        )
        return FileOutcome(bronze.key, layout.identifier, status.value, message=str(exc))

    # -- reading ------------------------------------------------------------------------------

    @cached_property
    def _bronze(self) -> pafs.S3FileSystem:
        """One client for every batch (thread-safe): a daily update runs some 24 batches."""
        return bronze_filesystem(self.storage)

    def _is_large(self, bronze: BronzeFile) -> bool:
        return bronze.size is None or bronze.size > self.large_file_bytes

    def _fetch_and_read(
        self, files: list[BronzeFile], layout: SilverTable
    ) -> Iterator[tuple[BronzeFile, FileRows | LakehouseError]]:
        """Small zips fetched and parsed by a thread pool (pyarrow's S3 client and CSV
        parser release the GIL), in order, a bounded window ahead."""
        if not files:
            return
        filesystem = self._bronze
        window = self.fetch_threads * 4

        def one(bronze: BronzeFile) -> FileRows | LakehouseError:
            path = f"{bronze.bucket or self.bucket}/{bronze.key}"
            try:
                with filesystem.open_input_stream(path) as stream:
                    data = stream.read()
            except OSError as exc:
                raise EndpointUnreachable(f"reading {path} from bronze: {exc}") from exc
            try:
                return self._read_small(bronze, data, layout)
            except (SchemaDrift, ChecksumMismatch, ZipFormatError) as exc:
                return exc

        with ThreadPoolExecutor(self.fetch_threads, thread_name_prefix="silver-read") as pool:
            for part in _windows(files, window, FETCH_WINDOW_BYTES):
                yield from zip(part, pool.map(one, part), strict=True)

    def _read_small(self, bronze: BronzeFile, data: bytes, layout: SilverTable) -> FileRows:
        return read_whole(data, bronze.sha256, bronze.archive, layout, bronze.archive_path)

    def _read_large(
        self, bronze: BronzeFile, layout: SilverTable, writer: DataFileWriter
    ) -> FileRows:
        def open_stream() -> ZipMemberStream:
            bucket = bronze.bucket or self.bucket
            return ZipMemberStream(ResumableBody(self.storage, bucket, bronze.key))

        return read_streaming(
            open_stream, bronze.sha256, bronze.archive, layout, bronze.archive_path, writer
        )

    # -- bookkeeping --------------------------------------------------------------------------

    def _table_lock(self, identifier: str) -> _AdvisoryLock:
        return _AdvisoryLock(self.ledger.engine, identifier)

    @staticmethod
    def _count(layout: SilverTable, outcome: FileOutcome) -> None:
        labels = {"market": layout.csv.market.value, "data_type": layout.csv.data_type.value}
        SILVER_FILES.labels(**labels, outcome=outcome.status).inc()
        if outcome.status == "transformed":
            SILVER_ROWS.labels(**labels).inc(outcome.rows)
            SILVER_REJECTED_LINES.labels(**labels).inc(outcome.rejects)


class _AdvisoryLock:
    """A session-level PostgreSQL advisory lock: one batch writer per table at a time, so two
    runs never take the same file in twice."""

    def __init__(self, engine: sa.Engine, name: str) -> None:
        self.engine = engine
        self.key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)

    def __enter__(self) -> None:
        self.conn = self.engine.connect()
        self.conn.execute(sa.select(sa.func.pg_advisory_lock(_LOCK_SPACE, self.key)))

    def __exit__(self, *exc: object) -> None:
        try:
            self.conn.execute(sa.select(sa.func.pg_advisory_unlock(_LOCK_SPACE, self.key)))
        finally:
            self.conn.close()


def _windows(files: list[BronzeFile], count: int, size: int) -> Iterator[list[BronzeFile]]:
    """Consecutive runs of at most `count` files and (past their first) `size` zip bytes:
    ten 5 MB trades days in one window would hold about 500 MB of rows at once."""
    part: list[BronzeFile] = []
    held = 0
    for bronze in files:
        if part and (len(part) >= count or held + (bronze.size or 0) > size):
            yield part
            part, held = [], 0
        part.append(bronze)
        held += bronze.size or 0
    if part:
        yield part


def _periods(files: list[BronzeFile]) -> str | None:
    """`first..last` archive period of a batch's files (the partitions it writes into)."""
    if not files:
        return None
    periods = sorted(f.archive.period for f in files)
    return f"{periods[0]}..{periods[-1]}"


def _unwrap(result: FileRows | LakehouseError) -> FileRows:
    if isinstance(result, LakehouseError):
        raise result
    return result


def bronze_filesystem(storage: S3Storage) -> pafs.S3FileSystem:
    """pyarrow's S3 client (C++, no GIL held while it waits) for the bronze endpoint."""
    return s3_filesystem(storage.endpoint)


def _already_in(
    bronze: BronzeFile, prior: FileRecord | None, layout: SilverTable, fingerprint: str
) -> FileOutcome | None:
    """`skipped` when the ledger holds this SHA-256 (drift: for an unchanged schema)."""
    if prior is None or prior.sha256 != bronze.sha256:
        return None
    if prior.status is Status.DRIFT and prior.schema_fingerprint != fingerprint:
        return None
    return FileOutcome(
        bronze.key,
        layout.identifier,
        "skipped",
        prior.rows,
        prior.rejects,
        prior.duplicates,
        message=prior.status.value,
    )


def _series(bronze: BronzeFile) -> tuple[str, str | None, date]:
    a = bronze.archive
    return a.symbol, a.interval, month_start(a.period)


def _stale_partitions(layout: SilverTable, files: list[BronzeFile]) -> BooleanExpression:
    """The partitions the replaced rows can sit in: the delete scans only those."""
    if layout.period_column == "date":
        days: set[date] = set()
        for f in files:
            first = f.archive.period
            last = first if f.archive.frequency is Frequency.DAILY else month_end(first)
            days.update(first + timedelta(n) for n in range((last - first).days + 1))
        return In("date", sorted(d.isoformat() for d in days))
    where: BooleanExpression = In(
        "month", sorted({month_start(f.archive.period).isoformat() for f in files})
    )
    intervals = sorted({f.archive.interval for f in files if f.archive.interval})
    if layout.has_interval and len(intervals) == 1:
        where = And(EqualTo("interval", intervals[0]), where)
    return where


def _record(
    bronze: BronzeFile,
    layout: SilverTable,
    fingerprint: str,
    status: Status,
    batch_id: str,
    **counts,
) -> FileRecord:
    a = bronze.archive
    return FileRecord(
        path=bronze.archive_path,
        sha256=bronze.sha256,
        table_name=layout.identifier,
        market=a.market.value,
        frequency=a.frequency.value,
        data_type=a.data_type.value,
        symbol=a.symbol,
        interval=a.interval,
        period=a.period,
        status=status,
        schema_fingerprint=fingerprint,
        batch_id=batch_id,
        **counts,
    )


def _rejects_table(bad: pa.Table | None, bronze: BronzeFile, layout: SilverTable) -> pa.Table:
    schema = rejects_schema()
    if bad is None or not bad.num_rows:
        return schema.empty_table()
    archive = bronze.archive
    rows = bad.num_rows
    constants = {
        "source_file": bronze.archive_path,
        "sha256": bronze.sha256,
        "table_name": layout.identifier,
        "market": archive.market.value,
        "data_type": archive.data_type.value,
        "symbol": archive.symbol,
    }
    columns = {k: pa.repeat(pa.scalar(v, pa.string()), rows) for k, v in constants.items()}
    columns.update(
        {"line": bad.column("line"), "text": bad.column("text"), "reason": bad.column("reason")}
    )
    return pa.table(columns).cast(schema)


def drop_silver(config: LakeConfig) -> list[str]:
    """Purge every silver table (data files too), the ledger and the journal: the way to a
    new table layout, rebuilt from bronze, which stays the source of truth."""
    engine = sa.create_engine(config.sqlalchemy_url)
    try:
        drop_ledger(engine)
        drop_journal(engine)
    finally:
        engine.dispose()
    warehouse = Warehouse(config)
    dropped = warehouse.tables(SILVER)
    for identifier in dropped:
        warehouse.catalog.purge_table(identifier)
    return dropped
