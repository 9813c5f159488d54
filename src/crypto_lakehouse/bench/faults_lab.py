"""The campaign's laboratory: one private stack, a clean sample archive, a fresh target per case.

The stack runs under a temporary `LAKEHOUSE_HOME` (as `bench scale` does), so the user's
own stack and data are never touched, and every service is ours to kill by its PID. Each
case ingests into its own bronze bucket and its own catalog database, so one case's
leftovers never count in another's audit. Every step is the real CLI in a child process
(its own session, so a hung run is ended with its s5cmd children by process group).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crypto_lakehouse.bench.faults_audit import (
    Audit,
    Published,
    audit,
    bronze_digests,
    published,
)
from crypto_lakehouse.errors import StackError

SOURCE_BUCKET = "data.binance.vision"  # ingest's default source bucket
STACK_ENV = ("MINIO_", "SOURCE_", "CATALOG_DATABASE_URL", "PREFECT_", "BRONZE_BUCKET",
              "SILVER_BUCKET", "GOLD_BUCKET", "LAKEHOUSE_HOME", "STAGING_")  # fmt: skip
_TRACEBACK = "Traceback (most recent call last)"
_EXCEPTION_LINE = re.compile(r"^[\w.]*(Error|Exception|Unavailable|Interrupted|Crashed)\b.*")


@dataclass
class Outcome:
    """How one CLI child ended: exit code (None: it hung and was killed), time, its cause."""

    args: list[str]
    exit_code: int | None
    seconds: float
    traceback: str  # the exception line of a printed Python traceback; "" when none
    cause: str
    log: str

    @property
    def hung(self) -> bool:
        return self.exit_code is None

    def describe(self) -> str:
        """`exit 3 (12.1 s): <cause>`, `hung > 300 s (killed)`, with a traceback flag."""
        if self.hung:
            return f"hung > {self.seconds:.0f} s (killed)"
        text = f"exit {self.exit_code} ({self.seconds:.1f} s)"
        if self.traceback:
            text += ", traceback"
        return f"{text}: {self.cause}" if self.cause and self.exit_code else text

    def as_json(self) -> dict[str, Any]:
        return {
            "command": ["crypto-lakehouse", *self.args],
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 2),
            "hung": self.hung,
            "traceback": self.traceback,
            "cause": self.cause,
        }


def _exception_after(raw: list[str], start: int) -> str:
    named = [line for line in raw[start + 1 :] if _EXCEPTION_LINE.match(line)]
    return (named[0] if named else raw[-1]).strip()[:300]


def cause_of(stdout: str, stderr: str) -> tuple[str, str]:
    """(the exception line of a printed traceback or "", the line naming why the run failed).

    A traceback that starts at the program's `<module>` frame ended the process: its
    exception is the cause. Tracebacks only logged on the way (a background task's) are
    reported, but the cause is then what the command itself printed.
    """
    both = stdout + "\n" + stderr
    raw = both.splitlines()
    lines = [line.strip() for line in raw if line.strip()]
    starts = [i for i, line in enumerate(raw) if line.startswith(_TRACEBACK)]
    fatal = [i for i in starts if i + 1 < len(raw) and "in <module>" in raw[i + 1]]
    if fatal:
        line = _exception_after(raw, fatal[-1])
        return line, line
    logged = _exception_after(raw, starts[-1]) if starts else ""
    errors = [line.strip() for line in stderr.splitlines() if line.strip()]
    return logged, _printed_cause(lines) or logged or (errors[-1] if errors else "")[:300]


def _printed_cause(lines: list[str]) -> str:
    """The summary's first problem (ingest, sync) or the CLI's one-line `error:`."""
    for index, line in enumerate(lines):  # ingest's summary: "failed: PATH", then the error
        if re.match(r"^(failed|corrupt)( \(known.*\))?: ", line) and index + 1 < len(lines):
            return lines[index + 1][:300]
        if found := re.match(r"^(failed|corrupt) \S+: (.+)$", line):  # sync: one line each
            return found[2][:300]
    errors = [line for line in lines if line.startswith("error: ")]
    return errors[-1][:300] if errors else ""


class Running:
    """A CLI child started in its own session; `wait` ends it (group) on timeout."""

    def __init__(self, args: list[str], proc: subprocess.Popen[bytes], out: Path, err: Path):
        self.args = args
        self.proc = proc
        self.out = out
        self.err = err
        self.started = time.monotonic()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float) -> Outcome:
        try:
            self.proc.wait(timeout=max(0.0, timeout - (time.monotonic() - self.started)))
            code: int | None = self.proc.returncode
        except subprocess.TimeoutExpired:
            self.kill()
            code = None
        seconds = time.monotonic() - self.started
        stdout = self.out.read_text(errors="replace")
        stderr = self.err.read_text(errors="replace")
        traceback, cause = cause_of(stdout, stderr)
        return Outcome(self.args, code, seconds, traceback, cause, str(self.out))

    def kill(self) -> None:
        """SIGKILL the child's process group (the session it leads: it and its s5cmd)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


class Lab:
    """One private stack with the sample archive on its source; targets per case."""

    def __init__(self, files: int, log_dir: Path) -> None:
        self.files = files
        self.log_dir = log_dir
        self.home = Path(tempfile.mkdtemp(prefix="bfaults-"))
        self.stack: Any = None
        self.env: dict[str, str] = {}
        self.source: dict[str, Published] = {}
        self._runs = 0

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Lab:
        from crypto_lakehouse.stack.manager import LocalStack

        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stack = LocalStack(self.home)
        try:
            self.stack.up()
        except BaseException:
            self.close()
            raise
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(STACK_ENV)}
        self.env.update(self.stack.env(), PREFECT_HOME=str(self.home / "prefect-client"))
        self.env.update(COLUMNS="160", PREFECT_LOGGING_LEVEL="CRITICAL")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.stack is not None:
            self.stack.down()
        shutil.rmtree(self.home, ignore_errors=True)

    def publish(self) -> None:
        """Write the clean sample archive to the source, then read what it publishes."""
        from crypto_lakehouse.storage import S3Storage

        gen = self.start(None, "sample-archive", "--dest", f"s3://{SOURCE_BUCKET}",
                         "--no-defects", "--files", str(self.files))  # fmt: skip
        outcome = gen.wait(600)
        if outcome.exit_code != 0:
            raise StackError(f"sample-archive failed: {outcome.cause} (log {outcome.log})")
        storage = S3Storage(self.stack.source_endpoint(anonymous=False))
        self.source = published(storage, SOURCE_BUCKET)

    # -- per case ------------------------------------------------------------------------

    def target(self, name: str) -> dict[str, str]:
        """A fresh bronze bucket and catalog database for case `name`: the child env."""
        from crypto_lakehouse.storage import S3Storage

        self.stack.postgres.create_database(f"catalog_{name}")
        S3Storage(self.stack.lake_endpoint()).ensure_bucket(f"bronze-{name}")
        return {
            "CATALOG_DATABASE_URL": self.stack.postgres.info.url(f"catalog_{name}"),
            "BRONZE_BUCKET": f"bronze-{name}",
        }

    def manifest(self, name: str) -> Any:
        from crypto_lakehouse.catalog import Manifest

        return Manifest(self.stack.postgres.info.url(f"catalog_{name}"))

    def verified(self, name: str) -> int:
        """Verified rows in case `name`'s manifest now (0 before its tables exist)."""
        from crypto_lakehouse.catalog import FileStatus
        from crypto_lakehouse.errors import CatalogError

        manifest = self.manifest(name)
        try:
            return int(manifest.status_counts().get(FileStatus.VERIFIED, 0))
        except CatalogError:
            return 0
        finally:
            manifest.close()

    def audit(self, name: str, expected: set[str] | None = None) -> Audit:
        """Case `name`'s bronze bucket and manifest against the source's sidecars."""
        from sqlalchemy import select

        from crypto_lakehouse.catalog.schema import bronze_file_history
        from crypto_lakehouse.storage import S3Storage

        bronze = bronze_digests(S3Storage(self.stack.lake_endpoint()), f"bronze-{name}")
        manifest = self.manifest(name)
        try:
            rows = manifest.entries()
            with manifest.engine.connect() as conn:
                query = select(bronze_file_history.c.path).distinct()
                history = {row[0] for row in conn.execute(query)}
        finally:
            manifest.close()
        return audit(self.source, bronze, rows, history, expected_keys=expected)

    # -- children ------------------------------------------------------------------------

    def start(self, env: dict[str, str] | None, *args: str) -> Running:
        """Start `crypto-lakehouse ARGS` with the stack's env plus `env`."""
        self._runs += 1
        stem = self.log_dir / f"{self._runs:02d}-{args[0]}"
        out, err = stem.with_suffix(".out"), stem.with_suffix(".err")
        with out.open("wb") as o, err.open("wb") as e:
            proc = subprocess.Popen(
                [*_cli(), *args],
                env={**self.env, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=o,
                stderr=e,
                start_new_session=True,
            )
        return Running(list(args), proc, out, err)

    def run(self, env: dict[str, str] | None, *args: str, timeout: float = 300) -> Outcome:
        return self.start(env, *args).wait(timeout)

    def wait_for(self, name: str, files: int, child: Running, timeout: float = 120) -> bool:
        """Poll until case `name` has `files` verified rows; False if the child ended first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and child.alive():
            if self.verified(name) >= files:
                return True
            time.sleep(0.1)
        return False


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "crypto-lakehouse"
    return [str(script)] if script.exists() else [sys.executable, "-m", "crypto_lakehouse"]
