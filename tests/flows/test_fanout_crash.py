"""A worker killed with SIGKILL mid-run: Prefect marks its child Crashed (heartbeats stop,
the `crash-silent-flow-runs` automation fires), the parent fails naming it, and a re-run
of the parent completes the work without a duplicated row."""

from __future__ import annotations

import asyncio
import contextvars
import os
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from crypto_lakehouse.archive.publisher import write_sample
from crypto_lakehouse.archive.sample import SampleSpec
from crypto_lakehouse.bench.fanout import local_workers
from crypto_lakehouse.config import Settings
from crypto_lakehouse.flows import fanout
from crypto_lakehouse.flows.deployments import GENERAL_POOL, deploy_all
from crypto_lakehouse.flows.local import run_ingest_locally
from crypto_lakehouse.lake.ledger import Ledger, Status
from crypto_lakehouse.lake.warehouse import LakeConfig, Warehouse
from crypto_lakehouse.stack.postgres import PostgresServer
from crypto_lakehouse.stack.prefect_server import PrefectServer
from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import S3Storage
from crypto_lakehouse.storage.urls import S3Url
from crypto_lakehouse.transfer import upload_tree


def _running_child_of(server: PrefectServer, worker: str) -> bool:
    runs = httpx.post(
        f"{server.api_url}/flow_runs/filter",
        json={
            "flow_runs": {"tags": {"all_": ["fanout"]}, "state": {"type": {"any_": ["RUNNING"]}}}
        },
        timeout=10,
    ).json()
    return any(r["labels"].get("prefect.worker.name") == worker for r in runs)


def _rows_per_table(config: LakeConfig) -> tuple[dict[str, int], dict[str, int], int]:
    """(Iceberg rows per silver table, ledger rows per table, files still pending)."""
    ledger = Ledger(config.sqlalchemy_url)
    warehouse = Warehouse(config)
    try:
        expected: dict[str, int] = defaultdict(int)
        for record in ledger.all():
            if record.status is Status.TRANSFORMED:
                expected[record.table_name] += record.rows
        actual = {}
        for name in expected:
            table = warehouse.table(name)
            snapshot = table.current_snapshot() if table is not None else None
            actual[name] = int(snapshot.summary["total-records"]) if snapshot else 0
        pending = sum(1 for _ in ledger.pending())
    finally:
        ledger.dispose()
        warehouse.catalog.engine.dispose()
    return actual, dict(expected), pending


@pytest.mark.slow
def test_killed_worker_crashes_its_child_and_a_rerun_completes_once(
    prefect_server: PrefectServer,
    postgres_server: PostgresServer,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = source_server.endpoint()
    (tmp_path / "sample").mkdir()
    write_sample(
        SampleSpec.for_files(1500, large_rows=1000, defects=False),
        S3Storage(source),
        S3Url.parse(f"s3://{source_bucket}"),
        upload=lambda folder, bucket, prefix: upload_tree(source, folder, bucket, prefix),
        staging=tmp_path / "sample",
    )
    database = f"cat_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(database)
    lake = lake_server.endpoint()
    for suffix in ("s", "g"):
        S3Storage(lake).ensure_bucket(f"{lake_bucket}-{suffix}")
    env = {
        "SOURCE_ENDPOINT": source_server.url,
        "MINIO_ENDPOINT": lake_server.url,
        "MINIO_ACCESS_KEY": lake.access_key.get_secret_value(),  # type: ignore[union-attr]
        "MINIO_SECRET_KEY": lake.secret_key.get_secret_value(),  # type: ignore[union-attr]
        "CATALOG_DATABASE_URL": postgres_server.info.url(database),
        "BRONZE_BUCKET": lake_bucket,
        "SILVER_BUCKET": f"{lake_bucket}-s",
        "GOLD_BUCKET": f"{lake_bucket}-g",
        "STAGING_DIR": str(tmp_path / "staging"),
        "LAKEHOUSE_HOME": str(tmp_path / "home"),
        **prefect_server.client_env(),
    }
    monkeypatch.delenv("EXECUTOR_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = LakeConfig.from_settings(Settings())
    assert asyncio.run(run_ingest_locally({"source_bucket": source_bucket})).ok
    asyncio.run(deploy_all())

    outcome: dict[str, Any] = {}

    def parent() -> None:
        outcome["first"] = asyncio.run(
            fanout.run_locally(fanout.silver_fanout, min_files=0, children=2, parallel=1)
        )

    with local_workers(GENERAL_POOL, 2, dict(os.environ), tmp_path / "workers") as workers:
        victim = workers.names[0]
        # The parent runs in a thread with this test's Prefect settings (a context variable).
        thread = threading.Thread(target=contextvars.copy_context().run, args=(parent,))
        thread.start()
        deadline = time.monotonic() + 120
        while not _running_child_of(prefect_server, victim):
            assert time.monotonic() < deadline, "no child ran on the first worker"
            assert thread.is_alive(), outcome
            time.sleep(0.2)
        workers.kill(victim)  # SIGKILL: the worker and the flow run it started
        thread.join(timeout=fanout.SILENT_SECONDS + 180)
        assert not thread.is_alive(), "the parent still waits for the killed child"

        state, first = outcome["first"]
        assert state == "Failed"
        crashed = [c for c in first["fanout"]["children"] if c["state"] == "CRASHED"]
        assert [c["worker"] for c in crashed] == [victim]

        # The survivor takes the re-run's children, one at a time.
        state, second = asyncio.run(
            fanout.run_locally(fanout.silver_fanout, min_files=0, children=2, parallel=1)
        )
    assert state == "Completed", second["fanout"]
    actual, expected, pending = _rows_per_table(config)
    assert pending == 0
    assert actual == expected  # every table holds each file's rows exactly once
    assert sum(actual.values()) > 0
