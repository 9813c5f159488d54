"""The design's four targets, stated once, and the shape of a measured result.

The design document "validated" these with a hard-coded baseline and `asyncio.sleep`;
here each one names the measurement that checks it, and a result without a measurement
says why instead of passing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Target:
    key: str
    claim: str  # the design's words
    threshold: float
    unit: str
    higher_is_better: bool

    def met_by(self, value: float) -> bool:
        return value >= self.threshold if self.higher_is_better else value <= self.threshold


TARGETS: dict[str, Target] = {
    t.key: t
    for t in (
        Target(
            "s5cmd_improvement",
            "s5cmd direct sync 60-75% faster than traditional download+upload",
            60.0,
            "% less time",
            True,
        ),
        Target(
            "workflow_capacity",
            "100+ concurrent workflows",
            100.0,
            "flow runs completed concurrently",
            True,
        ),
        Target(
            "api_p95",
            "Prefect API response < 200 ms",
            200.0,
            "ms (p95)",
            False,
        ),
        Target(
            "storage_throughput",
            "10 GB/s aggregate storage throughput",
            10.0,
            "GB/s",
            True,
        ),
    )
}


# `bench scale` (the whole pipeline at 5,000 and 50,000 files): judged by the benchmark,
# not by `validate`, so kept apart from the design's four.
SCALE_TARGETS: dict[str, Target] = {
    t.key: t
    for t in (
        Target("silver_small_files", "silver, small daily files >= 200 source files/s",
               200.0, "source files/s", True),
        Target("silver_large_ratio", "silver, large files >= 70% of bare pyarrow rows/s",
               0.70, "x bare pyarrow rows/s", True),
        Target("growth", "growth: files/s at 50,000 >= 0.8 x at 5,000 (ingest, silver)",
               0.80, "x the 5,000-file rate", True),
        Target("peak_rss", "every step's peak RSS < 1 GiB at 50,000 files",
               1024.0, "MiB", False),
        Target("data_files", "silver data files after maintain <= source files / 20",
               0.05, "data files per source file", False),
        Target("select_1", "query 'SELECT 1' < 1 s", 1.0, "s", False),
        Target("query_month", "one symbol, one month of 1m klines < 1 s over SELECT 1",
               1.0, "s over SELECT 1", False),
        Target("daily_update", "one new day: ingest + silver + gold < 30 s",
               30.0, "s", False),
    )
}  # fmt: skip

@dataclass
class TargetResult:
    """One target's measurement. `passed is None` means it could not be measured (see `note`)."""

    key: str
    measured: float | None
    passed: bool | None
    method: str
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def measured_as(
        cls, key: str, value: float, method: str, note: str = "", **details: Any
    ) -> TargetResult:
        return cls(key, value, TARGETS[key].met_by(value), method, note, details)

    @classmethod
    def not_measured(cls, key: str, method: str, why: str) -> TargetResult:
        return cls(key, None, None, method, why)

    def as_json(self) -> dict[str, Any]:
        target = TARGETS[self.key]
        return {**asdict(self), "target": asdict(target)}
