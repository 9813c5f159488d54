"""`bench faults`: the audit's arithmetic, the verdicts, and the fast cases end to end."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from crypto_lakehouse.bench.faults_audit import Published, audit
from crypto_lakehouse.bench.faults_lab import STACK_ENV, cause_of
from crypto_lakehouse.bench.faults_report import Campaign, CaseResult, document, markdown

GOOD, OTHER = b"good bytes", b"other bytes"
SOURCE = {
    f"data/spot/daily/klines/X/1m/X-1m-2024-01-0{i}.zip": Published(
        len(GOOD), hashlib.sha256(GOOD).hexdigest()
    )
    for i in range(1, 5)
}
KEYS = sorted(SOURCE)


def _held(key: str) -> tuple[int, str]:
    return SOURCE[key].size, SOURCE[key].sha256


def _row(path: str, status: str = "verified", version: int = 1) -> SimpleNamespace:
    return SimpleNamespace(path=path, status=status, version=version, bronze_key=path)


def test_a_complete_bronze_is_clean() -> None:
    result = audit(SOURCE, {k: _held(k) for k in KEYS}, [_row(k) for k in KEYS], set())
    assert result.clean
    assert (result.expected, result.verified, result.lost, result.corrupt) == (4, 4, 0, 0)


def test_missing_torn_and_stray_objects_are_counted_each_as_its_kind() -> None:
    bronze = {KEYS[0]: _held(KEYS[0]), KEYS[1]: (len(OTHER), "0" * 64)}
    bronze["data/tmp/partial.part"] = (3, "f" * 64)
    rows = [_row(KEYS[0]), _row(KEYS[1]), _row(KEYS[2]), _row(KEYS[3], "failed")]
    result = audit(SOURCE, bronze, rows, {KEYS[0]})
    assert (result.lost, result.corrupt, result.stray) == (2, 1, 1)
    assert result.examples["lost"] == [KEYS[2], KEYS[3]]
    # KEYS[1] is verified but torn, KEYS[2] verified but gone: the manifest lies twice.
    assert result.lying == 2 and result.verified == 3
    assert result.repeated == 1  # KEYS[0] has history: verified twice
    assert not result.clean


def test_a_file_the_case_did_not_expect_in_bronze_is_unasked() -> None:
    bronze = {k: _held(k) for k in KEYS}
    result = audit(SOURCE, bronze, [], set(), expected_keys=set(KEYS[:3]))
    assert (result.expected, result.lost, result.unasked) == (3, 0, 1)


def test_the_cause_is_the_exception_line_of_a_traceback() -> None:
    out = "Traceback (most recent call last):\n  File x\n"
    out += "crypto_lakehouse.errors.CatalogUnavailable: db gone\n"
    line = "crypto_lakehouse.errors.CatalogUnavailable: db gone"
    assert cause_of(out, "") == (line, line)


def test_the_fatal_traceback_names_the_cause_not_a_logged_one() -> None:
    err = (
        'Traceback (most recent call last):\n  File "x", line 6, in <module>\n    main()\n'
        "prefect.exceptions.PrefectHTTPStatusError: Server error '500'\n"
        "12:00 | ERROR | asyncio - Task exception was never retrieved\n"
        'Traceback (most recent call last):\n  File "y", line 1, in _record\n'
        "crypto_lakehouse.errors.CatalogUnavailable: catalog database unavailable\n"
    )
    fatal = "prefect.exceptions.PrefectHTTPStatusError: Server error '500'"
    assert cause_of("", err) == (fatal, fatal)
    logged_only = err.split("12:00 | ")[1]
    summary = "│ failed │ 300 │\nfailed: data/a.zip\n  500 Internal Server Error\n"
    assert cause_of(summary, logged_only) == (
        "crypto_lakehouse.errors.CatalogUnavailable: catalog database unavailable",
        "500 Internal Server Error",
    )


def test_the_cause_is_the_first_problem_of_the_summary_else_stderr() -> None:
    out = "│ failed │ 2 │\nfailed: data/spot/a.zip\n  dial tcp: connection refused\n"
    assert cause_of(out, "") == ("", "dial tcp: connection refused")
    sync = "│ staged │ 94 │\nfailed data/a.zip: AccessDenied: Access Denied. status code: 403\n"
    assert cause_of(sync, "") == ("", "AccessDenied: Access Denied. status code: 403")
    assert cause_of("", "error: --market: unknown market 'moon'\n") == (
        "",
        "error: --market: unknown market 'moon'",
    )


def test_a_case_not_run_is_never_held_and_one_failure_fails_the_campaign() -> None:
    held = CaseResult(1, "one", "ran", held=True, lost=0, corrupt=0)
    not_run = CaseResult(6, "six", "not run")
    assert Campaign("c", "2026-12-03", {}, [held, not_run]).ok
    assert not Campaign("c", "2026-12-03", {}, [not_run]).ok
    failed = CaseResult(2, "two", "ran", held=False, lost=3, corrupt=0)
    campaign = Campaign("c", "2026-12-03", {}, [held, failed, not_run])
    assert not campaign.ok
    text = markdown(campaign)
    assert "| 2. two |" in text and "| FAILED |" in text and "| not run |" in text
    again = Campaign.from_json(json.loads(json.dumps(campaign.as_json())))
    assert document(again) == document(campaign)


def _without_stack(env: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith(STACK_ENV)}


@pytest.fixture(scope="module")
def fast_campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, str]:
    """Cases 2, 5 and 9 on 200 files, through the CLI as a user runs it."""
    out = tmp_path_factory.mktemp("faults")
    json_file, doc = out / "faults.json", out / "reliability.md"
    cli = Path(sys.executable).parent / "crypto-lakehouse"
    proc = subprocess.run(
        [str(cli), "bench", "faults", "--files", "200", "--case", "2", "--case", "5",
         "--case", "9", "--json", str(json_file), "--markdown", str(doc)],
        capture_output=True, text=True, timeout=900, check=False,
        env={**_without_stack(os.environ), "LAKEHOUSE_HOME": str(out / "home"), "COLUMNS": "200"},
    )  # fmt: skip
    assert json_file.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.returncode, json.loads(json_file.read_text()), doc.read_text()


@pytest.mark.slow
def test_source_faults_are_ridden_out_with_every_file_verified(fast_campaign) -> None:
    _, data, _ = fast_campaign
    case = next(c for c in data["cases"] if c["case"] == 2)
    assert case["verdict"] == "held", case
    assert case["lost"] == 0 and case["corrupt"] == 0
    assert case["details"]["audit"]["verified"] == case["details"]["audit"]["expected"] > 100
    assert case["details"]["run"]["exit_code"] == 0
    assert case["details"]["retry_lines"] > 0, "s5cmd's retries must show in the ingest log"


@pytest.mark.slow
def test_a_small_staging_cap_fails_cleanly_and_leaves_nothing_partial(fast_campaign) -> None:
    _, data, _ = fast_campaign
    case = next(c for c in data["cases"] if c["case"] == 5)
    assert case["details"]["too_big"] > 0, "no file above the cap: the case proves nothing"
    assert case["details"]["run"]["exit_code"] == 3
    assert "staging cap" in case["details"]["run"]["cause"]
    assert case["details"]["staging_left"] == []
    first = case["details"]["first_audit"]
    assert first["corrupt"] == first["stray"] == first["unasked"] == 0
    assert case["verdict"] == "held", case


@pytest.mark.slow
def test_bad_input_gets_a_message_and_no_traceback(fast_campaign) -> None:
    code, data, doc = fast_campaign
    case = next(c for c in data["cases"] if c["case"] == 9)
    inputs = case["details"]["inputs"]
    assert len(inputs) >= 10
    assert all(not i["traceback"] and i["cause"] and i["exit_code"] for i in inputs)
    assert case["verdict"] == ("held" if all(i["ok"] for i in inputs) else "FAILED")
    assert code == (0 if data["ok"] else 1)
    assert "| 9. bad CLI input |" in doc and data["command"] in doc


@pytest.mark.slow
def test_every_bad_input_gets_its_documented_exit_code(fast_campaign) -> None:
    _, data, _ = fast_campaign
    case = next(c for c in data["cases"] if c["case"] == 9)
    assert [i["input"] for i in case["details"]["inputs"] if not i["ok"]] == []


@pytest.mark.parametrize("args", [["--case", "10"], ["--date", "3 Dec"], ["--files", "50"]])
def test_bad_usage_exits_2_before_any_server_starts(args: list[str], tmp_path: Path) -> None:
    cli = Path(sys.executable).parent / "crypto-lakehouse"
    proc = subprocess.run(
        [str(cli), "bench", "faults", *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={**_without_stack(os.environ), "LAKEHOUSE_HOME": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "bench").exists()
