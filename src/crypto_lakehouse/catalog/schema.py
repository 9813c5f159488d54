"""The manifest's tables (SQLAlchemy Core), in the catalog database.

    bronze_files          one row per archive file: where it sits in bronze, what the
                          source listed (size, ETag, LastModified), the verified SHA-256,
                          and its state: pending -> started -> verified | corrupt | failed
    bronze_file_history   every verified version a replacement superseded
    ingest_runs           one row per ingest run: parameters, state, summary

Like dlt's load packages, the per-file state is durable: a run killed mid-way leaves rows
in `started`, and the next run picks up every file that is not `verified`.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()


class FileStatus(StrEnum):
    """Where one file stands. Only `verified` files may be read from bronze."""

    PENDING = "pending"  # planned, not yet handed to the engine
    STARTED = "started"  # handed to the engine; a crash leaves it here
    VERIFIED = "verified"  # in bronze, SHA-256 matched the publisher's CHECKSUM
    CORRUPT = "corrupt"  # bytes did not match: quarantined, never in bronze
    FAILED = "failed"  # the transfer failed (see `error`); retried by the next run


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"  # finished, with corrupt or failed files
    ABORTED = "aborted"  # an exception ended it early


bronze_files = Table(
    "bronze_files",
    metadata,
    Column("path", Text, primary_key=True),  # the archive key, e.g. data/spot/daily/...zip
    Column("market", String(16), nullable=False),
    Column("frequency", String(8), nullable=False),
    Column("data_type", String(32), nullable=False),
    Column("symbol", String(64), nullable=False),
    Column("interval", String(8)),
    Column("period", Date, nullable=False),  # the day, or the month's first day
    Column("source_url", Text),  # where it was listed, e.g. s3://data.binance.vision/
    Column("bronze_bucket", Text),
    Column("bronze_key", Text),
    Column("size", BigInteger),  # bytes, as listed (verified files: as written)
    Column("sha256", String(64)),  # the verified digest of the bytes in bronze
    Column("etag", Text),  # source ETag as listed when last transferred
    Column("last_modified", DateTime(timezone=True)),  # source LastModified, likewise
    Column("status", String(16), nullable=False),
    Column("version", Integer, nullable=False, server_default="0"),  # 1 = first verified
    Column("error", Text),
    Column("run_id", Text),  # the run that last changed the row
    Column("ingested_at", DateTime(timezone=True)),  # when the current version was verified
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_bronze_files_dataset", "market", "data_type", "interval", "period"),
    Index("ix_bronze_files_status", "status"),
    Index("ix_bronze_files_ingested_at", "ingested_at"),
)

bronze_file_history = Table(
    "bronze_file_history",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("path", Text, nullable=False, index=True),
    Column("version", Integer, nullable=False),
    Column("size", BigInteger),
    Column("sha256", String(64)),
    Column("etag", Text),
    Column("last_modified", DateTime(timezone=True)),
    Column("ingested_at", DateTime(timezone=True)),
    Column("replaced_at", DateTime(timezone=True), nullable=False),
    Column("replaced_by_run", Text),
)

ingest_runs = Table(
    "ingest_runs",
    metadata,
    Column("run_id", Text, primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False),
    Column("parameters", JSONB),
    Column("summary", JSONB),
)
