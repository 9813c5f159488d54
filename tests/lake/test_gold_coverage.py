"""Gold and coverage on the sample archive: resampling agrees with Binance's own klines (and a
tampered bar is reported), coverage counts present/missing/corrupt/replaced, the HTML report
and a query through the CLI."""

from __future__ import annotations

import csv
import io
import zipfile
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest
from lake_helpers import Lake
from typer.testing import CliRunner

from crypto_lakehouse.archive.paths import parse_key
from crypto_lakehouse.archive.sample import SampleSpec, build_sample
from crypto_lakehouse.catalog import Manifest
from crypto_lakehouse.catalog.manifest import FileResult, ListedFile
from crypto_lakehouse.cli import app
from crypto_lakehouse.lake.coverage import COVERAGE_TABLE, STATUSES, Coverage, build_coverage
from crypto_lakehouse.lake.gold import build_gold
from crypto_lakehouse.lake.report import COLOURS, collect, render_html
from crypto_lakehouse.lake.silver import BronzeFile


@pytest.fixture(scope="module")
def sample():
    return build_sample(SampleSpec(symbols=1, days=3, intervals=("1m", "1h", "1d")))


def _sha(sample, key: str) -> str:
    return sample.objects[key + ".CHECKSUM"].decode().split()[0]


def _spot_klines(sample) -> list[str]:
    return sorted(
        k
        for k in sample.manifest.files
        if k.startswith("data/spot/daily/klines/")
        and "XMRUSDT" not in k
        and k not in sample.manifest.real
    )


@pytest.mark.slow
def test_resampled_klines_agree_with_binance_and_a_tampered_bar_is_reported(
    lake: Lake, sample
) -> None:
    for key in _spot_klines(sample):
        bronze = lake.put_bytes(key, sample.objects[key])
        assert bronze.sha256 == _sha(sample, key)
        assert lake.builder.transform(bronze).status == "transformed"
    result = build_gold(lake.warehouse)
    assert result.checked > 0
    assert result.mismatches == []
    assert result.rows["gold.klines_1h"] > 0 and result.rows["gold.klines_1d"] > 0

    # Republish one 1h file with one bar's close changed: the check must name that bar.
    key = next(k for k in _spot_klines(sample) if "/1h/" in k)
    with zipfile.ZipFile(io.BytesIO(sample.objects[key])) as archive:
        name = archive.namelist()[0]
        rows = list(csv.reader(io.StringIO(archive.read(name).decode())))
    rows[0][4] = str(float(rows[0][4]) * 1.01)
    text = "".join(",".join(r) + "\n" for r in rows)
    outcome = lake.builder.transform(lake.put(key, text))
    assert outcome.replaced
    result = build_gold(lake.warehouse)
    assert len(result.mismatches) == 1
    bad = result.mismatches[0]
    assert bad["mismatched"] == "close" and bad["interval"] == "1h"
    per_second = 1e6 if len(rows[0][0]) == 16 else 1e3  # spot: us from 2025, ms before
    assert bad["open_time"] == datetime.fromtimestamp(int(rows[0][0]) / per_second, tz=UTC)


def _listed(sample, key: str) -> ListedFile:
    data = sample.objects[key]
    file = parse_key(key).with_listing(len(data), f"etag-{len(data)}", datetime.now(UTC))
    return ListedFile(file, key)


def test_coverage_counts_and_html(lake: Lake, sample) -> None:
    manifest = Manifest(lake.config.catalog_url)
    manifest.ensure_schema()

    def chosen(k: str) -> bool:
        wanted = "/futures/um/daily/" in k or "/futures/cm/daily/aggTrades/" in k
        return wanted and "lines/" not in k  # no kline data sets: keeps the test small

    keys = [k for k in sample.manifest.files if chosen(k)]
    planted_missing = {
        (parse_key(k).symbol, parse_key(k).period) for k in sample.manifest.missing if chosen(k)
    }
    listed = [_listed(sample, k) for k in keys]
    manifest.mark_started(
        "run-1", listed, source_url="s3://sample/", bronze_bucket=lake.config.bronze_bucket
    )
    results = []
    for item in listed:
        corrupt = item.path in sample.manifest.corrupt
        results.append(
            FileResult(item, ok=not corrupt, sha256=_sha(sample, item.path), corrupt=corrupt)
        )
    manifest.record("run-1", results)
    replaced = sample.manifest.replaced[0]
    again = [i for i in listed if i.path == replaced]
    manifest.mark_started(
        "run-2", again, source_url="s3://sample/", bronze_bucket=lake.config.bronze_bucket
    )
    manifest.record("run-2", [FileResult(again[0], ok=True, sha256="f" * 64)])

    # Silver took in one of the verified files; the others are pending.
    first = next(e for e in manifest.verified_files() if e.path != replaced)
    lake.put_bytes(first.path, sample.objects[first.path])
    assert lake.builder.transform(BronzeFile.from_entry(first)).status == "transformed"

    coverage = Coverage(lake.config.sqlalchemy_url)
    try:
        totals = build_coverage(lake.warehouse, coverage)
        summaries = coverage.summaries()
        report = collect(coverage)
    finally:
        coverage.close()
        manifest.close()
    rows = lake.rows(COVERAGE_TABLE).to_pylist()  # what build_coverage stored
    series = ("market", "frequency", "data_type", "interval", "symbol", "period")
    status = {tuple(r[k] for k in series): r for r in rows}
    missing = [r for r in rows if r["status"] == "missing"]
    # The planted missing day: every daily USD-M data set of the first symbol, middle day.
    assert planted_missing and {(r["symbol"], r["period"]) for r in missing} == planted_missing
    assert len(missing) == sum(chosen(k) for k in sample.manifest.missing)
    assert [r["status"] for r in rows if r["status"] == "corrupt"] == ["corrupt"]
    assert sum(r["replaced"] for r in rows) == 1
    assert sum(r["status"] == "present" for r in rows) == 1
    assert any(r["rows"] for r in rows if r["status"] == "present")
    assert len(status) == len(rows)  # one row per (series, period)
    delisted = [r for r in rows if r["symbol"] == "BNXUSDTSETTLED"]
    assert delisted and all(r["status"] != "missing" for r in delisted)  # it simply stops

    assert totals["missing"] == len(missing) and totals["replaced"] == 1
    assert sum(totals[s] for s in STATUSES if s in totals) == len(rows)
    assert sum(s.count("missing") for s in summaries) == len(missing)

    html = render_html(report)
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    for kind in ("missing", "corrupt", "replaced", "present"):
        assert COLOURS[kind] in html
    assert html.index("Needs attention") < html.index("<h2>Datasets")
    day = missing[0]["period"].isoformat()
    assert f"{missing[0]['symbol']} {day}: missing" in html


def test_query_through_the_cli(lake: Lake, binance_fixtures, tmp_path, monkeypatch) -> None:
    key = "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2026-05-08.zip"
    lake.builder.transform(lake.put_bytes(key, (binance_fixtures / key).read_bytes()))
    env = {"LAKEHOUSE_HOME": str(tmp_path / "home"), **lake.settings_env()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    runner = CliRunner()
    sql = "SELECT count(*) AS n, max(high) AS top FROM silver.spot_klines WHERE symbol = 'BTCUSDT'"
    result = runner.invoke(app, ["query", sql, "--format", "csv"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == '"n","top"' or lines[0] == "n,top"
    assert lines[1].split(",")[0] == "24"

    out = tmp_path / "klines.parquet"
    sql = "SELECT open_time, close FROM silver.spot_klines ORDER BY open_time"
    result = runner.invoke(app, ["query", sql, "--format", "parquet", "--output", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table.num_rows == 24 and str(table.schema.field("open_time").type).startswith(
        "timestamp"
    )

    bad = runner.invoke(app, ["query", "SELECT nope FROM silver.spot_klines"])
    assert bad.exit_code == 2  # DuckDB's complaint is bad input
