"""Gold: the tables of `lake/gold_tables.py`, kept up to date from silver incrementally.

Every gold table is partitioned by `month` (first day of the UTC month) and sorted by
symbol. A gold row depends only on silver rows of its own (market, symbol, UTC day): an
hour or a day bucket never crosses midnight UTC. The interval klines are resampled from is
chosen per symbol from the ledger, the same way for a full and an incremental build. So a
build recomputes only the days, within (market, symbol, month) partitions, whose ledger
rows changed since the table's watermark (`lake/gold_state.py`): a daily file's day, a
monthly file's month. A daily update therefore reads one day of silver per symbol, not the
month so far. Work goes a bounded group of partitions at a time, one commit per group that
replaces exactly their rows. Within a group, silver is read in pieces of at most
`piece_rows` rows (the ledger's row counts per symbol and day; a piece is never smaller
than one symbol's day): a full build of a busy trades month reads a day or a few at a
time, not the month, and many small partitions still share one scan. Only gold rows (a
few per symbol and day) are held for the whole group. A group whose recomputed rows equal
the stored ones is not written, so a build with nothing new makes no snapshot.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import reduce

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pyiceberg.expressions import (
    AlwaysFalse,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    In,
    LessThan,
    Or,
)
from pyiceberg.table import Table

from crypto_lakehouse.archive.catalog import Market
from crypto_lakehouse.archive.paths import next_month
from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.lake.gold_state import MARGIN, GoldState
from crypto_lakehouse.lake.gold_tables import (
    FIXED_INTERVALS,
    GOLD_TABLES,
    TARGETS,
    GoldTable,
    interval_seconds,
)
from crypto_lakehouse.lake.query import QueryEngine, table_dataset
from crypto_lakehouse.lake.tables import SilverTable
from crypto_lakehouse.lake.warehouse import GOLD, SILVER, Warehouse

__all__ = ["GOLD_TABLES", "GoldResult", "build_gold"]

GROUP_PARTITIONS = 400  # (symbol, month) partitions per gold commit
# Silver rows one recompute query may read (the ledger's count): peak memory follows the rows
# a DuckDB query scans (about 420 MiB at 2 M trades rows, 1.1 GiB at 20 M), so a piece
# stops before it would pass this, and one (symbol, day) over it is a piece of its own.
PIECE_ROWS = 1_000_000
DAY_COLUMN = "date"  # every gold table's UTC day: what a partial recompute filters on
LAYOUT_VERSION = "month-partitioned/1"  # bump when the SQL changes what a row means
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_PROPERTIES = {
    "commit.manifest-merge.enabled": "true",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
}


@dataclass
class GoldResult:
    """What a build did and what the tables hold: rows per table (all of them), partitions
    recomputed and commits made this run, and the resampling check's mismatches (every
    one stored; `new_mismatches` counts those in the partitions recomputed now)."""

    rows: dict[str, int] = field(default_factory=dict)
    recomputed: dict[str, int] = field(default_factory=dict)
    commits: dict[str, int] = field(default_factory=dict)
    full: dict[str, bool] = field(default_factory=dict)
    pieces: dict[str, int] = field(default_factory=dict)  # silver queries made per table
    largest_plan: dict[str, int] = field(default_factory=dict)  # most rows in one piece's files
    checked: int = 0
    mismatches: list[dict] = field(default_factory=list)
    new_mismatches: int = 0


# -- the build --------------------------------------------------------------------------------


def build_gold(
    warehouse: Warehouse,
    *,
    full: bool = False,
    margin: timedelta = MARGIN,
    group_partitions: int = GROUP_PARTITIONS,
    piece_rows: int = PIECE_ROWS,
) -> GoldResult:
    """Bring every gold table up to date with silver; tables without sources are left alone.

    Incremental unless `full` (or the table is new, or its layout changed): only the
    (market, symbol, month) partitions the silver ledger shows changed are recomputed. A
    table's watermark advances only after all of its partitions are written, so a build
    that fails is redone from the same point. Silver is read at most about `piece_rows`
    rows at a time (one symbol's day at least). Raises StorageError for the catalog database.
    """
    result = GoldResult()
    state = GoldState(warehouse.config.sqlalchemy_url, margin)
    silver = set(warehouse.tables(SILVER))
    try:
        with QueryEngine(warehouse) as engine:
            for spec in GOLD_TABLES:
                builder = _Builder(warehouse, engine, state, spec, silver, group_partitions)
                builder.piece_rows = max(piece_rows, 1)
                builder.run(full, result)
    finally:
        state.dispose()
    result.rows = {s.identifier: _total_rows(warehouse.table(s.identifier)) for s in GOLD_TABLES}
    result.rows = {name: rows for name, rows in result.rows.items() if rows is not None}
    checks = warehouse.table(f"{GOLD}.kline_checks")
    if checks is not None:
        result.checked = result.rows.get(f"{GOLD}.kline_checks", 0)
        bad = checks.scan(
            row_filter=EqualTo("ok", False),
            selected_fields=("market", "symbol", "interval", "open_time", "mismatched"),
        ).to_arrow()
        bad = bad.sort_by(
            [("market", "ascending"), ("symbol", "ascending"), ("open_time", "ascending")]
        )
        result.mismatches = bad.to_pylist()
    return result


class _Builder:
    """Brings one gold table up to date."""

    def __init__(
        self,
        warehouse: Warehouse,
        engine: QueryEngine,
        state: GoldState,
        spec: GoldTable,
        silver: set[str],
        group_partitions: int,
    ) -> None:
        self.warehouse, self.engine, self.state, self.spec = warehouse, engine, state, spec
        self.group_partitions = group_partitions
        self.piece_rows = PIECE_ROWS
        self.pieces = self.largest_plan = 0
        self.sources = {
            SilverTable.of(m, spec.data_type).identifier: m
            for m in spec.markets()
            if SilverTable.of(m, spec.data_type).identifier in silver
        }
        self.schema = _gold_schema(engine, spec)
        digest = hashlib.sha256(f"{LAYOUT_VERSION}\n{self.schema}".encode()).hexdigest()
        self.layout = digest[:16]

    def run(self, full: bool, result: GoldResult) -> None:
        if not self.sources:
            return
        name = self.spec.identifier
        table, created = self._ensure_table()
        since = None if full or created else self.state.watermark(name, self.layout)
        if since is None:
            self.state.forget(name)
            self.state.set_watermark(name, self.layout, None)
            touched, newest = self.state.everything(list(self.sources))
        else:
            touched, newest = self.state.touched(list(self.sources), since)
        wanted: dict[Market, Spans] = defaultdict(dict)
        for t in touched:
            _widen(wanted[self.sources[t.table_name]], (t.month, t.symbol), t.first, t.next)
        chosen: dict[Market, dict[tuple[str, str], str | None]] = {}
        for market in list(wanted):
            chosen[market] = self._finest(market, wanted[market], since is None)
        recomputed = commits = 0
        every = [
            (market, part) for market, pairs in sorted(wanted.items()) for part in _parts(pairs)
        ]
        for group in _chunks(every, self.group_partitions):  # markets share a commit
            written, new_bad = self._refresh(table, group, chosen)
            recomputed += len(group)
            commits += written
            result.new_mismatches += new_bad
        if since is None:
            commits += self._drop_strays(table, wanted)
        for market, picked in chosen.items():
            self.state.save_finest(name, market.value, picked)
        mark = max(m for m in (since, newest, _EPOCH) if m is not None)
        self.state.set_watermark(name, self.layout, mark)
        result.recomputed[name], result.commits[name] = recomputed, commits
        result.pieces[name], result.largest_plan[name] = self.pieces, self.largest_plan
        result.full[name] = since is None

    def _ensure_table(self) -> tuple[Table, bool]:
        """The gold table in this layout; an older layout (or schema) is dropped: gold is
        derived, and a full build remakes it."""
        name = self.spec.identifier
        existing = self.warehouse.table(name)
        if existing is not None:
            same = _simple(existing.schema().as_arrow()) == _simple(self.schema)
            spec_fields = [f.name for f in existing.spec().fields]
            if same and spec_fields == ["month"]:
                return existing, False
            self.warehouse.catalog.drop_table(name)
        table = self.warehouse.ensure_table(
            name, self.schema, ["month"], _PROPERTIES, sort_by=list(self.spec.key)
        )
        return table, True

    def _finest(
        self, market: Market, pairs: Spans, everything: bool
    ) -> dict[tuple[str, str], str | None]:
        """The interval each touched symbol resamples from, per target. A symbol whose
        choice differs from the one its rows were built with (or that was never built) gets
        all its months recomputed whole (added to `pairs`)."""
        if not self.spec.targets:
            return {}
        symbols = {s for _, s in pairs}
        picked: dict[tuple[str, str], str | None] = {}
        for target in self.spec.targets:
            found = self.state.finest(
                market.value, self.spec.data_type.value, symbols, FIXED_INTERVALS, TARGETS[target]
            )
            picked.update({(s, target): i for s, i in found.items()})
        if not everything:
            stored = self.state.stored_finest(self.spec.identifier, market.value, symbols)
            changed = {s for (s, t), i in picked.items() if stored.get((s, t), "?") != i}
            if changed:
                months = self.state.months(market.value, self.spec.data_type.value, changed)
                for s, m in months:
                    _widen(pairs, (m, s), m, next_month(m))
        return picked

    def _refresh(
        self,
        table: Table,
        group: list[tuple[Market, Part]],
        chosen: dict[Market, dict[tuple[str, str], str | None]],
    ) -> tuple[int, int]:
        """Recompute one group of partitions (of any markets) and replace their rows, in one
        commit, when they changed. Returns (commits made, mismatches among the new rows)."""
        target = self.warehouse.table(self.spec.identifier) or table
        arrow_schema = target.schema().as_arrow()
        by_market: dict[Market, list[Part]] = defaultdict(list)
        for market, part in group:
            by_market[market].append(part)
        weights = {
            market: self._day_rows(market, parts, chosen.get(market, {}))
            for market, parts in by_market.items()
        }
        computed = []
        for piece in _pieces(group, lambda m, s, d: weights[m].get((s, d), 0), self.piece_rows):
            in_piece: dict[Market, list[Part]] = defaultdict(list)
            for market, part in piece:
                in_piece[market].append(part)
            for market, parts in in_piece.items():
                rows = self._compute(market, parts, chosen.get(market, {}))
                computed.append(_conform(rows, arrow_schema))
        data = _sorted(pa.concat_tables(computed).combine_chunks(), self.spec.key)
        where = reduce(Or, [_partition_filter(m, parts) for m, parts in by_market.items()])
        stored = _sorted(
            _conform(target.scan(row_filter=where).to_arrow(), arrow_schema), self.spec.key
        )
        bad = 0
        if "ok" in data.column_names:
            bad = (
                data.num_rows - pc.sum(data.column("ok").cast(pa.int64())).as_py()
                if data.num_rows
                else 0
            )
        if stored.equals(data):
            return 0, 0  # unchanged: nothing written, nothing new to report
        properties = {"lakehouse.gold-partitions": str(len(group))}

        def replace(t: Table) -> None:
            if data.num_rows:
                t.overwrite(data, overwrite_filter=where, snapshot_properties=properties)
            else:
                t.delete(where, snapshot_properties=properties)

        self.warehouse.commit(self.spec.identifier, replace)
        return 1, bad

    def _day_rows(
        self, market: Market, parts: list[Part], picked: dict[tuple[str, str], str | None]
    ) -> dict[tuple[str, date], float]:
        """Silver rows per (symbol, day) that recomputing `parts` reads, from the ledger (a
        monthly file's rows spread over its days)."""
        intervals = None
        if self.spec.targets:
            intervals = sorted({i for i in picked.values() if i} | set(self.spec.targets))
        found = self.state.day_rows(
            market.value,
            self.spec.data_type.value,
            {p.symbol for p in parts},
            {p.month for p in parts},
            intervals,
        )
        rows: dict[tuple[str, date], float] = defaultdict(float)
        for (symbol, period, monthly), count in found.items():
            if not monthly:
                rows[(symbol, period)] += count
                continue
            days = (next_month(period) - period).days
            for n in range(days):
                rows[(symbol, period + timedelta(days=n))] += count / days
        return rows

    def _compute(
        self,
        market: Market,
        group: list[Part],
        picked: dict[tuple[str, str], str | None],
    ) -> pa.Table:
        """The gold rows of one piece, from a silver scan pruned to its partitions' days."""
        source = SilverTable.of(market, self.spec.data_type).identifier
        silver = self.engine.table(source)
        if silver is None:
            return pa.table({})
        sql = self.spec.sql(market)
        symbols = sorted({p.symbol for p in group})
        months = sorted({p.month for p in group})
        first, last = min(p.first for p in group), max(p.next for p in group)
        parts: list[BooleanExpression] = [
            In("symbol", symbols),
            GreaterThanOrEqual("date", first),
            LessThan("date", last),
        ]
        names = {f.name for f in silver.schema().fields}
        if "month" in names:
            parts.append(In("month", months))
        if self.spec.targets and "interval" in names:
            used = {i for i in picked.values() if i} | set(self.spec.targets)
            parts.append(In("interval", sorted(used)))
        tasks = list(silver.scan(row_filter=reduce(And, parts)).plan_files())
        if any(task.delete_files for task in tasks):
            raise ConfigError(f"{source} has delete files; gold reads copy-on-write tables only")
        self.pieces += 1
        self.largest_plan = max(self.largest_plan, sum(t.file.record_count for t in tasks))
        con = self.engine.con
        dataset = table_dataset(silver, self.engine.filesystem, tasks)
        if isinstance(dataset, ds.Dataset):
            # A planned file holds other symbols' rows of its days (a trades day file every
            # symbol's): only the piece's own (symbol, day) rows reach DuckDB, and row groups
            # of other symbols are skipped by their statistics, unread.
            dataset = _bounded_scan(dataset.filter(_silver_filter(group)), sql)
        con.register("scan", dataset)
        con.register("pairs", _pairs_table(group))
        for target in self.spec.targets:
            con.register(f"finest_{target}", _finest_table(picked, target, symbols))
        # Constant bounds (two dates of ours) let DuckDB skip row groups outside the days.
        bounds = f"s.date >= DATE '{first.isoformat()}' AND s.date < DATE '{last.isoformat()}'"
        con.execute(
            "CREATE OR REPLACE TEMP VIEW src AS SELECT s.* FROM scan s JOIN pairs p "  # noqa: S608
            "ON s.symbol = p.symbol AND s.date >= p.first AND s.date < p.next WHERE " + bounds
        )
        return _run_sql(self.engine, sql)

    def _drop_strays(self, table: Table, wanted: dict[Market, Spans]) -> int:
        """After a full build: delete partitions that silver no longer has (one commit per
        group)."""
        current = self.warehouse.table(self.spec.identifier) or table
        self.engine.con.register("gold_now", table_dataset(current, self.engine.filesystem))
        present = _run_sql(self.engine, "SELECT DISTINCT market, symbol, month FROM gold_now")
        strays: dict[Market, Spans] = defaultdict(dict)
        for row in present.to_pylist():
            market = Market(row["market"])
            if (row["month"], row["symbol"]) not in wanted.get(market, {}):
                _widen(
                    strays[market],
                    (row["month"], row["symbol"]),
                    row["month"],
                    next_month(row["month"]),
                )
        commits = 0
        for market, pairs in sorted(strays.items()):
            for group in _chunks(_parts(pairs), self.group_partitions):
                where = _partition_filter(market, group)
                self.warehouse.commit(self.spec.identifier, lambda t, w=where: t.delete(w))
                commits += 1
        return commits


# -- partitions and the days of them to recompute ----------------------------------------------

Spans = dict[tuple[date, str], tuple[date, date]]  # (month, symbol) -> (first day, next day)


@dataclass(frozen=True, order=True)
class Part:
    """The days [first, next) of one (month, symbol) gold partition to recompute."""

    month: date
    symbol: str
    first: date
    next: date

    @property
    def whole(self) -> bool:
        return self.first <= self.month and self.next >= next_month(self.month)


def _widen(spans: Spans, key: tuple[date, str], first: date, next_: date) -> None:
    """Add [first, next_) to the days of `key`: one span covering both (a day range, kept
    whole rather than split, so a partition is recomputed once)."""
    month = key[0]
    first, next_ = max(first, month), min(next_, next_month(month))
    if key in spans:
        known = spans[key]
        first, next_ = min(first, known[0]), max(next_, known[1])
    spans[key] = (first, next_)


def _parts(spans: Spans) -> list[Part]:
    return sorted(Part(m, s, first, next_) for (m, s), (first, next_) in spans.items())


def _pieces(
    group: list[tuple[Market, Part]],
    weight: Callable[[Market, str, date], float],
    bound: int,
) -> list[list[tuple[Market, Part]]]:
    """`group`'s days cut, in order, into pieces of at most `bound` rows by `weight`
    (rows of a market's symbol on a day); a day over `bound` alone is one piece. Each piece
    lists (market, Part) with the Part narrowed to the days in it, so the pieces together
    cover exactly the group's days, each day once."""
    pieces: list[list[tuple[Market, Part]]] = []
    piece: list[tuple[Market, Part]] = []
    total = 0.0
    for market, part in group:
        start, day = part.first, part.first
        while day < part.next:
            rows = weight(market, part.symbol, day)
            if total + rows > bound and (piece or day > start):
                if day > start:
                    piece.append((market, Part(part.month, part.symbol, start, day)))
                pieces.append(piece)
                piece, total, start = [], 0.0, day
            total += rows
            day += timedelta(days=1)
        piece.append((market, Part(part.month, part.symbol, start, part.next)))
    if piece:
        pieces.append(piece)
    return pieces


# -- helpers ----------------------------------------------------------------------------------


def _gold_schema(engine: QueryEngine, spec: GoldTable) -> pa.Schema:
    """The table's columns: the SQL's output on empty silver tables of every market, joined
    by name (COIN-M names some volumes differently), so the layout does not depend on data."""
    con = engine.con
    con.register("pairs", _pairs_table([]))
    for target in spec.targets:
        con.register(f"finest_{target}", _finest_table({}, target, []))
    schemas = []
    for market in spec.markets():
        con.register("scan", SilverTable.of(market, spec.data_type).arrow_schema().empty_table())
        con.execute(
            "CREATE OR REPLACE TEMP VIEW src AS SELECT s.* FROM scan s JOIN pairs p "
            "ON s.symbol = p.symbol AND s.date >= p.first AND s.date < p.next"
        )
        schemas.append(_run_sql(engine, spec.sql(market)).schema)
    return pa.unify_schemas(schemas)


def _run_sql(engine: QueryEngine, sql: str) -> pa.Table:
    """Our own SQL on the engine's connection (a DuckDB error here is a bug, not bad input)."""
    return engine.con.sql(sql).to_arrow_table()


def _pairs_table(group: list[Part]) -> pa.Table:
    return pa.table(
        {
            "symbol": pa.array([p.symbol for p in group], pa.string()),
            "first": pa.array([p.first for p in group], pa.date32()),
            "next": pa.array([p.next for p in group], pa.date32()),
        }
    )


def _finest_table(
    picked: dict[tuple[str, str], str | None], target: str, symbols: list[str]
) -> pa.Table:
    rows = [(s, picked.get((s, target))) for s in symbols]
    rows = [(s, i) for s, i in rows if i is not None]
    return pa.table(
        {
            "symbol": pa.array([s for s, _ in rows], pa.string()),
            "interval": pa.array([i for _, i in rows], pa.string()),
            "seconds": pa.array([interval_seconds(i) for _, i in rows], pa.int64()),
        }
    )


# What a piece's silver scan reads ahead. Registered as a bare dataset, DuckDB scans it with
# pyarrow's defaults (16 batches of each of 4 files ahead): a 20 M-row trades day held over
# 300 MiB of read-ahead rows and took gold past 1 GiB (docs/decisions.md).
SCAN_BATCH_ROWS = 65_536
SCAN_READAHEAD = 2


def _bounded_scan(dataset: ds.Dataset, sql: str) -> ds.Scanner:
    """The piece's rows as a scanner with a small read-ahead, reading only the columns the
    piece's SQL names (every column it uses appears in its text; a name that only appears
    in a string costs one more column read, never a wrong row) and the join's keys."""
    columns = [
        name
        for name in dataset.schema.names
        if name in ("symbol", "date") or re.search(rf"\b{re.escape(name)}\b", sql)
    ]
    return ds.Scanner.from_dataset(
        dataset,
        columns=columns,
        batch_size=SCAN_BATCH_ROWS,
        batch_readahead=SCAN_READAHEAD,
        fragment_readahead=1,
    )


def _partition_filter(market: Market, group: list[Part]) -> BooleanExpression:
    """Exactly the group's rows: per month and day span, the symbols in it (a whole month
    needs no day bounds, and then prunes by partition alone)."""
    by_span: dict[tuple[date, date, date], list[str]] = defaultdict(list)
    for p in group:
        by_span[(p.month, p.first, p.next)].append(p.symbol)
    ors: list[BooleanExpression] = []
    for (month, first, next_), symbols in sorted(by_span.items()):
        term: BooleanExpression = And(EqualTo("month", month), In("symbol", sorted(symbols)))
        if not Part(month, "", first, next_).whole:
            term = And(term, GreaterThanOrEqual(DAY_COLUMN, first), LessThan(DAY_COLUMN, next_))
        ors.append(term)
    if not ors:
        return AlwaysFalse()
    return And(EqualTo("market", market.value), reduce(Or, ors))


def _silver_filter(group: list[Part]) -> pc.Expression:
    """Exactly the silver rows of the parts' symbols and days, as a pyarrow filter."""
    by_span: dict[tuple[date, date], list[str]] = defaultdict(list)
    for p in group:
        by_span[(p.first, p.next)].append(p.symbol)
    terms = [
        pc.field("symbol").isin(sorted(symbols))
        & (pc.field("date") >= first)
        & (pc.field("date") < next_)
        for (first, next_), symbols in sorted(by_span.items())
    ]
    return reduce(lambda a, b: a | b, terms)


def _conform(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """`data` with exactly the table's columns (missing ones null: another market's names)."""
    rows = data.num_rows
    columns = [
        data.column(f.name).cast(f.type) if f.name in data.column_names else pa.nulls(rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema).combine_chunks()


def _sorted(data: pa.Table, key: tuple[str, ...]) -> pa.Table:
    return data.sort_by([(k, "ascending") for k in key]) if data.num_rows else data


def _simple(schema: pa.Schema) -> list[tuple[str, pa.DataType]]:
    def plain(t: pa.DataType) -> pa.DataType:
        return pa.string() if t == pa.large_string() else t

    return [(f.name, plain(f.type)) for f in schema]


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), max(size, 1)):
        yield items[start : start + size]


def _total_rows(table: Table | None) -> int | None:
    if table is None:
        return None
    snapshot = table.current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return 0
    return int(snapshot.summary["total-records"] or 0)
