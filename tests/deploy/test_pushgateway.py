"""Flow-run metrics reach Prometheus through a real Pushgateway.

Debian's `prometheus-pushgateway` and `prometheus` run on 127.0.0.1 free ports. An ingest
runs in a child process of its own (as a flow-run pod does: its counters start at zero and
die with it) against the local test stack, pushes its counters when it ends, and exits;
Prometheus then answers for the ingested-files counter with the run's own numbers, and the
project's alert rules evaluate on the pushed series.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from crypto_lakehouse.observability.metrics import COVERAGE_MISSING_DAYS
from crypto_lakehouse.observability.push import (
    COVERAGE_JOB,
    FLOWS_JOB,
    process_instance,
    prune_groups,
    push_metrics,
)
from crypto_lakehouse.stack.postgres import PostgresServer
from crypto_lakehouse.stack.prefect_server import PrefectServer
from crypto_lakehouse.stack.process import ManagedProcess, free_port, wait_until
from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import S3Storage

TESTS = Path(__file__).resolve().parents[1]
RULES = TESTS.parent / "deploy" / "monitoring" / "rules"


def _flow_helpers() -> Any:
    """tests/flows/flow_helpers.py (the tiny archive with a planted corrupt file)."""
    name = "flow_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TESTS / "flows" / "flow_helpers.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: run `make setup` (Debian package {package})")
    return found


def _serve(proc: ManagedProcess, argv: list[str], ready: str) -> None:
    proc.start(argv, env=dict(os.environ))
    wait_until(
        lambda: httpx.get(ready, timeout=2).status_code == 200,
        timeout=60,
        what=proc.name,
        alive=lambda: proc.running_pid() is not None,
        log_tail=proc.log_tail,
    )


@pytest.fixture
def pushgateway(tmp_path: Path) -> Any:
    port = free_port()
    proc = ManagedProcess("pushgateway", tmp_path / "pushgateway.pid", tmp_path / "pg.log")
    argv = [
        _binary("prometheus-pushgateway", "prometheus-pushgateway"),
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    _serve(proc, argv, f"http://127.0.0.1:{port}/-/ready")
    yield f"http://127.0.0.1:{port}"
    proc.stop(timeout=20)


def _groups(pushgateway: str) -> list[dict[str, Any]]:
    return httpx.get(f"{pushgateway}/api/v1/metrics", timeout=5).json()["data"]


def test_push_replaces_this_process_group_and_coverage_is_one_group(pushgateway: str) -> None:
    COVERAGE_MISSING_DAYS.labels(market="spot", data_type="klines").set(4)
    assert push_metrics(pushgateway, coverage=True)
    COVERAGE_MISSING_DAYS.labels(market="spot", data_type="klines").set(2)
    assert push_metrics(pushgateway, coverage=True)
    # Only this process's groups: another process of the suite may push to this port
    # (one whose gateway had the port before this one) and that is not this test's subject.
    mine = [g for g in _groups(pushgateway) if g["labels"].get("instance") == process_instance()]
    coverage_groups = [g for g in _groups(pushgateway) if g["labels"]["job"] == COVERAGE_JOB]
    assert [g["labels"]["job"] for g in mine] == [FLOWS_JOB]  # one group, replaced
    assert len(coverage_groups) == 1
    assert "lakehouse_coverage_missing_days" not in mine[0]
    coverage = coverage_groups[0]["lakehouse_coverage_missing_days"]["metrics"]
    values = {(m["labels"]["market"], m["labels"]["data_type"]): m["value"] for m in coverage}
    assert values[("spot", "klines")] == "2"  # replaced, not added


def test_prune_deletes_only_flow_groups_older_than_the_retention(pushgateway: str) -> None:
    assert push_metrics(pushgateway, coverage=True)
    assert prune_groups(pushgateway) == 0  # just pushed: kept
    later = time.time() + 8 * 86400
    assert prune_groups(pushgateway, now=later) >= 1  # earlier tests on this gateway push too

    # The Pushgateway applies a DELETE after it answered 202 Accepted.
    def only_coverage_is_left() -> bool:
        groups = _groups(pushgateway)
        ours = [g for g in groups if g["labels"].get("instance") == process_instance()]
        return not ours and any(g["labels"]["job"] == COVERAGE_JOB for g in groups)

    wait_until(only_coverage_is_left, timeout=10, what="the old flow group deleted, coverage kept")


def test_pushing_to_nothing_is_a_warning_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    assert push_metrics(None) is False
    dead = f"http://user:hunter2@127.0.0.1:{free_port()}"
    assert push_metrics(dead) is False
    assert prune_groups(dead) == 0
    assert "metrics push" in caplog.text and "hunter2" not in caplog.text


# -- end to end: ingest -> Pushgateway -> Prometheus -> alert rules ----------------------


@pytest.fixture
def prometheus(tmp_path: Path, pushgateway: str) -> Any:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES / "*.rules.yml")],
        # deploy/monitoring/prometheus.yml's pushgateway job, with a static local target.
        "scrape_configs": [
            {
                "job_name": "pushgateway",
                "honor_labels": True,
                "static_configs": [{"targets": [pushgateway.removeprefix("http://")]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = ManagedProcess("prometheus", tmp_path / "prometheus.pid", tmp_path / "prom.log")
    argv = [
        _binary("prometheus", "prometheus"),
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    _serve(proc, argv, f"http://127.0.0.1:{port}/-/ready")
    yield f"http://127.0.0.1:{port}"
    proc.stop(timeout=30)


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


_INGEST = """
import asyncio, json, sys
from crypto_lakehouse.flows.local import run_ingest_locally
run = asyncio.run(run_ingest_locally(json.loads(sys.argv[1])))
s = run.summary
print(json.dumps({"state": run.state, "verified": s.verified, "corrupt": s.corrupt}))
"""


@pytest.mark.slow
def test_an_ingest_run_reaches_prometheus_and_its_alerts(
    prometheus: str,
    pushgateway: str,
    prefect_server: PrefectServer,
    postgres_server: PostgresServer,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
    binance_fixtures: Path,
    tmp_path: Path,
) -> None:
    helpers = _flow_helpers()
    archive = helpers.build_tiny_archive(
        S3Storage(source_server.endpoint()), source_bucket, binance_fixtures
    )
    database = f"cat_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(database)
    env = {k: v for k, v in os.environ.items() if k != "EXECUTOR_URL"}
    env.update(
        SOURCE_ENDPOINT=source_server.url,
        MINIO_ENDPOINT=lake_server.url,
        MINIO_ACCESS_KEY=lake_server.admin.access_key,
        MINIO_SECRET_KEY=lake_server.admin.secret_key,
        CATALOG_DATABASE_URL=postgres_server.info.url(database),
        BRONZE_BUCKET=lake_bucket,
        STAGING_DIR=str(tmp_path / "staging"),
        LAKEHOUSE_HOME=str(tmp_path / "home"),
        PUSHGATEWAY_URL=pushgateway,
        **prefect_server.client_env(),
    )
    parameters = {**archive.parameters, "source_bucket": source_bucket}
    done = subprocess.run(
        [sys.executable, "-c", _INGEST, json.dumps(parameters)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads(done.stdout.strip().splitlines()[-1])
    assert run["state"] == "Failed"  # the planted corrupt file
    assert run["verified"] == len(archive.good) and run["corrupt"] == 1

    def arrived() -> bool:
        return bool(query(prometheus, 'lakehouse_ingest_files_total{outcome="verified"}'))

    wait_until(arrived, timeout=60, what="the pushed ingest counters in Prometheus")
    (verified,) = query(prometheus, 'sum(lakehouse_ingest_files_total{outcome="verified"})')
    assert float(verified["value"][1]) == len(archive.good)
    (corrupt,) = query(prometheus, 'lakehouse_ingest_files_total{outcome="corrupt"}')
    assert corrupt["value"][1] == "1"
    assert corrupt["metric"]["job"] == FLOWS_JOB  # the pushed group's labels, honoured
    assert corrupt["metric"]["instance"] != process_instance()  # the child's, not ours
    (copied,) = query(prometheus, "sum(lakehouse_ingest_bytes_total)")
    assert float(copied["value"][1]) > 0

    def firing() -> set[str]:
        alerts = query(prometheus, 'ALERTS{alertstate="firing"}')
        return {a["metric"]["alertname"] for a in alerts}

    wait_until(lambda: "CorruptFilesFound" in firing(), timeout=60, what="CorruptFilesFound")
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    health = {r["name"]: r["health"] for g in rules for r in g["rules"]}
    assert set(health.values()) == {"ok"}, health
    # A file was verified a moment ago: neither freshness alert is pending or firing.
    pending = {a["metric"]["alertname"] for a in query(prometheus, "ALERTS")}
    assert not {"IngestStale", "IngestNotReporting"} & pending
    (age,) = query(prometheus, "time() - max(lakehouse_ingest_last_verified_timestamp_seconds > 0)")
    assert 0 <= float(age["value"][1]) < 300
