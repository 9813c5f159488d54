"""Measure the design's four targets against real services, and say plainly what was met.

Every measurement runs here, now, against the endpoints given: the local stack by default,
or a deployed cluster (`--prefect-api`, `MINIO_ENDPOINT`). Nothing is simulated and no
baseline is assumed: the improvement is computed from two timed runs of the same copy.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from crypto_lakehouse.config import KIB, MIB
from crypto_lakehouse.storage import Endpoint, S3Storage, S3Url
from crypto_lakehouse.transfer import (
    EngineOptions,
    Invocation,
    Mode,
    TransferEngine,
    TransferRequest,
)
from crypto_lakehouse.validation.targets import TARGETS, TargetResult

Log = Callable[[str], None]


@dataclass
class ValidationReport:
    results: list[TargetResult] = field(default_factory=list)
    started_at: str = field(default_factory=lambda: datetime.now().astimezone().isoformat())

    @property
    def all_met(self) -> bool:
        return all(r.passed for r in self.results)

    def as_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "all_met": self.all_met,
            "results": [r.as_json() for r in self.results],
        }


@dataclass
class Validator:
    """Runs the measurements; each method returns one TargetResult."""

    lake: Endpoint
    engine_options: EngineOptions
    prefect_api_url: str | None = None
    small_objects: int = 500
    large_objects: int = 8
    large_object_mib: int = 32
    flow_runs: int = 100
    flow_hold_seconds: float = 2.0
    api_clients: int = 32
    api_requests_per_client: int = 20
    repeats: int = 3
    log: Log = print

    def run(self, only: set[str] | None = None) -> ValidationReport:
        report = ValidationReport()
        steps = {
            "s5cmd_improvement": self.s5cmd_improvement,
            "workflow_capacity": self.workflow_capacity,
            "api_p95": self.api_p95,
            "storage_throughput": self.storage_throughput,
        }
        for key, step in steps.items():
            if only and key not in only:
                continue
            self.log(f"measuring {key}: {TARGETS[key].claim}")
            report.results.append(step())
        return report

    # -- 1. s5cmd direct sync vs traditional ----------------------------------------------

    def s5cmd_improvement(self) -> TargetResult:
        method = (
            f"copy {self.small_objects} x 4 KiB within one endpoint: engine direct "
            f"(s5cmd server-side copy) vs engine traditional (one object at a time, "
            f"download then upload); median of {self.repeats}, warm-up discarded"
        )
        storage = S3Storage(self.lake)
        bucket = f"validate-{uuid.uuid4().hex[:10]}"
        storage.ensure_bucket(bucket)
        payload = os.urandom(4 * KIB)
        keys = [f"src/obj-{i:06d}.bin" for i in range(self.small_objects)]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda k: storage.put_bytes(bucket, k, payload), keys))
        engine = TransferEngine(self.engine_options)

        def timed(mode: Mode, run: int) -> float:
            request = TransferRequest(
                source=self.lake,
                source_url=S3Url(bucket, "src/"),
                dest=self.lake,
                dest_url=S3Url(bucket, f"{mode.value}-{run}/"),
                mode=mode,
                operation="copy",
                verify_sidecars=False,
            )
            report = engine.run(request)
            if not report.summary.ok:
                raise RuntimeError(f"{mode} copy failed: {report.summary}")
            return report.summary.seconds

        try:
            # Both modes get the same treatment: one warm-up run each (the first copy into
            # a new prefix is slower), then `repeats` timed runs, interleaved so that a
            # slow spell on the shared machine hits both alike; the medians are compared.
            timed(Mode.DIRECT, 0)
            timed(Mode.TRADITIONAL, 0)
            direct_runs: list[float] = []
            traditional_runs: list[float] = []
            for i in range(1, self.repeats + 1):
                direct_runs.append(timed(Mode.DIRECT, i))
                traditional_runs.append(timed(Mode.TRADITIONAL, i))
            direct = statistics.median(direct_runs)
            traditional = statistics.median(traditional_runs)
        finally:
            _empty_bucket(storage, bucket)
        improvement = (traditional - direct) / traditional * 100
        return TargetResult.measured_as(
            "s5cmd_improvement",
            round(improvement, 1),
            method,
            direct_seconds=round(direct, 3),
            traditional_seconds=round(traditional, 3),
            speedup=round(traditional / direct, 2),
            repeats=self.repeats,
        )

    # -- 2. concurrent workflows -------------------------------------------------------------

    def workflow_capacity(self) -> TargetResult:
        method = (
            f"{self.flow_runs} async flow runs started at once against the Prefect API, each "
            f"holding for {self.flow_hold_seconds:g} s; peak overlap computed from the server's "
            "own start/end times"
        )
        if not self.prefect_api_url:
            return TargetResult.not_measured(
                "workflow_capacity", method, "no Prefect API given (stack not running?)"
            )
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from crypto_lakehouse.bench.flows import run_flow_bench

        with temporary_settings(updates={PREFECT_API_URL: self.prefect_api_url}):
            outcome = run_flow_bench(self.flow_runs, hold_seconds=self.flow_hold_seconds)
        note = "" if outcome.failed == 0 else f"{outcome.failed} runs did not complete"
        return TargetResult.measured_as(
            "workflow_capacity",
            float(min(outcome.peak_concurrent, outcome.completed)),
            method,
            note,
            completed=outcome.completed,
            failed=outcome.failed,
            seconds=round(outcome.seconds, 2),
            peak_concurrent=outcome.peak_concurrent,
        )

    # -- 3. API latency ----------------------------------------------------------------------

    def api_p95(self) -> TargetResult:
        method = (
            f"{self.api_clients} concurrent clients x {self.api_requests_per_client} requests "
            f"cycling through the routes a flow run's client uses ({', '.join(API_ROUTES)}); "
            f"a failed request counts as taking the client's {API_TIMEOUT_S:.0f} s timeout, "
            "and any failure misses the target"
        )
        if not self.prefect_api_url:
            return TargetResult.not_measured("api_p95", method, "no Prefect API given")
        try:
            samples = asyncio.run(
                _latencies(self.prefect_api_url, self.api_clients, self.api_requests_per_client)
            )
        except httpx.HTTPError as exc:
            return TargetResult.not_measured("api_p95", method, f"set-up failed: {exc}")
        every = [ms for route in samples.values() for ms, _ in route]
        errors = sum(1 for route in samples.values() for _, ok in route if not ok)
        p95 = _percentile(every, 95)
        per_route = {
            route: round(_percentile([ms for ms, _ in values], 95), 1)
            for route, values in samples.items()
        }
        result = TargetResult.measured_as(
            "api_p95",
            round(p95, 1),
            method,
            f"{errors} of {len(every)} requests failed" if errors else "",
            p50_ms=round(_percentile(every, 50), 1),
            p99_ms=round(_percentile(every, 99), 1),
            p95_ms_by_route=per_route,
            requests=len(every),
            errors=errors,
        )
        if errors:
            result.passed = False
        return result

    # -- 4. storage throughput --------------------------------------------------------------

    def storage_throughput(self) -> TargetResult:
        total = self.large_objects * self.large_object_mib * MIB
        method = (
            f"s5cmd writes then reads {self.large_objects} x {self.large_object_mib} MiB "
            "(local disk <-> the lake endpoint); bytes moved / seconds, both phases"
        )
        storage = S3Storage(self.lake)
        bucket = f"validate-{uuid.uuid4().hex[:10]}"
        storage.ensure_bucket(bucket)
        invocation = Invocation(
            endpoint=self.lake,
            numworkers=self.engine_options.max_concurrent,
            retry_count=self.engine_options.retry_count,
        )
        self.engine_options.staging_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.engine_options.staging_root) as tmp:
            upload_dir, download_dir = Path(tmp, "up"), Path(tmp, "down")
            upload_dir.mkdir()
            block = os.urandom(MIB)
            for i in range(self.large_objects):
                with open(upload_dir / f"part-{i:03d}.bin", "wb") as handle:
                    for _ in range(self.large_object_mib):
                        handle.write(block)
            part = str(self.engine_options.part_size_mib)
            write = _timed_s5cmd(
                invocation, "cp", "--part-size", part, f"{upload_dir}/*", f"s3://{bucket}/big/"
            )
            read = _timed_s5cmd(
                invocation, "cp", "--part-size", part, f"s3://{bucket}/big/*", f"{download_dir}/"
            )
        _empty_bucket(storage, bucket)
        gb_per_s = 2 * total / (write + read) / 1e9
        return TargetResult.measured_as(
            "storage_throughput",
            round(gb_per_s, 3),
            method,
            "the design's 10 GB/s is for a 4-node NVMe MinIO cluster; a single-host "
            "measurement shows this host's ceiling, not the cluster's",
            write_gb_per_s=round(total / write / 1e9, 3),
            read_gb_per_s=round(total / read / 1e9, 3),
            bytes_each_way=total,
        )


def _timed_s5cmd(invocation: Invocation, *command: str) -> float:
    started = time.perf_counter()
    result = subprocess.run(
        invocation.argv(*command),
        env=invocation.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"s5cmd {command[0]} failed: {result.stderr.strip()[-300:]}")
    return seconds


API_TIMEOUT_S = 10.0
API_ROUTES = (
    "POST /flow_runs/",
    "GET /flow_runs/{id}",
    "POST /flow_runs/{id}/set_state",
    "POST /flow_runs/filter",
)


async def _latencies(
    api_url: str, clients: int, per_client: int
) -> dict[str, list[tuple[float, bool]]]:
    """(milliseconds, succeeded) per route; a failed request counts as the full timeout.

    Each client does what a flow run's client does, in a cycle: create a run of a
    throw-away flow, read it back, move it to RUNNING, and list recent runs. The flow
    (and with it every run) is deleted afterwards, so a deployed server keeps nothing.
    """
    samples: dict[str, list[tuple[float, bool]]] = {route: [] for route in API_ROUTES}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(
        base_url=api_url.rstrip("/"), limits=limits, timeout=API_TIMEOUT_S
    ) as http:
        reply = await http.post("/flows/", json={"name": f"validate-api-{uuid.uuid4().hex[:8]}"})
        reply.raise_for_status()
        flow_id = reply.json()["id"]

        async def timed(route: str, method: str, path: str, body: Any = None) -> Any:
            started = time.perf_counter()
            try:
                answer = await http.request(method, path, json=body)
                answer.raise_for_status()
                data = answer.json()
            except (httpx.HTTPError, ValueError):
                samples[route].append((API_TIMEOUT_S * 1000, False))
                return None
            samples[route].append(((time.perf_counter() - started) * 1000, True))
            return data

        async def one_client() -> None:
            run_id: str | None = None
            for i in range(per_client):
                step = i % len(API_ROUTES)
                route = API_ROUTES[step]
                if step == 0:
                    created = await timed(route, "POST", "/flow_runs/", {"flow_id": flow_id})
                    run_id = created["id"] if isinstance(created, dict) else None
                elif run_id is None:
                    samples[route].append((API_TIMEOUT_S * 1000, False))
                elif step == 1:
                    await timed(route, "GET", f"/flow_runs/{run_id}")
                elif step == 2:
                    state = {"state": {"type": "RUNNING"}}
                    await timed(route, "POST", f"/flow_runs/{run_id}/set_state", state)
                else:
                    await timed(route, "POST", "/flow_runs/filter", {"limit": 10})

        try:
            await asyncio.gather(*(one_client() for _ in range(clients)))
        finally:
            await http.delete(f"/flows/{flow_id}")
    return {route: values for route, values in samples.items() if values}


def _percentile(values: list[float], pct: int) -> float:
    """The inclusive `pct`th percentile (a single value is its own percentile)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]


def _empty_bucket(storage: S3Storage, bucket: str) -> None:
    keys = [o.key for o in storage.list_objects(bucket)]
    storage.delete_keys(bucket, keys)
    storage.client.delete_bucket(Bucket=bucket)
