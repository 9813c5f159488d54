"""`bench ingest`'s arithmetic: medians, the overhead as a ratio and in seconds, the verdict."""

from __future__ import annotations

import pytest

from crypto_lakehouse.bench.ingest import IngestBenchResult
from crypto_lakehouse.validation.targets import INGEST_OVERHEAD


def _result(engine: list[float], flow: list[float]) -> IngestBenchResult:
    return IngestBenchResult(
        files=482,
        bytes=1_000,
        seconds={"engine": engine, "flow": flow, "flow-rerun": [0.7, 0.6, 0.8]},
    )


def test_overhead_compares_medians_as_ratio_and_seconds() -> None:
    result = _result(engine=[2.0, 9.0, 2.4], flow=[3.0, 2.8, 30.0])  # medians 2.4 and 3.0

    assert result.overhead == pytest.approx(3.0 / 2.4 - 1)
    assert result.overhead_seconds == pytest.approx(0.6)
    data = result.as_json()
    assert data["prefect_overhead_seconds"] == pytest.approx(0.6)
    assert data["files_per_second"]["engine"] == pytest.approx(482 / 2.4)
    assert data["target_met"] is False


def test_the_target_is_met_at_or_below_the_limit() -> None:
    at_limit = _result(engine=[2.0], flow=[2.0 * (1 + INGEST_OVERHEAD)])
    assert at_limit.as_json()["target_met"] is True
    assert [row[0] for row in at_limit.rows()] == ["engine", "flow", "flow-rerun"]
    assert at_limit.rows()[0][3] == "1.00x"
