"""Concurrent flow runs against a real Prefect API, counted from the server's records.

The runs are async flows in one client process (a synchronous flow pays about 1 s for
its heartbeat thread; ENVIRONMENT.md). Each holds for `hold_seconds` so that "concurrent"
means overlapping: the peak overlap is computed from the start and end times the server
recorded, not from the client's clock.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
from prefect.settings import PREFECT_API_URL, temporary_settings


@dataclass
class CapacityOutcome:
    requested: int
    completed: int
    failed: int
    seconds: float
    peak_concurrent: int


@flow(name="validate-capacity", persist_result=False, log_prints=False)
async def hold_flow(index: int, hold_seconds: float) -> int:
    await asyncio.sleep(hold_seconds)
    return index


def run_concurrent_flows(api_url: str, runs: int, *, hold_seconds: float = 2.0) -> CapacityOutcome:
    """Start `runs` flow runs at once, wait for all, and read back what the server saw."""
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return asyncio.run(_run(runs, hold_seconds))


async def _run(runs: int, hold_seconds: float) -> CapacityOutcome:
    tag = f"validate-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    from prefect import tags

    with tags(tag):
        outcomes = await asyncio.gather(
            *(hold_flow(i, hold_seconds, return_state=True) for i in range(runs)),
            return_exceptions=True,
        )
    seconds = time.perf_counter() - started
    async with get_client() as client:
        recorded = []
        offset = 0
        while True:
            page = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])),
                limit=200,
                offset=offset,
            )
            recorded.extend(page)
            if len(page) < 200:
                break
            offset += 200
    completed = [r for r in recorded if r.state is not None and r.state.is_completed()]
    client_failures = sum(
        1 for o in outcomes if isinstance(o, BaseException) or not o.is_completed()
    )
    return CapacityOutcome(
        requested=runs,
        completed=len(completed),
        failed=max(runs - len(completed), client_failures),
        seconds=seconds,
        peak_concurrent=_peak_overlap(
            [(r.start_time, r.end_time) for r in completed if r.start_time and r.end_time]
        ),
    )


def _peak_overlap(intervals: list[tuple]) -> int:
    """The most intervals open at one instant (a sweep over starts and ends)."""
    events = [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals]
    events.sort(key=lambda e: (e[0], e[1]))
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak
