"""Operations run for real: replica -> engine -> s5cmd -> SeaweedFS, read back from the lake."""

from __future__ import annotations

import hashlib

import pytest
from executor_helpers import fill_bucket, sync_body

from crypto_lakehouse.executor import ExecutorClient, OperationView
from crypto_lakehouse.storage import S3Storage


def lake_objects(lake_server, bucket: str, prefix: str) -> dict[str, bytes]:
    storage = S3Storage(lake_server.endpoint())
    return {o.key: storage.get_bytes(bucket, o.key) for o in storage.list_objects(bucket, prefix)}


def test_sync_from_the_archive_completes_then_skips(
    start_replica, api_token, source_server, lake_server, source_bucket, lake_bucket
) -> None:
    objects = fill_bucket(source_server, source_bucket, "data/", 12, size=3000)
    replica = start_replica()
    body = sync_body(source_bucket, lake_bucket)
    body["source"]["endpoint"] = source_server.url
    seen: list[OperationView] = []
    with ExecutorClient(replica.url, api_token) as client:
        op = client.submit(body).operation_id
        view = client.wait(op, on_progress=seen.append, poll_seconds=0.1, timeout=120)
        assert view.status == "completed", view.error
        assert view.summary is not None and view.summary["mode"] == "staged"
        assert view.counts.model_dump() == {"copied": 12, "skipped": 0, "failed": 0, "corrupt": 0}
        assert view.progress.model_dump() == {
            "objects_done": 12,
            "objects_total": 12,
            "bytes_done": 36000,
            "bytes_total": 36000,
        }
        assert view.source.anonymous is True and view.attempts == 1
        assert view.started_at and view.finished_at and view.finished_at >= view.started_at
        assert [v.status for v in seen][-1] == "completed" and len(seen) >= 2

        again = client.wait(client.submit(body).operation_id, poll_seconds=0.1, timeout=120)
        assert again.status == "completed"
        assert (again.counts.copied, again.counts.skipped) == (0, 12)

    copied = lake_objects(lake_server, lake_bucket, "copy/")
    assert copied == {key.replace("data/", "copy/", 1): data for key, data in objects.items()}

    # No secret in the operation record, the database file or the log.
    secrets = [api_token, lake_server.admin.secret_key, lake_server.admin.access_key]
    store_dir = replica.root.parent / "home" / "executor"
    database = b"".join(f.read_bytes() for f in store_dir.glob("operations.db*"))
    assert op.encode() in database
    for secret in secrets:
        assert secret not in view.model_dump_json()
        assert secret.encode() not in database
        assert secret not in replica.log()


def test_direct_sync_inside_the_lake(start_replica, api_token, lake_server, lake_bucket) -> None:
    objects = fill_bucket(lake_server, lake_bucket, "data/", 5)
    replica = start_replica()
    body = sync_body(lake_bucket, lake_bucket, operation_mode="direct_sync", operation_type="copy")
    with ExecutorClient(replica.url, api_token) as client:
        view = client.wait(client.submit(body).operation_id, poll_seconds=0.1, timeout=120)
    assert view.status == "completed", view.error
    assert view.summary["mode"] == "direct" and view.counts.copied == 5
    assert view.source.endpoint is None and view.source.anonymous is False
    assert lake_objects(lake_server, lake_bucket, "copy/") == {
        k.replace("data/", "copy/", 1): v for k, v in objects.items()
    }


def test_missing_source_bucket_fails_with_the_reason(start_replica, api_token, lake_bucket) -> None:
    replica = start_replica()
    with ExecutorClient(replica.url, api_token) as client:
        op = client.submit(sync_body("no-such-bucket-here", lake_bucket)).operation_id
        view = client.wait(op, poll_seconds=0.1, timeout=120)
    assert view.status == "failed"
    assert view.error and "no-such-bucket-here" in view.error


def test_corrupt_objects_are_listed_with_reasons(
    start_replica, api_token, source_server, lake_server, source_bucket, lake_bucket
) -> None:
    """A `.CHECKSUM` sidecar that does not match: the object is corrupt, never written."""
    storage = S3Storage(source_server.endpoint())
    good, bad = b"good bytes" * 100, b"bad bytes" * 100
    storage.put_bytes(source_bucket, "data/good.zip", good)
    storage.put_bytes(
        source_bucket,
        "data/good.zip.CHECKSUM",
        f"{hashlib.sha256(good).hexdigest()}  good.zip\n".encode(),
    )
    storage.put_bytes(source_bucket, "data/bad.zip", bad)
    storage.put_bytes(source_bucket, "data/bad.zip.CHECKSUM", f"{'0' * 64}  bad.zip\n".encode())
    replica = start_replica()
    body = sync_body(source_bucket, lake_bucket, operation_mode="staged")
    body["source"]["endpoint"] = source_server.url
    with ExecutorClient(replica.url, api_token) as client:
        view = client.wait(client.submit(body).operation_id, poll_seconds=0.1, timeout=120)
    assert view.status == "failed"
    assert view.counts.corrupt == 1 and view.failed_objects_total == 1
    (failure,) = view.failed_objects
    assert (failure.key, failure.outcome) == ("data/bad.zip", "corrupt")
    assert failure.reason
    landed = lake_objects(lake_server, lake_bucket, "copy/")
    assert landed["copy/good.zip"] == good
    assert "copy/bad.zip" not in landed


@pytest.mark.slow
def test_cancel_stops_a_running_operation_and_reports_only_what_landed(
    start_replica, api_token, source_server, lake_server, source_bucket, lake_bucket
) -> None:
    objects = fill_bucket(source_server, source_bucket, "data/", 400, size=2048)
    replica = start_replica()
    body = sync_body(source_bucket, lake_bucket, operation_mode="traditional")
    body["source"]["endpoint"] = source_server.url
    with ExecutorClient(replica.url, api_token) as client:
        op = client.submit(body).operation_id
        _wait_for_progress(client, op, objects_done=3)
        assert client.cancel(op).cancel_requested is True
        view = client.wait(op, poll_seconds=0.1, timeout=60)
    assert view.status == "cancelled"
    assert view.summary is not None and view.summary["cancelled"] is True
    landed = lake_objects(lake_server, lake_bucket, "copy/")
    assert 0 < len(landed) < len(objects)
    assert view.counts.copied == len(landed), "exactly what landed is reported as copied"
    for key, data in landed.items():
        assert data == objects[key.replace("copy/", "data/", 1)], f"{key} is half-written"


def _wait_for_progress(client: ExecutorClient, op: str, *, objects_done: int) -> OperationView:
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        view = client.status(op)
        if view.progress.objects_done >= objects_done or view.status.terminal:
            assert not view.status.terminal, f"finished before the test could act: {view.status}"
            return view
        time.sleep(0.05)
    raise AssertionError(f"no progress on {op}")
