"""Parquet data files for one Iceberg table, written while a file is still being read.

Rows are gathered into chunks of at most `chunk_rows` and each chunk becomes data files
(one per partition) at once, so memory holds one chunk, not the file. The files are only
referenced by the table once the caller commits them; `discard()` deletes them when the
caller gives up (a damaged file, a lost race it cannot retry).

This is the one place that uses pyiceberg's internal `_dataframe_to_data_files` (the same
function `Table.append` uses): it lets us write before we commit and commit with retries.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid

import pyarrow as pa
from pyiceberg.io.pyarrow import _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table


class DataFileWriter:
    """Buffers Arrow tables and writes them as the target table's data files."""

    def __init__(self, table: Table, chunk_rows: int) -> None:
        self.table = table
        self.chunk_rows = chunk_rows
        self.schema = table.schema().as_arrow()
        self.files: list[DataFile] = []
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._uuid = uuid.uuid4()
        self._counter = itertools.count(0)

    def add(self, rows: pa.Table) -> None:
        if not rows.num_rows:
            return
        self._pending.append(rows.cast(self.schema))  # joins drop not-null flags
        self._pending_rows += rows.num_rows
        if self._pending_rows >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        chunk = pa.concat_tables(self._pending)
        self._pending, self._pending_rows = [], 0
        self.files.extend(
            _dataframe_to_data_files(
                table_metadata=self.table.metadata,
                df=chunk,
                io=self.table.io,
                write_uuid=self._uuid,
                counter=self._counter,
            )
        )
        self.rows += chunk.num_rows

    def discard(self) -> None:
        """Delete every data file written so far (they were never committed)."""
        self._pending = []
        self.delete_files(self.table, self.files)
        self.files = []

    @staticmethod
    def delete_files(table: Table, files: list[DataFile]) -> None:
        for data_file in files:
            with contextlib.suppress(Exception):
                table.io.delete(data_file.file_path)
