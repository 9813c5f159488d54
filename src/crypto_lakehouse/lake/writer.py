"""Parquet data files for one Iceberg table, written while a file is still being read.

Rows are gathered into chunks of at most `chunk_rows` and each chunk becomes data files
(one per partition) at once, so memory holds one chunk, not the file. The files are only
referenced by the table once the caller commits them; `discard()` deletes them when the
caller gives up (a damaged file, a lost race it cannot retry).

This is the one place that uses pyiceberg's write internals (`_dataframe_to_data_files`,
the function `Table.append` uses, and for a chunk in one partition, the same `write_file`
call without its group-by): it lets us write before we commit and commit with retries.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.io.pyarrow import (
    FileFormatFactory,
    _dataframe_to_data_files,
    bin_pack_arrow_table,
    pyarrow_to_schema,
    write_file,
)
from pyiceberg.manifest import DataFile, FileFormat
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey
from pyiceberg.table import Table, TableProperties, WriteTask
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.transforms import IdentityTransform
from pyiceberg.utils.properties import property_as_int


class DataFileWriter:
    """Buffers Arrow tables and writes them as the target table's data files."""

    def __init__(
        self,
        table: Table,
        chunk_rows: int,
        *,
        write_uuid: uuid.UUID | None = None,
        counter: itertools.count | None = None,
        on_paths: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.table = table
        self.chunk_rows = chunk_rows
        self.schema = table.schema().as_arrow()
        self.files: list[DataFile] = []
        self.rows = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._uuid = write_uuid or uuid.uuid4()
        # Writers sharing a write uuid must share the counter too: it numbers the file names.
        self._counter = counter if counter is not None else itertools.count(0)
        # Told of every data file path before the file can exist (a journal of what a crash
        # may leave): the paths a write will use are known before it starts.
        self._on_paths = on_paths

    def add(self, rows: pa.Table) -> None:
        if not rows.num_rows:
            return
        if not rows.schema.equals(self.schema):
            rows = rows.cast(self.schema)  # joins drop not-null flags
        self._pending.append(rows)
        self._pending_rows += rows.num_rows
        if self._pending_rows >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        chunk = pa.concat_tables(self._pending)
        self._pending, self._pending_rows = [], 0
        key = self._single_partition(chunk)
        parts = [(chunk, key)] if key is not None else self._identity_partitions(chunk)
        if parts is None:  # not identity partitions: paths known only once written
            written = list(
                _dataframe_to_data_files(
                    table_metadata=self.table.metadata,
                    df=chunk,
                    io=self.table.io,
                    write_uuid=self._uuid,
                    counter=self._counter,
                )
            )
            self._announce([f.file_path for f in written])
        else:
            written = self._write_partitions(parts)
        self.files.extend(written)
        self.rows += chunk.num_rows

    def _announce(self, paths: list[str]) -> None:
        if self._on_paths is not None and paths:
            self._on_paths(paths)

    def _single_partition(self, chunk: pa.Table) -> PartitionKey | None:
        """The partition key when every row of `chunk` is in one partition (a daily file),
        found with one min/max per column instead of pyiceberg's group-by and filters."""
        spec = self.table.metadata.spec()
        schema = self.table.metadata.schema()
        values = []
        for field in spec.fields:
            if not isinstance(field.transform, IdentityTransform):
                return None
            column = chunk.column(schema.find_column_name(field.source_id))
            if column.null_count:
                return None
            bounds = pc.min_max(column)
            if bounds["min"] != bounds["max"]:
                return None
            values.append(PartitionFieldValue(field=field, value=bounds["min"].as_py()))
        if not values:
            return None
        return PartitionKey(field_values=values, partition_spec=spec, schema=schema)

    def _identity_partitions(self, chunk: pa.Table) -> list[tuple[pa.Table, PartitionKey]] | None:
        """The chunk split by partition, when every partition field is an identity of a
        column without nulls: one stable sort and a slice per run of equal values. (pyiceberg
        filters the whole chunk once per partition: a tenth of a silver build's CPU when a
        batch spans many partitions.) None: leave it to pyiceberg."""
        spec = self.table.metadata.spec()
        schema = self.table.metadata.schema()
        if not spec.fields or not all(
            isinstance(f.transform, IdentityTransform) for f in spec.fields
        ):
            return None
        names = [schema.find_column_name(f.source_id) for f in spec.fields]
        if any(chunk.column(n).null_count for n in names):
            return None
        ordered = chunk.take(pc.sort_indices(chunk, [(n, "ascending") for n in names]))
        changed = None
        for name in names:
            column = ordered.column(name)
            step = pc.not_equal(column.slice(1), column.slice(0, len(column) - 1))
            changed = step if changed is None else pc.or_(changed, step)
        assert changed is not None
        starts = [0, *(i + 1 for i in pc.indices_nonzero(changed).to_pylist()), len(ordered)]
        parts = []
        for begin, end in itertools.pairwise(starts):
            part = ordered.slice(begin, end - begin)
            values = [
                PartitionFieldValue(field=f, value=part.column(n)[0].as_py())
                for f, n in zip(spec.fields, names, strict=True)
            ]
            parts.append(
                (part, PartitionKey(field_values=values, partition_spec=spec, schema=schema))
            )
        return parts

    def _write_partitions(self, parts: list[tuple[pa.Table, PartitionKey]]) -> list[DataFile]:
        """What `_dataframe_to_data_files` does for partitions already found: every part's
        files in one `write_file` call, which writes them on pyiceberg's thread pool (a
        daily update writes one small file into each of many partitions; one after another
        they cost a PUT round trip each). The paths are announced before the write starts,
        so a process killed in the middle leaves no file its journal does not name."""
        metadata = self.table.metadata
        target = property_as_int(
            metadata.properties,
            TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
            TableProperties.WRITE_TARGET_FILE_SIZE_BYTES_DEFAULT,
        )
        task_schema = pyarrow_to_schema(
            parts[0][0].schema,  # every part is a slice of one chunk
            name_mapping=metadata.schema().name_mapping,
            format_version=metadata.format_version,
        )
        tasks = [
            WriteTask(
                write_uuid=self._uuid,
                task_id=next(self._counter),
                record_batches=batches,
                partition_key=key,
                schema=task_schema,
            )
            for chunk, key in parts
            for batches in bin_pack_arrow_table(chunk, target)
        ]
        planned = _planned_paths(metadata, tasks)
        self._announce(planned)
        written = list(write_file(io=self.table.io, table_metadata=metadata, tasks=iter(tasks)))
        self._announce(sorted({f.file_path for f in written} - set(planned)))  # never, so far
        return written

    def discard(self) -> None:
        """Delete every data file written so far (they were never committed)."""
        self._pending, self._pending_rows = [], 0
        self.delete_files(self.table, self.files)
        self.files = []
        self.rows = 0

    def reset(self) -> None:
        """`discard`, as a row sink that starts over (a file reread in line mode)."""
        self.discard()

    @staticmethod
    def delete_files(table: Table, files: list[DataFile]) -> None:
        for data_file in files:
            with contextlib.suppress(Exception):
                table.io.delete(data_file.file_path)


def _planned_paths(metadata: TableMetadata, tasks: list[WriteTask]) -> list[str]:
    """The paths `write_file` will give these tasks' data files: the same location provider
    and file names (write uuid, task id, the format's extension), computed before writing."""
    file_format = FileFormat(
        metadata.properties.get(
            TableProperties.WRITE_FILE_FORMAT, TableProperties.WRITE_FILE_FORMAT_DEFAULT
        )
    )
    extension = FileFormatFactory.get(file_format).file_extension()
    provider = load_location_provider(
        table_location=metadata.location, table_properties=metadata.properties
    )
    return [
        provider.new_data_location(
            data_file_name=task.generate_data_file_filename(extension),
            partition_key=task.partition_key,
        )
        for task in tasks
    ]
