"""`bench ingest`: the ingest flow end to end against the engine alone, on the same files.

Both copy the sample archive from the stack's source endpoint into a fresh bronze bucket,
staged, every zip checked against its CHECKSUM sidecar:

- `engine`: one `TransferEngine.run` over the archive's `data/` prefix (no discovery, no
  manifest, no Prefect): the floor.
- `flow`: `ingest-archive` as a real Prefect flow run on the stack's server (discovery,
  manifest plan/records in PostgreSQL, partition batches under the concurrency limit).
- `flow-rerun`: the same flow again over the unchanged archive (nothing to transfer).

With `mover="executor"` (`bench ingest --mover executor --replicas N`) the flow runs twice
per round instead, once with the in-process engine (`flow`) and once through N local
executor replicas sharing one PostgreSQL operation store (`flow-executor`: EXECUTOR_URL
set, so the flow's batches go out as listed operations that the replicas claim); the
ratio is executor files/s over in-process files/s, on the same files in the same round.

Each round uses fresh buckets and a fresh manifest database; a warm-up round is
discarded and the median of the rest is reported. Overhead = flow / engine - 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from crypto_lakehouse.archive.publisher import write_sample
from crypto_lakehouse.archive.sample import SampleSpec
from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import IngestFailed
from crypto_lakehouse.stack.manager import LocalStack
from crypto_lakehouse.storage import S3Storage, S3Url
from crypto_lakehouse.transfer import EngineOptions, Mode, TransferEngine, TransferRequest
from crypto_lakehouse.validation.targets import INGEST_OVERHEAD

EXECUTOR_TARGET = 0.8  # executor files/s over in-process files/s, at least
# What a replica inherits from this process, so both sides move bytes with the same knobs.
_ENGINE_ENV = ("S5CMD_", "STAGING_")


@dataclass
class IngestBenchResult:
    files: int
    bytes: int
    seconds: dict[str, list[float]] = field(default_factory=dict)  # method -> measured runs

    def median(self, method: str) -> float:
        return statistics.median(self.seconds[method])

    @property
    def overhead(self) -> float:
        return self.median("flow") / self.median("engine") - 1.0

    @property
    def overhead_seconds(self) -> float:
        """What the flow adds per run. It hardly grows with the files (measured: +1.2 s on
        482 files, +1.1 s on 1244), so the ratio falls as runs get bigger."""
        return self.median("flow") - self.median("engine")

    def rows(self) -> list[tuple[str, float, float, str]]:
        """(method, median seconds, files/s, ratio to the engine)."""
        base = self.median("engine")
        return [
            (
                name,
                self.median(name),
                self.files / self.median(name),
                f"{self.median(name) / base:.2f}x",
            )
            for name in self.seconds
        ]

    @property
    def executor_ratio(self) -> float | None:
        """Files/s through the executor over files/s in process (flows on the same files)."""
        if "flow-executor" not in self.seconds:
            return None
        return self.median("flow") / self.median("flow-executor")

    def as_json(self) -> dict:
        ratio = self.executor_ratio
        executor = (
            {}
            if ratio is None
            else {"executor_ratio": ratio, "executor_target": EXECUTOR_TARGET,
                  "executor_target_met": ratio >= EXECUTOR_TARGET}
        )  # fmt: skip
        return {
            **executor,
            "files": self.files,
            "bytes": self.bytes,
            "runs": self.seconds,
            "median_seconds": {k: self.median(k) for k in self.seconds},
            "files_per_second": {k: self.files / self.median(k) for k in self.seconds},
            "prefect_overhead": self.overhead,
            "prefect_overhead_seconds": self.overhead_seconds,
            "target": INGEST_OVERHEAD,
            "target_met": self.overhead <= INGEST_OVERHEAD,
        }


class IngestBench:
    """Runs against the local stack (which must be up) with the sample archive."""

    def __init__(
        self,
        settings: Settings,
        stack: LocalStack,
        *,
        symbols: int = 2,
        repeats: int = 3,
        parallel: int = 4,
        mover: str = "engine",
        replicas: int = 1,
        log: Callable[[str], None] = print,
    ) -> None:
        self.settings = settings
        self.stack = stack
        self.symbols = symbols
        self.repeats = max(1, repeats)
        self.parallel = parallel
        self.mover = mover
        self.replicas = max(1, replicas)
        self.log = log
        self.tag = uuid.uuid4().hex[:6]
        self.source_bucket = f"bench-archive-{self.tag}"
        self.lake = S3Storage(stack.lake_endpoint())
        self.databases: list[str] = []
        self.buckets: list[str] = []

    def run(self) -> IngestBenchResult:
        source = S3Storage(self.stack.source.endpoint())
        source.ensure_bucket(self.source_bucket)
        sample = write_sample(
            SampleSpec(symbols=self.symbols), source, S3Url(self.source_bucket, "")
        )
        files = [o for o in source.list_objects(self.source_bucket, "data/")]
        zips = [o for o in files if o.key.endswith(".zip")]
        result = IngestBenchResult(len(zips), sum(o.size for o in zips))
        self.log(f"sample archive: {len(sample.files)} files, {len(files)} objects")
        if self.mover == "executor":
            try:
                result.seconds = self._executor_rounds()
            finally:
                self._cleanup(source)
            return result
        methods: dict[str, list[float]] = {"engine": [], "flow": [], "flow-rerun": []}
        try:
            for round_no in range(self.repeats + 1):
                label = "warm-up" if round_no == 0 else f"run {round_no}"
                engine_s = self._engine_once()
                flow_s, rerun_s = self._flow_twice()
                self.log(
                    f"{label:8} engine {engine_s:6.2f} s   flow {flow_s:6.2f} s   "
                    f"flow re-run {rerun_s:6.2f} s"
                )
                if round_no:
                    methods["engine"].append(engine_s)
                    methods["flow"].append(flow_s)
                    methods["flow-rerun"].append(rerun_s)
        finally:
            self._cleanup(source)
        result.seconds = methods
        return result

    def _executor_rounds(self) -> dict[str, list[float]]:
        """Engine, flow in process and flow through the replicas, alternating, per round."""
        methods: dict[str, list[float]] = {"engine": [], "flow": [], "flow-executor": []}
        with self._replicas() as (url, token):
            for round_no in range(self.repeats + 1):
                label = "warm-up" if round_no == 0 else f"run {round_no}"
                engine_s = self._engine_once()
                flow_s = self._flow_once({})
                executor_s = self._flow_once({"EXECUTOR_URL": url, "EXECUTOR_API_TOKEN": token})
                self.log(
                    f"{label:8} engine {engine_s:6.2f} s   flow {flow_s:6.2f} s   "
                    f"flow via {self.replicas} executor replica(s) {executor_s:6.2f} s"
                )
                if round_no:
                    methods["engine"].append(engine_s)
                    methods["flow"].append(flow_s)
                    methods["flow-executor"].append(executor_s)
            self.log(f"operations run per replica: {self._spread(url, token)}")
        return methods

    @staticmethod
    def _spread(url: str, token: str) -> dict[str, int]:
        """How many of the operations each replica ran (all rounds)."""
        from collections import Counter

        from crypto_lakehouse.executor.client import ExecutorClient

        with ExecutorClient(url, token) as client:
            views = client.list(limit=500).items
        return dict(Counter(view.replica or "none" for view in views))

    @contextlib.contextmanager
    def _replicas(self) -> Iterator[tuple[str, str]]:
        """`replicas` local executor replicas on one fresh PostgreSQL store database; yields
        the first one's URL (any replica accepts work for all) and the token."""
        from crypto_lakehouse.executor.launcher import ExecutorProcess

        database = f"bench_executor_{uuid.uuid4().hex[:8]}"
        self.stack.postgres.create_database(database)
        self.databases.append(database)
        lake = self.stack.lake_endpoint()
        token = secrets.token_urlsafe(24)
        assert lake.access_key is not None and lake.secret_key is not None
        env = {
            **{k: v for k, v in os.environ.items() if k.startswith(_ENGINE_ENV)},
            "MINIO_ENDPOINT": lake.url or "",
            "MINIO_ACCESS_KEY": lake.access_key.get_secret_value(),
            "MINIO_SECRET_KEY": lake.secret_key.get_secret_value(),
            "SOURCE_ENDPOINT": self.stack.source_endpoint(anonymous=True).url or "",
            "EXECUTOR_API_TOKEN": token,
            "EXECUTOR_DATABASE_URL": self.stack.postgres.info.url(database),
        }
        started: list[ExecutorProcess] = []
        with tempfile.TemporaryDirectory(prefix="bench-executor-") as root:
            try:
                for i in range(self.replicas):
                    home = Path(root) / f"replica-{i}"
                    replica = ExecutorProcess(
                        home, {**env, "LAKEHOUSE_HOME": str(home)}, name=f"replica-{i}"
                    )
                    started.append(replica)
                    replica.start()
                self.log(f"{self.replicas} executor replica(s) on one PostgreSQL store")
                yield started[0].url, token
            finally:
                for replica in started:
                    replica.stop(timeout=30)

    def _flow_once(self, env: dict[str, str]) -> float:
        """One flow run into fresh bronze and manifest, with `env` set for its duration."""
        from crypto_lakehouse.flows.local import run_ingest_locally
        from crypto_lakehouse.flows.target import IngestRequest

        database = f"bench_ingest_{uuid.uuid4().hex[:8]}"
        self.stack.postgres.create_database(database)
        self.databases.append(database)
        os.environ["CATALOG_DATABASE_URL"] = self.stack.postgres.info.url(database)
        request = IngestRequest(
            source_bucket=self.source_bucket,
            bronze_bucket=self._fresh_bucket("flow"),
            parallel_batches=self.parallel,
        )
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)
        try:
            started = time.perf_counter()
            run = asyncio.run(run_ingest_locally(request))
            seconds = time.perf_counter() - started
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        unexpected = [p for p in run.summary.problems if p.kind != "corrupt"]
        if unexpected:
            raise IngestFailed(f"flow run {run.flow_run_id}: {unexpected[0].error}")
        return seconds

    def _fresh_bucket(self, kind: str) -> str:
        name = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
        self.lake.ensure_bucket(name)
        self.buckets.append(name)
        return name

    def _engine_once(self) -> float:
        bronze = self._fresh_bucket("engine")
        request = TransferRequest(
            source=self.stack.source_endpoint(anonymous=True),
            source_url=S3Url(self.source_bucket, "data/"),
            dest=self.stack.lake_endpoint(),
            dest_url=S3Url(bronze, "data/"),
            mode=Mode.STAGED,
            verify_sidecars=True,
        )
        started = time.perf_counter()
        report = TransferEngine(EngineOptions.from_settings(self.settings)).run(request)
        seconds = time.perf_counter() - started
        if report.summary.failed:
            raise IngestFailed(f"engine run failed {report.summary.failed} objects")
        return seconds

    def _flow_twice(self) -> tuple[float, float]:
        from crypto_lakehouse.flows.local import run_ingest_locally
        from crypto_lakehouse.flows.target import IngestRequest

        database = f"bench_ingest_{uuid.uuid4().hex[:8]}"
        self.stack.postgres.create_database(database)
        self.databases.append(database)
        os.environ["CATALOG_DATABASE_URL"] = self.stack.postgres.info.url(database)
        request = IngestRequest(
            source_bucket=self.source_bucket,
            bronze_bucket=self._fresh_bucket("flow"),
            parallel_batches=self.parallel,
        )
        timings = []
        for _ in range(2):
            started = time.perf_counter()
            run = asyncio.run(run_ingest_locally(request))
            timings.append(time.perf_counter() - started)
            unexpected = [p for p in run.summary.problems if p.kind != "corrupt"]
            if unexpected:
                raise IngestFailed(f"flow run {run.flow_run_id}: {unexpected[0].error}")
        return timings[0], timings[1]

    def _cleanup(self, source: S3Storage) -> None:
        import psycopg
        from psycopg import sql

        # Buckets go too: SeaweedFS keeps volumes for every bucket (collection), and a lake
        # full of empty benchmark buckets runs out of writable volumes (uploads fail 500).
        for storage, bucket in [(source, self.source_bucket)] + [
            (self.lake, b) for b in self.buckets
        ]:
            keys = [o.key for o in storage.list_objects(bucket)]
            for start in range(0, len(keys), 1000):
                storage.delete_keys(bucket, keys[start : start + 1000])
            storage.client.delete_bucket(Bucket=bucket)
        with psycopg.connect(self.stack.postgres.info.dsn("postgres"), autocommit=True) as conn:
            for name in self.databases:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
