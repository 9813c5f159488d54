"""Which bronze file versions silver has taken in: the transform's durable state.

One row per bronze key, in the catalog database next to the Iceberg catalog: the SHA-256
last transformed (or flagged), the outcome, row and reject counts. A run skips a key whose
recorded SHA-256 equals the manifest's (re-running adds nothing); a new SHA-256 for a known
key means the file was replaced, and its rows are replaced. A file flagged for schema drift
is retried only when its schema changes (`schema_fingerprint`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError

from crypto_lakehouse.errors import StorageError

_METADATA = sa.MetaData()
FILES = sa.Table(
    "lake_silver_files",
    _METADATA,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("table_name", sa.Text, nullable=False),
    sa.Column("market", sa.Text, nullable=False),
    sa.Column("data_type", sa.Text, nullable=False),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("period", sa.Date, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("rows", sa.BigInteger, nullable=False, default=0),
    sa.Column("rejects", sa.BigInteger, nullable=False, default=0),
    sa.Column("duplicates", sa.BigInteger, nullable=False, default=0),
    sa.Column("versions", sa.Integer, nullable=False, default=1),
    sa.Column("header", sa.Boolean),
    sa.Column("time_unit", sa.Text),
    sa.Column("schema_fingerprint", sa.Text, nullable=False),
    sa.Column("message", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)


class Status(StrEnum):
    TRANSFORMED = "transformed"
    DRIFT = "drift"  # columns/types do not fit the schema: flagged, skipped
    CORRUPT = "corrupt"  # bytes do not hash to the manifest's SHA-256, or the zip is damaged


@dataclass(frozen=True)
class FileRecord:
    """The transform's outcome for one bronze file version."""

    key: str
    sha256: str
    table_name: str
    market: str
    data_type: str
    symbol: str
    period: datetime | object
    status: Status
    schema_fingerprint: str
    rows: int = 0
    rejects: int = 0
    duplicates: int = 0
    header: bool | None = None
    time_unit: str | None = None
    message: str | None = None
    versions: int = 1


class Ledger:
    """The `lake_silver_files` table; SQL errors become StorageError here."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, pool_pre_ping=True, pool_size=4)
        try:
            _METADATA.create_all(self.engine, checkfirst=True)
        except SQLAlchemyError as exc:
            raise StorageError(f"catalog database: {exc.__class__.__name__}") from exc

    def get(self, key: str) -> FileRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(FILES).where(FILES.c.key == key)).mappings().first()
        return _record(row) if row else None

    def has_transformed(self, folder: str, first: date, last: date) -> bool:
        """Whether a transformed file under archive folder `folder` covers a period in range."""
        query = (
            sa.select(FILES.c.key)
            .where(FILES.c.key.contains(folder, autoescape=True))
            .where(FILES.c.status == Status.TRANSFORMED.value)
            .where(FILES.c.period <= last)
            .where(FILES.c.period >= first.replace(day=1))
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def all(self) -> list[FileRecord]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(FILES).order_by(FILES.c.key)).mappings().all()
        return [_record(r) for r in rows]

    def record(self, record: FileRecord) -> None:
        """Insert or update the key's row; `versions` counts distinct SHA-256s seen."""
        self.record_many([record])

    def record_many(self, records: list[FileRecord]) -> None:
        """`record` for several files in one transaction."""
        try:
            with self.engine.begin() as conn:
                for record in records:
                    conn.execute(_upsert(record))
        except SQLAlchemyError as exc:
            raise StorageError(f"catalog database: {exc.__class__.__name__}") from exc

    def dispose(self) -> None:
        self.engine.dispose()


def _upsert(record: FileRecord) -> sa.Executable:
    values = {
        **{k: getattr(record, k) for k in FileRecord.__dataclass_fields__},
        "status": record.status.value,
        "updated_at": datetime.now(UTC),
    }
    statement = insert(FILES).values(**values)
    bump = sa.case(
        (FILES.c.sha256 != statement.excluded.sha256, FILES.c.versions + 1),
        else_=FILES.c.versions,
    )
    update = {k: statement.excluded[k] for k in values if k not in ("key", "versions")}
    return statement.on_conflict_do_update(
        index_elements=[FILES.c.key], set_={**update, "versions": bump}
    )


def _record(row: sa.RowMapping) -> FileRecord:
    data = dict(row)
    data.pop("updated_at", None)
    data["status"] = Status(data["status"])
    return FileRecord(**data)
