"""Bronze zip -> silver Iceberg rows, one file at a time, idempotently.

For each verified bronze file the builder streams the zip from S3 (hashing it on the way),
sniffs header and time unit, parses typed batches, adds market/symbol/date columns, drops
repeated keys, and writes Parquet data files of at most `chunk_rows` rows while it reads,
so memory does not grow with the file. Only when the whole file is read and its SHA-256
equals the manifest's does one Iceberg commit replace the file's previous rows (a delete on
`source_file`) with the new data files; anything else deletes the files it wrote.

Outcomes per file: transformed, skipped (this SHA-256 is already in), drift (flagged and
skipped), corrupt (bytes or zip damaged). Bad rows go to `silver.rejects` with their line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta

import pyarrow as pa
from pyiceberg.expressions import (
    And,
    EqualTo,
    GreaterThanOrEqual,
    LessThanOrEqual,
    NotEqualTo,
)
from pyiceberg.table import Table

from crypto_lakehouse.archive.catalog import PUBLISHED, Frequency
from crypto_lakehouse.archive.paths import ROOT, ArchiveFile, parse_key
from crypto_lakehouse.catalog.manifest import ManifestEntry
from crypto_lakehouse.errors import (
    ChecksumMismatch,
    ConfigError,
    SchemaDrift,
    ZipFormatError,
)
from crypto_lakehouse.lake.committer import Pending, Written, commit_pending, ever_committed
from crypto_lakehouse.lake.dedup import FileDeduper
from crypto_lakehouse.lake.feed import CsvFeed
from crypto_lakehouse.lake.ledger import FileRecord, Ledger, Status
from crypto_lakehouse.lake.parser import (
    SNIFF_BYTES,
    Layout,
    NeedsLineMode,
    fast_batches,
    line_batches,
    sniff,
)
from crypto_lakehouse.lake.source import ResumableBody
from crypto_lakehouse.lake.tables import SilverTable, rejects_schema
from crypto_lakehouse.lake.warehouse import Warehouse
from crypto_lakehouse.lake.writer import DataFileWriter
from crypto_lakehouse.lake.zipstream import ZipMemberStream
from crypto_lakehouse.observability.metrics import SILVER_FILES
from crypto_lakehouse.storage import S3Storage

CHUNK_ROWS = 1_000_000


@dataclass(frozen=True)
class BronzeFile:
    """A verified bronze object: its key in the bronze bucket and the manifest's SHA-256.

    `path` is the archive key (`data/...`) when bronze keeps the files under a prefix.
    """

    key: str
    sha256: str
    path: str | None = None
    bucket: str | None = None  # None: the builder's bronze bucket

    @classmethod
    def from_entry(cls, entry: ManifestEntry) -> BronzeFile:
        """From a verified manifest row."""
        if entry.sha256 is None:
            raise ConfigError(f"{entry.path}: the manifest has no SHA-256 for it")
        return cls(entry.bronze_key or entry.path, entry.sha256, entry.path, entry.bronze_bucket)

    @property
    def archive(self) -> ArchiveFile:
        return parse_key(self.path or self.key, ROOT)


@dataclass
class FileOutcome:
    """What the builder did with one bronze file."""

    key: str
    table: str
    status: str  # transformed | skipped | drift | corrupt
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


class SilverBuilder:
    """Transforms bronze files into silver tables; safe to run concurrently per table."""

    def __init__(
        self,
        warehouse: Warehouse,
        ledger: Ledger,
        storage: S3Storage,
        bronze_bucket: str,
        *,
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        self.warehouse = warehouse
        self.ledger = ledger
        self.storage = storage
        self.bucket = bronze_bucket
        self.chunk_rows = chunk_rows
        self._tables: dict[str, Table] = {}  # loaded once per wave; commits reload their own

    # -- files -----------------------------------------------------------------------------------

    def transform(self, bronze: BronzeFile) -> FileOutcome:
        """Bring one bronze file version into silver (or flag it); never raises for bad data."""
        return self.transform_many([bronze])[0]

    def transform_many(self, files: list[BronzeFile]) -> list[FileOutcome]:
        """Prepare every file, then commit them with one Iceberg commit per table.

        Files of one call must not share keys (one frequency at a time: daily files of
        different symbols or days never overlap; a monthly file overlaps its daily files).
        """
        prepared = [self.prepare(bronze) for bronze in files]
        pending = [p for p in prepared if isinstance(p, Pending)]
        committed = {o.key: o for o in self.commit(pending)}
        return [p if isinstance(p, FileOutcome) else committed[p.bronze.key] for p in prepared]

    def commit(self, pending: list[Pending]) -> list[FileOutcome]:
        """Commit prepared files: one snapshot per table (and one for rejects), then the ledger."""
        self._tables.clear()  # later reads must see this commit
        return commit_pending(self.warehouse, self.ledger, pending)

    def already_in(self, bronze: BronzeFile, prior: FileRecord | None) -> FileOutcome | None:
        """A `skipped` outcome when the ledger already holds this SHA-256 (or its drift flag,
        for an unchanged schema); None when the file needs work."""
        if prior is None or prior.sha256 != bronze.sha256:
            return None
        layout = SilverTable.of(bronze.archive.market, bronze.archive.data_type)
        if prior.status is Status.DRIFT and prior.schema_fingerprint != schema_fingerprint(layout):
            return None
        return FileOutcome(
            bronze.key, layout.identifier, "skipped", prior.rows, prior.rejects,
            prior.duplicates, message=prior.status.value,
        )  # fmt: skip

    def prepare(self, bronze: BronzeFile) -> FileOutcome | Pending:
        """Read the file and write its data files (not yet visible), or say why not."""
        archive = bronze.archive
        layout = SilverTable.of(archive.market, archive.data_type)
        fingerprint = schema_fingerprint(layout)
        prior = self.ledger.get(bronze.key)
        skipped = self.already_in(bronze, prior)
        if skipped is not None:
            return skipped
        table = self._tables.get(layout.identifier)
        if table is None:
            table = self.warehouse.ensure_table(
                layout.identifier, layout.arrow_schema(), layout.partition_by, layout.properties
            )
            self._tables[layout.identifier] = table
        record = dict(
            key=bronze.key, sha256=bronze.sha256, table_name=layout.identifier,
            market=archive.market.value, data_type=archive.data_type.value,
            symbol=archive.symbol, period=archive.period, schema_fingerprint=fingerprint,
        )  # fmt: skip
        try:
            try:
                written = self._write(bronze, archive, layout, table, line_mode=False)
            except NeedsLineMode:
                written = self._write(bronze, archive, layout, table, line_mode=True)
        except SchemaDrift as exc:
            self.ledger.record(FileRecord(**record, status=Status.DRIFT, message=str(exc)))
            SILVER_FILES.labels(record["market"], record["data_type"], "drift").inc()
            return FileOutcome(bronze.key, layout.identifier, "drift", message=str(exc))
        except (ChecksumMismatch, ZipFormatError) as exc:
            self.ledger.record(FileRecord(**record, status=Status.CORRUPT, message=str(exc)))
            SILVER_FILES.labels(record["market"], record["data_type"], "corrupt").inc()
            return FileOutcome(bronze.key, layout.identifier, "corrupt", message=str(exc))
        in_table = prior is not None or ever_committed(table, bronze.key)
        return Pending(bronze, layout, record, written, prior, in_table)

    # -- reading and writing -----------------------------------------------------------------------

    def _open(self, bronze: BronzeFile) -> ZipMemberStream:
        return ZipMemberStream(
            ResumableBody(self.storage, bronze.bucket or self.bucket, bronze.key)
        )

    def _write(
        self, bronze: BronzeFile, archive: ArchiveFile, layout: SilverTable, table: Table,
        *, line_mode: bool,
    ) -> Written:  # fmt: skip
        stream = self._open(bronze)
        head = _read_up_to(stream, SNIFF_BYTES)
        csv_layout = sniff(head, layout.csv, at_eof=len(head) < SNIFF_BYTES)
        source = CsvFeed(head, stream)
        existing = self._existing_keys(table, layout, archive, bronze.key)
        dedup = FileDeduper(layout.file_key, existing)
        writer = DataFileWriter(table, self.chunk_rows)
        rejects: list[pa.Table] = []
        try:
            if line_mode:
                for good, bad in source.paced(line_batches(source, layout.csv, csv_layout)):
                    self._add(writer, dedup, layout, archive, bronze.key, good)
                    if bad.num_rows:
                        rejects.append(bad)
            else:
                for good in source.paced(fast_batches(source, layout.csv, csv_layout)):
                    self._add(writer, dedup, layout, archive, bronze.key, good)
            writer.flush()
            digest = stream.finish()
            if digest != bronze.sha256:
                raise ChecksumMismatch(
                    f"{bronze.key}: bronze bytes hash to {digest[:12]}..., "
                    f"the manifest says {bronze.sha256[:12]}..."
                )
        except BaseException:
            source.close()
            writer.discard()
            raise
        bad_rows = pa.concat_tables(rejects) if rejects else None
        return Written(
            writer.files, writer.rows, dedup.dropped, csv_layout,
            _rejects_table(bad_rows, bronze, archive, layout), "lines" if line_mode else "fast",
        )  # fmt: skip

    @staticmethod
    def _add(
        writer: DataFileWriter, dedup: FileDeduper, layout: SilverTable, archive: ArchiveFile,
        key: str, good: pa.Table,
    ) -> None:  # fmt: skip
        if not good.num_rows:
            return
        rows = layout.decorate(
            good, symbol=archive.symbol, interval=archive.interval, source_file=key
        )
        writer.add(dedup(rows))

    def _existing_keys(
        self, table: Table, layout: SilverTable, archive: ArchiveFile, key: str
    ) -> pa.Table | None:
        """Keys other files already put into this file's symbol and period.

        Only a file of the other frequency (a monthly file over daily ones, or the reverse)
        can hold the same keys; the ledger says cheaply whether one is in.
        """
        if table.current_snapshot() is None:
            return None
        first = archive.period
        last = first if archive.frequency is Frequency.DAILY else _month_end(first)
        other = Frequency.MONTHLY if archive.frequency is Frequency.DAILY else Frequency.DAILY
        if other not in PUBLISHED[archive.market][archive.data_type]:
            return None
        parts = [archive.market.value, other.value, archive.data_type.value, archive.symbol]
        folder = "/".join([*parts, archive.interval] if archive.interval else parts) + "/"
        if not self.ledger.has_transformed(folder, first, last):
            return None
        column = "month" if layout.monthly_only else "date"
        conditions = [
            EqualTo("symbol", archive.symbol),
            GreaterThanOrEqual(column, first.isoformat()),
            LessThanOrEqual(column, last.isoformat()),
            NotEqualTo("source_file", key),
        ]
        if layout.has_interval:
            conditions.append(EqualTo("interval", archive.interval))
        found = table.scan(
            row_filter=And(*conditions), selected_fields=tuple(layout.file_key)
        ).to_arrow()
        return found if found.num_rows else None


def _read_up_to(stream: ZipMemberStream, size: int) -> bytes:
    parts, total = [], 0
    while total < size:
        piece = stream.read(size - total)
        if not piece:
            break
        parts.append(piece)
        total += len(piece)
    return b"".join(parts)


def _month_end(first: date) -> date:
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def _rejects_table(
    bad: pa.Table | None, bronze: BronzeFile, archive: ArchiveFile, layout: SilverTable
) -> pa.Table:
    schema = rejects_schema()
    if bad is None or not bad.num_rows:
        return schema.empty_table()
    rows = bad.num_rows
    constants = {
        "source_file": bronze.key,
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
