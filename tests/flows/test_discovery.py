"""The flow's discovery lists with s5cmd where it can and must agree with ArchiveLister."""

from __future__ import annotations

from pathlib import Path

import pytest
from flow_helpers import build_tiny_archive

from crypto_lakehouse.archive import ArchiveLister, ArchiveQuery, ArchiveSource
from crypto_lakehouse.flows.discovery import discover_files
from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import S3Storage


@pytest.mark.parametrize(
    "query",
    [
        ArchiveQuery(),
        ArchiveQuery(markets=("spot",), intervals=("1h",)),
        ArchiveQuery(symbols=("ETHUSDT",)),
        ArchiveQuery(symbols=("BTC*",), start=None, end=None, quote="USDT"),
        ArchiveQuery(markets=("spot",), symbols=("ETHUSDT", "BTCUSDT"), intervals=("1h",)),
        ArchiveQuery(markets=("spot", "futures/um"), frequencies=("daily",)),
        ArchiveQuery(data_types=("klines", "fundingRate")),
    ],
    ids=[
        "all",
        "one-interval",
        "exact-symbol",
        "glob+quote",
        "exact+interval",
        "market-frequency",
        "some-datasets",
    ],
)
def test_discovery_matches_the_archive_lister(
    query: ArchiveQuery, source_server: SeaweedServer, source_bucket: str, binance_fixtures: Path
) -> None:
    build_tiny_archive(S3Storage(source_server.endpoint()), source_bucket, binance_fixtures)
    source = ArchiveSource(source_server.endpoint(anonymous=True), source_bucket)
    found = discover_files(source, query)
    expected = sorted(ArchiveLister(source).files(query))
    assert found == expected
    assert [(f.size, f.etag, f.checksum_etag) for f in found] == [
        (f.size, f.etag, f.checksum_etag) for f in expected
    ]
    assert all(f.last_modified is not None and f.checksum_etag for f in found)
