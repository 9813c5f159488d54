"""Find what an archive holds by listing it: symbols from folder names, files from keys.

Binance publishes no symbol list for the archive, and delisted contracts (including the
renamed `...SETTLED` ones) exist only as folders, so the listing is the source of truth.
Folders (symbols, interval folders) come from delimiter listings; files from paged
ListObjectsV2 listings of each symbol's folder through boto3 (`archive.listing`). Inside a
leaf folder keys sort by date, so a date range, or "after what the lake already holds",
is a key range: listing starts just before its first period and stops past its last.
Files stream out page by page, so memory stays bounded however many keys are listed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import partial

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
from crypto_lakehouse.archive.listing import (
    PAGE_KEYS,
    KeyRange,
    LeafFolder,
    Series,
    in_order,
    list_range,
    next_period,
    with_sidecars,
)
from crypto_lakehouse.archive.paths import (
    ROOT,
    ArchiveFile,
    dataset_prefix,
    month_end,
    month_start,
    parse_key,
    validate_symbol,
)
from crypto_lakehouse.errors import ArchiveError, ConfigError
from crypto_lakehouse.storage import Endpoint, S3Storage
from crypto_lakehouse.storage.client import ObjectInfo

BINANCE_BUCKET = "data.binance.vision"
BINANCE_REGION = "ap-northeast-1"
# Symbol folders listed at once. A daily update is one short request per folder, so
# against a far source it waits on round trips: 32 at once listed the last day of 50
# symbols at 150 ms in 0.86 s, 8 in 2.42 s (docs/archive.md). A whole listing is bound by
# parsing, not by this; it holds at most threads x 3 pages of files (+57-70 MiB at 100,000
# keys, against +32 MiB with 8). 32 is also the boto3 client's connection pool.
LISTING_THREADS = 32
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
        last = file.period if file.frequency is Frequency.DAILY else month_end(file.period)
        if self.start is not None and last < self.start:
            return False
        return not (self.end is not None and first > self.end)

    @property
    def ranged(self) -> bool:
        return self.start is not None or self.end is not None

    def first_period(self, frequency: Frequency) -> date | None:
        """The first day (or month) whose file the query covers, None when unbounded."""
        if self.start is None:
            return None
        return self.start if frequency is Frequency.DAILY else month_start(self.start)

    def last_period(self, frequency: Frequency) -> date | None:
        """The last day (or month) whose file the query covers, None when unbounded."""
        if self.end is None:
            return None
        return self.end if frequency is Frequency.DAILY else month_start(self.end)

    def exact_symbols(self) -> tuple[str, ...] | None:
        """The named symbols when every one is a plain name (no `*`/`?`/`[`), else None."""
        if not self.symbols or any(set(s) & set("*?[") for s in self.symbols):
            return None
        return tuple(sorted({validate_symbol(s.upper()) for s in self.symbols}))

    def wants_symbol(self, symbol: str) -> bool:
        return symbol_matches(
            symbol, quote=self.quote, patterns=self.symbols, include_settled=self.include_settled
        )


# -- listing -----------------------------------------------------------------------------------

# The newest period the lake already holds for a series, or None: listing starts after it.
Resume = Callable[[Series], date | None]


@dataclass
class ArchiveLister:
    """Lists one archive source. `skipped` collects keys and folders that are not archive
    files (strays); `threads` symbol folders are listed at once."""

    source: ArchiveSource
    storage: S3Storage | None = None
    threads: int = LISTING_THREADS
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

    def files(self, query: ArchiveQuery, *, resume: Resume | None = None) -> Iterator[ArchiveFile]:
        """Every data file the query covers, with size, ETag and LastModified from the listing.

        `.CHECKSUM` sidecars are not yielded: a file's `checksum_etag`/`checksum_size` are its
        listed sidecar's, or None when the sidecar is missing. Files come folder by folder,
        each folder in key order (so one series' files are together). With `resume`, each
        leaf folder is listed only after the period it names for the folder's series.
        """
        for page in self.pages(query, resume=resume):
            yield from page

    def pages(
        self, query: ArchiveQuery, *, resume: Resume | None = None
    ) -> Generator[list[ArchiveFile], None, None]:
        """`files()` in pages of at most 1000 files, as the listing delivers them; `close()`
        it to stop listing early."""
        return in_order(self._jobs(query, resume), self.threads)

    # -- one job per symbol folder ---------------------------------------------------------

    def _jobs(
        self, query: ArchiveQuery, resume: Resume | None
    ) -> Iterator[Callable[[], Iterator[list[ArchiveFile]]]]:
        for market, frequency, data_type, intervals in query.plan():
            exact = query.exact_symbols()
            if exact is not None:  # named: no need to list the dataset's symbol folders
                symbols = [s for s in exact if query.wants_symbol(s)]
            else:
                symbols = self.symbols(
                    market,
                    frequency,
                    data_type,
                    quote=query.quote,
                    patterns=query.symbols,
                    include_settled=query.include_settled,
                )
            base = dataset_prefix(market, frequency, data_type, self.source.root)
            for symbol in symbols:
                leaf = LeafFolder(market, frequency, data_type, symbol, None, f"{base}{symbol}/")
                yield partial(self._symbol_folder, query, resume, leaf, intervals)

    def _symbol_folder(
        self,
        query: ArchiveQuery,
        resume: Resume | None,
        leaf: LeafFolder,
        intervals: tuple[str, ...],
    ) -> Iterator[list[ArchiveFile]]:
        """One symbol's files: its folder listed whole when everything in it is wanted,
        else each wanted leaf folder listed over the wanted key range."""
        if not leaf.data_type.has_interval:
            yield from self._leaf(query, resume, leaf)
            return
        every = intervals_for(leaf.market, leaf.frequency)
        if not query.ranged and resume is None and set(intervals) == set(every):
            yield from self._parsed(list_range(self._s3, self.source.bucket, KeyRange(leaf.folder)))
            return
        for interval in self._interval_folders(leaf, intervals):
            folder = f"{leaf.folder}{interval}/"
            yield from self._leaf(query, resume, LeafFolder(*leaf.series[:4], interval, folder))

    def _interval_folders(self, leaf: LeafFolder, wanted: tuple[str, ...]) -> list[str]:
        """The wanted interval folders that exist (one delimiter listing), or the only one."""
        if len(wanted) == 1:
            return list(wanted)  # one request either way: list it directly
        found = []
        for prefix in self._s3.list_prefixes(self.source.bucket, leaf.folder):
            name = prefix[len(leaf.folder) :].rstrip("/")
            if name in wanted:
                found.append(name)
            elif name not in intervals_for(leaf.market, leaf.frequency):
                self.skipped.append(prefix)
        return found

    def _leaf(
        self, query: ArchiveQuery, resume: Resume | None, leaf: LeafFolder
    ) -> Iterator[list[ArchiveFile]]:
        """One leaf folder over the query's periods (after `resume`'s, if later): listing
        starts just before the first period's keys and stops past the last period's."""
        first = query.first_period(leaf.frequency)
        known = resume(leaf.series) if resume is not None else None
        if known is not None:
            after_known = next_period(known, leaf.frequency)
            first = after_known if first is None else max(first, after_known)
        keys = leaf.key_range(first, query.last_period(leaf.frequency))
        if keys is None:
            return
        pages = list_range(self._s3, self.source.bucket, keys)
        yield from self._parsed(pages, query, leaf.interval)

    def _parsed(
        self,
        pages: Iterable[list[ObjectInfo]],
        query: ArchiveQuery | None = None,
        interval: str | None = None,
    ) -> Iterator[list[ArchiveFile]]:
        """Listed objects as archive files (with their sidecars), up to 1000 per page;
        with `query`, only the periods it covers (the key range may hold a few more)."""
        page: list[ArchiveFile] = []
        for info, sidecar in with_sidecars(pages):
            try:
                file = parse_key(info.key, self.source.root)
            except ArchiveError:
                self.skipped.append(info.key)
                continue
            if interval is not None and file.interval != interval:
                self.skipped.append(info.key)
                continue
            if query is not None and not query.covers(file):
                continue
            page.append(
                file.with_listing(
                    info.size,
                    info.etag,
                    info.last_modified,
                    sidecar.etag if sidecar else None,
                    sidecar.size if sidecar else None,
                )
            )
            if len(page) >= PAGE_KEYS:
                yield page
                page = []
        if page:
            yield page
