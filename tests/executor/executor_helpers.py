"""Helpers shared by the executor tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import S3Storage


def fill_bucket(
    server: SeaweedServer, bucket: str, prefix: str, count: int, size: int = 1024
) -> dict[str, bytes]:
    """Write `count` distinct objects under `prefix`; returns key -> bytes."""
    storage = S3Storage(server.endpoint())
    objects = {f"{prefix}file-{i:04d}.bin": secrets.token_bytes(size) for i in range(count)}
    with ThreadPoolExecutor(max_workers=8) as pool:  # boto3 clients are thread-safe
        list(pool.map(lambda item: storage.put_bytes(bucket, *item), objects.items()))
    return objects


def sync_body(source_bucket: str, dest_bucket: str, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "source": {"bucket": source_bucket, "prefix": "data/"},
        "destination": {"bucket": dest_bucket, "prefix": "copy/"},
    }
    body.update(extra)
    return body
