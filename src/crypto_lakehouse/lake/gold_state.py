"""Gold's bookkeeping in the catalog database: what changed in silver since each gold build.

    lake_gold_state    one row per gold table: the ledger's `updated_at` up to which its
                       changes are in the table (the watermark), and the layout (schema and
                       partitioning) the table was built with; a new layout means a full build
    lake_gold_finest   per gold table, market, symbol and target interval (`1h`, `1d`): the
                       kline interval the bars were resampled from; when a finer interval
                       appears for a symbol, every month of that symbol is recomputed

Which (silver table, symbol, month) changed, and which days of it, comes from the silver
ledger's `updated_at` index, one query per gold table: rows updated after the watermark
minus a margin. A daily file changes its own day, a monthly file its whole month. The
margin covers ledger rows whose transaction committed after their `updated_at` was stamped
(and clocks a little apart between workers); the partitions it brings back a second time are
recomputed and, being unchanged, not written again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError

from crypto_lakehouse.archive.paths import next_month
from crypto_lakehouse.errors import StorageError
from crypto_lakehouse.lake.ledger import FILES, IN_SILVER, Status

# Ledger rows are stamped (worker clock) right before the one short transaction that writes
# them: seconds, plus clock skew between NTP-synced workers. Two minutes covers both; a
# longer margin makes the next build recompute everything silver wrote in it again (a
# backfill's whole silver run, when gold follows within the margin).
MARGIN = timedelta(minutes=2)

_METADATA = sa.MetaData()
STATE = sa.Table(
    "lake_gold_state",
    _METADATA,
    sa.Column("gold_table", sa.Text, primary_key=True),
    sa.Column("watermark", sa.DateTime(timezone=True)),  # NULL: no complete build yet
    sa.Column("layout", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
FINEST = sa.Table(
    "lake_gold_finest",
    _METADATA,
    sa.Column("gold_table", sa.Text, primary_key=True),
    sa.Column("market", sa.Text, primary_key=True),
    sa.Column("symbol", sa.Text, primary_key=True),
    sa.Column("target", sa.Text, primary_key=True),
    sa.Column("interval", sa.Text),  # NULL: no interval below the target
)
_IN_SILVER = [s.value for s in IN_SILVER]


@dataclass(frozen=True, order=True)
class Touched:
    """One silver (table, symbol, month) whose ledger rows changed, and the days of it they
    cover (`first` to `next`, exclusive): the part of a gold partition to redo."""

    table_name: str
    symbol: str
    month: date
    first: date
    next: date

    @classmethod
    def whole(cls, table_name: str, symbol: str, month: date) -> Touched:
        return cls(table_name, symbol, month, month, next_month(month))


class GoldState:
    """The two tables above plus the ledger reads gold needs; SQL errors become StorageError."""

    def __init__(self, url: str, margin: timedelta = MARGIN) -> None:
        self.margin = margin
        self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=2)
        self._run(lambda conn: _METADATA.create_all(conn, checkfirst=True), write=True)

    def watermark(self, gold_table: str, layout: str) -> datetime | None:
        """Where the last complete build of `gold_table` read the ledger up to; None when it
        was never built completely, or with another layout (then it needs a full build)."""
        query = sa.select(STATE.c.watermark, STATE.c.layout).where(STATE.c.gold_table == gold_table)
        row = self._run(lambda conn: conn.execute(query).first())
        if row is None or row.layout != layout:
            return None
        return row.watermark

    def set_watermark(self, gold_table: str, layout: str, watermark: datetime | None) -> None:
        """Record a complete build (or, with None, that a full build has begun)."""
        values = {"watermark": watermark, "layout": layout, "updated_at": datetime.now(UTC)}
        statement = insert(STATE).values(gold_table=gold_table, **values)
        statement = statement.on_conflict_do_update(
            index_elements=[STATE.c.gold_table], set_=values
        )
        self._run(lambda conn: conn.execute(statement), write=True)

    def touched(
        self, tables: Sequence[str], since: datetime
    ) -> tuple[list[Touched], datetime | None]:
        """(table, symbol, month) with ledger rows updated after `since` minus the margin, and
        the newest `updated_at` among them (the next watermark). Any status counts: a file
        that changed outcome may have changed what silver holds for its month."""
        query = touched_query(tables, since - self.margin)
        rows = self._run(lambda conn: conn.execute(query).all())
        newest = max((r.newest for r in rows), default=None)
        touched = [
            Touched.whole(r.table_name, r.symbol, r.month)
            if r.monthly
            else Touched(r.table_name, r.symbol, r.month, r.first, r.last + timedelta(days=1))
            for r in rows
        ]
        return sorted(touched), newest

    def everything(self, tables: Sequence[str]) -> tuple[list[Touched], datetime | None]:
        """Every (table, symbol, month) with rows in silver, and the ledger's newest
        `updated_at` for these tables (read first: a change after it is seen next time)."""
        newest = sa.select(sa.func.max(FILES.c.updated_at)).where(
            FILES.c.table_name.in_(list(tables))
        )
        query = (
            sa.select(FILES.c.table_name, FILES.c.symbol, FILES.c.month)
            .where(FILES.c.table_name.in_(list(tables)), FILES.c.status.in_(_IN_SILVER))
            .distinct()
        )

        def read(conn: sa.Connection) -> tuple[list[Touched], datetime | None]:
            mark = conn.execute(newest).scalar()
            return sorted(Touched.whole(*r) for r in conn.execute(query)), mark

        return self._run(read)

    def months(self, market: str, data_type: str, symbols: Iterable[str]) -> list[tuple[str, date]]:
        """Every (symbol, month) of `symbols` with rows in silver (the ledger's series index)."""
        query = (
            sa.select(FILES.c.symbol, FILES.c.month)
            .where(FILES.c.market == market, FILES.c.data_type == data_type)
            .where(FILES.c.symbol.in_(sorted(set(symbols))), FILES.c.status.in_(_IN_SILVER))
            .distinct()
        )
        return self._run(lambda conn: [(r[0], r[1]) for r in conn.execute(query)])

    def day_rows(
        self,
        market: str,
        data_type: str,
        symbols: Iterable[str],
        months: Iterable[date],
        intervals: Iterable[str] | None = None,
    ) -> dict[tuple[str, date, bool], int]:
        """Rows in silver per (symbol, period, monthly file?) of `symbols` in `months` (only
        `intervals`, for kline data sets), from the ledger's series index: what a gold
        recompute of those days will read. Superseded daily files are not counted (their
        rows are in silver through the monthly file)."""
        wanted, periods = sorted(set(symbols)), sorted(set(months))
        if not wanted or not periods:
            return {}
        monthly = FILES.c.frequency == "monthly"
        query = (
            sa.select(FILES.c.symbol, FILES.c.period, monthly, sa.func.sum(FILES.c.rows))
            .where(FILES.c.market == market, FILES.c.data_type == data_type)
            .where(FILES.c.symbol.in_(wanted), FILES.c.month.in_(periods))
            .where(FILES.c.status == Status.TRANSFORMED.value)
            .group_by(FILES.c.symbol, FILES.c.period, monthly)
        )
        if intervals is not None:
            query = query.where(FILES.c.interval.in_(sorted(set(intervals))))
        return self._run(
            lambda conn: {(r[0], r[1], bool(r[2])): int(r[3] or 0) for r in conn.execute(query)}
        )

    def finest(
        self,
        market: str,
        data_type: str,
        symbols: Iterable[str],
        intervals: Sequence[tuple[str, int]],
        below: int,
    ) -> dict[str, str | None]:
        """Per symbol, the finest interval shorter than `below` seconds that has files in
        silver, from the ledger (the same answer for a full and an incremental build): one
        index probe per (symbol, interval), finest first."""
        wanted = sorted(set(symbols))
        if not wanted:
            return {}
        query = finest_query(market, data_type, wanted, intervals, below)
        if query is None:
            return dict.fromkeys(wanted)
        return self._run(lambda conn: {r[0]: r[1] for r in conn.execute(query)})

    def stored_finest(
        self, gold_table: str, market: str, symbols: Iterable[str]
    ) -> dict[tuple[str, str], str | None]:
        """The recorded (symbol, target) -> interval of `symbols` (absent: never built)."""
        query = (
            sa.select(FINEST.c.symbol, FINEST.c.target, FINEST.c.interval)
            .where(FINEST.c.gold_table == gold_table, FINEST.c.market == market)
            .where(FINEST.c.symbol.in_(sorted(set(symbols))))
        )
        return self._run(lambda conn: {(r[0], r[1]): r[2] for r in conn.execute(query)})

    def save_finest(
        self, gold_table: str, market: str, chosen: dict[tuple[str, str], str | None]
    ) -> None:
        """Record the intervals the table's rows are now resampled from."""
        if not chosen:
            return
        rows = [
            {"gold_table": gold_table, "market": market, "symbol": s, "target": t, "interval": i}
            for (s, t), i in sorted(chosen.items())
        ]
        statement = insert(FINEST).values(rows)
        statement = statement.on_conflict_do_update(
            index_elements=[FINEST.c.gold_table, FINEST.c.market, FINEST.c.symbol, FINEST.c.target],
            set_={"interval": statement.excluded.interval},
        )
        self._run(lambda conn: conn.execute(statement), write=True)

    def forget(self, gold_table: str) -> None:
        """Before a full build: no watermark, no recorded intervals."""

        def clear(conn: sa.Connection) -> None:
            conn.execute(FINEST.delete().where(FINEST.c.gold_table == gold_table))
            conn.execute(
                STATE.update().where(STATE.c.gold_table == gold_table).values(watermark=None)
            )

        self._run(clear, write=True)

    def dispose(self) -> None:
        self.engine.dispose()

    def _run(self, work: Any, *, write: bool = False) -> Any:
        try:
            with self.engine.begin() if write else self.engine.connect() as conn:
                return work(conn)
        except SQLAlchemyError as exc:
            raise StorageError(f"catalog database: {exc.__class__.__name__}: {exc}") from exc


def touched_query(tables: Sequence[str], after: datetime) -> sa.Select:
    """(table, symbol, month, first and last period, whether a monthly file is among them,
    newest updated_at) of ledger rows updated after `after`: a range scan of the
    `updated_at` index, however large the ledger."""
    return (
        sa.select(
            FILES.c.table_name,
            FILES.c.symbol,
            FILES.c.month,
            sa.func.min(FILES.c.period).label("first"),
            sa.func.max(FILES.c.period).label("last"),
            sa.func.bool_or(FILES.c.frequency == "monthly").label("monthly"),
            sa.func.max(FILES.c.updated_at).label("newest"),
        )
        .where(FILES.c.updated_at > after, FILES.c.table_name.in_(list(tables)))
        .group_by(FILES.c.table_name, FILES.c.symbol, FILES.c.month)
    )


def finest_query(
    market: str,
    data_type: str,
    wanted: list[str],
    intervals: Sequence[tuple[str, int]],
    below: int,
) -> sa.Select | None:
    """Per symbol of `wanted`, the finest interval below `below` seconds with files in
    silver: EXISTS probes on the series index, finest first. None when no interval is
    below `below`."""
    candidates = sorted((s, i) for i, s in intervals if s < below)
    if not candidates:
        return None
    found = sa.values(
        sa.column("interval", sa.Text), sa.column("seconds", sa.Integer), name="i"
    ).data([(i, s) for s, i in candidates])
    listed = sa.func.unnest(sa.cast(sa.literal(wanted), sa.ARRAY(sa.Text)))
    names = listed.table_valued("symbol").render_derived(name="s")
    probe = (
        sa.select(FILES.c.path)
        .where(FILES.c.market == market, FILES.c.data_type == data_type)
        .where(FILES.c.symbol == names.c.symbol, FILES.c.interval == found.c.interval)
        .where(FILES.c.status.in_(_IN_SILVER))
        .limit(1)
        .correlate_except(FILES)
    )
    pick = (
        sa.select(found.c.interval)
        .where(sa.exists(probe))
        .order_by(found.c.seconds)
        .limit(1)
        .scalar_subquery()
    )
    return sa.select(names.c.symbol, pick)
