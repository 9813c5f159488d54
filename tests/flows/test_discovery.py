"""The ingest flow's discovery: the archive listing streamed into the manifest's planner
(real SeaweedFS source, real PostgreSQL manifest)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flow_helpers import CORRUPT, MISSING_DAY, TinyArchive, build_tiny_archive

import crypto_lakehouse.flows.discovery as flow_discovery
from crypto_lakehouse.archive import ArchiveLister, ArchiveSource
from crypto_lakehouse.catalog import FileResult, Manifest
from crypto_lakehouse.catalog.manifest import Decision
from crypto_lakehouse.flows.discovery import list_and_plan
from crypto_lakehouse.flows.target import IngestRequest, IngestTarget
from crypto_lakehouse.stack.postgres import PostgresServer
from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import S3Storage


@pytest.fixture
def manifest(postgres_server: PostgresServer) -> Iterator[Manifest]:
    name = f"cat_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(name)
    m = Manifest(postgres_server.info.url(name))
    m.ensure_schema()
    yield m
    m.close()


@pytest.fixture
def tiny(
    source_server: SeaweedServer, source_bucket: str, binance_fixtures: Path
) -> tuple[TinyArchive, IngestTarget]:
    archive = build_tiny_archive(
        S3Storage(source_server.endpoint()), source_bucket, binance_fixtures
    )
    source = ArchiveSource(source_server.endpoint(anonymous=True), source_bucket)
    return archive, IngestTarget(source, source_server.endpoint(), "bronze")


def test_the_listing_is_planned_chunk_by_chunk_and_up_to_date_files_are_only_counted(
    tiny: tuple[TinyArchive, IngestTarget], manifest: Manifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, target = tiny
    query = IngestRequest(**TinyArchive.parameters).query()
    monkeypatch.setattr(flow_discovery, "PLAN_CHUNK", 3)  # several manifest queries
    planned: list[int] = []
    real_plan = manifest.plan

    def counting_plan(items: list, bronze_bucket: str | None = None) -> object:
        planned.append(len(items))
        return real_plan(items, bronze_bucket)

    monkeypatch.setattr(manifest, "plan", counting_plan)
    waited: list[int] = []

    found = list_and_plan(target, query, manifest, before_plan=lambda: waited.append(len(planned)))

    expected = list(ArchiveLister(target.source).files(query))
    every = set(archive.good) | {CORRUPT.key}
    assert {f.key for f in expected} == every
    assert (found.listed, found.up_to_date, found.without_sidecar) == (len(every), 0, [])
    assert found.listed_bytes == sum(f.size or 0 for f in expected)
    assert {i.path for i, d in found.work.transfer} == every
    assert all(d is Decision.NEW for _, d in found.work.transfer)
    assert len(planned) > 1 and sum(planned) == len(every)  # chunks, not one list
    assert waited == [0]  # once, before the first manifest query
    assert found.missing_periods == 1 and MISSING_DAY in found.missing_days
    assert any(MISSING_DAY.isoformat() in gap for gap in found.gaps)

    # Record all but one as verified: the next discovery counts them and keeps none.
    done = [item for item, _ in found.work.transfer if item.path != CORRUPT.key]
    manifest.mark_started("r1", done, source_url="s3://src/", bronze_bucket="bronze")
    manifest.record("r1", [FileResult(i, ok=True, sha256="a" * 64) for i in done])
    again = list_and_plan(target, query, manifest)
    assert (again.listed, again.up_to_date) == (len(every), len(done))
    assert again.work.up_to_date == []
    assert [i.path for i, _ in again.work.transfer] == [CORRUPT.key]


def test_a_date_range_lists_and_plans_only_its_days(
    tiny: tuple[TinyArchive, IngestTarget], manifest: Manifest
) -> None:
    _, target = tiny
    request = IngestRequest(**TinyArchive.parameters | {"start": "2026-05-06", "end": "2026-05-07"})
    found = list_and_plan(target, request.query(), manifest)
    days = sorted({(i.file.symbol, i.file.period.day) for i, _ in found.work.transfer})
    assert days == [("BTCUSDT", 6), ("BTCUSDT", 7), ("ETHUSDT", 6), ("ETHUSDT", 7)]
    assert found.gaps == []  # the missing 4th lies outside the range
    assert all(
        i.file.last_modified and i.file.last_modified <= datetime.now(UTC)
        for i, _ in found.work.transfer
    )
