"""`bench faults`: the reliability campaign. Faults against the real local services, then an audit.

One private stack (temporary `LAKEHOUSE_HOME`: SeaweedFS source and lake, PostgreSQL,
Prefect) gets a clean sample archive of about `files` files on its source. Then, case
by case (`faults_cases`, `faults_covered`):

  1  the lake's SeaweedFS SIGKILLed mid-ingest, started again
  2  1% connection resets and 5% 503 SlowDown from the source (the netem proxy)
  3  PostgreSQL restarted mid-ingest (manifest, Iceberg catalog and Prefect's database)
  4  the Prefect server SIGKILLed mid-flow, started again
  5  a staging cap smaller than some files
  6  an executor replica SIGKILLed mid-operation        (its tests, in a child pytest)
  7  a silver build killed mid-commit                   (its tests, in a child pytest)
  8  the executor API fuzzed from its OpenAPI schema    (its tests, in a child pytest)
  9  bad CLI input

Cases 1-5 ingest into a bronze bucket and catalog database of their own, re-run the
ingest, and audit bronze against the source's `.CHECKSUM` sidecars (`faults_audit`).
A case holds when nothing is lost, nothing in bronze is corrupt, no manifest row lies and
the re-run converged; `Campaign.ok` when every case that ran held.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from crypto_lakehouse.bench.faults_cases import CASES, RESETS, SLOWDOWNS, STAGING_CAP
from crypto_lakehouse.bench.faults_covered import COVERED, cli_bad_input, run_tests
from crypto_lakehouse.bench.faults_lab import Lab
from crypto_lakehouse.bench.faults_report import Campaign, CaseResult

ALL_CASES = tuple(range(1, 10))
DEFAULT_FILES = 1000


def conditions(files: int, archive: int, bytes_: int) -> dict[str, object]:
    """What a reader needs to judge the numbers: machine, load, sizes, fault settings."""
    return {
        "machine": f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "files_requested": files,
        "archive_files": archive,
        "archive_bytes": bytes_,
        "source_faults": {"resets": RESETS, "slowdowns": SLOWDOWNS},
        "staging_cap_bytes": STAGING_CAP,
        "stack": "private: SeaweedFS source + lake, PostgreSQL (durable), Prefect server",
    }


def run_campaign(
    *,
    files: int = DEFAULT_FILES,
    cases: Sequence[int] = ALL_CASES,
    command: str = "crypto-lakehouse bench faults",
    date: str | None = None,
    log_dir: Path,
    log: Callable[[str], None] = print,
) -> Campaign:
    """Run `cases` (in order) and return every result; a case that raises is FAILED."""
    wanted = sorted(set(cases))
    campaign = Campaign(command, date or time.strftime("%Y-%m-%d"), {})
    started = time.monotonic()
    on_stack = [c for c in wanted if c in CASES or c == 9]
    if on_stack:
        with Lab(files, log_dir) as lab:
            log(f"private stack under {lab.home}; child logs in {log_dir}")
            lab.publish()
            size = sum(p.size for p in lab.source.values())
            campaign.conditions = conditions(files, len(lab.source), size)
            log(f"sample archive: {len(lab.source):,} files, {size:,} bytes")
            for case in on_stack:
                runner = CASES.get(case, cli_bad_input)
                campaign.results.append(_guarded(case, partial(runner, lab), log))
    else:
        campaign.conditions = conditions(files, 0, 0)
    for case in (c for c in wanted if c in COVERED):
        campaign.results.append(_guarded(case, partial(run_tests, case), log))
    campaign.conditions["seconds"] = round(time.monotonic() - started, 1)
    return campaign


def _guarded(case: int, run: Callable[[], CaseResult], log: Callable[[str], None]) -> CaseResult:
    """Run one case; an exception is the case's failure (named), not the campaign's end."""
    log(f"case {case}: running")
    try:
        result = run()
    except Exception as exc:  # one case's trouble is reported, the rest run
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        result = CaseResult(case, f"case {case}", "ran", run=f"campaign error: {first}")
        result.held = False
        result.findings.append(f"the campaign could not run this case: {type(exc).__name__}")
    log(f"case {case}: {result.verdict()} ({result.seconds:.0f} s) - {result.run}")
    return result
