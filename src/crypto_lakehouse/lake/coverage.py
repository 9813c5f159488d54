"""Coverage: what we have for each series (market, frequency, type, symbol, interval) and period.

A period's status, from the bronze manifest (`bronze_files`) and the silver ledger
(`lake_silver_files`):

    present   verified in bronze and in silver at that SHA-256 (`transformed`, or
              `superseded`: covered by the month's verified monthly file)
    pending   verified in bronze, not (yet) in silver at this SHA-256
    drift     verified, but its columns/types do not fit the schema: flagged, not loaded
    corrupt   bytes did not match the publisher's checksum (ingest) or the manifest (silver)
    failed    the transfer did not complete
    missing   no file, although the series has files before and after it

`replaced` marks periods whose file Binance republished (a new SHA-256: manifest version > 1).
Periods after a series' last file are not missing: delisted symbols simply stop.

Everything is computed by SQL in the catalog database, where both tables live: a file's
status is a LEFT JOIN, gaps come from lag() over each series' periods as ranges (first,
last, count), and every aggregation is a GROUP BY. Python holds only what a report shows
(bounded by its caps) or one chunk of `gold.coverage` while it is written.
"""

# SQL here is assembled from fixed fragments of this module; values are bind parameters.
# ruff: noqa: S608

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from pyiceberg.expressions import AlwaysTrue
from sqlalchemy.exc import SQLAlchemyError

from crypto_lakehouse.archive.paths import month_start, next_month
from crypto_lakehouse.catalog.schema import metadata as catalog_metadata
from crypto_lakehouse.errors import StorageError
from crypto_lakehouse.lake.ledger import FILES
from crypto_lakehouse.lake.warehouse import GOLD, Warehouse
from crypto_lakehouse.lake.writer import DataFileWriter
from crypto_lakehouse.observability.metrics import COVERAGE_MISSING_DAYS

COVERAGE_TABLE = f"{GOLD}.coverage"
STATUSES = ("present", "pending", "drift", "corrupt", "failed", "missing")
PROBLEMS = ("missing", "corrupt", "drift", "failed", "pending")  # the attention list, in order
WORST_FIRST = ("corrupt", "failed", "drift", "missing", "pending", "present")
CHUNK_ROWS = 100_000  # gold.coverage rows held in memory at once
# Sorts of the join and of each series' periods stay in memory (PostgreSQL's default 4 MB
# spills them to disk at a few tens of thousands of files); for this transaction only.
WORK_MEM = "SET LOCAL work_mem = '64MB'"

COVERAGE_SCHEMA = pa.schema(
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

# One row per manifest file with its status. `{where}` is a fixed fragment built here from
# column names only; values always travel as bind parameters.
_FILES = """
SELECT b.market, b.frequency, b.data_type, coalesce(b."interval", '') AS "interval",
       b.symbol, b.period, b.version AS versions, b.version > 1 AS replaced,
       CASE WHEN b.status = 'corrupt' THEN 'corrupt'
            WHEN b.status <> 'verified' THEN 'failed'
            WHEN l.path IS NULL OR l.sha256 IS DISTINCT FROM b.sha256 THEN 'pending'
            WHEN l.status IN ('transformed', 'superseded') THEN 'present'
            WHEN l.status IN ('drift', 'corrupt') THEN l.status
            ELSE 'pending' END AS status,
       CASE WHEN b.status = 'verified' AND l.sha256 = b.sha256
                 AND l.status IN ('transformed', 'superseded') THEN l.rows END AS rows,
       CASE WHEN b.status = 'corrupt' THEN b.error
            WHEN b.status <> 'verified' THEN coalesce(b.error, b.status)
            WHEN l.path IS NULL OR l.sha256 IS DISTINCT FROM b.sha256 THEN NULL
            WHEN l.status = 'superseded' THEN 'superseded by the monthly file'
            WHEN l.status = 'transformed' AND l.rejects > 0 THEN l.rejects || ' rejected lines'
            WHEN l.status IN ('drift', 'corrupt') THEN l.message END AS detail
FROM bronze_files b LEFT JOIN lake_silver_files l ON l.path = b.path
WHERE {where}
"""

# Gaps as ranges: each pair of consecutive files of a series more than one period apart.
_STEP = "CASE WHEN frequency = 'monthly' THEN interval '1 month' ELSE interval '1 day' END"
_GAPS = f"""
SELECT market, frequency, data_type, "interval", symbol,
       (prev + {_STEP})::date AS gap_first, (period - {_STEP})::date AS gap_last,
       CASE WHEN frequency = 'monthly'
            THEN (extract(year FROM period) * 12 + extract(month FROM period)
                  - extract(year FROM prev) * 12 - extract(month FROM prev))::int - 1
            ELSE period - prev - 1 END AS periods
FROM (SELECT b.market, b.frequency, b.data_type, b."interval", b.symbol, b.period,
             lag(b.period) OVER (PARTITION BY b.market, b.frequency, b.data_type,
                                 b."interval", b.symbol ORDER BY b.period) AS prev
      FROM bronze_files b WHERE {{where}}) s
WHERE prev IS NOT NULL AND (prev + {_STEP})::date < period
"""

_DATASET = 'market, frequency, data_type, "interval"'
_GAPS_TABLE = "coverage_gaps"  # a snapshot's gap ranges, computed once (temporary)


@dataclass(frozen=True, order=True)
class Dataset:
    """One heatmap: a (market, frequency, data type, interval) series family."""

    market: str
    frequency: str
    data_type: str
    interval: str = ""  # '' for data sets without intervals

    @property
    def label(self) -> str:
        """`spot/daily/klines/1m`, `futures/um/monthly/fundingRate`."""
        return "/".join(
            p for p in (self.market, self.frequency, self.data_type, self.interval) if p
        )

    @property
    def monthly(self) -> bool:
        return self.frequency == "monthly"

    def where(self) -> tuple[str, dict[str, Any]]:
        """A filter on `bronze_files b` the dataset index can serve."""
        sql = "b.market = :market AND b.frequency = :frequency AND b.data_type = :data_type"
        params: dict[str, Any] = {
            "market": self.market, "frequency": self.frequency, "data_type": self.data_type,
        }  # fmt: skip
        if self.interval:
            return sql + ' AND b."interval" = :interval', {**params, "interval": self.interval}
        return sql + ' AND b."interval" IS NULL', params


@dataclass
class DatasetSummary:
    """Per dataset: symbols, periods per status, replaced files, silver rows, date range."""

    dataset: Dataset
    symbols: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    replaced: int = 0
    rows: int = 0
    first: date | None = None
    last: date | None = None

    @property
    def periods(self) -> int:
        return sum(self.counts.values())

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)


@dataclass(frozen=True)
class Problem:
    """One line of the attention list: a gap, or a symbol's files in one bad state."""

    kind: str  # missing | corrupt | drift | failed | pending
    dataset: Dataset
    symbol: str | None  # None for pending (listed per dataset)
    first: date
    last: date
    count: int  # periods missing, or files
    detail: str | None = None

    def text(self) -> str:
        """`spot/daily/klines/1m BTCUSDT: 2024-01-03 .. 2024-01-09 missing (7 days)`."""
        unit = "month" if self.dataset.monthly else "day"
        label = "%Y-%m" if self.dataset.monthly else "%Y-%m-%d"
        span = self.first.strftime(label)
        if self.last != self.first:
            span += " .. " + self.last.strftime(label)
        who = f"{self.dataset.label} {self.symbol}" if self.symbol else self.dataset.label
        if self.kind == "missing":
            return f"{who}: {span} missing ({plural(self.count, unit)})"
        text = f"{who}: {plural(self.count, f'{self.kind} file')}, {span}"
        if self.detail and self.detail != self.kind:
            text += f" ({_short(self.detail)})"
        return text


@dataclass
class ProblemList:
    """The worst `items` of one kind (most periods first) and the totals before the cap."""

    kind: str
    items: list[Problem] = field(default_factory=list)
    groups: int = 0  # lines there would be without the cap
    total: int = 0  # periods missing, or files

    @property
    def more(self) -> int:
        return self.groups - len(self.items)

    def headline(self) -> str:
        """`412 missing periods in 37 ranges`, `3 files in 1 group`."""
        if self.kind == "missing":
            return f"{plural(self.total, 'missing period')} in {plural(self.groups, 'range')}"
        return f"{plural(self.total, 'file')} in {plural(self.groups, 'group')}"


@dataclass(frozen=True)
class Cell:
    """One heatmap cell: a period (day or month) of one symbol, with counts per status."""

    counts: dict[str, int]
    replaced: int = 0
    versions: int = 0
    rows: int | None = None
    detail: str | None = None

    @property
    def worst(self) -> str:
        """The colour: the worst status in the cell; `replaced` when all present but replaced."""
        worst = next(s for s in WORST_FIRST if self.counts.get(s))
        return "replaced" if worst == "present" and self.replaced else worst


@dataclass
class Heatmap:
    """A dataset's grid: shown symbols x columns (days, or months when days do not fit)."""

    summary: DatasetSummary
    by_month: bool  # daily files aggregated into month cells
    columns: list[date]
    symbols: list[str]  # shown, those with problems first
    troubled: int  # symbols with problems (shown or not)
    cells: dict[tuple[str, date], Cell]

    @property
    def hidden(self) -> int:
        return self.summary.symbols - len(self.symbols)


def plural(n: int, unit: str) -> str:
    """`1 day`, `3 days`, `1,204 files`."""
    return f"{n:,} {unit}{'' if n == 1 else 's'}"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dataset(row: Any) -> Dataset:
    return Dataset(row.market, row.frequency, row.data_type, row.interval)


def _columns(summary: DatasetSummary, by_month: bool) -> list[date]:
    assert summary.first is not None and summary.last is not None
    monthly = by_month or summary.dataset.monthly
    columns, cursor = [], month_start(summary.first) if monthly else summary.first
    while cursor <= summary.last:
        columns.append(cursor)
        cursor = next_month(cursor) if monthly else date.fromordinal(cursor.toordinal() + 1)
    return columns


class Coverage:
    """Coverage queries on the catalog database; SQL errors become StorageError here."""

    def __init__(self, url: str, *, engine: sa.Engine | None = None) -> None:
        self.engine = engine or sa.create_engine(url, pool_pre_ping=True, pool_size=2)
        self._conn: sa.Connection | None = None  # set inside snapshot()
        try:  # a lake with no ingest yet has neither table: an empty report, not an error
            catalog_metadata.create_all(self.engine, checkfirst=True)
            FILES.create(self.engine, checkfirst=True)
        except SQLAlchemyError as exc:
            raise StorageError(f"catalog database: {exc.__class__.__name__}") from exc

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Run the queries inside on one consistent view of manifest and ledger.

        One REPEATABLE READ transaction: a report's lists, counts and heatmaps agree even
        while ingest or silver write. The gap ranges (the one sort over every series) are
        computed once into a temporary table the queries share.
        """
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                with conn.begin():
                    conn.exec_driver_sql(WORK_MEM)
                    gaps = _GAPS.format(where="TRUE")
                    conn.exec_driver_sql(
                        f"CREATE TEMP TABLE {_GAPS_TABLE} ON COMMIT DROP AS {gaps}"
                    )
                    self._conn = conn
                    try:
                        yield
                    finally:
                        self._conn = None
        except SQLAlchemyError as exc:
            raise StorageError(f"catalog database: {exc.__class__.__name__}") from exc

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sa.Connection]:
        if self._conn is not None:
            yield self._conn
            return
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql(WORK_MEM)
                yield conn
        except SQLAlchemyError as exc:
            raise StorageError(f"catalog database: {exc.__class__.__name__}") from exc

    def _with(self, where: str = "TRUE") -> str:
        """The CTEs every query starts from: `f` (files with status) and `g` (gap ranges)."""
        if self._conn is None:
            gaps = f"({_GAPS.format(where=where)})"
        else:
            gaps = f"(SELECT * FROM {_GAPS_TABLE} b WHERE {where})"
        return (
            f"WITH f AS ({_FILES.format(where=where)}), g AS ("
            'SELECT market, frequency, data_type, coalesce("interval", \'\') AS "interval", '
            f"symbol, gap_first, gap_last, periods FROM {gaps} s)\n"
        )

    def _rows(self, sql: str, **params: Any) -> list[Any]:
        try:
            with self._connection() as conn:
                return list(conn.execute(sa.text(sql), params))
        except SQLAlchemyError as exc:
            raise StorageError(f"catalog database: {exc.__class__.__name__}") from exc

    def summaries(self) -> list[DatasetSummary]:
        """One summary per dataset, sorted by label; hashed GROUP BYs over the whole manifest
        (per dataset and symbol first: cheaper than a sort for count(DISTINCT symbol))."""
        counts = ", ".join(f"count(*) FILTER (WHERE status = '{s}') AS {s}" for s in STATUSES[:-1])
        sums = ", ".join(f"sum({s})::bigint AS {s}" for s in (*STATUSES[:-1], "replaced", "rows"))
        files = self._rows(
            self._with() + f"SELECT {_DATASET}, count(*) AS symbols, {sums}, "
            f"min(first) AS first, max(last) AS last FROM (SELECT {_DATASET}, symbol, {counts}, "
            "count(*) FILTER (WHERE replaced) AS replaced, coalesce(sum(rows), 0) AS rows, "
            f"min(period) AS first, max(period) AS last FROM f GROUP BY {_DATASET}, symbol) s "
            f"GROUP BY {_DATASET}"
        )
        gaps = self._rows(
            self._with() + f"SELECT {_DATASET}, sum(periods) AS missing FROM g GROUP BY {_DATASET}"
        )
        missing = {_dataset(r): int(r.missing) for r in gaps}
        out = []
        for r in files:
            dataset = _dataset(r)
            found = {s: getattr(r, s) for s in STATUSES[:-1]}
            found["missing"] = missing.get(dataset, 0)
            out.append(
                DatasetSummary(
                    dataset, r.symbols, {k: v for k, v in found.items() if v},
                    r.replaced, int(r.rows), r.first, r.last,
                )
            )  # fmt: skip
        return sorted(out, key=lambda s: s.dataset.label)

    def attention(self, limit: int = 20) -> list[ProblemList]:
        """Per kind (gaps, corrupt, drift, failed, pending): the `limit` worst and totals.

        Gaps are ranges (longest first); corrupt, drift and failed files are grouped per
        dataset and symbol (most files first); pending files per dataset.
        """
        lists = {kind: ProblemList(kind) for kind in PROBLEMS}
        gaps = self._rows(
            self._with() + f"SELECT *, count(*) OVER () AS groups, sum(periods) OVER () AS total "
            f"FROM g ORDER BY periods DESC, {_DATASET}, symbol, gap_first LIMIT :limit",
            limit=limit,
        )
        for r in gaps:
            lists["missing"].groups, lists["missing"].total = r.groups, int(r.total)
            lists["missing"].items.append(
                Problem("missing", _dataset(r), r.symbol, r.gap_first, r.gap_last, r.periods)
            )
        grouped = self._rows(
            self._with()
            + f"""
            SELECT * FROM (
              SELECT *, row_number() OVER (PARTITION BY status ORDER BY files DESC,
                                           {_DATASET}, who) AS rank,
                     count(*) OVER (PARTITION BY status) AS groups,
                     sum(files) OVER (PARTITION BY status) AS total
              FROM (SELECT status, {_DATASET},
                           CASE WHEN status = 'pending' THEN NULL ELSE symbol END AS who,
                           count(*) AS files, min(period) AS first, max(period) AS last,
                           min(detail) AS detail
                    FROM f WHERE status IN ('corrupt', 'drift', 'failed', 'pending')
                    GROUP BY status, {_DATASET}, who) per_group) ranked
            WHERE rank <= :limit ORDER BY status, rank""",
            limit=limit,
        )
        for r in grouped:
            found = lists[r.status]
            found.groups, found.total = r.groups, int(r.total)
            found.items.append(
                Problem(r.status, _dataset(r), r.who, r.first, r.last, r.files, r.detail)
            )
        return [lists[kind] for kind in PROBLEMS]

    def heatmap(
        self, summary: DatasetSummary, *, max_symbols: int = 50, max_days: int = 100
    ) -> Heatmap:
        """The dataset's grid; symbols with the most problems first, at most `max_symbols`."""
        where, params = summary.dataset.where()
        assert summary.first is not None and summary.last is not None
        by_month = not summary.dataset.monthly and (summary.last - summary.first).days >= max_days
        picked = self._rows(
            self._with(where)
            + """
            SELECT symbol, problems, pending,
                   count(*) FILTER (WHERE problems > 0) OVER () AS troubled
            FROM (SELECT symbol, sum(problems) AS problems, sum(pending) AS pending FROM (
                    SELECT symbol,
                           count(*) FILTER (WHERE status NOT IN ('present', 'pending')),
                           count(*) FILTER (WHERE status = 'pending')
                    FROM f GROUP BY symbol
                    UNION ALL SELECT symbol, sum(periods), 0 FROM g GROUP BY symbol
                  ) AS parts(symbol, problems, pending) GROUP BY symbol) per_symbol
            ORDER BY problems DESC, pending DESC, symbol LIMIT :cap""",
            **params,
            cap=max(1, max_symbols),
        )
        symbols = [r.symbol for r in picked]
        troubled = picked[0].troubled if picked else 0
        cells = self._cells(where, {**params, "symbols": symbols}, by_month)
        return Heatmap(summary, by_month, _columns(summary, by_month), symbols, troubled, cells)

    def _cells(
        self, where: str, params: dict[str, Any], by_month: bool
    ) -> dict[tuple[str, date], Cell]:
        where += " AND b.symbol = ANY(:symbols)"
        if by_month:
            sql = (
                self._with(where)
                + """
            SELECT symbol, date_trunc('month', period)::date AS period, status,
                   count(*) AS n, count(*) FILTER (WHERE replaced) AS replaced,
                   max(versions) AS versions, sum(rows) AS rows, min(detail) AS detail
            FROM f GROUP BY 1, 2, 3
            UNION ALL
            SELECT symbol, m::date, 'missing',
                   sum(least(gap_last, (m + interval '1 month' - interval '1 day')::date)
                       - greatest(gap_first, m::date) + 1), 0, 0, NULL, NULL
            FROM g, generate_series(date_trunc('month', gap_first::timestamp),
                                    gap_last::timestamp, interval '1 month') m
            GROUP BY 1, 2"""
            )
        else:
            sql = (
                self._with(where)
                + f"""
            SELECT symbol, period, status, 1 AS n, replaced::int AS replaced, versions, rows,
                   detail FROM f
            UNION ALL
            SELECT symbol, d::date, 'missing', 1, 0, 0, NULL, NULL
            FROM g, generate_series(gap_first::timestamp, gap_last::timestamp, {_STEP}) d"""
            )
        parts: dict[tuple[str, date], list[Any]] = {}
        for r in self._rows(sql, **params):
            parts.setdefault((r.symbol, r.period), []).append(r)
        cells = {}
        for key, rows in parts.items():
            counts = {r.status: int(r.n) for r in rows}
            found = [r.rows for r in rows if r.rows is not None]
            details = sorted(r.detail for r in rows if r.detail)
            cells[key] = Cell(
                counts, sum(r.replaced for r in rows), max(r.versions for r in rows),
                int(sum(found)) if found else None, details[0] if details else None,
            )  # fmt: skip
        return cells

    def stream(self, chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
        """Every (series, period) row of `gold.coverage`, `chunk_rows` at a time.

        A server-side cursor: memory holds one chunk, however large the manifest.
        """
        sql = (
            self._with()
            + """
            SELECT market, frequency, data_type, symbol, nullif("interval", '') AS "interval",
                   period, status, replaced, versions, rows, detail FROM f
            UNION ALL
            SELECT market, frequency, data_type, symbol, nullif("interval", ''),
                   d::date, 'missing', false, 0, NULL, NULL
            FROM g, generate_series(gap_first::timestamp, gap_last::timestamp, """
            + _STEP
            + ") d"
        )
        names = COVERAGE_SCHEMA.names
        try:
            with self._connection() as conn:
                query = sa.text(sql).execution_options(stream_results=True)
                for part in conn.execute(query).partitions(chunk_rows):
                    columns = list(zip(*part, strict=True))
                    yield pa.table(dict(zip(names, columns, strict=True)), schema=COVERAGE_SCHEMA)
        except SQLAlchemyError as exc:
            raise StorageError(f"catalog database: {exc.__class__.__name__}") from exc


def build_coverage(
    warehouse: Warehouse, coverage: Coverage, *, chunk_rows: int = CHUNK_ROWS
) -> dict[str, int]:
    """Store coverage as `gold.coverage`, export missing counts as metrics, return totals.

    The table is rewritten whole in one snapshot from data files written chunk by chunk
    (memory holds one chunk). Returns periods per status plus `replaced`.
    """
    existing = warehouse.table(COVERAGE_TABLE)
    if existing is not None and existing.schema().as_arrow().names != COVERAGE_SCHEMA.names:
        warehouse.catalog.drop_table(COVERAGE_TABLE)  # derived: rebuilt whole from SQL
    table = warehouse.ensure_table(COVERAGE_TABLE, COVERAGE_SCHEMA, [])
    writer = DataFileWriter(table, chunk_rows)
    try:
        with coverage.snapshot():  # the table and the totals from one consistent view
            for chunk in coverage.stream(chunk_rows):
                writer.add(chunk)
            writer.flush()
            summaries = coverage.summaries()

        def replace(table: Any) -> None:
            with table.transaction() as tx:
                tx.delete(AlwaysTrue())
                with tx.update_snapshot().fast_append() as add:
                    for data_file in writer.files:
                        add.append_data_file(data_file)

        warehouse.commit(COVERAGE_TABLE, replace)
    except BaseException:
        writer.discard()
        raise
    totals: dict[str, int] = {}
    missing: dict[tuple[str, str], int] = {}
    for summary in summaries:
        for status, n in summary.counts.items():
            totals[status] = totals.get(status, 0) + n
        totals["replaced"] = totals.get("replaced", 0) + summary.replaced
        key = (summary.dataset.market, summary.dataset.data_type)
        missing[key] = missing.get(key, 0) + summary.count("missing")
    for (market, data_type), count in missing.items():
        COVERAGE_MISSING_DAYS.labels(market=market, data_type=data_type).set(count)
    return totals
