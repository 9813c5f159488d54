"""The bronze manifest on a real PostgreSQL: plan, hand-over states, replacement history."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from crypto_lakehouse.archive.paths import ArchiveFile, parse_key
from crypto_lakehouse.catalog import (
    Decision,
    FileResult,
    FileStatus,
    ListedFile,
    Manifest,
    ManifestOutcome,
    RunStatus,
)
from crypto_lakehouse.errors import CatalogError, CatalogUnavailable
from crypto_lakehouse.stack.postgres import PostgresServer

T0 = datetime(2026, 5, 9, 1, 2, 3, tzinfo=UTC)
SHA_A = "a" * 64
SHA_B = "b" * 64


@pytest.fixture
def manifest(postgres_server: PostgresServer) -> Iterator[Manifest]:
    name = f"cat_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(name)
    m = Manifest(postgres_server.info.url(name))
    m.ensure_schema()
    yield m
    m.close()


def listed(day: int, etag: str = "e1", size: int = 100, symbol: str = "BTCUSDT") -> ListedFile:
    base = ArchiveFile("spot", "daily", "klines", symbol, date(2026, 5, day), "1h")
    return ListedFile(base.with_listing(size, etag, T0), source_key="mirror/" + base.key)


def ingest(
    m: Manifest, run: str, items: list[ListedFile], **kw: object
) -> dict[str, ManifestOutcome]:
    m.mark_started(run, items, source_url="s3://src/mirror/", bronze_bucket="bronze")
    sha = kw.get("sha", SHA_A)
    return m.record(run, [FileResult(i, ok=True, sha256=sha) for i in items])  # type: ignore[arg-type]


def test_new_files_are_planned_then_verified_and_skipped_next_time(manifest: Manifest) -> None:
    files = [listed(1), listed(2)]
    plan = manifest.plan(files)
    assert [d for _, d in plan.transfer] == [Decision.NEW, Decision.NEW]

    outcomes = ingest(manifest, "run-1", files)
    assert set(outcomes.values()) == {ManifestOutcome.VERIFIED}
    entry = manifest.get(files[0].path)
    assert entry is not None
    assert entry.status is FileStatus.VERIFIED
    assert (entry.sha256, entry.version, entry.size, entry.etag) == (SHA_A, 1, 100, "e1")
    assert (
        entry.bronze_key
        == files[0].path
        == "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2026-05-01.zip"
    )
    assert entry.last_modified == T0
    assert entry.ingested_at is not None

    again = manifest.plan(files)
    assert again.transfer == [] and again.up_to_date == files


def test_replaced_file_keeps_the_old_version_in_history(manifest: Manifest) -> None:
    ingest(manifest, "run-1", [listed(3)])
    first = manifest.get(listed(3).path)
    changed = listed(3, etag="e2", size=120)
    plan = manifest.plan([changed])
    assert plan.transfer == [(changed, Decision.CHANGED)]

    outcomes = ingest(manifest, "run-2", [changed], sha=SHA_B)
    assert outcomes == {changed.path: ManifestOutcome.REPLACED}
    now = manifest.get(changed.path)
    assert now is not None and (now.sha256, now.version, now.size) == (SHA_B, 2, 120)
    [old] = manifest.history(changed.path)
    assert (old.version, old.sha256, old.etag, old.size) == (1, SHA_A, "e1", 100)
    assert old.ingested_at == first.ingested_at and old.replaced_by_run == "run-2"


def test_same_bytes_under_a_new_etag_are_reverified_without_history(manifest: Manifest) -> None:
    ingest(manifest, "run-1", [listed(4)])
    outcomes = ingest(manifest, "run-2", [listed(4, etag="e9")])
    assert outcomes == {listed(4).path: ManifestOutcome.REVERIFIED}
    assert manifest.history(listed(4).path) == []
    assert manifest.get(listed(4).path).version == 1  # type: ignore[union-attr]


def test_corrupt_is_not_verified_and_not_retried_until_the_source_changes(
    manifest: Manifest,
) -> None:
    bad = listed(5)
    manifest.mark_started("run-1", [bad], source_url="s3://src/", bronze_bucket="bronze")
    outcome = manifest.record("run-1", [FileResult(bad, ok=False, corrupt=True, error="sha256 x")])
    assert outcome == {bad.path: ManifestOutcome.CORRUPT}
    assert manifest.verified_files() == []
    assert manifest.plan([bad]).known_corrupt == [bad]
    fixed = listed(5, etag="e2")
    assert manifest.plan([fixed]).transfer == [(fixed, Decision.RECHECK)]
    entry = manifest.get(bad.path)
    assert entry is not None and entry.status is FileStatus.CORRUPT and entry.error == "sha256 x"


def test_interrupted_hand_over_is_retried_and_verified_once(manifest: Manifest) -> None:
    files = [listed(6), listed(7)]
    manifest.mark_started("run-1", files, source_url="s3://src/", bronze_bucket="bronze")
    # run-1 dies here: rows stay `started`, nothing is verified.
    assert manifest.status_counts() == {FileStatus.STARTED: 2}
    plan = manifest.plan(files)
    assert [d for _, d in plan.transfer] == [Decision.RETRY, Decision.RETRY]
    ingest(manifest, "run-2", files)
    assert manifest.status_counts() == {FileStatus.VERIFIED: 2}
    assert [e.version for e in manifest.verified_files()] == [1, 1]


def test_failed_transfer_is_retried(manifest: Manifest) -> None:
    item = listed(8)
    manifest.mark_started("run-1", [item], source_url="s3://src/", bronze_bucket="bronze")
    manifest.record("run-1", [FileResult(item, ok=False, error="connection reset")])
    assert manifest.get(item.path).status is FileStatus.FAILED  # type: ignore[union-attr]
    assert manifest.plan([item]).transfer == [(item, Decision.RETRY)]


def test_verified_files_filters(manifest: Manifest) -> None:
    ingest(manifest, "run-1", [listed(1), listed(2, symbol="ETHUSDT")])
    fund = ArchiveFile("futures/um", "monthly", "fundingRate", "BTCUSDT", date(2026, 4, 1))
    ingest(manifest, "run-1", [ListedFile(fund.with_listing(5, "f", T0), fund.key)])
    assert [e.symbol for e in manifest.verified_files(market="spot")] == ["BTCUSDT", "ETHUSDT"]
    assert [e.data_type for e in manifest.verified_files(data_type="fundingRate")] == [
        "fundingRate"
    ]
    assert len(manifest.verified_files(start=date(2026, 5, 2), end=date(2026, 5, 2))) == 1
    assert manifest.verified_files(ingested_since=datetime.now(UTC)) == []
    entry = manifest.verified_files(symbol="ETHUSDT")[0]
    assert parse_key(entry.path).symbol == "ETHUSDT"


def test_record_before_mark_started_is_refused(manifest: Manifest) -> None:
    with pytest.raises(CatalogError, match="before mark_started"):
        manifest.record("run-x", [FileResult(listed(9), ok=True, sha256=SHA_A)])


def test_runs_are_recorded_with_status_and_summary(manifest: Manifest) -> None:
    manifest.ensure_schema()  # idempotent
    manifest.begin_run("run-1", {"markets": ["spot"]})
    manifest.finish_run("run-1", RunStatus.FAILED, {"corrupt": 1})
    [run] = manifest.runs()
    assert (run["status"], run["summary"], run["parameters"]) == (
        "failed",
        {"corrupt": 1},
        {"markets": ["spot"]},
    )
    assert run["finished_at"] >= run["started_at"]


def test_unreachable_database_is_a_transient_error() -> None:
    from crypto_lakehouse.stack.process import free_port

    m = Manifest(f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/x?connect_timeout=2")
    with pytest.raises(CatalogUnavailable) as info:
        m.ensure_schema()
    assert info.value.transient


def test_a_file_verified_in_another_bucket_is_transferred_again(manifest: Manifest) -> None:
    ingest(manifest, "run-1", [listed(10)])
    assert manifest.plan([listed(10)], bronze_bucket="bronze").up_to_date == [listed(10)]
    plan = manifest.plan([listed(10)], bronze_bucket="bronze-2")
    assert plan.transfer == [(listed(10), Decision.ELSEWHERE)]
    manifest.mark_started("run-2", [listed(10)], source_url="s3://src/", bronze_bucket="bronze-2")
    manifest.record("run-2", [FileResult(listed(10), ok=True, sha256=SHA_A)])
    assert manifest.get(listed(10).path).bronze_bucket == "bronze-2"  # type: ignore[union-attr]
