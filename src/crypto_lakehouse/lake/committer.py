"""Making a batch visible, crash-safely: a journal row, the Iceberg commits, then the ledger.

A batch is up to a few thousand source files of one table, written as a few data files.
Its life, in the journal table `lake_silver_batches` (catalog database):

    open()        status `writing`; every data file's path is added to the row before the
                  file is written (`add_paths`), so no file exists that the row does not name
    commit()      the ledger rows to write are stored in the row, then one snapshot on the
                  rejects table (if the batch has rejects) and one on the data table, each
                  with the summary property `lakehouse.batch-id`; then, in one database
                  transaction, the ledger rows and status `committed`
    recover()     at the start of every build: a `writing` batch whose snapshot exists
                  gets its stored ledger rows (the commit happened, the ledger write did
                  not); one without a snapshot has its data files deleted (`abandoned`)

So a crash loses at most one batch and leaves no data file that nothing references: the
next run either finishes the batch's bookkeeping or deletes its files. Looking for the
snapshot reads only snapshots newer than the batch (snapshot expiry keeps the list short).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import And, BooleanExpression, In
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.exc import SQLAlchemyError

from crypto_lakehouse.errors import StorageError
from crypto_lakehouse.lake.ledger import FileRecord, Ledger
from crypto_lakehouse.lake.tables import REJECTS_TABLE, rejects_schema
from crypto_lakehouse.lake.warehouse import Warehouse
from crypto_lakehouse.observability import tracing

BATCH_ID = "lakehouse.batch-id"  # snapshot summary: the batch that made the snapshot
_CLOCK_SKEW = timedelta(minutes=5)

_METADATA = sa.MetaData()
BATCHES = sa.Table(
    "lake_silver_batches",
    _METADATA,
    sa.Column("batch_id", sa.Text, primary_key=True),
    sa.Column("table_name", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # writing | committed | abandoned
    sa.Column("data_files", JSONB, nullable=False),  # paths, as they are written
    sa.Column("records", JSONB),  # ledger rows to write once the snapshot exists
    sa.Column("superseded", JSONB),  # daily files a monthly file replaced
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index(
        "ix_lake_silver_batches_open", "status", postgresql_where=sa.text("status = 'writing'")
    ),
)


@dataclass
class BatchChange:
    """What one batch does to its table: files to add, rows to drop, ledger rows."""

    table_name: str
    data_files: list[DataFile] = field(default_factory=list)
    stale_sources: list[str] = field(default_factory=list)  # source_file values to delete
    stale_where: BooleanExpression | None = None  # partitions the stale rows can be in
    rejects: list[pa.Table] = field(default_factory=list)
    rejects_stale: list[str] = field(default_factory=list)
    records: list[FileRecord] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    # The table as the batch loaded it: the commit's first attempt uses it instead of
    # loading it again (a daily update commits to some 24 tables; each load is a catalog
    # query and a metadata.json read). Stale means CommitFailed, then a fresh load.
    table: Table | None = field(default=None, repr=False)


class Journal:
    """The `lake_silver_batches` table, sharing the ledger's database."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.engine = ledger.engine
        try:
            _METADATA.create_all(self.engine, checkfirst=True)
        except SQLAlchemyError as exc:
            raise StorageError(f"catalog database: {exc.__class__.__name__}") from exc

    def open(self, batch_id: str, table_name: str) -> None:
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            conn.execute(
                insert(BATCHES).values(
                    batch_id=batch_id,
                    table_name=table_name,
                    status="writing",
                    data_files=[],
                    started_at=now,
                    updated_at=now,
                )
            )

    def add_paths(self, batch_id: str, paths: Sequence[str]) -> None:
        """Note data file paths before the files are written, so a crash cannot orphan one
        (recovery deletes them; a path whose write never happened is simply not found)."""
        listed = sa.literal(list(paths), JSONB)
        with self.engine.begin() as conn:
            conn.execute(
                BATCHES.update()
                .where(BATCHES.c.batch_id == batch_id)
                .values(
                    data_files=BATCHES.c.data_files.op("||")(listed),
                    updated_at=datetime.now(UTC),
                )
            )

    def commit(self, warehouse: Warehouse, batch_id: str, change: BatchChange) -> None:
        """Rejects snapshot, data snapshot, then ledger + `committed` in one transaction."""
        with tracing.step(
            "silver.commit",
            table=change.table_name,
            batch_id=batch_id,
            data_files=len(change.data_files),
            records=len(change.records),
            stale_sources=len(change.stale_sources),
            rejects=sum(r.num_rows for r in change.rejects),
        ):
            self._commit(warehouse, batch_id, change)

    def _commit(self, warehouse: Warehouse, batch_id: str, change: BatchChange) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                BATCHES.update()
                .where(BATCHES.c.batch_id == batch_id)
                .values(
                    records=[_json_row(r) for r in change.records],
                    superseded=change.superseded,
                    updated_at=datetime.now(UTC),
                )
            )
        properties = {BATCH_ID: batch_id}
        try:
            if change.rejects or change.rejects_stale:
                _commit_rejects(warehouse, change, properties)
            if change.data_files or change.stale_sources:
                _commit_data(warehouse, change, properties)
        except Exception as exc:
            self.abandon(warehouse, batch_id, change.table_name)
            message = f"could not commit {len(change.records)} file(s) to {change.table_name}"
            raise StorageError(f"{message}: {exc}") from exc
        self._finish(batch_id, change.records, change.superseded)

    def abandon(self, warehouse: Warehouse, batch_id: str, table_name: str) -> None:
        """Delete the batch's data files (never referenced) and mark it abandoned."""
        with self.engine.connect() as conn:
            paths = conn.execute(
                sa.select(BATCHES.c.data_files).where(BATCHES.c.batch_id == batch_id)
            ).scalar_one_or_none()
        table = warehouse.table(table_name)
        if table is not None:
            for path in paths or []:
                try:
                    table.io.delete(path)
                except Exception:  # noqa: S112 - already gone, or the next recovery retries
                    continue
        with self.engine.begin() as conn:
            conn.execute(
                BATCHES.update()
                .where(BATCHES.c.batch_id == batch_id)
                .values(status="abandoned", updated_at=datetime.now(UTC))
            )

    def recover(self, warehouse: Warehouse) -> dict[str, int]:
        """Finish or undo every batch a crashed run left `writing`; counts of each."""
        with self.engine.connect() as conn:
            open_batches = (
                conn.execute(sa.select(BATCHES).where(BATCHES.c.status == "writing"))
                .mappings()
                .all()
            )
        done = {"finished": 0, "abandoned": 0}
        for batch in open_batches:
            table = warehouse.table(batch["table_name"])
            if table is not None and _has_snapshot(table, batch["batch_id"], batch["started_at"]):
                records = [FileRecord.from_row(r) for r in batch["records"] or []]
                self._finish(batch["batch_id"], records, batch["superseded"] or [])
                done["finished"] += 1
            else:
                self.abandon(warehouse, batch["batch_id"], batch["table_name"])
                done["abandoned"] += 1
        return done

    def _finish(self, batch_id: str, records: list[FileRecord], superseded: list[str]) -> None:
        try:
            with tracing.step("silver.ledger", records=len(records)), self.engine.begin() as conn:
                self.ledger.record_many(records, conn)
                self.ledger.supersede(superseded, conn, batch_id)
                conn.execute(
                    BATCHES.update()
                    .where(BATCHES.c.batch_id == batch_id)
                    .values(status="committed", records=None, updated_at=datetime.now(UTC))
                )
        except SQLAlchemyError as exc:
            raise StorageError(f"catalog database: {exc.__class__.__name__}") from exc


def _has_snapshot(table: Table, batch_id: str, started: datetime) -> bool:
    """Whether a snapshot newer than the batch carries its id (newest first, stop early)."""
    since = int((started - _CLOCK_SKEW).timestamp() * 1000)
    for snapshot in sorted(table.snapshots(), key=lambda s: -s.timestamp_ms):
        if snapshot.timestamp_ms < since:
            return False
        summary = snapshot.summary
        if summary is not None and summary.additional_properties.get(BATCH_ID) == batch_id:
            return True
    return False


def _commit_data(warehouse: Warehouse, change: BatchChange, properties: dict[str, str]) -> None:
    def replace(table: Table) -> None:
        with table.transaction() as tx:
            if change.stale_sources:
                where: BooleanExpression = In("source_file", change.stale_sources)
                if change.stale_where is not None:
                    where = And(change.stale_where, where)
                tx.delete(where, snapshot_properties=properties)
            if change.data_files:
                with tx.update_snapshot(snapshot_properties=properties).fast_append() as add:
                    for data_file in change.data_files:
                        add.append_data_file(data_file)

    _commit_loaded(warehouse, change.table_name, change.table, replace)


def _commit_loaded(
    warehouse: Warehouse, identifier: str, table: Table | None, change: Callable[[Table], None]
) -> None:
    """`change` on the table already loaded, else (or when another writer committed since
    it was loaded) through `Warehouse.commit`, which reloads and retries. pyiceberg checks
    the commit's requirements (the snapshot it started from) against the catalog, so a
    stale table fails the commit, it never overwrites another's."""
    if table is not None:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Delete operation did not match")
                change(table)
            return
        except CommitFailedException:
            pass
    warehouse.commit(identifier, change)


def _commit_rejects(warehouse: Warehouse, change: BatchChange, properties: dict[str, str]) -> None:
    """Rejects of files seen before are replaced, new ones appended, in one snapshot."""
    table = warehouse.ensure_table(REJECTS_TABLE, rejects_schema(), [])
    stale = sorted(
        set(change.rejects_stale)
        | {r.column("source_file")[0].as_py() for r in change.rejects if r.num_rows}
    )
    if table.current_snapshot() is None:
        stale = []

    def replace(table: Table) -> None:
        with table.transaction() as tx:
            if stale:
                tx.delete(In("source_file", stale), snapshot_properties=properties)
            if change.rejects:
                tx.append(pa.concat_tables(change.rejects), snapshot_properties=properties)

    _commit_loaded(warehouse, REJECTS_TABLE, table, replace)


def _json_row(record: FileRecord) -> dict[str, Any]:
    row = record.as_row()
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in row.items()}


def drop_journal(engine: sa.Engine) -> None:
    """Remove the journal (a rebuild from bronze starts with no batches)."""
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {BATCHES.name}"))
