"""A fresh lake per test: its own catalog database and bronze/silver/gold buckets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from lake_helpers import Lake
from pydantic import SecretStr

from crypto_lakehouse.lake.ledger import Ledger
from crypto_lakehouse.lake.silver import SilverBuilder
from crypto_lakehouse.lake.warehouse import LakeConfig, Warehouse
from crypto_lakehouse.stack.postgres import PostgresServer
from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import S3Storage


@pytest.fixture
def lake_config(
    lake_server: SeaweedServer, postgres_server: PostgresServer, lake_bucket: str
) -> LakeConfig:
    database = f"lake_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(database)
    storage = S3Storage(lake_server.endpoint())
    for suffix in ("s", "g"):
        storage.ensure_bucket(f"{lake_bucket}-{suffix}")
    return LakeConfig(
        catalog_url=SecretStr(postgres_server.info.url(database)),
        endpoint=lake_server.endpoint(),
        bronze_bucket=lake_bucket,
        silver_bucket=f"{lake_bucket}-s",
        gold_bucket=f"{lake_bucket}-g",
    )


@pytest.fixture
def lake(lake_config: LakeConfig) -> Iterator[Lake]:
    storage = S3Storage(lake_config.endpoint)
    warehouse = Warehouse(lake_config)
    ledger = Ledger(lake_config.sqlalchemy_url)
    builder = SilverBuilder(warehouse, ledger, storage, lake_config.bronze_bucket)
    yield Lake(lake_config, storage, warehouse, ledger, builder)
    ledger.dispose()
    warehouse.catalog.engine.dispose()
