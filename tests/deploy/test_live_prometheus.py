"""A real Prometheus (Debian's binary, 127.0.0.1) scrapes a running executor and the Prefect
exporter, loads the project's alert rules, and answers queries for their series."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from crypto_lakehouse.observability.metrics import exported_names
from crypto_lakehouse.stack.prefect_server import PrefectServer
from crypto_lakehouse.stack.process import ManagedProcess, free_port, wait_until
from crypto_lakehouse.stack.seaweed import SeaweedServer

RULES = Path(__file__).resolve().parents[2] / "deploy" / "monitoring" / "rules"

pytestmark = pytest.mark.slow


def _start(proc: ManagedProcess, argv: list[str], env: dict[str, str], url: str) -> None:
    proc.start(argv, env=env)
    wait_until(
        lambda: httpx.get(url, timeout=2).status_code == 200,
        timeout=90,
        what=proc.name,
        alive=lambda: proc.running_pid() is not None,
        log_tail=proc.log_tail,
    )


@pytest.fixture
def executor(tmp_path: Path, lake_server: SeaweedServer) -> Any:
    port = free_port()
    env = {
        **os.environ,
        "LAKEHOUSE_HOME": str(tmp_path / "executor-home"),
        "MINIO_ENDPOINT": lake_server.url,
        "MINIO_ACCESS_KEY": lake_server.admin.access_key,
        "MINIO_SECRET_KEY": lake_server.admin.secret_key,
        "EXECUTOR_API_TOKEN": secrets.token_urlsafe(32),
    }
    proc = ManagedProcess("executor", tmp_path / "executor.pid", tmp_path / "executor.log")
    argv = [sys.executable, "-m", "crypto_lakehouse", "executor", "serve", "--port", str(port)]
    _start(proc, argv, env, f"http://127.0.0.1:{port}/health")
    yield f"127.0.0.1:{port}"
    proc.stop(timeout=20)


@pytest.fixture
def exporter(tmp_path: Path, prefect_server: PrefectServer) -> Any:
    port = free_port()
    env = {**os.environ, **prefect_server.client_env()}
    proc = ManagedProcess("exporter", tmp_path / "exporter.pid", tmp_path / "exporter.log")
    argv = [sys.executable, "-m", "crypto_lakehouse", "exporter", "serve", "--port", str(port)]
    _start(proc, [*argv, "--interval", "1"], env, f"http://127.0.0.1:{port}/metrics")
    yield f"127.0.0.1:{port}"
    proc.stop(timeout=20)


@pytest.fixture
def prometheus(tmp_path: Path, executor: str, exporter: str) -> Any:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus not found: run `make setup` (Debian package prometheus)")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES / "*.rules.yml")],
        # The job names of deploy/monitoring/prometheus.yml, with static targets.
        "scrape_configs": [
            {"job_name": "s5cmd-executor", "static_configs": [{"targets": [executor]}]},
            {"job_name": "prefect-exporter", "static_configs": [{"targets": [exporter]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = ManagedProcess("prometheus", tmp_path / "prometheus.pid", tmp_path / "prometheus.log")
    argv = [
        binary,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    _start(proc, argv, dict(os.environ), f"http://127.0.0.1:{port}/-/ready")
    yield f"http://127.0.0.1:{port}"
    proc.stop(timeout=30)


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_scrapes_executor_and_exporter(
    prometheus: str, prefect_server: PrefectServer
) -> None:
    flow = f"live-{uuid.uuid4().hex[:8]}"
    api = httpx.Client(base_url=prefect_server.api_url + "/", timeout=15)
    flow_id = api.post("flows/", json={"name": flow}).json()["id"]
    run = api.post("flow_runs/", json={"flow_id": flow_id, "state": {"type": "SCHEDULED"}}).json()
    for state in ("RUNNING", "FAILED"):
        api.post(
            f"flow_runs/{run['id']}/set_state", json={"state": {"type": state}, "force": True}
        ).raise_for_status()

    def scraped() -> bool:
        up = query(prometheus, "up == 1")
        runs = query(prometheus, f'prefect_workflow_failures_total{{flow="{flow}"}}')
        return len(up) == 2 and bool(runs)

    wait_until(scraped, timeout=60, what="Prometheus scraping both targets")

    assert query(prometheus, 'prefect_api_up{job="prefect-exporter"}')[0]["value"][1] == "1"
    failed = query(prometheus, f'prefect_workflow_runs_total{{flow="{flow}",state="FAILED"}}')
    assert failed[0]["value"][1] == "1"

    series = httpx.get(
        f"{prometheus}/api/v1/series", params={"match[]": '{job="s5cmd-executor"}'}, timeout=5
    ).json()["data"]
    names = {s["__name__"] for s in series} - {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
        "ALERTS",  # Prometheus' own series for alerts that keep the job label
        "ALERTS_FOR_STATE",
    }
    assert names, "the executor exposed no series"
    assert names <= exported_names(), names - exported_names()
    assert "s5cmd_staging_cap_bytes" in names

    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    loaded = {rule["name"]: rule for group in rules for rule in group["rules"]}
    assert {"WorkflowFailureRate", "StagingDiskNearCap", "IngestStale"} <= set(loaded)
    wait_until(
        lambda: all(
            r["health"] == "ok"
            for g in httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
            for r in g["rules"]
        ),
        timeout=30,
        what="every rule evaluated without error",
    )
    # Healthy targets: no rule fires or is pending, except that no ingest has ever
    # reported (the executor's gauge at its initial 0 does not count as a report).
    alerts = {a["metric"]["alertname"] for a in query(prometheus, "ALERTS")}
    assert alerts <= {"IngestNotReporting"}, alerts
