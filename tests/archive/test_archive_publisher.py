"""Publishing the sample to a real S3 server and reading it back anonymously, as ingest will."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crypto_lakehouse.archive.discovery import ArchiveLister, ArchiveQuery, ArchiveSource
from crypto_lakehouse.archive.gaps import Gap, find_gaps
from crypto_lakehouse.archive.paths import ArchiveFile, parse_key
from crypto_lakehouse.archive.publisher import write_sample
from crypto_lakehouse.archive.sample import SampleSpec
from crypto_lakehouse.cli import app
from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import S3Storage, S3Url

SMALL = SampleSpec(symbols=1, orders_per_day=6, intervals=("1s", "1d", "1mo"))


def test_published_sample_lists_anonymously_like_the_manifest(
    source_server: SeaweedServer, source_bucket: str
) -> None:
    admin = S3Storage(source_server.endpoint())
    progress: list[tuple[int, int]] = []
    manifest = write_sample(
        SMALL, admin, S3Url(source_bucket), progress=lambda d, t: progress.append((d, t))
    )
    assert manifest.uploaded == manifest.objects and manifest.unchanged == 0
    assert progress[0] == (0, manifest.objects) and progress[-1] == (manifest.objects,) * 2

    lister = ArchiveLister(ArchiveSource(source_server.endpoint(anonymous=True), source_bucket))
    listed = list(lister.files(ArchiveQuery()))
    assert sorted(f.key for f in listed) == manifest.files
    assert all(f.checksum_etag and f.size for f in listed)
    assert lister.skipped == []
    assert "BNXUSDTSETTLED" in lister.symbols("futures/um", "daily", "trades")
    # The only gaps inside any series are the planted missing day.
    gaps = find_gaps(listed)
    assert sorted(parse_key(k) for k in manifest.missing) == sorted(
        f for g in gaps for f in _files_of(g)
    )


def _files_of(gap: Gap) -> list[ArchiveFile]:
    return [
        ArchiveFile(gap.market, gap.frequency, gap.data_type, gap.symbol, p, gap.interval)
        for p in gap.missing
    ]


def test_republishing_writes_only_what_changed(
    source_server: SeaweedServer, source_bucket: str
) -> None:
    admin = S3Storage(source_server.endpoint())
    dest = S3Url(source_bucket, "mirror/")
    first = write_sample(SMALL, admin, dest)
    before = {i.key: i for i in admin.list_objects(source_bucket, "mirror/")}
    again = write_sample(SMALL, admin, dest)
    assert (again.uploaded, again.unchanged) == (0, first.objects)

    revised = write_sample(replace(SMALL, revision=2), admin, dest)
    (replaced,) = revised.replaced
    assert replaced.startswith("mirror/data/futures/um/daily/metrics/")
    assert revised.uploaded == 2
    after = {i.key: i for i in admin.list_objects(source_bucket, "mirror/")}
    changed = sorted(k for k in after if after[k].etag != before[k].etag)
    assert changed == [replaced, replaced + ".CHECKSUM"]
    assert after[replaced].last_modified >= before[replaced].last_modified

    admin.put_bytes(
        source_bucket, "mirror/data/spot/daily/trades/OLD/OLD-trades-2020-01-01.zip", b"x"
    )
    pruned = write_sample(SMALL, admin, dest, prune=True)
    assert pruned.pruned == 1 + 0 and pruned.uploaded == 2  # revision 1 again, stale key gone
    assert (
        admin.head(source_bucket, "mirror/data/spot/daily/trades/OLD/OLD-trades-2020-01-01.zip")
        is None
    )


def test_cli_writes_the_sample_and_prints_the_manifest(
    source_server: SeaweedServer, source_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = source_server.admin
    monkeypatch.setenv("SOURCE_ACCESS_KEY", admin.access_key)
    monkeypatch.setenv("SOURCE_SECRET_KEY", admin.secret_key)
    args = ["sample-archive", "--dest", f"s3://{source_bucket}", "--endpoint", source_server.url]
    args += ["--symbols", "1", "--orders-per-day", "6"]
    result = CliRunner().invoke(app, [*args, "--days", "3", "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.output)
    assert manifest["uploaded"] == manifest["objects"] == 2 * len(manifest["files"])
    assert len(manifest["corrupt"]) == 1 and len(manifest["replaced"]) == 1
    assert {d["symbol"] for d in manifest["delisted"]} == {"XMRUSDT", "BNXUSDTSETTLED"}
    assert manifest["missing"] and not set(manifest["missing"]) & set(manifest["files"])

    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0, table.output
    assert "unchanged" in table.output and "corrupt" in table.output


def test_cli_reports_bad_input_and_refused_writes(
    source_server: SeaweedServer, source_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_ACCESS_KEY", raising=False)
    monkeypatch.delenv("SOURCE_SECRET_KEY", raising=False)
    base = ["sample-archive", "--endpoint", source_server.url]
    bad = CliRunner().invoke(app, [*base, "--dest", "s3://x", "--symbols", "1"])
    assert bad.exit_code == 2  # bucket name too short
    zero = CliRunner().invoke(app, [*base, "--dest", f"s3://{source_bucket}", "--days", "0"])
    assert zero.exit_code == 2
    monkeypatch.setenv("SOURCE_ACCESS_KEY", "nobody")
    monkeypatch.setenv("SOURCE_SECRET_KEY", "wrong-secret")
    refused = CliRunner().invoke(app, [*base, "--dest", f"s3://{source_bucket}", "--symbols", "1"])
    assert refused.exit_code == 4, refused.output


def test_cli_without_a_running_stack_says_how_to_start_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
    result = CliRunner().invoke(app, ["sample-archive", "--dest", "s3://sample-archive"])
    assert result.exit_code == 5
    assert "stack up" in result.output


@pytest.mark.servers
def test_cli_default_writes_to_the_local_stacks_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --endpoint the command finds the stack's source endpoint and its admin keys."""
    from crypto_lakehouse.stack.manager import LocalStack

    stack = LocalStack(tmp_path)
    stack.save()
    stack.source.start()  # only the source: the command needs nothing else
    try:
        monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path))
        args = ["sample-archive", "--dest", "s3://sample-archive", "--symbols", "1"]
        result = CliRunner().invoke(app, [*args, "--orders-per-day", "6", "--json"])
        assert result.exit_code == 0, result.output
        files = json.loads(result.output)["files"]
        anonymous = ArchiveLister(ArchiveSource(stack.source_endpoint(), "sample-archive"))
        assert sorted(f.key for f in anonymous.files(ArchiveQuery())) == files
    finally:
        stack.source.stop()
