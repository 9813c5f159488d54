"""Requests s5cmd retries are counted by cause and reported, not hidden inside s5cmd."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from transfer_helpers import Sides, contents, seed_many, small_objects

from crypto_lakehouse.bench.netem import NetemConfig, NetemProxy
from crypto_lakehouse.storage import Endpoint, S3Url
from crypto_lakehouse.transfer import Mode, TransferEngine, TransferReport, TransferRequest
from crypto_lakehouse.transfer.output import Other, Retried, parse_line, retry_cause


def test_a_retry_line_is_a_retried_event_with_its_cause() -> None:
    line = (
        b'{"error":"retryable error: SlowDown: Please reduce your request rate.'
        b'\\n\\tstatus code: 503"}'
    )
    assert parse_line(line) == Retried("SlowDown")
    cut = (
        '{"error":"retryable error: RequestError: send request failed'
        '\\ncaused by: read: connection reset by peer"}'
    )
    assert parse_line(cut) == Retried("connection cut")
    debug = '{"operation":"cp","job":"cp s3://b/k /d/k","error":"object already exists"}'
    assert isinstance(parse_line(debug), Other)  # a debug note about one object, not a retry
    assert retry_cause("retryable error: dial tcp: i/o timeout") == "timeout"


@pytest.mark.slow
def test_slowdowns_from_the_source_are_retried_counted_and_every_object_lands(
    sides: Sides, make_engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    objects = small_objects("in/", 60)
    seed_many(sides.source_server.endpoint(), sides.source_bucket, objects, tmp_path / "seed")
    proxy = NetemProxy(
        NetemConfig.in_front_of(sides.source_server.url, slowdowns=0.2, seed=11)
    ).start()
    engine: TransferEngine = make_engine(retry_count=10)

    def run(prefix: str, **kwargs: bool) -> TransferReport:
        return engine.run(
            TransferRequest(
                source=Endpoint(url=proxy.url, anonymous=True),
                source_url=S3Url(sides.source_bucket, "in/"),
                dest=sides.lake_server.endpoint(),
                dest_url=S3Url(sides.lake_bucket, prefix),
                mode=Mode.STAGED,
            ),
            **kwargs,
        )

    def warnings() -> int:
        return sum("s5cmd retried" in r.getMessage() for r in caplog.records)

    caplog.set_level(logging.WARNING, logger="crypto_lakehouse.transfer.engine")
    try:
        report = run("out/")
        assert warnings() == 1  # one line per run, with the counts by cause
        quiet = run("quiet/", log_retries=False)  # the caller reports retries itself
        assert quiet.summary.retried and warnings() == 1
    finally:
        proxy.stop()
    assert report.summary.ok, report.failures()[:3]
    assert report.summary.retried.get("SlowDown", 0) >= 5  # 20% of ~60 GETs, seeded
    assert report.summary.retries_text.startswith(str(sum(report.summary.retried.values())))
    copied = contents(sides.lake_server.endpoint(), sides.lake_bucket, "out/")
    assert copied == {"out/" + k[len("in/") :]: v for k, v in objects.items()}
