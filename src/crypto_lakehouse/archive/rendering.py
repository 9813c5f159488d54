"""Render one archive file's CSV from a `Simulation`, in Binance's layout and style.

Trades, aggTrades, bookTicker and every kline type come from the same trade stream, so
they agree; the other data sets (`side_data`) follow the stream's price level.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import date, timedelta
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc

from crypto_lakehouse.archive import side_data
from crypto_lakehouse.archive.catalog import KLINE_TYPES, DataType, Market
from crypto_lakehouse.archive.paths import ArchiveFile
from crypto_lakehouse.archive.simulation import DAY_US, Simulation, Trade, aggregate, day_start_us
from crypto_lakehouse.archive.style import Style, fixed, period_days, quote_amount
from crypto_lakehouse.errors import ArchiveError

_BULK_CHUNK = 200_000
_BULK_ID_ORIGIN = date(2017, 1, 1)
_BULK_IDS_PER_DAY = 100_000_000  # ids of one day never meet the next day's


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


# -- large files ----------------------------------------------------------------------------


def bulk_trades(file: ArchiveFile, sim: Simulation, rows: int) -> Iterator[bytes]:
    """A busy day's trades CSV (spot or USD-M) in pieces of 200,000 rows, in Binance's style.

    Why: the per-trade simulation costs tens of microseconds a row, minutes for a busy
    day; these rows come from Arrow kernels over the trade ids instead (a random walk from
    the simulation's price level for the day, quantities and sides from a hash of the id,
    times spread evenly over the UTC day), so a million rows take about a second. They do
    not agree with the symbol's simulated klines; they stand for size, not for content.
    Raises ArchiveError for other data types and for COIN-M (base-asset columns).
    """
    if file.data_type is not DataType.TRADES or file.market not in (Market.SPOT, Market.FUTURES_UM):
        raise ArchiveError(f"bulk rows exist for spot and USD-M trades only, not {file.key}")
    style = Style(file, sim)
    inst = sim.instrument
    day = file.period
    start_us = day_start_us(day)
    first_id = (day - _BULK_ID_ORIGIN).days * _BULK_IDS_PER_DAY + 1
    salt = zlib.crc32(f"{sim.seed}:{file.key}".encode())
    price = max(1, round(sim.price_level(day) * 10**inst.price_decimals))
    if file.schema.publishes_header(day):
        yield ((file.schema.header_line or "") + "\n").encode()
    for low in range(0, rows, _BULK_CHUNK):
        index = pa.array(range(low, min(rows, low + _BULK_CHUNK)), pa.int64())
        mixed = pc.bit_wise_and(pc.add(pc.multiply(index, 2654435761), salt), 0x7FFFFFFF)
        step = pc.subtract(pc.bit_wise_and(mixed, 1), pc.bit_wise_and(pc.shift_right(mixed, 1), 1))
        prices = pc.max_element_wise(pc.add(pc.cumulative_sum(step), price), 1)
        price = prices[-1].as_py()
        lots = pc.add(pc.bit_wise_and(pc.shift_right(mixed, 2), 2047), 1)
        maker = pc.equal(pc.bit_wise_and(pc.shift_right(mixed, 13), 1), 1)
        times = pc.add(pc.divide(pc.multiply(index, DAY_US), rows), start_us)
        if not style.micro:
            times = pc.divide(times, 1000)
        scale = inst.price_decimals + inst.qty_decimals
        columns = [
            pc.cast(pc.add(index, first_id), pa.string()),
            _fixed_text(prices, inst.price_decimals, style.spot),
            _fixed_text(lots, inst.qty_decimals, style.spot),
            _fixed_text(pc.multiply(prices, lots), scale, style.spot),
            pc.cast(times, pa.string()),
            pc.if_else(maker, style.true, style.false),
        ]
        if style.spot:
            columns.append(pa.repeat(pa.scalar(style.true), len(index)))
        lines = pc.binary_join_element_wise(*columns, ",")
        lines = pc.binary_join_element_wise(lines, "", "\n")  # "line" + "\n" + ""
        _, offsets_buffer, data = lines.buffers()
        offsets = pa.Array.from_buffers(
            pa.int32(), len(lines) + 1, [None, offsets_buffer], offset=lines.offset
        )
        start, end = offsets[0].as_py(), offsets[-1].as_py()
        yield data.slice(start, end - start).to_pybytes()


def _fixed_text(values: pa.Array, decimals: int, spot: bool) -> pa.Array:
    """`fixed()` over an array of scaled integers (spot prints 8 decimals)."""
    if spot:
        values = pc.multiply(values, 10 ** (8 - decimals))
        decimals = 8
    if decimals == 0:
        return pc.cast(values, pa.string())
    unit = 10**decimals
    whole = pc.divide(values, unit)
    fraction = pc.subtract(values, pc.multiply(whole, unit))
    return pc.binary_join_element_wise(
        pc.cast(whole, pa.string()),
        pc.utf8_lpad(pc.cast(fraction, pa.string()), decimals, "0"),
        ".",
    )
