"""`bench fanout`: ingest and silver of N sample files, in one process and fanned out.

On one private stack (temporary `LAKEHOUSE_HOME`) a sample archive of about N files is
written once (`sample-archive --files N --no-defects`), then each side runs on its own
catalog database and its own bronze/silver/gold buckets, so both start empty:

  one      ingest, then silver, each a flow run in a fresh Python process (the CLI's way)
  fan-out  `ingest-fanout`, then `silver-fanout` in a fresh process, their children run
           by W local process workers (`prefect worker start --pool P`, started and
           stopped by PID; one run at a time each, polling every second)

Both sides use the flows' defaults (batches in flight per run; the ingest parent works
through pieces too), as a user running `ingest --fan-out` would.

Reported per step: wall seconds of the process, the child runs (share, worker, seconds),
and the fan-out overhead: the extra wall time over the one-process run, in % of it.
Both sides end with the same manifest and silver row counts or the run says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crypto_lakehouse.bench.proc import host_busy_seconds, pids_marked, tree_cpu_seconds
from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import StackError

OVERHEAD_TARGET = 0.15  # fan-out wall time at most 15% over one process at 5,000 files
WORKER_POLL_SECONDS = 1
MARK_VARIABLE = "LAKEHOUSE_LOCAL_WORKER"  # set in each local worker's environment
SOURCE_BUCKET = "data.binance.vision"
_STACK_ENV = ("MINIO_", "SOURCE_", "CATALOG_DATABASE_URL", "PREFECT_", "BRONZE_BUCKET",
              "SILVER_BUCKET", "GOLD_BUCKET", "LAKEHOUSE_HOME")  # fmt: skip


@dataclass
class StepResult:
    """One step of one side: wall seconds of its process and what the flow reported."""

    side: str  # one | fan-out
    step: str  # ingest | silver
    seconds: float
    state: str
    files: int  # ingest: files verified; silver: files transformed
    rows: int = 0
    count_seconds: float = 0.0
    children: list[dict[str, Any]] = field(default_factory=list)
    pieces: int = 0  # ingest: pieces cut; the parent's share of them and of the files
    parent_pieces: int = 0
    parent_files: int = 0
    # CPU seconds used while the step ran: the whole host, the step's process tree, the
    # workers' trees (their flow runs), the stack's servers (SeaweedFS, PostgreSQL, Prefect)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def longest_child(self) -> float:
        return max((c.get("seconds") or 0.0 for c in self.children), default=0.0)


@dataclass
class FanoutRun:
    files: int
    workers: int
    children: int
    steps: list[StepResult] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    def step(self, side: str, step: str) -> StepResult | None:
        return next((s for s in self.steps if s.side == side and s.step == step), None)

    def overhead(self, step: str) -> float | None:
        """(fan-out wall - one-process wall) / one-process wall."""
        one, fan = self.step("one", step), self.step("fan-out", step)
        if one is None or fan is None or not one.seconds:
            return None
        return (fan.seconds - one.seconds) / one.seconds

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["overhead"] = {s: self.overhead(s) for s in ("ingest", "silver")}
        data["target"] = OVERHEAD_TARGET
        return data


class LocalWorkers:
    """W Prefect process workers on one pool, each its own process group, stopped with
    SIGINT by PID. Each worker's environment carries its own mark (`MARK_VARIABLE`), which
    the flow runs it starts inherit: a flow run Prefect started in a session of its own is
    still found, killed with its worker (`kill`) and stopped if it outlives `stop`."""

    def __init__(self, pool: str, count: int, env: dict[str, str], log_dir: Path) -> None:
        self.pool = pool
        from crypto_lakehouse.flows.fanout import HEARTBEAT_SECONDS

        self.env = {
            **env,
            "PREFECT_WORKER_QUERY_SECONDS": str(WORKER_POLL_SECONDS),
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
        }
        self.names = [f"{pool}-w{i + 1}" for i in range(count)]
        self.marks = {name: f"{uuid.uuid4().hex}-{name}" for name in self.names}
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        from crypto_lakehouse.stack.prefect_server import prefect_binary

        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            argv = [prefect_binary(), "worker", "start", "--pool", self.pool,
                    "--type", "process", "--name", name, "--limit", "1"]  # fmt: skip
            with (self.log_dir / f"{name}.log").open("ab") as log:
                env = {**self.env, MARK_VARIABLE: self.marks[name]}
                self.procs[name] = subprocess.Popen(
                    argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True,
                )  # fmt: skip

    def wait_online(self, timeout: float = 120.0) -> None:
        """Until the server lists every worker of ours as online (StackError otherwise)."""
        import httpx

        url = f"{self.env['PREFECT_API_URL']}/work_pools/{self.pool}/workers/filter"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise StackError(f"worker {name} exited with {proc.returncode}")
            try:
                listed = httpx.post(url, json={}, timeout=10).json()
                online = {w["name"] for w in listed if w.get("status") == "ONLINE"}
            except (httpx.HTTPError, ValueError, TypeError):
                online = set()
            if online >= set(self.names):
                return
            time.sleep(0.5)
        raise StackError(f"workers {self.names} not online on {self.pool} after {timeout:.0f} s")

    def kill(self, name: str) -> None:
        """SIGKILL the worker and every flow run it started (its process group, and any
        process that carries its mark)."""
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        self._kill_marked(name)

    def _kill_marked(self, name: str) -> None:
        for pid in pids_marked(MARK_VARIABLE, self.marks[name]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        from crypto_lakehouse.stack.process import wait_for_exit

        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # the worker ignores SIGTERM at times
        for proc in self.procs.values():
            if proc.poll() is None and not wait_for_exit(proc.pid, 30):
                proc.kill()
            proc.wait(timeout=30)
        for name in self.procs:  # flow runs that outlived their worker
            self._kill_marked(name)
        self.procs.clear()


class CpuMeter:
    """CPU seconds used inside a `with` block: by the host, by the processes this process
    starts and reaps there (a step), by `workers` and by `servers` (their process trees)."""

    def __init__(self, servers: list[int], workers: list[int] | None = None) -> None:
        self.servers = servers
        self.workers = workers or []
        self.used: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        reaped = os.times()
        return {
            "host": host_busy_seconds(),
            "step": reaped.children_user + reaped.children_system,
            "workers": tree_cpu_seconds(self.workers),
            "servers": tree_cpu_seconds(self.servers),
        }

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._read()
        self.used = {k: round(end[k] - self._start[k], 2) for k in end}


def _server_pids(stack: Any) -> list[int]:
    servers = (stack.source, stack.lake, stack.postgres, stack.prefect)
    return [pid for s in servers if (pid := s.process.read_pid()) is not None]


@contextmanager
def local_workers(
    pool: str, count: int, env: dict[str, str], log_dir: Path
) -> Iterator[LocalWorkers]:
    workers = LocalWorkers(pool, count, env, log_dir)
    try:
        workers.start()
        workers.wait_online()
        yield workers
    finally:
        workers.stop()


def run_step(env: dict[str, str], spec: dict[str, Any], log: Path) -> tuple[float, dict[str, Any]]:
    """`python -m crypto_lakehouse.bench.fanout` with `spec` on stdin; (wall s, its JSON)."""
    started = time.perf_counter()
    with log.open("ab") as err:
        proc = subprocess.run(
            [sys.executable, "-m", "crypto_lakehouse.bench.fanout"],
            input=json.dumps(spec).encode(), stdout=subprocess.PIPE, stderr=err, env=env,
            check=False,
        )  # fmt: skip
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise StackError(f"bench step {spec} failed (exit {proc.returncode}); see {log}")
    return seconds, json.loads(proc.stdout.decode().strip().splitlines()[-1])


class FanoutBench:
    """One private stack; the one-process side, then the fan-out side, on fresh state each."""

    def __init__(
        self,
        settings: Settings,
        *,
        files: int = 5000,
        workers: int = 2,
        children: int | None = None,
        large_rows: int = 100_000,
        log: Callable[[str], None] = print,
    ) -> None:
        self.settings = settings
        self.files = files
        self.workers = workers
        self.children = children or workers
        self.large_rows = large_rows
        self.log = log
        self.log_dir = settings.home_dir / "bench" / "fanout"

    def run(self) -> FanoutRun:
        from crypto_lakehouse.bench.scale import ChildRunner
        from crypto_lakehouse.stack.manager import LocalStack

        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / "steps.log"
        log.write_text("")
        home = Path(tempfile.mkdtemp(prefix="bfanout-"))
        stack = LocalStack(home)
        result = FanoutRun(self.files, self.workers, self.children)
        self.log(f"private stack under {home} (log: {log})")
        try:
            stack.up()
            env = {k: v for k, v in os.environ.items() if not k.startswith(_STACK_ENV)}
            env.update(stack.env(), PREFECT_HOME=str(home / "prefect-client"))
            env.update(PREFECT_LOGGING_LEVEL="CRITICAL", STAGING_DIR=str(home / "staging"))
            runner = ChildRunner(env, log)
            gen = runner.run("generate", "sample-archive", "--dest", f"s3://{SOURCE_BUCKET}",
                             "--no-defects", "--files", str(self.files),
                             "--large-rows", str(self.large_rows))  # fmt: skip
            if gen.exit_code != 0:
                raise StackError(f"sample-archive failed: {gen.note}")
            if runner.run("deploy", "flows", "deploy").exit_code != 0:
                raise StackError(f"flows deploy failed; see {log}")
            for side in ("one", "fan-out"):
                side_env = self._side_env(stack, env, side)
                self._side(result, side, side_env, log, _server_pids(stack))
            self._compare(result, stack)
        finally:
            stack.down()
            shutil.rmtree(home, ignore_errors=True)
        return result

    def _side_env(self, stack: Any, env: dict[str, str], side: str) -> dict[str, str]:
        from crypto_lakehouse.storage import S3Storage

        name = "one" if side == "one" else "fan"
        stack.postgres.create_database(f"catalog_{name}")
        storage = S3Storage(stack.lake_endpoint())
        for layer in ("bronze", "silver", "gold"):
            storage.ensure_bucket(f"{layer}-{name}")
        return {
            **env,
            "CATALOG_DATABASE_URL": stack.postgres.info.url(f"catalog_{name}"),
            "BRONZE_BUCKET": f"bronze-{name}",
            "SILVER_BUCKET": f"silver-{name}",
            "GOLD_BUCKET": f"gold-{name}",
        }

    def _side(
        self, result: FanoutRun, side: str, env: dict[str, str], log: Path, servers: list[int]
    ) -> None:
        from crypto_lakehouse.flows.deployments import GENERAL_POOL, TRANSFER_POOL

        for step, pool in (("ingest", TRANSFER_POOL), ("silver", GENERAL_POOL)):
            spec = {"step": step, "fan_out": side == "fan-out", "children": self.children}
            if side == "one":
                with CpuMeter(servers) as cpu:
                    seconds, out = run_step(env, spec, log)
            else:
                with (
                    local_workers(pool, self.workers, env, self.log_dir / "workers") as w,
                    CpuMeter(servers, [p.pid for p in w.procs.values()]) as cpu,
                ):
                    seconds, out = run_step(env, spec, log)
            fan = out.get("fanout") or {}
            files = out.get("verified", out.get("transformed", 0))
            item = StepResult(side, step, seconds, out["state"], files, out.get("rows", 0),
                              fan.get("count_seconds", 0.0), fan.get("children", []),
                              fan.get("pieces", 0), len(fan.get("parent_pieces", [])),
                              fan.get("parent_files", 0), cpu.used)  # fmt: skip
            result.steps.append(item)
            workers = sorted({c.get("worker") or "?" for c in item.children})
            self.log(f"  {side:<8} {step:<7} {seconds:6.1f} s  {item.state:<10} {files} files"
                     + (f", {len(item.children)} children on {', '.join(workers)}"
                        if item.children else ""))  # fmt: skip

    def _compare(self, result: FanoutRun, stack: Any) -> None:
        """Manifest rows verified and silver rows per side: they must be equal."""
        from crypto_lakehouse.catalog import Manifest
        from crypto_lakehouse.catalog.manifest import FileStatus

        for name in ("one", "fan"):
            manifest = Manifest(stack.postgres.info.url(f"catalog_{name}"))
            try:
                counts = manifest.status_counts()
            finally:
                manifest.close()
            result.checks[f"{name}_verified"] = counts.get(FileStatus.VERIFIED, 0)
        result.checks["one_rows"] = (s := result.step("one", "silver")) and s.rows
        result.checks["fan_rows"] = (s := result.step("fan-out", "silver")) and s.rows
        result.checks["equal"] = (
            result.checks["one_verified"] == result.checks["fan_verified"]
            and result.checks["one_rows"] == result.checks["fan_rows"]
        )


def text(run: FanoutRun) -> str:
    """The report: one line per side and step, then the overhead against the target."""
    lines = [
        f"bench fanout: {run.files} sample files, {run.workers} workers, "
        f"up to {run.children} children",
        f"{'side':<8} {'step':<7} {'seconds':>8} {'state':<10} {'files':>6} {'rows':>10}  children",
    ]
    for s in run.steps:
        kids = "; ".join(
            f"{c['share']} -> {c.get('worker') or '?'} {c.get('seconds') or 0:.1f} s "
            f"(picked up after {c.get('pickup') or 0:.1f} s"
            + (f", {len(c.get('pieces') or [])} pieces, {c['files']} files)" if s.pieces else ")")
            for c in s.children
        )
        if s.pieces:
            kids = f"parent: {s.parent_pieces} of {s.pieces} pieces, {s.parent_files} files; {kids}"
        lines.append(f"{s.side:<8} {s.step:<7} {s.seconds:8.1f} {s.state:<10} {s.files:>6} "
                     f"{s.rows:>10,}  {kids}")  # fmt: skip
    lines.append(f"CPU seconds used per step ({os.cpu_count()} cores; host: every process)")
    lines.append(f"{'side':<8} {'step':<7} {'host':>6} {'cores busy':>10} {'step':>6} "
                 f"{'workers':>8} {'servers':>8} {'other':>6}")  # fmt: skip
    for s in run.steps:
        if not s.cpu:
            continue
        c = s.cpu
        other = c["host"] - c["step"] - c["workers"] - c["servers"]
        lines.append(f"{s.side:<8} {s.step:<7} {c['host']:6.1f} {c['host'] / s.seconds:10.2f} "
                     f"{c['step']:6.1f} {c['workers']:8.1f} {c['servers']:8.1f} "
                     f"{other:6.1f}")  # fmt: skip
    for step in ("ingest", "silver"):
        over = run.overhead(step)
        fan = run.step("fan-out", step)
        if over is None or fan is None:
            lines.append(f"{step}: overhead not measured")
            continue
        met = "met" if over < OVERHEAD_TARGET else "missed"
        lines.append(
            f"{step}: fan-out {over:+.1%} vs one process (target < +{OVERHEAD_TARGET:.0%}: "
            f"{met}); counting {fan.count_seconds:.1f} s; longest child {fan.longest_child:.1f} s"
        )
    lines.append(f"same results on both sides: {run.checks}")
    return "\n".join(lines)


# -- the child process: one step, one side --------------------------------------------------


def child_main() -> None:
    """Run one step (spec on stdin) in this process; its summary as JSON on the last line."""
    import asyncio

    spec = json.load(sys.stdin)
    step = _ingest if spec["step"] == "ingest" else _silver
    data = asyncio.run(step(spec))
    print(json.dumps(data, default=str))


async def _ingest(spec: dict[str, Any]) -> dict[str, Any]:
    from crypto_lakehouse.flows import fanout

    if spec["fan_out"]:
        state, data = await fanout.run_locally(
            fanout.ingest_fanout, min_files=0, children=spec["children"]
        )
        return {**data, "state": state}
    from crypto_lakehouse.flows.local import run_ingest_locally

    run = await run_ingest_locally()
    return {**run.summary.as_dict(), "state": run.state}


async def _silver(spec: dict[str, Any]) -> dict[str, Any]:
    from crypto_lakehouse.flows import fanout

    if spec["fan_out"]:
        state, data = await fanout.run_locally(
            fanout.silver_fanout, min_files=0, children=spec["children"]
        )
        return {**data, "state": state}
    from crypto_lakehouse.flows.silver import build_silver

    prefect_state = await build_silver(return_state=True)
    data = await prefect_state.result(raise_on_failure=False)
    return {**data, "state": prefect_state.name}


if __name__ == "__main__":
    child_main()
