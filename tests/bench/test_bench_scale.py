"""`bench scale`: the projection's arithmetic, the verdicts, and one run end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from crypto_lakehouse.archive.catalog import Market
from crypto_lakehouse.bench import projection as proj
from crypto_lakehouse.bench.scale import Run, Step, TableFiles
from crypto_lakehouse.bench.scale_report import as_json, text, verdicts

STEPS = ("generate", "ingest", "silver-large", "silver", "silver-noop", "gold", "maintain",
         "update-generate", "update")  # fmt: skip


def test_files_and_rows_per_symbol_day_follow_the_catalog() -> None:
    # spot: 13 kline intervals + trades + aggTrades; USD-M: 4 kline types x 12 + 5 others
    assert proj.daily_files_per_symbol(Market.SPOT) == 15
    assert proj.daily_files_per_symbol(Market.FUTURES_UM) == 53
    assert proj.daily_files_per_symbol(Market.FUTURES_CM) == 54  # + liquidationSnapshot
    assert proj.monthly_files_per_symbol(Market.FUTURES_UM) == 4 * 15 + 4
    one_kind = 1440 + 480 + 288 + 96 + 48 + 24 + 12 + 6 + 4 + 3 + 2 + 1  # 1m .. 1d
    assert proj.kline_rows_per_symbol_day(Market.SPOT) == 86_400 + one_kind
    assert proj.kline_rows_per_symbol_day(Market.FUTURES_UM) == 4 * one_kind


def test_archive_size_adds_markets_up() -> None:
    spot = proj.MarketEstimate(Market.SPOT, symbols=10, days_per_symbol=60,
                               active_symbols=4, trade_rows_per_day=1000)  # fmt: skip
    size = proj.archive_size((spot,))
    assert size.files == 600 * 15 + 20 * 15  # daily + 600 // 30 symbol-months
    per_day = proj.kline_rows_per_symbol_day(Market.SPOT) + 1000
    assert size.rows == 600 * per_day
    assert (size.daily_update_files, size.daily_update_rows) == (4 * 15, 4 * per_day)
    real = proj.archive_size()
    assert 10_000_000 < real.files < 100_000_000  # "tens of millions of files"
    assert 100e9 < real.rows < 1000e9  # "hundreds of billions of rows"


def test_costs_split_silver_into_per_file_and_per_row() -> None:
    costs = proj.Costs.measured(
        files=1000, ingest_s=10.0, small_files=990, small_rows=99_000, silver_small_s=20.0,
        large_rows=1_000_000, silver_large_net_s=2.0, gold_s=5.0, maintain_s=None,
    )  # fmt: skip
    assert costs.silver_per_row == pytest.approx(2e-6)
    assert costs.silver_per_file == pytest.approx((20.0 - 99_000 * 2e-6) / 990)
    assert costs.ingest_per_file == pytest.approx(0.01)
    expected = 100 * (0.01 + costs.silver_per_file + 0.005) + 10**6 * 2e-6
    assert costs.seconds(100, 10**6) == pytest.approx(expected)
    size = proj.ArchiveSize(files=3600, rows=0, daily_update_files=36, daily_update_rows=0)
    projection = proj.Projection(size, costs, workers=(4,))
    assert projection.as_json()["workers"]["4"] == pytest.approx(projection.backfill_seconds / 4)
    assert any("maintain not measured" in line for line in projection.lines())


def _run(requested: int, silver_s: float, *, maintain: bool = True) -> Run:
    run = Run(requested, requested, 7, 6, 1, 1_000_000)
    files = requested - 1
    for name, seconds, count, rows in [
        ("ingest", requested / 500, requested, None),
        ("silver-large", 3.0, 1, 1_000_000),
        ("silver", silver_s, files, 50 * files),
        ("silver-noop", 1.0, None, None),
        ("gold", 4.0, requested, None),
        ("update-ingest", 2.0, 800, None),
        ("update-silver", 5.0, 800, None),
        ("update-gold", 4.0, 800, None),
    ]:
        run.steps.append(Step(name, [], seconds, 300.0, 0, count, rows))
    if maintain:
        run.steps.append(Step("maintain", [], 6.0, 500.0, 0, requested))
        run.after_maintain = {"silver.spot_klines": TableFiles(requested // 40, 9000, 1)}
    else:
        run.steps.append(Step("maintain", [], note="`crypto-lakehouse maintain` does not exist"))
    run.queries = {"select-1": Step("select-1", [], 0.8, 200.0, 0),
                   "klines-1m-month": Step("klines-1m-month", [], 1.5, 250.0, 0)}  # fmt: skip
    run.bare = Step("bare-pyarrow", [], 1.0, 100.0, 0, 1, 1_000_000)
    return run


def test_verdicts_judge_each_target_at_its_n() -> None:
    runs = [_run(5_000, silver_s=20.0), _run(50_000, silver_s=250.0)]
    found = {v.key: v for v in verdicts(runs)}
    assert found["silver_small_files"].measured == pytest.approx(49_999 / 250.0)
    assert found["silver_small_files"].status == "missed"  # 199.996 < 200
    # 1M rows in 3.0 - 1.0 s vs bare 1M rows/s
    assert found["silver_large_ratio"].measured == pytest.approx(0.5)
    growth = (49_999 / 250.0) / (4_999 / 20.0)
    assert found["growth"].measured == pytest.approx(min(growth, 1.0))
    assert found["growth"].status == "met"
    assert found["peak_rss"].measured == 500.0 and found["peak_rss"].status == "met"
    assert found["data_files"].measured == pytest.approx(1250 / 50_000)
    assert found["query_month"].measured == pytest.approx(0.7)
    assert found["daily_update"].measured == pytest.approx(11.0)
    assert found["daily_update"].status == "met"


def test_what_was_not_measured_says_so() -> None:
    found = {v.key: v for v in verdicts([_run(5_000, silver_s=20.0, maintain=False)])}
    assert all(v.status == "not measured" for v in found.values())
    assert "50,000" in found["silver_small_files"].note
    only_large = {v.key: v for v in verdicts([_run(50_000, 250.0, maintain=False)])}
    assert only_large["data_files"].status == "not measured"
    assert only_large["growth"].status == "not measured"
    report = text([_run(50_000, 250.0, maintain=False)])
    assert "not measured: `crypto-lakehouse maintain` does not exist" in report
    assert max(len(line) for line in report.splitlines()) <= 100
    assert (
        as_json([_run(50_000, 250.0, maintain=False)])["projection"]["costs"]["maintain_per_file"]
        is None
    )


@pytest.mark.slow
def test_bench_scale_runs_every_step_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    proc = subprocess.run(
        [sys.executable, "-m", "crypto_lakehouse", "bench", "scale", "--files", "200",
         "--large-rows", "20000", "--json", str(out)],
        capture_output=True, text=True, timeout=1800, check=False,
        env={**_env(), "LAKEHOUSE_HOME": str(tmp_path / "home")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads(out.read_text())
    (run,) = data["runs"]
    names = [s["name"] for s in run["steps"]]
    assert names == list(STEPS)
    for step in run["steps"]:
        if step["name"] == "maintain" and step["seconds"] is None:
            assert "does not exist" in step["note"]
            continue
        assert step["exit_code"] == 0, step
        assert step["seconds"] > 0 and step["peak_rss_mib"] > 0, step
    assert run["steps"][names.index("silver-large")]["rows"] == 20_000
    assert set(run["queries"]) == {"select-1", "klines-1m-month", "trades-large-day"}
    assert all(q["exit_code"] == 0 for q in run["queries"].values())
    assert run["bare"]["rows"] == 20_000
    # Counted from the catalog: the large file's rows are in silver.spot_trades.
    assert run["after_silver"]["silver.spot_trades"]["rows"] >= 20_000
    assert run["after_silver"]["silver.spot_trades"]["data_files"] >= 1
    assert run["after_silver"]["silver.spot_trades"]["metadata_bytes"] > 0
    assert "silver.spot_klines" in run["after_silver"]
    assert {t["key"] for t in data["targets"]} >= {"silver_small_files", "daily_update"}
    assert data["projection"]["size"]["files"] > 10_000_000
    assert "N=200" in proc.stdout and "backfill on this machine" in proc.stdout


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "PREFECT_"))}


def test_a_failed_step_is_not_measured_rather_than_judged() -> None:
    run = _run(50_000, silver_s=250.0)
    run.queries["klines-1m-month"].exit_code = 1
    next(s for s in run.steps if s.name == "maintain").exit_code = 3
    next(s for s in run.steps if s.name == "update-silver").exit_code = 3
    found = {v.key: v for v in verdicts([run])}
    assert found["query_month"].status == "not measured"
    assert found["data_files"].status == "not measured"
    assert found["daily_update"].status == "not measured"
    assert found["select_1"].status == "met"


def test_the_one_process_update_is_the_daily_update_when_it_ran() -> None:
    run = _run(50_000, silver_s=250.0)
    run.steps.append(Step("update", [], 9.5, 700.0, 0, 800))
    assert run.update_seconds == pytest.approx(9.5)  # not 11.0, the three commands apart
    run.steps[-1].exit_code = 3
    assert run.update_seconds is None
