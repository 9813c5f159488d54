"""Which bronze file versions silver has taken in: the transform's durable state.

One row per archive file (`path`, the key `data/...` that the bronze manifest uses too), in
the catalog database next to the Iceberg catalog and the manifest: the SHA-256 last
transformed (or flagged), the outcome, counts, and where the file sits (table, symbol,
interval, month), so that every question the builder asks is an indexed lookup:

    pending(...)            verified manifest rows whose SHA-256 the ledger does not hold,
                            one SQL anti-join, streamed in planning order
    monthly_in(...)         which (symbol, interval, month) of a batch already have their
                            monthly file in silver (their daily files are superseded)
    dailies_under(...)      the daily files a monthly file replaces
    outstanding()           files flagged drift or corrupt (a partial index)

None of these reads more rows than it returns (plus a bounded margin), however many files
the lake holds. A file flagged for schema drift is retried only when its schema changes
(`schema_fingerprint`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError

from crypto_lakehouse.archive.paths import month_start
from crypto_lakehouse.errors import ConfigError, StorageError

_METADATA = sa.MetaData()
FILES = sa.Table(
    "lake_silver_files",
    _METADATA,
    sa.Column("path", sa.Text, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("table_name", sa.Text, nullable=False),
    sa.Column("market", sa.Text, nullable=False),
    sa.Column("frequency", sa.Text, nullable=False),
    sa.Column("data_type", sa.Text, nullable=False),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("interval", sa.Text),
    sa.Column("period", sa.Date, nullable=False),
    sa.Column("month", sa.Date, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False, default=0),
    sa.Column("rejects", sa.BigInteger, nullable=False, default=0),
    sa.Column("duplicates", sa.BigInteger, nullable=False, default=0),
    sa.Column("versions", sa.Integer, nullable=False, default=1),
    sa.Column("header", sa.Boolean),
    sa.Column("time_unit", sa.Text),
    sa.Column("schema_fingerprint", sa.Text, nullable=False),
    sa.Column("message", sa.Text),
    sa.Column("batch_id", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_lake_silver_files_series", "market", "data_type", "symbol", "interval", "month"),
    sa.Index("ix_lake_silver_files_updated_at", "updated_at"),
    sa.Index(
        "ix_lake_silver_files_flagged",
        "status",
        postgresql_where=sa.text("status IN ('drift', 'corrupt')"),
    ),
)

# The bronze manifest's table, as far as the pending query reads it (catalog/schema.py owns it).
_BRONZE = sa.table(
    "bronze_files",
    sa.column("path"),
    sa.column("market"),
    sa.column("frequency"),
    sa.column("data_type"),
    sa.column("symbol"),
    sa.column("interval"),
    sa.column("period"),
    sa.column("bronze_bucket"),
    sa.column("bronze_key"),
    sa.column("size"),
    sa.column("sha256"),
    sa.column("status"),
    sa.column("ingested_at"),
)

# Where the last complete, unfiltered silver run started reading the manifest: later runs
# look only at files verified since (minus a margin), through the manifest's ingested_at index.
CURSOR = sa.Table(
    "lake_silver_cursor",
    _METADATA,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("verified_since", sa.DateTime(timezone=True), nullable=False),
)
CURSOR_MARGIN = timedelta(minutes=10)  # longer than any ingest transaction stays open


class Status(StrEnum):
    TRANSFORMED = "transformed"
    SUPERSEDED = "superseded"  # a daily file whose month is in silver from the monthly file
    DRIFT = "drift"  # columns/types do not fit the schema: flagged, skipped
    CORRUPT = "corrupt"  # bytes do not hash to the manifest's SHA-256, or the zip is damaged


IN_SILVER = (Status.TRANSFORMED, Status.SUPERSEDED)


@dataclass(frozen=True)
class FileRecord:
    """The transform's outcome for one archive file version."""

    path: str
    sha256: str
    table_name: str
    market: str
    frequency: str
    data_type: str
    symbol: str
    interval: str | None
    period: date
    status: Status
    schema_fingerprint: str
    rows: int = 0
    rejects: int = 0
    duplicates: int = 0
    header: bool | None = None
    time_unit: str | None = None
    message: str | None = None
    versions: int = 1
    batch_id: str | None = None

    @property
    def key(self) -> str:
        return self.path

    @property
    def month(self) -> date:
        return month_start(self.period)

    def as_row(self) -> dict[str, Any]:
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row["status"] = self.status.value
        row["month"] = self.month
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> FileRecord:
        data = {f.name: row[f.name] for f in fields(cls) if f.name in row}
        data["status"] = Status(data["status"])
        if isinstance(data["period"], str):
            data["period"] = date.fromisoformat(data["period"])
        return cls(**data)


@dataclass(frozen=True)
class PendingFile:
    """A verified bronze file the ledger does not hold at this SHA-256 (or holds as drift)."""

    path: str
    sha256: str
    bronze_bucket: str | None
    bronze_key: str | None
    size: int | None
    prior_sha256: str | None
    prior_status: Status | None
    prior_rejects: int
    prior_fingerprint: str | None


class Ledger:
    """The `lake_silver_files` table; SQL errors become StorageError here."""

    def __init__(self, url: str) -> None:
        # Each batch in flight holds one connection for its table's advisory lock and takes
        # another for a moment per lookup; light batches run up to 4 per lane of `parallel`.
        self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=16)
        try:
            with self.engine.begin() as conn:
                _refuse_old_layout(conn)
                _METADATA.create_all(conn, checkfirst=True)
        except SQLAlchemyError as exc:
            raise StorageError(f"catalog database: {exc.__class__.__name__}") from exc

    # -- lookups ------------------------------------------------------------------------------

    def get(self, path: str) -> FileRecord | None:
        return self.records([path]).get(path)

    def records(self, paths: Sequence[str]) -> dict[str, FileRecord]:
        """The ledger rows of `paths` (primary-key lookups), by path."""
        if not paths:
            return {}
        with self._connect() as conn:
            rows = conn.execute(sa.select(FILES).where(FILES.c.path.in_(list(paths))))
            return {r.path: FileRecord.from_row(dict(r._mapping)) for r in rows}

    def monthly_in(
        self, market: str, data_type: str, series: Iterable[tuple[str, str | None, date]]
    ) -> set[tuple[str, str | None, date]]:
        """Which (symbol, interval, month) of `series` have their monthly file in silver."""
        wanted = set(series)
        if not wanted:
            return set()
        symbols = sorted({s for s, _, _ in wanted})
        months = sorted({m for _, _, m in wanted})
        query = (
            sa.select(FILES.c.symbol, FILES.c.interval, FILES.c.month)
            .where(FILES.c.market == market, FILES.c.data_type == data_type)
            .where(FILES.c.symbol.in_(symbols), FILES.c.month.in_(months))
            .where(FILES.c.frequency == "monthly", FILES.c.status == Status.TRANSFORMED.value)
        )
        with self._connect() as conn:
            found = {(r.symbol, r.interval, r.month) for r in conn.execute(query)}
        return found & wanted

    def dailies_under(
        self, market: str, data_type: str, series: Iterable[tuple[str, str | None, date]]
    ) -> dict[tuple[str, str | None, date], list[str]]:
        """The daily files in silver (transformed) under each (symbol, interval, month)."""
        wanted = set(series)
        if not wanted:
            return {}
        query = (
            sa.select(FILES.c.path, FILES.c.symbol, FILES.c.interval, FILES.c.month)
            .where(FILES.c.market == market, FILES.c.data_type == data_type)
            .where(FILES.c.symbol.in_(sorted({s for s, _, _ in wanted})))
            .where(FILES.c.month.in_(sorted({m for _, _, m in wanted})))
            .where(FILES.c.frequency == "daily", FILES.c.status == Status.TRANSFORMED.value)
        )
        found: dict[tuple[str, str | None, date], list[str]] = {}
        with self._connect() as conn:
            for r in conn.execute(query):
                series_key = (r.symbol, r.interval, r.month)
                if series_key in wanted:
                    found.setdefault(series_key, []).append(r.path)
        return found

    def pending_query(
        self,
        *,
        markets: Sequence[str] | None = None,
        data_types: Sequence[str] | None = None,
        symbols: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> sa.Select:
        """The statement `pending` runs (tests read its plan)."""
        bronze, done = _BRONZE.alias("b"), FILES.alias("l")
        base = (
            sa.select(
                bronze.c.path,
                bronze.c.sha256,
                bronze.c.bronze_bucket,
                bronze.c.bronze_key,
                bronze.c.size,
                done.c.sha256.label("prior_sha256"),
                done.c.status.label("prior_status"),
                done.c.rejects.label("prior_rejects"),
                done.c.schema_fingerprint.label("prior_fingerprint"),
                bronze.c.market.label("o_market"),
                bronze.c.data_type.label("o_data_type"),
                bronze.c.frequency.label("o_frequency"),
                bronze.c.interval.label("o_interval"),
                _partition_period(bronze).label("o_month"),
                bronze.c.symbol.label("o_symbol"),
                bronze.c.period.label("o_period"),
            )
            .select_from(bronze.outerjoin(done, done.c.path == bronze.c.path))
            .where(bronze.c.status == "verified", bronze.c.sha256.is_not(None))
        )
        for column, values in (
            (bronze.c.market, markets),
            (bronze.c.data_type, data_types),
            (bronze.c.symbol, symbols),
        ):
            if values:
                base = base.where(column.in_(list(values)))
        not_in = sa.or_(done.c.path.is_(None), done.c.sha256 != bronze.c.sha256)
        flagged = done.c.status == Status.DRIFT.value
        if since is None:
            union = base.where(sa.or_(not_in, flagged)).subquery("p")
        else:
            # Two index range scans (manifest by ingested_at, ledger's partial index), not a
            # scan of everything: an OR across the two tables could use neither index.
            union = sa.union_all(
                base.where(bronze.c.ingested_at >= since, not_in),
                base.where(flagged, done.c.sha256 == bronze.c.sha256),
            ).subquery("p")
        c = union.c
        query = sa.select(
            c.path, c.sha256, c.bronze_bucket, c.bronze_key, c.size, c.prior_sha256,
            c.prior_status, c.prior_rejects, c.prior_fingerprint,
        ).order_by(
            c.o_market, c.o_data_type, c.o_frequency.desc(), c.o_interval, c.o_month,
            c.o_symbol, c.o_period,
        )  # fmt: skip
        return query

    def pending(
        self,
        *,
        markets: Sequence[str] | None = None,
        data_types: Sequence[str] | None = None,
        symbols: Sequence[str] | None = None,
        since: datetime | None = None,
        chunk: int = 2000,
    ) -> Iterator[PendingFile]:
        """Verified bronze files not in silver at their SHA-256, streamed in planning order.

        Order: table (market, data type), monthly files before daily ones (so a daily file's
        month is known to be in silver when its batch is planned), then interval, period and
        symbol, which is the order rows sit in the data files. One query, read in chunks from
        a server-side cursor; memory does not grow with the archive.

        With `since` (the cursor of the last complete run), only files verified since then are
        read, through the manifest's `ingested_at` index, and files flagged for drift come from
        the ledger's partial index: a daily update reads what is new, not the whole manifest.
        """
        query = self.pending_query(
            markets=markets, data_types=data_types, symbols=symbols, since=since
        )
        try:
            with self.engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=chunk)
                for row in result.execute(query):
                    yield PendingFile(
                        row.path,
                        row.sha256,
                        row.bronze_bucket,
                        row.bronze_key,
                        row.size,
                        row.prior_sha256,
                        Status(row.prior_status) if row.prior_status else None,
                        row.prior_rejects or 0,
                        row.prior_fingerprint,
                    )
        except SQLAlchemyError as exc:
            raise StorageError(f"catalog database: {exc.__class__.__name__}: {exc}") from exc

    def cursor(self) -> datetime | None:
        """Where the last complete unfiltered run began, less a margin (None: never ran)."""
        with self._connect() as conn:
            value = conn.execute(
                sa.select(CURSOR.c.verified_since).where(CURSOR.c.name == "silver")
            ).scalar()
        return None if value is None else value - CURSOR_MARGIN

    def database_now(self) -> datetime:
        """The database's clock (the manifest's `ingested_at` is written with the app's; the
        margin covers the difference)."""
        with self._connect() as conn:
            return conn.execute(sa.select(sa.func.now())).scalar_one()

    def advance_cursor(self, started: datetime) -> None:
        """After a complete unfiltered run that began reading at `started`."""
        statement = insert(CURSOR).values(name="silver", verified_since=started)
        statement = statement.on_conflict_do_update(
            index_elements=[CURSOR.c.name], set_={"verified_since": started}
        )
        with self.engine.begin() as conn:
            conn.execute(statement)

    def outstanding(self, status: Status, limit: int = 1000) -> list[FileRecord]:
        """Files flagged `drift` or `corrupt` (from the partial index), at most `limit`."""
        query = sa.select(FILES).where(FILES.c.status == status.value).order_by(FILES.c.path)
        with self._connect() as conn:
            rows = conn.execute(query.limit(limit))
            return [FileRecord.from_row(dict(r._mapping)) for r in rows]

    def count_flagged(self) -> dict[str, int]:
        query = (
            sa.select(FILES.c.status, sa.func.count())
            .where(FILES.c.status.in_([Status.DRIFT.value, Status.CORRUPT.value]))
            .group_by(FILES.c.status)
        )
        with self._connect() as conn:
            return {status: count for status, count in conn.execute(query)}

    def all(self) -> list[FileRecord]:
        """Every row (small lakes and tests only: it loads the whole ledger)."""
        with self._connect() as conn:
            rows = conn.execute(sa.select(FILES).order_by(FILES.c.path))
            return [FileRecord.from_row(dict(r._mapping)) for r in rows]

    # -- writes -------------------------------------------------------------------------------

    def record(self, record: FileRecord) -> None:
        """Insert or update the file's row; `versions` counts distinct SHA-256s seen."""
        self.record_many([record])

    def record_many(self, records: Sequence[FileRecord], conn: sa.Connection | None = None) -> None:
        """`record` for many files in one statement (inside `conn`'s transaction if given)."""
        if not records:
            return
        if conn is not None:
            _upsert(conn, records)
            return
        try:
            with self.engine.begin() as own:
                _upsert(own, records)
        except SQLAlchemyError as exc:
            raise StorageError(f"catalog database: {exc.__class__.__name__}") from exc

    def supersede(self, paths: Sequence[str], conn: sa.Connection, batch_id: str) -> None:
        """Daily files whose rows a monthly file replaced: in silver through that file."""
        if paths:
            conn.execute(
                FILES.update()
                .where(FILES.c.path.in_(list(paths)))
                .values(
                    status=Status.SUPERSEDED.value,
                    rows=0,
                    rejects=0,
                    duplicates=0,
                    batch_id=batch_id,
                    updated_at=datetime.now(UTC),
                )
            )

    def dispose(self) -> None:
        self.engine.dispose()

    def _connect(self) -> Any:
        return _Translated(self.engine)


class _Translated:
    """A connection whose SQL errors leave as StorageError."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def __enter__(self) -> sa.Connection:
        try:
            self.conn = self.engine.connect()
        except SQLAlchemyError as exc:
            raise StorageError(f"catalog database: {exc.__class__.__name__}") from exc
        return self.conn

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        self.conn.close()
        if isinstance(exc, SQLAlchemyError):
            raise StorageError(f"catalog database: {exc.__class__.__name__}: {exc}") from exc


def _partition_period(bronze: Any) -> Any:
    """The month of a file's period: rows of one month sit together in the data files."""
    return sa.func.date_trunc("month", bronze.c.period)


def _upsert_statement() -> sa.Executable:
    statement = insert(FILES)
    bump = sa.case(
        (FILES.c.sha256 != statement.excluded.sha256, FILES.c.versions + 1),
        else_=FILES.c.versions,
    )
    update = {c.name: statement.excluded[c.name] for c in FILES.columns}
    del update["path"]
    return statement.on_conflict_do_update(
        index_elements=[FILES.c.path], set_={**update, "versions": bump}
    )


# One statement for any number of records, run as an executemany: SQLAlchemy compiles it
# once per process. (A multi-row VALUES built per call was compiled per call, bind by
# bind: a quarter of a small-file silver build's CPU.)
_UPSERT = _upsert_statement()


def _upsert(conn: sa.Connection, records: Sequence[FileRecord]) -> None:
    now = datetime.now(UTC)
    conn.execute(_UPSERT, [{**r.as_row(), "updated_at": now} for r in records])


def _refuse_old_layout(conn: sa.Connection) -> None:
    """A ledger of the earlier silver layout (keyed by `key`) needs `silver --rebuild`."""
    columns = (
        {c["name"] for c in sa.inspect(conn).get_columns(FILES.name)}
        if sa.inspect(conn).has_table(FILES.name)
        else set()
    )
    if columns and "path" not in columns:
        raise ConfigError(
            "silver was built with an earlier table layout; rebuild it from bronze with "
            "`crypto-lakehouse silver --rebuild` (see docs/lake.md, 'Migrating a lake')"
        )


def drop_ledger(engine: sa.Engine) -> None:
    """Remove the ledger (and any earlier-layout ledger) for a rebuild from bronze."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {FILES.name}"))
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {CURSOR.name}"))
