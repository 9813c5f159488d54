"""Helpers the lake tests share (kept out of conftest so tests can import them)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass

from crypto_lakehouse.lake.ledger import Ledger
from crypto_lakehouse.lake.silver import BronzeFile, SilverBuilder
from crypto_lakehouse.lake.warehouse import LakeConfig, Warehouse
from crypto_lakehouse.storage import S3Storage


def make_zip(name: str, text: str | bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, text)
    return buffer.getvalue()


@dataclass
class Lake:
    config: LakeConfig
    storage: S3Storage
    warehouse: Warehouse
    ledger: Ledger
    builder: SilverBuilder

    def put(self, key: str, text: str | bytes) -> BronzeFile:
        """Write a zip holding `text` at `key` in bronze; return it as the manifest would."""
        data = make_zip(key.rsplit("/", 1)[-1].replace(".zip", ".csv"), text)
        self.storage.put_bytes(self.config.bronze_bucket, key, data)
        return BronzeFile(key, hashlib.sha256(data).hexdigest(), size=len(data))

    def put_bytes(self, key: str, data: bytes) -> BronzeFile:
        self.storage.put_bytes(self.config.bronze_bucket, key, data)
        return BronzeFile(key, hashlib.sha256(data).hexdigest(), size=len(data))

    def settings_env(self) -> dict[str, str]:
        """The environment variables that point the CLI and the flows at this lake."""
        endpoint = self.config.endpoint
        return {
            "CATALOG_DATABASE_URL": self.config.catalog_url.get_secret_value(),
            "MINIO_ENDPOINT": endpoint.url,
            "MINIO_ACCESS_KEY": endpoint.access_key.get_secret_value(),
            "MINIO_SECRET_KEY": endpoint.secret_key.get_secret_value(),
            "BRONZE_BUCKET": self.config.bronze_bucket,
            "SILVER_BUCKET": self.config.silver_bucket,
            "GOLD_BUCKET": self.config.gold_bucket,
        }

    def rows(self, identifier: str):
        return self.warehouse.catalog.load_table(identifier).scan().to_arrow()
