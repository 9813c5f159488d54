"""The CSV inside each archive file: column names in Binance's order, types, keys, time columns.

Binance publishes no schema, so this module is the project's record of it (checked against
real files in tests). Silver tables are built from `schema_for(market, data_type)`:

- `columns`: names exactly as in Binance's header rows, in file order, with the pyarrow
  type to read them as. Time columns are read raw (int64 epochs, or strings) and marked
  with a `TimeKind`, because their unit changes between files (see below).
- `key`: the columns that identify a row within one symbol (and interval); the symbol and
  interval come from the path. Dedup on them.
- `header_line`: the header row text for data sets that have one (futures, option).

Two publication rules change the bytes over time. Readers must detect both per file (the
rules below only say how the archive behaves, and the sample generator follows them):

- Spot epochs are milliseconds before 2025-01-01 and microseconds from then on
  (`SPOT_MICROSECONDS_SINCE`); futures and option epochs stay in milliseconds.
- Spot files never have a header row; futures files gained one during 2022
  (`FUTURES_HEADER_SINCE`, the USD-M aggTrades cut-over); some newer data sets had a
  header from their first file (`ALWAYS_HEADER`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

import pyarrow as pa

from crypto_lakehouse.archive.catalog import (
    KLINE_TYPES,
    PUBLISHED,
    DataType,
    Market,
    parse_data_type,
    parse_market,
)
from crypto_lakehouse.errors import ArchiveError

SPOT_MICROSECONDS_SINCE = date(2025, 1, 1)
FUTURES_HEADER_SINCE = date(2022, 8, 11)
ALWAYS_HEADER = frozenset(
    {DataType.BOOK_DEPTH, DataType.METRICS, DataType.BVOL_INDEX, DataType.EOH_SUMMARY}
)


class TimeKind(StrEnum):
    """How a time column is written."""

    EPOCH = "epoch"  # integer since 1970-01-01 UTC, ms or us: detect per file
    TEXT = "text"  # 'YYYY-MM-DD HH:MM:SS', UTC
    DATE = "date"  # 'YYYY-MM-DD'


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    time: TimeKind | None = None


@dataclass(frozen=True)
class CsvSchema:
    """The CSV layout of one (market, data type)."""

    market: Market
    data_type: DataType
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def header_line(self) -> str | None:
        """The header row's text, for data sets whose files (may) carry one."""
        return None if self.market is Market.SPOT else ",".join(self.names)

    @property
    def time_columns(self) -> dict[str, TimeKind]:
        return {c.name: c.time for c in self.columns if c.time is not None}

    @property
    def epoch_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.time is TimeKind.EPOCH]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise ArchiveError(f"{self.market} {self.data_type} has no column {name!r}")

    def arrow_schema(self) -> pa.Schema:
        """The schema to read the CSV with (time columns raw: int64 epochs or strings)."""
        return pa.schema([pa.field(c.name, c.type) for c in self.columns])

    def publishes_header(self, period: date) -> bool:
        """Whether files for `period` (a day, or a month's first day) carry a header row.

        A monthly file counts as after the cut-over only if its month starts on or after it.
        Readers must not rely on this: use `looks_like_header` on the file itself.
        """
        if self.market is Market.SPOT:
            return False
        return self.data_type in ALWAYS_HEADER or period >= FUTURES_HEADER_SINCE

    def publishes_microseconds(self, period: date) -> bool:
        """Whether epochs in files for `period` are microseconds (spot from 2025-01-01)."""
        return self.market is Market.SPOT and period >= SPOT_MICROSECONDS_SINCE


# -- column sets -----------------------------------------------------------------------------

_I = pa.int64()
_F = pa.float64()
_S = pa.string()
_B = pa.bool_()


def _cols(*spec: tuple) -> tuple[Column, ...]:
    return tuple(Column(*item) for item in spec)


def _klines(volume: str, quote_volume: str, taker_quote: str) -> tuple[Column, ...]:
    return _cols(
        ("open_time", _I, TimeKind.EPOCH),
        ("open", _F),
        ("high", _F),
        ("low", _F),
        ("close", _F),
        (volume, _F),
        ("close_time", _I, TimeKind.EPOCH),
        (quote_volume, _F),
        ("count", _I),
        ("taker_buy_volume", _F),
        (taker_quote, _F),
        ("ignore", _S),  # always "0"; typed loosely so odd files still load
    )


# USD-M and spot count volume in the base asset and turnover in the quote asset; COIN-M
# counts volume in contracts and turnover in the base asset (`base_*` columns).
_KLINES_QUOTE = _klines("volume", "quote_volume", "taker_buy_quote_volume")
_KLINES_COIN = _klines("volume", "base_volume", "taker_buy_base_volume")

_TRADES_SPOT = _cols(
    ("id", _I),
    ("price", _F),
    ("qty", _F),
    ("quote_qty", _F),
    ("time", _I, TimeKind.EPOCH),
    ("is_buyer_maker", _B),
    ("is_best_match", _B),
)
_TRADES_UM = _TRADES_SPOT[:-1]
_TRADES_CM = (*_TRADES_SPOT[:3], Column("base_qty", _F), *_TRADES_SPOT[4:6])

_AGG_SPOT = _cols(
    ("agg_trade_id", _I),
    ("price", _F),
    ("quantity", _F),
    ("first_trade_id", _I),
    ("last_trade_id", _I),
    ("transact_time", _I, TimeKind.EPOCH),
    ("is_buyer_maker", _B),
    ("is_best_match", _B),
)
_AGG_FUTURES = _AGG_SPOT[:-1]

_FUNDING = _cols(
    ("calc_time", _I, TimeKind.EPOCH),
    ("funding_interval_hours", _I),
    ("last_funding_rate", _F),
)
_BOOK_TICKER = _cols(
    ("update_id", _I),
    ("best_bid_price", _F),
    ("best_bid_qty", _F),
    ("best_ask_price", _F),
    ("best_ask_qty", _F),
    ("transaction_time", _I, TimeKind.EPOCH),
    ("event_time", _I, TimeKind.EPOCH),
)
_BOOK_DEPTH = _cols(
    ("timestamp", _S, TimeKind.TEXT),
    ("percentage", _F),
    ("depth", _F),
    ("notional", _F),
)
_METRICS = _cols(
    ("create_time", _S, TimeKind.TEXT),
    ("symbol", _S),
    ("sum_open_interest", _F),
    ("sum_open_interest_value", _F),
    ("count_toptrader_long_short_ratio", _F),
    ("sum_toptrader_long_short_ratio", _F),
    ("count_long_short_ratio", _F),
    ("sum_taker_long_short_vol_ratio", _F),
)
_LIQUIDATION = _cols(
    ("time", _I, TimeKind.EPOCH),
    ("side", _S),
    ("order_type", _S),
    ("time_in_force", _S),
    ("original_quantity", _F),
    ("price", _F),
    ("average_price", _F),
    ("order_status", _S),
    ("last_fill_quantity", _F),
    ("accumulated_fill_quantity", _F),
)
_BVOL = _cols(
    ("calc_time", _I, TimeKind.EPOCH),
    ("symbol", _S),
    ("base_asset", _S),
    ("quote_asset", _S),
    ("index_value", _F),
)
_EOH_MEASURES = (
    "best_bid_price", "best_ask_price", "best_bid_qty", "best_ask_qty",
    "best_buy_iv", "best_sell_iv", "mark_price", "mark_iv",
    "delta", "gamma", "vega", "theta",
)  # fmt: skip
_EOH = _cols(
    ("date", _S, TimeKind.DATE),
    ("hour", _I),
    ("symbol", _S),
    ("underlying", _S),
    ("type", _S),
    ("strike", _S),
    *((name, _F) for name in ("open", "high", "low", "close")),
    ("volume_contracts", _F),
    ("volume_usdt", _F),
    *((name, _F) for name in _EOH_MEASURES),
    ("openinterest_contracts", _F),
    ("openinterest_usdt", _F),
)

_KEYS: dict[DataType, tuple[str, ...]] = {
    DataType.KLINES: ("open_time",),
    DataType.INDEX_PRICE_KLINES: ("open_time",),
    DataType.MARK_PRICE_KLINES: ("open_time",),
    DataType.PREMIUM_INDEX_KLINES: ("open_time",),
    DataType.TRADES: ("id",),
    DataType.AGG_TRADES: ("agg_trade_id",),
    DataType.FUNDING_RATE: ("calc_time",),
    DataType.BOOK_TICKER: ("update_id", "event_time"),
    DataType.BOOK_DEPTH: ("timestamp", "percentage"),
    DataType.METRICS: ("create_time",),
    # Liquidation orders carry no id: a row is identified by all of its values.
    DataType.LIQUIDATION_SNAPSHOT: tuple(c.name for c in _LIQUIDATION),
    DataType.BVOL_INDEX: ("calc_time", "symbol"),
    DataType.EOH_SUMMARY: ("date", "hour", "symbol"),
}


def _columns(market: Market, data_type: DataType) -> tuple[Column, ...]:
    if data_type in KLINE_TYPES:
        return _KLINES_COIN if market is Market.FUTURES_CM else _KLINES_QUOTE
    if data_type is DataType.TRADES:
        return {Market.SPOT: _TRADES_SPOT, Market.FUTURES_UM: _TRADES_UM}.get(market, _TRADES_CM)
    if data_type is DataType.AGG_TRADES:
        return _AGG_SPOT if market is Market.SPOT else _AGG_FUTURES
    return {
        DataType.FUNDING_RATE: _FUNDING,
        DataType.BOOK_TICKER: _BOOK_TICKER,
        DataType.BOOK_DEPTH: _BOOK_DEPTH,
        DataType.METRICS: _METRICS,
        DataType.LIQUIDATION_SNAPSHOT: _LIQUIDATION,
        DataType.BVOL_INDEX: _BVOL,
        DataType.EOH_SUMMARY: _EOH,
    }[data_type]


def schema_for(market: Market | str, data_type: DataType | str) -> CsvSchema:
    """The CSV schema of `data_type` in `market`; ArchiveError if it is not published there."""
    market, data_type = parse_market(market), parse_data_type(data_type)
    if data_type not in PUBLISHED[market]:
        published = ", ".join(PUBLISHED[market])
        raise ArchiveError(f"{market} does not publish {data_type}; it has {published}")
    return CsvSchema(market, data_type, _columns(market, data_type), _KEYS[data_type])


def all_schemas() -> list[CsvSchema]:
    """One schema per published (market, data type)."""
    return [schema_for(m, dt) for m, published in PUBLISHED.items() for dt in published]


# -- per-file detection ------------------------------------------------------------------------

MS_PER_SECOND = 1_000
US_PER_SECOND = 1_000_000
# Epochs below 10**14 are milliseconds (13 digits today, until the year 5138); from there to
# 10**17 they are microseconds (16 digits). Anything else is not a Binance epoch.
_US_THRESHOLD = 10**14
_US_LIMIT = 10**17


def detect_time_unit(value: int | str) -> str:
    """'ms' or 'us' for one epoch value, judged by its size (13 vs 16 digits), never by date."""
    number = int(value)
    if 0 <= number < _US_THRESHOLD:
        return "ms"
    if _US_THRESHOLD <= number < _US_LIMIT:
        return "us"
    raise ArchiveError(f"{value!r} is neither a millisecond nor a microsecond epoch")


def looks_like_header(first_line: str) -> bool:
    """True when a CSV's first line is a header row (its first field is a column name).

    Data rows start with a number, a date or a date-time; header rows with an identifier.
    """
    first = first_line.lstrip("\ufeff").split(",", 1)[0].strip().strip('"')
    return bool(first) and (first[0].isalpha() or first[0] == "_")
