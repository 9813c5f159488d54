"""Cases 6-9: two are run by their existing tests, one here, one both ways.

- 6 (executor replica SIGKILLed mid-operation) and 7 (silver killed mid-commit) already
  have tests that set the fault up exactly; the campaign runs those tests with pytest in a
  child process (each starts its own servers) and reports their outcome as the case's.
- 8 (the executor API fuzzed) runs its schemathesis test and the 401 test the same way.
- 9 (bad CLI input) runs here, against the campaign's stack: each input must end with its
  documented exit code and a one-line message, never a traceback.

Without the source tree (an installed wheel has no tests/), 6-8 are reported `not run`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from crypto_lakehouse.bench.faults_lab import STACK_ENV, Lab
from crypto_lakehouse.bench.faults_report import CaseResult

REPO = Path(__file__).resolve().parents[3]
PYTEST_TIMEOUT = 900.0
_SUMMARY = re.compile(r"=+ (.*\d+ (passed|failed|error|skipped).*?) =+\s*$", re.MULTILINE)

# (case, title, what the tests do, their node ids)
COVERED: dict[int, tuple[str, str, list[str]]] = {
    6: (
        "executor replica killed mid-operation",
        "a replica SIGKILLed mid-operation (600 objects), another on the same PostgreSQL "
        "finishes it; each object once",
        [
            "tests/executor/test_listed_operations.py::"
            "test_a_replica_killed_mid_operation_has_its_listed_operation_finished_by_another",
            "tests/executor/test_durability.py::"
            "test_kill_9_mid_operation_then_restart_completes_every_object_once",
        ],
    ),
    7: (
        "silver killed mid-commit",
        "the crash is simulated (SystemExit, no clean-up) in the middle of a data write, "
        "between data write and Iceberg commit, and between commit and ledger; the next run "
        "recovers: no orphan file, no duplicate row",
        [
            "tests/lake/test_silver_batches.py::test_a_crash_in_the_middle_of_a_write_leaves_no_orphan",
            "tests/lake/test_silver_batches.py::test_a_crash_between_write_and_commit_leaves_no_orphan",
            "tests/lake/test_silver_batches.py::test_a_crash_between_commit_and_ledger_adds_no_duplicate",
        ],
    ),
    8: (
        "executor API fuzzed",
        "schemathesis from the served OpenAPI document (30 examples per operation, with "
        "the token): no 5xx, responses as documented; every protected route without the "
        "token: 401",
        [
            "tests/executor/test_schemathesis.py",
            "tests/executor/test_auth.py::test_protected_routes_answer_401",
        ],
    ),
}


def run_tests(case: int) -> CaseResult:
    """Run case `case`'s tests in a child pytest; its outcome is the case's."""
    title, what, nodes = COVERED[case]
    result = CaseResult(case, title, "pytest", happened=f"covered by {_files(nodes)}: {what}")
    if not (REPO / "tests").is_dir():
        result.how = "not run"
        result.run = "tests/ not found (installed without the source tree)"
        return result
    env = {k: v for k, v in os.environ.items() if not k.startswith(STACK_ENV)}
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *nodes],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=PYTEST_TIMEOUT,
            check=False,
        )
        code: int | None = proc.returncode
        output = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = None, str(exc.stdout or "")
    result.seconds = time.monotonic() - started
    found = _SUMMARY.findall(output)
    summary = found[-1][0] if found else output.strip().splitlines()[-1:] or ["no output"]
    summary = summary if isinstance(summary, str) else summary[0]
    result.run = f"pytest exit {code}: {summary}" if code is not None else "pytest hung (killed)"
    result.held = code == 0
    result.rerun = "(in the tests)"
    result.details.update(tests=nodes, exit_code=code, summary=summary)
    if code != 0:
        result.findings.append(f"{_files(nodes)}: {output.strip()[-600:]}")
    return result


def _files(nodes: list[str]) -> str:
    return ", ".join(dict.fromkeys(node.split("::")[0] for node in nodes))


def bad_inputs(lab: Lab) -> list[tuple[str, list[str], dict[str, str], set[int]]]:
    """(label, CLI args, env changes, accepted exit codes) for case 9."""
    lake = lab.stack.lake
    reader = lake.reader
    empty_home = str(lab.home / "no-stack-here")
    no_creds = {"LAKEHOUSE_HOME": empty_home, "MINIO_ACCESS_KEY": "", "MINIO_SECRET_KEY": ""}
    src = "s3://data.binance.vision/data/spot/"
    return [
        ("malformed URL", ["sync", "not-a-url", "s3://bronze-c9/x/"], {}, {2}),
        ("unknown market", ["ingest", "--market", "moon"], {}, {2}),
        ("unknown data type", ["ingest", "--data-type", "candles"], {}, {2}),
        ("dates out of order", ["ingest", "--start", "2024-01-05", "--end", "2024-01-01"], {}, {2}),
        ("not a date", ["ingest", "--start", "2024-02-30"], {}, {2}),
        (
            "missing credentials",
            ["sync", "--anonymous-source", src, "s3://bronze-c9/x/"],
            no_creds,
            {2, 4},
        ),
        (
            "wrong secret",
            ["sync", "--anonymous-source", src, "s3://bronze-c9/x/"],
            {"MINIO_SECRET_KEY": "not-the-secret"},
            {4},
        ),
        (
            "bucket does not exist",
            ["sync", "--anonymous-source", src, "s3://no-such-bucket-c9/x/"],
            {},
            {2, 4},
        ),
        (
            "source bucket does not exist",
            ["sync", "--anonymous-source", "s3://nope-c9/data/", "s3://bronze-c9/x/"],
            {},
            {2, 4},
        ),
        (
            "read-only identity",
            ["sync", "--anonymous-source", src, "s3://bronze-c9/x/"],
            {
                "MINIO_ACCESS_KEY": reader.access_key if reader else "",
                "MINIO_SECRET_KEY": reader.secret_key if reader else "",
            },
            {3, 4},
        ),
    ]


def cli_bad_input(lab: Lab) -> CaseResult:
    """Case 9: each bad input ends with a documented code and a message, no traceback."""
    result = CaseResult(9, "bad CLI input", "ran")
    started = time.monotonic()
    lab.target("c9")
    checks = []
    for label, args, env, accepted in bad_inputs(lab):
        outcome = lab.run(env, *args, timeout=120)
        ok = outcome.exit_code in accepted and not outcome.traceback and bool(outcome.cause)
        checks.append({"input": label, "accepted": sorted(accepted), "ok": ok,
                       **outcome.as_json()})  # fmt: skip
        if not ok:
            result.findings.append(f"{label}: {outcome.describe()} (expected {sorted(accepted)})")
    good = sum(c["ok"] for c in checks)
    codes = ", ".join(f"{c['input']} {c['exit_code']}" for c in checks)
    result.happened = f"{len(checks)} bad inputs through the real CLI ({codes})"
    result.run = f"{good} of {len(checks)}: documented exit code, one-line message, no traceback"
    result.rerun = "n/a"
    result.held = good == len(checks)
    result.details["inputs"] = checks
    result.seconds = time.monotonic() - started
    return result
