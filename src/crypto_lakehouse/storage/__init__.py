"""S3 endpoints, buckets, listing and small object reads/writes (boto3).

`S3Storage` and `ObjectInfo` load on first use: importing boto3 costs about 0.25 s, and
the transfer engine (which only needs `Endpoint` and `S3Url`) imports this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crypto_lakehouse.storage.endpoint import Endpoint
from crypto_lakehouse.storage.urls import (
    QUARANTINE_PREFIX,
    SIDECAR_SUFFIX,
    S3Url,
    validate_bucket_name,
)

if TYPE_CHECKING:
    from crypto_lakehouse.storage.client import ObjectInfo, S3Storage

__all__ = [
    "QUARANTINE_PREFIX",
    "SIDECAR_SUFFIX",
    "Endpoint",
    "ObjectInfo",
    "S3Storage",
    "S3Url",
    "validate_bucket_name",
]
_LAZY = {"ObjectInfo", "S3Storage"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from crypto_lakehouse.storage import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
