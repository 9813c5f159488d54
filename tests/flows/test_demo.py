"""`crypto-lakehouse demo` as a user runs it, twice: a first ingest, then an incremental one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crypto_lakehouse.stack.manager import LocalStack

pytestmark = [pytest.mark.slow, pytest.mark.servers, pytest.mark.timeout(1800)]


def demo(home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MINIO_"))}
    env.update({"LAKEHOUSE_HOME": str(home), "COLUMNS": "200"})
    for key in ("SOURCE_ENDPOINT", "CATALOG_DATABASE_URL", "BRONZE_BUCKET", "EXECUTOR_URL"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, "-m", "crypto_lakehouse", "demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_demo_ingests_then_reruns_incrementally(tmp_path: Path) -> None:
    try:
        first = demo(tmp_path)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        out = first.stdout
        assert "first ingest; Prefect flow run ended Failed" in out  # the planted corrupt file
        assert "expected: planted corrupt file quarantined" in out
        assert "1 day(s)/month(s) missing in the archive" in out
        assert "unexpected:" not in out
        ui = LocalStack(tmp_path).prefect.ui_url
        assert ui and f"Prefect UI: {ui}" in out

        second = demo(tmp_path)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
        assert "incremental: nothing transferred" in second.stdout
    finally:
        LocalStack(tmp_path).down()
