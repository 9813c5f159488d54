"""The Prefect server launcher against real PostgreSQL: health, a real flow run, stop by PID."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest

from crypto_lakehouse.stack.postgres import PostgresServer
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


@pytest.mark.slow
def test_a_lease_survives_a_restart_and_is_reclaimed_after_its_ttl(
    postgres_server: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run took the only slot of `s5cmd-transfers` and died; then the server restarted.

    The restarted server still knows the lease (it renews it), the slot stays counted
    until the lease expires, the repossessor then gives it back, and a waiting transfer
    gets it within a bounded time, having said what it waited for.
    """
    from prefect.client.orchestration import get_client
    from prefect.concurrency.services import ConcurrencySlotAcquisitionWithLeaseService
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from crypto_lakehouse.flows.limits import (
        TRANSFER_LEASE_SECONDS,
        TRANSFER_LIMIT,
        ensure_transfer_limit,
        slots_in_use,
        transfer_slot,
    )

    database = f"prefect_leases_{uuid.uuid4().hex[:8]}"
    postgres_server.create_database(database)
    server = PrefectServer(
        tmp_path / "prefect",
        database_url=postgres_server.info.url(database, driver="postgresql+asyncpg"),
        # the repossessor's default is every 15 s; 2 s keeps the test short
        extra_env={"PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "2"},
        name="prefect-leases",
    )
    caplog.set_level(logging.INFO, logger="crypto_lakehouse.flows.limits")

    async def take_the_only_slot() -> str:
        await ensure_transfer_limit(1)
        async with get_client() as client:
            response = await client.increment_concurrency_slots_with_lease(
                names=[TRANSFER_LIMIT],
                slots=1,
                mode="concurrency",
                lease_duration=TRANSFER_LEASE_SECONDS,
            )
        return str(response.json()["lease_id"])

    async def after_restart(lease_id: str) -> tuple[tuple[int, int] | None, float]:
        usage = await slots_in_use()
        async with get_client() as client:  # known: renewing an unknown lease is a 404
            await client.renew_concurrency_lease(
                lease_id=uuid.UUID(lease_id), lease_duration=TRANSFER_LEASE_SECONDS
            )
        started = time.monotonic()
        async with transfer_slot(notice_after=2):
            return usage, time.monotonic() - started

    # Prefect keeps one slot-acquiring service per process, bound to the server it met
    # first (the session's, when earlier tests took slots): stop it before and after.
    ConcurrencySlotAcquisitionWithLeaseService.drain_all(timeout=10)
    server.start(timeout=180)
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
            lease_id = asyncio.run(take_the_only_slot())
            assert (server.lease_dir / f"{lease_id}.json").exists()
            pid = server.process.running_pid()
            assert server.stop()
            assert pid is not None and not pid_alive(pid)
            server.start(timeout=180)
            usage, waited = asyncio.run(after_restart(lease_id))
    finally:
        # Prefect keeps one slot-acquiring service per process, bound to the server it met
        # first: stop it so later tests acquire from the session's server.
        ConcurrencySlotAcquisitionWithLeaseService.drain_all(timeout=10)
        server.stop()
    assert usage == (1, 1)  # the dead run's slot was still counted after the restart
    # renewed for 60 s after the restart, then revoked (2 s loop), then the retry (<= 30 s)
    assert TRANSFER_LEASE_SECONDS - 10 < waited < TRANSFER_LEASE_SECONDS + 2 + 30 + 15
    assert not (server.lease_dir / f"{lease_id}.json").exists()
    assert "waiting for a slot of s5cmd-transfers (1 of 1 in use)" in caplog.text
