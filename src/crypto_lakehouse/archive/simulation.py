"""A deterministic simulated market: one trade stream per (market, symbol, day).

The sample archive is rendered from this, so every file about one symbol-day agrees with
the others: aggTrades group the trades, klines of every interval summarise them (and so
summarise each other), mark/index/premium klines follow the same prices. Prices and
quantities are integers (ticks and lots) until rendering, so sums are exact.

The same seed gives the same stream on any machine: each day has its own
`random.Random` seeded from a string, independent of the order days are asked for.
"""

from __future__ import annotations

import calendar
import random
import zlib
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import compress

from crypto_lakehouse.archive.catalog import Market
from crypto_lakehouse.archive.schemas import SPOT_MICROSECONDS_SINCE

US = 1_000_000
DAY_US = 86_400 * US
_EPOCH = date(1970, 1, 1)
_ID_ORIGIN = date(2017, 1, 1)
_FIXED_SECONDS = {
    "1s": 1, "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800,
    "1h": 3600, "2h": 7200, "4h": 14400, "6h": 21600, "8h": 28800, "12h": 43200,
    "1d": 86400, "3d": 3 * 86400, "1w": 7 * 86400,
}  # fmt: skip
_WEEK_OFFSET_US = 4 * DAY_US  # 1970-01-01 was a Thursday; weekly klines open on Mondays
_KNOWN_BASES = {
    "BTC": 60_000.0, "ETH": 3_000.0, "BNB": 500.0, "SOL": 150.0, "XRP": 0.6,
    "ADA": 0.5, "DOGE": 0.12, "XMR": 160.0, "BNX": 90.0, "LTC": 80.0,
}  # fmt: skip


def day_start_us(day: date) -> int:
    return (day - _EPOCH).days * DAY_US


def us_to_day(time_us: int) -> date:
    return _EPOCH + timedelta(days=time_us // DAY_US)


def interval_start(time_us: int, interval: str) -> int:
    """Open time (us) of the `interval` kline containing `time_us` (UTC, Binance alignment)."""
    if interval == "1mo":
        moment = datetime.fromtimestamp(time_us // US, tz=UTC)
        return day_start_us(date(moment.year, moment.month, 1))
    size = _FIXED_SECONDS[interval] * US
    if interval == "1w":
        return (time_us - _WEEK_OFFSET_US) // size * size + _WEEK_OFFSET_US
    return time_us // size * size


def interval_end(start_us: int, interval: str) -> int:
    """Open time of the next kline (the close time is this minus one time unit)."""
    if interval == "1mo":
        first = us_to_day(start_us)
        days = calendar.monthrange(first.year, first.month)[1]
        return start_us + days * DAY_US
    return start_us + _FIXED_SECONDS[interval] * US


@dataclass(frozen=True)
class Instrument:
    """How one symbol's numbers look: price tick and lot decimals, COIN-M contract size."""

    symbol: str
    base_price: float
    price_decimals: int
    qty_decimals: int
    contract_usd: int | None = None  # COIN-M: USD face value of one contract


def instrument(market: Market, symbol: str) -> Instrument:
    asset = symbol.split("_", 1)[0]
    for quote in ("USDT", "USD", "BTC"):
        if asset.endswith(quote) and len(asset) > len(quote):
            asset, quote_asset = asset[: -len(quote)], quote
            break
    else:
        quote_asset = "USDT"
    asset = asset.replace("BVOL", "")
    base = _KNOWN_BASES.get(asset, 1.0 + zlib.crc32(asset.encode()) % 5000 / 100)
    if quote_asset == "BTC":
        base = base / _KNOWN_BASES["BTC"]
    # Tick and lot sizes in the style of real pairs; price + lot decimals stay <= 8 so
    # quote amounts print exactly.
    price_decimals = 2 if base >= 100 else 4 if base >= 1 else 5
    qty_decimals = 3 if base >= 100 else 1
    if base >= 10_000 and market is Market.SPOT:
        qty_decimals = 5
    contract = (100 if asset == "BTC" else 10) if market is Market.FUTURES_CM else None
    return Instrument(symbol, base, price_decimals, 0 if contract else qty_decimals, contract)


@dataclass(frozen=True, slots=True)
class Trade:
    id: int
    agg_id: int
    time_us: int
    price: int  # ticks: price * 10**price_decimals
    qty: int  # lots: qty * 10**qty_decimals (COIN-M: contracts)
    buyer_maker: bool


class Simulation:
    """The trade stream of one (market, symbol); days are generated on demand and cached."""

    def __init__(
        self,
        seed: int,
        market: Market,
        symbol: str,
        *,
        orders_per_day: int = 48,
        busy_days: frozenset[date] | None = None,
        quiet_orders_per_day: int | None = None,
    ) -> None:
        self.seed = seed
        self.market = market
        self.symbol = symbol
        self.instrument = instrument(market, symbol)
        self.orders_per_day = orders_per_day
        # Days outside `busy_days` (when given) trade less: monthly files stay small.
        self.busy_days = busy_days
        self.quiet_orders_per_day = quiet_orders_per_day or orders_per_day
        self.day = lru_cache(maxsize=1024)(self._day)

    def rng(self, *parts: object) -> random.Random:
        """An independent generator for one purpose (a day, a data set, a revision)."""
        return random.Random(":".join(map(str, (self.seed, self.market, self.symbol, *parts))))

    def price_level(self, day: date) -> float:
        """The day's opening price: a slow deterministic wave around the base price."""
        n = (day - _ID_ORIGIN).days
        wobble = self.rng("level", day).uniform(-0.01, 0.01)
        return self.instrument.base_price * (1 + 0.15 * _wave(n / 37.0) + wobble)

    def milliseconds_only(self, day: date) -> bool:
        return self.market is not Market.SPOT or day < SPOT_MICROSECONDS_SINCE

    def _day(self, day: date) -> tuple[Trade, ...]:
        rng = self.rng("trades", day)
        inst = self.instrument
        scale = 10**inst.price_decimals
        price = max(1, round(self.price_level(day) * scale))
        step = max(1.0, price * 0.0008)
        start = day_start_us(day)
        busy = self.busy_days is None or day in self.busy_days
        orders = self.orders_per_day if busy else self.quiet_orders_per_day
        times = sorted(rng.randrange(DAY_US) for _ in range(orders))
        if self.milliseconds_only(day):
            times = [t - t % 1000 for t in times]
        trade_id = (day - _ID_ORIGIN).days * 1_000_000 + 1
        agg_id = (day - _ID_ORIGIN).days * 400_000 + 1
        trades = []
        for offset in times:
            price = max(1, price + round(rng.gauss(0, step)))
            buyer_maker = rng.random() < 0.5
            for _ in range(rng.choice((1, 1, 1, 2, 3))):
                qty = rng.randint(1, 50) if inst.contract_usd else rng.randint(1, 2000)
                trades.append(Trade(trade_id, agg_id, start + offset, price, qty, buyer_maker))
                trade_id += 1
            agg_id += 1
        return tuple(trades)

    def trades(self, first: date, last: date) -> list[Trade]:
        """Every trade from the start of `first` to the end of `last` (inclusive), in order."""
        found: list[Trade] = []
        day = first
        while day <= last:
            found.extend(self.day(day))
            day += timedelta(days=1)
        return found


def _wave(x: float) -> float:
    # A cheap smooth periodic function (no math import needed for a triangle-ish wave).
    frac = x - int(x)
    return 4 * frac * (1 - frac) - 0.5


@dataclass(frozen=True, slots=True)
class Bar:
    """One kline in exact integers; `quote` is price*qty (or base units for COIN-M)."""

    open_us: int
    close_us: int  # next open time; the file prints this minus one time unit
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote: int
    count: int
    taker_volume: int
    taker_quote: int


def aggregate(samples: list[tuple[int, int, int, int, bool]], interval: str) -> list[Bar]:
    """Klines from time-ordered (time_us, price, volume, quote, taker_buy) samples.

    One bar per non-empty bucket: Binance writes no kline for an interval without trades.
    Works column-wise on slices so the inner loops run in C.
    """
    if not samples:
        return []
    times, prices, volumes, quotes, takers = (list(c) for c in zip(*samples, strict=True))
    if interval == "1mo":
        month_of_day: dict[int, int] = {}
        starts = []
        for t in times:
            day = t // DAY_US
            if day not in month_of_day:
                month_of_day[day] = interval_start(t, interval)
            starts.append(month_of_day[day])
    else:
        size = _FIXED_SECONDS[interval] * US
        offset = _WEEK_OFFSET_US if interval == "1w" else 0
        starts = [t - (t - offset) % size for t in times]
    bounds = [i for i in range(1, len(starts)) if starts[i] != starts[i - 1]]
    bars = []
    for lo, hi in zip([0, *bounds], [*bounds, len(starts)], strict=True):
        window = prices[lo:hi]
        vol, quote = volumes[lo:hi], quotes[lo:hi]
        flags = takers[lo:hi]
        bars.append(
            Bar(
                starts[lo],
                interval_end(starts[lo], interval),
                window[0],
                max(window),
                min(window),
                window[-1],
                sum(vol),
                sum(quote),
                hi - lo,
                sum(compress(vol, flags)),
                sum(compress(quote, flags)),
            )
        )
    return bars
