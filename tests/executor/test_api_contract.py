"""The HTTP contract on an API-only replica: submit, read, list, cancel, 404, 429."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from executor_helpers import sync_body

from crypto_lakehouse.errors import ConfigError, OperationNotFound, QueueFull
from crypto_lakehouse.executor import ExecutorClient, OperationMode, OperationType, SyncRequest
from crypto_lakehouse.executor.launcher import ExecutorProcess
from crypto_lakehouse.storage import S3Url


def test_submit_answers_202_with_location_and_a_pending_view(http: httpx.Client) -> None:
    body = sync_body("source-data", "bronze", operation_mode="direct_sync")
    reply = http.post("/sync", json=body)
    assert reply.status_code == 202
    op = reply.json()["operation_id"]
    assert reply.json() == {"operation_id": op, "status": "pending"}
    assert reply.headers["Location"] == f"/operations/{op}"

    view = http.get(reply.headers["Location"]).json()
    assert view["operation_id"] == op
    assert view["status"] == "pending"
    assert view["operation_type"] == "sync"
    assert view["operation_mode"] == "direct_sync"
    assert view["destination"] == {"bucket": "bronze", "prefix": "copy/"}
    assert view["progress"] == {
        "objects_done": 0,
        "objects_total": 0,
        "bytes_done": 0,
        "bytes_total": 0,
    }
    assert view["counts"] == {"copied": 0, "skipped": 0, "failed": 0, "corrupt": 0}
    assert view["failed_objects"] == [] and view["summary"] is None
    assert view["created_at"].endswith("Z") and view["started_at"] is None


def test_unknown_operation_is_404(http: httpx.Client) -> None:
    assert http.get(f"/operations/{'a' * 32}").status_code == 404
    assert http.post(f"/operations/{'a' * 32}/cancel").status_code == 404


def test_list_filters_by_status_and_pages(http: httpx.Client) -> None:
    ids = [
        http.post("/sync", json=sync_body("source-data", "pages")).json()["operation_id"]
        for _ in range(5)
    ]
    http.post(f"/operations/{ids[0]}/cancel")
    seen: list[str] = []
    offset = 0
    while True:
        page = http.get("/operations", params={"limit": 3, "offset": offset}).json()
        seen += [item["operation_id"] for item in page["items"]]
        offset += 3
        if offset >= page["total"]:
            break
    assert set(ids) <= set(seen) and len(seen) == len(set(seen))
    cancelled = http.get("/operations", params={"status": "cancelled", "limit": 500}).json()
    assert ids[0] in [i["operation_id"] for i in cancelled["items"]]
    assert all(i["status"] == "cancelled" for i in cancelled["items"])


def test_cancel_pending_is_immediate_and_idempotent(http: httpx.Client) -> None:
    op = http.post("/sync", json=sync_body("source-data", "bronze")).json()["operation_id"]
    first = http.post(f"/operations/{op}/cancel")
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    assert first.json()["finished_at"] is not None
    again = http.post(f"/operations/{op}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_client_round_trip(queue_replica: ExecutorProcess, api_token: str) -> None:
    request = SyncRequest.for_urls(
        S3Url.parse("s3://source-data/a/"),
        S3Url.parse("s3://bronze/b/"),
        mode=OperationMode.STAGED,
        operation_type=OperationType.COPY,
        part_size_mb=8,
    )
    with ExecutorClient(queue_replica.url, api_token) as client:
        submitted = client.submit(request)
        view = client.status(submitted.operation_id)
        assert (view.operation_type, view.operation_mode) == ("copy", "staged")
        assert view.configuration.part_size_mb == 8
        assert submitted.operation_id in [v.operation_id for v in client.list(limit=500).items]
        assert client.cancel(submitted.operation_id).status == "cancelled"
        with pytest.raises(OperationNotFound):
            client.status("b" * 32)
        with pytest.raises(ConfigError, match=r"destination\.bucket"):
            client.submit({"source": {"bucket": "abc"}, "destination": {"bucket": "x"}})
    stranger = ExecutorClient(queue_replica.url, "not-the-token")
    with stranger, pytest.raises(ConfigError, match="token"):
        stranger.status(submitted.operation_id)


def test_full_queue_is_429_with_retry_after(start_replica, api_token: str) -> None:
    replica = start_replica("small-queue", executor_max_operations=0, executor_max_queue=3)
    with ExecutorClient(replica.url, api_token) as client:
        body = sync_body("source-data", "bronze")
        ids = [client.submit(body).operation_id for _ in range(3)]
        reply = httpx.post(
            f"{replica.url}/sync", json=body, headers={"Authorization": f"Bearer {api_token}"}
        )
        assert reply.status_code == 429
        assert int(reply.headers["Retry-After"]) > 0
        with pytest.raises(QueueFull) as caught:
            client.submit(body)
        assert caught.value.retry_after == int(reply.headers["Retry-After"])
        client.cancel(ids[0])
        assert client.submit(body).status == "pending", "room again after a cancel"


def test_queue_bound_is_exact_under_concurrent_submits(start_replica, api_token: str) -> None:
    """Concurrent submits share commits (group commit); the bound still holds to the row."""
    import asyncio

    replica = start_replica("burst", executor_max_operations=0, executor_max_queue=20)
    headers = {"Authorization": f"Bearer {api_token}"}

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(
            base_url=replica.url, headers=headers, limits=limits, timeout=60
        ) as c:
            body = sync_body("source-data", "bronze")
            return await asyncio.gather(*(c.post("/sync", json=body) for _ in range(50)))

    replies = asyncio.run(burst())
    codes = sorted(r.status_code for r in replies)
    assert codes == [202] * 20 + [429] * 30
    ids = {r.json()["operation_id"] for r in replies if r.status_code == 202}
    listed = httpx.get(f"{replica.url}/operations?limit=500", headers=headers).json()
    assert listed["total"] == 20 and {i["operation_id"] for i in listed["items"]} == ids


def test_long_poll_answers_at_its_deadline_while_pending(http: httpx.Client) -> None:
    op = http.post("/sync", json=sync_body("source-data", "bronze")).json()["operation_id"]
    started = time.monotonic()
    reply = http.get(f"/operations/{op}", params={"wait": 1.5})
    waited = time.monotonic() - started
    assert reply.status_code == 200 and reply.json()["status"] == "pending"
    assert 1.4 <= waited < 5, waited


def test_long_poll_answers_soon_after_a_cancel(
    queue_replica: ExecutorProcess, http: httpx.Client, api_token: str
) -> None:
    """No runner is involved (nothing wakes the waiter): it sees the cancel in the store at
    its next re-read, long before its deadline."""
    op = http.post("/sync", json=sync_body("source-data", "bronze")).json()["operation_id"]
    with ExecutorClient(queue_replica.url, api_token) as client, ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(client.wait, op, long_poll=30)
        time.sleep(0.5)
        started = time.monotonic()
        http.post(f"/operations/{op}/cancel")
        view = waiting.result(timeout=10)
    assert view.status == "cancelled"
    assert time.monotonic() - started < 2
