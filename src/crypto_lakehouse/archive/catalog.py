"""What the Binance archive publishes: markets, frequencies, data types and kline intervals.

One table (`PUBLISHED`) says which data type exists in which market at which frequency and
whether it has an interval folder; `check()` is the single gate every other module (paths,
discovery, the sample generator) goes through, so an unpublished combination fails the
same way everywhere, with a message that lists what does exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from crypto_lakehouse.errors import ArchiveError


class Market(StrEnum):
    """A top-level folder under `data/` (the value is the path segment)."""

    SPOT = "spot"
    FUTURES_UM = "futures/um"
    FUTURES_CM = "futures/cm"
    OPTION = "option"

    @property
    def is_futures(self) -> bool:
        return self in (Market.FUTURES_UM, Market.FUTURES_CM)


class Frequency(StrEnum):
    """How much time one file covers: one UTC day or one calendar month."""

    DAILY = "daily"
    MONTHLY = "monthly"


class DataType(StrEnum):
    """A data set folder name, spelled exactly as in the archive."""

    KLINES = "klines"
    TRADES = "trades"
    AGG_TRADES = "aggTrades"
    FUNDING_RATE = "fundingRate"
    BOOK_TICKER = "bookTicker"
    BOOK_DEPTH = "bookDepth"
    METRICS = "metrics"
    INDEX_PRICE_KLINES = "indexPriceKlines"
    MARK_PRICE_KLINES = "markPriceKlines"
    PREMIUM_INDEX_KLINES = "premiumIndexKlines"
    LIQUIDATION_SNAPSHOT = "liquidationSnapshot"
    BVOL_INDEX = "BVOLIndex"
    EOH_SUMMARY = "EOHSummary"

    @property
    def has_interval(self) -> bool:
        """Kline-like data sets live in an `{interval}/` sub-folder and name files by it."""
        return self in KLINE_TYPES


KLINE_TYPES = frozenset(
    {
        DataType.KLINES,
        DataType.INDEX_PRICE_KLINES,
        DataType.MARK_PRICE_KLINES,
        DataType.PREMIUM_INDEX_KLINES,
    }
)

# Kline intervals in ascending length. `1mo` is the archive's spelling of one month (a
# case-insensitive file system could not tell `1M` from `1m`).
ALL_INTERVALS: tuple[str, ...] = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
    "1d", "3d", "1w", "1mo",
)  # fmt: skip
_COMMON_INTERVALS = ALL_INTERVALS[1:13]  # 1m .. 1d
SPOT_INTERVALS: tuple[str, ...] = ("1s", *_COMMON_INTERVALS)  # 1s is spot-only
FUTURES_DAILY_INTERVALS: tuple[str, ...] = _COMMON_INTERVALS
FUTURES_MONTHLY_INTERVALS: tuple[str, ...] = (*_COMMON_INTERVALS, "3d", "1w", "1mo")

_BOTH = (Frequency.DAILY, Frequency.MONTHLY)
_DAILY = (Frequency.DAILY,)
_MONTHLY = (Frequency.MONTHLY,)


def _futures(*, coin_margined: bool) -> dict[DataType, tuple[Frequency, ...]]:
    published = {
        DataType.AGG_TRADES: _BOTH,
        DataType.TRADES: _BOTH,
        DataType.KLINES: _BOTH,
        DataType.INDEX_PRICE_KLINES: _BOTH,
        DataType.MARK_PRICE_KLINES: _BOTH,
        DataType.PREMIUM_INDEX_KLINES: _BOTH,
        DataType.BOOK_TICKER: _BOTH,
        DataType.FUNDING_RATE: _MONTHLY,
        DataType.BOOK_DEPTH: _DAILY,
        DataType.METRICS: _DAILY,
    }
    if coin_margined:
        published[DataType.LIQUIDATION_SNAPSHOT] = _DAILY
    return published


PUBLISHED: dict[Market, dict[DataType, tuple[Frequency, ...]]] = {
    Market.SPOT: {
        DataType.AGG_TRADES: _BOTH,
        DataType.TRADES: _BOTH,
        DataType.KLINES: _BOTH,
    },
    Market.FUTURES_UM: _futures(coin_margined=False),
    Market.FUTURES_CM: _futures(coin_margined=True),
    Market.OPTION: {
        DataType.BVOL_INDEX: _DAILY,
        DataType.EOH_SUMMARY: _DAILY,
    },
}


@dataclass(frozen=True)
class Dataset:
    """One published (market, frequency, data type) and the intervals it comes in."""

    market: Market
    frequency: Frequency
    data_type: DataType
    intervals: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.market}/{self.frequency}/{self.data_type}"


def parse_market(value: str) -> Market:
    """`spot`, `futures/um`, `futures/cm`, `option` (also `um`/`cm` as shorthands)."""
    text = value.strip().strip("/")
    text = {"um": "futures/um", "cm": "futures/cm"}.get(text, text)
    try:
        return Market(text)
    except ValueError:
        raise ArchiveError(
            f"unknown market {value!r}; the archive has {', '.join(m.value for m in Market)}"
        ) from None


def parse_frequency(value: str) -> Frequency:
    try:
        return Frequency(value.strip())
    except ValueError:
        raise ArchiveError(f"unknown frequency {value!r}; use daily or monthly") from None


def parse_data_type(value: str) -> DataType:
    """Exact archive spelling, or the same letters in any case (`aggtrades` -> aggTrades)."""
    text = value.strip()
    for member in DataType:
        if member.value == text or member.value.lower() == text.lower():
            return member
    raise ArchiveError(
        f"unknown data type {value!r}; the archive has {', '.join(d.value for d in DataType)}"
    )


def intervals_for(market: Market | str, frequency: Frequency | str) -> tuple[str, ...]:
    """Kline intervals published in `market` at `frequency` (empty for option)."""
    market, frequency = parse_market(market), parse_frequency(frequency)
    if market is Market.SPOT:
        return SPOT_INTERVALS
    if market.is_futures:
        return (
            FUTURES_MONTHLY_INTERVALS if frequency is Frequency.MONTHLY else FUTURES_DAILY_INTERVALS
        )
    return ()


def data_types_for(
    market: Market | str, frequency: Frequency | str | None = None
) -> list[DataType]:
    """Data types published in `market` (at `frequency`, when given), in catalog order."""
    market = parse_market(market)
    wanted = parse_frequency(frequency) if frequency is not None else None
    return [
        data_type
        for data_type, frequencies in PUBLISHED[market].items()
        if wanted is None or wanted in frequencies
    ]


def check(
    market: Market | str,
    frequency: Frequency | str,
    data_type: DataType | str,
    interval: str | None = None,
) -> Dataset:
    """Return the `Dataset` if Binance publishes this combination, else raise ArchiveError.

    The error names what does exist: the markets and frequencies of the data type, or the
    intervals of the market, so the caller can correct the request.
    """
    market, frequency = parse_market(market), parse_frequency(frequency)
    data_type = parse_data_type(data_type)
    published = PUBLISHED[market].get(data_type)
    if published is None or frequency not in published:
        raise ArchiveError(
            f"{data_type} is not published for {market} {frequency}; it exists for "
            f"{_where(data_type)}. {market} {frequency} has: "
            f"{', '.join(data_types_for(market, frequency)) or 'nothing'}"
        )
    if not data_type.has_interval:
        if interval is not None:
            raise ArchiveError(f"{data_type} has no intervals (got {interval!r})")
        return Dataset(market, frequency, data_type)
    allowed = intervals_for(market, frequency)
    if interval is not None and interval not in allowed:
        raise ArchiveError(
            f"interval {interval!r} is not published for {market} {frequency} {data_type}; "
            f"it has {', '.join(allowed)}{_interval_hint(interval)}"
        )
    return Dataset(market, frequency, data_type, (interval,) if interval else allowed)


def datasets(markets: list[Market | str] | None = None) -> list[Dataset]:
    """Every published dataset (with all its intervals), optionally for some markets only."""
    chosen = [parse_market(m) for m in markets] if markets else list(Market)
    found = []
    for market in chosen:
        for data_type, frequencies in PUBLISHED[market].items():
            for frequency in frequencies:
                found.append(check(market, frequency, data_type))
    return found


def _where(data_type: DataType) -> str:
    places = [
        f"{market} {'+'.join(f.value for f in frequencies)}"
        for market, published in PUBLISHED.items()
        for dt, frequencies in published.items()
        if dt is data_type
    ]
    return ", ".join(places)


def _interval_hint(interval: str) -> str:
    if interval == "1M":
        return " (one month is spelled '1mo')"
    if interval == "1s":
        return " (1s klines are spot-only)"
    if interval in ("3d", "1w", "1mo"):
        return " (3d, 1w and 1mo are futures monthly only)"
    return ""
