"""Real servers for the tests: SeaweedFS (source + lake), PostgreSQL and Prefect on 127.0.0.1.

Each is started once per test session on free ports under a temporary directory and
stopped by its PID at the end. Tests that use them are marked `servers`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto_lakehouse.stack.postgres import PostgresServer
from crypto_lakehouse.stack.prefect_server import PrefectServer
from crypto_lakehouse.stack.seaweed import Credentials, SeaweedServer
from crypto_lakehouse.storage import Endpoint, S3Storage
from crypto_lakehouse.transfer.commands import CommandFile

FIXTURES = Path(__file__).resolve().parents[1] / "src/crypto_lakehouse/archive/binance_files"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    server_fixtures = {"source_server", "lake_server", "postgres_server", "prefect_server"}
    for item in items:
        if server_fixtures & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


@pytest.fixture
def wildcard_sources(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The source URLs of the glob (wildcard) lines the engine writes to its run files."""
    sources: list[str] = []
    write_line = CommandFile.copy

    def recording(self: CommandFile, source: str, dest: str, *, raw: bool = True) -> None:
        if not raw:
            sources.append(source)
        write_line(self, source, dest, raw=raw)

    monkeypatch.setattr(CommandFile, "copy", recording)
    return sources


@pytest.fixture(scope="session")
def binance_fixtures() -> Path:
    """The real Binance archive files the package ships (same layout as the bucket).

    Read from the source tree, not the installed package: the tests check the files
    this repository holds.
    """
    if not FIXTURES.exists():
        pytest.fail(f"real Binance fixtures missing at {FIXTURES}")
    return FIXTURES


@pytest.fixture(scope="session")
def source_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """An S3 endpoint whose buckets anonymous clients can read: it plays the Binance archive."""
    server = SeaweedServer(
        "source",
        tmp_path_factory.mktemp("seaweed-source"),
        admin=Credentials.generate(),
        reader=Credentials.generate(),
        anonymous_read=True,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def lake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """An S3 endpoint that requires signed requests: it plays MinIO."""
    server = SeaweedServer(
        "lake",
        tmp_path_factory.mktemp("seaweed-lake"),
        admin=Credentials.generate(),
        reader=Credentials.generate(),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster.

    Not under pytest's tmp tree: when we run as root the cluster runs as `postgres`, and
    pytest resets `pytest-of-root` to mode 0700 whenever a session starts, which would lock
    the server out of its own data directory mid-run.
    """
    root = Path(tempfile.mkdtemp(prefix="lakehouse-test-pg-"))
    root.chmod(0o755)
    server = PostgresServer(root / "pg", fast=True)  # throw-away data: no fsync
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _fresh_bucket(endpoint: Endpoint) -> Iterator[str]:
    """A new bucket; at the end it and every bucket named after it (`<name>-src`, ...) go.

    Each bucket is a SeaweedFS collection with volumes of its own, and a `weed mini` server
    has a few dozen volumes: without this the session's servers run out of writable
    volumes after a few hundred tests ("failed to find writable volumes", InternalError).
    """
    name = f"t-{uuid.uuid4().hex[:12]}"
    storage = S3Storage(endpoint)
    storage.ensure_bucket(name)
    try:
        yield name
    finally:
        for bucket in storage.client.list_buckets()["Buckets"]:
            if bucket["Name"].startswith(name):
                storage.delete_keys(
                    bucket["Name"], [o.key for o in storage.list_objects(bucket["Name"])]
                )
                storage.client.delete_bucket(Bucket=bucket["Name"])


@pytest.fixture
def source_bucket(source_server: SeaweedServer) -> Iterator[str]:
    """A new, empty bucket on the source endpoint (anonymously readable)."""
    with _fresh_bucket(source_server.endpoint()) as name:
        yield name


@pytest.fixture
def lake_bucket(lake_server: SeaweedServer) -> Iterator[str]:
    """A new, empty bucket on the lake endpoint."""
    with _fresh_bucket(lake_server.endpoint()) as name:
        yield name


@pytest.fixture(scope="session")
def prefect_server(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> Iterator[PrefectServer]:
    """A real Prefect server (API + services, no UI) on the session's PostgreSQL.

    While the session runs, Prefect clients in the test process talk to it (via
    `client_settings()`); child processes get `prefect_server.client_env()`.
    """
    server = PrefectServer.for_postgres(tmp_path_factory.mktemp("prefect"), postgres_server)
    server.start(timeout=180)
    try:
        with server.client_settings():
            yield server
    finally:
        server.stop()
