"""Executor replicas for the tests: real uvicorn child processes on free loopback ports.

`replica_env` builds a replica's whole configuration (lake = the `lake_server`, allowed
source = the `source_server`); `start_replica` starts one and stops it by PID at the end
of the test. `queue_replica` is one API-only replica (EXECUTOR_MAX_OPERATIONS=0) shared by
the session, for tests of the HTTP contract that need no transfer to run.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from crypto_lakehouse.executor.launcher import ExecutorProcess
from crypto_lakehouse.stack.seaweed import SeaweedServer

EnvFactory = Callable[..., dict[str, str]]
ReplicaFactory = Callable[..., ExecutorProcess]


@pytest.fixture(scope="session")
def api_token() -> str:
    return secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def replica_env(
    lake_server: SeaweedServer, source_server: SeaweedServer, api_token: str
) -> EnvFactory:
    def build(home: Path, **overrides: object) -> dict[str, str]:
        env = {
            "LAKEHOUSE_HOME": str(home),
            "MINIO_ENDPOINT": lake_server.url,
            "MINIO_ACCESS_KEY": lake_server.admin.access_key,
            "MINIO_SECRET_KEY": lake_server.admin.secret_key,
            "SOURCE_ENDPOINT": source_server.url,
            "EXECUTOR_API_TOKEN": api_token,
            "EXECUTOR_LEASE_SECONDS": "3",
            "S5CMD_MAX_CONCURRENT": "16",
        }
        env.update({k.upper(): str(v) for k, v in overrides.items()})
        return {k: v for k, v in env.items() if v != "None"}

    return build


@pytest.fixture
def start_replica(tmp_path: Path, replica_env: EnvFactory) -> Iterator[ReplicaFactory]:
    started: list[ExecutorProcess] = []

    def start(
        name: str = "executor",
        *,
        home: Path | None = None,
        insecure_dev: bool = False,
        **overrides: object,
    ) -> ExecutorProcess:
        home = home or tmp_path / "home"
        replica = ExecutorProcess(
            tmp_path / "run", replica_env(home, **overrides), insecure_dev=insecure_dev, name=name
        )
        started.append(replica)
        return replica.start()

    yield start
    for replica in started:
        replica.stop(timeout=20)


@pytest.fixture(scope="session")
def queue_replica(
    tmp_path_factory: pytest.TempPathFactory, replica_env: EnvFactory
) -> Iterator[ExecutorProcess]:
    """An API-only replica: operations queue up and nothing runs them."""
    root = tmp_path_factory.mktemp("queue-replica")
    replica = ExecutorProcess(
        root, replica_env(root / "home", executor_max_operations=0, executor_max_queue=10_000)
    )
    replica.start()
    yield replica
    replica.stop(timeout=20)


@pytest.fixture
def http(queue_replica: ExecutorProcess, api_token: str) -> Iterator[httpx.Client]:
    """An authenticated client of `queue_replica`."""
    headers = {"Authorization": f"Bearer {api_token}"}
    with httpx.Client(base_url=queue_replica.url, headers=headers, timeout=10) as client:
        yield client
