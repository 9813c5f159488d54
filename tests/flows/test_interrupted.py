"""An ingest killed mid-run (SIGKILL, by PID) restarts where it stopped on the next run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from flow_helpers import CORRUPT, IngestEnv

from crypto_lakehouse.catalog import FileStatus
from crypto_lakehouse.flows.local import run_ingest_locally
from crypto_lakehouse.stack.process import wait_for_exit

pytestmark = pytest.mark.slow

CHILD = (
    "import asyncio, json, sys\n"
    "from crypto_lakehouse.flows.local import run_ingest_locally\n"
    "asyncio.run(run_ingest_locally(json.loads(sys.argv[1])))\n"
)


def test_killed_ingest_then_rerun_verifies_every_good_file_exactly_once(
    ingest_env: IngestEnv,
) -> None:
    # One file per task, one task at a time: the run takes long enough to be cut.
    slow = {**ingest_env.parameters, "batch_files": 1, "parallel_batches": 1}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(slow)],
        env={**os.environ, **ingest_env.env, "PREFECT_LOGGING_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    good = ingest_env.archive.good
    manifest = ingest_env.manifest
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and child.poll() is None:
            with_tables = _counts(ingest_env)
            if with_tables.get(FileStatus.VERIFIED, 0) >= 2:
                break
            time.sleep(0.1)
        assert child.poll() is None, "the flow finished before it could be interrupted"
        os.kill(child.pid, signal.SIGKILL)
        assert wait_for_exit(child.pid, 10)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)

    before = {e.path: e.status for e in manifest.entries()}
    verified_before = {p for p, s in before.items() if s is FileStatus.VERIFIED}
    assert 2 <= len(verified_before) < len(good), "the kill did not land mid-run"

    rerun = asyncio.run(run_ingest_locally(ingest_env.parameters)).summary
    known_corrupt = 1 if before.get(CORRUPT.key) is FileStatus.CORRUPT else 0
    assert rerun.skipped == len(verified_before)
    assert rerun.transferred == len(good) + 1 - len(verified_before) - known_corrupt
    entries = manifest.entries()
    verified = [e for e in entries if e.status is FileStatus.VERIFIED]
    assert sorted(e.path for e in verified) == sorted(good)  # each good file, exactly once
    assert all(e.version == 1 and e.sha256 == good[e.path] for e in verified)
    assert all(manifest.history(path) == [] for path in good)
    assert [e.path for e in entries if e.status is not FileStatus.VERIFIED] == [CORRUPT.key]
    keys = {o.key for o in ingest_env.bronze.list_objects(ingest_env.bronze_bucket)}
    assert CORRUPT.key not in keys and set(good) <= keys


def _counts(env: IngestEnv) -> dict[FileStatus, int]:
    from crypto_lakehouse.errors import CatalogError

    try:
        return env.manifest.status_counts()
    except CatalogError:  # the child has not created the tables yet
        return {}
