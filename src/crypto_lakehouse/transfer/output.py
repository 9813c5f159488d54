"""Reading s5cmd's `--json` output, one line at a time, into typed events.

What s5cmd v2.3 prints (captured from real runs, see tests/transfer/test_transfer_output.py):

- stdout, per finished object: `{"operation":"cp","success":true,"source":"s3://b/k",
  "destination":"/dir/k","object":{"type":"file","size":4096}}` (s3->s3 copies carry
  `object.key` instead of `object.size`);
- stdout, per listed object (`ls`): `{"key":"s3://b/k","etag":"...","last_modified":
  "2026-01-01T00:00:00Z","type":"file","size":4096,...}`;
- stdout, with `--stat`: `{"operation":"cp","success":3,"error":0}` (counts, not a result);
- stderr, per failure: `{"operation":"cp","command":"cp s3://b/k /dir/k","error":"..."}`;
- stdout at `--log debug`, per retried request: `{"error":"retryable error: SlowDown: ..."}`
  (the request is retried up to `--retry-count` times with back-off before it fails).

The exit code only says "something failed", and `sync` may exit 0 after errors, so the
engine decides each object's outcome from these lines alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from crypto_lakehouse.errors import (
    AccessDenied,
    BucketNotFound,
    EndpointUnreachable,
    StorageError,
)


@dataclass(frozen=True, slots=True)
class Done:
    """An object s5cmd finished (copy, download, upload or delete)."""

    operation: str
    source: str
    destination: str
    size: int | None


@dataclass(frozen=True, slots=True)
class Failed:
    """A command (one object, or a whole wildcard line) s5cmd reported as failed."""

    operation: str
    command: str
    error: str


@dataclass(frozen=True, slots=True)
class Listed:
    """One object from `s5cmd ls`."""

    url: str
    size: int
    etag: str
    last_modified: str


@dataclass(frozen=True, slots=True)
class Other:
    """Anything else: `--stat` counters, plain-text warnings, a truncated line."""

    text: str


@dataclass(frozen=True, slots=True)
class Retried:
    """A request s5cmd retried after a transient error (`cause`: see `retry_cause`)."""

    cause: str


Event = Done | Failed | Listed | Retried | Other


def parse_line(line: str | bytes) -> Event:
    """Classify one output line (from stdout or stderr, bytes or text); never raises.

    Runs once per object on every transfer, so it parses with orjson and decodes bytes
    only for the rare line that is not JSON.
    """
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return Other(_text(line))
    if not isinstance(data, dict):
        return Other(_text(line))
    if "error" in data and "command" in data:
        return Failed(str(data.get("operation", "")), str(data["command"]), str(data["error"]))
    error = data.get("error")
    if isinstance(error, str) and error.startswith(_RETRY_MARKERS):
        return Retried(retry_cause(error))
    if data.get("success") is True and "source" in data:
        obj = data.get("object") or {}
        size = obj.get("size") if isinstance(obj, dict) else None
        return Done(
            str(data.get("operation", "")),
            str(data["source"]),
            str(data.get("destination", "")),
            int(size) if isinstance(size, int) else None,
        )
    if "key" in data and "size" in data and data.get("type", "file") == "file":
        return Listed(
            str(data["key"]),
            int(data["size"]),
            str(data.get("etag", "")).strip('"'),
            str(data.get("last_modified", "")),
        )
    return Other(_text(line))


def _text(line: str | bytes) -> str:
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    return line.strip()


_DENIED = (
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "status code: 403",
    "Forbidden",
)
_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "dial tcp",
    "connection reset",
    "EOF",
    "RequestError: send request failed",
)


_RETRY_MARKERS = ("retryable error", "Retrying to upload")


def retry_cause(error: str) -> str:
    """A retried request's cause in a word or two, to count retries by cause in a log line."""
    if "SlowDown" in error or "503" in error:
        return "SlowDown"
    if "connection reset" in error or "EOF" in error or "broken pipe" in error:
        return "connection cut"
    if "timeout" in error.lower():
        return "timeout"
    return "other"


def is_empty_listing(error: str) -> bool:
    """s5cmd reports an empty wildcard match as an error; for a listing it means 'nothing'."""
    return error.strip().lower() == "no object found"


def storage_error(error: str, where: str) -> StorageError:
    """Map an s5cmd error text to the most specific error of ours, naming `where`."""
    short = error.split(" status code:")[0].strip() or error
    if "NoSuchBucket" in error:
        return BucketNotFound(f"bucket not found: {where}")
    if any(marker in error for marker in _DENIED):
        return AccessDenied(f"access denied at {where}: {short}")
    if any(marker in error for marker in _UNREACHABLE):
        return EndpointUnreachable(f"no answer from {where}: {short}")
    return StorageError(f"S3 error at {where}: {short}")


def short_error(error: str) -> str:
    """The useful head of an s5cmd error (drops request ids)."""
    return error.split(", request id:")[0].split(" request id:")[0].strip()
