"""The transfer benchmark's report: every target is listed, a missing side says so."""

from __future__ import annotations

from pathlib import Path

from crypto_lakehouse.bench.report import BenchResult, TransferMeasurement, case_label, split_case
from crypto_lakehouse.bench.transfer import _Env
from crypto_lakehouse.transfer import EngineOptions
from crypto_lakehouse.validation.targets import TRANSFER_TARGETS

MIB = 1024 * 1024


def _m(workload: str, method: str, seconds: float) -> TransferMeasurement:
    return TransferMeasurement(workload, method, seconds, [seconds], 10, 10 * 4096)


def test_a_target_with_a_missing_measurement_is_not_measured() -> None:
    result = BenchResult()
    result.add(_m("small", "engine-staged", 2.0))
    result.add(_m("small", "rclone", 3.0))
    rows = result.targets()
    assert len(rows) == len(TRANSFER_TARGETS)
    (rclone,) = [r for r in rows if r["workload"] == "small" and r["target"].endswith("rclone")]
    assert rclone["ratio"] == 1.5 and rclone["met"] is True
    boto = next(r for r in rows if "naive-boto3" in r["target"])
    assert boto["met"] is None and boto["ratio"] is None
    assert boto["note"] == "not measured: no naive-boto3 result"
    large = [r for r in rows if r["workload"] == "large"]
    assert large and all(r["met"] is None for r in large)


def test_the_memory_run_has_no_comparison_targets() -> None:
    result = BenchResult()
    result.add(_m("many", "engine-staged", 9.0))
    assert result.targets() == []


def _env(tmp_path: Path, memory_cap: int) -> _Env:
    options = EngineOptions(
        staging_root=tmp_path / "staging",
        staging_memory_root=tmp_path / "shm",
        staging_memory_cap_bytes=memory_cap,
        chunk_bytes=256 * MIB,
    )
    (tmp_path / "shm").mkdir()
    return _Env(tmp_path, None, None, options)  # type: ignore[arg-type]


def test_plain_s5cmd_stages_on_the_medium_of_the_engines_chunks(tmp_path: Path) -> None:
    env = _env(tmp_path, memory_cap=256 * MIB)
    area = env.raw_staging(640 * MIB)  # engine: 256 MiB chunks, in memory
    folder = area.new_chunk(640 * MIB)
    assert area.memory_dir is not None and folder.parent == area.memory_dir
    for opened in env.staging_areas:
        opened.close()


def test_plain_s5cmd_stays_on_disk_when_the_engines_chunks_do(tmp_path: Path) -> None:
    env = _env(tmp_path, memory_cap=64 * MIB)
    area = env.raw_staging(640 * MIB)
    folder = area.new_chunk(640 * MIB)
    assert area.memory_dir is None and folder.parent == area.dir
    for opened in env.staging_areas:
        opened.close()


def test_cases_behind_the_proxy_are_judged_by_the_round_trip_targets() -> None:
    result = BenchResult()
    for case in ("small@0ms", "small@150ms+1%rst"):
        result.add(_m(case, "engine-staged", 2.0))
        result.add(_m(case, "rclone", 3.0))
        result.add(_m(case, "naive-boto3", 30.0))
    rows = result.targets()
    assert {r["workload"] for r in rows} == {"small@150ms+1%rst"}  # 0 ms: measured, not judged
    by_target = {r["target"]: r for r in rows}
    assert by_target["engine-staged >= 1.2x rclone"]["met"] is True  # 1.5
    assert by_target["engine-staged >= 20x naive-boto3"]["met"] is False  # 15
    assert by_target["engine-staged >= 1.2x aria2c"]["met"] is None


def test_case_labels_round_trip() -> None:
    assert split_case(case_label("large", 50.0)) == ("large", 50.0)
    assert split_case(case_label("small", 150.0, 0.01)) == ("small", 150.0)
    assert split_case(case_label("small", None)) == ("small", None)


def test_an_unknown_method_is_refused_before_any_server_starts() -> None:
    import subprocess
    import sys

    cli = Path(sys.executable).parent / "crypto-lakehouse"
    proc = subprocess.run(
        [str(cli), "bench", "transfer", "--method", "engine-staged", "--method", "robocopy"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown method robocopy" in proc.stderr and "rclone" in proc.stderr


def test_a_run_that_gave_up_under_faults_is_listed_not_averaged() -> None:
    from rich.console import Console

    result = BenchResult()
    result.add(_m("small@150ms+1%rst", "engine-staged", 2.0))
    failure = {"workload": "small@150ms+1%rst", "method": "naive-boto3", "round": 1,
               "copied": 217, "objects": 500, "error": "ResponseStreamingError: reset"}  # fmt: skip
    result.failed_runs.append(failure)
    assert result.as_json()["failed_runs"] == [failure]
    console = Console(width=100, record=True)
    console.print(result.table(narrow=True))
    assert "naive-boto3 round 1: copied 217 of 500" in console.export_text()
    assert result.seconds("small@150ms+1%rst", "naive-boto3") is None


def test_connections_to_the_source_are_shown_behind_the_proxy_only() -> None:
    from dataclasses import replace

    from rich.console import Console

    result = BenchResult()
    result.add(replace(_m("small@150ms", "engine-staged", 2.0), source_connections=1734))
    result.add(replace(_m("small@150ms", "rclone", 1.5), source_connections=256))
    result.add(_m("small", "engine-staged", 1.0))
    assert [r["source_connections"] for r in result.as_json()["results"]] == [1734, 256, None]
    for narrow in (True, False):
        console = Console(width=200, record=True)
        console.print(result.table(narrow=narrow))
        text = console.export_text()
        behind, loopback = text.split("small: ")
        assert "1734" in behind and "256" in behind
        assert "conn" in behind and "conn" not in loopback


def test_tls_with_injected_faults_or_without_a_proxy_is_refused() -> None:
    import os
    import subprocess
    import sys

    cli = Path(sys.executable).parent / "crypto-lakehouse"
    for args, says in (
        (["--rtt", "50", "--resets", "0.01", "--tls"], "cannot read inside TLS"),
        (["--tls"], "--tls needs --rtt"),
    ):
        proc = subprocess.run(
            [str(cli), "bench", "transfer", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert proc.returncode == 2, args
        assert says in " ".join(proc.stderr.split()), proc.stderr
