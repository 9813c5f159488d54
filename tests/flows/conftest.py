"""Per-test ingest environment: a tiny archive on the source, an empty bronze bucket, a fresh
manifest database, and the settings (as environment variables) the flow reads at entry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flow_helpers import IngestEnv, TinyArchive, build_tiny_archive

from crypto_lakehouse.catalog import Manifest
from crypto_lakehouse.stack.postgres import PostgresServer
from crypto_lakehouse.stack.prefect_server import PrefectServer
from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import S3Storage


@pytest.fixture
def ingest_env(
    prefect_server: PrefectServer,
    postgres_server: PostgresServer,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
    binance_fixtures: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[IngestEnv]:
    archive = build_tiny_archive(
        S3Storage(source_server.endpoint()), source_bucket, binance_fixtures
    )
    database = f"cat_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(database)
    lake = lake_server.endpoint()
    env = {
        "SOURCE_ENDPOINT": source_server.url,
        "MINIO_ENDPOINT": lake_server.url,
        "MINIO_ACCESS_KEY": lake.access_key.get_secret_value(),  # type: ignore[union-attr]
        "MINIO_SECRET_KEY": lake.secret_key.get_secret_value(),  # type: ignore[union-attr]
        "CATALOG_DATABASE_URL": postgres_server.info.url(database),
        "BRONZE_BUCKET": lake_bucket,
        "STAGING_DIR": str(tmp_path / "staging"),
        "LAKEHOUSE_HOME": str(tmp_path / "home"),
        **prefect_server.client_env(),
    }
    monkeypatch.delenv("EXECUTOR_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    manifest = Manifest(postgres_server.info.url(database))
    parameters = {**TinyArchive.parameters, "source_bucket": source_bucket}
    yield IngestEnv(archive, S3Storage(lake), lake_bucket, manifest, env, parameters)
    manifest.close()
