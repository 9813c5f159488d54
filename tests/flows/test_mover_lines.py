"""EngineMover against real SeaweedFS: an ingest batch fetches each zip and its sidecar
with one `x.zip*` line, across folders, and verifies every zip against its sidecar."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta
from pathlib import Path

import pytest

from crypto_lakehouse.archive import ArchiveFile
from crypto_lakehouse.archive.discovery import ArchiveSource
from crypto_lakehouse.catalog import ListedFile
from crypto_lakehouse.flows.mover import EngineMover
from crypto_lakehouse.flows.target import IngestTarget
from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import S3Storage
from crypto_lakehouse.transfer import EngineOptions

pytestmark = pytest.mark.servers


def test_an_ingest_batch_fetches_a_zip_and_its_sidecar_with_one_line(
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
    tmp_path: Path,
    wildcard_sources: list[str],
) -> None:
    source = S3Storage(source_server.endpoint())
    metas = [
        ArchiveFile("spot", "daily", "klines", symbol, date(2026, 1, 1) + timedelta(n), "1h")
        for symbol in ("AAAUSDT", "BBBUSDT")
        for n in range(3)
    ]
    for meta in metas:
        data = f"zip bytes of {meta.stem}".encode()
        source.put_bytes(source_bucket, meta.key, data)
        sidecar = f"{hashlib.sha256(data).hexdigest()}  {meta.filename}\n".encode()
        source.put_bytes(source_bucket, meta.checksum_key, sidecar)
    listed = {o.key: o for o in source.list_objects(source_bucket, "data/")}
    files = []
    for meta in metas:
        zip_, sidecar = listed[meta.key], listed[meta.checksum_key]
        file = meta.with_listing(
            zip_.size, zip_.etag, zip_.last_modified, sidecar.etag, sidecar.size
        )
        files.append(ListedFile(file, file.key))
    target = IngestTarget(
        ArchiveSource(source_server.endpoint(anonymous=True), source_bucket),
        lake_server.endpoint(),
        lake_bucket,
    )

    results = EngineMover(EngineOptions(staging_root=tmp_path / "staging")).move(target, files)

    assert all(r.ok and r.sha256 for r in results), [r.error for r in results if not r.ok]
    from_source = sorted(u for u in wildcard_sources if u.startswith(f"s3://{source_bucket}/"))
    assert from_source == sorted(f"s3://{source_bucket}/{m.key}*" for m in metas)
    bronze = S3Storage(lake_server.endpoint())
    for meta in metas:
        assert bronze.get_bytes(lake_bucket, meta.key) == f"zip bytes of {meta.stem}".encode()
