"""How Binance prints numbers, flags and times in archive CSVs, per market and period.

Copied from real files: spot prints prices and quantities with 8 decimals and
`True`/`False`; futures print tick/lot decimals and `true`/`false`; spot epochs are
microseconds from 2025-01-01 (milliseconds before), futures epochs milliseconds.
"""

from __future__ import annotations

import calendar
from datetime import date
from functools import lru_cache

from crypto_lakehouse.archive.catalog import Frequency, Market
from crypto_lakehouse.archive.paths import ArchiveFile
from crypto_lakehouse.archive.simulation import Simulation, Trade


def fixed(value: int, decimals: int) -> str:
    """An integer scaled by 10**decimals, printed exactly (`fixed(12345, 2) == '123.45'`)."""
    if decimals == 0:
        return str(value)
    if value < 0:
        return "-" + fixed(-value, decimals)
    text = str(value).rjust(decimals + 1, "0")
    return f"{text[:-decimals]}.{text[-decimals:]}"


@lru_cache(maxsize=65536)
def _price_text(ticks: int, decimals: int, spot: bool) -> str:
    # Prices repeat a lot (a random walk over few ticks), so their text is cached.
    return fixed(ticks * 10 ** (8 - decimals), 8) if spot else fixed(ticks, decimals)


def period_days(file: ArchiveFile) -> tuple[date, date]:
    """First and last day a file covers."""
    if file.frequency is Frequency.DAILY:
        return file.period, file.period
    days = calendar.monthrange(file.period.year, file.period.month)[1]
    return file.period, file.period.replace(day=days)


class Style:
    """Number, boolean and time formatting for one file."""

    def __init__(self, file: ArchiveFile, sim: Simulation) -> None:
        self.spot = file.market is Market.SPOT
        inst = sim.instrument
        self.pd, self.qd = inst.price_decimals, inst.qty_decimals
        self.micro = file.schema.publishes_microseconds(file.period)
        self.true, self.false = ("True", "False") if self.spot else ("true", "false")
        self.coin = inst.contract_usd is not None

    def price(self, ticks: int) -> str:
        return _price_text(ticks, self.pd, self.spot)

    def qty(self, lots: int) -> str:
        return fixed(lots * 10 ** (8 - self.qd), 8) if self.spot else fixed(lots, self.qd)

    def quote(self, amount: int) -> str:
        """price*qty (scale pd+qd), or COIN-M base amounts (scale 8)."""
        if self.coin:
            return fixed(amount, 8)
        scale = self.pd + self.qd
        return fixed(amount * 10 ** (8 - scale), 8) if self.spot else fixed(amount, scale)

    def time(self, time_us: int) -> str:
        return str(time_us if self.micro else time_us // 1000)

    def close_time(self, next_open_us: int) -> str:
        return str(next_open_us - 1 if self.micro else next_open_us // 1000 - 1)

    def flag(self, value: bool) -> str:
        return self.true if value else self.false


def quote_amount(sim: Simulation, trade: Trade) -> int:
    inst = sim.instrument
    if inst.contract_usd is None:
        return trade.price * trade.qty
    # Base-asset amount of `qty` contracts, in units of 1e-8.
    return trade.qty * inst.contract_usd * 10 ** (8 + inst.price_decimals) // trade.price
