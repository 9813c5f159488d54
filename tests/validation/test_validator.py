"""The validator measures for real: each result is a number from a run, and its verdict
follows from that number and the design's threshold (never from a hard-coded baseline)."""

from __future__ import annotations

import http.server
import json
import threading
import uuid
from pathlib import Path

import pytest

from crypto_lakehouse.transfer import EngineOptions
from crypto_lakehouse.validation import TARGETS, TargetResult, Validator
from crypto_lakehouse.validation.validator import API_ROUTES, API_TIMEOUT_S

pytestmark = pytest.mark.slow


def _validator(lake_server, tmp_path: Path, prefect_api: str | None) -> Validator:
    return Validator(
        lake=lake_server.endpoint(),
        engine_options=EngineOptions(staging_root=tmp_path / "staging", max_concurrent=16),
        prefect_api_url=prefect_api,
        small_objects=40,
        large_objects=2,
        large_object_mib=4,
        flow_runs=12,
        api_clients=4,
        api_requests_per_client=8,
        flow_hold_seconds=6.0,
        repeats=2,
        log=lambda _msg: None,
    )


def test_verdict_follows_threshold() -> None:
    assert TargetResult.measured_as("api_p95", 150.0, "m").passed is True
    assert TargetResult.measured_as("api_p95", 250.0, "m").passed is False
    assert TargetResult.measured_as("s5cmd_improvement", 59.9, "m").passed is False
    assert TargetResult.measured_as("workflow_capacity", 100, "m").passed is True
    assert TargetResult.not_measured("storage_throughput", "m", "why").passed is None


def test_storage_measurements_are_real(lake_server, tmp_path: Path) -> None:
    validator = _validator(lake_server, tmp_path, prefect_api=None)
    report = validator.run()
    by_key = {r.key: r for r in report.results}
    assert list(by_key) == list(TARGETS)

    improvement = by_key["s5cmd_improvement"]
    direct = improvement.details["direct_seconds"]
    traditional = improvement.details["traditional_seconds"]
    assert direct > 0 and traditional > 0
    # The details are rounded to milliseconds: on a fast machine (runs of a few tenths of a
    # second) that alone moves the percentage by more than a point, so the measured value
    # must lie within what the rounded times allow (plus its own rounding to 0.1).
    corners = [
        (t - d) / t * 100
        for t in (traditional - 0.0005, traditional + 0.0005)
        for d in (direct - 0.0005, direct + 0.0005)
    ]
    assert min(corners) - 0.05 <= improvement.measured <= max(corners) + 0.05
    assert improvement.passed == TARGETS["s5cmd_improvement"].met_by(improvement.measured)
    assert improvement.details["repeats"] == 2

    throughput = by_key["storage_throughput"]
    assert throughput.measured and throughput.measured > 0
    assert throughput.details["bytes_each_way"] == 2 * 4 * 1024 * 1024
    # Without a Prefect API the other two are reported as not measured, never as passed,
    # and a report with an unmeasured target is not "all met".
    for key in ("workflow_capacity", "api_p95"):
        assert by_key[key].passed is None and by_key[key].measured is None
    assert report.all_met is False


def test_prefect_targets_against_a_real_server(lake_server, prefect_server, tmp_path: Path) -> None:
    validator = _validator(lake_server, tmp_path, prefect_api=prefect_server.api_url)
    report = validator.run({"workflow_capacity", "api_p95"})
    capacity, api = report.results
    assert capacity.details["completed"] == 12
    assert capacity.details["failed"] == 0
    # Each run holds 6 s and all start at once: the server saw all 12 open together.
    assert capacity.details["peak_concurrent"] == 12
    assert capacity.passed is False  # 12 runs cannot meet a 100-run target
    assert api.details["requests"] == 4 * 8 and api.details["errors"] == 0
    assert set(api.details["p95_ms_by_route"]) == set(API_ROUTES)
    assert api.measured is not None and 0 < api.measured < API_TIMEOUT_S * 1000


class _OneFailureAPI(http.server.BaseHTTPRequestHandler):
    """Answers every route quickly, except the first `POST /flow_runs/filter` (HTTP 500)."""

    failed_once = False

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        failing = self.path.endswith("/flow_runs/filter") and not _OneFailureAPI.failed_once
        _OneFailureAPI.failed_once |= failing
        body = b"{}" if failing else json.dumps({"id": str(uuid.uuid4())}).encode()
        self.send_response(500 if failing else 200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


def test_one_failed_request_misses_the_api_target(lake_server, tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OneFailureAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        api_url = f"http://127.0.0.1:{server.server_address[1]}/api"
        (result,) = _validator(lake_server, tmp_path, api_url).run({"api_p95"}).results
    finally:
        server.shutdown()
        server.server_close()
    assert result.details["errors"] == 1 and result.details["requests"] == 32
    assert result.measured is not None and result.measured < TARGETS["api_p95"].threshold
    assert result.passed is False  # a p95 under the line does not excuse a failed request


def test_unreachable_api_is_not_measured(lake_server, tmp_path: Path) -> None:
    validator = _validator(lake_server, tmp_path, prefect_api="http://127.0.0.1:9/api")
    (result,) = validator.run({"api_p95"}).results
    assert result.passed is None and result.measured is None
    assert "set-up failed" in result.note


def test_missing_prefect_api_is_not_measured(lake_server, tmp_path: Path) -> None:
    report = _validator(lake_server, tmp_path, prefect_api=None).run({"api_p95"})
    (result,) = report.results
    assert result.passed is None
    assert result.measured is None
    assert not report.all_met
