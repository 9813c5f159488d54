"""Where the lake's tables live: names and `LakeConfig`, without pyiceberg or SQLAlchemy.

A query's start-up imports this, not `lake.warehouse` (about 1.8 s of pyiceberg,
SQLAlchemy and psycopg imports), until it opens the catalog; `lake.warehouse` re-exports
every name here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pydantic import SecretStr

from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.storage.endpoint import Endpoint

if TYPE_CHECKING:
    from crypto_lakehouse.config import Settings

SILVER = "silver"
GOLD = "gold"
CATALOG_NAME = "lakehouse"


@dataclass(frozen=True)
class LakeConfig:
    """Where the lake's tables live; built once from `Settings` at the edge."""

    catalog_url: SecretStr = field(repr=False)
    endpoint: Endpoint
    bronze_bucket: str
    silver_bucket: str
    gold_bucket: str

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeConfig:
        """Raise ConfigError when the catalog database or the lake endpoint is not configured."""
        if settings.catalog_database_url is None:
            raise ConfigError(
                'CATALOG_DATABASE_URL is not set (eval "$(crypto-lakehouse stack env)")'
            )
        if settings.lake_endpoint is None:
            raise ConfigError('MINIO_ENDPOINT is not set (eval "$(crypto-lakehouse stack env)")')
        endpoint = Endpoint(
            settings.lake_endpoint,
            settings.lake_access_key,
            settings.lake_secret_key,
            region=settings.lake_region,
        )
        return cls(
            catalog_url=settings.catalog_database_url,
            endpoint=endpoint,
            bronze_bucket=settings.bronze_bucket,
            silver_bucket=settings.silver_bucket,
            gold_bucket=settings.gold_bucket,
        )

    @property
    def sqlalchemy_url(self) -> str:
        """The catalog URL with the psycopg (v3) driver SQLAlchemy needs."""
        url = self.catalog_url.get_secret_value()
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def libpq_url(self) -> str | None:
        """The catalog URL as psycopg takes it, or None when the catalog is not PostgreSQL."""
        url = self.catalog_url.get_secret_value()
        scheme, sep, rest = url.partition("://")
        if not sep or scheme.split("+", 1)[0] not in {"postgresql", "postgres"}:
            return None
        return "postgresql://" + rest

    def s3_properties(self) -> dict[str, str]:
        """pyiceberg FileIO properties for the lake (path-style, as SeaweedFS and MinIO need)."""
        props = {"s3.region": self.endpoint.region, "s3.path-style-access": "true"}
        if self.endpoint.url:
            props["s3.endpoint"] = self.endpoint.url
        if self.endpoint.access_key is not None and self.endpoint.secret_key is not None:
            props["s3.access-key-id"] = self.endpoint.access_key.get_secret_value()
            props["s3.secret-access-key"] = self.endpoint.secret_key.get_secret_value()
        return props
