"""Streaming bucket listings (the planner's input), and the quick pre-flight reachability check.

Listings come from `s5cmd ls --json 's3://bucket/prefix*'`: the Go client parses S3's
XML pages several times faster than boto3 and we read one line per object, so a
million-key listing never sits in memory. A prefix that itself contains `*` or `?`
cannot be expressed as an s5cmd wildcard; those few listings go through boto3.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlparse

from crypto_lakehouse.errors import EndpointUnreachable, StorageError
from crypto_lakehouse.storage.endpoint import Endpoint
from crypto_lakehouse.transfer.binary import Invocation
from crypto_lakehouse.transfer.commands import has_glob
from crypto_lakehouse.transfer.output import (
    Failed,
    Listed,
    is_empty_listing,
    parse_line,
    storage_error,
)


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    size: int
    etag: str
    last_modified: str  # `listed_stamp` of the object's LastModified ("" when unknown)


def listed_stamp(when: datetime) -> str:
    """LastModified as s5cmd's listing prints it: ISO-8601 UTC, whole seconds."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_reachable(endpoint: Endpoint, timeout: float) -> None:
    """Raise EndpointUnreachable unless a TCP connection to the endpoint opens in `timeout`.

    s5cmd retries refused connections with back-off for about a minute; this check makes
    a dead endpoint fail in milliseconds (refused) or `timeout` seconds (silent).
    """
    if not endpoint.url:
        return
    parsed = urlparse(endpoint.url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise EndpointUnreachable(f"no answer from {endpoint.describe()}: {reason}") from exc


class Listing:
    """`s5cmd ls` started at construction (so two listings run side by side), read by iterating.

    Iterating raises BucketNotFound, AccessDenied, EndpointUnreachable or StorageError
    (before the first object when the bucket or identity is wrong). `close()` stops the
    process if the caller gives up early; use it as a context manager.
    """

    def __init__(
        self,
        invocation: Invocation,
        bucket: str,
        prefix: str,
        *,
        first_output_timeout: float = 10.0,
    ) -> None:
        self.where = f"{invocation.endpoint.describe()} bucket {bucket!r}"
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = invocation.endpoint
        self.timeout = first_output_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.errors: list[str] = []
        self._first_line = threading.Event()
        self._timed_out = threading.Event()
        self._threads: list[threading.Thread] = []
        if has_glob(prefix):
            return  # s5cmd cannot list it: boto3 does, lazily
        self.proc = subprocess.Popen(
            invocation.argv("ls", f"s3://{bucket}/{prefix}*"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=invocation.env(),
            start_new_session=True,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self._threads = [
            threading.Thread(target=self._read_errors, daemon=True),
            threading.Thread(target=self._watchdog, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_errors(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._first_line.set()
            event = parse_line(line)
            if isinstance(event, Failed):
                self.errors.append(event.error)
            elif line.strip():
                self.errors.append(line.strip())

    def _watchdog(self) -> None:
        assert self.proc is not None
        if not self._first_line.wait(self.timeout) and self.proc.poll() is None:
            self._timed_out.set()
            self.proc.kill()

    def __iter__(self) -> Iterator[ListedObject]:
        if self.proc is None:
            yield from _list_boto3(self.endpoint, self.bucket, self.prefix)
            return
        proc = self.proc
        url_prefix = f"s3://{self.bucket}/"
        assert proc.stdout is not None
        for line in proc.stdout:
            if not self._first_line.is_set():
                self._first_line.set()
            event = parse_line(line)
            if isinstance(event, Listed) and event.url.startswith(url_prefix):
                yield ListedObject(
                    event.url[len(url_prefix) :], event.size, event.etag, event.last_modified
                )
        proc.wait()
        self._first_line.set()
        self._threads[0].join(timeout=5)
        if self._timed_out.is_set():
            raise EndpointUnreachable(f"no answer from {self.where} within {self.timeout:.0f}s")
        real = [e for e in self.errors if not is_empty_listing(e)]
        if real:
            raise storage_error(real[0], self.where)
        if proc.returncode not in (0, 1) or (proc.returncode == 1 and not self.errors):
            raise StorageError(f"listing {self.where} failed (s5cmd exit code {proc.returncode})")

    def close(self) -> None:
        self._first_line.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Listing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _list_boto3(endpoint: Endpoint, bucket: str, prefix: str) -> Iterator[ListedObject]:
    from crypto_lakehouse.storage.client import S3Storage  # boto3 is heavy: only when needed

    storage = S3Storage(endpoint, timeout=10.0, retries=2)
    for info in storage.list_objects(bucket, prefix):
        yield ListedObject(info.key, info.size, info.etag, listed_stamp(info.last_modified))
