"""The production Prefect shape, for real on 127.0.0.1: two API servers (`--no-services`)
and one background-services process on one PostgreSQL and one Redis (Debian's
`redis-server`), configured with the same settings as deploy/k8s (prefect-server-env).

A flow run created through one API server is seen and completed through the other, and
the events of that run travel through Redis to the services process, which persists
them where the first server reads them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis
import yaml
from _manifests import K8S

from crypto_lakehouse.stack.postgres import PostgresServer
from crypto_lakehouse.stack.prefect_server import PrefectMode, PrefectServer, prefect_binary
from crypto_lakehouse.stack.process import ManagedProcess, free_port, wait_until

pytestmark = pytest.mark.slow

# Settings copied from the manifests: what is tested here is what the cluster runs.
FROM_MANIFESTS = (
    "PREFECT_MESSAGING_BROKER",
    "PREFECT_MESSAGING_CACHE",
    "PREFECT_SERVER_EVENTS_CAUSAL_ORDERING",
    "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE",
    "PREFECT_SERVER_DATABASE_MIGRATE_ON_START",
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START",
)


def _config_map(name: str) -> dict[str, str]:
    docs = yaml.safe_load_all((K8S / "base" / "prefect" / "config.yaml").read_text())
    (config,) = [d for d in docs if d and d["metadata"]["name"] == name]
    return config["data"]


def manifest_settings() -> dict[str, str]:
    config = _config_map("prefect-server-env")
    return {key: config[key] for key in FROM_MANIFESTS}


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server not found: run `make setup` (Debian package redis-server)")
    port = free_port()
    data = tmp_path / "redis"
    data.mkdir()
    proc = ManagedProcess("redis", tmp_path / "redis.pid", tmp_path / "redis.log")
    proc.start(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
        ]
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    wait_until(client.ping, timeout=20, what="redis-server", log_tail=proc.log_tail)
    yield port
    proc.stop(timeout=20)


@pytest.fixture
def ha_prefect(
    tmp_path: Path, postgres_server: PostgresServer, redis_server: int
) -> Iterator[tuple[PrefectServer, PrefectServer, PrefectServer]]:
    database = f"prefect_ha_{uuid.uuid4().hex[:8]}"
    postgres_server.create_database(database)
    url = postgres_server.info.url(database, driver="postgresql+asyncpg")
    env = {
        **manifest_settings(),
        "PREFECT_REDIS_MESSAGING_HOST": "127.0.0.1",
        "PREFECT_REDIS_MESSAGING_PORT": str(redis_server),
        "PREFECT_REDIS_MESSAGING_DB": "0",
        "PREFECT_SERVER_DOCKET_URL": f"redis://127.0.0.1:{redis_server}/1",
    }
    servers = [
        PrefectServer(tmp_path / name, database_url=url, mode=mode, extra_env=env, name=name)
        for name, mode in (
            ("api-a", PrefectMode.API),
            ("api-b", PrefectMode.API),
            ("services", PrefectMode.SERVICES),
        )
    ]
    # The prefect-db-migrate Job's own script (migrations, block types), once, before the
    # servers start side by side.
    servers[0].home.mkdir(parents=True)
    job_env = servers[0].server_env()
    job_env["PATH"] = f"{Path(prefect_binary()).parent}{os.pathsep}{job_env.get('PATH', '')}"
    job = subprocess.run(
        ["sh", "-c", _config_map("prefect-db-migrate")["migrate.sh"]],
        env=job_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-2000:]
    try:
        with ThreadPoolExecutor(len(servers)) as pool:  # start side by side, as pods do
            list(pool.map(lambda server: server.start(timeout=240), servers))
        yield servers[0], servers[1], servers[2]
    finally:
        for server in servers:
            server.stop()


def test_two_api_servers_share_state_and_events(
    ha_prefect: tuple[PrefectServer, PrefectServer, PrefectServer], redis_server: int
) -> None:
    api_a, api_b, services = ha_prefect
    assert os.environ.get("PREFECT_API_URL") != api_b.api_url
    a = httpx.Client(base_url=api_a.api_url + "/", timeout=30)
    b = httpx.Client(base_url=api_b.api_url + "/", timeout=30)
    for client in (a, b):
        assert client.get("ready").status_code == 200
    # Block types came from the migration Job's script (the servers do not register them).
    block_types = a.post("block_types/filter", json={}).json()
    assert "secret" in {block["slug"] for block in block_types}

    flow_id = a.post("flows/", json={"name": "ha-check"}).json()["id"]
    run = a.post("flow_runs/", json={"flow_id": flow_id, "state": {"type": "PENDING"}})
    run.raise_for_status()
    run_id = run.json()["id"]

    # Seen through the other server.
    seen = b.get(f"flow_runs/{run_id}")
    assert seen.status_code == 200
    assert seen.json()["state_type"] == "PENDING"

    # Completed through the other server, with Prefect's orchestration rules.
    for state in ("RUNNING", "COMPLETED"):
        result = b.post(f"flow_runs/{run_id}/set_state", json={"state": {"type": state}})
        result.raise_for_status()
        assert result.json()["status"] == "ACCEPT", result.json()

    final = a.get(f"flow_runs/{run_id}").json()
    assert final["state_type"] == "COMPLETED"
    assert final["end_time"] is not None

    # The state-change events went API B -> Redis -> services (persister) -> PostgreSQL,
    # and API A reads them back.
    def completed_event_persisted() -> bool:
        response = a.post(
            "events/filter",
            json={
                "filter": {
                    "event": {"prefix": ["prefect.flow-run."]},
                    "resource": {"id": [f"prefect.flow-run.{run_id}"]},
                },
                "limit": 50,
            },
        )
        response.raise_for_status()
        names = {event["event"] for event in response.json()["events"]}
        return "prefect.flow-run.Completed" in names

    wait_until(
        completed_event_persisted,
        timeout=60,
        what="the Completed event persisted by the services process",
        alive=lambda: services.process.running_pid() is not None,
        log_tail=services.process.log_tail,
    )
    streams = redis.Redis(host="127.0.0.1", port=redis_server).keys("*")
    assert any(b"events" in key for key in streams), streams
