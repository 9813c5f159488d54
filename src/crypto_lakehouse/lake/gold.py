"""Gold: answers computed from silver with DuckDB and stored as Iceberg tables.

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

Each build recomputes the tables from silver and replaces them in one snapshot each. SQL
here is assembled from our own table and column names only, never from user input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from crypto_lakehouse.archive.catalog import ALL_INTERVALS, DataType, Market
from crypto_lakehouse.archive.schemas import schema_for
from crypto_lakehouse.lake.query import QueryEngine
from crypto_lakehouse.lake.tables import table_slug
from crypto_lakehouse.lake.warehouse import GOLD, SILVER, Warehouse

TARGETS = {"1h": 3600, "1d": 86400}
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
PRICE_TOLERANCE = 1e-9
SUM_TOLERANCE = 1e-6


def interval_seconds(interval: str) -> int | None:
    """Seconds in a fixed kline interval; None for `1mo` (months differ in length)."""
    number, unit = interval[:-1], interval[-1]
    if interval.endswith("mo") or unit not in _UNIT_SECONDS:
        return None
    return int(number) * _UNIT_SECONDS[unit]


@dataclass
class GoldResult:
    """Row counts per gold table and the resampling check's findings."""

    rows: dict[str, int] = field(default_factory=dict)
    checked: int = 0
    mismatches: list[dict] = field(default_factory=list)


def _intervals_sql() -> str:
    pairs = [(i, interval_seconds(i)) for i in ALL_INTERVALS if interval_seconds(i)]
    return ", ".join(f"('{i}', {s})" for i, s in pairs)


def _resample_sql(source: str, market: Market, label: str, seconds: int) -> str:
    names = schema_for(market, DataType.KLINES).names
    volume, quote, count, taker, taker_quote = names[5], names[7], names[8], names[9], names[10]
    return f"""
    WITH intervals(interval, seconds) AS (VALUES {_intervals_sql()}),
    present AS (
        SELECT DISTINCT k.symbol, k.interval, i.seconds
        FROM {source} k JOIN intervals i USING (interval) WHERE i.seconds < {seconds}
    ),
    finest AS (
        SELECT symbol, arg_min(interval, seconds) AS interval, min(seconds) AS seconds
        FROM present GROUP BY symbol
    )
    SELECT
        '{market.value}' AS market, k.symbol, '{label}' AS interval,
        f.interval AS source_interval,
        time_bucket(INTERVAL '{seconds} seconds', k.open_time) AS open_time,
        arg_min(k.open, k.open_time) AS open, max(k.high) AS high, min(k.low) AS low,
        arg_max(k.close, k.open_time) AS close,
        sum(k.{volume}) AS volume, sum(k.{quote}) AS {quote}, sum(k.{count}) AS count,
        sum(k.{taker}) AS {taker}, sum(k.{taker_quote}) AS {taker_quote},
        count(*) AS bars, any_value({seconds} // f.seconds) AS expected_bars
    FROM {source} k JOIN finest f ON k.symbol = f.symbol AND k.interval = f.interval
    GROUP BY k.symbol, f.interval, time_bucket(INTERVAL '{seconds} seconds', k.open_time)
    """  # noqa: S608 - table and column names are ours, never user input


def _with_flags(sql: str) -> str:
    return f"""
    SELECT *, bars = expected_bars AS complete, CAST(open_time AS DATE) AS date
    FROM ({sql}) ORDER BY symbol, open_time
    """  # noqa: S608 - table and column names are ours, never user input


def _check_sql(resampled: str, source: str, market: Market, label: str) -> str:
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
           {", ".join(f"binance_{c}" for c in prices + sums)}
    FROM (
        SELECT g.market, g.symbol, g.interval, g.source_interval, g.open_time,
               concat_ws(',', {", ".join(cases)}) AS mismatched,
               {", ".join(f"g.{c} AS ours_{c}" for c in prices + sums)}, {theirs}
        FROM ({resampled}) g
        JOIN {source} b
          ON b.symbol = g.symbol AND b.interval = '{label}' AND b.open_time = g.open_time
    ) ORDER BY symbol, open_time
    """  # noqa: S608 - table and column names are ours, never user input


def _funding_sql(source: str) -> str:
    return f"""
    SELECT market, symbol, date, count(*) AS settlements,
           sum(last_funding_rate) AS daily_rate, avg(last_funding_rate) AS mean_rate,
           min(last_funding_rate) AS min_rate, max(last_funding_rate) AS max_rate,
           max(funding_interval_hours) AS funding_interval_hours
    FROM {source} GROUP BY market, symbol, date
    """  # noqa: S608 - table and column names are ours, never user input


def _trades_sql(source: str, market: Market) -> str:
    turnover = schema_for(market, DataType.TRADES).names[3]  # quote_qty, or base_qty (COIN-M)
    return f"""
    SELECT market, symbol, date, count(*) AS trades, sum(qty) AS volume,
           sum({turnover}) AS turnover, sum(price * qty) / nullif(sum(qty), 0) AS vwap,
           arg_min(price, id) AS first_price, arg_max(price, id) AS last_price,
           min(price) AS low, max(price) AS high,
           sum(CASE WHEN is_buyer_maker THEN qty ELSE 0 END) AS sell_volume
    FROM {source} GROUP BY market, symbol, date
    """  # noqa: S608 - table and column names are ours, never user input


def build_gold(warehouse: Warehouse) -> GoldResult:
    """Recompute every gold table from silver; tables without sources are left alone."""
    result = GoldResult()
    silver = set(warehouse.tables(SILVER))
    with QueryEngine(warehouse) as engine:
        resampled: dict[str, list[pa.Table]] = {label: [] for label in TARGETS}
        checks: list[pa.Table] = []
        funding: list[pa.Table] = []
        trades: list[pa.Table] = []
        for market in Market:
            klines = f"{SILVER}.{table_slug(market, DataType.KLINES)}"
            if klines in silver:
                for label, seconds in TARGETS.items():
                    sql = _resample_sql(klines, market, label, seconds)
                    resampled[label].append(engine.sql(_with_flags(sql)))
                    checks.append(engine.sql(_check_sql(_with_flags(sql), klines, market, label)))
            rates = f"{SILVER}.{table_slug(market, DataType.FUNDING_RATE)}"
            if rates in silver:
                funding.append(engine.sql(_funding_sql(rates)))
            ticks = f"{SILVER}.{table_slug(market, DataType.TRADES)}"
            if ticks in silver:
                trades.append(engine.sql(_trades_sql(ticks, market)))
    outputs = {f"klines_{label}": parts for label, parts in resampled.items()}
    outputs.update(kline_checks=checks, funding_daily=funding, trades_daily=trades)
    for name, parts in outputs.items():
        if not parts:
            continue
        data = pa.concat_tables(parts, promote_options="permissive")
        warehouse.replace_all(f"{GOLD}.{name}", data, [])
        result.rows[f"{GOLD}.{name}"] = data.num_rows
    if checks:
        compared = pa.concat_tables(checks, promote_options="permissive")
        result.checked = compared.num_rows
        bad = compared.filter(pa.compute.invert(compared.column("ok")))
        result.mismatches = bad.select(
            ["market", "symbol", "interval", "open_time", "mismatched"]
        ).to_pylist()
    return result
