"""Missing days and months inside each symbol's data set, found from a listing.

A series (market, frequency, data type, symbol, interval) should have one file per day or
month between its first and last file. Periods missing in between are gaps (Binance loses
days and sometimes restores them); periods after the last file are not, because delisted
symbols simply stop.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from crypto_lakehouse.archive.catalog import DataType, Frequency, Market
from crypto_lakehouse.archive.paths import ArchiveFile, period_label


@dataclass(frozen=True)
class Gap:
    market: Market
    frequency: Frequency
    data_type: DataType
    symbol: str
    interval: str | None
    missing: tuple[date, ...]

    @property
    def labels(self) -> list[str]:
        return [period_label(p, self.frequency) for p in self.missing]

    def __str__(self) -> str:
        name = "/".join(
            x
            for x in (self.market, self.frequency, self.data_type, self.symbol, self.interval)
            if x
        )
        return f"{name}: missing {', '.join(self.labels)}"


def _next_period(period: date, frequency: Frequency) -> date:
    if frequency is Frequency.DAILY:
        return period + timedelta(days=1)
    return date(period.year + period.month // 12, period.month % 12 + 1, 1)


def find_gaps(files: Iterable[ArchiveFile]) -> list[Gap]:
    """One `Gap` per series that lacks periods between its first and last file."""
    periods: dict[tuple, set[date]] = defaultdict(set)
    for file in files:
        periods[file.series].add(file.period)
    gaps = []
    for series, present in sorted(periods.items(), key=lambda item: str(item[0])):
        market, frequency, data_type, symbol, interval = series
        missing = []
        cursor, last = min(present), max(present)
        while cursor < last:
            if cursor not in present:
                missing.append(cursor)
            cursor = _next_period(cursor, frequency)
        if missing:
            gaps.append(Gap(market, frequency, data_type, symbol, interval, tuple(missing)))
    return gaps
