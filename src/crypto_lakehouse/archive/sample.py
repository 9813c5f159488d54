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
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import asdict, dataclass, field
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
from crypto_lakehouse.archive.paths import CHECKSUM_SUFFIX, ROOT, ArchiveFile, parse_key
from crypto_lakehouse.archive.rendering import render
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
MAX_DAYS = 28


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

    def __post_init__(self) -> None:
        most = max(len(p) for p in SYMBOL_POOLS.values())
        if not 1 <= self.symbols <= most:
            raise ConfigError(f"symbols must be 1..{most}, got {self.symbols}")
        if not 1 <= self.days <= MAX_DAYS:
            raise ConfigError(f"days must be 1..{MAX_DAYS}, got {self.days}")
        if self.revision < 1:
            raise ConfigError(f"revision must be 1 or more, got {self.revision}")
        if not 1 <= self.orders_per_day <= 100_000:
            raise ConfigError("orders_per_day must be 1..100000")
        unknown = [i for i in self.intervals if i not in ALL_INTERVALS]
        if unknown or not self.intervals:
            raise ConfigError(
                f"unknown intervals {unknown}; choose from {', '.join(ALL_INTERVALS)}"
            )

    def window(self, market: Market) -> list[date]:
        """The daily files' days: around the futures header or the spot microsecond cut-over."""
        cutover = FUTURES_HEADER_SINCE if market.is_futures else SPOT_MICROSECONDS_SINCE
        first = cutover - timedelta(days=self.days // 2) if self.days > 1 else cutover
        return [first + timedelta(days=n) for n in range(self.days)]

    def months(self, market: Market) -> tuple[date, ...]:
        return {Market.SPOT: SPOT_MONTHS, Market.OPTION: ()}.get(market, FUTURES_MONTHS)

    def symbols_of(self, market: Market, data_type: DataType | None = None) -> list[str]:
        if market is Market.OPTION:
            pool = BVOL_POOL if data_type is DataType.BVOL_INDEX else EOH_POOL
            return list(pool[: self.symbols])
        return list(SYMBOL_POOLS[market][: self.symbols])


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
                if market in DELISTED and frequency is Frequency.DAILY:
                    symbols.append(DELISTED[market])
                for symbol in symbols:
                    for period in periods:
                        if symbol in DELISTED.values() and period != periods[0]:
                            continue
                        for interval in intervals:
                            files.append(
                                ArchiveFile(market, frequency, data_type, symbol, period, interval)
                            )
    return sorted(files)


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


def build_sample(spec: SampleSpec, *, root: str = ROOT) -> Sample:
    """Render every object of the sample in memory (a few MB by default)."""
    plan = plan_files(spec)
    missing, corrupt, replaced = _defects(spec, plan)
    manifest = SampleManifest(seed=spec.seed, revision=spec.revision)
    objects: dict[str, bytes] = {}
    simulations: dict[tuple[Market, str], Simulation] = {}
    busy_days = frozenset(day for market in Market for day in spec.window(market))
    for file in plan:
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
        data = zip_csv(
            file.csv_name, render(file, sim, revision=revision), _published_at(file, revision)
        )
        sidecar = checksum_of(data, file.filename).line().encode()
        if file == corrupt:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
            manifest.corrupt.append(key)
        if file == replaced:
            manifest.replaced.append(key)
        objects[key] = data
        objects[key + CHECKSUM_SUFFIX] = sidecar
        manifest.files.append(key)
    if spec.include_real_files:
        for key, data in real_files().items():
            full = root + key[len(ROOT) :]
            objects[full] = data
            if full.endswith(".zip"):
                parse_key(full, root)  # the real names must parse; fail loudly if not
                manifest.real.append(full)
                manifest.files.append(full)
    for market, symbol in DELISTED.items():
        manifest.delisted.append(DelistedSymbol(market.value, symbol, spec.window(market)[0]))
    for market in Market:
        manifest.days[market.value] = spec.window(market)
        manifest.months[market.value] = [f"{m:%Y-%m}" for m in spec.months(market)]
    manifest.files.sort()
    manifest.objects = len(objects)
    manifest.bytes = sum(len(v) for v in objects.values())
    return Sample(objects, manifest)


def md5_hex(data: bytes) -> str:
    """S3's ETag of a single-part upload; lets the publisher skip unchanged objects."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()
