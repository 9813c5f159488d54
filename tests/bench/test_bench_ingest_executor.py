"""`bench ingest --mover executor`'s arithmetic: the files/s ratio and its verdict."""

from __future__ import annotations

import pytest

from crypto_lakehouse.bench.ingest import EXECUTOR_TARGET, IngestBenchResult


def _result(flow: list[float], executor: list[float]) -> IngestBenchResult:
    seconds = {"engine": [2.0, 2.0, 2.0], "flow": flow, "flow-executor": executor}
    return IngestBenchResult(files=964, bytes=1_000, seconds=seconds)


def test_the_ratio_is_executor_files_per_second_over_in_process_medians() -> None:
    result = _result(flow=[5.0, 50.0, 4.0], executor=[6.0, 6.5, 1.0])  # medians 5.0 and 6.0
    assert result.executor_ratio == pytest.approx(5.0 / 6.0)
    data = result.as_json()
    assert data["executor_ratio"] == pytest.approx(5.0 / 6.0)
    assert data["executor_target_met"] is True
    assert data["files_per_second"]["flow-executor"] == pytest.approx(964 / 6.0)


def test_below_the_target_is_missed_and_no_executor_run_has_no_ratio() -> None:
    slow = _result(flow=[4.0], executor=[4.0 / (EXECUTOR_TARGET - 0.01)])
    assert slow.as_json()["executor_target_met"] is False
    plain = IngestBenchResult(files=1, bytes=1, seconds={"engine": [1.0], "flow": [1.2]})
    assert plain.executor_ratio is None and "executor_ratio" not in plain.as_json()
