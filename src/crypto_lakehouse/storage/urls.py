"""`s3://bucket/prefix` addresses and S3's bucket naming rules, checked at the edges."""

from __future__ import annotations

import re
from dataclasses import dataclass

from crypto_lakehouse.errors import ConfigError

# Key conventions every layer that reads or writes the buckets shares:
# a file's published SHA-256 sits next to it as `<key>.CHECKSUM` (Binance's convention; any
# source that follows it is verified the same way) ...
SIDECAR_SUFFIX = ".CHECKSUM"
# ... and a corrupt object lands under this prefix of the destination bucket, not its key.
QUARANTINE_PREFIX = "_quarantine/"

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP_RE = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def validate_bucket_name(name: str) -> str:
    """Return `name` if it follows S3's bucket rules, else raise ConfigError saying which."""
    if not _BUCKET_RE.match(name):
        raise ConfigError(
            f"invalid bucket name {name!r}: 3-63 characters of a-z, 0-9, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    if ".." in name or _IP_RE.match(name) or name.startswith("xn--"):
        raise ConfigError(f"invalid bucket name {name!r}")
    return name


def validate_prefix(prefix: str) -> str:
    """Reject prefixes with `..` segments or control characters (they never name real data)."""
    if _CONTROL_RE.search(prefix):  # one scan in C (a Python loop per character was slow)
        raise ConfigError("prefix must not contain control characters")
    if ".." in prefix.split("/"):
        raise ConfigError("prefix must not contain '..' segments")
    if prefix.startswith("/"):
        raise ConfigError("prefix must not start with '/'")
    return prefix


@dataclass(frozen=True)
class S3Url:
    """A bucket and a key prefix; `str()` gives back the `s3://` form."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, text: str) -> S3Url:
        if not text.startswith("s3://"):
            raise ConfigError(f"expected s3://bucket[/prefix], got {text!r}")
        bucket, _, prefix = text[len("s3://") :].partition("/")
        return cls(validate_bucket_name(bucket), validate_prefix(prefix))

    def join(self, key_suffix: str) -> str:
        """The full key for `key_suffix` under this prefix."""
        return f"{self.prefix}{key_suffix}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"
