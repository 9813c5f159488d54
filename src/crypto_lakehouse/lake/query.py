"""SQL over the lake's Iceberg tables with DuckDB, offline.

DuckDB's own `iceberg` and `httpfs` extensions are downloaded on first use, which this
project cannot rely on (no internet; the offline extension wheels match another DuckDB
version). So pyiceberg plans each table (the catalog's current snapshot -> its live Parquet
data files) and the files are handed to DuckDB as a lazy pyarrow dataset on the lake's S3:
DuckDB pushes projections and filters into the scan and reads only what a query needs.
Only tables the SQL names (`silver.x`, `gold.y`) are planned.

Silver and gold are written copy-on-write (deletes rewrite or drop whole files), so a
table's live data files are exactly its current rows; a table carrying delete files is
refused rather than read wrong.
"""

from __future__ import annotations

import re
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow import fs as pafs
from pyiceberg.table import Table

from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.lake.warehouse import GOLD, SILVER, Warehouse

_NAME = re.compile(rf"\b({SILVER}|{GOLD})\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)\b", re.IGNORECASE)


class QueryError(ConfigError):
    """DuckDB rejected the SQL (syntax, unknown column, ...): bad input."""


def lake_filesystem(warehouse: Warehouse) -> pafs.S3FileSystem:
    """pyarrow's S3 client for the lake endpoint (path-style, as SeaweedFS and MinIO want)."""
    endpoint = warehouse.config.endpoint
    kwargs: dict[str, Any] = {"region": endpoint.region, "force_virtual_addressing": False}
    if endpoint.url:
        scheme, _, host = endpoint.url.partition("://")
        kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme)
    if endpoint.access_key is not None and endpoint.secret_key is not None:
        kwargs.update(
            access_key=endpoint.access_key.get_secret_value(),
            secret_key=endpoint.secret_key.get_secret_value(),
        )
    else:
        kwargs["anonymous"] = True
    return pafs.S3FileSystem(**kwargs)


def table_dataset(table: Table, filesystem: pafs.FileSystem) -> ds.Dataset | pa.Table:
    """The table's current rows as a lazy dataset (an empty Arrow table when it has none)."""
    schema = table.schema().as_arrow()
    tasks = list(table.scan().plan_files())
    if any(task.delete_files for task in tasks):
        raise ConfigError(f"{table.name()} has delete files; read it with an Iceberg engine")
    paths = [task.file.file_path.removeprefix("s3://") for task in tasks]
    if not paths:
        return schema.empty_table()
    return ds.dataset(paths, format="parquet", filesystem=filesystem)


class QueryEngine:
    """One DuckDB connection with the lake's tables visible as `silver.*` and `gold.*`."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self.filesystem = lake_filesystem(warehouse)
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        for namespace in (SILVER, GOLD):
            self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {namespace}")
        self._registered: set[str] = set()

    def tables(self) -> list[str]:
        """Every queryable table, `silver.x` and `gold.y`."""
        return self.warehouse.tables(SILVER) + self.warehouse.tables(GOLD)

    def register(self, identifier: str) -> None:
        """Make `namespace.name` queryable (planned once per engine)."""
        identifier = identifier.lower()
        if identifier in self._registered:
            return
        table = self.warehouse.table(identifier)
        if table is None:
            return  # DuckDB will say the table does not exist
        namespace, name = identifier.split(".", 1)
        hidden = f"__{namespace}__{name}"
        self.con.register(hidden, table_dataset(table, self.filesystem))
        # Names matched \w+ and exist in the catalog: nothing of the user's is spliced in.
        view = f'CREATE OR REPLACE VIEW {namespace}."{name}" AS SELECT * FROM "{hidden}"'  # noqa: S608
        self.con.execute(view)
        self._registered.add(identifier)

    def sql(self, query: str) -> pa.Table:
        """Run `query` and return its result as Arrow; QueryError for DuckDB's complaints."""
        for namespace, name in _NAME.findall(query):
            self.register(f"{namespace}.{name}")
        try:
            relation = self.con.sql(query)
            return relation.to_arrow_table() if relation is not None else pa.table({})
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from exc

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> QueryEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
