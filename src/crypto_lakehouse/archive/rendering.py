"""Render one archive file's CSV from a `Simulation`, in Binance's layout and style.

Trades, aggTrades, bookTicker and every kline type come from the same trade stream, so
they agree; the other data sets (`side_data`) follow the stream's price level.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

from crypto_lakehouse.archive import side_data
from crypto_lakehouse.archive.catalog import KLINE_TYPES, DataType, Market
from crypto_lakehouse.archive.paths import ArchiveFile
from crypto_lakehouse.archive.simulation import DAY_US, Simulation, Trade, aggregate, day_start_us
from crypto_lakehouse.archive.style import Style, fixed, period_days, quote_amount


def render(file: ArchiveFile, sim: Simulation, *, revision: int = 1) -> bytes:
    """The CSV bytes of `file` (header row included where Binance publishes one)."""
    style = Style(file, sim)
    first, last = period_days(file)
    if file.data_type in KLINE_TYPES:
        rows = _klines(file, sim, style, first, last)
    elif file.data_type is DataType.TRADES:
        rows = _trades(file, sim, style, sim.trades(first, last))
    elif file.data_type is DataType.AGG_TRADES:
        rows = _agg_trades(file, style, sim.trades(first, last))
    elif file.data_type is DataType.BOOK_TICKER:
        rows = _book_ticker(sim, style, sim.trades(first, last))
    else:
        rows = side_data.rows(file, sim, style, revision=revision)
    schema = file.schema
    if schema.publishes_header(file.period):
        rows = [schema.header_line or "", *rows]
    return ("\n".join(rows) + "\n").encode() if rows else b""


def _trades(file: ArchiveFile, sim: Simulation, s: Style, trades: list[Trade]) -> list[str]:
    rows = []
    spot = file.market is Market.SPOT
    for t in trades:
        row = f"{t.id},{s.price(t.price)},{s.qty(t.qty)},{s.quote(quote_amount(sim, t))},"
        row += f"{s.time(t.time_us)},{s.flag(t.buyer_maker)}"
        rows.append(row + f",{s.true}" if spot else row)
    return rows


def _agg_trades(file: ArchiveFile, s: Style, trades: list[Trade]) -> list[str]:
    rows = []
    spot = file.market is Market.SPOT
    i = 0
    while i < len(trades):
        j = i
        while j + 1 < len(trades) and trades[j + 1].agg_id == trades[i].agg_id:
            j += 1
        first, qty = trades[i], sum(t.qty for t in trades[i : j + 1])
        row = f"{first.agg_id},{s.price(first.price)},{s.qty(qty)},{first.id},{trades[j].id},"
        row += f"{s.time(first.time_us)},{s.flag(first.buyer_maker)}"
        rows.append(row + f",{s.true}" if spot else row)
        i = j + 1
    return rows


def _book_ticker(sim: Simulation, s: Style, trades: list[Trade]) -> list[str]:
    rows = []
    seen = set()
    for t in trades:
        if t.agg_id in seen:
            continue
        seen.add(t.agg_id)
        spread = 1 + t.agg_id % 3
        bid, ask = (t.price, t.price + spread) if t.buyer_maker else (t.price - spread, t.price)
        update_id = t.agg_id * 7 + 1_000_000_000
        bid_qty, ask_qty = t.qty * (1 + t.id % 5), t.qty * (1 + t.id % 4)
        event = t.time_us // 1000 + 1 + t.id % 5
        rows.append(
            f"{update_id},{s.price(bid)},{s.qty(bid_qty)},{s.price(ask)},{s.qty(ask_qty)},"
            f"{t.time_us // 1000},{event}"
        )
    return rows


def _klines(file: ArchiveFile, sim: Simulation, s: Style, first: date, last: date) -> list[str]:
    interval = file.interval or ""
    # A weekly or 3-day kline that opens inside the period may close after it.
    until = last + timedelta(days=7 if interval in ("3d", "1w") else 0)
    start_us, end_us = day_start_us(first), day_start_us(last) + DAY_US
    kind = file.data_type
    samples = _samples(sim, kind, first, until)
    bars = [b for b in aggregate(samples, interval) if start_us <= b.open_us < end_us]
    rows = []
    for b in bars:
        if kind is DataType.KLINES:
            volumes = (s.qty(b.volume), s.quote(b.quote), s.qty(b.taker_volume))
            taker_quote = s.quote(b.taker_quote)
        else:
            volumes, taker_quote = ("0", "0", "0"), "0"
        price = s.price if kind is not DataType.PREMIUM_INDEX_KLINES else _premium
        rows.append(
            f"{s.time(b.open_us)},{price(b.open)},{price(b.high)},{price(b.low)},"
            f"{price(b.close)},{volumes[0]},{s.close_time(b.close_us)},{volumes[1]},"
            f"{b.count},{volumes[2]},{taker_quote},0"
        )
    return rows


@lru_cache(maxsize=16)
def _samples(
    sim: Simulation, kind: DataType, first: date, last: date
) -> list[tuple[int, int, int, int, bool]]:
    """Kline inputs, cached: one period's files of every interval share them."""
    trades = sim.trades(first, last)
    if kind is DataType.KLINES:
        return [
            (t.time_us, t.price, t.qty, quote_amount(sim, t), not t.buyer_maker) for t in trades
        ]
    return [(t.time_us, _derived_price(kind, t), 0, 0, False) for t in trades]


# Premium index values are tiny ratios; they are kept as integers in units of 1e-8.
def _derived_price(kind: DataType, t: Trade) -> int:
    if kind is DataType.MARK_PRICE_KLINES:
        return t.price + (t.id % 7) - 3
    if kind is DataType.INDEX_PRICE_KLINES:
        return t.price - (t.id % 5) + 2
    return (t.id % 2001) - 1000  # premium: +-0.00001000


def _premium(value: int) -> str:
    return fixed(value, 8)
