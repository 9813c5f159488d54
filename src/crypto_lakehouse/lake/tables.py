"""The shape of each silver table: one per (market, data type), named `silver.<market>_<type>`.

A silver row is the CSV row with typed, UTC-microsecond times, plus where it came from:
`market`, `symbol` (from the path), `interval` (kline data sets), `date` (the UTC day of
the row's first time column), `month` (the first day of the row's UTC month), and
`source_file` (the archive key of the bronze file).

The layout is made for an archive of tens of millions of mostly tiny files (a daily 1h
klines file is 24 rows): partitions are coarse, so that one holds many source files, and
rows are sorted by symbol, so that Parquet statistics prune one symbol's rows:

    kline-like data sets      identity(interval), identity(month)
    trades, aggTrades,        identity(date): a busy symbol's day is millions of rows
      bookTicker
    everything else           identity(month)

Each table carries that order as its Iceberg sort order (symbol, interval, time), and the
builder writes rows in it (docs/lake.md, "Layout", has the measurements behind the choice).

A CSV column named like one we add is renamed (`symbol` -> `row_symbol`), except `date`
in EOHSummary, which already is the row's UTC day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from crypto_lakehouse.archive.catalog import PUBLISHED, DataType, Frequency, Market
from crypto_lakehouse.archive.schemas import CsvSchema, TimeKind, schema_for
from crypto_lakehouse.lake.warehouse import SILVER

REJECTS_TABLE = f"{SILVER}.rejects"
RENAMED = {"symbol": "row_symbol"}
# Data sets whose daily files hold up to millions of rows: partitioned by day, not month.
LARGE_DATA_TYPES = frozenset({DataType.TRADES, DataType.AGG_TRADES, DataType.BOOK_TICKER})


def table_slug(market: Market, data_type: DataType) -> str:
    """`spot_klines`, `futures_um_agg_trades`, `option_bvol_index`, ..."""
    snake = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", data_type.value).lower()
    return f"{market.value.replace('/', '_')}_{snake}"


@dataclass(frozen=True)
class SilverTable:
    """How one (market, data type) is stored in silver."""

    csv: CsvSchema

    @classmethod
    def of(cls, market: Market | str, data_type: DataType | str) -> SilverTable:
        return cls(schema_for(market, data_type))

    @property
    def identifier(self) -> str:
        return f"{SILVER}.{table_slug(self.csv.market, self.csv.data_type)}"

    @property
    def has_interval(self) -> bool:
        return self.csv.data_type.has_interval

    @property
    def monthly_only(self) -> bool:
        return PUBLISHED[self.csv.market][self.csv.data_type] == (Frequency.MONTHLY,)

    @property
    def time_column(self) -> str:
        """The column whose UTC day is the row's `date` (the first time column)."""
        return self.csv.columns[[c.time is not None for c in self.csv.columns].index(True)].name

    @property
    def date_from_csv(self) -> bool:
        return self.csv.column(self.time_column).time is TimeKind.DATE

    def column_name(self, csv_name: str) -> str:
        return RENAMED.get(csv_name, csv_name)

    @property
    def key(self) -> list[str]:
        """Natural key within the table: symbol (+ interval) + the data type's key columns."""
        extra = ["interval"] if self.has_interval else []
        return ["symbol", *extra, *(self.column_name(c) for c in self.csv.key)]

    @property
    def file_key(self) -> list[str]:
        """The key within one file (and one symbol/interval): the data type's key columns.

        Symbol and interval are constant inside a file, so dedup compares only these.
        """
        return [self.column_name(c) for c in self.csv.key]

    @property
    def partition_by(self) -> list[str]:
        """Identity partitions: coarse enough that each holds many source files."""
        if self.csv.data_type in LARGE_DATA_TYPES:
            return ["date"]
        return ["interval", "month"] if self.has_interval else ["month"]

    @property
    def sort_by(self) -> list[str]:
        """The order rows sit in within a data file: one symbol's rows together, by time."""
        extra = ["interval"] if self.has_interval else []
        return ["symbol", *extra, self.column_name(self.csv.key[0])]

    @property
    def period_column(self) -> str:
        """The partition column that a source file's period falls in (`date` or `month`)."""
        return self.partition_by[-1]

    def arrow_schema(self) -> pa.Schema:
        fields = []
        required = set(self.csv.key) | set(self.csv.time_columns)
        for column in self.csv.columns:
            kind = column.time
            arrow = column.type
            if kind is TimeKind.DATE:
                arrow = pa.date32()
            elif kind is not None:
                arrow = pa.timestamp("us", tz="UTC")
            fields.append(
                pa.field(self.column_name(column.name), arrow, column.name not in required)
            )
        fields += [
            pa.field("market", pa.string(), False),
            pa.field("symbol", pa.string(), False),
        ]
        if self.has_interval:
            fields.append(pa.field("interval", pa.string(), False))
        if not self.date_from_csv:
            fields.append(pa.field("date", pa.date32(), False))
        fields.append(pa.field("month", pa.date32(), False))
        fields.append(pa.field("source_file", pa.string(), False))
        return pa.schema(fields)

    @property
    def properties(self) -> dict[str, str]:
        # Full (untruncated) bounds on source_file let a delete by file drop whole data files.
        return {
            "write.metadata.metrics.column.source_file": "full",
            # Data files of tens of MB or more (compaction rewrites smaller ones).
            "write.target-file-size-bytes": str(256 << 20),
            # One manifest per commit would make every plan read them all: merge them.
            "commit.manifest-merge.enabled": "true",
            "commit.manifest.min-count-to-merge": "16",
            # Keep the metadata-file trail short (each commit writes one).
            "write.metadata.delete-after-commit.enabled": "true",
            "write.metadata.previous-versions-max": "20",
        }

    def decorate(
        self, batch: pa.Table, *, symbol: str, interval: str | None, source_file: str
    ) -> pa.Table:
        """Rename clashing CSV columns and add market, symbol, interval, date, month, source."""
        batch = batch.rename_columns([self.column_name(n) for n in batch.column_names])
        rows = batch.num_rows
        batch = batch.append_column("market", _constant(self.csv.market.value, rows))
        batch = batch.append_column("symbol", _constant(symbol, rows))
        if self.has_interval:
            batch = batch.append_column("interval", _constant(interval, rows))
        day = batch.column(self.column_name(self.time_column))
        if not self.date_from_csv:
            day = day.cast(pa.date32())
            batch = batch.append_column("date", day)
        batch = batch.append_column("month", first_of_month(day))
        batch = batch.append_column("source_file", _constant(source_file, rows))
        return batch.cast(self.arrow_schema())


def rejects_schema() -> pa.Schema:
    """One row per CSV line that did not parse: which file, which line, its text, why."""
    return pa.schema(
        [
            pa.field("source_file", pa.string(), False),
            pa.field("sha256", pa.string(), False),
            pa.field("table_name", pa.string(), False),
            pa.field("market", pa.string(), False),
            pa.field("data_type", pa.string(), False),
            pa.field("symbol", pa.string(), False),
            pa.field("line", pa.int64(), False),
            pa.field("text", pa.string(), True),
            pa.field("reason", pa.string(), False),
        ]
    )


def first_of_month(days: pa.ChunkedArray | pa.Array) -> pa.Array:
    """date32 days -> the first day of each one's month (date32), with Arrow kernels."""
    days = days.cast(pa.date32())
    offsets = pc.subtract(pc.day(days), 1)
    as_int = days.cast(pa.int32())
    return pc.subtract(as_int, offsets.cast(pa.int32())).cast(pa.date32())


def _constant(value: str | None, rows: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.string()), rows)
