"""Availability rules of the archive catalog, and the errors for combinations Binance lacks."""

from __future__ import annotations

import pytest

from crypto_lakehouse.archive.catalog import (
    DataType,
    Frequency,
    Market,
    check,
    data_types_for,
    datasets,
    intervals_for,
    parse_data_type,
    parse_market,
)
from crypto_lakehouse.errors import ArchiveError


def test_markets_are_the_archive_folders() -> None:
    assert [m.value for m in Market] == ["spot", "futures/um", "futures/cm", "option"]
    assert parse_market("um") is Market.FUTURES_UM
    assert parse_market("futures/cm/") is Market.FUTURES_CM


def test_funding_rate_is_monthly_only() -> None:
    for market in (Market.FUTURES_UM, Market.FUTURES_CM):
        assert check(market, "monthly", "fundingRate").data_type is DataType.FUNDING_RATE
        with pytest.raises(ArchiveError, match="futures/um monthly, futures/cm monthly"):
            check(market, "daily", "fundingRate")


@pytest.mark.parametrize("data_type", ["bookDepth", "metrics"])
def test_book_depth_and_metrics_are_daily_only(data_type: str) -> None:
    check("futures/um", "daily", data_type)
    with pytest.raises(ArchiveError, match=f"{data_type} is not published for futures/um monthly"):
        check("futures/um", "monthly", data_type)


def test_liquidation_snapshot_only_under_coin_margined_daily() -> None:
    check("futures/cm", "daily", "liquidationSnapshot")
    for market, frequency in [
        ("futures/um", "daily"),
        ("futures/cm", "monthly"),
        ("spot", "daily"),
    ]:
        with pytest.raises(ArchiveError, match="it exists for futures/cm daily"):
            check(market, frequency, "liquidationSnapshot")


def test_one_second_klines_are_spot_only() -> None:
    assert check("spot", "daily", "klines", "1s").intervals == ("1s",)
    assert "1s" in intervals_for("spot", "monthly")
    with pytest.raises(ArchiveError, match="spot-only"):
        check("futures/um", "daily", "klines", "1s")
    with pytest.raises(ArchiveError, match="spot-only"):
        check("futures/cm", "monthly", "markPriceKlines", "1s")


@pytest.mark.parametrize("interval", ["3d", "1w", "1mo"])
def test_long_intervals_are_futures_monthly_only(interval: str) -> None:
    check("futures/um", "monthly", "klines", interval)
    check("futures/cm", "monthly", "premiumIndexKlines", interval)
    with pytest.raises(ArchiveError, match="futures monthly only"):
        check("spot", "monthly", "klines", interval)
    with pytest.raises(ArchiveError, match="futures monthly only"):
        check("futures/um", "daily", "klines", interval)


def test_month_interval_is_spelled_1mo() -> None:
    with pytest.raises(ArchiveError, match="spelled '1mo'"):
        check("futures/um", "monthly", "klines", "1M")


def test_option_publishes_volatility_index_and_summary_daily() -> None:
    assert data_types_for("option") == [DataType.BVOL_INDEX, DataType.EOH_SUMMARY]
    with pytest.raises(ArchiveError, match="option monthly has: nothing"):
        check("option", "monthly", "BVOLIndex")
    with pytest.raises(ArchiveError, match="option daily has: BVOLIndex, EOHSummary"):
        check("option", "daily", "klines")


def test_only_kline_types_take_intervals() -> None:
    kline_like = {d.data_type for d in datasets() if d.intervals}
    assert kline_like == {
        DataType.KLINES,
        DataType.INDEX_PRICE_KLINES,
        DataType.MARK_PRICE_KLINES,
        DataType.PREMIUM_INDEX_KLINES,
    }
    with pytest.raises(ArchiveError, match="has no intervals"):
        check("spot", "daily", "trades", "1m")


def test_spot_has_only_trades_and_klines() -> None:
    assert set(data_types_for("spot", Frequency.DAILY)) == {
        DataType.TRADES,
        DataType.AGG_TRADES,
        DataType.KLINES,
    }
    with pytest.raises(ArchiveError, match="spot daily has: aggTrades, trades, klines"):
        check("spot", "daily", "markPriceKlines")


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(ArchiveError, match="spot, futures/um, futures/cm, option"):
        parse_market("margin")
    with pytest.raises(ArchiveError, match="aggTrades"):
        parse_data_type("candles")
    assert parse_data_type("aggtrades") is DataType.AGG_TRADES
    with pytest.raises(ArchiveError, match="daily or monthly"):
        check("spot", "weekly", "klines")


def test_every_published_dataset_passes_its_own_check() -> None:
    found = datasets()
    assert len({(d.market, d.frequency, d.data_type) for d in found}) == len(found)
    for dataset in found:
        for interval in dataset.intervals or (None,):
            assert check(dataset.market, dataset.frequency, dataset.data_type, interval)
