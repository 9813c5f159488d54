"""Discovery against a real S3 server (SeaweedFS) playing the public archive, read anonymously."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path

import pytest

from crypto_lakehouse.archive.catalog import DataType, Frequency, Market
from crypto_lakehouse.archive.checksum import checksum_of
from crypto_lakehouse.archive.discovery import (
    ArchiveLister,
    ArchiveQuery,
    ArchiveSource,
    base_symbol,
    binance_source,
    is_settled,
    quote_asset,
    symbol_matches,
)
from crypto_lakehouse.archive.gaps import find_gaps
from crypto_lakehouse.archive.paths import ArchiveFile
from crypto_lakehouse.errors import AccessDenied, ArchiveError, ConfigError
from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import Endpoint, S3Storage

DAY = date(2022, 8, 10)


def _put_files(storage: S3Storage, bucket: str, files: list[ArchiveFile], *, sidecar=True) -> None:
    def put(file: ArchiveFile) -> None:
        body = f"{file.stem}\n".encode()
        storage.put_bytes(bucket, file.key, body)
        if sidecar:
            storage.put_bytes(
                bucket, file.checksum_key, checksum_of(body, file.filename).line().encode()
            )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, files))


@pytest.fixture
def archive(
    source_server: SeaweedServer, source_bucket: str, binance_fixtures: Path
) -> ArchiveSource:
    """A small archive: the real fixture files plus listed-only files of several shapes."""
    admin = S3Storage(source_server.endpoint())
    for path in binance_fixtures.rglob("*"):
        if path.is_file():
            admin.put_bytes(
                source_bucket, str(path.relative_to(binance_fixtures)), path.read_bytes()
            )
    files = []
    for symbol in ("BTCUSDT", "ETHUSDT", "ETHBTC", "XMRUSDT"):
        days = 1 if symbol == "XMRUSDT" else 3  # XMRUSDT is delisted after the first day
        for n in range(days):
            if symbol == "ETHUSDT" and n == 1:
                continue  # a missing day
            files.append(ArchiveFile("spot", "daily", "trades", symbol, DAY + timedelta(n)))
            for interval in ("1m", "1h"):
                files.append(
                    ArchiveFile("spot", "daily", "klines", symbol, DAY + timedelta(n), interval)
                )
    for symbol in ("BTCUSDT", "BNXUSDTSETTLED", "BTCUSDT_220930"):
        files.append(ArchiveFile("futures/um", "daily", "metrics", symbol, DAY))
        files.append(ArchiveFile("futures/um", "monthly", "fundingRate", symbol, date(2022, 8, 1)))
    files.append(ArchiveFile("futures/cm", "daily", "liquidationSnapshot", "BTCUSD_PERP", DAY))
    _put_files(admin, source_bucket, files)
    # No sidecar for this one, and a stray object that is not an archive file.
    _put_files(
        admin,
        source_bucket,
        [ArchiveFile("spot", "daily", "aggTrades", "BTCUSDT", DAY)],
        sidecar=False,
    )
    admin.put_bytes(source_bucket, "data/spot/daily/trades/BTCUSDT/README.txt", b"x")
    return ArchiveSource(source_server.endpoint(anonymous=True), source_bucket)


def test_symbols_are_discovered_anonymously_including_delisted(archive: ArchiveSource) -> None:
    assert archive.endpoint.anonymous
    lister = ArchiveLister(archive)
    assert lister.symbols("spot", "daily", "trades") == ["BTCUSDT", "ETHBTC", "ETHUSDT", "XMRUSDT"]
    assert lister.symbols("spot", "daily", "trades", quote="BTC") == ["ETHBTC"]
    assert lister.symbols("spot", "daily", "trades", patterns=["ETH*"]) == ["ETHBTC", "ETHUSDT"]
    um = lister.symbols("um", "daily", "metrics")
    assert um == ["BNXUSDTSETTLED", "BTCUSDT", "BTCUSDT_220930"]
    assert lister.symbols("um", "daily", "metrics", include_settled=False) == [
        "BTCUSDT",
        "BTCUSDT_220930",
    ]
    assert lister.symbols("spot", "monthly", "trades") == []


def test_files_come_with_listing_metadata_and_sidecars(archive: ArchiveSource) -> None:
    lister = ArchiveLister(archive)
    query = ArchiveQuery(markets=(Market.SPOT,), data_types=(DataType.TRADES, DataType.AGG_TRADES))
    files = list(lister.files(query))
    assert {f.data_type for f in files} == {DataType.TRADES, DataType.AGG_TRADES}
    assert len([f for f in files if f.data_type is DataType.TRADES]) == 3 + 2 + 3 + 1
    for file in files:
        assert file.size == len(f"{file.stem}\n") and file.etag and file.last_modified
        assert (file.checksum_etag is None) == (file.data_type is DataType.AGG_TRADES)
    assert lister.skipped == ["data/spot/daily/trades/BTCUSDT/README.txt"]


def test_real_fixture_files_are_found(archive: ArchiveSource, binance_fixtures: Path) -> None:
    lister = ArchiveLister(archive)
    found = list(lister.files(ArchiveQuery(symbols=("BTCUSDT",), start=date(2026, 1, 1))))
    assert sorted(f.key for f in found) == sorted(
        str(p.relative_to(binance_fixtures)) for p in binance_fixtures.rglob("*.zip")
    )


def test_query_filters_interval_date_range_and_quote(archive: ArchiveSource) -> None:
    lister = ArchiveLister(archive)
    query = ArchiveQuery(
        markets=("spot",),
        data_types=("klines",),
        frequencies=("daily",),
        intervals=("1h",),
        quote="USDT",
        start=DAY + timedelta(1),
        end=DAY + timedelta(2),
    )
    files = list(lister.files(query))
    assert {(f.symbol, f.interval) for f in files} == {("BTCUSDT", "1h"), ("ETHUSDT", "1h")}
    assert sorted(f.period for f in files) == [
        DAY + timedelta(1),
        DAY + timedelta(2),
        DAY + timedelta(2),
    ]
    monthly = ArchiveQuery(markets=("um",), frequencies=("monthly",), start=date(2022, 8, 31))
    assert {f.symbol for f in lister.files(monthly)} == {
        "BTCUSDT",
        "BNXUSDTSETTLED",
        "BTCUSDT_220930",
    }
    assert (
        list(
            lister.files(
                ArchiveQuery(markets=("um",), frequencies=("monthly",), end=date(2022, 7, 31))
            )
        )
        == []
    )


def test_gaps_are_days_missing_inside_a_series(archive: ArchiveSource) -> None:
    query = ArchiveQuery(markets=("spot",), end=date(2022, 12, 31))  # not the 2026 fixtures
    gaps = find_gaps(ArchiveLister(archive).files(query))
    assert {(g.symbol, g.data_type, g.interval) for g in gaps} == {
        ("ETHUSDT", DataType.TRADES, None),
        ("ETHUSDT", DataType.KLINES, "1m"),
        ("ETHUSDT", DataType.KLINES, "1h"),
    }
    assert all(g.labels == ["2022-08-11"] for g in gaps)
    assert "XMRUSDT" not in {g.symbol for g in gaps}  # delisted: stops, no gap


def test_listing_is_paged_beyond_1000_keys(
    source_server: SeaweedServer, source_bucket: str
) -> None:
    files = [
        ArchiveFile("spot", "daily", "trades", "BTCUSDT", date(2019, 1, 1) + timedelta(n))
        for n in range(520)
    ]
    _put_files(S3Storage(source_server.endpoint()), source_bucket, files)  # 1040 keys
    lister = ArchiveLister(ArchiveSource(source_server.endpoint(anonymous=True), source_bucket))
    listed = list(lister.files(ArchiveQuery(markets=("spot",), data_types=("trades",))))
    assert listed == sorted(files)
    assert all(f.checksum_etag for f in listed)


def test_anonymous_writes_are_refused(archive: ArchiveSource) -> None:
    with pytest.raises(AccessDenied):
        S3Storage(archive.endpoint).put_bytes(archive.bucket, "data/x", b"x")


def test_query_rejects_what_no_market_publishes() -> None:
    with pytest.raises(ArchiveError, match="no chosen market/frequency publishes fundingRate"):
        ArchiveQuery(markets=("spot",), data_types=("fundingRate",))
    with pytest.raises(ArchiveError, match="interval '1s'"):
        ArchiveQuery(markets=("futures/um",), intervals=("1s",))
    with pytest.raises(ConfigError, match="after"):
        ArchiveQuery(start=date(2024, 1, 2), end=date(2024, 1, 1))
    plan = ArchiveQuery(markets=("spot", "um"), data_types=("fundingRate", "trades")).plan()
    assert (Market.FUTURES_UM, Frequency.MONTHLY, DataType.FUNDING_RATE, ()) in plan
    assert all(m is Market.FUTURES_UM for m, _, dt, _ in plan if dt is DataType.FUNDING_RATE)


@pytest.mark.parametrize(
    ("symbol", "quote", "base", "settled"),
    [
        ("BTCUSDT", "USDT", "BTCUSDT", False),
        ("ETHBTC", "BTC", "ETHBTC", False),
        ("BTCUSD_PERP", "USD", "BTCUSD", False),
        ("BTCUSDT_230630", "USDT", "BTCUSDT", False),
        ("BNXUSDTSETTLED", "USDT", "BNXUSDT", True),
        ("AERGOUSDTSETTLEDSETTLED", "USDT", "AERGOUSDT", True),
        ("BTCBVOLUSDT", "USDT", "BTCBVOLUSDT", False),
        ("ABCXYZ", None, "ABCXYZ", False),
    ],
)
def test_symbol_names(symbol: str, quote: str | None, base: str, settled: bool) -> None:
    assert quote_asset(symbol) == quote
    assert base_symbol(symbol) == base
    assert is_settled(symbol) is settled
    assert symbol_matches(symbol, quote=quote or "NONE") is (quote is not None)


def test_production_source_is_binance_anonymous() -> None:
    source = binance_source()
    assert (source.bucket, source.root) == ("data.binance.vision", "data/")
    assert source.endpoint == Endpoint(url=None, anonymous=True, region="ap-northeast-1")
