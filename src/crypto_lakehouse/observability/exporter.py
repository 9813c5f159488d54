"""Prefect metrics exporter: polls the Prefect REST API and keeps `prefect_*` series current.

Prefect's server has no Prometheus endpoint of its own (the design's `/api/metrics` does
not exist), so this process asks the API and turns the answers into the series the alert
rules and dashboards use:

- `prefect_workflow_runs_total{flow,state}` and `prefect_workflow_failures_total{flow}`:
  counters of flow runs that *reached* a terminal state. Each poll reads the runs whose
  `end_time` is after a watermark (minus an overlap, so runs committed a little late are
  not lost) and counts each (run id, end time) once: keys already counted are kept in a
  bounded, insertion-ordered set, which only needs to cover the overlap window.
- `prefect_flow_runs{state}`: how many runs are in each non-terminal state type now.
- `prefect_work_pool_late_runs{pool}`: runs in the `Late` state per work pool.
- `prefect_api_up`: 1 when the last poll succeeded, else 0 (the alert on it fires when the
  API is down, not when the exporter is).

One exporter per Prefect deployment: two exporters polling one API would each count every
run, and `sum()` in a rule would double them.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, start_http_server

from crypto_lakehouse.observability.metrics import (
    EXPORTER_METRICS,
    PREFECT_API_UP,
    PREFECT_FLOW_RUNS_BY_STATE,
    PREFECT_WORK_POOL_QUEUE,
    PREFECT_WORKFLOW_FAILURES,
    PREFECT_WORKFLOW_RUNS,
    component_registry,
)

log = logging.getLogger(__name__)

TERMINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
ACTIVE_STATES = ("SCHEDULED", "PENDING", "RUNNING", "PAUSED", "CANCELLING")
FAILURE_STATES = frozenset({"FAILED", "CRASHED"})
PAGE_SIZE = 200  # Prefect's default maximum `limit` for filter routes.


def exporter_registry() -> CollectorRegistry:
    """A registry holding only the exporter's series (not the executor's or ingest's)."""
    return component_registry(EXPORTER_METRICS)


class SeenRuns:
    """Run ids already counted, oldest dropped first once `capacity` is reached."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, run_id: str) -> bool:
        """Record `run_id`; False when it was already there (so: do not count it again)."""
        if run_id in self._ids:
            return False
        self._ids[run_id] = None
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)


@dataclass
class PollResult:
    """What one poll saw: for logs and tests."""

    ok: bool
    new_terminal_runs: int = 0
    active: dict[str, int] = field(default_factory=dict)
    late_by_pool: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def _run_key(run: dict[str, Any]) -> str:
    """A run is counted once per arrival in a terminal state: a failed run that is retried
    and then completes (same id, new end time) counts twice, which is what happened."""
    return f"{run['id']}@{run['end_time']}"


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class PrefectExporter:
    """Polls one Prefect API (`api_url` ends in `/api`) and updates the `prefect_*` series.

    `lookback` bounds the first poll: runs that ended before start-up minus `lookback` are
    never counted, so a restart does not replay months of history. `overlap` is how far
    behind the newest seen `end_time` each poll reads again; `seen_capacity` must exceed the
    number of runs that end within `overlap`.
    """

    def __init__(
        self,
        api_url: str,
        *,
        auth_string: str | None = None,
        timeout: float = 10.0,
        lookback: timedelta = timedelta(hours=1),
        overlap: timedelta = timedelta(minutes=10),
        seen_capacity: int = 100_000,
        page_size: int = PAGE_SIZE,
    ) -> None:
        auth = None
        if auth_string:
            user, _, password = auth_string.partition(":")
            auth = httpx.BasicAuth(user, password)
        self._client = httpx.Client(
            base_url=api_url.rstrip("/") + "/",
            timeout=timeout,
            auth=auth,
        )
        self.overlap = overlap
        self.page_size = page_size
        self.watermark = datetime.now(UTC) - lookback
        self.seen = SeenRuns(seen_capacity)
        self._flow_names: dict[str, str] = {}
        self._known_pools: set[str] = set()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrefectExporter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- one poll --------------------------------------------------------------------------
    def poll(self) -> PollResult:
        """Read the API once and update every series. Never raises for API trouble:
        `prefect_api_up` drops to 0 and the counters keep their values."""
        try:
            self._get("health")
            new_runs = self._count_terminal_runs()
            active = self._update_active_gauges()
            late = self._update_late_runs()
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            PREFECT_API_UP.set(0)
            log.warning("prefect API poll failed: %s", exc)
            return PollResult(ok=False, error=str(exc))
        PREFECT_API_UP.set(1)
        return PollResult(ok=True, new_terminal_runs=new_runs, active=active, late_by_pool=late)

    def _get(self, path: str) -> Any:
        response = self._client.get(path)
        response.raise_for_status()
        return response.json()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        response = self._client.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def _terminal_runs_since(self, since: datetime) -> Iterator[dict[str, Any]]:
        """Runs in a terminal state that ended after `since`, newest first, all pages.

        Newest first means a run that ends while we page shifts later pages by one: we may
        see a run twice (the seen set drops it), never skip one.
        """
        offset = 0
        while True:
            page = self._post(
                "flow_runs/filter",
                {
                    "sort": "END_TIME_DESC",
                    "limit": self.page_size,
                    "offset": offset,
                    "flow_runs": {
                        "state": {"type": {"any_": list(TERMINAL_STATES)}},
                        "end_time": {"after_": since.isoformat()},
                    },
                },
            )
            yield from page
            if len(page) < self.page_size:
                return
            offset += self.page_size

    def _count_terminal_runs(self) -> int:
        since = self.watermark - self.overlap
        fresh: list[dict[str, Any]] = []
        newest = self.watermark
        for run in self._terminal_runs_since(since):
            state_type = run.get("state_type") or (run.get("state") or {}).get("type")
            if state_type not in TERMINAL_STATES or not run.get("end_time"):
                continue
            newest = max(newest, _parse_time(run["end_time"]))
            if _run_key(run) not in self.seen:
                fresh.append(run)
        names = self._flow_names_for({run["flow_id"] for run in fresh})
        for run in fresh:
            if not self.seen.add(_run_key(run)):
                continue
            flow = names.get(run["flow_id"], "unknown")
            state_type = run.get("state_type") or run["state"]["type"]
            PREFECT_WORKFLOW_RUNS.labels(flow=flow, state=state_type).inc()
            if state_type in FAILURE_STATES:
                PREFECT_WORKFLOW_FAILURES.labels(flow=flow).inc()
        self.watermark = newest
        return len(fresh)

    def _flow_names_for(self, flow_ids: set[str]) -> dict[str, str]:
        missing = sorted(flow_ids - self._flow_names.keys())
        for start in range(0, len(missing), self.page_size):
            chunk = missing[start : start + self.page_size]
            flows = self._post(
                "flows/filter", {"limit": self.page_size, "flows": {"id": {"any_": chunk}}}
            )
            for flow in flows:
                self._flow_names[flow["id"]] = flow["name"]
        return {fid: self._flow_names[fid] for fid in flow_ids if fid in self._flow_names}

    def _count(self, body: dict[str, Any]) -> int:
        return int(self._post("flow_runs/count", body))

    def _update_active_gauges(self) -> dict[str, int]:
        counts = {
            state: self._count({"flow_runs": {"state": {"type": {"any_": [state]}}}})
            for state in ACTIVE_STATES
        }
        for state, value in counts.items():
            PREFECT_FLOW_RUNS_BY_STATE.labels(state=state).set(value)
        return counts

    def _update_late_runs(self) -> dict[str, int]:
        pools = [pool["name"] for pool in self._post("work_pools/filter", {"limit": PAGE_SIZE})]
        late = {
            pool: self._count(
                {
                    "flow_runs": {"state": {"name": {"any_": ["Late"]}}},
                    "work_pools": {"name": {"any_": [pool]}},
                }
            )
            for pool in pools
        }
        for pool, value in late.items():
            PREFECT_WORK_POOL_QUEUE.labels(pool=pool).set(value)
        for gone in self._known_pools - late.keys():
            PREFECT_WORK_POOL_QUEUE.remove(gone)
        self._known_pools = set(late)
        return late

    # -- serving ---------------------------------------------------------------------------
    def serve(self, *, host: str, port: int, interval: float, stop: threading.Event) -> None:
        """Expose `/metrics` on host:port and poll every `interval` seconds until `stop`."""
        server, thread = start_http_server(port, addr=host, registry=exporter_registry())
        log.info("exporter listening on http://%s:%d/metrics", host, port)
        try:
            while not stop.is_set():
                result = self.poll()
                if result.ok and result.new_terminal_runs:
                    log.info("counted %d newly finished flow runs", result.new_terminal_runs)
                stop.wait(interval)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
