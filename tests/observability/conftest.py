"""A real Prefect server (on the session's PostgreSQL) for the exporter tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crypto_lakehouse.stack.postgres import PostgresServer
from crypto_lakehouse.stack.prefect_server import PrefectServer


@pytest.fixture(scope="session")
def exporter_prefect(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrefectServer]:
    """`prefect server start` on 127.0.0.1 with its own database (never SQLite)."""
    postgres_server.create_database("prefect_exporter")
    url = postgres_server.info.url("prefect_exporter", driver="postgresql+asyncpg")
    server = PrefectServer(
        tmp_path_factory.mktemp("prefect-exporter"), database_url=url, name="prefect-exporter"
    )
    server.start(timeout=120)
    yield server
    server.stop()
