"""Silver on real PostgreSQL + SeaweedFS: idempotence, replacement, rejects, drift, dedup."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from lake_helpers import Lake

from crypto_lakehouse.lake.ledger import Status
from crypto_lakehouse.lake.tables import REJECTS_TABLE
from crypto_lakehouse.observability.metrics import REGISTRY

KLINES_KEY = "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2026-05-08.zip"
FUNDING_KEY = "data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2026-04.zip"
TRADES_KEY = "data/futures/um/daily/trades/ETHUSDT/ETHUSDT-trades-2024-03-01.zip"
TRADES_HEADER = "id,price,qty,quote_qty,time,is_buyer_maker"
T0 = 1709251200000  # 2024-03-01 00:00:00 UTC in ms


def _trades(ids: range, *, price: float = 3400.0, day: int = 0) -> str:
    start = T0 + day * 86_400_000
    return "".join(
        f"{i},{price + i % 7},{0.5 + i % 3},{(price + i % 7) * (0.5 + i % 3)},{start + i * 1000},"
        f"{'true' if i % 2 else 'false'}\n"
        for i in ids
    )


def _fixture(lake: Lake, binance_fixtures: Path, key: str):
    path = binance_fixtures / key
    return lake.put_bytes(key, path.read_bytes())


def test_real_files_land_typed_and_rerun_adds_nothing(lake: Lake, binance_fixtures: Path) -> None:
    klines = _fixture(lake, binance_fixtures, KLINES_KEY)
    funding = _fixture(lake, binance_fixtures, FUNDING_KEY)
    labels = {"market": "spot", "data_type": "klines"}
    counted = REGISTRY.get_sample_value("lakehouse_silver_rows_total", labels) or 0
    first = [lake.builder.transform(f) for f in (klines, funding)]
    assert REGISTRY.get_sample_value("lakehouse_silver_rows_total", labels) == counted + 24
    assert [o.status for o in first] == ["transformed", "transformed"]
    assert first[0].layout.units == {"open_time": "us", "close_time": "us"}
    assert not first[0].layout.header and first[1].layout.header

    table = lake.rows("silver.spot_klines")
    assert table.num_rows == 24
    assert table.schema.field("open_time").type == pa.timestamp("us", tz="UTC")
    assert set(table.column("symbol").to_pylist()) == {"BTCUSDT"}
    assert set(table.column("interval").to_pylist()) == {"1h"}
    assert {d.isoformat() for d in table.column("date").to_pylist()} == {"2026-05-08"}
    funding_rows = lake.rows("silver.futures_um_funding_rate")
    assert funding_rows.num_rows == 90
    assert {m.isoformat() for m in funding_rows.column("month").to_pylist()} == {"2026-04-01"}

    snapshots = {
        name: len(lake.warehouse.catalog.load_table(name).snapshots())
        for name in ("silver.spot_klines", "silver.futures_um_funding_rate")
    }
    again = [lake.builder.transform(f) for f in (klines, funding)]
    assert [o.status for o in again] == ["skipped", "skipped"]
    for name, count in snapshots.items():
        assert len(lake.warehouse.catalog.load_table(name).snapshots()) == count
    assert lake.rows("silver.spot_klines").num_rows == 24


def test_replaced_file_replaces_exactly_its_rows(lake: Lake) -> None:
    next_day = TRADES_KEY.replace("2024-03-01", "2024-03-02")
    other = lake.put(next_day, _trades(range(5000, 5100), day=1))
    original = lake.put(TRADES_KEY, TRADES_HEADER + "\n" + _trades(range(1, 1001)))
    assert lake.builder.transform(other).status == "transformed"
    assert lake.builder.transform(original).rows == 1000

    replacement = lake.put(TRADES_KEY, TRADES_HEADER + "\n" + _trades(range(1, 801), price=3500.0))
    outcome = lake.builder.transform(replacement)
    assert outcome.status == "transformed" and outcome.replaced
    table = lake.rows("silver.futures_um_trades")
    mine = table.filter(pc.equal(table.column("source_file"), TRADES_KEY))
    assert mine.num_rows == 800
    assert pc.min(mine.column("price")).as_py() >= 3500.0
    assert table.num_rows == 900  # the other day's rows are untouched
    record = lake.ledger.get(TRADES_KEY)
    assert record.sha256 == replacement.sha256 and record.versions == 2


def test_bad_rows_go_to_rejects_with_line_numbers(lake: Lake) -> None:
    lines = _trades(range(1, 101)).splitlines()
    lines[9] = "10,3400.0,not-a-qty,1.0,1709251210000,true"
    lines[49] = "50,3400.0"
    bronze = lake.put(TRADES_KEY, TRADES_HEADER + "\n" + "\n".join(lines) + "\n")
    outcome = lake.builder.transform(bronze)
    assert (outcome.status, outcome.mode, outcome.rows, outcome.rejects) == (
        "transformed", "lines", 98, 2,
    )  # fmt: skip
    rejects = lake.rows(REJECTS_TABLE).sort_by("line").to_pylist()
    assert [(r["line"], r["text"]) for r in rejects] == [(11, lines[9]), (51, lines[49])]
    assert all(r["source_file"] == TRADES_KEY for r in rejects)
    assert "qty" in rejects[0]["reason"]

    fixed = lake.put(TRADES_KEY, TRADES_HEADER + "\n" + _trades(range(1, 101)))
    assert lake.builder.transform(fixed).rejects == 0
    assert lake.rows(REJECTS_TABLE).num_rows == 0
    assert lake.rows("silver.futures_um_trades").num_rows == 100


def test_drift_is_flagged_skipped_and_not_retried(lake: Lake) -> None:
    drifted = lake.put(
        TRADES_KEY, "".join(line + ",extra\n" for line in _trades(range(1, 50)).splitlines())
    )
    outcome = lake.builder.transform(drifted)
    assert outcome.status == "drift" and "7 columns" in outcome.message
    assert lake.ledger.get(TRADES_KEY).status is Status.DRIFT
    table = lake.warehouse.table("silver.futures_um_trades")
    assert table.current_snapshot() is None  # nothing was written
    assert lake.builder.transform(drifted).status == "skipped"


def test_bytes_not_matching_the_manifest_are_corrupt_and_leave_no_files(lake: Lake) -> None:
    bronze = lake.put(TRADES_KEY, _trades(range(1, 2000)))
    lied = type(bronze)(bronze.key, "0" * 64)
    outcome = lake.builder.transform(lied)
    assert outcome.status == "corrupt"
    data_files = [
        o.key
        for o in lake.storage.list_objects(lake.config.silver_bucket)
        if o.key.endswith(".parquet")
    ]
    assert data_files == []
    assert lake.builder.transform(bronze).status == "transformed"  # the true SHA-256 goes in


def test_duplicates_within_a_file_are_dropped_and_a_monthly_file_supersedes_its_days(
    lake: Lake,
) -> None:
    # Within one file: rows 40..59 appear twice (out of order).
    text = _trades(range(1, 101)) + _trades(range(40, 60))
    daily = lake.put(TRADES_KEY, text)
    outcome = lake.builder.transform(daily)
    assert (outcome.rows, outcome.duplicates) == (100, 20)

    # The monthly file of the same month takes the daily file's place: its rows replace the
    # day's (decided from the ledger in planning, no anti-join against the table).
    monthly_key = "data/futures/um/monthly/trades/ETHUSDT/ETHUSDT-trades-2024-03.zip"
    monthly = lake.builder.transform(lake.put(monthly_key, _trades(range(1, 151))))
    assert (monthly.status, monthly.rows, monthly.duplicates) == ("transformed", 150, 0)
    table = lake.rows("silver.futures_um_trades")
    assert table.num_rows == 150
    assert pc.count_distinct(table.column("id")).as_py() == 150
    assert set(table.column("source_file").to_pylist()) == {monthly_key}
    assert lake.ledger.get(TRADES_KEY).status is Status.SUPERSEDED

    # A daily file of that month arriving later (or republished) adds nothing.
    next_day = TRADES_KEY.replace("2024-03-01", "2024-03-02")
    late = lake.builder.transform(lake.put(next_day, _trades(range(151, 200), day=1)))
    assert late.status == "superseded"
    assert lake.rows("silver.futures_um_trades").num_rows == 150
