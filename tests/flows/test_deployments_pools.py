"""Work pools of the right type, with templates applied to existing pools, on a real server.

The pools have fixed names, so these tests run against a Prefect server of their own (its
own database) rather than the session's, whose process pools other tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.flows.deployments import (
    GENERAL_POOL,
    POOLS,
    TRANSFER_POOL,
    PoolChange,
    PoolType,
    default_job_template,
    ensure_pools,
    load_job_templates,
)
from crypto_lakehouse.stack.postgres import PostgresServer
from crypto_lakehouse.stack.prefect_server import PrefectServer

REPO = Path(__file__).resolve().parents[2]
K8S_TEMPLATES = REPO / "deploy" / "k8s" / "base" / "prefect" / "job-templates"


@pytest.fixture(scope="module")
def pool_server(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> Iterator[PrefectServer]:
    database = f"prefect_pools_{uuid.uuid4().hex[:8]}"
    postgres_server.create_database(database)
    server = PrefectServer(
        tmp_path_factory.mktemp("prefect-pools"),
        database_url=postgres_server.info.url(database, driver="postgresql+asyncpg"),
        name="prefect-pools",
    )
    server.start(timeout=180)
    try:
        yield server
    finally:
        server.stop()


def on(server: PrefectServer, work: Any) -> Any:
    """Run a coroutine with this process's Prefect clients pointed at `server`."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        return asyncio.run(work)


async def read_pools() -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return {name: await client.read_work_pool(name) for name in POOLS}


async def delete_pools() -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        for name in POOLS:
            with contextlib.suppress(ObjectNotFound):
                await client.delete_work_pool(name)


async def set_env_default(name: str, env: dict[str, str]) -> None:
    """What `prefect work-pool update` or the UI does when an operator sets job variables."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolUpdate

    async with get_client() as client:
        template = (await client.read_work_pool(name)).base_job_template
        template["variables"]["properties"]["env"]["default"] = env
        await client.update_work_pool(name, WorkPoolUpdate(base_job_template=template))


def cli(server: PrefectServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "LAKEHOUSE_HOME": str(tmp_path / "home"),  # no local stack there
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        **server.client_env(),
    }
    return subprocess.run(
        [sys.executable, "-m", "crypto_lakehouse", "flows", "deploy", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_process_pools_get_a_changed_template_on_redeploy(pool_server: PrefectServer) -> None:
    on(pool_server, delete_pools())
    default = on(pool_server, default_job_template(PoolType.PROCESS))
    assert on(pool_server, ensure_pools(PoolType.PROCESS)) == dict.fromkeys(
        POOLS, PoolChange.CREATED
    )
    pools = on(pool_server, read_pools())
    assert {pool.type for pool in pools.values()} == {"process"}
    assert pools[TRANSFER_POOL].base_job_template == default

    changed = copy.deepcopy(default)
    changed["variables"]["properties"]["env"]["default"] = {"S5CMD_MAX_CONCURRENT": "64"}
    assert on(pool_server, ensure_pools(PoolType.PROCESS, {TRANSFER_POOL: changed})) == {
        GENERAL_POOL: PoolChange.UNCHANGED,
        TRANSFER_POOL: PoolChange.UPDATED,
    }
    pools = on(pool_server, read_pools())
    assert pools[TRANSFER_POOL].base_job_template == changed
    assert pools[GENERAL_POOL].base_job_template == default
    again = on(pool_server, ensure_pools(PoolType.PROCESS, {TRANSFER_POOL: changed}))
    assert set(again.values()) == {PoolChange.UNCHANGED}

    # An operator sets the lake endpoint on the pool; the next template keeps it.
    on(pool_server, set_env_default(TRANSFER_POOL, {"MINIO_ENDPOINT": "http://minio:9000"}))
    changed["variables"]["properties"]["env"]["default"] = {"S5CMD_MAX_CONCURRENT": "32"}
    assert (
        on(pool_server, ensure_pools(PoolType.PROCESS, {TRANSFER_POOL: changed}))[TRANSFER_POOL]
        == PoolChange.UPDATED
    )
    template = on(pool_server, read_pools())[TRANSFER_POOL].base_job_template
    assert template["variables"]["properties"]["env"]["default"] == {
        "MINIO_ENDPOINT": "http://minio:9000",
        "S5CMD_MAX_CONCURRENT": "32",
    }
    changed = template

    # A flow run making sure its deployments exist (no type given) touches nothing.
    assert set(on(pool_server, ensure_pools()).values()) == {PoolChange.UNCHANGED}
    assert on(pool_server, read_pools())[TRANSFER_POOL].base_job_template == changed


@pytest.mark.slow
def test_deploy_kubernetes_pools_through_the_cli(
    pool_server: PrefectServer, tmp_path: Path
) -> None:
    """No worker needed: the pools, limit and deployments are registered on the server."""
    from prefect.client.orchestration import get_client

    on(pool_server, delete_pools())
    done = cli(
        pool_server,
        tmp_path,
        "--pool-type",
        "kubernetes",
        "--job-templates",
        str(K8S_TEMPLATES),
        "--transfer-slots",
        "6",
        "--parallel",
        "3",
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "created" in done.stdout and "6 slots" in done.stdout

    async def read_back() -> tuple[dict[str, Any], int, dict[str, Any]]:
        async with get_client() as client:
            limit = await client.read_global_concurrency_limit_by_name("s5cmd-transfers")
            bronze = await client.read_deployment_by_name("ingest-archive/bronze")
        return await read_pools(), limit.limit, bronze.parameters

    pools, slots, bronze_parameters = on(pool_server, read_back())
    for name, pool in pools.items():
        assert pool.type == "kubernetes"
        assert pool.base_job_template == json.loads((K8S_TEMPLATES / f"{name}.json").read_text())
    assert slots == 6
    assert bronze_parameters == {"request": {"parallel_batches": 3}}

    # Without --job-templates an existing pool keeps its template.
    again = cli(pool_server, tmp_path, "--pool-type", "kubernetes")
    assert again.returncode == 0, again.stderr[-2000:]
    assert on(pool_server, read_pools()) == pools

    # The same pools cannot become process pools: a clear refusal, exit 2, no traceback.
    refused = cli(pool_server, tmp_path, "--pool-type", "process")
    assert refused.returncode == 2
    assert "cannot change a pool's type" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_job_template_folders_are_checked(tmp_path: Path) -> None:
    assert set(load_job_templates(K8S_TEMPLATES)) == set(POOLS)
    with pytest.raises(ConfigError, match="does not exist"):
        load_job_templates(tmp_path / "absent")
    with pytest.raises(ConfigError, match="holds none of"):
        load_job_templates(tmp_path)
    (tmp_path / f"{TRANSFER_POOL}.json").write_text("{not json")
    with pytest.raises(ConfigError, match=TRANSFER_POOL):
        load_job_templates(tmp_path)
    (tmp_path / f"{TRANSFER_POOL}.json").write_text('{"job_configuration": {}}')
    with pytest.raises(ConfigError, match="variables"):
        load_job_templates(tmp_path)
