"""The source allow-list (SSRF guard): pure logic, no servers."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.executor.sources import InvalidField, SourcePolicy, normalise_origin
from crypto_lakehouse.storage import Endpoint

LAKE = Endpoint(
    url="http://minio.internal:9000", access_key=SecretStr("ak"), secret_key=SecretStr("sk")
)


def policy(allowed: str | None, source: str | None = None) -> SourcePolicy:
    settings = Settings(executor_allowed_source_endpoints=allowed, source_endpoint=source)
    return SourcePolicy.from_settings(settings, LAKE)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("HTTP://Archive.Example.COM", "http://archive.example.com:80"),
        ("https://archive.example.com/", "https://archive.example.com:443"),
        ("http://10.0.0.5:9000", "http://10.0.0.5:9000"),
        ("http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_origins_are_normalised(url: str, origin: str) -> None:
    assert normalise_origin(url) == origin


@pytest.mark.parametrize(
    "url",
    ["http://u:p@host", "http://host/path", "http://host?q=1", "http://host#f", "gopher://h", "h"],
)
def test_more_than_an_origin_is_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        normalise_origin(url)


def test_default_allows_lake_source_and_aws_only() -> None:
    rules = policy(None, source="http://archive.local:8333")
    assert rules.resolve(None, None) is LAKE
    assert rules.resolve("http://MINIO.internal:9000/", None) is LAKE
    archive = rules.resolve("http://archive.local:8333", None)
    assert (archive.url, archive.anonymous) == ("http://archive.local:8333", True)
    aws = rules.resolve("https://s3.ap-northeast-1.amazonaws.com", True)
    assert (aws.url, aws.anonymous, aws.region) == (None, True, "ap-northeast-1")
    for url in ("http://169.254.169.254", "http://archive.local:8334", "http://s3.amazonaws.com"):
        with pytest.raises(InvalidField) as caught:
            rules.resolve(url, None)
        assert caught.value.field == "source.endpoint"


def test_an_explicit_list_replaces_the_default_but_keeps_the_lake() -> None:
    rules = policy("https://mirror.example.com", source="http://archive.local:8333")
    assert rules.resolve("https://mirror.example.com:443", None).anonymous is True
    assert rules.resolve(None, None) is LAKE
    for url in ("http://archive.local:8333", "https://s3.amazonaws.com"):
        with pytest.raises(InvalidField):
            rules.resolve(url, None)


def test_identity_rules() -> None:
    rules = policy(None, source="http://archive.local:8333")
    unsigned_lake = rules.resolve(None, True)
    assert (unsigned_lake.url, unsigned_lake.anonymous) == (LAKE.url, True)
    with pytest.raises(InvalidField) as caught:
        rules.resolve("http://archive.local:8333", False)
    assert caught.value.field == "source.anonymous"


def test_a_bad_allow_list_entry_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="EXECUTOR_ALLOWED_SOURCE_ENDPOINTS"):
        policy("http://ok.example.com, ftp://nope")
