"""`crypto-lakehouse executor submit|status|list|cancel` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from executor_helpers import fill_bucket

from crypto_lakehouse.executor.launcher import ExecutorProcess


def cli(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "EXECUTOR_URL": url, "EXECUTOR_API_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "crypto_lakehouse", "executor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_submit_status_list_cancel(queue_replica: ExecutorProcess, api_token: str) -> None:
    submitted = cli(queue_replica.url, api_token, "submit", "s3://source-data/a/", "s3://bronze/b/",
                    "--mode", "staged", "--type", "copy", "--part-size-mb", "8")  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    op = submitted.stdout.strip()
    assert len(op) == 32

    status = cli(queue_replica.url, api_token, "status", op, "--json")
    view = json.loads(status.stdout)
    assert (view["status"], view["operation_mode"], view["operation_type"]) == (
        "pending",
        "staged",
        "copy",
    )
    assert view["configuration"]["part_size_mb"] == 8

    listed = cli(queue_replica.url, api_token, "list", "--status", "pending", "--limit", "500")
    assert listed.returncode == 0 and op in listed.stdout

    cancelled = cli(queue_replica.url, api_token, "cancel", op)
    assert cancelled.returncode == 0 and cancelled.stdout.strip() == f"{op} cancelled"


@pytest.mark.slow
def test_bad_input_and_bad_token_exit_2(queue_replica: ExecutorProcess, api_token: str) -> None:
    bad_url = cli(queue_replica.url, api_token, "submit", "s3://UPPER/a/", "s3://bronze/b/")
    assert bad_url.returncode == 2 and "invalid bucket name" in bad_url.stderr
    wrong = cli(queue_replica.url, "x" * 30, "status", "a" * 32)
    assert wrong.returncode == 2 and "token" in wrong.stderr
    assert "x" * 30 not in wrong.stderr


@pytest.mark.slow
def test_submit_wait_runs_to_completion(
    start_replica, api_token, source_server, source_bucket, lake_bucket
) -> None:
    fill_bucket(source_server, source_bucket, "data/", 3)
    replica = start_replica()
    source, dest = f"s3://{source_bucket}/data/", f"s3://{lake_bucket}/copy/"
    endpoint = ["--source-endpoint", source_server.url]
    result = cli(replica.url, api_token, "submit", source, dest, *endpoint, "--wait")
    assert result.returncode == 0, result.stderr
    final = json.loads(result.stdout)
    assert final["status"] == "completed" and final["counts"]["copied"] == 3
    assert "queued" in result.stderr


def test_status_objects_prints_each_listed_objects_result(
    queue_replica: ExecutorProcess, api_token: str
) -> None:
    import httpx

    body = {
        "operation_type": "copy",
        "source": {"bucket": "source-data", "prefix": "a/"},
        "destination": {"bucket": "bronze", "prefix": "b/"},
        "objects": [{"key": f"k{i}", "size": i} for i in range(3)],
    }
    headers = {"Authorization": f"Bearer {api_token}"}
    op = httpx.post(f"{queue_replica.url}/sync", json=body, headers=headers).json()["operation_id"]
    shown = cli(queue_replica.url, api_token, "status", op, "--objects")
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if line.startswith("pending")]
    assert [line.split()[-1] for line in lines] == ["a/k0", "a/k1", "a/k2"]
