"""Bearer auth on every route but the probes; no token, no service; secrets never leak."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from crypto_lakehouse.executor.launcher import ExecutorProcess

OP = "0" * 32
PROTECTED = [
    ("POST", "/sync"),
    ("GET", "/operations"),
    ("GET", f"/operations/{OP}"),
    ("POST", f"/operations/{OP}/cancel"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
]
WRONG_TOKENS = [
    None,  # no header at all
    "Bearer x",
    "Bearer wrong-token-of-some-length",
    "Basic dXNlcjpwYXNz",
    "Bearer-but-not-really",
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize("header", WRONG_TOKENS)
def test_protected_routes_answer_401(
    queue_replica: ExecutorProcess, method: str, path: str, header: str | None
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    reply = httpx.request(method, queue_replica.url + path, headers=headers, json={}, timeout=10)
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert reply.json() == {"detail": "missing or invalid bearer token"}


def test_the_right_token_with_the_prefix_of_the_real_one_fails(
    queue_replica: ExecutorProcess, api_token: str
) -> None:
    for guess in (api_token[:-1], api_token + "x", api_token.upper()):
        reply = httpx.get(
            f"{queue_replica.url}/operations", headers={"Authorization": f"Bearer {guess}"}
        )
        assert reply.status_code == 401
        assert guess not in reply.text


@pytest.mark.parametrize("path", ["/health", "/ready", "/metrics"])
def test_probes_are_open(queue_replica: ExecutorProcess, path: str) -> None:
    reply = httpx.get(queue_replica.url + path, timeout=10)
    assert reply.status_code == 200, reply.text


def test_health_names_s5cmd_and_ready_checks_both_sides(queue_replica: ExecutorProcess) -> None:
    health = httpx.get(f"{queue_replica.url}/health").json()
    assert health["status"] == "alive"
    assert health["s5cmd_version"].startswith("v2.")
    assert health["auth"] == "bearer"
    assert httpx.get(f"{queue_replica.url}/ready").json() == {
        "ready": True,
        "storage": "ok",
        "database": "ok",
    }


def test_openapi_is_served_with_the_token(queue_replica: ExecutorProcess, api_token: str) -> None:
    headers = {"Authorization": f"Bearer {api_token}"}
    spec = httpx.get(f"{queue_replica.url}/openapi.json", headers=headers).json()
    assert {"/sync", "/operations", "/operations/{operation_id}", "/health"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    docs = httpx.get(f"{queue_replica.url}/docs", headers=headers)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_no_secret_in_the_log(queue_replica: ExecutorProcess, api_token: str, lake_server) -> None:
    headers = {"Authorization": f"Bearer {api_token}"}
    httpx.post(f"{queue_replica.url}/sync", headers=headers, json={"bad": 1})
    log = queue_replica.log()
    assert "executor replica" in log  # the start-up line was written
    for secret in (api_token, lake_server.admin.secret_key, lake_server.admin.access_key):
        assert secret not in log


def serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "crypto_lakehouse", "executor", "serve", "--port", "9", *args]
    full_env = {"PATH": os.environ["PATH"], **env}
    return subprocess.run(argv, env=full_env, capture_output=True, text=True, timeout=60)


def test_refuses_to_start_without_a_token(tmp_path: Path) -> None:
    env = {"LAKEHOUSE_HOME": str(tmp_path), "MINIO_ENDPOINT": "http://127.0.0.1:9"}
    result = serve(env)
    assert result.returncode == 2
    assert "EXECUTOR_API_TOKEN is not set" in result.stderr


@pytest.mark.slow
def test_refuses_a_short_token(tmp_path: Path) -> None:
    env = {"LAKEHOUSE_HOME": str(tmp_path), "MINIO_ENDPOINT": "http://127.0.0.1:9"}
    result = serve({**env, "EXECUTOR_API_TOKEN": "short-secret"})
    assert result.returncode == 2
    assert "too short" in result.stderr
    assert "short-secret" not in result.stderr + result.stdout


@pytest.mark.slow
def test_insecure_dev_refuses_a_public_address(tmp_path: Path) -> None:
    env = {"LAKEHOUSE_HOME": str(tmp_path), "MINIO_ENDPOINT": "http://127.0.0.1:9"}
    result = serve(env, "--insecure-dev", "--host", "0.0.0.0")
    assert result.returncode == 2
    assert "loopback" in result.stderr


@pytest.mark.slow
def test_insecure_dev_is_one_process_only(tmp_path: Path) -> None:
    env = {"LAKEHOUSE_HOME": str(tmp_path), "MINIO_ENDPOINT": "http://127.0.0.1:9"}
    result = serve(env, "--insecure-dev", "--workers", "2")
    assert result.returncode == 2
    assert "single process" in result.stderr


@pytest.mark.slow
def test_insecure_dev_runs_open_and_says_so_loudly(start_replica) -> None:
    replica = start_replica("dev", insecure_dev=True, executor_api_token=None)
    assert httpx.get(f"{replica.url}/health").json()["auth"] == "disabled"
    assert httpx.get(f"{replica.url}/operations").status_code == 200
    assert httpx.get(f"{replica.url}/openapi.json").status_code == 200
    assert replica.log().count("INSECURE DEVELOPMENT MODE") >= 3
