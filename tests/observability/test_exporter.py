"""The Prefect exporter against a real Prefect server on PostgreSQL.

Flow runs are created and moved through states with Prefect's own REST API (the server's
orchestration rules set `end_time` as they would for a worker-run flow).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from crypto_lakehouse.observability.exporter import PrefectExporter, SeenRuns, exporter_registry
from crypto_lakehouse.observability.metrics import REGISTRY
from crypto_lakehouse.stack.prefect_server import PrefectServer
from crypto_lakehouse.stack.process import free_port, wait_until


class Api:
    """A few calls of Prefect's REST API, as a worker and its flow would make them."""

    def __init__(self, api_url: str) -> None:
        self.http = httpx.Client(base_url=api_url + "/", timeout=15)

    def flow(self, name: str) -> str:
        response = self.http.post("flows/", json={"name": name})
        response.raise_for_status()
        return response.json()["id"]

    def run(self, flow_id: str, *states: str) -> str:
        response = self.http.post(
            "flow_runs/", json={"flow_id": flow_id, "state": {"type": "SCHEDULED"}}
        )
        response.raise_for_status()
        run_id = response.json()["id"]
        for state in states:
            self.set_state(run_id, state)
        return run_id

    def set_state(self, run_id: str, state: str) -> None:
        response = self.http.post(
            f"flow_runs/{run_id}/set_state", json={"state": {"type": state}, "force": True}
        )
        response.raise_for_status()
        assert response.json()["status"] == "ACCEPT", response.json()

    def pool(self, name: str) -> None:
        response = self.http.post("work_pools/", json={"name": name, "type": "process"})
        response.raise_for_status()


def runs(flow: str, state: str) -> float:
    value = REGISTRY.get_sample_value("prefect_workflow_runs_total", {"flow": flow, "state": state})
    return value or 0.0


def failures(flow: str) -> float:
    return REGISTRY.get_sample_value("prefect_workflow_failures_total", {"flow": flow}) or 0.0


@pytest.fixture
def api(prefect_server: PrefectServer) -> Api:
    return Api(prefect_server.api_url)


def test_seen_runs_is_bounded_and_remembers_recent_ids() -> None:
    seen = SeenRuns(capacity=3)
    assert [seen.add(k) for k in ("a", "b", "a", "c", "d")] == [True, True, False, True, True]
    assert len(seen) == 3
    assert "a" not in seen  # the oldest went first
    assert "d" in seen
    with pytest.raises(ValueError):
        SeenRuns(0)


def test_counts_each_finished_run_once(api: Api, prefect_server: PrefectServer) -> None:
    flow = f"exporter-{uuid.uuid4().hex[:8]}"
    flow_id = api.flow(flow)
    api.run(flow_id, "RUNNING", "COMPLETED")
    api.run(flow_id, "RUNNING", "COMPLETED")
    api.run(flow_id, "RUNNING", "FAILED")
    api.run(flow_id, "PENDING", "CRASHED")
    running = api.run(flow_id, "RUNNING")

    with PrefectExporter(prefect_server.api_url) as exporter:
        first = exporter.poll()
        assert first.ok, first.error
        assert runs(flow, "COMPLETED") == 2
        assert runs(flow, "FAILED") == 1
        assert runs(flow, "CRASHED") == 1
        assert failures(flow) == 2
        assert first.active["RUNNING"] >= 1
        assert REGISTRY.get_sample_value("prefect_api_up") == 1

        # A second poll over the same runs must not count them again.
        assert exporter.poll().ok
        assert runs(flow, "COMPLETED") == 2
        assert failures(flow) == 2

        # The running one finishes: exactly one more.
        api.set_state(running, "COMPLETED")
        third = exporter.poll()
        assert third.ok
        assert runs(flow, "COMPLETED") == 3
        assert failures(flow) == 2
        assert third.new_terminal_runs >= 1


def test_pages_through_many_finished_runs(api: Api, prefect_server: PrefectServer) -> None:
    """Seven runs of three flows, read two at a time: every run counted, names resolved."""
    flows = [f"exporter-page-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    ids = [api.flow(name) for name in flows]
    for i in range(7):
        api.run(ids[i % 3], "RUNNING", "COMPLETED")
    with PrefectExporter(prefect_server.api_url, page_size=2) as exporter:
        assert exporter.poll().ok
        assert exporter.poll().ok
    assert [runs(name, "COMPLETED") for name in flows] == [3, 2, 2]


def test_a_retried_run_counts_each_time_it_finishes(
    api: Api, prefect_server: PrefectServer
) -> None:
    flow = f"exporter-retry-{uuid.uuid4().hex[:8]}"
    run_id = api.run(api.flow(flow), "RUNNING", "FAILED")
    with PrefectExporter(prefect_server.api_url) as exporter:
        assert exporter.poll().ok
        api.set_state(run_id, "RUNNING")
        api.set_state(run_id, "COMPLETED")
        assert exporter.poll().ok
    assert runs(flow, "FAILED") == 1
    assert runs(flow, "COMPLETED") == 1


def test_lookback_excludes_runs_that_ended_before_start(
    api: Api, prefect_server: PrefectServer
) -> None:
    flow = f"exporter-old-{uuid.uuid4().hex[:8]}"
    flow_id = api.flow(flow)
    api.run(flow_id, "RUNNING", "COMPLETED")
    # A watermark in the future: everything already finished is history.
    with PrefectExporter(
        prefect_server.api_url, lookback=-timedelta(minutes=30), overlap=timedelta(0)
    ) as exporter:
        assert exporter.poll().ok
    assert runs(flow, "COMPLETED") == 0


def test_late_runs_per_work_pool(api: Api, prefect_server: PrefectServer) -> None:
    pool = f"pool-{uuid.uuid4().hex[:8]}"
    api.pool(pool)
    with PrefectExporter(prefect_server.api_url) as exporter:
        result = exporter.poll()
    assert result.ok
    assert result.late_by_pool[pool] == 0
    assert REGISTRY.get_sample_value("prefect_work_pool_late_runs", {"pool": pool}) == 0


def test_api_down_sets_up_to_zero_and_keeps_counters() -> None:
    dead = f"http://127.0.0.1:{free_port()}/api"
    with PrefectExporter(dead, timeout=1) as exporter:
        result = exporter.poll()
    assert not result.ok
    assert result.error
    assert REGISTRY.get_sample_value("prefect_api_up") == 0


def test_registry_serves_only_exporter_series() -> None:
    names = {metric.name for metric in exporter_registry().collect()}
    assert names == {
        "prefect_workflow_runs",
        "prefect_workflow_failures",
        "prefect_flow_runs",
        "prefect_api_up",
        "prefect_work_pool_late_runs",
    }


def test_cli_serves_metrics(api: Api, prefect_server: PrefectServer, tmp_path: Path) -> None:
    """`crypto-lakehouse exporter serve` as a user runs it; scrape its /metrics."""
    flow = f"exporter-cli-{uuid.uuid4().hex[:8]}"
    api.run(api.flow(flow), "RUNNING", "FAILED")
    port = free_port()
    env = {**os.environ, "PREFECT_API_URL": prefect_server.api_url}
    cli = [sys.executable, "-m", "crypto_lakehouse", "exporter", "serve"]
    argv = [*cli, "--port", str(port), "--interval", "0.5"]
    log = (tmp_path / "exporter.log").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        scraped: dict[str, str] = {}

        def has_run() -> bool:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            scraped["text"] = text
            failed = f'prefect_workflow_failures_total{{flow="{flow}"}} 1.0' in text
            return failed and "prefect_api_up 1.0" in text

        wait_until(has_run, timeout=60, what="exporter /metrics")
        text = scraped["text"]
        assert f'prefect_workflow_runs_total{{flow="{flow}",state="FAILED"}} 1.0' in text
        assert "s5cmd_" not in text  # the executor's series belong to the executor
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0
        log.close()
