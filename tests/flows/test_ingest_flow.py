"""The ingest flow against real PostgreSQL, Prefect and SeaweedFS, with planted defects."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import date
from pathlib import Path

import pytest
from flow_helpers import CORRUPT, MISSING_DAY, IngestEnv, kline_zip

import crypto_lakehouse.flows.discovery as discovery_module
import crypto_lakehouse.transfer.engine as engine_module
from crypto_lakehouse.archive import ArchiveFile
from crypto_lakehouse.catalog import FileStatus
from crypto_lakehouse.flows.local import IngestRun, run_ingest_locally
from crypto_lakehouse.flows.progress import IngestEvent
from crypto_lakehouse.flows.target import IngestRequest
from crypto_lakehouse.transfer.binary import Invocation
from crypto_lakehouse.transfer.listing import Listing


def ingest(env: IngestEnv) -> IngestRun:
    return asyncio.run(run_ingest_locally(IngestRequest(**env.parameters)))


def bronze_keys(env: IngestEnv) -> set[str]:
    return {o.key for o in env.bronze.list_objects(env.bronze_bucket)}


def test_first_run_verifies_good_files_quarantines_corrupt_and_reports_gaps(
    ingest_env: IngestEnv,
) -> None:
    run = ingest(ingest_env)
    good = ingest_env.archive.good
    s = run.summary

    assert run.state == "Failed"  # the planted corrupt file fails the run, by design
    assert (s.listed, s.verified, s.corrupt, s.failed, s.skipped) == (
        len(good) + 1,
        len(good),
        1,
        0,
        0,
    )
    assert [p.path for p in s.problems] == [CORRUPT.key]
    assert s.missing_periods == 1
    assert any(MISSING_DAY.isoformat() in gap for gap in s.missing)

    keys = bronze_keys(ingest_env)
    assert set(good) <= keys
    assert CORRUPT.key not in keys  # never in bronze
    for path, sha in good.items():
        assert (
            hashlib.sha256(ingest_env.bronze.get_bytes(ingest_env.bronze_bucket, path)).hexdigest()
            == sha
        )
        assert path + ".CHECKSUM" in keys

    verified = {e.path: e for e in ingest_env.manifest.verified_files()}
    assert {p: e.sha256 for p, e in verified.items()} == good
    assert all(
        e.version == 1 and e.bronze_bucket == ingest_env.bronze_bucket for e in verified.values()
    )
    corrupt = ingest_env.manifest.get(CORRUPT.key)
    assert corrupt is not None and corrupt.status is FileStatus.CORRUPT
    [logged] = ingest_env.manifest.runs()
    assert logged["run_id"] == run.flow_run_id and logged["status"] == "failed"
    staging = Path(ingest_env.env["STAGING_DIR"]) / "ingest"
    assert not staging.exists() or list(staging.iterdir()) == []  # nothing left behind


def test_work_handed_on_in_windows_gives_the_same_run(
    ingest_env: IngestEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of more than one window: discovery hands the files to transfer on while it
    lists (windows of 3 files here, 50,000 by default), the flow transfers each window, and
    the outcome is the one-window run's, every good file verified once."""
    monkeypatch.setattr(discovery_module, "WINDOW_FILES", 3)
    monkeypatch.setattr(discovery_module, "PLAN_CHUNK", 2)
    planned: list[int] = []

    def listen(event: IngestEvent) -> None:
        if event.kind == "planned":
            planned.append(event.files)

    run = asyncio.run(run_ingest_locally(IngestRequest(**ingest_env.parameters), listen))
    good = ingest_env.archive.good
    s = run.summary
    assert len(planned) >= 3 and planned == sorted(planned)  # several windows, totals grow
    assert planned[-1] == s.transferred == len(good) + 1
    assert (s.verified, s.corrupt, s.failed) == (len(good), 1, 0)
    assert [p.path for p in s.problems] == [CORRUPT.key]
    verified = {e.path: e.sha256 for e in ingest_env.manifest.verified_files()}
    assert verified == good


def test_rerun_transfers_nothing_and_replacement_keeps_history(ingest_env: IngestEnv) -> None:
    first = ingest(ingest_env)
    before = {o.key: o.etag for o in ingest_env.bronze.list_objects(ingest_env.bronze_bucket)}

    second = ingest(ingest_env)
    s = second.summary
    assert (s.transferred, s.verified, s.skipped) == (0, 0, first.summary.verified)
    assert s.corrupt == 1 and s.problems[0].known  # still listed, not downloaded again
    after = {o.key: o.etag for o in ingest_env.bronze.list_objects(ingest_env.bronze_bucket)}
    assert after == before

    replaced = ArchiveFile("spot", "daily", "klines", "BTCUSDT", MISSING_DAY.replace(day=2), "1h")
    old_sha = ingest_env.archive.good[replaced.key]
    new_sha = ingest_env.archive.replace(replaced)
    third = ingest(ingest_env)
    assert (third.summary.transferred, third.summary.replaced) == (1, 1)
    entry = ingest_env.manifest.get(replaced.key)
    assert entry is not None and (entry.sha256, entry.version) == (new_sha, 2)
    [old] = ingest_env.manifest.history(replaced.key)
    assert (old.sha256, old.version) == (old_sha, 1)
    data = ingest_env.bronze.get_bytes(ingest_env.bronze_bucket, replaced.key)
    assert hashlib.sha256(data).hexdigest() == new_sha


@pytest.fixture
def engine_listed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The buckets the transfer engine lists itself during the test."""
    listed: list[str] = []

    class Recording(Listing):
        def __init__(self, invocation: Invocation, bucket: str, prefix: str, **kw: float) -> None:
            listed.append(bucket)
            super().__init__(invocation, bucket, prefix, **kw)

    monkeypatch.setattr(engine_module, "Listing", Recording)
    return listed


def test_the_engine_plans_from_discovery_listing_of_the_whole_archive(
    ingest_env: IngestEnv, engine_listed: list[str]
) -> None:
    everything = {"source_bucket": ingest_env.parameters["source_bucket"]}  # lists the root
    run = asyncio.run(run_ingest_locally(everything))

    # Discovery's complete listing was handed over: the engine listed bronze, not the archive.
    assert engine_listed and set(engine_listed) == {ingest_env.bronze_bucket}
    s = run.summary
    assert (s.verified, s.corrupt, s.failed) == (len(ingest_env.archive.good), 1, 0)
    verified = {e.path: e.sha256 for e in ingest_env.manifest.verified_files()}
    assert verified == ingest_env.archive.good
    assert CORRUPT.key not in bronze_keys(ingest_env)


def test_a_narrow_query_is_copied_without_listing_the_archive(
    ingest_env: IngestEnv, engine_listed: list[str]
) -> None:
    """One interval and a date range: discovery lists symbol folders, so no complete listing
    of a batch's prefix (here `data/`) exists. The engine gets the batch's own objects from
    discovery and copies them one line each: it never lists the archive under that prefix
    (millions of keys in the real one), and never fetches a neighbour the query leaves out."""
    after_end = ArchiveFile("spot", "daily", "klines", "BTCUSDT", date(2026, 6, 1), "1h")
    ingest_env.archive.put(after_end, kline_zip(after_end))  # next to files the run copies

    run = ingest(ingest_env)

    assert engine_listed and set(engine_listed) == {ingest_env.bronze_bucket}
    good = ingest_env.archive.good
    assert (run.summary.verified, run.summary.corrupt, run.summary.failed) == (len(good), 1, 0)
    assert {e.path: e.sha256 for e in ingest_env.manifest.verified_files()} == good
    expected = {key for path in good for key in (path, path + ".CHECKSUM")}
    # Only the corrupt zip is quarantined; the publisher's CHECKSUM is copied as it is.
    expected |= {f"_quarantine/{CORRUPT.key}", CORRUPT.checksum_key}
    assert bronze_keys(ingest_env) == expected


def test_named_symbols_are_copied_from_discovery_folder_listings(
    ingest_env: IngestEnv, engine_listed: list[str]
) -> None:
    """Named symbols: discovery lists each symbol's folder whole, and a batch spanning
    two symbols is planned from those folder listings (no listing of the archive), with
    nothing from outside the query copied."""
    after_end = ArchiveFile("spot", "daily", "klines", "BTCUSDT", date(2026, 6, 1), "1h")
    ingest_env.archive.put(after_end, kline_zip(after_end))  # same folder, outside the dates
    parameters = ingest_env.parameters | {
        "markets": ["spot"],
        "data_types": ["klines"],
        "symbols": ["BTCUSDT", "ETHUSDT"],
    }

    run = asyncio.run(run_ingest_locally(parameters))

    assert engine_listed and set(engine_listed) == {ingest_env.bronze_bucket}
    wanted = {p: sha for p, sha in ingest_env.archive.good.items() if "/spot/daily/klines/" in p}
    assert (run.summary.verified, run.summary.corrupt, run.summary.failed) == (len(wanted), 1, 0)
    assert {e.path: e.sha256 for e in ingest_env.manifest.verified_files()} == wanted
    expected = {key for path in wanted for key in (path, path + ".CHECKSUM")}
    expected |= {f"_quarantine/{CORRUPT.key}", CORRUPT.checksum_key}
    assert bronze_keys(ingest_env) == expected
