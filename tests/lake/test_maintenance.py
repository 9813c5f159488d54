"""Table maintenance against real servers: compaction keeps every row and sorts, expiry
keeps what it promises, orphans go and referenced files stay, a second run does nothing."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.table.sorting import SortField, SortOrder
from pyiceberg.transforms import IdentityTransform
from pyiceberg.typedef import Record
from pyiceberg.types import DateType, DoubleType, NestedField, StringType, TimestamptzType

from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.lake.compaction import (
    MAINTENANCE_PROPERTY,
    commit_rewrite,
    current_files,
    plan_rewrites,
    rewrite,
    target_file_bytes,
)
from crypto_lakehouse.lake.maintenance import (
    MaintenanceOptions,
    TableReport,
    commit_group,
    maintain,
    referenced_keys,
    split_uri,
)
from crypto_lakehouse.lake.warehouse import LakeConfig, Warehouse
from crypto_lakehouse.storage import S3Storage

TABLE = "silver.spot_klines"
SYMBOLS = ["ADAUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
MONTHS = [date(2026, 1, 1), date(2026, 2, 1)]
SCHEMA = Schema(
    NestedField(1, "symbol", StringType(), required=False),
    NestedField(2, "interval", StringType(), required=False),
    NestedField(3, "open_time", TimestamptzType(), required=False),
    NestedField(4, "close", DoubleType(), required=False),
    NestedField(5, "month", DateType(), required=False),
    NestedField(6, "source_file", StringType(), required=False),
)
SPEC = PartitionSpec(
    PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name="interval"),
    PartitionField(source_id=5, field_id=1001, transform=IdentityTransform(), name="month"),
)
ORDER = SortOrder(
    SortField(source_id=1, transform=IdentityTransform()),
    SortField(source_id=2, transform=IdentityTransform()),
    SortField(source_id=3, transform=IdentityTransform()),
)
KEEP_ALL = MaintenanceOptions()  # fresh snapshots and files: nothing is old enough to go


@pytest.fixture
def warehouse(lake_config: LakeConfig) -> Iterator[Warehouse]:
    warehouse = Warehouse(lake_config)
    yield warehouse
    warehouse.catalog.engine.dispose()


def _batch(commit: int, rng: random.Random, hours: int = 4) -> pa.Table:
    """One small commit's rows: every symbol, both months, in shuffled order."""
    rows = []
    for month in MONTHS:
        for symbol in SYMBOLS:
            for hour in range(hours):
                start = datetime(month.year, month.month, 1, tzinfo=UTC) + timedelta(
                    days=commit, hours=hour
                )
                rows.append((symbol, "1h", start, rng.random(), month, f"data/{commit}.zip"))
    rng.shuffle(rows)
    names = ["symbol", "interval", "open_time", "close", "month", "source_file"]
    return pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in rows]).cast(
        SCHEMA.as_arrow()
    )


def _build(
    warehouse: Warehouse, commits: int = 8, hours: int = 4, properties: dict | None = None
) -> Table:
    """A silver-like table written by `commits` small appends (two files each)."""
    warehouse.catalog.create_table(
        TABLE, schema=SCHEMA, partition_spec=SPEC, sort_order=ORDER,
        properties={"format-version": "2", **(properties or {})},
    )  # fmt: skip
    rng = random.Random(7)
    for commit in range(commits):
        table = warehouse.catalog.load_table(TABLE)
        table.append(_batch(commit, rng, hours))
    return warehouse.catalog.load_table(TABLE)


def _rows(table: Table, snapshot_id: int | None = None) -> list[tuple]:
    data = table.scan(snapshot_id=snapshot_id).to_arrow()
    return sorted(tuple(r.values()) for r in data.to_pylist())


def _key(row: dict) -> tuple:
    return (row["symbol"], row["interval"], row["open_time"])


@pytest.mark.slow
def test_compaction_keeps_every_row_sorts_and_a_second_run_is_a_no_op(
    warehouse: Warehouse,
) -> None:
    table = _build(warehouse)
    before = _rows(table)
    old_snapshot = table.current_snapshot().snapshot_id
    snapshots = len(table.metadata.snapshots)
    assert len(current_files(table).data) == 16

    report = maintain(warehouse, KEEP_ALL).tables[0]

    table = warehouse.catalog.load_table(TABLE)
    assert not report.error
    assert report.files_before == 16 and report.files_after == 2  # one per partition
    assert report.files_rewritten == 16 and report.files_written == 2
    assert report.rows_before == report.rows_after == len(before) == 320
    assert _rows(table) == before  # the same multiset of rows
    files = current_files(table).data
    for data_file in files:  # each output is sorted by symbol, interval, open_time
        bucket, key = split_uri(data_file.file_path)
        rows = pq.read_table(f"{bucket}/{key}", filesystem=_filesystem(warehouse)).to_pylist()
        assert [_key(r) for r in rows] == sorted(_key(r) for r in rows)
        assert len({r["month"] for r in rows}) == 1
    current = table.current_snapshot()
    assert current.summary[MAINTENANCE_PROPERTY] == "compaction"
    assert len(table.metadata.snapshots) == snapshots + 1  # history kept, one more snapshot
    assert _rows(table, old_snapshot) == before  # time travel to before the compaction

    again = maintain(warehouse, KEEP_ALL).tables[0]
    table = warehouse.catalog.load_table(TABLE)
    assert (again.jobs, again.files_rewritten, again.snapshots_expired, again.orphans) == (
        0, 0, 0, [],
    )  # fmt: skip
    assert table.current_snapshot().snapshot_id == current.snapshot_id


@pytest.mark.slow
def test_outputs_roll_over_at_the_target_size_and_stay_sorted_across_files(
    warehouse: Warehouse,
) -> None:
    target = 16 * 1024
    table = _build(
        warehouse, commits=10, hours=80, properties={"write.target-file-size-bytes": str(target)}
    )
    before = _rows(table)
    assert all(f.file_size_in_bytes < 0.75 * target for f in current_files(table).data)

    report = maintain(warehouse, KEEP_ALL).tables[0]
    table = warehouse.catalog.load_table(TABLE)
    assert report.files_rewritten == report.files_before
    assert 2 < report.files_written < report.files_before
    assert _rows(table) == before
    filesystem = _filesystem(warehouse)
    by_month: dict = {}
    for data_file in current_files(table).data:
        by_month.setdefault(data_file.partition[1], []).append(data_file)
    for outputs in by_month.values():
        outputs.sort(key=lambda f: f.file_path)  # the order they were written in
        assert sum(f.file_size_in_bytes < target for f in outputs) <= 1  # only the last
        keys = []
        for data_file in outputs:
            rows = pq.read_table("/".join(split_uri(data_file.file_path)), filesystem=filesystem)
            keys += [_key(r) for r in rows.to_pylist()]
        assert keys == sorted(keys)  # one sorted run across the partition's files

    again = maintain(warehouse, KEEP_ALL).tables[0]
    assert again.jobs == 0 and again.files_rewritten == 0


@pytest.mark.slow
def test_expiry_keeps_the_last_snapshots_and_they_still_read(warehouse: Warehouse) -> None:
    table = _build(warehouse, commits=8)
    history = [s.snapshot_id for s in table.snapshots()]
    kept_rows = {sid: _rows(table, sid) for sid in history[-3:]}
    later = datetime.now(UTC) + timedelta(days=30)
    options = MaintenanceOptions(compact=False, retain_last=3, now=lambda: later)

    dry = maintain(warehouse, replace(options, dry_run=True))
    assert dry.tables[0].snapshots_expired == 5
    assert len(warehouse.catalog.load_table(TABLE).metadata.snapshots) == 8  # untouched

    report = maintain(warehouse, options).tables[0]
    table = warehouse.catalog.load_table(TABLE)
    assert report.snapshots_before == 8 and report.snapshots_expired == 5
    assert [s.snapshot_id for s in table.snapshots()] == history[-3:]
    for sid, rows in kept_rows.items():  # time travel to each kept snapshot still reads
        assert _rows(table, sid) == rows
    assert report.metadata_bytes_after < report.metadata_bytes_before
    # files only the expired snapshots referenced were older than 0 s: removed, and the
    # data files every kept snapshot reads are still there
    assert report.orphans and all("/metadata/" in uri for uri in report.orphans)
    assert maintain(warehouse, options).tables[0].snapshots_expired == 0


@pytest.mark.slow
def test_orphans_go_and_referenced_files_stay(warehouse: Warehouse) -> None:
    table = _build(warehouse, commits=4)
    storage = S3Storage(warehouse.config.endpoint)
    bucket, prefix = split_uri(table.metadata.location)
    planted = f"{prefix}/data/interval=1h/month=2026-01-01/crashed-writer.parquet"
    neighbour = f"{prefix}_archive/data/not-this-table.parquet"  # shares the name prefix
    storage.put_bytes(bucket, planted, b"PAR1 never committed")
    storage.put_bytes(bucket, neighbour, b"another table's file")
    before = _rows(table)
    referenced = referenced_keys(table)
    later = datetime.now(UTC) + timedelta(minutes=1)
    graceful = MaintenanceOptions(compact=False, now=lambda: later)  # 1-day grace: kept
    assert maintain(warehouse, graceful).tables[0].orphans == []

    aged = MaintenanceOptions(compact=False, orphans_older_than=timedelta(0), now=lambda: later)
    dry = maintain(warehouse, replace(aged, dry_run=True))
    assert dry.tables[0].orphans == [f"s3://{bucket}/{planted}"]
    assert storage.head(bucket, planted) is not None  # a dry run lists, deletes nothing

    report = maintain(warehouse, aged).tables[0]
    assert report.orphans == [f"s3://{bucket}/{planted}"]
    assert storage.head(bucket, planted) is None
    assert storage.head(bucket, neighbour) is not None
    for ref in referenced:
        ref_bucket, key = ref.split("/", 1)
        assert storage.head(ref_bucket, key) is not None, key
    assert _rows(warehouse.catalog.load_table(TABLE)) == before


@pytest.mark.slow
def test_replaced_files_go_once_their_snapshots_expire(warehouse: Warehouse) -> None:
    table = _build(warehouse, commits=6)
    before = _rows(table)
    old_files = {f.file_path for f in current_files(table).data}
    maintain(warehouse, KEEP_ALL)
    later = datetime.now(UTC) + timedelta(days=30)
    options = MaintenanceOptions(retain_last=1, orphans_older_than=timedelta(0), now=lambda: later)
    report = maintain(warehouse, options).tables[0]
    table = warehouse.catalog.load_table(TABLE)
    assert len(table.metadata.snapshots) == 1
    assert old_files <= set(report.orphans)
    storage = S3Storage(warehouse.config.endpoint)
    assert all(storage.head(*split_uri(p)) is None for p in old_files)
    assert _rows(table) == before


@pytest.mark.slow
def test_a_concurrent_append_does_not_conflict_and_vanished_files_give_up(
    warehouse: Warehouse,
) -> None:
    table = _build(warehouse, commits=3)
    target = target_file_bytes(table)
    jobs = plan_rewrites(current_files(table).data, target)
    assert len(jobs) == 2
    written = [rewrite(table, job, target) for job in jobs]
    warehouse.catalog.load_table(TABLE).append(_batch(20, random.Random(1)))  # lands first
    assert commit_rewrite(warehouse, TABLE, list(jobs[0].files), written[0])
    table = warehouse.catalog.load_table(TABLE)
    assert table.scan().to_arrow().num_rows == 4 * 40  # three commits + the concurrent one

    # someone else rewrites the second partition's files first: the job is given up
    gone = jobs[1].files[0]
    with table.transaction() as txn, txn.update_snapshot().overwrite() as other:
        other.delete_data_file(gone)
    assert not commit_rewrite(warehouse, TABLE, list(jobs[1].files), written[1])
    report = TableReport(TABLE)
    commit_group(warehouse, table, report, [(jobs[1], written[1])])
    assert report.jobs_abandoned == 1 and report.files_rewritten == 0
    paths = {f.file_path for f in current_files(warehouse.catalog.load_table(TABLE)).data}
    assert gone.file_path not in paths and not paths & {f.file_path for f in written[1]}
    storage = S3Storage(warehouse.config.endpoint)
    assert all(storage.head(*split_uri(f.file_path)) is None for f in written[1])  # cleaned up


def test_unknown_table_is_bad_input(warehouse: Warehouse) -> None:
    with pytest.raises(ConfigError, match="no such table"):
        maintain(warehouse, KEEP_ALL, tables=["silver.nothing"])


def test_options_refuse_nonsense() -> None:
    with pytest.raises(ConfigError):
        MaintenanceOptions(retain_last=0)
    with pytest.raises(ConfigError):
        MaintenanceOptions(orphans_older_than=timedelta(days=-1))


def _file(path: str, size: int, month: int, spec_id: int = 0) -> DataFile:
    data_file = DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=path,
        file_format=FileFormat.PARQUET,
        partition=Record("1h", month),
        record_count=10,
        file_size_in_bytes=size,
    )
    data_file.spec_id = spec_id  # set by manifests when read, never stored in the file
    return data_file


def test_plan_groups_small_files_per_partition_only() -> None:
    mib = 1024 * 1024
    target = 64 * mib
    files = [
        _file("s3://b/t/a1", 1 * mib, 1),
        _file("s3://b/t/a2", 2 * mib, 1),
        _file("s3://b/t/a3", 60 * mib, 1),  # big enough already
        _file("s3://b/t/b1", 1 * mib, 2),  # alone in its partition: nothing to gain
        _file("s3://b/t/c1", 1 * mib, 3),
        _file("s3://b/t/c2", 1 * mib, 3, spec_id=1),  # an older partition spec
    ]
    jobs = plan_rewrites(files, target)
    assert [[f.file_path for f in job.files] for job in jobs] == [["s3://b/t/a1", "s3://b/t/a2"]]
    assert jobs[0].input_bytes == 3 * mib and jobs[0].rows == 20


def _filesystem(warehouse: Warehouse):
    from crypto_lakehouse.lake.query import lake_filesystem

    return lake_filesystem(warehouse)


def _cli_env(config: LakeConfig, home: str) -> dict[str, str]:
    endpoint = config.endpoint
    return {
        "LAKEHOUSE_HOME": home,
        "CATALOG_DATABASE_URL": config.catalog_url.get_secret_value(),
        "MINIO_ENDPOINT": endpoint.url,
        "MINIO_ACCESS_KEY": endpoint.access_key.get_secret_value(),
        "MINIO_SECRET_KEY": endpoint.secret_key.get_secret_value(),
        "BRONZE_BUCKET": config.bronze_bucket,
        "SILVER_BUCKET": config.silver_bucket,
        "GOLD_BUCKET": config.gold_bucket,
    }


@pytest.mark.slow
def test_cli_dry_run_then_maintain_and_bad_input(
    warehouse: Warehouse, tmp_path, monkeypatch
) -> None:
    from typer.testing import CliRunner

    from crypto_lakehouse.cli import app

    _build(warehouse, commits=3)
    for name, value in _cli_env(warehouse.config, str(tmp_path / "home")).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "120")
    runner = CliRunner()

    dry = runner.invoke(app, ["maintain", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert '"files_rewritten": 6' in dry.output
    assert len(current_files(warehouse.catalog.load_table(TABLE)).data) == 6  # unchanged

    done = runner.invoke(app, ["maintain", "--table", TABLE, "--retain-last", "2"])
    assert done.exit_code == 0, done.output
    assert TABLE in done.output and "6 -> 2" in done.output
    assert len(current_files(warehouse.catalog.load_table(TABLE)).data) == 2

    unknown = runner.invoke(app, ["maintain", "--table", "silver.nothing"])
    assert unknown.exit_code == 2 and "no such table" in unknown.output
    bad = runner.invoke(app, ["maintain", "--expire-older-than", "soon"])
    assert bad.exit_code == 2 and "not a duration" in bad.output


def test_durations_parse() -> None:
    from crypto_lakehouse.cli.maintain import parse_duration

    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("0") == timedelta(0)
    with pytest.raises(ConfigError):
        parse_duration("7")


@pytest.mark.slow
def test_flow_maintains_every_table_and_its_deployment_is_scheduled(
    warehouse: Warehouse, prefect_server, tmp_path, monkeypatch
) -> None:
    import asyncio

    import httpx

    from crypto_lakehouse.flows.deployments import SPECS, deploy_all
    from crypto_lakehouse.flows.maintenance import MAINTAIN_FLOW, maintain_lake

    _build(warehouse, commits=3)
    for name, value in _cli_env(warehouse.config, str(tmp_path / "home")).items():
        monkeypatch.setenv(name, value)
    state = maintain_lake(return_state=True)
    result = state.result()
    assert state.is_completed()
    [report] = result["tables"]
    assert report["table"] == TABLE and report["files_before"] == 6 and report["files_after"] == 2

    [spec] = [s for s in SPECS if s.flow.endswith(":maintain_lake")]
    [registered] = asyncio.run(deploy_all([spec]))
    deployment = httpx.get(
        f"{prefect_server.api_url}/deployments/{registered.deployment_id}", timeout=30
    ).json()
    assert registered.name == f"{MAINTAIN_FLOW}/{spec.name}"
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == [spec.cron]
