"""The Iceberg SQL catalog read with one psycopg query, for queries that only read.

A query needs one fact per table from the catalog: where its current metadata.json is.
pyiceberg's `SqlCatalog` answers through SQLAlchemy, whose import and engine set-up cost
about half a second of every `query` that names a table; here a single row from the
catalog's `iceberg_tables` (the Iceberg JDBC/SQL catalog layout every engine shares)
becomes a read-only `StaticTable`. Writers keep using `lake.warehouse.Warehouse`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crypto_lakehouse.errors import EndpointUnreachable
from crypto_lakehouse.lake.config import CATALOG_NAME, LakeConfig

if TYPE_CHECKING:
    from pyiceberg.table import Table

_TABLES = (
    "SELECT table_namespace, table_name, metadata_location FROM iceberg_tables "
    "WHERE catalog_name = %s AND table_namespace = %s"
)


class CatalogReader:
    """`table()` and `tables()` of a Warehouse, read-only, over one connection."""

    def __init__(self, config: LakeConfig) -> None:
        if config.libpq_url is None:
            raise ValueError("CatalogReader reads a PostgreSQL catalog only")
        self.config = config
        self._url = config.libpq_url
        self._connection: Any = None

    def _rows(self, namespace: str, name: str | None = None) -> list[tuple[str, str, str]]:
        import psycopg

        sql = _TABLES + (" AND table_name = %s" if name is not None else "")
        params = (CATALOG_NAME, namespace) + ((name,) if name is not None else ())
        try:
            if self._connection is None:
                self._connection = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
            return list(self._connection.execute(sql, params).fetchall())
        except psycopg.errors.UndefinedTable:
            return []  # nothing was ever built: the catalog's tables do not exist yet
        except psycopg.OperationalError as exc:
            raise EndpointUnreachable(
                "the Iceberg catalog database does not answer (is the stack up?)"
            ) from exc

    def table(self, identifier: str) -> Table | None:
        """The table at its current metadata, or None when the catalog has no such table."""
        from pyiceberg.table import StaticTable

        namespace, _, name = identifier.partition(".")
        rows = self._rows(namespace, name)
        if not rows or not rows[0][2]:
            return None
        return StaticTable.from_metadata(rows[0][2], properties=self.config.s3_properties())

    def tables(self, namespace: str) -> list[str]:
        """`namespace.name` of every table in a namespace, sorted."""
        return sorted(f"{ns}.{name}" for ns, name, _ in self._rows(namespace))

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
