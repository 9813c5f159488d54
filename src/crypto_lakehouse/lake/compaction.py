"""Compaction: rewrite a partition's small data files as a few large, sorted ones.

    plan_rewrites   current data files -> per partition, the files below 3/4 of the
                    target size, in jobs of at most MAX_JOB_INPUT_BYTES (a partition with
                    fewer than two small files is left alone)
    rewrite         one job's files -> streamed through DuckDB's ORDER BY (it spills to a
                    temporary folder past SORT_MEMORY_LIMIT) -> Parquet files that roll
                    over when their written bytes reach the target
    commit_rewrite  one snapshot that deletes the job files and adds the new ones; a lost
                    race is retried, a job whose files vanished meanwhile is given up

Outputs roll over at the target measured on disk, so every output but a job's last is
at least the target and is never a candidate again: a second run finds at most one small
file per partition and does nothing. Rows are never changed, only moved: the snapshot is
an Iceberg `overwrite` whose added and deleted record counts are equal, marked with the
summary property `lakehouse.maintenance = compaction` so incremental readers can skip it.
Tables stay copy-on-write: a table with delete files is not compacted (rewriting its data
files without applying the deletes would bring deleted rows back).
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from pyiceberg.exceptions import CommitFailedException, ValidationException
from pyiceberg.io import OutputFile, OutputStream
from pyiceberg.io.fileformat import FileFormatFactory
from pyiceberg.io.pyarrow import _to_requested_schema
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat, ManifestContent
from pyiceberg.partitioning import PartitionFieldValue, PartitionKey
from pyiceberg.schema import Schema, sanitize_column_names
from pyiceberg.table import Table, TableProperties
from pyiceberg.table.sorting import NullOrder, SortDirection
from pyiceberg.typedef import Record
from pyiceberg.utils.properties import property_as_int

from crypto_lakehouse.lake.warehouse import COMMIT_ATTEMPTS, Warehouse

MiB = 1024 * 1024
DEFAULT_TARGET_FILE_BYTES = 64 * MiB  # when the table sets no write.target-file-size-bytes
SMALL_FILE_FRACTION = 0.75  # files below this share of the target are compacted
MAX_JOB_INPUT_BYTES = 2048 * MiB  # input of one sort; a bigger partition takes several jobs
SORT_MEMORY_LIMIT = "384MB"  # DuckDB spills the sort to disk beyond this
READ_BATCH_ROWS = 65_536
CHUNK_BYTES = 64 * MiB  # Arrow bytes handed to the Parquet writer at once (a row group)
MAINTENANCE_PROPERTY = "lakehouse.maintenance"


@dataclass(frozen=True)
class RewriteJob:
    """Small data files of one partition that become one sorted run of output files."""

    spec_id: int
    partition: Record
    files: tuple[DataFile, ...]

    @property
    def input_bytes(self) -> int:
        return sum(f.file_size_in_bytes for f in self.files)

    @property
    def rows(self) -> int:
        return sum(f.record_count for f in self.files)


@dataclass(frozen=True)
class CurrentFiles:
    """The current snapshot's data files, and whether it carries any delete files."""

    data: list[DataFile]
    has_deletes: bool


def target_file_bytes(table: Table) -> int:
    """The table's `write.target-file-size-bytes`, else DEFAULT_TARGET_FILE_BYTES."""
    value = property_as_int(
        table.metadata.properties,
        TableProperties.WRITE_TARGET_FILE_SIZE_BYTES,
        DEFAULT_TARGET_FILE_BYTES,
    )
    return value if value and value > 0 else DEFAULT_TARGET_FILE_BYTES


def current_files(table: Table) -> CurrentFiles:
    """Every live data file of the current snapshot (manifests read once each)."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return CurrentFiles([], False)
    data: list[DataFile] = []
    has_deletes = False
    for manifest in snapshot.manifests(table.io):
        if manifest.content == ManifestContent.DELETES:
            live = (manifest.added_files_count or 0) + (manifest.existing_files_count or 0)
            has_deletes = has_deletes or live > 0
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
            if entry.data_file.content == DataFileContent.DATA:
                data.append(entry.data_file)
    return CurrentFiles(data, has_deletes)


def plan_rewrites(
    files: Iterable[DataFile], target: int, *, default_spec_id: int = 0
) -> list[RewriteJob]:
    """Jobs for every partition holding two or more small files (deterministic order).

    Only files of the table's current partition spec are planned: an output carries its
    inputs' partition, which must be expressible in the spec new files are written with.
    """
    small = target * SMALL_FILE_FRACTION
    by_partition: dict[tuple, list[DataFile]] = defaultdict(list)
    records: dict[tuple, Record] = {}
    for data_file in files:
        if data_file.spec_id != default_spec_id or data_file.file_size_in_bytes >= small:
            continue
        if data_file.file_format != FileFormat.PARQUET:
            continue
        key = tuple(data_file.partition[i] for i in range(len(data_file.partition)))
        by_partition[key].append(data_file)
        records[key] = data_file.partition
    jobs = []
    for key in sorted(by_partition, key=repr):
        members = sorted(by_partition[key], key=lambda f: f.file_path)
        group: list[DataFile] = []
        size = 0
        for data_file in members:
            if group and size + data_file.file_size_in_bytes > MAX_JOB_INPUT_BYTES:
                jobs.append(RewriteJob(default_spec_id, records[key], tuple(group)))
                group, size = [], 0
            group.append(data_file)
            size += data_file.file_size_in_bytes
        jobs.append(RewriteJob(default_spec_id, records[key], tuple(group)))
    return [job for job in jobs if len(job.files) >= 2]


def sort_columns(table: Table) -> list[str]:
    """DuckDB ORDER BY terms for the table's sort order ([] when unsorted).

    Fields sort by their source column: exact for identity and order-preserving transforms
    (day, month, ...); the order stops before the first field whose transform scrambles
    order (bucket), since sorting on its source would not be the declared order.
    """
    schema = table.schema()
    terms = []
    for field in table.sort_order().fields:
        if not field.transform.preserves_order:
            break
        name = schema.find_column_name(field.source_id)
        if name is None:
            break
        direction = "DESC" if field.direction == SortDirection.DESC else "ASC"
        nulls = "NULLS FIRST" if field.null_order == NullOrder.NULLS_FIRST else "NULLS LAST"
        terms.append(f'"{name.replace(chr(34), chr(34) * 2)}" {direction} {nulls}')
    return terms


def _input_batches(table: Table, job: RewriteJob, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Each input file's rows in the table's current Arrow schema, one batch at a time.

    Columns are matched by name; a column a file predates is filled with nulls.
    """
    for data_file in job.files:
        with table.io.new_input(data_file.file_path).open() as stream:
            parquet = pq.ParquetFile(stream)
            present = set(parquet.schema_arrow.names)
            columns = [f.name for f in schema if f.name in present]
            for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=columns):
                arrays = [
                    batch.column(f.name).cast(f.type)
                    if f.name in present
                    else pa.nulls(batch.num_rows, f.type)
                    for f in schema
                ]
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)


class _TrackedOutput(OutputFile):
    """An OutputFile that remembers its stream, so the writer can ask how far it got."""

    def __init__(self, inner: OutputFile) -> None:
        super().__init__(inner.location)
        self._inner = inner
        self.stream: OutputStream | None = None

    def __len__(self) -> int:
        return len(self._inner)

    def exists(self) -> bool:
        return self._inner.exists()

    def to_input_file(self):
        return self._inner.to_input_file()

    def create(self, overwrite: bool = False) -> OutputStream:
        self.stream = self._inner.create(overwrite=overwrite)
        return self.stream


class _RollingWriter:
    """Parquet data files for one partition, a new file once one reaches the target."""

    def __init__(self, table: Table, job: RewriteJob, target: int) -> None:
        self.table = table
        self.job = job
        self.target = target
        metadata = table.metadata
        self.table_schema: Schema = metadata.schema()
        self.file_schema = sanitize_column_names(self.table_schema)
        self.model = FileFormatFactory.get(FileFormat.PARQUET)
        spec = metadata.specs()[job.spec_id]
        self.key = PartitionKey(
            field_values=[
                PartitionFieldValue(field=f, value=job.partition[i])
                for i, f in enumerate(spec.fields)
            ],
            partition_spec=spec,
            schema=self.table_schema,
        )
        self.location = table.location_provider()
        self.uuid = uuid.uuid4()
        self.counter = itertools.count()
        self.files: list[DataFile] = []
        self._open: tuple[_TrackedOutput, object] | None = None

    def write(self, chunk: pa.Table) -> None:
        if self._open is None:
            name = f"compacted-{self.uuid}-{next(self.counter):05d}.parquet"
            path = self.location.new_data_location(data_file_name=name, partition_key=self.key)
            output = _TrackedOutput(self.table.io.new_output(path))
            writer = self.model.create_writer(output, self.file_schema, self.table.properties)
            self._open = (output, writer)
        output, writer = self._open
        for batch in chunk.to_batches():
            converted = _to_requested_schema(
                requested_schema=self.file_schema,
                file_schema=self.table_schema,
                batch=batch,
                include_field_ids=True,
                format_model=self.model,
            )
            writer.write(pa.Table.from_batches([converted]))  # type: ignore[attr-defined]
        if output.stream is not None and output.stream.tell() >= self.target:
            self.roll()

    def roll(self) -> None:
        """Close the open file (if any) and record it as a DataFile."""
        if self._open is None:
            return
        output, writer = self._open
        self._open = None
        statistics = writer.close()  # type: ignore[attr-defined]
        data_file = DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=output.location,
            file_format=FileFormat.PARQUET,
            partition=self.job.partition,
            file_size_in_bytes=len(output),
            sort_order_id=None,
            equality_ids=None,
            key_metadata=None,
            **statistics.to_serialized_dict(),
        )
        data_file.spec_id = self.job.spec_id  # not a stored field: from_args would drop it
        self.files.append(data_file)

    def discard(self) -> None:
        """Delete every file written (uncommitted), including a half-written one."""
        paths = [f.file_path for f in self.files]
        if self._open is not None:
            output, writer = self._open
            self._open = None
            with contextlib.suppress(Exception):
                writer.close()  # type: ignore[attr-defined]
            paths.append(output.location)
        delete_paths(self.table, paths)
        self.files = []


def delete_paths(table: Table, paths: Iterable[str]) -> None:
    """Best-effort delete of files nothing references (an orphan sweep catches misses)."""
    for path in paths:
        with contextlib.suppress(Exception):
            table.io.delete(path)


def rewrite(table: Table, job: RewriteJob, target: int) -> list[DataFile]:
    """Write the job's rows, sorted by the table's sort order, as new (uncommitted) files.

    Memory stays bounded whatever the partition's size: inputs stream in batches, DuckDB
    sorts within SORT_MEMORY_LIMIT (spilling to a temporary folder), and the writer holds
    one chunk of at most CHUNK_BYTES (or the target, when smaller: a file can only roll
    over between chunks). Raises whatever reading or writing raised, after deleting what
    it wrote.
    """
    schema = table.schema().as_arrow()
    chunk_bytes = min(CHUNK_BYTES, target)
    writer = _RollingWriter(table, job, target)
    try:
        with _sorted_stream(table, job, schema) as reader:
            pending: list[pa.RecordBatch] = []
            size = 0
            for batch in _sliced(reader, chunk_bytes):
                pending.append(batch)
                size += batch.nbytes
                if size >= chunk_bytes:
                    writer.write(pa.Table.from_batches(pending, schema=schema))
                    pending, size = [], 0
            if pending:
                writer.write(pa.Table.from_batches(pending, schema=schema))
        writer.roll()
    except BaseException:
        writer.discard()
        raise
    return writer.files


def _sliced(batches: Iterable[pa.RecordBatch], max_bytes: int) -> Iterator[pa.RecordBatch]:
    """The batches, each cut into pieces of about `max_bytes` (zero-copy slices)."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        rows = max(1, int(max_bytes * batch.num_rows / max(batch.nbytes, 1)))
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


@contextlib.contextmanager
def _sorted_stream(table: Table, job: RewriteJob, schema: pa.Schema) -> Iterator[Iterator]:
    """The job's rows as Arrow batches, in sort order when the table declares one."""
    source = pa.RecordBatchReader.from_batches(schema, _input_batches(table, job, schema))
    order = sort_columns(table)
    if not order:
        yield iter(source)
        return
    with tempfile.TemporaryDirectory(prefix="lakehouse-compact-") as spill:
        con = duckdb.connect(
            config={
                "memory_limit": SORT_MEMORY_LIMIT,
                "temp_directory": spill,
                "threads": 2,
                "preserve_insertion_order": True,
            }
        )
        try:
            con.execute("SET TimeZone = 'UTC'")
            con.register("job_rows", source)
            # Column names come from the table's schema (quoted above), not from a user.
            query = f"SELECT * FROM job_rows ORDER BY {', '.join(order)}"  # noqa: S608
            reader = con.sql(query).to_arrow_reader(READ_BATCH_ROWS)
            yield (batch.cast(schema) for batch in reader)
        finally:
            con.close()


def commit_rewrite(
    warehouse: Warehouse, identifier: str, old: list[DataFile], new: list[DataFile]
) -> bool:
    """Swap `old` for `new` in one snapshot; False (nothing changed) when any of `old`
    is no longer in the table. A lost race (another commit landed first) is retried on the
    fresh table; appends to other partitions or to this one do not conflict.
    """
    delay = 0.05
    for attempt in range(COMMIT_ATTEMPTS):
        table = warehouse.catalog.load_table(identifier)
        try:
            transaction = table.transaction()
            properties = {MAINTENANCE_PROPERTY: "compaction"}
            with transaction.update_snapshot(snapshot_properties=properties).overwrite() as swap:
                for data_file in old:
                    swap.delete_data_file(data_file)
                for data_file in new:
                    swap.append_data_file(data_file)
            transaction.commit_transaction()
            return True
        except ValidationException as exc:
            if "Missing required files to delete" in str(exc):
                return False  # rewritten or deleted by someone else: give up this job
            if attempt == COMMIT_ATTEMPTS - 1:
                raise
        except CommitFailedException:
            if attempt == COMMIT_ATTEMPTS - 1:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    return False
