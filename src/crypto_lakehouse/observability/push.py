"""Metrics of short-lived flow runs, pushed to a Prometheus Pushgateway.

A flow run on Kubernetes is a pod that lives for one run: nobody scrapes it, so its
counters (files ingested by outcome, bytes, transfers, silver rows) would die with it.
Prometheus's own advice for batch jobs is to push to a Pushgateway, which Prometheus then
scrapes with `honor_labels`. Two kinds of groups:

- one group per process, `{job="crypto-lakehouse-flows", instance="<host>-<pid>"}`, with
  the process's counters (RUN_METRICS). A flow-run pod is one process, so its group is
  its run; a long-lived process (a local worker, `crypto-lakehouse demo`) keeps pushing
  growing totals into the same group, so every pushed series stays a proper counter.
  Each push replaces the group (HTTP PUT), so the group always holds the latest totals.
- one fixed group, `{job="crypto-lakehouse-coverage"}`, with the coverage gauges: the state
  of the archive as of the last coverage build, whichever process built it.

Groups of processes that stopped pushing more than GROUP_RETENTION_SECONDS (2 days) ago are
deleted by the end of each ingest and each gold build, so the Pushgateway does not grow
with every run ever made. Listing the groups returns every pushed series, so the many
short silver runs do not prune; a day-old timestamp has made IngestStale fire before its
group goes.

Pushing never fails a flow: an unreachable or refusing Pushgateway is logged (without the
URL's credentials, if any) and the run goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import anyio
import httpx
from prometheus_client import CollectorRegistry, delete_from_gateway, push_to_gateway

from crypto_lakehouse.observability.metrics import (
    COVERAGE_MISSING_DAYS,
    INGEST_BYTES,
    INGEST_FILES,
    INGEST_LAST_VERIFIED,
    S5CMD_BYTES_TRANSFERRED,
    S5CMD_OBJECTS_TRANSFERRED,
    S5CMD_RETRIED_REQUESTS,
    SILVER_FILES,
    SILVER_REJECTED_LINES,
    SILVER_ROWS,
    component_registry,
)

log = logging.getLogger(__name__)

FLOWS_JOB = "crypto-lakehouse-flows"
COVERAGE_JOB = "crypto-lakehouse-coverage"
PUSH_INTERVAL_SECONDS = 60.0
PUSH_TIMEOUT_SECONDS = 5.0
GROUP_RETENTION_SECONDS = 2 * 86400

RUN_METRICS = (
    INGEST_FILES,
    INGEST_BYTES,
    INGEST_LAST_VERIFIED,
    S5CMD_BYTES_TRANSFERRED,
    S5CMD_OBJECTS_TRANSFERRED,
    S5CMD_RETRIED_REQUESTS,
    SILVER_FILES,
    SILVER_ROWS,
    SILVER_REJECTED_LINES,
)
STATE_METRICS = (COVERAGE_MISSING_DAYS,)

_registries: dict[str, CollectorRegistry] = {}


def _registry(job: str) -> CollectorRegistry:
    if job not in _registries:
        metrics = RUN_METRICS if job == FLOWS_JOB else STATE_METRICS
        _registries[job] = component_registry(metrics)
    return _registries[job]


def process_instance() -> str:
    """This process's group name: the pod name on Kubernetes (the hostname), plus the PID."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _safe(url: str) -> str:
    """The URL without user:password, for log lines."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def push_metrics(url: str | None, *, coverage: bool = False) -> bool:
    """Push this process's run counters (and, with `coverage`, the coverage gauges).

    Returns whether every push was accepted; False also when `url` is unset (pushing off).
    Never raises for network or HTTP errors: those are logged as warnings.
    """
    if not url:
        return False
    groups = [(FLOWS_JOB, {"instance": process_instance()})]
    if coverage:
        groups.append((COVERAGE_JOB, {}))
    ok = True
    for job, key in groups:
        try:
            push_to_gateway(
                url, job=job, registry=_registry(job), grouping_key=key,
                timeout=PUSH_TIMEOUT_SECONDS,
            )  # fmt: skip
        except Exception as exc:  # urllib's URLError/HTTPError, OSError, timeouts
            log.warning("metrics push to %s (job %s) failed: %s", _safe(url), job, exc)
            ok = False
    return ok


def prune_groups(
    url: str | None, *, older_than: float = GROUP_RETENTION_SECONDS, now: float | None = None
) -> int:
    """Delete the flow groups whose last push is older than `older_than` seconds.

    Returns how many were deleted. Errors are logged, never raised.
    """
    if not url:
        return 0
    cutoff = (time.time() if now is None else now) - older_than
    try:
        response = httpx.get(url.rstrip("/") + "/api/v1/metrics", timeout=PUSH_TIMEOUT_SECONDS)
        response.raise_for_status()
        groups = response.json()["data"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        log.warning("listing the Pushgateway's groups at %s failed: %s", _safe(url), exc)
        return 0
    deleted = 0
    for group in groups:
        labels = group.get("labels", {})
        if labels.get("job") != FLOWS_JOB or "instance" not in labels:
            continue
        pushed = _push_time(group)
        if pushed is None or pushed >= cutoff:
            continue
        try:
            delete_from_gateway(
                url, job=FLOWS_JOB, grouping_key={"instance": labels["instance"]},
                timeout=PUSH_TIMEOUT_SECONDS,
            )  # fmt: skip
            deleted += 1
        except Exception as exc:  # as in push_metrics
            log.warning("deleting an old metrics group at %s failed: %s", _safe(url), exc)
    return deleted


def _push_time(group: dict) -> float | None:
    """The group's `push_time_seconds` value from the Pushgateway's JSON API."""
    try:
        return float(group["push_time_seconds"]["metrics"][0]["value"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


@contextlib.asynccontextmanager
async def pushing(
    url: str | None, *, every: float = PUSH_INTERVAL_SECONDS, coverage: bool = False
) -> AsyncIterator[None]:
    """Push every `every` seconds while the block runs, and once more when it ends (also
    when it fails: a failed run's counts matter most). Does nothing when `url` is unset."""
    if not url:
        yield
        return

    async def periodically() -> None:
        while True:
            await asyncio.sleep(every)
            await anyio.to_thread.run_sync(push_metrics, url)

    ticker = asyncio.ensure_future(periodically())
    try:
        yield
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        await anyio.to_thread.run_sync(lambda: push_metrics(url, coverage=coverage))
        await anyio.to_thread.run_sync(prune_groups, url)


async def push_at_end(url: str | None, *, coverage: bool = False) -> bool:
    """One final push from async code (a flow body's last step). With `coverage` (the gold
    build, once per pipeline) the coverage group is pushed too and old groups are pruned."""
    if not url:
        return False
    ok = await anyio.to_thread.run_sync(lambda: push_metrics(url, coverage=coverage))
    if coverage:
        await anyio.to_thread.run_sync(prune_groups, url)
    return ok
