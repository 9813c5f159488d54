"""Find what an archive holds by listing it: symbols from folder names, files from keys.

Binance publishes no symbol list for the archive, and delisted contracts (including the
renamed `...SETTLED` ones) exist only as folders, so the listing is the source of truth.
All listing goes through `storage.S3Storage` (ListObjectsV2, 1000 keys a page, unsigned
requests for the public bucket).
"""

from __future__ import annotations

import calendar
import fnmatch
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

from crypto_lakehouse.archive.catalog import (
    DataType,
    Frequency,
    Market,
    data_types_for,
    intervals_for,
    parse_data_type,
    parse_frequency,
    parse_market,
)
from crypto_lakehouse.archive.paths import (
    CHECKSUM_SUFFIX,
    ROOT,
    ArchiveFile,
    dataset_prefix,
    is_checksum_key,
    parse_key,
    validate_symbol,
)
from crypto_lakehouse.errors import ArchiveError, ConfigError
from crypto_lakehouse.storage import Endpoint, S3Storage

BINANCE_BUCKET = "data.binance.vision"
BINANCE_REGION = "ap-northeast-1"
SETTLED_SUFFIX = "SETTLED"
# Longest first, so `BTCUSDT` is USDT rather than USD.
KNOWN_QUOTES: tuple[str, ...] = tuple(
    sorted(
        {
            "USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "DAI", "PAX", "USD",
            "BTC", "ETH", "BNB", "XRP", "TRX", "DOGE", "EUR", "GBP", "TRY", "BRL",
            "JPY", "AUD", "ARS", "MXN", "PLN", "RON", "ZAR", "UAH", "IDRT", "BIDR",
        },
        key=lambda q: (-len(q), q),
    )
)  # fmt: skip


@dataclass(frozen=True)
class ArchiveSource:
    """Where an archive lives: an endpoint (often anonymous), a bucket, the `data/` root."""

    endpoint: Endpoint
    bucket: str
    root: str = ROOT

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.root} at {self.endpoint.describe()}"


def binance_source() -> ArchiveSource:
    """The real archive: s3://data.binance.vision/data/ in ap-northeast-1, read anonymously."""
    return ArchiveSource(Endpoint(url=None, anonymous=True, region=BINANCE_REGION), BINANCE_BUCKET)


# -- symbols ---------------------------------------------------------------------------------


def is_settled(symbol: str) -> bool:
    """Delisted contracts renamed with `SETTLED` (sometimes twice) after their last day."""
    return symbol.endswith(SETTLED_SUFFIX)


def base_symbol(symbol: str) -> str:
    """The pair without `SETTLED` suffixes or a `_PERP` / `_YYMMDD` contract suffix."""
    while symbol.endswith(SETTLED_SUFFIX) and len(symbol) > len(SETTLED_SUFFIX):
        symbol = symbol[: -len(SETTLED_SUFFIX)]
    return symbol.split("_", 1)[0]


def quote_asset(symbol: str) -> str | None:
    """The quote asset (`BTCUSDT` -> USDT, `BTCUSD_PERP` -> USD, `ETHBTC` -> BTC), if known."""
    pair = base_symbol(symbol)
    for quote in KNOWN_QUOTES:
        if pair.endswith(quote) and len(pair) > len(quote):
            return quote
    return None


def symbol_matches(
    symbol: str,
    *,
    quote: str | None = None,
    patterns: Iterable[str] | None = None,
    include_settled: bool = True,
) -> bool:
    """Filter used by discovery: quote asset, shell-style globs (any may match), SETTLED."""
    if not include_settled and is_settled(symbol):
        return False
    if quote is not None and quote_asset(symbol) != quote.upper():
        return False
    wanted = list(patterns or ())
    return not wanted or any(fnmatch.fnmatchcase(symbol, p.upper()) for p in wanted)


# -- queries -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchiveQuery:
    """Which files to list. `None` means everything the archive publishes for that field.

    A data type or interval that no chosen market publishes is an ArchiveError; one that only
    some chosen markets publish is skipped where it does not exist.
    """

    markets: tuple[Market, ...] = tuple(Market)
    data_types: tuple[DataType, ...] | None = None
    frequencies: tuple[Frequency, ...] = (Frequency.DAILY, Frequency.MONTHLY)
    intervals: tuple[str, ...] | None = None
    symbols: tuple[str, ...] | None = None  # exact names or globs such as `BTC*`
    quote: str | None = None
    start: date | None = None
    end: date | None = None
    include_settled: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "markets", tuple(parse_market(m) for m in self.markets))
        object.__setattr__(self, "frequencies", tuple(parse_frequency(f) for f in self.frequencies))
        if self.data_types is not None:
            object.__setattr__(
                self, "data_types", tuple(parse_data_type(d) for d in self.data_types)
            )
        if self.start and self.end and self.start > self.end:
            raise ConfigError(f"start {self.start} is after end {self.end}")
        if not self.markets or not self.frequencies:
            raise ConfigError("choose at least one market and one frequency")
        self._check_requested_exist()

    def _check_requested_exist(self) -> None:
        plan = self.plan()
        found_types = {data_type for _, _, data_type, _ in plan}
        for data_type in self.data_types or ():
            if data_type not in found_types:
                raise ArchiveError(
                    f"no chosen market/frequency publishes {data_type} "
                    f"({', '.join(self.markets)} / {', '.join(self.frequencies)})"
                )
        found_intervals = {i for *_, intervals in plan for i in intervals}
        for interval in self.intervals or ():
            if interval not in found_intervals:
                raise ArchiveError(f"interval {interval!r} is not published for the chosen data")

    def plan(self) -> list[tuple[Market, Frequency, DataType, tuple[str, ...]]]:
        """Every (market, frequency, data type, intervals) the query covers."""
        plan = []
        for market in self.markets:
            for frequency in self.frequencies:
                for data_type in data_types_for(market, frequency):
                    if self.data_types is not None and data_type not in self.data_types:
                        continue
                    intervals: tuple[str, ...] = ()
                    if data_type.has_interval:
                        intervals = tuple(
                            i
                            for i in intervals_for(market, frequency)
                            if self.intervals is None or i in self.intervals
                        )
                        if not intervals:
                            continue
                    plan.append((market, frequency, data_type, intervals))
        return plan

    def covers(self, file: ArchiveFile) -> bool:
        """Daily files inside [start, end]; monthly files whose month overlaps it."""
        first = file.period
        last = file.period if file.frequency is Frequency.DAILY else _month_end(file.period)
        if self.start is not None and last < self.start:
            return False
        return not (self.end is not None and first > self.end)

    def wants_symbol(self, symbol: str) -> bool:
        return symbol_matches(
            symbol, quote=self.quote, patterns=self.symbols, include_settled=self.include_settled
        )


def _month_end(first: date) -> date:
    return first.replace(day=calendar.monthrange(first.year, first.month)[1])


# -- listing -----------------------------------------------------------------------------------


@dataclass
class ArchiveLister:
    """Lists one archive source. `skipped` collects keys that are not archive files."""

    source: ArchiveSource
    storage: S3Storage | None = None
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.storage is None:
            self.storage = S3Storage(self.source.endpoint)

    @property
    def _s3(self) -> S3Storage:
        assert self.storage is not None
        return self.storage

    def symbols(
        self,
        market: Market | str,
        frequency: Frequency | str,
        data_type: DataType | str,
        *,
        quote: str | None = None,
        patterns: Iterable[str] | None = None,
        include_settled: bool = True,
    ) -> list[str]:
        """Symbol folders of one dataset, sorted, filtered; delisted and SETTLED ones included."""
        prefix = dataset_prefix(market, frequency, data_type, self.source.root)
        found = []
        for folder in self._s3.list_prefixes(self.source.bucket, prefix):
            name = folder[len(prefix) :].rstrip("/")
            try:
                validate_symbol(name)
            except ArchiveError:
                self.skipped.append(folder)
                continue
            if symbol_matches(
                name, quote=quote, patterns=patterns, include_settled=include_settled
            ):
                found.append(name)
        return sorted(found)

    def files(self, query: ArchiveQuery) -> Iterator[ArchiveFile]:
        """Every data file the query covers, with size, ETag and LastModified from the listing.

        `.CHECKSUM` sidecars are not yielded: a file's `checksum_etag` is its listed sidecar's
        ETag, or None when the sidecar is missing.
        """
        for market, frequency, data_type, intervals in query.plan():
            for symbol in self.symbols(
                market,
                frequency,
                data_type,
                quote=query.quote,
                patterns=query.symbols,
                include_settled=query.include_settled,
            ):
                base = f"{dataset_prefix(market, frequency, data_type, self.source.root)}{symbol}/"
                every = intervals_for(market, frequency)
                if data_type.has_interval and set(intervals) != set(every):
                    prefixes = [f"{base}{interval}/" for interval in intervals]
                else:
                    prefixes = [base]
                for prefix in prefixes:
                    yield from self._files_under(prefix, query, intervals)

    def _files_under(
        self, prefix: str, query: ArchiveQuery, intervals: tuple[str, ...]
    ) -> Iterator[ArchiveFile]:
        listed = list(self._s3.list_objects(self.source.bucket, prefix))
        sidecars = {info.key: info for info in listed if is_checksum_key(info.key)}
        for info in listed:
            if is_checksum_key(info.key):
                continue
            try:
                file = parse_key(info.key, self.source.root)
            except ArchiveError:
                self.skipped.append(info.key)
                continue
            if intervals and file.interval not in intervals:
                continue
            if query.covers(file):
                sidecar = sidecars.get(info.key + CHECKSUM_SUFFIX)
                yield file.with_listing(
                    info.size,
                    info.etag,
                    info.last_modified,
                    sidecar.etag if sidecar else None,
                    sidecar.size if sidecar else None,
                )
