"""Listed operations end to end: ExecutorMover through real replicas against the engine in
this process, three replicas on one PostgreSQL, and a replica killed mid-operation."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pytest

from crypto_lakehouse.archive import ArchiveFile
from crypto_lakehouse.archive.discovery import ArchiveSource
from crypto_lakehouse.catalog import ListedFile
from crypto_lakehouse.config import Settings
from crypto_lakehouse.executor import ExecutorClient
from crypto_lakehouse.executor.models import ObjectSpec, OperationMode, OperationType, SyncRequest
from crypto_lakehouse.flows.mover import EngineMover, ExecutorMover
from crypto_lakehouse.flows.target import IngestTarget
from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import S3Storage, S3Url
from crypto_lakehouse.transfer import EngineOptions

pytestmark = pytest.mark.slow
SYMBOLS = ("AAAUSDT", "BBBUSDT", "CCCUSDT")


def write_archive(server: SeaweedServer, bucket: str, days: int) -> tuple[list[ListedFile], str]:
    """`len(SYMBOLS) * days` daily klines zips with sidecars; the first file's sidecar lies.

    Returns the files as discovery would list them and the key of the corrupt one.
    """
    storage = S3Storage(server.endpoint())
    files, writes = [], []
    now = datetime.now(UTC)
    for symbol in SYMBOLS:
        for day in range(days):
            period = date(2026, 1, 1) + timedelta(days=day)
            meta = ArchiveFile("spot", "daily", "klines", symbol, period, "1h")
            data = secrets.token_bytes(700)
            digest = hashlib.sha256(data).hexdigest()
            if not files:  # the corrupt one
                digest = hashlib.sha256(b"other bytes").hexdigest()
            sidecar = f"{digest}  {meta.filename}\n".encode()
            writes += [(meta.key, data), (meta.key + ".CHECKSUM", sidecar)]
            listed = ArchiveFile(
                "spot", "daily", "klines", symbol, period, "1h",
                size=len(data), etag="e", last_modified=now,
                checksum_etag="c", checksum_size=len(sidecar),
            )  # fmt: skip
            files.append(ListedFile(listed, listed.key))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: storage.put_bytes(bucket, *kv), writes))
    return files, files[0].source_key


def target_of(source: SeaweedServer, bucket: str, lake: SeaweedServer, bronze: str) -> IngestTarget:
    archive = ArchiveSource(source.endpoint(anonymous=True), bucket)
    return IngestTarget(archive, lake.endpoint(), bronze)


def executor_settings(url: str, token: str) -> Settings:
    return Settings(executor_url=url, executor_api_token=token)


def test_executor_results_equal_the_engines_and_the_corrupt_file_is_corrupt(
    start_replica, api_token, source_server, lake_server, source_bucket, lake_bucket, tmp_path
) -> None:
    files, corrupt = write_archive(source_server, source_bucket, days=40)  # 120 files
    replica = start_replica("listed")
    lake = S3Storage(lake_server.endpoint())
    engine_bronze = f"engine-{uuid.uuid4().hex[:8]}"
    lake.ensure_bucket(engine_bronze)

    mover = ExecutorMover(executor_settings(replica.url, api_token), in_flight=3)
    through_executor = mover.move(
        target_of(source_server, source_bucket, lake_server, lake_bucket), files
    )
    in_process = EngineMover(EngineOptions(staging_root=tmp_path / "staging")).move(
        target_of(source_server, source_bucket, lake_server, engine_bronze), files
    )

    def essence(results):
        return [(r.listed.source_key, r.ok, r.corrupt, r.sha256) for r in results]

    assert essence(through_executor) == essence(in_process)
    by_key = {r.listed.source_key: r for r in through_executor}
    assert by_key[corrupt].corrupt and not by_key[corrupt].ok
    assert "sha256 mismatch" in (by_key[corrupt].error or "")
    good = [r for r in through_executor if r.listed.source_key != corrupt]
    assert all(r.ok for r in good)
    for result in good[:5]:  # the digest is the one of the bytes now in bronze
        data = lake.get_bytes(lake_bucket, result.listed.path)
        assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert lake.head(lake_bucket, files[0].path) is None, "the corrupt zip never reaches bronze"

    with ExecutorClient(replica.url, api_token) as client:
        views = client.list(limit=10).items
    assert len(views) == 1, "120 files: one listed operation (MIN_OPERATION_FILES each)"
    assert views[0].listed_objects == 240 and views[0].counts.corrupt == 1


def test_three_replicas_on_one_postgres_share_the_operations_of_one_ingest(
    start_replica, api_token, postgres_server, source_server, lake_server, source_bucket,
    lake_bucket,
) -> None:  # fmt: skip
    files, corrupt = write_archive(source_server, source_bucket, days=100)  # 300 files
    database = f"exec_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(database)
    shared = {"executor_database_url": postgres_server.info.url(database)}
    replicas = [
        start_replica(f"replica-{i}", home=None, executor_max_operations=1, **shared)
        for i in range(3)
    ]
    mover = ExecutorMover(executor_settings(replicas[0].url, api_token), in_flight=3)
    results = mover.move(target_of(source_server, source_bucket, lake_server, lake_bucket), files)

    assert [r.listed.source_key for r in results if not r.ok] == [corrupt]
    assert all(r.sha256 for r in results if r.ok)
    with ExecutorClient(replicas[0].url, api_token) as client:
        views = client.list(limit=10).items
    assert len(views) == 3 and all(v.status == "completed" or v.counts.corrupt for v in views)
    claimed_by = {v.replica for v in views}
    assert len(claimed_by) >= 2, f"one ingest's operations ran on {claimed_by}"


def test_a_replica_killed_mid_operation_has_its_listed_operation_finished_by_another(
    start_replica, api_token, postgres_server, source_server, lake_server, source_bucket,
    lake_bucket,
) -> None:  # fmt: skip
    storage = S3Storage(source_server.endpoint())
    objects = {f"data/f-{i:04d}.bin": secrets.token_bytes(2048) for i in range(600)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: storage.put_bytes(source_bucket, *kv), objects.items()))
    database = f"exec_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(database)
    shared = {"executor_database_url": postgres_server.info.url(database)}  # lease: 3 s
    first = start_replica("first", home=None, **shared)
    listed = [
        ObjectSpec(key=key[len("data/") :], size=len(data), sha256=hashlib.sha256(data).hexdigest())
        for key, data in objects.items()
    ]
    request = SyncRequest.for_urls(
        S3Url(source_bucket, "data/"),
        S3Url(lake_bucket, "copy/"),
        source_endpoint=source_server.url,
        mode=OperationMode.TRADITIONAL,  # one object at a time: slow enough to be caught
        operation_type=OperationType.COPY,
        objects=listed,
    )
    with ExecutorClient(first.url, api_token) as client:
        op = client.submit(request).operation_id
        deadline = time.monotonic() + 60
        while client.status(op).progress.objects_done < 5:
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
    second = start_replica("second", home=None, **shared)
    first.kill()

    with ExecutorClient(second.url, api_token) as client:
        view = client.wait(op, timeout=300)
        results = list(client.iter_objects(op))
    assert view.status == "completed", view.error
    assert view.attempts == 2 and str(second.pid) in (view.replica or "")
    assert len(results) == 600
    assert {r.outcome for r in results} == {"copied"}
    assert all(r.sha256 == hashlib.sha256(objects[r.source_key]).hexdigest() for r in results)
    lake = S3Storage(lake_server.endpoint())
    landed = sorted(o.key for o in lake.list_objects(lake_bucket, ""))
    assert landed == sorted(k.replace("data/", "copy/", 1) for k in objects), "each once"
