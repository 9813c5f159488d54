"""`bench flows --runs N`: N concurrent flow runs against the stack's Prefect server.

Each run is an async flow with one task that holds for `hold` seconds, so the runs
overlap (a synchronous flow would pay about 1 s for its heartbeat thread). They start at
once from one client process (or split over `processes`), and the result is read back
from the server by a tag: completed, failed (anything else), runs per second over the
wall time, and the most runs the server saw open at one instant.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from prefect import flow, tags, task
from prefect.cache_policies import NO_CACHE

from crypto_lakehouse.validation.targets import TARGETS

# The design's "100+ concurrent workflows": met when every run completed, none failed, and
# the server saw at least this many open at one instant.
CONCURRENT_TARGET = int(TARGETS["workflow_capacity"].threshold)


@task(name="bench-hold", cache_policy=NO_CACHE)
async def hold(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@flow(name="bench-flow", persist_result=False, log_prints=False)
async def bench_flow(index: int, seconds: float) -> int:
    await hold(seconds)
    return index


@dataclass
class FlowBenchResult:
    runs: int
    completed: int
    failed: int
    client_errors: int
    seconds: float
    peak_concurrent: int
    processes: int
    hold_seconds: float
    error_kinds: dict[str, int]  # first words of each client-side error, counted
    server_states: dict[str, int]  # the tagged runs the server recorded, by state name

    @property
    def runs_per_second(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0

    @property
    def target_met(self) -> bool:
        return (
            self.completed == self.runs
            and self.failed == 0
            and self.peak_concurrent >= CONCURRENT_TARGET
        )

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["runs_per_second"] = round(self.runs_per_second, 2)
        data["target"] = f"{CONCURRENT_TARGET}+ concurrent, all completed, none failed"
        data["target_met"] = self.target_met
        return data


async def start_runs(count: int, first: int, seconds: float, tag: str) -> list[str]:
    """Run `count` flows at once in this process; one line per run that raised or failed."""
    with tags(tag):
        states = await asyncio.gather(
            *(bench_flow(first + i, seconds, return_state=True) for i in range(count)),
            return_exceptions=True,
        )
    errors = []
    for state in states:
        if isinstance(state, BaseException):
            errors.append(f"{type(state).__name__}: {str(state)[:200]}")
        elif not state.is_completed():
            errors.append(f"{state.name}: {(state.message or '')[:200]}")
    return errors


async def read_back(tag: str) -> tuple[int, int, int, dict[str, int]]:
    """(completed, other, peak overlap, runs per state) of the runs with `tag`, per server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    runs = []
    async with get_client() as client:
        offset = 0
        while True:
            page = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])),
                limit=200,
                offset=offset,
            )
            runs.extend(page)
            if len(page) < 200:
                break
            offset += 200
    done = [r for r in runs if r.state is not None and r.state.is_completed()]
    events = [(r.start_time, 1) for r in done if r.start_time and r.end_time]
    events += [(r.end_time, -1) for r in done if r.start_time and r.end_time]
    peak = current = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        current += delta
        peak = max(peak, current)
    states = Counter(r.state.name if r.state else "no state" for r in runs)
    return len(done), len(runs) - len(done), peak, dict(states)


def run_flow_bench(runs: int, *, hold_seconds: float = 1.0, processes: int = 1) -> FlowBenchResult:
    """Start `runs` flow runs at once (split over `processes` client processes) and count."""
    tag = f"bench-flows-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    if processes <= 1:
        errors = asyncio.run(start_runs(runs, 0, hold_seconds, tag))
    else:
        errors = _in_processes(runs, processes, hold_seconds, tag)
    seconds = time.perf_counter() - started
    completed, other, peak, states = asyncio.run(read_back(tag))
    return FlowBenchResult(
        runs=runs,
        completed=completed,
        failed=max(other, runs - completed),
        client_errors=len(errors),
        seconds=seconds,
        peak_concurrent=peak,
        processes=processes,
        hold_seconds=hold_seconds,
        error_kinds=dict(Counter(e[:80] for e in errors).most_common(5)),
        server_states=states,
    )


def _in_processes(runs: int, processes: int, hold_seconds: float, tag: str) -> list[str]:
    share = [runs // processes + (1 if i < runs % processes else 0) for i in range(processes)]
    children = []
    first = 0
    for count in share:
        args = json.dumps([count, first, hold_seconds, tag])
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "crypto_lakehouse.bench.flows", args],
                env=dict(os.environ),
                stdout=subprocess.PIPE,
                text=True,
            )
        )
        first += count
    errors: list[str] = []
    for child, count in zip(children, share, strict=True):
        out, _ = child.communicate()
        try:
            errors += json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            errors += [f"client process exited {child.returncode}"] * count
    return errors


if __name__ == "__main__":  # a client process of `_in_processes`
    count, first, seconds, run_tag = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(start_runs(count, first, seconds, run_tag))))
