"""`bench scale`: the whole pipeline on a sample archive of N files, each step as a user runs it.

For each N a private stack starts (SeaweedFS source + lake, PostgreSQL, Prefect; under a
temporary `LAKEHOUSE_HOME`), and every step is the real CLI in a child process, timed by
wall clock, its peak RSS read from `os.wait4` (the largest of the child and the children
it waited for, s5cmd included):

  generate       sample-archive --files N --no-defects (zips + sidecars, s5cmd upload)
  ingest         ingest (flow ingest-archive: discover, transfer, verify, manifest)
  silver-large   silver --market spot --data-type trades --symbol BTCUSDT (the large files)
  silver         silver (every other file: the small daily and monthly files)
  silver-noop    silver again with nothing pending: the CLI's fixed cost
  gold, maintain gold; maintain (when the command exists; else "not measured")
  queries        query "SELECT 1" and a fixed set, median of 3 runs each
  update         a new day for every symbol and data type: `update` (ingest + silver +
                 gold in one flow run; the three commands apart where it does not exist)

Silver's rows come from the Iceberg snapshot summaries (total-records before and after);
data files per silver table from pyiceberg's plan of the current snapshot, and the size
of each table's current metadata.json. Bare pyarrow CSV->Parquet runs on the same large
files with `bench transform`'s own code (its `bare` side, one child per file).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from crypto_lakehouse.archive.catalog import Market
from crypto_lakehouse.archive.sample import LARGE_SYMBOL, SampleSpec, plan_files
from crypto_lakehouse.bench.child import run_child
from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import StackError

SOURCE_BUCKET = "data.binance.vision"  # ingest's default source bucket
QUERY_RUNS = 3
_STACK_ENV = ("MINIO_", "SOURCE_", "CATALOG_DATABASE_URL", "PREFECT_", "BRONZE_BUCKET",
              "SILVER_BUCKET", "GOLD_BUCKET", "LAKEHOUSE_HOME")  # fmt: skip


@dataclass
class Step:
    """One child process: what ran and what it cost. `seconds is None`: not measured."""

    name: str
    command: list[str]
    seconds: float | None = None
    peak_rss_mib: float | None = None
    exit_code: int | None = None
    files: int | None = None
    rows: int | None = None
    note: str = ""

    @property
    def files_per_s(self) -> float | None:
        return self.files / self.seconds if self.files and self.seconds else None

    @property
    def rows_per_s(self) -> float | None:
        return self.rows / self.seconds if self.rows and self.seconds else None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "files_per_s": self.files_per_s, "rows_per_s": self.rows_per_s}


@dataclass
class TableFiles:
    """One silver table: data files of the current snapshot, and its metadata.json size."""

    data_files: int
    metadata_bytes: int
    rows: int


@dataclass
class Run:
    """Everything measured at one N."""

    requested: int
    files: int
    symbols: int
    days: int
    large_files: int
    large_rows: int
    steps: list[Step] = field(default_factory=list)
    after_silver: dict[str, TableFiles] = field(default_factory=dict)
    after_maintain: dict[str, TableFiles] = field(default_factory=dict)
    queries: dict[str, Step] = field(default_factory=dict)
    bare: Step | None = None

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    @property
    def update_seconds(self) -> float | None:
        """The daily update: `update` (one process), else ingest + silver + gold apart."""
        one = self.step("update")
        parts = [one] if one is not None else [
            self.step(f"update-{n}") for n in ("ingest", "silver", "gold")
        ]  # fmt: skip
        if any(p is None or p.seconds is None or p.exit_code != 0 for p in parts):
            return None
        return sum(p.seconds for p in parts if p is not None and p.seconds is not None)

    @property
    def silver_large_net_rate(self) -> float | None:
        """Rows/s of silver on the large files, net of the CLI's fixed cost (silver-noop)."""
        large, noop = self.step("silver-large"), self.step("silver-noop")
        if not (large and noop and large.rows and large.seconds and noop.seconds is not None):
            return None
        if large.exit_code != 0 or noop.exit_code != 0:
            return None
        return large.rows / max(1e-3, large.seconds - noop.seconds)

    @property
    def large_ratio(self) -> float | None:
        rate = self.silver_large_net_rate
        if rate is None or self.bare is None or not self.bare.rows_per_s:
            return None
        return rate / self.bare.rows_per_s

    @property
    def query_over_select1(self) -> float | None:
        one, month = self.queries.get("select-1"), self.queries.get("klines-1m-month")
        if not (one and month and one.seconds is not None and month.seconds is not None):
            return None
        if one.exit_code != 0 or month.exit_code != 0:
            return None
        return month.seconds - one.seconds

    @property
    def max_rss_mib(self) -> float | None:
        """The largest peak RSS of any pipeline step or query (bare pyarrow is no step)."""
        steps = [*self.steps, *self.queries.values()]
        values = [s.peak_rss_mib for s in steps if s.peak_rss_mib is not None]
        return max(values) if values else None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [s.as_json() for s in self.steps]
        data["queries"] = {k: s.as_json() for k, s in self.queries.items()}
        data["bare"] = self.bare.as_json() if self.bare else None
        data["derived"] = {
            "update_seconds": self.update_seconds,
            "silver_large_net_rows_per_s": self.silver_large_net_rate,
            "large_ratio": self.large_ratio,
            "query_over_select1_s": self.query_over_select1,
            "max_peak_rss_mib": self.max_rss_mib,
        }
        return data


class ChildRunner:
    """Runs the real CLI against one stack; output goes to a log file, never to a pipe."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.cli = _cli()

    def run(self, name: str, *args: str, files: int | None = None) -> Step:
        command = [*self.cli, *args]
        with self.log.open("ab") as out:
            out.write(f"\n$ crypto-lakehouse {' '.join(args)}\n".encode())
            out.flush()
            offset = out.tell()
            started = time.perf_counter()
            proc = subprocess.Popen(
                command, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - started
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        step = Step(name, ["crypto-lakehouse", *args], seconds, usage.ru_maxrss / 1024, code, files)
        if code != 0:
            with self.log.open("rb") as log:
                log.seek(max(offset, log.seek(0, os.SEEK_END) - 800))
                step.note = log.read().decode(errors="replace").strip()
        return step

    def has_command(self, name: str) -> bool:
        """True when `crypto-lakehouse NAME --help` works (the command exists)."""
        proc = subprocess.run(
            [*self.cli, name, "--help"], env=self.env, capture_output=True, check=False
        )
        return proc.returncode == 0


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "crypto-lakehouse"
    return [str(script)] if script.exists() else [sys.executable, "-m", "crypto_lakehouse"]


class ScaleBench:
    """One run per N, each on a fresh private stack, smallest first."""

    def __init__(
        self,
        settings: Settings,
        *,
        files: list[int],
        large_rows: int = 1_000_000,
        log: Callable[[str], None] = print,
    ) -> None:
        self.settings = settings
        self.files = sorted(files)
        self.large_rows = large_rows
        self.log = log
        self.log_dir = settings.home_dir / "bench" / "scale"

    def run(self) -> list[Run]:
        return [self._one(n) for n in self.files]

    def _one(self, requested: int) -> Run:
        from crypto_lakehouse.stack.manager import LocalStack

        spec = SampleSpec.for_files(requested, large_rows=self.large_rows)
        run = Run(requested, spec.file_count(), spec.symbols, spec.days, spec.large_files,
                  spec.large_rows)  # fmt: skip
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"steps-{requested}.log"
        log.write_text("")
        home = Path(tempfile.mkdtemp(prefix="bscale-"))
        stack = LocalStack(home)
        self.log(f"N={requested}: {run.files:,} files; private stack under {home} (log: {log})")
        try:
            stack.up()
            env = {k: v for k, v in os.environ.items() if not k.startswith(_STACK_ENV)}
            env.update(stack.env(), PREFECT_HOME=str(home / "prefect-client"), COLUMNS="100")
            env["PREFECT_LOGGING_LEVEL"] = "CRITICAL"
            self._steps(run, spec, stack, ChildRunner(env, log))
        finally:
            stack.down()
            shutil.rmtree(home, ignore_errors=True)
        return run

    def _steps(self, run: Run, spec: SampleSpec, stack: Any, child: ChildRunner) -> None:
        def do(name: str, *args: str, files: int | None = None) -> Step:
            self.log(f"  {name}: crypto-lakehouse {' '.join(args)}")
            step = child.run(name, *args, files=files)
            self.log(f"    {step.seconds:.1f} s, peak RSS {step.peak_rss_mib:.0f} MiB, "
                     f"exit {step.exit_code}")  # fmt: skip
            run.steps.append(step)
            return step

        dest = f"s3://{SOURCE_BUCKET}"
        gen = ["sample-archive", "--dest", dest, "--no-defects", "--large-rows"]
        do("generate", *gen, str(spec.large_rows), "--files", str(run.requested), files=run.files)
        do("ingest", "ingest", files=run.files)
        lake = _Lake(stack)
        before = lake.rows()
        large = do("silver-large", "silver", "--market", "spot", "--data-type", "trades",
                   "--symbol", LARGE_SYMBOL, files=spec.large_files)  # fmt: skip
        middle = lake.rows()
        large.rows = middle - before
        small = do("silver", "silver", files=run.files - spec.large_files)
        small.rows = lake.rows() - middle
        do("silver-noop", "silver")
        run.after_silver = lake.tables()
        run.bare = self._bare(stack, spec)
        do("gold", "gold", files=run.files)
        if child.has_command("maintain"):
            do("maintain", "maintain", files=run.files)
            run.after_maintain = lake.tables()
        else:
            note = "`crypto-lakehouse maintain` does not exist yet"
            run.steps.append(Step("maintain", ["crypto-lakehouse", "maintain"], note=note))
        for name, sql in queries(spec).items():
            steps = [child.run(name, "query", sql, "--format", "csv") for _ in range(QUERY_RUNS)]
            median = statistics.median(s.seconds or 0.0 for s in steps)
            worst = max(steps, key=lambda s: s.exit_code or 0)
            peak = max(s.peak_rss_mib or 0.0 for s in steps)
            run.queries[name] = replace(worst, seconds=median, peak_rss_mib=peak)
            self.log(f"  query {name}: median {median:.2f} s of {QUERY_RUNS}")
        self._update(run, spec, do, child)

    def _update(
        self, run: Run, spec: SampleSpec, do: Callable[..., Step], child: ChildRunner
    ) -> None:
        """One new day for every symbol and data type (one large trades file with it)."""
        assert spec.start is not None
        day = spec.start + timedelta(days=spec.days)
        new = replace(spec, start=day, days=1, large_files=1)
        files = len(plan_files(new))
        do("update-generate", "sample-archive", "--dest", f"s3://{SOURCE_BUCKET}",
           "--no-defects", "--start-day", day.isoformat(), "--days", "1",
           "--symbols", str(spec.symbols), "--large-files", "1",
           "--large-rows", str(spec.large_rows), files=files)  # fmt: skip
        if child.has_command("update"):  # the daily job: ingest, silver, gold in one run
            do("update", "update", "--start", day.isoformat(), files=files)
            return
        do("update-ingest", "ingest", "--start", day.isoformat(), "--end", day.isoformat(),
           files=files)  # fmt: skip
        do("update-silver", "silver", files=files)
        do("update-gold", "gold", files=files)

    def _bare(self, stack: Any, spec: SampleSpec) -> Step:
        """Bare pyarrow CSV->Parquet on the large files (unzipped first, not timed)."""
        from crypto_lakehouse.storage import S3Storage

        source = S3Storage(stack.source_endpoint(anonymous=False))
        rows, seconds, peak = 0, 0.0, 0.0
        with tempfile.TemporaryDirectory(prefix="bscale-bare-") as tmp:
            for file in spec.large():
                zipped = Path(tmp) / "in.zip"
                zipped.write_bytes(source.get_bytes(SOURCE_BUCKET, file.key))
                with zipfile.ZipFile(zipped) as archive:
                    csv = Path(archive.extract(archive.namelist()[0], tmp))
                zipped.unlink()
                out = run_child(
                    "crypto_lakehouse.bench.transform",
                    {"side": "bare", "csv": str(csv), "out": str(Path(tmp) / "out.parquet")},
                    StackError,
                )
                csv.unlink()
                rows, seconds = rows + out["rows"], seconds + out["seconds"]
                peak = max(peak, out["peak_rss_mib"])
        step = Step("bare-pyarrow", ["python -m crypto_lakehouse.bench.transform (bare)"],
                    seconds, peak, 0, spec.large_files, rows)  # fmt: skip
        self.log(f"  bare pyarrow on the large files: {rows:,} rows in {seconds:.1f} s")
        return step


def queries(spec: SampleSpec) -> dict[str, str]:
    """The fixed query set: SELECT 1 (the floor), one symbol's month of 1m klines, one
    large trades day. Values come from the spec (dates, our own symbol names), never
    from user input."""
    assert spec.start is not None
    month = spec.start.replace(day=1)
    following = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    symbol = spec.symbols_of(Market.SPOT)[0]
    day = spec.large()[-1].period if spec.large_files else spec.start
    return {
        "select-1": "SELECT 1",
        "klines-1m-month": (
            "SELECT count(*) AS bars, min(low) AS low, max(high) AS high "  # noqa: S608
            f"FROM silver.spot_klines WHERE symbol = '{symbol}' AND interval = '1m' "
            f"AND open_time >= TIMESTAMPTZ '{month}' AND open_time < TIMESTAMPTZ '{following}'"
        ),
        "trades-large-day": (
            "SELECT count(*) AS trades, sum(qty) AS qty FROM silver.spot_trades "  # noqa: S608
            f"WHERE symbol = '{LARGE_SYMBOL}' AND date = DATE '{day}'"
        ),
    }


class _Lake:
    """Reads the private stack's silver tables with pyiceberg (rows, data files, metadata)."""

    def __init__(self, stack: Any) -> None:
        from crypto_lakehouse.lake.warehouse import LakeConfig, Warehouse

        config = LakeConfig(stack.catalog_url(), stack.lake_endpoint(), "bronze", "silver", "gold")
        self.warehouse = Warehouse(config)

    def rows(self) -> int:
        return sum(t.rows for t in self.tables().values())

    def tables(self) -> dict[str, TableFiles]:
        found = {}
        for name in self.warehouse.tables("silver"):
            table = self.warehouse.table(name)
            if table is None:
                continue
            snapshot = table.current_snapshot()
            rows = int(snapshot.summary["total-records"]) if snapshot else 0
            files = len(list(table.scan().plan_files())) if snapshot else 0
            metadata = len(table.io.new_input(table.metadata_location))
            found[name] = TableFiles(files, metadata, rows)
        return found
