"""Work pools, the transfer limit and deployments on the real Prefect server; a worker run."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from flow_helpers import IngestEnv

from crypto_lakehouse.flows.deployments import (
    GENERAL_POOL,
    TRANSFER_POOL,
    available_specs,
    deploy_all,
)
from crypto_lakehouse.flows.limits import TRANSFER_LIMIT
from crypto_lakehouse.stack.prefect_server import PrefectServer
from crypto_lakehouse.stack.process import wait_for_exit


def api(server: PrefectServer, method: str, path: str, **kwargs: object) -> dict:
    response = httpx.request(method, f"{server.api_url}{path}", timeout=30, **kwargs)  # type: ignore[arg-type]
    response.raise_for_status()
    return response.json()


def test_deploy_registers_pools_limit_and_deployments(prefect_server: PrefectServer) -> None:
    first = asyncio.run(deploy_all())
    again = asyncio.run(deploy_all())  # idempotent: same ids
    assert [r.deployment_id for r in again] == [r.deployment_id for r in first]
    assert {r.name for r in first} == {
        f"{spec.load_flow().name}/{spec.name}" for spec in available_specs()
    }

    for pool in (GENERAL_POOL, TRANSFER_POOL):
        assert api(prefect_server, "GET", f"/work_pools/{pool}")["type"] == "process"
    limit = api(prefect_server, "GET", f"/v2/concurrency_limits/{TRANSFER_LIMIT}")
    assert limit["limit"] >= 1 and limit["active"]
    bronze = api(prefect_server, "GET", "/deployments/name/ingest-archive/bronze")
    assert bronze["work_pool_name"] == TRANSFER_POOL
    assert bronze["entrypoint"] == "crypto_lakehouse.flows.ingest.ingest_archive"
    schema = bronze["parameter_openapi_schema"]
    assert list(schema["properties"]) == ["request"]  # the IngestRequest, as one form
    assert "markets" in schema["definitions"]["IngestRequest"]["properties"]
    assert bronze["parameters"] == {}  # every default lives in IngestRequest


@pytest.mark.slow
def test_a_worker_runs_a_deployment_flow_run(
    prefect_server: PrefectServer, ingest_env: IngestEnv
) -> None:
    """The run is created as the docs say, `prefect deployment run ... --param request=JSON`;
    the fields it leaves unset take the deployment's (`--parallel`), then the defaults."""
    asyncio.run(deploy_all(parallel=1))
    request = {**ingest_env.parameters, "symbols": ["BTCUSDT"]}  # leaves the corrupt file out
    created = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "prefect"), "deployment", "run",
         "ingest-archive/bronze", "--param", f"request={json.dumps(request)}"],
        env={**os.environ, **ingest_env.env, "COLUMNS": "500"},
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    run = {"id": re.search(r"UUID: ([0-9a-f-]{36})", created.stdout).group(1)}  # type: ignore[union-attr]
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crypto_lakehouse",
            "worker",
            "--pool",
            TRANSFER_POOL,
            "--poll-seconds",
            "1",
        ],
        env={**os.environ, **ingest_env.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        state = ""
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            state = api(prefect_server, "GET", f"/flow_runs/{run['id']}")["state_type"]
            if state in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
                break
            assert worker.poll() is None, "the worker exited"
            time.sleep(1)
        assert state == "COMPLETED"
    finally:
        worker.send_signal(signal.SIGINT)  # by PID; the worker stops on SIGINT
        if not wait_for_exit(worker.pid, 30):
            worker.kill()
        worker.wait(timeout=10)
    btc = [p for p in ingest_env.archive.good if "/BTCUSDT/" in p]
    verified = {e.path for e in ingest_env.manifest.verified_files()}
    assert set(btc) == verified
    [recorded] = [r["parameters"] for r in ingest_env.manifest.runs() if r["run_id"] == run["id"]]
    assert recorded["symbols"] == ["BTCUSDT"] and recorded["start"] == request["start"]
    assert recorded["parallel_batches"] == 1  # the deployment's, kept under the run's request
