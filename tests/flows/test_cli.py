"""The flow commands as a user runs them, for the answers that need no servers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def cli(*args: str, home: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["LAKEHOUSE_HOME"] = str(home)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "crypto_lakehouse", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, time.monotonic() - started


def test_ingest_from_the_unreachable_real_archive_fails_fast_with_one_line(
    tmp_path: Path,
) -> None:
    done, seconds = cli("ingest", "--source", "binance", "-m", "spot", home=tmp_path)
    assert done.returncode == 4, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "data.binance.vision" in lines[0]
    assert seconds < 60  # seconds, not s5cmd's minute of retries


def test_worker_for_an_unknown_pool_is_bad_input(tmp_path: Path) -> None:
    done, _ = cli("worker", "--pool", "no-such-pool", home=tmp_path)
    assert done.returncode == 2
    assert "crypto-data-pool" in done.stderr and "s5cmd-optimized-pool" in done.stderr


def test_flows_deploy_without_a_server_says_how_to_get_one(tmp_path: Path) -> None:
    done, _ = cli("flows", "deploy", home=tmp_path)
    assert done.returncode == 2
    assert "stack up" in done.stderr
