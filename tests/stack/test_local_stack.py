"""The local stack through the CLI, as a user runs it: up, status, env, down, and bad states."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crypto_lakehouse.stack.manager import LocalStack
from crypto_lakehouse.stack.process import pid_alive
from crypto_lakehouse.storage import S3Storage

pytestmark = [pytest.mark.servers, pytest.mark.slow]


def cli(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`crypto-lakehouse stack ...` as a user runs it.

    The limit is generous: `up` starts four servers, and on a loaded two-core machine
    (a full test run) Prefect alone once took more than 120 s to import and answer.
    """
    env = {**os.environ, "LAKEHOUSE_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "crypto_lakehouse", "stack", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def home(tmp_path: Path):
    yield tmp_path
    LocalStack(tmp_path).down()


def test_up_is_idempotent_and_serves_real_requests(home: Path) -> None:
    first = cli(home, "up")
    assert first.returncode == 0, first.stderr
    stack = LocalStack(home)
    pids = [s.pid for s in stack.status()]
    assert all(pids)

    again = cli(home, "up")
    assert again.returncode == 0, again.stderr
    assert [s.pid for s in LocalStack(home).status()] == pids, "second up must not restart"

    # The source endpoint is anonymously readable; the lake refuses unsigned requests.
    admin = S3Storage(stack.source.endpoint())
    admin.ensure_bucket("public-data")
    admin.put_bytes("public-data", "a/b.txt", b"hello")
    anon = S3Storage(stack.source_endpoint(anonymous=True))
    assert anon.get_bytes("public-data", "a/b.txt") == b"hello"
    S3Storage(stack.lake_endpoint()).ensure_bucket("lake-data")
    from crypto_lakehouse.errors import AccessDenied
    from crypto_lakehouse.storage import Endpoint

    with pytest.raises(AccessDenied):
        S3Storage(Endpoint(url=stack.lake.url, anonymous=True)).probe_bucket("lake-data")

    status = cli(home, "status")
    assert status.returncode == 0
    assert stack.lake.url in status.stdout

    down = cli(home, "down")
    assert down.returncode == 0
    for pid in pids:
        assert not pid_alive(pid)
    assert cli(home, "status").returncode == 1


def test_credentials_are_private_and_only_printed_by_env(home: Path) -> None:
    up = cli(home, "up")
    assert up.returncode == 0, up.stderr
    creds_file = home / "stack" / "credentials.json"
    assert stat.S_IMODE(creds_file.stat().st_mode) == 0o600
    secrets = json.loads(creds_file.read_text())
    secret_key = secrets["lake_admin"]["secret_key"]
    assert secret_key not in up.stdout + up.stderr
    assert secret_key not in cli(home, "status").stdout
    exports = cli(home, "env").stdout
    assert any(
        f"MINIO_SECRET_KEY={quoted}" in exports for quoted in (secret_key, f"'{secret_key}'")
    )


def test_stale_pid_file_is_ignored(home: Path) -> None:
    stack = LocalStack(home)
    stack.save()
    stack.source.root.mkdir(parents=True)
    # A PID file left by a crash, pointing at a process that no longer exists.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stack.source.process.pid_file.write_text(f"{dead.pid}\n")
    started = time.monotonic()
    result = cli(home, "up")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 60
    assert LocalStack(home).source.process.read_pid() != dead.pid


def test_port_in_use_gives_a_clear_error(home: Path) -> None:
    stack = LocalStack(home)
    stack.save()
    port = stack.ports.source.s3
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        started = time.monotonic()
        result = cli(home, "up")
    assert result.returncode == 5
    assert "already in use" in result.stderr
    assert str(port) in result.stderr
    assert time.monotonic() - started < 30
