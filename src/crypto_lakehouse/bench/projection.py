"""`bench scale`'s projection: the real archive's size (estimated) times the measured costs.

The real archive cannot be listed from here, so its size is an estimate, stated as such:
symbols per market and their average listed days come from the design's "Scale" notes (a
few thousand spot symbols with delisted ones, a few hundred futures symbols, daily files
since 2017-2020); files per symbol-day and per symbol-month come from the archive's own
layout (`archive.catalog`: data types and kline intervals per market); kline rows per
file from the interval's length; trade-like rows (trades, aggTrades, bookTicker) per
symbol-day are an assumption (busy symbols have millions, most far fewer).

The cost model has two measured parameters per step: seconds per source file and, for
silver, seconds per row (from the large trades files, net of the CLI's start-up). A
backfill on W workers is the one-machine time over W: it assumes storage and the catalog
keep up, which this machine cannot check.
"""

from __future__ import annotations

import textwrap
from dataclasses import asdict, dataclass
from typing import Any

from crypto_lakehouse.archive.catalog import (
    DataType,
    Frequency,
    Market,
    data_types_for,
    intervals_for,
)

DAY_SECONDS = 86_400
_FIXED_SECONDS = {
    "1s": 1, "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600,
    "2h": 7200, "4h": 14400, "6h": 21600, "8h": 28800, "12h": 43200, "1d": 86400,
}  # fmt: skip


@dataclass(frozen=True)
class MarketEstimate:
    """One market of the real archive, estimated (see the module doc)."""

    market: Market
    symbols: int  # ever listed, delisted included
    days_per_symbol: int  # average days of daily files per symbol
    active_symbols: int  # symbols that get a new day today (the daily update)
    trade_rows_per_day: int  # trades + aggTrades (+ bookTicker) rows per symbol-day, assumed


REAL_ARCHIVE: tuple[MarketEstimate, ...] = (
    MarketEstimate(Market.SPOT, 2_500, 1_000, 1_500, 150_000),
    MarketEstimate(Market.FUTURES_UM, 500, 900, 400, 300_000),
    MarketEstimate(Market.FUTURES_CM, 50, 1_200, 40, 50_000),
)
SOURCE = (
    "estimates, not counts: symbols and listed days from the design's Scale notes; files "
    "per symbol-day/month from archive.catalog; kline rows from interval lengths; trade "
    "rows per symbol-day assumed; option (a few symbols) left out"
)


def daily_files_per_symbol(market: Market) -> int:
    """Data files one symbol gets per day: each daily data type, each kline interval."""
    return sum(_files_of(market, Frequency.DAILY, t) for t in data_types_for(market, "daily"))


def monthly_files_per_symbol(market: Market) -> int:
    return sum(_files_of(market, Frequency.MONTHLY, t) for t in data_types_for(market, "monthly"))


def _files_of(market: Market, frequency: Frequency, data_type: DataType) -> int:
    return len(intervals_for(market, frequency)) if data_type.has_interval else 1


def kline_rows_per_symbol_day(market: Market) -> int:
    """Rows of one symbol-day's kline files (every kline type and daily interval)."""
    kinds = sum(t.has_interval for t in data_types_for(market, "daily"))
    per_kind = sum(DAY_SECONDS // _FIXED_SECONDS[i] for i in intervals_for(market, "daily"))
    return kinds * per_kind


@dataclass(frozen=True)
class ArchiveSize:
    files: int
    rows: int
    daily_update_files: int
    daily_update_rows: int


def archive_size(markets: tuple[MarketEstimate, ...] = REAL_ARCHIVE) -> ArchiveSize:
    """Files (daily + monthly) and rows (daily files only: monthly ones repeat them)."""
    files = rows = day_files = day_rows = 0
    for m in markets:
        symbol_days = m.symbols * m.days_per_symbol
        per_day_rows = kline_rows_per_symbol_day(m.market) + m.trade_rows_per_day
        files += symbol_days * daily_files_per_symbol(m.market)
        files += symbol_days // 30 * monthly_files_per_symbol(m.market)
        rows += symbol_days * per_day_rows
        day_files += m.active_symbols * daily_files_per_symbol(m.market)
        day_rows += m.active_symbols * per_day_rows
    return ArchiveSize(files, rows, day_files, day_rows)


@dataclass(frozen=True)
class Costs:
    """Measured costs, seconds per source file of each step plus silver's seconds per row."""

    ingest_per_file: float
    silver_per_file: float
    silver_per_row: float
    gold_per_file: float
    maintain_per_file: float | None  # None: not measured

    @classmethod
    def measured(
        cls,
        *,
        files: int,
        ingest_s: float,
        small_files: int,
        small_rows: int,
        silver_small_s: float,
        large_rows: int,
        silver_large_net_s: float,
        gold_s: float,
        maintain_s: float | None,
    ) -> Costs:
        """Silver's per-row cost from the large files; its per-file cost is what the small
        files took beyond their rows at that rate."""
        per_row = silver_large_net_s / large_rows if large_rows else 0.0
        per_file = max(0.0, silver_small_s - small_rows * per_row) / max(1, small_files)
        return cls(
            ingest_per_file=ingest_s / files,
            silver_per_file=per_file,
            silver_per_row=per_row,
            gold_per_file=gold_s / files,
            maintain_per_file=None if maintain_s is None else maintain_s / files,
        )

    def seconds(self, files: int, rows: int) -> float:
        per_file = self.ingest_per_file + self.silver_per_file + self.gold_per_file
        per_file += self.maintain_per_file or 0.0
        return files * per_file + rows * self.silver_per_row


@dataclass(frozen=True)
class Projection:
    size: ArchiveSize
    costs: Costs
    workers: tuple[int, ...]

    @property
    def backfill_seconds(self) -> float:
        return self.costs.seconds(self.size.files, self.size.rows)

    @property
    def daily_update_seconds(self) -> float:
        return self.costs.seconds(self.size.daily_update_files, self.size.daily_update_rows)

    def lines(self) -> list[str]:
        size, hours = self.size, self.backfill_seconds / 3600
        out = [
            f"real archive (estimated): {size.files / 1e6:,.1f} M files, "
            f"{size.rows / 1e9:,.0f} G rows; a day: {size.daily_update_files:,} files, "
            f"{size.daily_update_rows / 1e6:,.0f} M rows",
            *textwrap.wrap(f"({SOURCE})", 96, initial_indent="  ", subsequent_indent="   "),
            *(f"  {line}" for line in _markets_lines()),
            f"backfill on this machine: {hours:,.0f} h ({hours / 24:,.1f} days); "
            f"a daily update: {self.daily_update_seconds / 60:,.1f} min",
        ]
        if self.workers:
            out.append("  on N workers (linear: assumes storage and the catalog keep up):")
        for n in self.workers:
            out.append(
                f"    {n} workers: backfill {hours / n:,.1f} h, "
                f"daily update {self.daily_update_seconds / n:,.0f} s"
            )
        if self.costs.maintain_per_file is None:
            out.append("  maintain not measured: left out of the projection")
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "assumed": [{**asdict(m), "market": m.market.value} for m in REAL_ARCHIVE],
            "source": SOURCE,
            "size": asdict(self.size),
            "costs": asdict(self.costs),
            "backfill_seconds": self.backfill_seconds,
            "daily_update_seconds": self.daily_update_seconds,
            "workers": {str(n): self.backfill_seconds / n for n in self.workers},
        }


def _markets_lines() -> list[str]:
    return [
        f"{m.market.value}: {m.symbols:,} symbols x {m.days_per_symbol:,} days x "
        f"{daily_files_per_symbol(m.market)} files/day, {m.trade_rows_per_day:,} trade rows/day, "
        f"{m.active_symbols:,} active"
        for m in REAL_ARCHIVE
    ]
