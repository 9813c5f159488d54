"""What each gold table holds, as DuckDB SQL over one group of silver rows.

- `gold.klines_1h`, `gold.klines_1d`: OHLCV resampled from the finest kline interval present
  per (market, symbol) below the target; `bars`/`expected_bars`/`complete` say whether a
  bucket had a source bar for every slot (Binance omits bars without trades, so sparse
  markets are never "complete"; the check below does not depend on it).
- `gold.kline_checks`: every resampled bar that Binance also published at that interval,
  compared field by field (prices exactly up to float noise, sums to 1e-6);
  `ok = false` rows are mismatches, which `build_gold` reports.
- `gold.funding_daily`: per symbol and UTC day, the settlements, summed (the day's cost)
  and mean/min/max funding rate.
- `gold.trades_daily`: per symbol and UTC day, trade count, volume, turnover, VWAP, range.

The SQL reads `src` (the silver rows of the partitions being computed) and, for klines,
`finest_<target>` (symbol -> the interval to resample from); the builder (`lake/gold.py`)
registers both. Every row carries `date`, its UTC day, and `month`, the first day of that
month: a 1h or 1d bucket never crosses midnight UTC, so a row depends only on silver rows
of its own day.

Floating-point sums are taken as exact decimals (`_sum`): a float sum depends on the order
rows arrive in, which changes with the plan (threads, joins, how many partitions a scan
covers), and an incremental build must give the very rows a full one gives. Binance's
values are decimals of at most 8 places, so the decimal sum is also the true one.
SQL is assembled from our own table and column names only, never from user input.
"""

from __future__ import annotations

from dataclasses import dataclass

from crypto_lakehouse.archive.catalog import ALL_INTERVALS, PUBLISHED, DataType, Market
from crypto_lakehouse.archive.schemas import schema_for
from crypto_lakehouse.lake.warehouse import GOLD

TARGETS = {"1h": 3600, "1d": 86400}
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
PRICE_TOLERANCE = 1e-9
SUM_TOLERANCE = 1e-6
SUM_DECIMALS = 10  # places kept when summing (Binance publishes at most 8)


def interval_seconds(interval: str) -> int | None:
    """Seconds in a fixed kline interval; None for `1mo` (months differ in length)."""
    number, unit = interval[:-1], interval[-1]
    if interval.endswith("mo") or unit not in _UNIT_SECONDS:
        return None
    return int(number) * _UNIT_SECONDS[unit]


FIXED_INTERVALS = [(i, s) for i in ALL_INTERVALS if (s := interval_seconds(i))]


def _sum(expr: str) -> str:
    """An order-independent sum of a DOUBLE expression: exact in decimal, then DOUBLE."""
    return f"CAST(sum(CAST({expr} AS DECIMAL(38, {SUM_DECIMALS}))) AS DOUBLE)"


# -- SQL over `src` (the group's silver rows) and `finest_<target>` (symbol -> interval) --------


def _resample_sql(market: Market, label: str, seconds: int) -> str:
    names = schema_for(market, DataType.KLINES).names
    volume, quote, count, taker, taker_quote = names[5], names[7], names[8], names[9], names[10]
    bucket = f"time_bucket(INTERVAL '{seconds} seconds', k.open_time)"
    return f"""
    SELECT
        '{market.value}' AS market, k.symbol, '{label}' AS interval,
        f.interval AS source_interval, {bucket} AS open_time,
        arg_min(k.open, k.open_time) AS open, max(k.high) AS high, min(k.low) AS low,
        arg_max(k.close, k.open_time) AS close,
        {_sum(f"k.{volume}")} AS volume, {_sum(f"k.{quote}")} AS {quote},
        sum(k.{count}) AS count, {_sum(f"k.{taker}")} AS {taker},
        {_sum(f"k.{taker_quote}")} AS {taker_quote},
        count(*) AS bars, any_value({seconds} // f.seconds) AS expected_bars
    FROM src k JOIN finest_{label} f ON k.symbol = f.symbol AND k.interval = f.interval
    GROUP BY k.symbol, f.interval, {bucket}
    """  # noqa: S608 - table and column names are ours, never user input


def _with_flags(sql: str) -> str:
    return f"""
    SELECT *, bars = expected_bars AS complete, CAST(open_time AS DATE) AS date,
           CAST(date_trunc('month', open_time) AS DATE) AS month
    FROM ({sql})
    """  # noqa: S608 - table and column names are ours, never user input


def _check_sql(market: Market, label: str, seconds: int) -> str:
    names = schema_for(market, DataType.KLINES).names
    prices = ["open", "high", "low", "close"]
    sums = [names[5], names[7], names[8], names[9], names[10]]
    cases = [
        f"CASE WHEN abs(g.{c} - b.{c}) > {PRICE_TOLERANCE} * greatest(abs(b.{c}), 1) THEN '{c}' END"
        for c in prices
    ] + [
        f"CASE WHEN abs(g.{c} - b.{c}) > {SUM_TOLERANCE} * greatest(abs(b.{c}), 1) THEN '{c}' END"
        for c in sums
    ]
    theirs = ", ".join(f"b.{c} AS binance_{c}" for c in prices + sums)
    return f"""
    SELECT market, symbol, interval, source_interval, open_time, mismatched,
           mismatched = '' AS ok, {", ".join(f"ours_{c}" for c in prices + sums)},
           {", ".join(f"binance_{c}" for c in prices + sums)},
           CAST(open_time AS DATE) AS date, CAST(date_trunc('month', open_time) AS DATE) AS month
    FROM (
        SELECT g.market, g.symbol, g.interval, g.source_interval, g.open_time,
               concat_ws(',', {", ".join(cases)}) AS mismatched,
               {", ".join(f"g.{c} AS ours_{c}" for c in prices + sums)}, {theirs}
        FROM ({_resample_sql(market, label, seconds)}) g
        JOIN src b ON b.symbol = g.symbol AND b.interval = '{label}' AND b.open_time = g.open_time
    )
    """  # noqa: S608 - table and column names are ours, never user input


def _funding_sql(market: Market) -> str:
    rate = _sum("last_funding_rate")
    return f"""
    SELECT market, symbol, date, count(*) AS settlements,
           {rate} AS daily_rate, {rate} / nullif(count(last_funding_rate), 0) AS mean_rate,
           min(last_funding_rate) AS min_rate, max(last_funding_rate) AS max_rate,
           max(funding_interval_hours) AS funding_interval_hours,
           CAST(date_trunc('month', date) AS DATE) AS month
    FROM src GROUP BY market, symbol, date
    """  # noqa: S608 - table and column names are ours, never user input


def _trades_sql(market: Market) -> str:
    turnover = schema_for(market, DataType.TRADES).names[3]  # quote_qty, or base_qty (COIN-M)
    return f"""
    SELECT market, symbol, date, count(*) AS trades, {_sum("qty")} AS volume,
           {_sum(turnover)} AS turnover,
           {_sum("price * qty")} / nullif({_sum("qty")}, 0) AS vwap,
           arg_min(price, id) AS first_price, arg_max(price, id) AS last_price,
           min(price) AS low, max(price) AS high,
           {_sum("CASE WHEN is_buyer_maker THEN qty ELSE 0 END")} AS sell_volume,
           CAST(date_trunc('month', date) AS DATE) AS month
    FROM src GROUP BY market, symbol, date
    """  # noqa: S608 - table and column names are ours, never user input


@dataclass(frozen=True)
class GoldTable:
    """One gold table: its silver source, the kline targets whose source interval its rows
    depend on, its sort key, and its SQL for one market."""

    name: str
    data_type: DataType
    targets: tuple[str, ...]
    key: tuple[str, ...]

    @property
    def identifier(self) -> str:
        return f"{GOLD}.{self.name}"

    def markets(self) -> list[Market]:
        return [m for m in Market if self.data_type in PUBLISHED[m]]

    def sql(self, market: Market) -> str:
        if self.name == "kline_checks":
            parts = [_check_sql(market, t, TARGETS[t]) for t in self.targets]
            return " UNION ALL ".join(f"({p})" for p in parts)
        if self.data_type is DataType.KLINES:
            (label,) = self.targets
            return _with_flags(_resample_sql(market, label, TARGETS[label]))
        if self.data_type is DataType.FUNDING_RATE:
            return _funding_sql(market)
        return _trades_sql(market)


_KLINE_KEY = ("symbol", "market", "open_time")
GOLD_TABLES = (
    GoldTable("klines_1h", DataType.KLINES, ("1h",), _KLINE_KEY),
    GoldTable("klines_1d", DataType.KLINES, ("1d",), _KLINE_KEY),
    GoldTable(
        "kline_checks",
        DataType.KLINES,
        tuple(TARGETS),
        ("symbol", "market", "interval", "open_time"),
    ),
    GoldTable("funding_daily", DataType.FUNDING_RATE, (), ("symbol", "market", "date")),
    GoldTable("trades_daily", DataType.TRADES, (), ("symbol", "market", "date")),
)
