"""A deterministic local archive in Binance's exact layout, with the real archive's defects.

Why: the real archive is unreachable from CI and too big for a demo, yet ingest and the
lake must meet its layout, both sides of its format cut-overs, and what it does to users.
`build_sample(spec)` returns every object (zip, `.CHECKSUM`) and a `SampleManifest`
saying what was planted; `publisher.publish` writes them to a bucket.

Dates are chosen around the cut-overs with few files: futures days straddle 2022-08-11
(header rows appear), spot and option days straddle 2025-01-01 (spot switches to
microseconds); monthly files cover 2022-08/09 (futures) and 2024-12/2025-01 (spot).

Planted (each needs the default 3+ days and 1+ symbol per market):
- missing: every daily file of the first USD-M symbol on the middle futures day;
- corrupt: the first COIN-M symbol's last-day aggTrades: bytes differ from the sidecar;
- replaced: the first USD-M symbol's last-day metrics: content and checksum depend on
  `revision`, so writing revision 2 over revision 1 is a republished file;
- delisted: XMRUSDT (spot) and BNXUSDTSETTLED (USD-M, the SETTLED rename) have only the
  first day of their window and no monthly files.
`defects=False` plants none of them (a clean archive, for benchmarks).

At scale (`SampleSpec.for_files(n)`, `crypto-lakehouse sample-archive --files N`) one
window starting at `start` serves every market, every kline interval is published, more
symbols than the named pools get made-up names (`SIMAUSDT`, ...), monthly files cover the
calendar months the window holds whole, and `large_files` busy days of spot BTCUSDT
trades (`large_rows` rows each, made by Arrow kernels: `rendering.bulk_trades`) stand
for the archive's few big files among many small ones. `start` + `days=1` is one new
day for every symbol and data type: a daily update. `SampleBuild` renders one object
at a time, so a 50,000-file archive never sits in memory.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, time, timedelta
from importlib import resources
from importlib.resources.abc import Traversable

from crypto_lakehouse.archive.catalog import (
    ALL_INTERVALS,
    DataType,
    Frequency,
    Market,
    data_types_for,
    intervals_for,
)
from crypto_lakehouse.archive.checksum import checksum_of
from crypto_lakehouse.archive.paths import CHECKSUM_SUFFIX, ROOT, ArchiveFile, next_month, parse_key
from crypto_lakehouse.archive.rendering import bulk_trades, render
from crypto_lakehouse.archive.schemas import FUTURES_HEADER_SINCE, SPOT_MICROSECONDS_SINCE
from crypto_lakehouse.archive.simulation import Simulation
from crypto_lakehouse.archive.style import period_days
from crypto_lakehouse.errors import ConfigError

DEFAULT_INTERVALS: tuple[str, ...] = ("1s", "1m", "1h", "1d", "1w", "1mo")
# Spot and USD-M BTCUSDT are left to the real files (2026): simulated BTCUSDT days in
# 2022/2025 would sit in the same series and look like a year-long gap.
SYMBOL_POOLS: dict[Market, tuple[str, ...]] = {
    Market.SPOT: ("ETHUSDT", "ETHBTC", "BNBUSDT", "SOLUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT"),
    Market.FUTURES_UM: ("ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT", "ADAUSDT"),
    Market.FUTURES_CM: ("BTCUSD_PERP", "ETHUSD_PERP", "BNBUSD_PERP", "SOLUSD_PERP"),
}
BVOL_POOL = ("BTCBVOLUSDT", "ETHBVOLUSDT")
EOH_POOL = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT")
DELISTED: dict[Market, str] = {Market.SPOT: "XMRUSDT", Market.FUTURES_UM: "BNXUSDTSETTLED"}
FUTURES_MONTHS = (date(2022, 8, 1), date(2022, 9, 1))
SPOT_MONTHS = (date(2024, 12, 1), date(2025, 1, 1))
MAX_DAYS = 28  # around the cut-overs
MAX_WINDOW_DAYS = 3660  # with an explicit `start`
MAX_SYMBOLS = 200
MAX_LARGE_ROWS = 20_000_000  # the CSV stays under 2 GiB (no zip64)
LARGE_SYMBOL = "BTCUSDT"  # the busy symbol whose trades days are the large files
SCALE_START = date(2024, 1, 1)  # `for_files`: a month of 1m klines to query from day 31
_SCALE_SYMBOLS = 7  # `for_files`: every named pool in full, once there are 3+ days of it


@dataclass(frozen=True)
class SampleSpec:
    """What to generate. Same spec, same bytes."""

    seed: int = 7
    symbols: int = 2  # per market, from SYMBOL_POOLS
    days: int = 3  # per window
    revision: int = 1
    intervals: tuple[str, ...] = DEFAULT_INTERVALS
    orders_per_day: int = 48
    include_real_files: bool = True
    start: date | None = None  # one window from this day for every market (else cut-overs)
    defects: bool = True  # missing, corrupt, replaced, delisted (see the module doc)
    large_files: int = 0  # spot BTCUSDT trades on the window's last days, `large_rows` each
    large_rows: int = 1_000_000

    def __post_init__(self) -> None:
        if not 1 <= self.symbols <= MAX_SYMBOLS:
            raise ConfigError(f"symbols must be 1..{MAX_SYMBOLS}, got {self.symbols}")
        most_days = MAX_DAYS if self.start is None else MAX_WINDOW_DAYS
        if not 1 <= self.days <= most_days:
            what = "with --start-day" if self.start else "around the cut-overs"
            raise ConfigError(f"days must be 1..{most_days} {what}, got {self.days}")
        if not 0 <= self.large_files <= self.days:
            raise ConfigError(f"large files must be 0..days ({self.days}), got {self.large_files}")
        if not 1 <= self.large_rows <= MAX_LARGE_ROWS:
            raise ConfigError(f"large rows must be 1..{MAX_LARGE_ROWS}, got {self.large_rows}")
        if self.revision < 1:
            raise ConfigError(f"revision must be 1 or more, got {self.revision}")
        if not 1 <= self.orders_per_day <= 100_000:
            raise ConfigError("orders_per_day must be 1..100000")
        unknown = [i for i in self.intervals if i not in ALL_INTERVALS]
        if unknown or not self.intervals:
            raise ConfigError(
                f"unknown intervals {unknown}; choose from {', '.join(ALL_INTERVALS)}"
            )

    @classmethod
    def for_files(
        cls,
        files: int,
        *,
        seed: int = 7,
        start: date = SCALE_START,
        large_rows: int = 1_000_000,
        defects: bool = False,
    ) -> SampleSpec:
        """A spec of about `files` data files (the closest count this layout can make).

        Every named symbol once there are 3+ days of them (fewer symbols below that),
        every interval, days from `start` added until the count is reached; one large
        trades file per 5,000 files (at least one).
        """
        if not 1 <= files <= 10_000_000:
            raise ConfigError(f"files must be 1..10000000, got {files}")
        large = max(1, round(files / 5000))
        base = cls(seed=seed, intervals=ALL_INTERVALS, start=start, defects=defects,
                   large_rows=large_rows)  # fmt: skip
        symbols = _SCALE_SYMBOLS
        while symbols > 1 and replace(base, symbols=symbols, days=3).file_count() > files:
            symbols -= 1
        base = replace(base, symbols=symbols)
        # Exact counts without planning every candidate: a day adds the same files, and
        # so does a whole month (monthly files do not depend on the month's length).
        one_day = replace(base, days=1).file_count()
        per_day = replace(base, days=2).file_count() - one_day
        month = next_month(start)
        month_days = (next_month(month) - month).days
        per_month = sum(
            f.frequency is Frequency.MONTHLY
            for f in plan_files(replace(base, start=month, days=month_days))
        )

        def count(days: int) -> int:
            months = len(replace(base, days=days).months(Market.SPOT))
            return one_day + (days - 1) * per_day + months * per_month + min(large, days)

        guess = max(1, min(MAX_WINDOW_DAYS, round(files / max(1, per_day))))
        candidates = range(max(1, guess - 40), min(MAX_WINDOW_DAYS, guess + 40) + 1)
        days = min(candidates, key=lambda d: (abs(count(d) - files), d))
        return replace(base, days=days, large_files=min(large, days))

    def file_count(self) -> int:
        """Data files (zips) the sample writes: the plan, minus the missing, plus real files."""
        plan = plan_files(self)
        missing = _defects(self, plan)[0] if self.defects else set()
        real = sum(1 for key in real_files() if key.endswith(".zip"))
        return len(plan) - len(missing) + (real if self.include_real_files else 0)

    def window(self, market: Market) -> list[date]:
        """The daily files' days: from `start`, or around the futures header or the spot
        microsecond cut-over."""
        if self.start is not None:
            return [self.start + timedelta(days=n) for n in range(self.days)]
        cutover = FUTURES_HEADER_SINCE if market.is_futures else SPOT_MICROSECONDS_SINCE
        first = cutover - timedelta(days=self.days // 2) if self.days > 1 else cutover
        return [first + timedelta(days=n) for n in range(self.days)]

    def months(self, market: Market) -> tuple[date, ...]:
        """Monthly files: fixed around the cut-overs, or the months the window holds whole."""
        if market is Market.OPTION:
            return ()
        if self.start is None:
            return SPOT_MONTHS if market is Market.SPOT else FUTURES_MONTHS
        last = self.start + timedelta(days=self.days - 1)
        first = self.start if self.start.day == 1 else next_month(self.start)
        months = []
        while next_month(first) - timedelta(days=1) <= last:
            months.append(first)
            first = next_month(first)
        return tuple(months)

    def symbols_of(self, market: Market, data_type: DataType | None = None) -> list[str]:
        """The first `symbols` of the market's pool, then made-up names (`SIMAUSDT`, ...)."""
        if market is Market.OPTION:
            pool = BVOL_POOL if data_type is DataType.BVOL_INDEX else EOH_POOL
            return list(pool[: self.symbols])
        pool = SYMBOL_POOLS[market]
        extra = [_made_up(market, n) for n in range(max(0, self.symbols - len(pool)))]
        return list(pool[: self.symbols]) + extra

    def large(self) -> list[ArchiveFile]:
        """The large trades files: spot BTCUSDT on the window's last `large_files` days."""
        days = self.window(Market.SPOT)[self.days - self.large_files :] if self.large_files else []
        return [
            ArchiveFile(Market.SPOT, Frequency.DAILY, DataType.TRADES, LARGE_SYMBOL, day)
            for day in days
        ]


def _made_up(market: Market, n: int) -> str:
    """`SIMA`, `SIMB`, ..., `SIMZ`, `SIMBA`, ...: no clash with a named pool or each other."""
    letters = ""
    n += 1
    while n:
        n, digit = divmod(n - 1, 26)
        letters = chr(ord("A") + digit) + letters
    base = f"SIM{letters}"
    return f"{base}USD_PERP" if market is Market.FUTURES_CM else f"{base}USDT"


@dataclass(frozen=True)
class DelistedSymbol:
    market: str
    symbol: str
    last_day: date


@dataclass
class SampleManifest:
    """What the sample holds and what was planted in it (keys relative to the bucket)."""

    seed: int
    revision: int
    files: list[str] = field(default_factory=list)  # every data zip written, incl. real ones
    real: list[str] = field(default_factory=list)  # real Binance files included as they are
    missing: list[str] = field(default_factory=list)  # planned keys deliberately not written
    corrupt: list[str] = field(default_factory=list)  # zip bytes do not match the sidecar
    replaced: list[str] = field(default_factory=list)  # content + checksum change per revision
    delisted: list[DelistedSymbol] = field(default_factory=list)
    days: dict[str, list[date]] = field(default_factory=dict)  # per market: daily-file days
    months: dict[str, list[str]] = field(default_factory=dict)  # per market: monthly files
    objects: int = 0  # zips + sidecars
    bytes: int = 0
    uploaded: int = 0  # set by the publisher: objects actually written
    unchanged: int = 0  # set by the publisher: objects already there with the same bytes
    pruned: int = 0  # set by the publisher: stale archive objects deleted

    @property
    def checksums(self) -> list[str]:
        return [key + CHECKSUM_SUFFIX for key in self.files]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["delisted"] = [
            {**asdict(d), "last_day": d.last_day.isoformat()} for d in self.delisted
        ]
        data["days"] = {m: [d.isoformat() for d in days] for m, days in self.days.items()}
        return data


@dataclass(frozen=True)
class Sample:
    objects: dict[str, bytes]  # key -> bytes, zips and sidecars
    manifest: SampleManifest


def plan_files(spec: SampleSpec) -> list[ArchiveFile]:
    """Every file the sample publishes before defects are applied (sorted)."""
    files: list[ArchiveFile] = []
    for market in Market:
        for frequency in (Frequency.DAILY, Frequency.MONTHLY):
            periods = spec.window(market) if frequency is Frequency.DAILY else spec.months(market)
            for data_type in data_types_for(market, frequency):
                intervals: list[str | None] = [None]
                if data_type.has_interval:
                    published = intervals_for(market, frequency)
                    intervals = [i for i in spec.intervals if i in published]
                symbols = spec.symbols_of(market, data_type)
                if spec.defects and market in DELISTED and frequency is Frequency.DAILY:
                    symbols.append(DELISTED[market])
                for symbol in symbols:
                    for period in periods:
                        if symbol in DELISTED.values() and period != periods[0]:
                            continue
                        for interval in intervals:
                            files.append(
                                ArchiveFile(market, frequency, data_type, symbol, period, interval)
                            )
    return sorted(files + spec.large())


def _defects(
    spec: SampleSpec, plan: list[ArchiveFile]
) -> tuple[set[ArchiveFile], ArchiveFile, ArchiveFile]:
    um_days, um_symbol = spec.window(Market.FUTURES_UM), spec.symbols_of(Market.FUTURES_UM)[0]
    missing: set[ArchiveFile] = set()
    if len(um_days) >= 3:
        middle = um_days[len(um_days) // 2]
        missing = {
            f
            for f in plan
            if (f.market, f.symbol, f.frequency, f.period)
            == (Market.FUTURES_UM, um_symbol, Frequency.DAILY, middle)
        }
    cm_symbol = spec.symbols_of(Market.FUTURES_CM)[0]
    last = spec.window(Market.FUTURES_CM)[-1]
    corrupt = ArchiveFile(Market.FUTURES_CM, Frequency.DAILY, DataType.AGG_TRADES, cm_symbol, last)
    replaced = ArchiveFile(Market.FUTURES_UM, Frequency.DAILY, DataType.METRICS, um_symbol, last)
    return missing, corrupt, replaced


def zip_csv(name: str, data: bytes, when: datetime) -> bytes:
    """A zip like Binance's: one deflated member, Unix 0644, a fixed timestamp."""
    info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o100644 << 16
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(info, data, compresslevel=6)
    return buffer.getvalue()


def zip_chunks(name: str, chunks: Iterator[bytes], when: datetime) -> bytes:
    """`zip_csv` for a CSV made in pieces: compressed as it comes, never whole in memory."""
    info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o100644 << 16
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", compresslevel=6) as archive,
        archive.open(info, "w") as member,
    ):
        for chunk in chunks:
            member.write(chunk)
    return buffer.getvalue()


def _published_at(file: ArchiveFile, revision: int) -> datetime:
    _, last = period_days(file)
    return datetime.combine(last + timedelta(days=1), time(0, 13 + revision % 40, 42))


def real_files() -> dict[str, bytes]:
    """The real Binance files shipped with the package, by archive key."""
    root = resources.files("crypto_lakehouse.archive").joinpath("binance_files")
    found: dict[str, bytes] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in node.iterdir():
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            else:
                found[f"{prefix}{child.name}"] = child.read_bytes()

    walk(root, "")
    return dict(sorted(found.items()))


class SampleBuild:
    """Renders the sample one object at a time; `manifest` is complete once `objects()` ends.

    Why: at 50,000 files the objects (zips, sidecars, a few large trades days) would take
    hundreds of MB if held together; a publisher streams them to staging instead.
    """

    def __init__(self, spec: SampleSpec, *, root: str = ROOT) -> None:
        self.spec = spec
        self.root = root
        self.plan = plan_files(spec)
        self.manifest = SampleManifest(seed=spec.seed, revision=spec.revision)
        self._real = real_files() if spec.include_real_files else {}

    @property
    def expected_objects(self) -> int:
        """Zips + sidecars + real files this build yields (known before rendering)."""
        missing = _defects(self.spec, self.plan)[0] if self.spec.defects else set()
        return 2 * (len(self.plan) - len(missing)) + len(self._real)

    def objects(self) -> Iterator[tuple[str, bytes]]:
        """(key, bytes) of every object, zips followed by their sidecars, in plan order."""
        spec, root, manifest = self.spec, self.root, self.manifest
        missing, corrupt, replaced = _defects(spec, self.plan)
        if not spec.defects:
            missing, corrupt, replaced = set(), None, None
        large = set(spec.large())
        simulations: dict[tuple[Market, str], Simulation] = {}
        busy_days = frozenset(day for market in Market for day in spec.window(market))
        for file in self.plan:
            key = file.key_under(root)
            if file in missing:
                manifest.missing.append(key)
                continue
            sim = simulations.get((file.market, file.symbol))
            if sim is None:
                sim = Simulation(
                    spec.seed,
                    file.market,
                    file.symbol,
                    orders_per_day=spec.orders_per_day,
                    busy_days=busy_days,
                    quiet_orders_per_day=max(1, spec.orders_per_day // 4),
                )
                simulations[file.market, file.symbol] = sim
            revision = spec.revision if file == replaced else 1
            when = _published_at(file, revision)
            if file in large:
                data = zip_chunks(file.csv_name, bulk_trades(file, sim, spec.large_rows), when)
            else:
                data = zip_csv(file.csv_name, render(file, sim, revision=revision), when)
            sidecar = checksum_of(data, file.filename).line().encode()
            if file == corrupt:
                middle = len(data) // 2
                data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
                manifest.corrupt.append(key)
            if file == replaced:
                manifest.replaced.append(key)
            manifest.files.append(key)
            yield from self._counted(key, data)
            yield from self._counted(key + CHECKSUM_SUFFIX, sidecar)
        for key, data in self._real.items():
            full = root + key[len(ROOT) :]
            if full.endswith(".zip"):
                parse_key(full, root)  # the real names must parse; fail loudly if not
                manifest.real.append(full)
                manifest.files.append(full)
            yield from self._counted(full, data)
        if spec.defects:
            for market, symbol in DELISTED.items():
                manifest.delisted.append(
                    DelistedSymbol(market.value, symbol, spec.window(market)[0])
                )
        for market in Market:
            manifest.days[market.value] = spec.window(market)
            manifest.months[market.value] = [f"{m:%Y-%m}" for m in spec.months(market)]
        manifest.files.sort()

    def _counted(self, key: str, data: bytes) -> Iterator[tuple[str, bytes]]:
        self.manifest.objects += 1
        self.manifest.bytes += len(data)
        yield key, data


def build_sample(spec: SampleSpec, *, root: str = ROOT) -> Sample:
    """Render every object of the sample in memory (a few MB by default)."""
    build = SampleBuild(spec, root=root)
    objects = dict(build.objects())
    return Sample(objects, build.manifest)


def md5_hex(data: bytes) -> str:
    """S3's ETag of a single-part upload; lets the publisher skip unchanged objects."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
