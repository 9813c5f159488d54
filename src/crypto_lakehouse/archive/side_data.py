"""Rows of the data sets that are not summaries of trades: funding, depth, metrics,
liquidations and the option data sets. They follow the simulation's daily price level.

`revision` changes the values of a file Binance "republished" (the sample's replaced file);
every other file ignores it, so a new revision changes exactly the planted files.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from crypto_lakehouse.archive.catalog import DataType
from crypto_lakehouse.archive.paths import ArchiveFile
from crypto_lakehouse.archive.simulation import DAY_US, US, Simulation, day_start_us
from crypto_lakehouse.archive.style import Style, fixed, period_days

_DEPTH_LEVELS = (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5)


def rows(file: ArchiveFile, sim: Simulation, style: Style, *, revision: int = 1) -> list[str]:
    handler = {
        DataType.FUNDING_RATE: _funding_rate,
        DataType.BOOK_DEPTH: _book_depth,
        DataType.METRICS: _metrics,
        DataType.LIQUIDATION_SNAPSHOT: _liquidations,
        DataType.BVOL_INDEX: _bvol_index,
        DataType.EOH_SUMMARY: _eoh_summary,
    }[file.data_type]
    return handler(file, sim, style, revision)


def _text_time(time_us: int) -> str:
    return datetime.fromtimestamp(time_us // US, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _funding_rate(file: ArchiveFile, sim: Simulation, _s: Style, revision: int) -> list[str]:
    first, last = period_days(file)
    rng = sim.rng("funding", file.period, revision)
    out = []
    for step in range(((last - first).days + 1) * 3):
        calc_ms = (day_start_us(first) + step * 8 * 3600 * US) // 1000
        rate = round(rng.gauss(0.0001, 0.00008) * 10**8)
        out.append(f"{calc_ms},8,{fixed(rate, 8)}")
    return out


def _book_depth(file: ArchiveFile, sim: Simulation, _s: Style, revision: int) -> list[str]:
    rng = sim.rng("depth", file.period, revision)
    level = sim.price_level(file.period)
    out = []
    for snapshot in range(96):  # one every 15 minutes
        stamp = _text_time(day_start_us(file.period) + snapshot * 900 * US)
        depth = 0.0
        for pct in _DEPTH_LEVELS:
            depth = depth + rng.uniform(50, 400) if pct not in (-1, 1) else rng.uniform(50, 400)
            notional = depth * level * (1 + pct / 100)
            out.append(f"{stamp},{pct:.2f},{depth:.8f},{notional:.8f}")
    return out


def _metrics(file: ArchiveFile, sim: Simulation, _s: Style, revision: int) -> list[str]:
    rng = sim.rng("metrics", file.period, revision)
    level = sim.price_level(file.period)
    open_interest = rng.uniform(20_000, 90_000)
    out = []
    for step in range(288):  # every 5 minutes
        stamp = _text_time(day_start_us(file.period) + step * 300 * US)
        open_interest *= 1 + rng.gauss(0, 0.002)
        ratios = [rng.uniform(0.6, 2.4) for _ in range(4)]
        out.append(
            f"{stamp},{file.symbol},{open_interest:.8f},{open_interest * level:.8f},"
            + ",".join(f"{r:.8f}" for r in ratios)
        )
    return out


def _liquidations(file: ArchiveFile, sim: Simulation, s: Style, revision: int) -> list[str]:
    rng = sim.rng("liquidations", file.period, revision)
    scale = 10**sim.instrument.price_decimals
    level = sim.price_level(file.period)
    times = sorted(rng.randrange(DAY_US // 1000) for _ in range(rng.randint(3, 12)))
    out = []
    for offset_ms in times:
        side = rng.choice(("BUY", "SELL"))
        quantity = rng.randint(1, 400)
        price = round(level * rng.uniform(0.97, 1.03) * scale)
        average = price + rng.randint(-3, 3)
        out.append(
            f"{day_start_us(file.period) // 1000 + offset_ms},{side},LIMIT,IOC,{quantity},"
            f"{s.price(price)},{s.price(average)},FILLED,{quantity},{quantity}"
        )
    return out


def _bvol_index(file: ArchiveFile, sim: Simulation, _s: Style, revision: int) -> list[str]:
    rng = sim.rng("bvol", file.period, revision)
    base = file.symbol.split("BVOL", 1)[0]
    value = rng.uniform(40, 70)
    out = []
    for step in range(288):
        value = max(5.0, value + rng.gauss(0, 0.3))
        calc_ms = (day_start_us(file.period) + step * 300 * US) // 1000
        out.append(f"{calc_ms},{file.symbol},{base}BVOL,USDT,{value:.2f}")
    return out


def _expiries(day: date) -> list[date]:
    friday = day + timedelta(days=(4 - day.weekday()) % 7 or 7)
    return [friday, friday + timedelta(days=7)]


def _eoh_summary(file: ArchiveFile, sim: Simulation, _s: Style, revision: int) -> list[str]:
    rng = sim.rng("eoh", file.period, revision)
    underlying = file.symbol
    asset = underlying.removesuffix("USDT")
    spot = sim.price_level(file.period)
    step = 10 ** max(0, len(str(int(spot))) - 2)
    atm = round(spot / step) * step
    out = []
    for hour in range(24):
        for expiry in _expiries(file.period):
            for strike in (atm - step, atm, atm + step):
                for kind in ("C", "P"):
                    symbol = f"{asset}-{expiry:%y%m%d}-{int(strike)}-{kind}"
                    intrinsic = max(0.0, (spot - strike) if kind == "C" else (strike - spot))
                    mark = intrinsic + spot * rng.uniform(0.005, 0.03)
                    o, c = mark * rng.uniform(0.97, 1.03), mark * rng.uniform(0.97, 1.03)
                    high, low = max(o, c) * 1.01, min(o, c) * 0.99
                    volume = rng.randint(0, 40)
                    iv = rng.uniform(0.35, 0.8)
                    buy_iv = f"{iv - 0.01:.4f}" if volume else ""  # empty when no bids
                    delta = rng.uniform(0.05, 0.95) * (1 if kind == "C" else -1)
                    values = [
                        f"{o:.2f}", f"{high:.2f}", f"{low:.2f}", f"{c:.2f}",
                        str(volume), f"{volume * mark:.2f}",
                        f"{mark * 0.99:.2f}", f"{mark * 1.01:.2f}",
                        f"{rng.uniform(0.1, 5):.2f}", f"{rng.uniform(0.1, 5):.2f}",
                        buy_iv, f"{iv + 0.01:.4f}", f"{mark:.2f}", f"{iv:.4f}",
                        f"{delta:.5f}", f"{rng.uniform(0, 0.001):.8f}",
                        f"{rng.uniform(1, 60):.5f}", f"{-rng.uniform(5, 200):.5f}",
                        f"{rng.uniform(0, 300):.2f}", f"{rng.uniform(0, 300) * spot:.2f}",
                    ]  # fmt: skip
                    out.append(
                        f"{file.period.isoformat()},{hour},{symbol},{underlying},{kind},"
                        f"{int(strike)}," + ",".join(values)
                    )
    return out
