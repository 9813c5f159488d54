"""The Prefect server launcher against real PostgreSQL: health, a real flow run, stop by PID."""

from __future__ import annotations

import asyncio
import os
import uuid

import httpx
import pytest

from crypto_lakehouse.stack.prefect_server import PrefectMode, PrefectServer
from crypto_lakehouse.stack.process import pid_alive


def test_server_answers_health_and_points_clients_at_itself(
    prefect_server: PrefectServer,
) -> None:
    response = httpx.get(f"{prefect_server.api_url}/health", timeout=5)
    assert response.status_code == 200
    assert prefect_server.client_env() == {"PREFECT_API_URL": prefect_server.api_url}
    env = prefect_server.server_env()
    assert env["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert env["PREFECT_HOME"] == str(prefect_server.home)


def test_async_flow_run_is_recorded_on_the_server(prefect_server: PrefectServer) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    marker = uuid.uuid4().hex

    @flow(name=f"probe-{marker[:8]}")
    async def probe(value: str) -> str:
        return value

    async def run_and_read() -> tuple[str, str]:
        state = await probe(marker, return_state=True)
        async with get_client() as client:
            run = await client.read_flow_run(state.state_details.flow_run_id)
        return await state.result(), run.state.type.value

    result, state_type = asyncio.run(run_and_read())
    assert result == marker
    assert state_type == "COMPLETED"


@pytest.mark.slow
def test_api_only_server_starts_and_stops_by_pid(
    prefect_server: PrefectServer, tmp_path: pytest.TempPathFactory
) -> None:
    """A second, webserver-only instance on the same database (the HA shape)."""
    server = PrefectServer(
        tmp_path,
        database_url=prefect_server.server_env()["PREFECT_SERVER_DATABASE_CONNECTION_URL"],
        mode=PrefectMode.API,
        extra_env={"PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false"},
        name="prefect-api",
    )
    assert "--no-services" in server.argv()
    server.start(timeout=180)
    pid = server.process.running_pid()
    assert pid is not None
    try:
        assert server.healthy()
    finally:
        assert server.stop()
    assert not pid_alive(pid)
    assert not server.healthy()
    assert not os.path.exists(server.process.pid_file)
