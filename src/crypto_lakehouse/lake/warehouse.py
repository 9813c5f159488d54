"""The Iceberg warehouse: a SQL catalog in the stack's PostgreSQL, data on the lake's S3.

Any engine that speaks the Iceberg SQL/JDBC catalog (Trino, Spark, DuckDB, pyiceberg) can
open the same tables from the same database and bucket. Silver tables live under
`s3://<silver bucket>/silver/`, gold tables under `s3://<gold bucket>/gold/`.

Commits are optimistic: a writer that loses a race to another (two tasks appending to one
table) refreshes the table and retries its commit with the data files it already wrote.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import TypeVar

import pyarrow as pa
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.io.pyarrow import pyarrow_to_schema
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER, SortField, SortOrder
from pyiceberg.transforms import IdentityTransform

from crypto_lakehouse.errors import StorageError
from crypto_lakehouse.lake.config import CATALOG_NAME, GOLD, SILVER, LakeConfig  # re-exported

COMMIT_ATTEMPTS = 8

T = TypeVar("T")


class Warehouse:
    """The catalog handle plus helpers to create, load and commit to the lake's tables."""

    def __init__(self, config: LakeConfig, *, read_only: bool = False) -> None:
        """`read_only` (queries, reports) creates nothing: no bucket, namespace or catalog
        table, which saves a query the requests that check for them."""
        self.config = config
        if not read_only:
            from crypto_lakehouse.storage import S3Storage  # boto3: writers only

            S3Storage(config.endpoint).ensure_bucket(config.silver_bucket)
            S3Storage(config.endpoint).ensure_bucket(config.gold_bucket)
        self.catalog = SqlCatalog(
            CATALOG_NAME,
            uri=config.sqlalchemy_url,
            warehouse=f"s3://{config.silver_bucket}/warehouse",
            init_catalog_tables=str(not read_only).lower(),
            **config.s3_properties(),
        )
        if not read_only:
            self._namespace(SILVER, f"s3://{config.silver_bucket}/{SILVER}")
            self._namespace(GOLD, f"s3://{config.gold_bucket}/{GOLD}")

    def _namespace(self, name: str, location: str) -> None:
        if (name,) not in self.catalog.list_namespaces():
            self.catalog.create_namespace_if_not_exists(name, {"location": location})

    @property
    def io(self):
        return self.catalog._load_file_io(location=f"s3://{self.config.silver_bucket}")

    def table(self, identifier: str) -> Table | None:
        """The table, or None when it does not exist yet."""
        try:
            return self.catalog.load_table(identifier)
        except NoSuchTableError:
            return None

    def tables(self, namespace: str) -> list[str]:
        """`namespace.name` of every table in a namespace, sorted."""
        return sorted(".".join(ident) for ident in self.catalog.list_tables(namespace))

    def ensure_table(
        self,
        identifier: str,
        schema: pa.Schema,
        partition_by: list[str],
        properties: dict[str, str] | None = None,
        sort_by: list[str] | None = None,
    ) -> Table:
        """Load the table, creating it (identity-partitioned on `partition_by`) when missing.

        Identity partitions on columns we add (`symbol`, `date`, ...) need no native transform
        library and prune the same way in every engine.
        """
        existing = self.table(identifier)
        if existing is not None:
            return existing
        props = {"format-version": "2", "write.parquet.compression-codec": "zstd"}
        props.update(properties or {})
        iceberg_schema, spec = iceberg_layout(schema, partition_by)
        order = sort_order(schema, sort_by or [])
        try:
            # Schema, partition spec and sort order in one create: no half-made table.
            self.catalog.create_table(
                identifier,
                schema=iceberg_schema,
                partition_spec=spec,
                sort_order=order,
                properties=props,
            )
        except Exception as exc:  # another writer created it first
            if self.table(identifier) is None:
                raise StorageError(f"could not create table {identifier}: {exc}") from exc
        return self.catalog.load_table(identifier)

    def commit(self, identifier: str, change: Callable[[Table], T]) -> T:
        """Run `change(table)` on a fresh table until its commit wins (optimistic concurrency)."""
        delay = 0.05
        for attempt in range(COMMIT_ATTEMPTS):
            table = self.catalog.load_table(identifier)
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="Delete operation did not match")
                    return change(table)
            except CommitFailedException:
                if attempt == COMMIT_ATTEMPTS - 1:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    def replace_all(self, identifier: str, data: pa.Table, partition_by: list[str]) -> Table:
        """Create or overwrite a whole (small, derived) table with `data` in one snapshot."""
        existing = self.table(identifier)
        if existing is not None and not _same_columns(existing.schema().as_arrow(), data.schema):
            self.catalog.drop_table(identifier)  # derived data: rebuilt whole from its sources
        self.ensure_table(identifier, data.schema, partition_by)
        self.commit(identifier, lambda t: t.overwrite(data.cast(t.schema().as_arrow())))
        return self.catalog.load_table(identifier)


def _same_columns(current: pa.Schema, wanted: pa.Schema) -> bool:
    def simple(t: pa.DataType) -> pa.DataType:
        return pa.string() if t == pa.large_string() else t

    return [(f.name, simple(f.type)) for f in current] == [(f.name, simple(f.type)) for f in wanted]


def sort_order(schema: pa.Schema, sort_by: list[str]) -> SortOrder:
    """An ascending sort order on `sort_by` (column ids as `iceberg_layout` numbers them)."""
    if not sort_by:
        return UNSORTED_SORT_ORDER
    return SortOrder(
        *(
            SortField(source_id=schema.get_field_index(name) + 1, transform=IdentityTransform())
            for name in sort_by
        )
    )


def iceberg_layout(schema: pa.Schema, partition_by: list[str]) -> tuple[Schema, PartitionSpec]:
    """An Iceberg schema (ids 1..n in column order) and identity partitions on `partition_by`."""
    numbered = pa.schema(
        [
            field.with_metadata({b"PARQUET:field_id": str(index)})
            for index, field in enumerate(schema, start=1)
        ]
    )
    iceberg = pyarrow_to_schema(numbered)
    fields = [
        PartitionField(
            source_id=schema.get_field_index(name) + 1,
            field_id=1000 + position,
            transform=IdentityTransform(),
            name=name,
        )
        for position, name in enumerate(partition_by)
    ]
    return iceberg, PartitionSpec(*fields)
