"""Which source endpoints a request may name, and the identity used to read each one.

A request that could name any URL would make the service fetch from wherever a client
points it (server-side request forgery: cloud metadata at 169.254.169.254, internal
admin ports). So sources are limited to an allow-list of origins, compared after
normalisation (scheme, lower-case host, explicit port). URLs with user info, a path, a
query or a fragment are refused outright. Host names are compared as written, not
resolved: list names whose DNS you control.

The lake is always allowed and read with the lake's credentials; every other source is
read anonymously (the service holds no other credentials).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.storage.endpoint import Endpoint

AWS = "aws"
_AWS_HOST = re.compile(r"^s3(?:[.-]([a-z0-9-]+))?\.amazonaws\.com$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class InvalidField(ConfigError):
    """A request field is well-formed but not acceptable here; answered with 422."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@lru_cache(maxsize=512)
def normalise_origin(url: str) -> str:
    """`scheme://host:port` of `url`, or ConfigError when it is more (or less) than an origin."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError("not a valid URL") from exc
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ConfigError("must be http(s)://host[:port]")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("must not contain user info (credentials never travel in URLs)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError("must be an origin only: no path, query or fragment")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port or _DEFAULT_PORTS[parts.scheme]}"


@dataclass(frozen=True)
class SourcePolicy:
    """The allow-list plus the lake endpoint (whose credentials the service holds)."""

    lake: Endpoint
    allowed: frozenset[str]
    allow_aws: bool
    source_region: str

    @classmethod
    def from_settings(cls, settings: Settings, lake: Endpoint) -> SourcePolicy:
        """Allow-list from EXECUTOR_ALLOWED_SOURCE_ENDPOINTS, else lake + SOURCE_ENDPOINT + aws."""
        raw = settings.executor_allowed_source_endpoints
        if raw is None:
            entries: list[str] = [AWS]
            if settings.source_endpoint:
                entries.append(settings.source_endpoint)
        else:
            entries = [e.strip() for e in raw.split(",") if e.strip()]
        return cls.build(lake, entries, source_region=settings.source_region)

    @classmethod
    def build(cls, lake: Endpoint, entries: Iterable[str], *, source_region: str) -> SourcePolicy:
        origins: set[str] = set()
        allow_aws = False
        for entry in entries:
            if entry.lower() == AWS:
                allow_aws = True
                continue
            try:
                origins.add(normalise_origin(entry))
            except ConfigError as exc:
                raise ConfigError(f"EXECUTOR_ALLOWED_SOURCE_ENDPOINTS entry: {exc}") from None
        if lake.url:
            origins.add(normalise_origin(lake.url))
        return cls(lake, frozenset(origins), allow_aws, source_region)

    def describe(self) -> str:
        """The allow-list for logs (origins only; no credentials are ever in it)."""
        names = sorted(self.allowed) + ([AWS] if self.allow_aws else [])
        return ", ".join(names)

    def is_lake(self, endpoint: str | None) -> bool:
        if endpoint is None:
            return True
        if self.lake.url is None:
            return False
        try:
            return normalise_origin(endpoint) == normalise_origin(self.lake.url)
        except ConfigError:
            return False

    def resolve(self, endpoint: str | None, anonymous: bool | None) -> Endpoint:
        """The Endpoint to read from; InvalidField naming `source.*` when it is not allowed."""
        if self.is_lake(endpoint):
            if anonymous:
                return Endpoint(url=self.lake.url, anonymous=True, region=self.lake.region)
            return self.lake
        assert endpoint is not None
        try:
            origin = normalise_origin(endpoint)
        except ConfigError as exc:
            raise InvalidField("source.endpoint", str(exc)) from None
        aws = _AWS_HOST.match(urlsplit(origin).hostname or "")
        if aws and self.allow_aws and origin.startswith("https://") and origin.endswith(":443"):
            region = aws.group(1) or self.source_region
            endpoint_url = None  # the engine's canonical "AWS itself"
        elif origin in self.allowed:
            region, endpoint_url = self.source_region, endpoint.strip().rstrip("/")
        else:
            raise InvalidField(
                "source.endpoint",
                "not on this service's allow-list (EXECUTOR_ALLOWED_SOURCE_ENDPOINTS)",
            )
        if anonymous is False:
            raise InvalidField(
                "source.anonymous",
                "sources other than the lake are read anonymously: the service holds no "
                "credentials for them",
            )
        return Endpoint(url=endpoint_url, anonymous=True, region=region)
