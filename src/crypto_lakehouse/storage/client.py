"""Small S3 operations through boto3, with botocore's errors translated into ours here.

Bulk copies belong to the transfer engine (s5cmd); this module lists, probes and moves
the few small objects (checksums, manifests, markers) that do not justify a process.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from botocore.utils import parse_timestamp

from crypto_lakehouse.errors import (
    AccessDenied,
    BucketNotFound,
    EndpointUnreachable,
    StorageError,
)
from crypto_lakehouse.storage.endpoint import Endpoint

_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"}
_NO_BUCKET_CODES = {"NoSuchBucket", "404"}


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object."""

    key: str
    size: int
    etag: str
    last_modified: datetime


_session_lock = threading.Lock()


@functools.cache
def _session() -> boto3.session.Session:
    """One boto3 session per process: building a session costs about 0.1 s of CPU, a
    client from an existing one about a third of that (measured). Sessions are not
    thread-safe, so clients are made under `_session_lock`; clients themselves are."""
    session = boto3.session.Session()
    factory = session._session.get_component("response_parser_factory")
    factory.set_parser_defaults(timestamp_parser=_parse_timestamp)
    return session


def _parse_timestamp(value: str) -> datetime:
    """ISO 8601 through the standard library, anything else through botocore's parser.

    botocore's default (dateutil) took about two thirds of the CPU of listing a large
    prefix, one `LastModified` per object; `datetime.fromisoformat` reads S3's
    `2026-01-02T03:04:05.000Z` in a fraction of that."""
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        parsed: datetime = parse_timestamp(value)  # untyped without botocore-stubs
        return parsed


class S3Storage:
    """A boto3 client bound to one endpoint and identity."""

    def __init__(self, endpoint: Endpoint, *, timeout: float = 10.0, retries: int = 2) -> None:
        self.endpoint = endpoint
        config = Config(
            signature_version=UNSIGNED if endpoint.anonymous else "s3v4",
            connect_timeout=timeout,
            read_timeout=timeout * 3,
            retries={"max_attempts": retries + 1, "mode": "standard"},
            s3={"addressing_style": "path"},
            max_pool_connections=32,
        )
        kwargs: dict[str, Any] = {"region_name": endpoint.region, "config": config}
        if endpoint.url:
            kwargs["endpoint_url"] = endpoint.url
        if endpoint.access_key is not None and endpoint.secret_key is not None:
            kwargs["aws_access_key_id"] = endpoint.access_key.get_secret_value()
            kwargs["aws_secret_access_key"] = endpoint.secret_key.get_secret_value()
        with _session_lock:
            self.client = _session().client("s3", **kwargs)

    # -- probing -----------------------------------------------------------------------

    def probe_bucket(self, bucket: str) -> None:
        """Raise EndpointUnreachable, AccessDenied or BucketNotFound unless `bucket` is listable."""
        with translate_errors(self.endpoint, bucket):
            self.client.list_objects_v2(Bucket=bucket, MaxKeys=1)

    def bucket_exists(self, bucket: str) -> bool:
        try:
            self.probe_bucket(bucket)
        except BucketNotFound:
            return False
        return True

    def ensure_bucket(self, bucket: str) -> None:
        """Create `bucket` if it is missing; an existing one is left as it is."""
        if self.bucket_exists(bucket):
            return
        with translate_errors(self.endpoint, bucket):
            try:
                self.client.create_bucket(Bucket=bucket)
            except ClientError as exc:
                if _code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise

    # -- listing -----------------------------------------------------------------------

    def list_objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under `prefix`, in key order, one page (1000 keys) at a time."""
        with translate_errors(self.endpoint, bucket):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", ()):
                    yield ObjectInfo(
                        key=item["Key"],
                        size=int(item["Size"]),
                        etag=str(item.get("ETag", "")).strip('"'),
                        last_modified=item["LastModified"],
                    )

    def list_prefixes(self, bucket: str, prefix: str) -> list[str]:
        """The "folders" directly under `prefix` (delimiter `/`)."""
        found: list[str] = []
        with translate_errors(self.endpoint, bucket):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
                found.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
        return found

    # -- small objects -----------------------------------------------------------------

    def get_bytes(self, bucket: str, key: str) -> bytes:
        with translate_errors(self.endpoint, bucket, key):
            body: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def put_bytes(self, bucket: str, key: str, data: bytes) -> str:
        """Write one object and return its ETag."""
        with translate_errors(self.endpoint, bucket, key):
            reply = self.client.put_object(Bucket=bucket, Key=key, Body=data)
        return str(reply.get("ETag", "")).strip('"')

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """The object's metadata, or None when it does not exist."""
        try:
            with translate_errors(self.endpoint, bucket, key):
                reply = self.client.head_object(Bucket=bucket, Key=key)
        except (BucketNotFound, ObjectMissing):
            return None
        return ObjectInfo(
            key=key,
            size=int(reply["ContentLength"]),
            etag=str(reply.get("ETag", "")).strip('"'),
            last_modified=reply["LastModified"],
        )

    def delete_keys(self, bucket: str, keys: list[str]) -> None:
        with translate_errors(self.endpoint, bucket):
            for start in range(0, len(keys), 1000):
                chunk = keys[start : start + 1000]
                self.client.delete_objects(
                    Bucket=bucket,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )


class ObjectMissing(StorageError):
    """The key does not exist in the bucket."""


class translate_errors:
    """Turn botocore's errors into the project's, naming endpoint and bucket (never keys)."""

    def __init__(self, endpoint: Endpoint, bucket: str, key: str | None = None) -> None:
        self.where = f"{endpoint.describe()} bucket {bucket!r}"
        self.key = key

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is None:
            return False
        if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
            raise EndpointUnreachable(f"no answer from {self.where}: {exc}") from exc
        if isinstance(exc, ClientError):
            code = _code(exc)
            if code in _NO_BUCKET_CODES and (self.key is None or code == "NoSuchBucket"):
                raise BucketNotFound(f"bucket not found at {self.where}") from exc
            if code in {"NoSuchKey", "404"}:
                raise ObjectMissing(f"no such key {self.key!r} at {self.where}") from exc
            if code in _DENIED_CODES:
                raise AccessDenied(f"access denied at {self.where} ({code})") from exc
            raise StorageError(f"S3 error {code} at {self.where}") from exc
        if isinstance(exc, BotoCoreError):
            raise StorageError(f"S3 client error at {self.where}: {exc}") from exc
        return False


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
