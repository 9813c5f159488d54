"""With EXECUTOR_URL set, the ingest flow moves files through a real executor service."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from flow_helpers import CORRUPT, IngestEnv

from crypto_lakehouse.catalog import FileStatus
from crypto_lakehouse.executor.launcher import ExecutorProcess
from crypto_lakehouse.flows.local import run_ingest_locally

pytestmark = pytest.mark.slow


def test_ingest_through_the_executor(
    ingest_env: IngestEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = secrets.token_urlsafe(24)
    env = ingest_env.env
    replica = ExecutorProcess(
        tmp_path / "executor",
        {
            "LAKEHOUSE_HOME": str(tmp_path / "executor-home"),
            "MINIO_ENDPOINT": env["MINIO_ENDPOINT"],
            "MINIO_ACCESS_KEY": env["MINIO_ACCESS_KEY"],
            "MINIO_SECRET_KEY": env["MINIO_SECRET_KEY"],
            "SOURCE_ENDPOINT": env["SOURCE_ENDPOINT"],
            "EXECUTOR_API_TOKEN": token,
        },
    ).start()
    try:
        monkeypatch.setenv("EXECUTOR_URL", replica.url)
        monkeypatch.setenv("EXECUTOR_API_TOKEN", token)
        run = asyncio.run(run_ingest_locally(ingest_env.parameters))
    finally:
        replica.stop(timeout=20)

    good = ingest_env.archive.good
    summary = run.summary
    assert (summary.verified, summary.corrupt, summary.failed) == (len(good), 1, 0)
    verified = {e.path: e.sha256 for e in ingest_env.manifest.verified_files()}
    assert verified == good
    corrupt = ingest_env.manifest.get(CORRUPT.key)
    assert corrupt is not None and corrupt.status is FileStatus.CORRUPT
    keys = {o.key for o in ingest_env.bronze.list_objects(ingest_env.bronze_bucket)}
    assert CORRUPT.key not in keys and set(good) <= keys
