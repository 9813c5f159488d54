"""Making prepared files visible: one Iceberg snapshot per table, then the ledger.

Data files are written while a bronze file is read (`SilverBuilder.prepare`); nothing is
visible until this commit. Batching many files into one snapshot keeps the table's
metadata small and the build fast (each Iceberg commit rewrites manifests and metadata).
Rows of a file seen before (a replaced file, or one whose earlier run committed and died
before writing the ledger) are deleted by `source_file` in the same snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.expressions import In
from pyiceberg.table import Table

from crypto_lakehouse.errors import StorageError
from crypto_lakehouse.lake.ledger import FileRecord, Ledger, Status
from crypto_lakehouse.lake.parser import Layout
from crypto_lakehouse.lake.tables import REJECTS_TABLE, SilverTable, rejects_schema
from crypto_lakehouse.lake.warehouse import Warehouse
from crypto_lakehouse.lake.writer import DataFileWriter
from crypto_lakehouse.observability.metrics import (
    SILVER_FILES,
    SILVER_REJECTED_LINES,
    SILVER_ROWS,
)

SOURCE_FILES = "lakehouse.source-files"  # snapshot summary: the bronze keys it took in


@dataclass
class Written:
    """What reading one bronze file produced."""

    files: list
    rows: int
    duplicates: int
    layout: Layout
    rejects: pa.Table
    mode: str


@dataclass
class Pending:
    """A file read and written as data files, waiting for its table's commit."""

    bronze: object  # silver.BronzeFile
    layout: SilverTable
    record: dict
    written: Written
    prior: FileRecord | None
    in_table: bool  # rows of an earlier version (or of a crashed run) may be in the table

    def outcome(self) -> object:
        from crypto_lakehouse.lake.silver import FileOutcome

        written = self.written
        replaced = self.prior is not None and self.prior.sha256 != self.bronze.sha256
        return FileOutcome(
            self.bronze.key, self.layout.identifier, "transformed", written.rows,
            written.rejects.num_rows, written.duplicates, replaced, written.mode,
            layout=written.layout,
        )  # fmt: skip

    def ledger_record(self) -> FileRecord:
        written = self.written
        units = sorted(set(written.layout.units.values()))
        return FileRecord(
            **self.record, status=Status.TRANSFORMED, rows=written.rows,
            rejects=written.rejects.num_rows, duplicates=written.duplicates,
            header=written.layout.header, time_unit=",".join(units) or None,
        )  # fmt: skip


def ever_committed(table: Table, key: str) -> bool:
    """Whether a snapshot names `key` (a run that committed but died before its ledger write)."""
    for snapshot in table.snapshots():
        if snapshot.summary is None:
            continue
        names = snapshot.summary.additional_properties.get(SOURCE_FILES) or ""
        if key in names.split("\n"):
            return True
    return False


def commit_pending(warehouse: Warehouse, ledger: Ledger, pending: list[Pending]) -> list:
    """Commit every pending file (one snapshot per table); return their outcomes."""
    by_table: dict[str, list[Pending]] = {}
    for item in pending:
        by_table.setdefault(item.layout.identifier, []).append(item)
    outcomes = []
    for identifier, items in by_table.items():
        _commit_table(warehouse, identifier, items)
        _commit_rejects(warehouse, items)
        ledger.record_many([item.ledger_record() for item in items])
        outcomes.extend(item.outcome() for item in items)
        for item in items:
            labels = {"market": item.record["market"], "data_type": item.record["data_type"]}
            SILVER_FILES.labels(**labels, outcome="transformed").inc()
            SILVER_ROWS.labels(**labels).inc(item.written.rows)
            SILVER_REJECTED_LINES.labels(**labels).inc(item.written.rejects.num_rows)
    return outcomes


def _commit_table(warehouse: Warehouse, identifier: str, items: list[Pending]) -> None:
    keys = [item.bronze.key for item in items]
    stale = [item.bronze.key for item in items if item.in_table]
    files = [f for item in items for f in item.written.files]
    properties = {SOURCE_FILES: "\n".join(keys)}

    def replace(table: Table) -> None:
        with table.transaction() as tx:
            if stale:
                tx.delete(In("source_file", stale))
            with tx.update_snapshot(snapshot_properties=properties).merge_append() as add:
                for data_file in files:
                    add.append_data_file(data_file)

    try:
        warehouse.commit(identifier, replace)
    except Exception as exc:
        DataFileWriter.delete_files(warehouse.catalog.load_table(identifier), files)
        message = f"could not commit {len(keys)} file(s) to {identifier}: {exc}"
        raise StorageError(message) from exc


def _commit_rejects(warehouse: Warehouse, items: list[Pending]) -> None:
    """Rejects of files seen before are replaced, new ones appended, in one snapshot."""
    fresh = [i.written.rejects for i in items if i.written.rejects.num_rows]
    maybe_stale = [i for i in items if (i.prior is not None and i.prior.rejects) or i.in_table]
    if not fresh and not maybe_stale:
        return
    table = warehouse.ensure_table(REJECTS_TABLE, rejects_schema(), [])
    stale = [i.bronze.key for i in maybe_stale if ever_committed(table, i.bronze.key)]
    if not fresh and not stale:
        return
    properties = {SOURCE_FILES: "\n".join(i.bronze.key for i in items)}

    def replace(table: Table) -> None:
        with table.transaction() as tx:
            if stale:
                tx.delete(In("source_file", stale))
            if fresh:
                tx.append(pa.concat_tables(fresh), snapshot_properties=properties)

    warehouse.commit(REJECTS_TABLE, replace)
