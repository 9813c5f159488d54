"""Incremental gold against real servers: after silver changes, a build recomputes only the
(market, symbol, month) partitions the ledger shows touched, rewrites only those, and ends
with exactly the rows a full rebuild gives; a build with nothing new writes nothing.

Silver is written here directly in its layout (Arrow rows appended with pyiceberg, plus the
ledger rows the silver builder would record), so these tests exercise gold alone.
"""

from __future__ import annotations

import math
import warnings
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from lake_helpers import Lake
from pyiceberg.expressions import EqualTo
from typer.testing import CliRunner

from crypto_lakehouse.archive.catalog import DataType, Market
from crypto_lakehouse.lake.gold import GOLD_TABLES, GoldResult, build_gold
from crypto_lakehouse.lake.ledger import FileRecord, Status
from crypto_lakehouse.lake.tables import SilverTable

pytestmark = pytest.mark.slow
NO_MARGIN = timedelta(0)
SPOT, UM, CM = Market.SPOT, Market.FUTURES_UM, Market.FUTURES_CM


def _minute_bars(symbol: str, day: date, seed: float) -> list[dict]:
    """1440 deterministic 1m bars for one UTC day."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    bars = []
    for i in range(1440):
        price = 100 + seed + 5 * math.sin(i / 90) + day.day
        volume = 1.0 + (i % 7) * 0.25
        bars.append(
            {
                "open_time": start + timedelta(minutes=i),
                "open": price,
                "high": price + 0.5,
                "low": price - 0.25,
                "close": price + 0.125,
                "volume": volume,
                "close_time": start + timedelta(minutes=i + 1, microseconds=-1),
                "quote": volume * price,
                "count": 1 + i % 5,
                "taker": volume / 2,
                "taker_quote": volume * price / 2,
            }
        )
    return bars


def _resampled(bars: list[dict], minutes: int) -> list[dict]:
    """Binance's own bars at a coarser interval, from the same 1m bars."""
    out = []
    for at in range(0, len(bars), minutes):
        part = bars[at : at + minutes]
        sums = {k: sum(b[k] for b in part) for k in ("volume", "quote", "count", "taker")}
        out.append(
            {
                **part[0],
                **sums,
                "taker_quote": sum(b["taker_quote"] for b in part),
                "high": max(b["high"] for b in part),
                "low": min(b["low"] for b in part),
                "close": part[-1]["close"],
                "close_time": part[-1]["close_time"],
            }
        )
    return out


MINUTES = {"1m": 1, "5m": 5, "1h": 60, "1d": 1440}


class Silver:
    """Writes silver rows and ledger rows the way the silver builder leaves them."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def put(
        self,
        market: Market,
        data_type: DataType,
        symbol: str,
        period: date,
        columns: dict[str, list],
        *,
        interval: str | None = None,
        frequency: str = "daily",
    ) -> None:
        layout = SilverTable.of(market, data_type)
        folder = f"{symbol}/{interval}" if interval else symbol
        stem = f"{symbol}-{interval}" if interval else f"{symbol}-{data_type.value}"
        when = period.isoformat() if frequency == "daily" else period.strftime("%Y-%m")
        path = f"data/{market.value}/{frequency}/{data_type.value}/{folder}/{stem}-{when}.zip"
        raw = pa.table({name: columns[name] for name in layout.csv.names})
        rows = layout.decorate(raw, symbol=symbol, interval=interval, source_file=path)
        table = self.lake.builder.table_for(layout)
        with warnings.catch_warnings(), table.transaction() as tx:
            warnings.filterwarnings("ignore", message="Delete operation did not match")
            tx.overwrite(rows, overwrite_filter=EqualTo("source_file", path))  # a replaced file
        self.lake.ledger.record(
            FileRecord(
                path=path,
                sha256="0" * 64,
                table_name=layout.identifier,
                market=market.value,
                frequency=frequency,
                data_type=data_type.value,
                symbol=symbol,
                interval=interval,
                period=period,
                status=Status.TRANSFORMED,
                schema_fingerprint="test",
                rows=rows.num_rows,
            )
        )

    def klines(
        self,
        market: Market,
        symbol: str,
        interval: str,
        day: date,
        seed: float = 0.0,
        tamper: bool = False,
    ) -> None:
        bars = _resampled(_minute_bars(symbol, day, seed), MINUTES[interval])
        if tamper:
            bars[0] = {**bars[0], "close": bars[0]["close"] * 1.01}
        names = SilverTable.of(market, DataType.KLINES).csv.names
        ours = ["open_time", "open", "high", "low", "close", "volume", "close_time"]
        ours += ["quote", "count", "taker", "taker_quote"]
        columns = {n: [b[o] for b in bars] for n, o in zip(names, ours, strict=False)}
        columns["ignore"] = ["0"] * len(bars)
        self.put(market, DataType.KLINES, symbol, day, columns, interval=interval)

    def trades(self, symbol: str, day: date, n: int = 40) -> None:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        base = day.toordinal() * 1000
        prices = [50 + (i % 9) * 0.5 for i in range(n)]
        qty = [0.1 + (i % 4) * 0.05 for i in range(n)]
        columns = {
            "id": [base + i for i in range(n)],
            "price": prices,
            "qty": qty,
            "quote_qty": [p * q for p, q in zip(prices, qty, strict=True)],
            "time": [start + timedelta(minutes=30 * i) for i in range(n)],
            "is_buyer_maker": [i % 3 == 0 for i in range(n)],
            "is_best_match": [True] * n,
        }
        self.put(SPOT, DataType.TRADES, symbol, day, columns)

    def funding(self, symbol: str, month: date, days: list[int]) -> None:
        times = [
            datetime(month.year, month.month, d, h, tzinfo=UTC) for d in days for h in (0, 8, 16)
        ]
        columns = {
            "calc_time": times,
            "funding_interval_hours": [8] * len(times),
            "last_funding_rate": [0.0001 * (1 + i % 3) for i in range(len(times))],
        }
        self.put(UM, DataType.FUNDING_RATE, symbol, month, columns, frequency="monthly")


JAN, FEB = date(2026, 1, 1), date(2026, 2, 1)


def _seed_silver(silver: Silver) -> None:
    """Two months, three markets: A has 1m/1h/1d, B only 1h/1d, C (COIN-M) 5m/1h."""
    for day in (date(2026, 1, 30), date(2026, 1, 31), date(2026, 2, 1), date(2026, 2, 2)):
        for interval in ("1m", "1h", "1d"):
            silver.klines(SPOT, "AAAUSDT", interval, day)
        silver.trades("AAAUSDT", day)
    for day in (date(2026, 1, 31), date(2026, 2, 1)):
        for interval in ("1h", "1d"):
            silver.klines(SPOT, "BBBUSDT", interval, day, seed=7)
    for interval in ("5m", "1h"):
        silver.klines(CM, "CCCUSD_PERP", interval, date(2026, 2, 1), seed=3)
    silver.funding("AAAUSDT", JAN, [30, 31])
    silver.funding("AAAUSDT", FEB, [1, 2])


def _gold(lake: Lake) -> dict[str, pa.Table]:
    """Every gold table's rows, sorted by its key (order inside files is not compared)."""
    out = {}
    for spec in GOLD_TABLES:
        rows = lake.rows(spec.identifier)
        out[spec.name] = rows.sort_by([(k, "ascending") for k in spec.key]).combine_chunks()
    return out


def _snapshot_ids(lake: Lake) -> dict[str, int | None]:
    ids = {}
    for spec in GOLD_TABLES:
        snapshot = lake.warehouse.catalog.load_table(spec.identifier).current_snapshot()
        ids[spec.name] = snapshot.snapshot_id if snapshot else None
    return ids


def _files_by_month(lake: Lake, identifier: str) -> dict[date, set[str]]:
    table = lake.warehouse.catalog.load_table(identifier)
    files: dict[date, set[str]] = {}
    for task in table.scan().plan_files():
        files.setdefault(task.file.partition[0], set()).add(task.file.file_path)
    epoch = date(1970, 1, 1).toordinal()
    return {k if isinstance(k, date) else date.fromordinal(epoch + k): v for k, v in files.items()}


def _outside_a_feb(rows: pa.Table) -> pa.Table:
    a_feb = pc.and_(pc.equal(rows["symbol"], "AAAUSDT"), pc.equal(rows["month"], FEB))
    return rows.filter(pc.invert(a_feb))


def _full_rebuild(lake: Lake) -> dict[str, pa.Table]:
    """Drop every gold table and build from scratch: what a full build gives on this data."""
    for spec in GOLD_TABLES:
        lake.warehouse.catalog.drop_table(spec.identifier)
    result = build_gold(lake.warehouse, full=True)
    assert all(result.full.values())
    return _gold(lake)


def _assert_same(got: dict[str, pa.Table], want: dict[str, pa.Table]) -> None:
    for name in want:
        assert got[name].num_rows == want[name].num_rows, name
        differ = [c for c in want[name].column_names if not got[name][c].equals(want[name][c])]
        assert differ == [], (name, differ)


def test_incremental_equals_full_and_rewrites_only_touched_partitions(lake: Lake) -> None:
    silver = Silver(lake)
    _seed_silver(silver)
    first = build_gold(lake.warehouse, margin=NO_MARGIN)
    assert all(first.full.values())
    assert first.rows["gold.klines_1h"] == 4 * 24 + 2 * 0 + 24  # B has nothing below 1h
    assert first.mismatches == [] and first.checked > 0
    assert first.commits["gold.klines_1h"] == 1  # spot and COIN-M partitions, one commit
    before = _gold(lake)
    jan_files = _files_by_month(lake, "gold.klines_1h")[JAN]
    history = {
        s.identifier: len(lake.warehouse.catalog.load_table(s.identifier).history())
        for s in GOLD_TABLES
    }

    # One new day for A: its February partition changes, nothing else.
    for interval in ("1m", "1h", "1d"):
        silver.klines(SPOT, "AAAUSDT", interval, date(2026, 2, 3))
    silver.trades("AAAUSDT", date(2026, 2, 3))
    result = build_gold(lake.warehouse, margin=NO_MARGIN)
    assert not any(result.full.values())
    assert result.recomputed == {
        "gold.klines_1h": 1,
        "gold.klines_1d": 1,
        "gold.kline_checks": 1,
        "gold.funding_daily": 0,
        "gold.trades_daily": 1,
    }
    assert result.commits["gold.funding_daily"] == 0 and result.commits["gold.klines_1h"] == 1
    assert result.rows["gold.klines_1h"] == first.rows["gold.klines_1h"] + 24
    after = _gold(lake)
    assert after["funding_daily"].equals(before["funding_daily"])
    # January's data files are the very same objects; the new snapshots touched one month.
    assert _files_by_month(lake, "gold.klines_1h")[JAN] == jan_files
    table = lake.warehouse.catalog.load_table("gold.klines_1h")
    new = table.history()[history["gold.klines_1h"] :]
    assert new
    feb_rows = after["klines_1h"].filter(pc.equal(after["klines_1h"]["month"], FEB))
    added = 0
    for entry in new:
        summary = table.snapshot_by_id(entry.snapshot_id).summary
        assert summary["changed-partition-count"] == "1"
        added += int(summary.get("added-records") or 0)
    assert added <= feb_rows.num_rows
    # Only the new day was recomputed and written: February's two older days of A stay in
    # their data files (a whole-month recompute would add 3 x 24 rows).
    assert added == 24
    for name, rows in after.items():  # every row outside (spot, A, February) as it was
        assert _outside_a_feb(rows).equals(_outside_a_feb(before[name])), name

    incremental = _gold(lake)
    _assert_same(_full_rebuild(lake), incremental)


def test_nothing_new_writes_no_snapshot(lake: Lake) -> None:
    silver = Silver(lake)
    _seed_silver(silver)
    build_gold(lake.warehouse)
    ids = _snapshot_ids(lake)
    # The ledger rows are younger than the margin: the partitions are recomputed, found
    # equal to what is stored, and not written.
    again = build_gold(lake.warehouse)
    assert sum(again.recomputed.values()) > 0
    assert set(again.commits.values()) == {0}
    assert _snapshot_ids(lake) == ids
    # A full build on an up-to-date lake recomputes everything and writes nothing either.
    full = build_gold(lake.warehouse, full=True)
    assert all(full.full.values()) and set(full.commits.values()) == {0}
    assert _snapshot_ids(lake) == ids


def test_a_finer_interval_recomputes_every_month_of_the_symbol(lake: Lake) -> None:
    silver = Silver(lake)
    _seed_silver(silver)
    build_gold(lake.warehouse, margin=NO_MARGIN)
    days_b = lake.rows("gold.klines_1d").filter(pc.equal(pc.field("symbol"), "BBBUSDT"))
    assert days_b.num_rows == 2 and set(days_b["source_interval"].to_pylist()) == {"1h"}

    # B gets 1m bars for one February day: a full build resamples B from 1m everywhere, so
    # B's January (which has no 1m bars) leaves klines_1d and February's day is from 1m.
    silver.klines(SPOT, "BBBUSDT", "1m", date(2026, 2, 1), seed=7)
    result = build_gold(lake.warehouse, margin=NO_MARGIN)
    assert result.recomputed["gold.klines_1d"] == 2  # (B, Feb) touched + (B, Jan) by the change
    days_b = lake.rows("gold.klines_1d").filter(pc.equal(pc.field("symbol"), "BBBUSDT"))
    assert days_b["open_time"].to_pylist() == [datetime(2026, 2, 1, tzinfo=UTC)]
    assert days_b["source_interval"].to_pylist() == ["1m"]

    incremental = _gold(lake)
    _assert_same(_full_rebuild(lake), incremental)


def test_mismatches_are_kept_and_the_cli_exits_3(lake: Lake, tmp_path, monkeypatch) -> None:
    silver = Silver(lake)
    _seed_silver(silver)
    assert build_gold(lake.warehouse, margin=NO_MARGIN).mismatches == []
    silver.klines(SPOT, "AAAUSDT", "1h", date(2026, 2, 1), tamper=True)
    result = build_gold(lake.warehouse, margin=NO_MARGIN)
    assert result.recomputed["gold.kline_checks"] == 1
    assert result.new_mismatches == 1
    (bad,) = result.mismatches
    assert (bad["symbol"], bad["interval"], bad["mismatched"]) == ("AAAUSDT", "1h", "close")
    assert bad["open_time"] == datetime(2026, 2, 1, tzinfo=UTC)

    again: GoldResult = build_gold(lake.warehouse, margin=NO_MARGIN)
    assert sum(again.recomputed.values()) == 0 and again.new_mismatches == 0
    assert len(again.mismatches) == 1  # still in gold.kline_checks, still reported

    env = {"LAKEHOUSE_HOME": str(tmp_path / "home"), **lake.settings_env()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    from crypto_lakehouse.cli import app

    out = CliRunner().invoke(app, ["gold", "--full"])
    assert out.exit_code == 3, out.output
    assert "mismatch" in out.output and "AAAUSDT" in out.output


def _rows_read(conn, statement) -> int:
    """Rows the plan's scans of lake_silver_files produced or filtered out (EXPLAIN ANALYZE)."""
    compiled = statement.compile(conn.engine, compile_kwargs={"render_postcompile": True})
    explain = f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}"
    plan = conn.exec_driver_sql(explain, compiled.params).scalar()
    read = 0

    def walk(node: dict) -> None:
        nonlocal read
        if node.get("Relation Name") == "lake_silver_files":
            rows = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
            read += rows * node.get("Actual Loops", 1)
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return read


def test_ledger_questions_read_what_changed_not_the_ledger(lake: Lake) -> None:
    """20,000 older ledger rows: what changed, and each symbol's finest interval, are
    answered from the indexes, reading a few rows."""
    import sqlalchemy as sa

    from crypto_lakehouse.lake.gold_state import GoldState, finest_query, touched_query
    from crypto_lakehouse.lake.gold_tables import FIXED_INTERVALS
    from crypto_lakehouse.lake.ledger import FILES

    old = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for n in range(20_000):
        symbol, interval = f"S{n % 500:03d}USDT", ("1m", "1h", "1d", "5m")[n // 500 % 4]
        day = date(2024, 1, 1) + timedelta(days=n // 2000)
        rows.append(
            {
                "path": f"data/spot/daily/klines/{symbol}/{interval}/{n}.zip",
                "sha256": "0" * 64,
                "table_name": "silver.spot_klines",
                "market": "spot",
                "frequency": "daily",
                "data_type": "klines",
                "symbol": symbol,
                "interval": interval,
                "period": day,
                "month": day.replace(day=1),
                "status": "transformed",
                "rows": 24,
                "rejects": 0,
                "duplicates": 0,
                "versions": 1,
                "schema_fingerprint": "test",
                "updated_at": old + timedelta(seconds=n),
            }
        )
    for n, row in enumerate(rows[:3]):
        row["updated_at"] = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(seconds=n)
    state = GoldState(lake.config.sqlalchemy_url)
    with state.engine.begin() as conn:
        conn.execute(FILES.insert(), rows)
        conn.execute(sa.text("ANALYZE lake_silver_files"))
    since = datetime(2026, 2, 1, tzinfo=UTC)
    touched, newest = state.touched(["silver.spot_klines"], since)
    assert len(touched) == 3 and newest == datetime(2026, 3, 1, 0, 0, 2, tzinfo=UTC)
    symbols = [f"S{n:03d}USDT" for n in range(20)]
    assert set(state.finest("spot", "klines", symbols, FIXED_INTERVALS, 3600).values()) == {"1m"}
    with state.engine.connect() as conn:
        assert _rows_read(conn, touched_query(["silver.spot_klines"], since)) <= 10
        probe = finest_query("spot", "klines", symbols, FIXED_INTERVALS, 86400)
        assert _rows_read(conn, probe) <= 20 * 8  # at most one row per (symbol, interval)
    state.dispose()


def test_day_spans_widen_within_their_month() -> None:
    from crypto_lakehouse.lake.gold import Part, _parts, _widen

    spans: dict = {}
    _widen(spans, (FEB, "A"), date(2026, 2, 3), date(2026, 2, 4))
    _widen(spans, (FEB, "A"), date(2026, 2, 9), date(2026, 2, 10))
    _widen(spans, (FEB, "B"), date(2026, 1, 20), date(2026, 3, 5))  # clipped to February
    assert _parts(spans) == [
        Part(FEB, "A", date(2026, 2, 3), date(2026, 2, 10)),
        Part(FEB, "B", FEB, date(2026, 3, 1)),
    ]
    assert _parts(spans)[1].whole and not _parts(spans)[0].whole


def test_pieces_cut_days_at_the_row_bound() -> None:
    from crypto_lakehouse.lake.gold import Part, _pieces

    a, b = Part(FEB, "A", FEB, date(2026, 2, 5)), Part(FEB, "B", FEB, date(2026, 2, 3))
    group = [(SPOT, a), (SPOT, b)]
    rows = {("A", date(2026, 2, d)): 40 for d in range(1, 5)} | {("B", FEB): 500}
    pieces = _pieces(group, lambda m, s, d: rows.get((s, d), 0), 100)
    assert pieces == [
        [(SPOT, Part(FEB, "A", FEB, date(2026, 2, 3)))],  # 80 rows; a third day would be 120
        [(SPOT, Part(FEB, "A", date(2026, 2, 3), date(2026, 2, 5)))],
        [(SPOT, Part(FEB, "B", FEB, date(2026, 2, 2)))],  # one day over the bound: alone
        [(SPOT, Part(FEB, "B", date(2026, 2, 2), date(2026, 2, 3)))],
    ]
    # Under a large bound the whole group is one piece, its parts unchanged.
    assert _pieces(group, lambda m, s, d: rows.get((s, d), 0), 10_000) == [group]


def test_a_full_build_reads_silver_in_bounded_pieces_and_commits_once(lake: Lake) -> None:
    """Four trades days of 40 rows: with a bound of 50 rows, every day is read alone (at most
    40 silver rows planned per query, where one query per month plans 80), the month still
    gets one commit, and the rows are the ones an unbounded build gives."""
    silver = Silver(lake)
    _seed_silver(silver)
    bounded = build_gold(lake.warehouse, full=True, margin=NO_MARGIN, piece_rows=50)
    name = "gold.trades_daily"
    assert bounded.pieces[name] == 4 and bounded.largest_plan[name] == 40
    assert bounded.commits[name] == 1
    pieced = _gold(lake)

    for spec in GOLD_TABLES:
        lake.warehouse.catalog.drop_table(spec.identifier)
    whole = build_gold(lake.warehouse, full=True, margin=NO_MARGIN)
    assert whole.pieces[name] == 1 and whole.largest_plan[name] == 160
    assert whole.largest_plan["gold.klines_1h"] > bounded.largest_plan["gold.klines_1h"]
    _assert_same(pieced, _gold(lake))
