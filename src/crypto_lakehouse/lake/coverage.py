"""Coverage: for each (market, data type, symbol, interval) and each day (or month), what we have.

A period's status, from the bronze manifest and the silver ledger:

    present   verified in bronze and transformed into silver (`rows` rows)
    pending   verified in bronze, not (yet) in silver at this SHA-256
    drift     verified, but its columns/types do not fit the schema: flagged, not loaded
    corrupt   bytes did not match the publisher's checksum (ingest) or the manifest (silver)
    failed    the transfer did not complete
    missing   no file, although the series has files before and after it

`replaced` marks periods whose file Binance republished (a new SHA-256: manifest version > 1).
Periods after a series' last file are not missing: delisted symbols simply stop.
The rows are stored as `gold.coverage` and feed the terminal summary and the HTML heatmap.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date

import pyarrow as pa

from crypto_lakehouse.archive.gaps import find_gaps
from crypto_lakehouse.archive.paths import ArchiveFile
from crypto_lakehouse.catalog.manifest import ManifestEntry
from crypto_lakehouse.catalog.schema import FileStatus
from crypto_lakehouse.lake.ledger import FileRecord, Status
from crypto_lakehouse.lake.warehouse import GOLD, Warehouse
from crypto_lakehouse.observability.metrics import COVERAGE_MISSING_DAYS

COVERAGE_TABLE = f"{GOLD}.coverage"
STATUSES = ("present", "pending", "drift", "corrupt", "failed", "missing")


@dataclass(frozen=True)
class CoverageRow:
    market: str
    frequency: str
    data_type: str
    symbol: str
    interval: str | None
    period: date
    status: str
    replaced: bool = False
    versions: int = 0
    rows: int | None = None
    detail: str | None = None

    @property
    def dataset(self) -> str:
        """`spot/daily/klines/1m`: one heatmap per dataset."""
        parts = [self.market, self.frequency, self.data_type, self.interval or ""]
        return "/".join(p for p in parts if p)


@dataclass
class DatasetSummary:
    dataset: str
    symbols: set[str] = field(default_factory=set)
    counts: Counter = field(default_factory=Counter)
    replaced: int = 0
    rows: int = 0
    first: date | None = None
    last: date | None = None


def coverage_rows(
    entries: Iterable[ManifestEntry], records: Iterable[FileRecord]
) -> list[CoverageRow]:
    """One row per (series, period) from the series' first to its last file."""
    ledger = {r.key: r for r in records}
    rows: list[CoverageRow] = []
    files: list[ArchiveFile] = []
    for entry in entries:
        record = ledger.get(entry.bronze_key or entry.path) or ledger.get(entry.path)
        status, detail = _status(entry, record)
        rows.append(
            CoverageRow(
                entry.market,
                entry.frequency,
                entry.data_type,
                entry.symbol,
                entry.interval,
                entry.period,
                status,
                replaced=entry.version > 1,
                versions=entry.version,
                rows=record.rows if status == "present" and record else None,
                detail=detail,
            )
        )
        files.append(
            ArchiveFile(
                entry.market,
                entry.frequency,
                entry.data_type,
                entry.symbol,
                entry.period,
                entry.interval,
            )
        )
    for gap in find_gaps(files):
        for period in gap.missing:
            rows.append(
                CoverageRow(
                    gap.market.value,
                    gap.frequency.value,
                    gap.data_type.value,
                    gap.symbol,
                    gap.interval,
                    period,
                    "missing",
                )
            )
    rows.sort(key=lambda r: (r.dataset, r.symbol, r.period))
    return rows


def _status(entry: ManifestEntry, record: FileRecord | None) -> tuple[str, str | None]:
    if entry.status is FileStatus.CORRUPT:
        return "corrupt", entry.error
    if entry.status is not FileStatus.VERIFIED:
        return "failed", entry.error or entry.status.value
    if record is None or record.sha256 != entry.sha256:
        return "pending", None
    if record.status is Status.TRANSFORMED:
        return "present", f"{record.rejects} rejected lines" if record.rejects else None
    return record.status.value, record.message


def summarise(rows: Iterable[CoverageRow]) -> list[DatasetSummary]:
    """Per dataset: symbols, counts per status, replaced periods, silver rows, date range."""
    found: dict[str, DatasetSummary] = defaultdict(lambda: DatasetSummary(""))
    for row in rows:
        summary = found[row.dataset]
        summary.dataset = row.dataset
        summary.symbols.add(row.symbol)
        summary.counts[row.status] += 1
        summary.replaced += int(row.replaced)
        summary.rows += row.rows or 0
        summary.first = min(summary.first or row.period, row.period)
        summary.last = max(summary.last or row.period, row.period)
    return [found[k] for k in sorted(found)]


def coverage_table(rows: list[CoverageRow]) -> pa.Table:
    schema = pa.schema(
        [
            ("market", pa.string()),
            ("frequency", pa.string()),
            ("data_type", pa.string()),
            ("symbol", pa.string()),
            ("interval", pa.string()),
            ("period", pa.date32()),
            ("status", pa.string()),
            ("replaced", pa.bool_()),
            ("versions", pa.int32()),
            ("rows", pa.int64()),
            ("detail", pa.string()),
        ]
    )
    return pa.Table.from_pylist([asdict(r) for r in rows], schema=schema)


def build_coverage(
    warehouse: Warehouse, entries: Iterable[ManifestEntry], records: Iterable[FileRecord]
) -> list[CoverageRow]:
    """Compute coverage, store it as `gold.coverage`, and export missing counts as metrics."""
    rows = coverage_rows(entries, records)
    warehouse.replace_all(COVERAGE_TABLE, coverage_table(rows), [])
    missing: Counter = Counter()
    for row in rows:
        missing[(row.market, row.data_type)] += row.status == "missing"
    for (market, data_type), count in missing.items():
        COVERAGE_MISSING_DAYS.labels(market=market, data_type=data_type).set(count)
    return rows
