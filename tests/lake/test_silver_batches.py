"""Silver at scale, on real PostgreSQL + SeaweedFS: many files per data file, bounded commits,
crash recovery without orphans or duplicates, and bookkeeping queries that stay indexed."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, date, datetime, timedelta

import pyarrow.compute as pc
import pytest
import sqlalchemy as sa
from lake_helpers import Lake

from crypto_lakehouse.catalog.manifest import Manifest
from crypto_lakehouse.catalog.schema import bronze_files
from crypto_lakehouse.lake import committer, writer
from crypto_lakehouse.lake.committer import Journal
from crypto_lakehouse.lake.ledger import Status
from crypto_lakehouse.lake.silver import BronzeFile, SilverBuilder

DAY0 = date(2024, 3, 1)


def _kline_text(day: date, rows: int = 24) -> str:
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    lines = []
    for hour in range(rows):
        t = start + hour * 3_600_000
        lines.append(f"{t},1.0,2.0,0.5,1.5,10.0,{t + 3_599_999},15.0,7,5.0,7.5,0")
    return "\n".join(lines) + "\n"


def _klines(lake: Lake, symbols: list[str], days: int) -> list[BronzeFile]:
    files = []
    for symbol in symbols:
        for n in range(days):
            day = DAY0 + timedelta(days=n)
            key = f"data/spot/daily/klines/{symbol}/1h/{symbol}-1h-{day.isoformat()}.zip"
            files.append(lake.put(key, _kline_text(day)))
    return files


def _data_files(lake: Lake) -> list[str]:
    return [
        o.key
        for o in lake.storage.list_objects(lake.config.silver_bucket)
        if o.key.endswith(".parquet")
    ]


def _live_files(lake: Lake, identifier: str) -> set[str]:
    table = lake.warehouse.catalog.load_table(identifier)
    return {t.file.file_path.split("/", 3)[-1] for t in table.scan().plan_files()}


def test_many_small_files_share_a_few_data_files_and_sort_by_symbol(lake: Lake) -> None:
    files = _klines(lake, ["ETHUSDT", "BTCUSDT", "SOLUSDT"], 10)
    outcomes = lake.builder.transform_many(files)
    assert {o.status for o in outcomes} == {"transformed"}
    table = lake.rows("silver.spot_klines")
    assert table.num_rows == 30 * 24
    # 30 source files, one month, one interval: one data file.
    assert len(_live_files(lake, "silver.spot_klines")) == 1
    symbols = table.column("symbol").to_pylist()
    assert symbols == sorted(symbols)  # rows sit by symbol, then time
    snapshot = lake.warehouse.catalog.load_table("silver.spot_klines").current_snapshot()
    assert snapshot.summary.additional_properties[committer.BATCH_ID]
    # A second run over the same bronze adds nothing, not even a snapshot.
    count = len(lake.warehouse.catalog.load_table("silver.spot_klines").snapshots())
    again = lake.builder.transform_many(files)
    assert {o.status for o in again} == {"skipped"}
    assert len(lake.warehouse.catalog.load_table("silver.spot_klines").snapshots()) == count


def test_a_batch_across_partitions_commits_every_row(lake: Lake) -> None:
    """Two months and two intervals in one batch: one data file per partition, all live."""
    files = []
    for interval in ("1h", "4h"):
        for day in (date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1)):
            key = f"data/spot/daily/klines/BTCUSDT/{interval}/BTCUSDT-{interval}-{day}.zip"
            files.append(lake.put(key, _kline_text(day, 6)))
    outcomes = lake.builder.transform_many(files)
    assert {o.status for o in outcomes} == {"transformed"}
    assert lake.rows("silver.spot_klines").num_rows == 36
    assert len(_live_files(lake, "silver.spot_klines")) == 4  # 2 intervals x 2 months
    assert set(_data_files(lake)) == _live_files(lake, "silver.spot_klines")


def test_a_monthly_file_and_its_days_in_one_batch_give_each_row_once(lake: Lake) -> None:
    days = [lake.put(
        f"data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-{DAY0 + timedelta(n)}.zip",
        _kline_text(DAY0 + timedelta(n)),
    ) for n in range(2)]  # fmt: skip
    month = lake.put(
        "data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-03.zip",
        _kline_text(DAY0) + _kline_text(DAY0 + timedelta(1)),
    )
    outcomes = lake.builder.transform_many([*days, month])
    assert [o.status for o in outcomes] == ["superseded", "superseded", "transformed"]
    table = lake.rows("silver.spot_klines")
    assert table.num_rows == 48
    assert pc.count_distinct(table.column("open_time")).as_py() == 48


def test_batches_bound_each_commit(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    from crypto_lakehouse.lake import silver

    monkeypatch.setattr(silver, "BATCH_FILES", 4)
    files = _klines(lake, ["BTCUSDT"], 10)
    batches = list(silver.batches(files, max_files=4))
    assert [len(b) for b in batches] == [4, 4, 2]
    for batch in batches:
        lake.builder.build_batch(batch)
    table = lake.warehouse.catalog.load_table("silver.spot_klines")
    assert len(table.snapshots()) == 3
    assert lake.rows("silver.spot_klines").num_rows == 240


def test_streamed_large_files_give_the_same_rows(lake: Lake) -> None:
    files = _klines(lake, ["BTCUSDT"], 3)
    streaming = SilverBuilder(
        lake.warehouse, lake.ledger, lake.storage, lake.config.bronze_bucket, large_file_bytes=0
    )
    assert {o.status for o in streaming.transform_many(files)} == {"transformed"}
    table = lake.rows("silver.spot_klines").sort_by([("open_time", "ascending")])
    assert table.num_rows == 72
    assert len(_live_files(lake, "silver.spot_klines")) == 3  # one per streamed file
    assert pc.all(pc.equal(table.column("interval"), "1h")).as_py()


def test_streamed_files_side_by_side_keep_good_rows_and_drop_a_bad_file(lake: Lake) -> None:
    """Large files run two lanes at a time; a corrupt one among them is flagged and its data
    files deleted, the others committed whole, with no file left that the table does not use."""
    files = _klines(lake, ["BTCUSDT", "ETHUSDT"], 3)
    bad = dataclasses.replace(files[2], sha256="0" * 64)  # bronze bytes do not match
    files[2] = bad
    streaming = SilverBuilder(
        lake.warehouse, lake.ledger, lake.storage, lake.config.bronze_bucket, large_file_bytes=0
    )
    outcomes = streaming.transform_many(files)
    assert [o.key for o in outcomes] == [f.key for f in files]  # in the order given
    assert [o.status for o in outcomes].count("corrupt") == 1
    assert next(o for o in outcomes if o.key == bad.key).status == "corrupt"
    assert lake.rows("silver.spot_klines").num_rows == 5 * 24
    assert set(_data_files(lake)) == _live_files(lake, "silver.spot_klines")


def test_a_crash_between_write_and_commit_leaves_no_orphan(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _klines(lake, ["BTCUSDT", "ETHUSDT"], 3)

    def die(*args: object) -> None:
        raise SystemExit("killed between write and commit")

    # A killed process runs no clean-up: no abandon, and the commit never happens.
    monkeypatch.setattr(committer, "_commit_data", die)
    monkeypatch.setattr(Journal, "abandon", lambda *a: None)
    with pytest.raises(SystemExit):
        lake.builder.transform_many(files)
    assert _data_files(lake)  # written, referenced by nothing
    monkeypatch.undo()

    fresh = SilverBuilder(lake.warehouse, lake.ledger, lake.storage, lake.config.bronze_bucket)
    assert fresh.recover() == {"finished": 0, "abandoned": 1}
    assert _data_files(lake) == []
    assert {o.status for o in fresh.transform_many(files)} == {"transformed"}
    assert lake.rows("silver.spot_klines").num_rows == 6 * 24
    assert set(_data_files(lake)) == _live_files(lake, "silver.spot_klines")


def test_a_crash_in_the_middle_of_a_write_leaves_no_orphan(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed while pyiceberg writes the data files (some exist, none was reported back):
    the journal named their paths before the write began, so recovery deletes them."""
    files = _klines(lake, ["BTCUSDT", "ETHUSDT"], 3)
    real_write = writer.write_file

    def write_then_die(**kwargs: object) -> None:
        written = list(real_write(**kwargs))  # the files exist on S3 now
        assert written
        raise SystemExit("killed before write_file returned")

    monkeypatch.setattr(writer, "write_file", write_then_die)
    monkeypatch.setattr(Journal, "abandon", lambda *a: None)
    with pytest.raises(SystemExit):
        lake.builder.transform_many(files)
    orphans = _data_files(lake)
    assert orphans  # on S3, referenced by nothing, never returned to the writer
    monkeypatch.undo()

    with lake.ledger.engine.connect() as conn:
        journaled = conn.execute(sa.select(committer.BATCHES.c.data_files)).scalar_one()
    assert {p.split("/", 3)[-1] for p in journaled} >= set(orphans)
    fresh = SilverBuilder(lake.warehouse, lake.ledger, lake.storage, lake.config.bronze_bucket)
    assert fresh.recover() == {"finished": 0, "abandoned": 1}
    assert _data_files(lake) == []
    assert {o.status for o in fresh.transform_many(files)} == {"transformed"}
    assert set(_data_files(lake)) == _live_files(lake, "silver.spot_klines")


def test_a_crash_between_commit_and_ledger_adds_no_duplicate(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = _klines(lake, ["BTCUSDT"], 4)

    def die(*args: object) -> None:
        raise SystemExit("killed after the Iceberg commit")

    monkeypatch.setattr(Journal, "_finish", die)
    monkeypatch.setattr(Journal, "abandon", lambda *a: None)
    with pytest.raises(SystemExit):
        lake.builder.transform_many(files)
    monkeypatch.undo()
    assert lake.ledger.get(files[0].key) is None  # the ledger never heard of them

    fresh = SilverBuilder(lake.warehouse, lake.ledger, lake.storage, lake.config.bronze_bucket)
    assert fresh.recover() == {"finished": 1, "abandoned": 0}
    assert lake.ledger.get(files[0].key).status is Status.TRANSFORMED
    assert {o.status for o in fresh.transform_many(files)} == {"skipped"}
    assert lake.rows("silver.spot_klines").num_rows == 4 * 24


def _verified(manifest: Manifest, files: list[BronzeFile], when: datetime) -> None:
    rows = []
    for f in files:
        a = f.archive
        rows.append(
            dict(
                path=f.key,
                market=a.market.value,
                frequency=a.frequency.value,
                data_type=a.data_type.value,
                symbol=a.symbol,
                interval=a.interval,
                period=a.period,
                bronze_key=f.key,
                size=f.size,
                sha256=f.sha256,
                status="verified",
                version=1,
                ingested_at=when,
                updated_at=when,
            )
        )
    with manifest.engine.begin() as conn:
        conn.execute(bronze_files.insert(), rows)


def _rows_read(conn: sa.Connection, statement: sa.Select) -> dict[str, int]:
    """Rows each base table's scans produced or filtered out, from EXPLAIN ANALYZE."""
    compiled = statement.compile(conn.engine, compile_kwargs={"literal_binds": True})
    plan = conn.execute(sa.text(f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}")).scalar()
    touched: dict[str, int] = {}

    def walk(node: dict) -> None:
        relation = node.get("Relation Name")
        if relation:
            loops = node.get("Actual Loops", 1)
            read = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * loops
            touched[relation] = touched.get(relation, 0) + read
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return touched


def test_pending_work_after_the_cursor_reads_only_new_rows(lake: Lake) -> None:
    manifest = Manifest(lake.config.catalog_url)
    manifest.ensure_schema()
    old = [
        BronzeFile(
            f"data/spot/daily/klines/S{n:04d}USDT/1h/S{n:04d}USDT-1h-2024-03-01.zip",
            hashlib.sha256(str(n).encode()).hexdigest(),
            size=1500,
        )
        for n in range(3000)
    ]
    long_ago = datetime.now(UTC) - timedelta(days=30)
    _verified(manifest, old, long_ago)
    lake.ledger.record_many(
        [
            lake.builder.ledger_record_for(f, Status.TRANSFORMED)  # what a build would write
            for f in old
        ]
    )
    day = date(2024, 3, 2)
    new_key = f"data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-{day.isoformat()}.zip"
    new = lake.put(new_key, _kline_text(day))
    _verified(manifest, [new], datetime.now(UTC))
    with manifest.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE bronze_files; ANALYZE lake_silver_files"))

    since = datetime.now(UTC) - timedelta(days=1)
    assert [p.path for p in lake.ledger.pending(since=since)] == [new_key]
    assert len(list(lake.ledger.pending())) == 1  # the full anti-join agrees
    with lake.ledger.engine.connect() as conn:
        touched = _rows_read(conn, lake.ledger.pending_query(since=since))
    # Only the new manifest row and its ledger probe, not the 3,000 old ones.
    assert touched.get("bronze_files", 0) <= 5, touched
    assert touched.get("lake_silver_files", 0) <= 5, touched
    manifest.close()


def test_flagged_files_come_from_a_partial_index(lake: Lake) -> None:
    bad = lake.put("data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-03-01.zip", "a,b\n1,2\n")
    assert lake.builder.transform(bad).status == "drift"
    assert [r.path for r in lake.ledger.outstanding(Status.DRIFT)] == [bad.key]
    assert lake.ledger.count_flagged() == {"drift": 1}


def test_a_full_batch_of_ledger_rows_is_one_write(lake: Lake) -> None:
    """5,000 records (the batch limit) in one call: as one multi-row VALUES that was
    105,000 bind parameters, over PostgreSQL's 65,535; the executemany has no such limit."""
    from crypto_lakehouse.lake.ledger import FileRecord

    records = [
        FileRecord(f"data/spot/daily/klines/S{i}/1h/S{i}-1h-2024-03-01.zip", "a" * 64,
                   "silver.spot_klines", "spot", "daily", "klines", f"S{i}", "1h", DAY0,
                   Status.TRANSFORMED, "fp", rows=24)
        for i in range(5000)
    ]  # fmt: skip
    lake.ledger.record_many(records)
    changed = [dataclasses.replace(records[0], sha256="b" * 64)]
    lake.ledger.record_many(changed + records[1:2])  # a new version bumps `versions`
    held = lake.ledger.records([r.path for r in records])
    assert len(held) == 5000 and all(r.rows == 24 for r in held.values())
    assert held[records[0].path].versions == 2 and held[records[1].path].versions == 1


def test_small_files_are_read_in_windows_bounded_by_count_and_bytes() -> None:
    from crypto_lakehouse.lake.silver import _windows

    def files(*sizes: int) -> list[BronzeFile]:
        return [BronzeFile(f"k{i}", "a" * 64, size=s) for i, s in enumerate(sizes)]

    sizes = [len(w) for w in _windows(files(*[1] * 10), count=4, size=100)]
    assert sizes == [4, 4, 2]  # by count
    got = [[f.size for f in w] for w in _windows(files(30, 30, 50, 200, 5), count=64, size=100)]
    assert got == [[30, 30], [50], [200], [5]]  # by bytes; one big file is a window alone
