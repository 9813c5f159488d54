"""Crashes and scale-out: `kill -9` mid-operation, two replicas on one PostgreSQL, metrics."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from executor_helpers import fill_bucket, sync_body
from prometheus_client.parser import text_string_to_metric_families

from crypto_lakehouse.executor import ExecutorClient, OperationView
from crypto_lakehouse.storage import S3Storage

pytestmark = pytest.mark.slow


def wait_for(client: ExecutorClient, op: str, *, objects_done: int) -> OperationView:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        view = client.status(op)
        assert not view.status.terminal, f"finished before the test could act: {view.status}"
        if view.progress.objects_done >= objects_done:
            return view
        time.sleep(0.05)
    raise AssertionError(f"no progress on {op}")


def test_kill_9_mid_operation_then_restart_completes_every_object_once(
    start_replica, tmp_path, api_token, source_server, lake_server, source_bucket, lake_bucket
) -> None:
    # Enough objects that a quiet machine is still copying when the test acts (60 were not).
    objects = fill_bucket(source_server, source_bucket, "data/", 600, size=2048)
    home = tmp_path / "home"
    replica = start_replica("crashy", home=home)
    body = sync_body(source_bucket, lake_bucket, operation_mode="traditional")
    body["source"]["endpoint"] = source_server.url
    with ExecutorClient(replica.url, api_token) as client:
        op = client.submit(body).operation_id
        wait_for(client, op, objects_done=5)
    replica.kill()

    restarted = start_replica("crashy", home=home)  # same SQLite file, a new replica id
    with ExecutorClient(restarted.url, api_token) as client:
        view = client.wait(op, poll_seconds=0.2, timeout=600)
    assert view.status == "completed", view.error
    assert view.attempts == 2, "claimed again after the dead replica's lease expired"
    assert view.counts.failed == 0 and view.counts.copied + view.counts.skipped == 600

    storage = S3Storage(lake_server.endpoint())
    listed = [o.key for o in storage.list_objects(lake_bucket, "")]
    expected = {key.replace("data/", "copy/", 1): data for key, data in objects.items()}
    assert sorted(listed) == sorted(expected), "every object exactly once, nothing else"
    for key, data in expected.items():
        assert storage.get_bytes(lake_bucket, key) == data


def test_two_replicas_on_one_postgres_never_run_an_operation_twice(
    start_replica, api_token, postgres_server, source_server, source_bucket, lake_bucket
) -> None:
    fill_bucket(source_server, source_bucket, "data/", 3)
    database = f"exec_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(database)
    shared = {
        "executor_database_url": postgres_server.info.url(database),
        "executor_max_operations": 2,
    }
    replicas = [start_replica(f"replica-{i}", home=None, **shared) for i in range(2)]
    clients = [ExecutorClient(r.url, api_token) for r in replicas]
    ops = []
    for i in range(10):
        body = sync_body(source_bucket, lake_bucket)
        body["source"]["endpoint"] = source_server.url
        body["destination"]["prefix"] = f"run-{i}/"
        ops.append(clients[i % 2].submit(body).operation_id)

    views = [clients[0].wait(op, poll_seconds=0.2, timeout=180) for op in ops]
    assert [v.status for v in views] == ["completed"] * 10, [v.error for v in views]
    assert [v.attempts for v in views] == [1] * 10
    assert {v.replica for v in views} == {_replica_id(r) for r in replicas}, "both took work"

    completed = [_sample(r.url, "s5cmd_operations_total", status="completed") for r in replicas]
    assert sum(completed) == 10, f"per replica {completed}: each operation ran exactly once"
    for client in clients:
        client.close()


def test_metrics_parse_and_count_the_operations_run(
    start_replica, api_token, source_server, source_bucket, lake_bucket
) -> None:
    fill_bucket(source_server, source_bucket, "data/", 4, size=1000)
    replica = start_replica("metered")
    body = sync_body(source_bucket, lake_bucket)
    body["source"]["endpoint"] = source_server.url
    with ExecutorClient(replica.url, api_token) as client:
        first = client.wait(client.submit(body).operation_id, poll_seconds=0.1, timeout=120)
        second = client.wait(client.submit(body).operation_id, poll_seconds=0.1, timeout=120)
        broken = client.submit(sync_body("no-such-bucket-here", lake_bucket)).operation_id
        failed = client.wait(broken, poll_seconds=0.1, timeout=120)
        client.status(first.operation_id)
    assert (first.status, second.status, failed.status) == ("completed", "completed", "failed")

    url = replica.url
    assert _sample(url, "s5cmd_operations_total", operation="sync", status="completed") == 2
    assert _sample(url, "s5cmd_operations_total", operation="sync", status="failed") == 1
    assert _sample(url, "s5cmd_operation_duration_seconds_count", operation="sync") == 3
    assert _sample(url, "s5cmd_objects_transferred_total") == 4  # the second run skipped all
    assert _sample(url, "s5cmd_bytes_transferred_total") == 4000
    assert _sample(url, "s5cmd_active_operations") == 0
    assert _sample(url, "s5cmd_queued_operations") == 0

    routes = _labels(url, "http_request_duration_seconds_count", "route")
    assert {"/sync", "/operations/{operation_id}"} <= routes
    assert not any(first.operation_id in r for r in routes), "templates, never raw paths"


def _families(url: str):
    reply = httpx.get(f"{url}/metrics", timeout=10)
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    return list(text_string_to_metric_families(reply.text))


def _sample(url: str, name: str, **labels: str) -> float:
    values = [
        s.value
        for family in _families(url)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert values, f"no sample {name}{labels}"
    return sum(values)


def _labels(url: str, name: str, label: str) -> set[str]:
    return {s.labels[label] for f in _families(url) for s in f.samples if s.name == name}


def _replica_id(replica) -> str:
    return httpx.get(f"{replica.url}/health", timeout=10).json()["replica"]


def test_worker_processes_share_one_sqlite_store(
    start_replica, api_token, source_server, source_bucket, lake_bucket
) -> None:
    """`serve --workers 2`: two processes, two replicas, one SQLite file, one run each."""
    # Each operation must outlast a replica's 1 s claim poll: with tiny ones, the process
    # that took the submits (woken at once) drained all six before the other one polled.
    fill_bucket(source_server, source_bucket, "data/", 300)
    replica = start_replica("two-workers", executor_workers=2, executor_max_operations=1)
    _wait_for_replicas(replica.url, 2)  # a loaded machine starts the second process later
    with ExecutorClient(replica.url, api_token) as client:
        ops = []
        for i in range(6):
            body = sync_body(source_bucket, lake_bucket)
            body["source"]["endpoint"] = source_server.url
            body["destination"]["prefix"] = f"w-{i}/"
            ops.append(client.submit(body).operation_id)
        views = [client.wait(op, poll_seconds=0.2, timeout=180) for op in ops]
    assert [(v.status, v.attempts) for v in views] == [("completed", 1)] * 6
    assert len({v.replica for v in views}) == 2, "both worker processes ran operations"


def _wait_for_replicas(url: str, count: int, timeout: float = 60.0) -> None:
    """Until `count` distinct replicas have answered /health (a new connection each time,
    so that every worker process gets to accept one)."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only replicas {seen} answered in {timeout:g} s"
        with httpx.Client(timeout=5.0) as fresh:
            seen.add(fresh.get(f"{url}/health").json()["replica"])
