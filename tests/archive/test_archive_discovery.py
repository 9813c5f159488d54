"""Discovery against a real S3 server (SeaweedFS) playing the public archive, read anonymously:
symbols, files and sidecars, date ranges as key ranges (keys read are counted on the real
client), resuming after what the lake holds, and the streaming pieces (no server)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
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
from crypto_lakehouse.archive.listing import KeyRange, LeafFolder, in_order, with_sidecars
from crypto_lakehouse.archive.paths import ArchiveFile, parse_key
from crypto_lakehouse.errors import AccessDenied, ArchiveError, ConfigError
from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import Endpoint, ObjectInfo, S3Storage

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


# -- ranged, streaming listings ------------------------------------------------------------------

FIRST = date(2024, 1, 1)


class KeysRead:
    """Counts what S3 itself returned to ListObjectsV2 on the real client (a botocore hook)."""

    def __init__(self, storage: S3Storage) -> None:
        self.requests = 0
        self.keys: list[str] = []
        storage.client.meta.events.register("after-call.s3.ListObjectsV2", self._seen)

    def _seen(self, parsed: dict, **_: object) -> None:
        self.requests += 1
        self.keys += [item["Key"] for item in parsed.get("Contents", ())]


@pytest.fixture
def history(source_server: SeaweedServer, source_bucket: str) -> ArchiveSource:
    """Two symbols with 60 days of 1h and 1m klines, and 3 months of USD-M fundingRate."""
    files = [
        ArchiveFile("spot", "daily", "klines", symbol, FIRST + timedelta(n), interval)
        for symbol in ("BTCUSDT", "ETHUSDT")
        for interval in ("1h", "1m")
        for n in range(60)
    ]
    files += [
        ArchiveFile("um", "monthly", "fundingRate", "BTCUSDT", date(2024, m, 1)) for m in (1, 2, 3)
    ]
    _put_files(S3Storage(source_server.endpoint()), source_bucket, files)
    return ArchiveSource(source_server.endpoint(anonymous=True), source_bucket)


def _lister(source: ArchiveSource) -> tuple[ArchiveLister, KeysRead]:
    storage = S3Storage(source.endpoint)
    return ArchiveLister(source, storage), KeysRead(storage)


def test_a_date_range_reads_only_its_keys_and_one_past_it_per_folder(
    history: ArchiveSource,
) -> None:
    lister, read = _lister(history)
    start, end = FIRST + timedelta(20), FIRST + timedelta(22)
    query = ArchiveQuery(markets=("spot",), data_types=("klines",), start=start, end=end)

    files = list(lister.files(query))

    wanted = {
        ArchiveFile("spot", "daily", "klines", s, start + timedelta(n), i).key
        for s in ("BTCUSDT", "ETHUSDT")
        for i in ("1h", "1m")
        for n in range(3)
    }
    assert {f.key for f in files} == wanted
    assert all(f.checksum_etag and f.checksum_size for f in files)
    in_range = {k for k in read.keys if k.removesuffix(".CHECKSUM") in wanted}
    assert len(in_range) == 2 * len(wanted)  # each file and its sidecar, read once
    past = [k for k in read.keys if k not in in_range]
    assert len(past) <= 4  # at most one key past the range in each of the 4 leaf folders
    assert all(parse_key(k).period > end for k in past)  # nothing before the range
    # Requests: symbol folders of spot daily + monthly klines (2), interval folders of
    # each symbol (2), one page per leaf folder (4).
    assert read.requests == 8


def test_a_later_range_lists_only_new_keys(
    history: ArchiveSource, source_server: SeaweedServer
) -> None:
    one_day = ArchiveQuery(
        markets=("spot",),
        data_types=("klines",),
        frequencies=("daily",),
        intervals=("1h",),
        symbols=("BTCUSDT",),
    )
    lister, read = _lister(history)
    first = list(lister.files(replace(one_day, start=FIRST, end=FIRST + timedelta(59))))
    assert len(first) == 60 and read.requests == 1  # a named leaf: one page of 2 x 60 + 1 keys

    new = [
        ArchiveFile("spot", "daily", "klines", "BTCUSDT", FIRST + timedelta(n), "1h")
        for n in (60, 61)
    ]
    _put_files(S3Storage(source_server.endpoint()), history.bucket, new)
    lister, read = _lister(history)
    later = list(lister.files(replace(one_day, start=FIRST + timedelta(60))))
    assert later == new
    assert read.keys == [k for f in new for k in (f.key, f.checksum_key)]


def test_resume_lists_each_folder_after_what_the_lake_holds(history: ArchiveSource) -> None:
    known = {
        (Market.SPOT, Frequency.DAILY, DataType.KLINES, "BTCUSDT", "1h"): FIRST + timedelta(57),
        (Market.FUTURES_UM, Frequency.MONTHLY, DataType.FUNDING_RATE, "BTCUSDT", None): date(
            2024, 2, 1
        ),
    }
    lister, read = _lister(history)
    query = ArchiveQuery(markets=("spot", "um"), data_types=("klines", "fundingRate"))

    files = list(lister.files(query, resume=known.get))

    btc_1h = [f.period.day for f in files if (f.symbol, f.interval) == ("BTCUSDT", "1h")]
    assert btc_1h == [28, 29]  # 2024-02-28 and 29: after the 58th day
    assert [f.period for f in files if f.data_type is DataType.FUNDING_RATE] == [date(2024, 3, 1)]
    assert len([f for f in files if f.interval == "1m"]) == 120  # nothing known: everything
    read_btc_1h = [k for k in read.keys if "/BTCUSDT/1h/" in k]
    assert len(read_btc_1h) == 4  # the two new days' keys only


def test_monthly_files_overlapping_a_range_are_found_by_their_month(
    history: ArchiveSource,
) -> None:
    lister, read = _lister(history)
    query = ArchiveQuery(markets=("um",), frequencies=("monthly",), start=date(2024, 2, 10))
    assert [f.period for f in lister.files(query)] == [date(2024, 2, 1), date(2024, 3, 1)]
    assert not any("2024-01" in k for k in read.keys)


def test_discovery_memory_is_bounded_by_threads_and_depth_not_by_keys() -> None:
    """`in_order` runs jobs ahead on threads, but never more than `depth` items per job."""
    produced: list[int] = []
    ahead = 0

    def job(n: int):
        def run():
            for i in range(200):
                produced.append(n)
                yield (n, i)

        return run

    items = in_order((job(n) for n in range(6)), threads=3, depth=2)
    out = []
    for consumed, item in enumerate(items, start=1):
        out.append(item)
        time.sleep(0.0005)
        ahead = max(ahead, len(produced) - consumed)
    assert out == [(n, i) for n in range(6) for i in range(200)]  # job order, each in order
    assert ahead <= 3 * (2 + 1)  # threads x (depth + the item each holds while waiting)


def test_in_order_raises_a_job_error_in_order_and_stops_early() -> None:
    def good():
        yield from range(3)

    def bad():
        yield 10
        raise ArchiveError("listing failed")

    seen = []
    with pytest.raises(ArchiveError, match="listing failed"):
        for item in in_order([good, bad, good], threads=2):
            seen.append(item)
    assert seen == [0, 1, 2, 10]
    stream = in_order([good] * 50, threads=4)
    assert next(stream) == 0
    stream.close()  # the workers stop; nothing hangs


def _info(key: str) -> ObjectInfo:
    return ObjectInfo(key, 1, "e-" + key, datetime(2024, 1, 1, tzinfo=UTC))


def test_sidecars_pair_with_their_file_across_pages() -> None:
    pages = [
        [_info("f/a.zip"), _info("f/a.zip.CHECKSUM"), _info("f/b.zip")],
        [_info("f/b.zip.CHECKSUM"), _info("f/c.zip"), _info("f/c.zip-old")],
        [_info("f/c.zip.CHECKSUM"), _info("f/d.zip"), _info("f/orphan.zip.CHECKSUM")],
    ]
    pairs = [(i.key, s.key if s else None) for i, s in with_sidecars(pages)]
    assert pairs == [
        ("f/a.zip", "f/a.zip.CHECKSUM"),
        ("f/b.zip", "f/b.zip.CHECKSUM"),
        ("f/c.zip-old", None),  # a stray between a file and its sidecar
        ("f/c.zip", "f/c.zip.CHECKSUM"),
        ("f/d.zip", None),
    ]


def test_a_leaf_folder_key_range_starts_before_the_first_period_and_stops_after_the_last() -> None:
    leaf = LeafFolder(Market.SPOT, Frequency.DAILY, DataType.KLINES, "BTCUSDT", "1h", "d/")
    keys = leaf.key_range(date(2024, 1, 5), date(2024, 1, 6))
    assert keys is not None
    assert (keys.after, keys.last, keys.page_size) == (
        "BTCUSDT-1h-2024-01-05",
        "BTCUSDT-1h-2024-01-06",
        5,
    )
    assert (
        "d/BTCUSDT-1h-2024-01-04.zip.CHECKSUM" < "d/" + keys.after < "d/BTCUSDT-1h-2024-01-05.zip"
    )
    assert not keys.past("d/BTCUSDT-1h-2024-01-06.zip.CHECKSUM")
    assert keys.past("d/BTCUSDT-1h-2024-01-07.zip")
    assert leaf.key_range(date(2024, 1, 6), date(2024, 1, 5)) is None
    assert leaf.key_range(None, None) == KeyRange("d/")
    monthly = LeafFolder(
        Market.FUTURES_UM, Frequency.MONTHLY, DataType.FUNDING_RATE, "X", None, "m/"
    )
    assert monthly.name(date(2024, 2, 1)) == "X-fundingRate-2024-02"
