"""SQL over the lake's Iceberg tables with DuckDB, offline, reading only the files it needs.

DuckDB's own `iceberg` and `httpfs` extensions are downloaded on first use, which this
project cannot rely on (no internet; the offline extension wheels match another DuckDB
version). So pyiceberg plans each table (the catalog's current snapshot -> its live Parquet
data files) and the files are handed to DuckDB as a lazy pyarrow dataset on the lake's S3:
DuckDB pushes projections and filters into the scan and reads only what a query needs.

Planning is where whole files are skipped: the filters the SQL puts on each table
(`lake.pushdown`) become the scan's row filter, so pyiceberg drops the data files whose
partition values or column statistics rule them out before any is opened. Only tables
the SQL names (`silver.x`, `gold.y`) are planned; a query that names none (`SELECT 1`)
never opens the catalog, and the catalog is opened read-only.

Silver and gold are written copy-on-write (deletes rewrite or drop whole files), so a
table's live data files are exactly its current rows; a table carrying delete files is
refused rather than read wrong.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import duckdb
import pyarrow as pa

from crypto_lakehouse.errors import ConfigError, EndpointUnreachable

if TYPE_CHECKING:
    import pyarrow.dataset as ds
    from pyarrow import fs as pafs
    from pyiceberg.table import Table

    from crypto_lakehouse.lake.config import LakeConfig
    from crypto_lakehouse.lake.pushdown import Filter

T = TypeVar("T")
_PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
_RAISE = object()


class TableCatalog(Protocol):
    """What queries need of a catalog: a `Warehouse`, or the lighter `CatalogReader`."""

    config: LakeConfig

    def table(self, identifier: str) -> Table | None: ...

    def tables(self, namespace: str) -> list[str]: ...


class QueryError(ConfigError):
    """DuckDB rejected the SQL (syntax, unknown column, ...): bad input."""


@dataclass(frozen=True)
class TablePlan:
    """What planning one table for a query gave: the filter pushed and the files kept."""

    table: str
    pushed: str  # the filter handed to Iceberg planning; "TRUE" when none
    files: int  # data files planned (what DuckDB may open)
    total_files: int | None  # data files in the table's current snapshot
    bytes: int  # size of the planned files


def lake_filesystem(warehouse: TableCatalog) -> pafs.S3FileSystem:
    """pyarrow's S3 client for the lake endpoint (path-style, as SeaweedFS and MinIO want)."""
    from crypto_lakehouse.lake.s3fs import s3_filesystem

    return s3_filesystem(warehouse.config.endpoint)


def plan_table(table: Table, row_filter: Filter | None = None) -> list[Any]:
    """The scan tasks of the table's live data files that can hold rows passing the filter.

    `row_filter` must already be bound to the table's schema (`pushdown.bind`).
    """
    from crypto_lakehouse.lake.pushdown import to_iceberg

    tasks = list(table.scan(row_filter=to_iceberg(row_filter)).plan_files())
    if any(task.delete_files for task in tasks):
        raise ConfigError(f"{table.name()} has delete files; read it with an Iceberg engine")
    return tasks


def table_dataset(
    table: Table, filesystem: pafs.FileSystem, tasks: list[Any] | None = None
) -> ds.Dataset | pa.Table:
    """The planned files as a lazy dataset (an empty Arrow table when there are none).

    Each file's size comes from the plan, so reading a file costs no HEAD request.
    """
    import pyarrow.dataset as ds

    if tasks is None:
        tasks = plan_table(table)
    if not tasks:
        return table.schema().as_arrow().empty_table()
    parquet = ds.ParquetFileFormat()
    fragments = [
        parquet.make_fragment(
            task.file.file_path.removeprefix("s3://"),
            filesystem,
            file_size=task.file.file_size_in_bytes,
        )
        for task in tasks
    ]
    return ds.FileSystemDataset(fragments, fragments[0].physical_schema, parquet, filesystem)


def total_data_files(table: Table) -> int | None:
    """Data files in the current snapshot, from its summary (no manifest is read)."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return 0
    total = snapshot.summary["total-data-files"] if snapshot.summary else None
    return int(total) if total is not None else None


class QueryEngine:
    """One DuckDB connection with the lake's tables visible as `silver.*` and `gold.*`.

    `warehouse` is an open Warehouse, or a function that opens one: then the catalog is
    only opened when a query names a table.
    """

    def __init__(self, warehouse: TableCatalog | Callable[[], TableCatalog]) -> None:
        self._warehouse = None if callable(warehouse) else warehouse
        self._open = warehouse if callable(warehouse) else None
        self._filesystem: pafs.S3FileSystem | None = None
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        self._tables: dict[str, Table | None] = {}
        self._views: dict[str, str] = {}  # table -> the filter its view was planned with
        self.plans: dict[str, TablePlan] = {}  # the last plan of each table

    @property
    def warehouse(self) -> TableCatalog:
        if self._warehouse is None:
            assert self._open is not None
            self._warehouse = _catalog_call(self._open)
        return self._warehouse

    @property
    def filesystem(self) -> pafs.S3FileSystem:
        if self._filesystem is None:
            self._filesystem = lake_filesystem(self.warehouse)
        return self._filesystem

    def tables(self) -> list[str]:
        """Every queryable table, `silver.x` and `gold.y`."""
        from crypto_lakehouse.lake.config import GOLD, SILVER

        warehouse = self.warehouse
        return _catalog_call(lambda: warehouse.tables(SILVER) + warehouse.tables(GOLD), [])

    def table(self, identifier: str) -> Table | None:
        """The catalog's table (loaded once per engine), None when it does not exist."""
        identifier = identifier.lower()
        if identifier not in self._tables:
            warehouse = self.warehouse
            self._tables[identifier] = _catalog_call(lambda: warehouse.table(identifier), None)
        return self._tables[identifier]

    def register(self, identifier: str, row_filter: Filter | None = None) -> TablePlan | None:
        """Make `namespace.name` queryable as the files that can hold rows passing the filter.

        The view is planned again only when the filter differs from the last one.
        """
        from crypto_lakehouse.lake.pushdown import TRUE, bind

        identifier = identifier.lower()
        table = self.table(identifier)
        if table is None:
            return None  # DuckDB will say the table does not exist
        bound = bind(row_filter or TRUE, table.schema())
        pushed = str(bound) if bound is not None else str(TRUE)
        if self._views.get(identifier) == pushed:
            return self.plans[identifier]
        tasks = plan_table(table, bound)
        plan = TablePlan(
            table=identifier,
            pushed=pushed,
            files=len(tasks),
            total_files=total_data_files(table),
            bytes=sum(task.file.file_size_in_bytes for task in tasks),
        )
        namespace, name = identifier.split(".", 1)
        hidden = f"__{namespace}__{name}"
        self.con.register(hidden, table_dataset(table, self.filesystem, tasks))
        self.con.execute(f"CREATE SCHEMA IF NOT EXISTS {namespace}")
        # Names are plain [a-z0-9_] and exist in the catalog: nothing else is spliced in.
        view = f'CREATE OR REPLACE VIEW {namespace}."{name}" AS SELECT * FROM "{hidden}"'  # noqa: S608
        self.con.execute(view)
        self._views[identifier] = pushed
        self.plans[identifier] = plan
        return plan

    def prepare(self, query: str) -> list[TablePlan]:
        """Plan every lake table `query` names, with the filters the SQL puts on it."""
        if "." not in query:
            return []  # no namespace.name: no lake table, no catalog, not even the parser
        from crypto_lakehouse.lake.pushdown import SqlReads, qualified_names

        if not qualified_names(query):
            return []
        from crypto_lakehouse.lake.config import GOLD, SILVER

        namespaces = (SILVER, GOLD)
        reads = SqlReads(query, namespaces)
        named = reads.tables
        if not reads.parsed:  # sqlglot could not follow: plan every named table whole
            named = [n for n in qualified_names(query) if n.split(".", 1)[0] in namespaces]
        named = [n for n in named if _PLAIN_NAME.match(n)]  # spliced into a view below
        if not named:
            return []
        filters = reads.filters(self._columns) if reads.parsed else {}
        plans = [self.register(name, filters.get(name)) for name in named]
        return [plan for plan in plans if plan is not None]

    def _columns(self, identifier: str) -> list[str] | None:
        table = self.table(identifier)
        return [f.name for f in table.schema().fields] if table is not None else None

    def explain(self, query: str) -> list[TablePlan]:
        """What `sql(query)` would read, per table, without running it."""
        return self.prepare(query)

    def sql(self, query: str) -> pa.Table:
        """Run `query` and return its result as Arrow; QueryError for DuckDB's complaints."""
        self.prepare(query)
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


def _catalog_call(call: Callable[[], T], empty: Any = _RAISE) -> T:
    """Run a catalog request. A database that does not answer is EndpointUnreachable; one
    whose catalog tables do not exist yet (nothing was ever built) gives `empty`.

    SQLAlchemy's errors matter only when a `Warehouse` (which imports it) is the catalog;
    the query CLI's `CatalogReader` raises ours itself and never imports SQLAlchemy."""
    if "sqlalchemy" not in sys.modules:
        return call()
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        return call()
    except ProgrammingError:
        if empty is _RAISE:
            raise
        return empty
    except OperationalError as exc:
        raise EndpointUnreachable(
            "the Iceberg catalog database does not answer (is the stack up?)"
        ) from exc
