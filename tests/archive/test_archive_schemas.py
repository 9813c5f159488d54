"""CSV schemas against the real Binance files, and per-file header / time-unit detection."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from crypto_lakehouse.archive.catalog import PUBLISHED, DataType, Market
from crypto_lakehouse.archive.reader import read_csv, read_zip, unzip_single
from crypto_lakehouse.archive.schemas import (
    all_schemas,
    detect_time_unit,
    looks_like_header,
    schema_for,
)
from crypto_lakehouse.errors import ArchiveError

SPOT_KLINES = "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2026-05-08.zip"
UM_FUNDING = "data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2026-04.zip"


def _first_line(path: Path) -> str:
    return unzip_single(path.read_bytes()).split(b"\n", 1)[0].decode()


def test_real_spot_klines_have_12_columns_no_header_and_microseconds(
    binance_fixtures: Path,
) -> None:
    schema = schema_for("spot", "klines")
    line = _first_line(binance_fixtures / SPOT_KLINES)
    assert not looks_like_header(line)
    assert len(line.split(",")) == len(schema.columns) == 12
    assert detect_time_unit(line.split(",")[0]) == "us"
    table, layout = read_zip((binance_fixtures / SPOT_KLINES).read_bytes(), schema)
    assert layout.header is False
    assert layout.time_units == {"open_time": "us", "close_time": "us"}
    assert table.num_rows == 24
    assert table.column("open_time")[0].as_py() == datetime(2026, 5, 8, tzinfo=UTC)
    assert table.schema.field("open_time").type == pa.timestamp("us", tz="UTC")
    # The file's rows are hourly and each closes one microsecond before the next opens.
    opens = table.column("open_time").to_pylist()
    closes = table.column("close_time").to_pylist()
    assert all((c - o).total_seconds() == 3600 - 1e-6 for o, c in zip(opens, closes, strict=True))


def test_real_funding_rate_has_the_schema_header(binance_fixtures: Path) -> None:
    schema = schema_for("futures/um", "fundingRate")
    line = _first_line(binance_fixtures / UM_FUNDING)
    assert looks_like_header(line)
    assert line.strip() == schema.header_line
    table, layout = read_zip((binance_fixtures / UM_FUNDING).read_bytes(), schema)
    assert layout == layout.__class__(True, {"calc_time": "ms"})
    assert table.column_names == ["calc_time", "funding_interval_hours", "last_funding_rate"]
    assert set(table.column("funding_interval_hours").to_pylist()) == {8}
    assert table.column("calc_time")[0].as_py() == datetime(2026, 4, 1, tzinfo=UTC)


def test_column_counts_follow_binance() -> None:
    counts = {(s.market, s.data_type): len(s.columns) for s in all_schemas()}
    assert counts[Market.SPOT, DataType.AGG_TRADES] == 8
    assert counts[Market.FUTURES_UM, DataType.AGG_TRADES] == 7
    assert counts[Market.SPOT, DataType.TRADES] == 7
    assert counts[Market.FUTURES_UM, DataType.TRADES] == 6
    assert counts[Market.FUTURES_CM, DataType.TRADES] == 6
    assert all(n == 12 for (_, dt), n in counts.items() if dt.has_interval)
    assert schema_for("futures/cm", "trades").names == [
        "id", "price", "qty", "base_qty", "time", "is_buyer_maker",
    ]  # fmt: skip
    assert "base_volume" in schema_for("futures/cm", "klines").names
    assert "quote_volume" in schema_for("futures/um", "markPriceKlines").names


def test_every_published_pair_has_a_schema_with_known_keys_and_times() -> None:
    for market, published in PUBLISHED.items():
        for data_type in published:
            schema = schema_for(market, data_type)
            assert set(schema.key) <= set(schema.names)
            assert schema.time_columns, f"{market} {data_type} has no time column"
            assert (schema.header_line is None) == (market is Market.SPOT)
    with pytest.raises(ArchiveError, match="spot does not publish fundingRate"):
        schema_for("spot", "fundingRate")


def test_publication_rules_for_headers_and_microseconds() -> None:
    um_agg = schema_for("futures/um", "aggTrades")
    assert not um_agg.publishes_header(date(2022, 8, 10))
    assert um_agg.publishes_header(date(2022, 8, 11))
    assert schema_for("futures/um", "metrics").publishes_header(date(2021, 12, 1))
    spot = schema_for("spot", "trades")
    assert not spot.publishes_header(date(2026, 1, 1))
    assert not spot.publishes_microseconds(date(2024, 12, 31))
    assert spot.publishes_microseconds(date(2025, 1, 1))
    assert not um_agg.publishes_microseconds(date(2026, 1, 1))


@pytest.mark.parametrize(
    ("value", "unit"),
    [("1661990400000", "ms"), (1735689600000000, "us"), ("999", "ms")],
)
def test_time_unit_is_judged_by_digits(value: object, unit: str) -> None:
    assert detect_time_unit(value) == unit


def test_time_unit_rejects_nanoseconds() -> None:
    with pytest.raises(ArchiveError):
        detect_time_unit(1735689600000000000)


@pytest.mark.parametrize(
    ("line", "header"),
    [
        ("open_time,open,high", True),
        ("\ufeffcalc_time,funding_interval_hours", True),
        ("1778198400000000,80006.0", False),
        ("2022-08-10 00:05:00,BTCUSDT,1.0", False),
        ("2024-12-31,0,BTC-250103-95000-C", False),
    ],
)
def test_header_detection(line: str, header: bool) -> None:
    assert looks_like_header(line) is header


def test_reader_handles_both_units_and_text_times() -> None:
    schema = schema_for("spot", "trades")
    ms_rows = b"1,100.5,0.1,10.05,1735603200000,True,True\n"
    us_rows = b"2,100.5,0.1,10.05,1735689600000000,False,True\n"
    ms, ms_layout = read_csv(ms_rows, schema)
    us, us_layout = read_csv(us_rows, schema)
    assert (ms_layout.time_units["time"], us_layout.time_units["time"]) == ("ms", "us")
    assert ms.column("time")[0].as_py() == datetime(2024, 12, 31, tzinfo=UTC)
    assert us.column("time")[0].as_py() == datetime(2025, 1, 1, tzinfo=UTC)
    assert ms.column("is_buyer_maker").to_pylist() == [True]

    metrics = schema_for("futures/um", "metrics")
    text = (metrics.header_line + "\n2022-08-10 00:05:00,BTCUSDT,1,2,3,4,5,6\n").encode()
    table, layout = read_csv(text, metrics)
    assert layout.header
    assert table.column("create_time")[0].as_py() == datetime(2022, 8, 10, 0, 5, tzinfo=UTC)


def test_reader_rejects_a_wrong_column_count() -> None:
    with pytest.raises(ArchiveError, match="6 columns, but spot trades has 7"):
        read_csv(b"1,2,3,4,5,6\n", schema_for("spot", "trades"))
    with pytest.raises(ArchiveError, match="8 columns, but futures/um aggTrades has 7"):
        read_csv(b"1,2,3,4,5,6,7,8\n", schema_for("futures/um", "aggTrades"))


def test_reader_rejects_a_damaged_zip() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.csv", "1,2\n")
    with pytest.raises(ArchiveError, match="not a readable zip"):
        read_zip(buffer.getvalue()[:-30], schema_for("spot", "klines"))
