"""Archive keys built and parsed both ways, against the real fixture names; checksum sidecars."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from crypto_lakehouse.archive.catalog import DataType, Frequency, Market
from crypto_lakehouse.archive.checksum import (
    Checksum,
    checksum_of,
    parse_checksum,
    sha256_hex,
    verify,
)
from crypto_lakehouse.archive.paths import (
    ArchiveFile,
    Partition,
    data_key_of,
    dataset_prefix,
    is_checksum_key,
    parse_key,
)
from crypto_lakehouse.errors import ArchiveError, ChecksumMismatch


def _real_keys(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_real_fixture_names_round_trip(binance_fixtures: Path) -> None:
    keys = _real_keys(binance_fixtures)
    zips = [k for k in keys if k.endswith(".zip")]
    assert len(zips) >= 2
    for key in zips:
        parsed = parse_key(key)
        assert parsed.key == key
        assert parsed.checksum_key in keys
        assert parse_key(parsed.checksum_key) == parsed


def test_real_spot_kline_name_parses_to_its_parts() -> None:
    parsed = parse_key("data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2026-05-08.zip")
    assert parsed == ArchiveFile(
        Market.SPOT, Frequency.DAILY, DataType.KLINES, "BTCUSDT", date(2026, 5, 8), "1h"
    )
    assert parsed.day == date(2026, 5, 8)
    assert parsed.csv_name == "BTCUSDT-1h-2026-05-08.csv"
    assert parsed.partition == Partition(
        Market.SPOT, Frequency.DAILY, DataType.KLINES, "1h", date(2026, 5, 8)
    )
    assert parsed.partition.label == "spot/daily/klines/1h/2026-05-08"


def test_real_monthly_funding_name_parses_to_a_month() -> None:
    key = "data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2026-04.zip"
    parsed = parse_key(key)
    assert (parsed.market, parsed.frequency, parsed.interval) == (
        Market.FUTURES_UM,
        Frequency.MONTHLY,
        None,
    )
    assert parsed.period == date(2026, 4, 1)
    assert parsed.day is None
    assert parsed.month == "2026-04"
    assert parsed.partition.label == "futures/um/monthly/fundingRate/2026-04"
    assert parsed.schema.names == ["calc_time", "funding_interval_hours", "last_funding_rate"]


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (
            ("futures/cm", "daily", "liquidationSnapshot", "BTCUSD_PERP", date(2022, 8, 10)),
            "data/futures/cm/daily/liquidationSnapshot/BTCUSD_PERP/"
            "BTCUSD_PERP-liquidationSnapshot-2022-08-10.zip",
        ),
        (
            ("futures/um", "monthly", "markPriceKlines", "BNXUSDTSETTLED", date(2022, 8, 1), "1mo"),
            "data/futures/um/monthly/markPriceKlines/BNXUSDTSETTLED/1mo/"
            "BNXUSDTSETTLED-1mo-2022-08.zip",
        ),
        (
            ("option", "daily", "BVOLIndex", "BTCBVOLUSDT", date(2025, 1, 1)),
            "data/option/daily/BVOLIndex/BTCBVOLUSDT/BTCBVOLUSDT-BVOLIndex-2025-01-01.zip",
        ),
        (
            ("spot", "monthly", "aggTrades", "ETHBTC", date(2024, 12, 1)),
            "data/spot/monthly/aggTrades/ETHBTC/ETHBTC-aggTrades-2024-12.zip",
        ),
    ],
)
def test_build_and_parse_agree(args: tuple, key: str) -> None:
    built = ArchiveFile(*args)
    assert built.key == key
    assert parse_key(key) == built
    assert parse_key(built.checksum_key) == built
    assert built.key_under("mirror/binance/data") == "mirror/binance/" + key
    assert parse_key("mirror/binance/" + key, root="mirror/binance/data/") == built


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("data/spot/daily/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-01-01.zip", "not published"),
        ("data/futures/um/daily/klines/BTCUSDT/1s/BTCUSDT-1s-2024-01-01.zip", "spot-only"),
        ("data/spot/daily/klines/BTCUSDT/BTCUSDT-klines-2024-01-01.zip", "interval folder"),
        ("data/spot/daily/trades/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.zip", "directly in the symbol"),
        ("data/spot/daily/trades/BTCUSDT/ETHUSDT-trades-2024-01-01.zip", "file name must be"),
        ("data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-01.zip", "not YYYY-MM-DD"),
        ("data/spot/monthly/trades/BTCUSDT/BTCUSDT-trades-2024-13.zip", "not a real date"),
        ("data/spot/daily/trades/btcusdt/btcusdt-trades-2024-01-01.zip", "invalid symbol"),
        ("data/spot/daily/aggtrades/BTCUSDT/BTCUSDT-aggTrades-2024-01-01.zip", "spelled"),
        ("other/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-01-01.zip", "not under"),
        ("data/spot/daily/trades/BTCUSDT", "too short"),
        ("data/margin/daily/trades/BTCUSDT/BTCUSDT-trades-2024-01-01.zip", "unknown market"),
    ],
)
def test_keys_binance_could_not_publish_are_rejected(key: str, message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        parse_key(key)


def test_file_rules() -> None:
    with pytest.raises(ArchiveError, match="needs an interval"):
        ArchiveFile("spot", "daily", "klines", "BTCUSDT", date(2024, 1, 1))
    with pytest.raises(ArchiveError, match="first day"):
        ArchiveFile("futures/um", "monthly", "fundingRate", "BTCUSDT", date(2024, 1, 2))
    assert dataset_prefix("um", "daily", "metrics") == "data/futures/um/daily/metrics/"
    assert is_checksum_key("data/x.zip.CHECKSUM") and not is_checksum_key("data/x.zip")
    assert data_key_of("a/b.zip.CHECKSUM") == "a/b.zip"
    with pytest.raises(ArchiveError):
        data_key_of("a/b.zip")


def test_listing_metadata_is_not_identity() -> None:
    file = parse_key("data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-01-01.zip")
    listed = file.with_listing(10, "abc", None)  # type: ignore[arg-type]
    assert listed == file and listed.size == 10
    assert sorted([listed, file]) == [file, file]


# -- checksums ---------------------------------------------------------------------------------


def test_real_checksums_match_their_files(binance_fixtures: Path) -> None:
    for sidecar in binance_fixtures.rglob("*.CHECKSUM"):
        zip_path = sidecar.with_suffix("")
        checksum = parse_checksum(sidecar.read_bytes(), expected_filename=zip_path.name)
        verify(zip_path.read_bytes(), checksum)
        assert checksum.line().encode() == sidecar.read_bytes()


def test_checksum_forms_and_errors() -> None:
    digest = sha256_hex(b"abc")
    assert parse_checksum(f"{digest.upper()} *x.zip").sha256 == digest
    assert parse_checksum(f"{digest}  x.zip").filename == "x.zip"
    for bad, message in [
        ("", "one line"),
        (f"{digest}  x.zip\n{digest}  y.zip\n", "one line"),
        (f"{digest[:-1]}  x.zip", "not a"),
        (f"{digest[:-1]}g  x.zip", "not a"),
        (f"{digest}  ../x.zip", "not a"),
        (f"{digest}x.zip", "not a"),
    ]:
        with pytest.raises(ArchiveError, match=message):
            parse_checksum(bad)
    with pytest.raises(ArchiveError, match=r"expected 'y\.zip'"):
        parse_checksum(f"{digest}  x.zip", expected_filename="y.zip")
    with pytest.raises(ArchiveError, match="UTF-8"):
        parse_checksum(b"\xff\xfe")


def test_verify_raises_on_changed_bytes() -> None:
    checksum = checksum_of(b"original", "f.zip")
    assert checksum == Checksum(sha256_hex(b"original"), "f.zip")
    verify(b"original", checksum)
    with pytest.raises(ChecksumMismatch, match=r"f\.zip"):
        verify(b"originaL", checksum)
