"""Archive object keys, built and parsed both ways.

    data/{market}/{daily|monthly}/{dataType}/{SYMBOL}/[{interval}/]
        {SYMBOL}-{interval|dataType}-{YYYY-MM-DD|YYYY-MM}.zip   (+ `.CHECKSUM` sidecar)

`ArchiveFile` is one published file; its `partition` (market, frequency, data type,
interval, day or month) groups the files of every symbol that one ingest task moves
together. Every constructor validates against the catalog, so a key that Binance could
not have published raises `ArchiveError`.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime

from crypto_lakehouse.archive.catalog import (
    DataType,
    Frequency,
    Market,
    check,
    parse_data_type,
    parse_frequency,
    parse_market,
)
from crypto_lakehouse.archive.schemas import CsvSchema, schema_for
from crypto_lakehouse.errors import ArchiveError
from crypto_lakehouse.storage.urls import SIDECAR_SUFFIX

ROOT = "data/"
CHECKSUM_SUFFIX = SIDECAR_SUFFIX  # the engine verifies against the same sidecars
ZIP_SUFFIX = ".zip"
# Upper-case letters, digits and `_` (delivery contracts `BTCUSD_220930`, `..._PERP`).
_SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9_]*$")
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH_RE = re.compile(r"^\d{4}-\d{2}$")


def validate_symbol(symbol: str) -> str:
    if not _SYMBOL_RE.match(symbol):
        raise ArchiveError(f"invalid symbol {symbol!r}: upper-case letters, digits and '_' only")
    return symbol


def period_label(period: date, frequency: Frequency | str) -> str:
    """`YYYY-MM-DD` for a daily file, `YYYY-MM` for a monthly one."""
    if parse_frequency(frequency) is Frequency.MONTHLY:
        return f"{period.year:04d}-{period.month:02d}"
    return period.isoformat()


def parse_period(text: str, frequency: Frequency | str) -> date:
    """The inverse of `period_label`: a day, or the first day of the month."""
    monthly = parse_frequency(frequency) is Frequency.MONTHLY
    pattern = _MONTH_RE if monthly else _DAY_RE
    if not pattern.match(text):
        shape = "YYYY-MM" if monthly else "YYYY-MM-DD"
        raise ArchiveError(f"period {text!r} is not {shape}")
    try:
        return date.fromisoformat(f"{text}-01" if monthly else text)
    except ValueError as exc:
        raise ArchiveError(f"period {text!r} is not a real date") from exc


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    """The first day of the month after `day`'s."""
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def month_end(day: date) -> date:
    """The last day of `day`'s month."""
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


@dataclass(frozen=True, order=True)
class Partition:
    """The unit of ingest work: one dataset (and interval) for one day or month, all symbols."""

    market: Market
    frequency: Frequency
    data_type: DataType
    interval: str | None
    period: date

    @property
    def period_label(self) -> str:
        return period_label(self.period, self.frequency)

    @property
    def label(self) -> str:
        """E.g. `spot/daily/klines/1h/2026-05-08`; unique per partition, usable as a task name."""
        parts = [self.market.value, self.frequency.value, self.data_type.value]
        if self.interval:
            parts.append(self.interval)
        return "/".join([*parts, self.period_label])


@dataclass(frozen=True, order=True)
class ArchiveFile:
    """One published data file. Listing metadata (size, ETag, time) is not part of identity."""

    market: Market
    frequency: Frequency
    data_type: DataType
    symbol: str
    period: date  # the day, or the first day of the month for monthly files
    interval: str | None = None
    size: int | None = field(default=None, compare=False)
    etag: str | None = field(default=None, compare=False)
    last_modified: datetime | None = field(default=None, compare=False)
    checksum_etag: str | None = field(default=None, compare=False)  # listed sidecar, if any
    checksum_size: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        market = parse_market(self.market)
        frequency = parse_frequency(self.frequency)
        data_type = parse_data_type(self.data_type)
        object.__setattr__(self, "market", market)
        object.__setattr__(self, "frequency", frequency)
        object.__setattr__(self, "data_type", data_type)
        validate_symbol(self.symbol)
        if data_type.has_interval and self.interval is None:
            raise ArchiveError(f"{market} {frequency} {data_type} needs an interval")
        check(market, frequency, data_type, self.interval)
        if frequency is Frequency.MONTHLY and self.period.day != 1:
            raise ArchiveError(f"a monthly file's period is a month's first day, got {self.period}")

    # -- names ---------------------------------------------------------------------------------

    @property
    def period_label(self) -> str:
        return period_label(self.period, self.frequency)

    @property
    def day(self) -> date | None:
        return self.period if self.frequency is Frequency.DAILY else None

    @property
    def month(self) -> str:
        return f"{self.period.year:04d}-{self.period.month:02d}"

    @property
    def stem(self) -> str:
        """`BTCUSDT-1h-2026-05-08` or `BTCUSDT-fundingRate-2026-04`: the CSV's name too."""
        return f"{self.symbol}-{self.interval or self.data_type.value}-{self.period_label}"

    @property
    def filename(self) -> str:
        return self.stem + ZIP_SUFFIX

    @property
    def csv_name(self) -> str:
        return self.stem + ".csv"

    @property
    def checksum_filename(self) -> str:
        return self.filename + CHECKSUM_SUFFIX

    def directory(self, root: str = ROOT) -> str:
        parts = [self.market.value, self.frequency.value, self.data_type.value, self.symbol]
        if self.interval:
            parts.append(self.interval)
        return _root(root) + "/".join(parts) + "/"

    def key_under(self, root: str) -> str:
        return self.directory(root) + self.filename

    @property
    def key(self) -> str:
        """The object key in the archive bucket (`data/...`)."""
        return self.key_under(ROOT)

    @property
    def checksum_key(self) -> str:
        return self.key + CHECKSUM_SUFFIX

    # -- grouping ------------------------------------------------------------------------------

    @property
    def partition(self) -> Partition:
        return Partition(self.market, self.frequency, self.data_type, self.interval, self.period)

    @property
    def series(self) -> tuple[Market, Frequency, DataType, str, str | None]:
        """The files of one symbol's data set over time (where gaps are looked for)."""
        return (self.market, self.frequency, self.data_type, self.symbol, self.interval)

    @property
    def schema(self) -> CsvSchema:
        return schema_for(self.market, self.data_type)

    def with_listing(
        self,
        size: int,
        etag: str,
        last_modified: datetime,
        checksum_etag: str | None = None,
        checksum_size: int | None = None,
    ) -> ArchiveFile:
        """A copy carrying what a listing said about the object (and its sidecar)."""
        return replace(
            self,
            size=size,
            etag=etag,
            last_modified=last_modified,
            checksum_etag=checksum_etag,
            checksum_size=checksum_size,
        )


def _root(root: str) -> str:
    return root if not root or root.endswith("/") else root + "/"


def is_checksum_key(key: str) -> bool:
    return key.endswith(ZIP_SUFFIX + CHECKSUM_SUFFIX)


def data_key_of(checksum_key: str) -> str:
    """`....zip.CHECKSUM` -> `....zip`."""
    if not is_checksum_key(checksum_key):
        raise ArchiveError(f"{checksum_key!r} is not a .zip.CHECKSUM key")
    return checksum_key[: -len(CHECKSUM_SUFFIX)]


def parse_key(key: str, root: str = ROOT) -> ArchiveFile:
    """The `ArchiveFile` a data key names; ArchiveError says what does not fit.

    `root` is the prefix before the market (`data/` in Binance's bucket); a `.CHECKSUM` key
    parses to the file it describes.
    """
    root = _root(root)
    if not key.startswith(root):
        raise ArchiveError(f"{key!r} is not under {root!r}")
    rest = key[len(root) :]
    if is_checksum_key(rest):
        rest = data_key_of(rest)
    parts = rest.split("/")
    if parts and parts[0] == "futures" and len(parts) > 1:
        parts = [f"futures/{parts[1]}", *parts[2:]]
    if len(parts) < 5:
        raise ArchiveError(f"{key!r} is too short for market/frequency/dataType/SYMBOL/file")
    market, frequency, data_type = (
        parse_market(parts[0]),
        parse_frequency(parts[1]),
        parse_data_type(parts[2]),
    )
    if parts[2] != data_type.value:
        raise ArchiveError(f"{key!r}: data type folder must be spelled {data_type.value!r}")
    symbol = validate_symbol(parts[3])
    interval = None
    if data_type.has_interval:
        if len(parts) != 6:
            raise ArchiveError(f"{key!r}: {data_type} files sit in an interval folder")
        interval = parts[4]
    elif len(parts) != 5:
        raise ArchiveError(f"{key!r}: {data_type} files sit directly in the symbol folder")
    filename = parts[-1]
    prefix = f"{symbol}-{interval or data_type.value}-"
    if not (filename.startswith(prefix) and filename.endswith(ZIP_SUFFIX)):
        raise ArchiveError(f"{key!r}: file name must be {prefix}<period>{ZIP_SUFFIX}")
    period = parse_period(filename[len(prefix) : -len(ZIP_SUFFIX)], frequency)
    return ArchiveFile(market, frequency, data_type, symbol, period, interval)


def dataset_prefix(
    market: Market | str, frequency: Frequency | str, data_type: DataType | str, root: str = ROOT
) -> str:
    """`data/{market}/{frequency}/{dataType}/`: list it with a delimiter to find symbols."""
    dataset = check(market, frequency, data_type)
    return f"{_root(root)}{dataset.market}/{dataset.frequency}/{dataset.data_type}/"
