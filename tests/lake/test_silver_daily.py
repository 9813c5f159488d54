"""A daily update's silver step: one small batch per table, run side by side, committed on the
table the batch loaded; the guarantees of one batch at a time still hold."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pytest
import sqlalchemy as sa
from lake_helpers import Lake, make_zip

from crypto_lakehouse.archive.paths import parse_key
from crypto_lakehouse.catalog import Manifest
from crypto_lakehouse.catalog.manifest import FileResult, ListedFile
from crypto_lakehouse.config import Settings
from crypto_lakehouse.flows.silver import (
    LIGHT_BATCH_BYTES,
    LIGHT_BATCH_FILES,
    LIGHT_PER_LANE,
    batch_weight,
    heavy_first,
    run_silver,
)
from crypto_lakehouse.lake.committer import BATCHES, _commit_loaded
from crypto_lakehouse.lake.silver import LARGE_FILE_BYTES, BronzeFile

DAY0 = date(2024, 3, 1)
# (market folder, data type, symbol): six kline tables, each a batch of its own.
TABLES = [
    ("spot", "klines", "BTCUSDT"),
    ("futures/um", "klines", "BTCUSDT"),
    ("futures/um", "markPriceKlines", "BTCUSDT"),
    ("futures/um", "indexPriceKlines", "BTCUSDT"),
    ("futures/cm", "klines", "BTCUSD_PERP"),
    ("futures/cm", "markPriceKlines", "BTCUSD_PERP"),
]


def _bars(first: date, days: int) -> str:
    start = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp() * 1000)
    lines = []
    for hour in range(24 * days):
        t = start + hour * 3_600_000
        lines.append(f"{t},1.0,2.0,0.5,1.5,10.0,{t + 3_599_999},15.0,7,5.0,7.5,0")
    return "\n".join(lines) + "\n"


def _register(manifest: Manifest, lake: Lake, key: str, text: str) -> None:
    data = make_zip(key.rsplit("/", 1)[-1].replace(".zip", ".csv"), text)
    lake.storage.put_bytes(lake.config.bronze_bucket, key, data)
    file = parse_key(key).with_listing(len(data), "etag", datetime.now(UTC))
    listed = ListedFile(file, key)
    manifest.mark_started(
        "run", [listed], source_url="s3://sample/", bronze_bucket=lake.config.bronze_bucket
    )
    manifest.record("run", [FileResult(listed, ok=True, sha256=hashlib.sha256(data).hexdigest())])


def _daily(folder: str, data_type: str, symbol: str, day: date) -> str:
    name = f"{symbol}-1h-{day.isoformat()}.zip"
    return f"data/{folder}/daily/{data_type}/{symbol}/1h/{name}"


def _monthly(folder: str, data_type: str, symbol: str, month: date) -> str:
    name = f"{symbol}-1h-{month.isoformat()[:7]}.zip"
    return f"data/{folder}/monthly/{data_type}/{symbol}/1h/{name}"


def _identifier(folder: str, data_type: str) -> str:
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in data_type)
    return f"silver.{folder.replace('/', '_')}_{snake}"


def test_light_batches_share_a_lane_heavy_ones_take_a_whole_lane() -> None:
    def files(count: int, size: int | None) -> list[BronzeFile]:
        return [BronzeFile(f"k{n}", "0" * 64, size=size) for n in range(count)]

    assert batch_weight(files(36, 2_000), LARGE_FILE_BYTES) == 1
    assert batch_weight(files(LIGHT_BATCH_FILES + 1, 10), LARGE_FILE_BYTES) == LIGHT_PER_LANE
    many_bytes = LIGHT_BATCH_BYTES // 10 + 1
    assert batch_weight(files(11, many_bytes), LARGE_FILE_BYTES) == LIGHT_PER_LANE
    assert batch_weight(files(1, LARGE_FILE_BYTES + 1), LARGE_FILE_BYTES) == LIGHT_PER_LANE
    assert batch_weight(files(1, None), LARGE_FILE_BYTES) == LIGHT_PER_LANE  # size unknown


def test_tables_with_a_heavy_batch_start_first_and_a_tables_batches_keep_their_order() -> None:
    def batch(data_type: str, day: int, size: int) -> list[BronzeFile]:
        folder, name = (
            (f"{data_type}/BTCUSDT/1h", "1h")
            if data_type == "klines"
            else (f"{data_type}/BTCUSDT", data_type)
        )
        key = f"data/spot/daily/{folder}/BTCUSDT-{name}-2024-01-{day:02d}.zip"
        return [BronzeFile(key, "0" * 64, size=size)]

    light_a = batch("aggTrades", 1, 2_000)
    heavy_t1 = batch("trades", 1, LARGE_FILE_BYTES + 1)
    light_t2 = batch("trades", 2, 2_000)
    light_x = batch("klines", 1, 2_000)
    work = [light_a, light_x, heavy_t1, light_t2]
    assert list(heavy_first(iter(work), LARGE_FILE_BYTES)) == [
        heavy_t1, light_t2, light_a, light_x,
    ]  # fmt: skip
    # Past the lookahead, batches come in the order they were planned.
    assert list(heavy_first(iter(work), LARGE_FILE_BYTES, lookahead=1)) == work


@pytest.mark.slow
def test_a_daily_update_runs_tables_side_by_side_and_keeps_every_guarantee(
    lake: Lake, prefect_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in lake.settings_env().items():
        monkeypatch.setenv(name, value)
    manifest = Manifest(lake.config.catalog_url)
    manifest.ensure_schema()
    # Day 1: two days of every table; one table also gets the month's monthly file (its
    # daily rows must give way to it, whichever batch takes the table's lock first).
    for folder, data_type, symbol in TABLES:
        for n in range(2):
            day = DAY0 + timedelta(days=n)
            _register(manifest, lake, _daily(folder, data_type, symbol, day), _bars(day, 1))
    asyncio.run(run_silver(Settings(), parallel=1))
    folder, data_type, symbol = TABLES[0]
    _register(manifest, lake, _monthly(folder, data_type, symbol, DAY0), _bars(DAY0, 31))
    # The daily update: one more day of every table.
    for folder, data_type, symbol in TABLES:
        day = DAY0 + timedelta(days=2)
        _register(manifest, lake, _daily(folder, data_type, symbol, day), _bars(day, 1))
    manifest.close()

    summary = asyncio.run(run_silver(Settings(), parallel=1))
    assert summary.ok
    assert summary.transformed == len(TABLES)  # five days and the monthly file
    assert summary.superseded == 1  # the monthly table's new day

    for n, (folder, data_type, _symbol) in enumerate(TABLES):
        rows = lake.rows(_identifier(folder, data_type))
        expected = 31 * 24 if n == 0 else 3 * 24
        assert rows.num_rows == expected, (folder, data_type)
        assert pc.count_distinct(rows.column("open_time")).as_py() == expected

    with lake.ledger.engine.connect() as conn:
        spans = conn.execute(
            sa.select(BATCHES.c.status, BATCHES.c.started_at, BATCHES.c.updated_at)
        ).all()
    assert {s.status for s in spans} == {"committed"}
    # The second run's batches overlapped in time (they did not wait for one another).
    second = sorted(spans, key=lambda s: s.started_at)[-len(TABLES) :]
    assert any(
        later.started_at < earlier.updated_at for earlier, later in itertools.pairwise(second)
    )
    # No data file that no snapshot references.
    live: set[str] = set()
    for folder, data_type, _symbol in TABLES:
        table = lake.warehouse.catalog.load_table(_identifier(folder, data_type))
        for snapshot in table.snapshots():
            live |= {
                entry.data_file.file_path
                for manifest_file in snapshot.manifests(table.io)
                for entry in manifest_file.fetch_manifest_entry(table.io)
            }
    written = {
        f"s3://{lake.config.silver_bucket}/{o.key}"
        for o in lake.storage.list_objects(lake.config.silver_bucket)
        if o.key.endswith(".parquet")
    }
    assert written == live

    again = asyncio.run(run_silver(Settings(), parallel=1))  # nothing pending, nothing added
    assert again.transformed == 0
    assert lake.rows(_identifier(*TABLES[1][:2])).num_rows == 3 * 24


def test_a_commit_on_a_table_loaded_before_another_writer_committed_retries_fresh(
    lake: Lake,
) -> None:
    schema = pa.schema([pa.field("n", pa.int64(), False)])
    lake.warehouse.ensure_table("silver.commit_race", schema, [])
    stale = lake.warehouse.catalog.load_table("silver.commit_race")
    other = lake.warehouse.catalog.load_table("silver.commit_race")
    other.append(pa.table({"n": [1]}, schema=schema))  # commits after `stale` was loaded

    _commit_loaded(
        lake.warehouse,
        "silver.commit_race",
        stale,
        lambda t: t.append(pa.table({"n": [2]}, schema=schema)),
    )

    rows = lake.rows("silver.commit_race").column("n").to_pylist()
    assert sorted(rows) == [1, 2]
    table = lake.warehouse.catalog.load_table("silver.commit_race")
    assert len(table.snapshots()) == 2
