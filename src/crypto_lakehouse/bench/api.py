"""`bench api`: latency of the executor's API under 32 concurrent clients on loopback.

A real replica is started as a child process (API only: `EXECUTOR_MAX_OPERATIONS=0`, so
`POST /sync` measures validation and the durable enqueue, not a transfer), on SQLite by
default or on the PostgreSQL named by `database_url`. The load comes from one asyncio
process holding one keep-alive HTTP/1.1 connection per client; each client sends its next
request when the previous answer arrived (closed loop). The client is a few lines over
asyncio streams so that, on a two-core machine, as little CPU as possible goes to
measuring instead of serving. Every reply is checked (202 for POST, 200 for GET); errors
are counted and reported, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from crypto_lakehouse.bench.proc import cpu_seconds
from crypto_lakehouse.errors import ExecutorUnavailable
from crypto_lakehouse.executor.launcher import ExecutorProcess
from crypto_lakehouse.stack.postgres import PostgresServer
from crypto_lakehouse.stack.process import free_port
from crypto_lakehouse.validation.targets import EXECUTOR_API_P95_MS, TARGETS

DESIGN_P95_MS = TARGETS["api_p95"].threshold


@dataclass
class LatencyStats:
    """Latencies of one phase in milliseconds."""

    name: str
    requests: int
    errors: int
    seconds: float
    p50: float
    p95: float
    p99: float
    max: float
    server_cpu_ms: float | None = None  # the replica's CPU time per request

    @classmethod
    def of(cls, name: str, samples: list[float], errors: int, seconds: float) -> LatencyStats:
        if not samples:
            return cls(name, 0, errors, seconds, 0.0, 0.0, 0.0, 0.0)
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
        return cls(name, len(samples), errors, seconds, cuts[49], cuts[94], cuts[98], max(samples))

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


@dataclass
class ApiBenchReport:
    clients: int
    store: str
    workers: int
    phases: list[LatencyStats]

    def table(self) -> str:
        lines = [
            f"executor API, {self.clients} concurrent clients, loopback, store {self.store}, "
            f"{self.workers} worker process(es)",
            f"{'request':<26}{'n':>7}{'err':>5}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}"
            f"{'p99 ms':>9}{'max ms':>9}{'cpu ms':>8}  p95 vs target {EXECUTOR_API_P95_MS:.0f} ms",
        ]
        for p in self.phases:
            verdict = "ok" if p.p95 < EXECUTOR_API_P95_MS and p.errors == 0 else "MISSED"
            cpu = f"{p.server_cpu_ms:.2f}" if p.server_cpu_ms is not None else "-"
            lines.append(
                f"{p.name:<26}{p.requests:>7}{p.errors:>5}{p.per_second:>8.0f}{p.p50:>9.2f}"
                f"{p.p95:>9.2f}{p.p99:>9.2f}{p.max:>9.2f}{cpu:>8}  "
                f"x{p.p95 / EXECUTOR_API_P95_MS:.2f} {verdict}"
            )
        lines.append(
            f"(design target: p95 < {DESIGN_P95_MS:.0f} ms; ours: < {EXECUTOR_API_P95_MS:.0f} ms; "
            "cpu ms = the replica's CPU time per request)"
        )
        return "\n".join(lines)


class _Connection:
    """One keep-alive HTTP/1.1 connection that sends a request and reads its whole answer."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.auth = f"Authorization: Bearer {token}\r\n"
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        """Send one request; a keep-alive connection the server closed while idle (uvicorn
        does after 5 s) is reopened and the request sent again - it never reached the app."""
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.auth}"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        payload = head.encode() + b"\r\n" + body
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            try:
                self.writer.write(payload)
                status_line = await self.reader.readline()
            except ConnectionError:
                status_line = b""
            if status_line:
                break
            self.close()
            if attempt == 2:
                raise ConnectionError("the server closed the connection twice")
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return int(status_line.split()[1]), await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def _cpu_seconds(pid: int | None) -> float | None:
    """The service's CPU: `pid` and its direct children (uvicorn workers)."""
    return None if pid is None else cpu_seconds([pid], children=True)


async def _phase(
    name: str,
    pid: int | None,
    connections: list[_Connection],
    per_client: int,
    make: callable,  # type: ignore[valid-type]
    expect: int,
    keep: list[bytes] | None = None,
) -> LatencyStats:
    samples: list[float] = []
    errors = 0

    async def client(conn: _Connection) -> None:
        nonlocal errors
        for _ in range(per_client):
            method, path, body = make()
            start = time.perf_counter()
            status, payload = await conn.request(method, path, body)
            samples.append((time.perf_counter() - start) * 1000)
            if status != expect:
                errors += 1
            elif keep is not None:
                keep.append(payload)

    cpu_before, start = _cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(client(c) for c in connections))
    stats = LatencyStats.of(name, samples, errors, time.perf_counter() - start)
    cpu_after = _cpu_seconds(pid)
    if cpu_before is not None and cpu_after is not None and samples:
        stats.server_cpu_ms = (cpu_after - cpu_before) * 1000 / len(samples)
    return stats


async def _drive(
    port: int, pid: int | None, token: str, clients: int, per_client: int
) -> list[LatencyStats]:
    connections = [_Connection(port, token) for _ in range(clients)]
    body = json.dumps({
        "operation_type": "sync",
        "source": {"bucket": "data.binance.vision", "prefix": "data/spot/daily/klines/",
                   "endpoint": "https://s3.ap-northeast-1.amazonaws.com", "anonymous": True},
        "destination": {"bucket": "bronze", "prefix": "binance/spot/"},
        "operation_mode": "staged",
        "configuration": {"max_concurrent": 32, "part_size_mb": 50},
    }).encode()  # fmt: skip

    def post() -> tuple[str, str, bytes]:
        return "POST", "/sync", body

    try:
        await _phase("warm-up", pid, connections, max(5, per_client // 10), post, 202)
        created: list[bytes] = []
        submit = await _phase("POST /sync", pid, connections, per_client, post, 202, created)
        ids = [json.loads(p)["operation_id"] for p in created] or ["0" * 32]

        def get() -> tuple[str, str, bytes]:
            return "GET", f"/operations/{random.choice(ids)}", b""

        read = await _phase("GET /operations/{id}", pid, connections, per_client, get, 200)
    finally:
        for conn in connections:
            conn.close()
    return [submit, read]


def run_api_bench(
    *,
    clients: int = 32,
    per_client: int = 100,
    store: str = "sqlite",
    workers: int = 1,
    database_url: str | None = None,
) -> ApiBenchReport:
    """Start an API-only replica, drive it, stop it; everything lives in a temp dir.

    `store="postgres"` starts a private PostgreSQL cluster for the run (unless
    `database_url` names one).
    """
    token = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        root = Path(tmp)
        env = {
            "LAKEHOUSE_HOME": str(root / "home"),
            "MINIO_ENDPOINT": f"http://127.0.0.1:{free_port()}",  # never contacted
            "EXECUTOR_API_TOKEN": token,
            "EXECUTOR_MAX_OPERATIONS": "0",
            "EXECUTOR_MAX_QUEUE": str(clients * per_client * 4),
            "EXECUTOR_WORKERS": str(workers),
        }
        with contextlib.ExitStack() as stack:
            if store == "postgres" and database_url is None:
                server = PostgresServer(root / "pg")
                server.start()
                stack.callback(server.stop)
                server.create_database("executor")
                database_url = server.info.url("executor")
            if database_url:
                env["EXECUTOR_DATABASE_URL"] = database_url
            replica = ExecutorProcess(root, env, name="bench-executor").start()
            stack.callback(replica.stop)
            try:
                phases = asyncio.run(_drive(replica.port, replica.pid, token, clients, per_client))
            except ConnectionError as exc:  # the replica (or a worker of it) went away
                raise ExecutorUnavailable(
                    f"bench api: {exc}; the replica's log ends with:\n{replica.process.log_tail()}"
                ) from exc
    store_name = "postgresql" if database_url else "sqlite"
    return ApiBenchReport(clients=clients, store=store_name, workers=workers, phases=phases)
