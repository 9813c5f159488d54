"""Coverage by SQL on a real PostgreSQL: each status from a hand-built manifest and ledger,
gaps as ranges, month cells when days do not fit, symbols capped with problems first, the
HTML report (escaped, bounded: under 5 MB at 50,000 files) and the terminal summary at 80
columns. `gold.coverage` and the metric are checked against a real lake."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
import pytest
import sqlalchemy as sa
from lake_helpers import Lake
from typer.testing import CliRunner

from crypto_lakehouse.catalog.schema import bronze_files
from crypto_lakehouse.cli import app
from crypto_lakehouse.lake.coverage import COVERAGE_TABLE, Coverage, DatasetSummary, build_coverage
from crypto_lakehouse.lake.ledger import FILES
from crypto_lakehouse.lake.report import (
    COLOURS,
    collect,
    columns_needed,
    render_html,
    symbol_caps,
)
from crypto_lakehouse.observability.metrics import COVERAGE_MISSING_DAYS
from crypto_lakehouse.stack.postgres import PostgresServer

D0 = date(2024, 1, 1)


@pytest.fixture
def url(postgres_server: PostgresServer) -> str:
    name = f"cov_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(name)
    return postgres_server.info.url(name)


@pytest.fixture
def coverage(url: str):
    found = Coverage(url)  # creates the manifest's and the ledger's tables
    yield found
    found.close()


class Files:
    """Writes manifest rows and ledger rows the way ingest and silver would."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def add(
        self,
        symbol: str,
        period: date,
        *,
        manifest: str = "verified",
        version: int = 1,
        silver: str | None = "transformed",
        silver_sha: str | None = None,
        market: str = "spot",
        frequency: str = "daily",
        data_type: str = "klines",
        interval: str | None = "1m",
        rows: int = 1440,
        error: str | None = None,
        message: str | None = None,
    ) -> None:
        folder = "/".join(p for p in (market, frequency, data_type, symbol, interval) if p)
        path = f"data/{folder}/{symbol}-{period}.zip"
        sha = f"{version:064d}"
        now = datetime.now(UTC)
        place = {"market": market, "frequency": frequency, "data_type": data_type,
                 "symbol": symbol, "interval": interval, "period": period}  # fmt: skip
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(bronze_files).values(
                    path=path,
                    **place,
                    status=manifest,
                    version=version,
                    updated_at=now,
                    sha256=sha if manifest == "verified" else None,
                    error=error,
                )
            )
            if silver is not None:
                conn.execute(
                    sa.insert(FILES).values(
                        path=path,
                        **place,
                        sha256=silver_sha or sha,
                        month=period.replace(day=1),
                        table_name=f"silver.{market}_{data_type}",
                        status=silver,
                        rows=rows if silver == "transformed" else 0,
                        message=message,
                        schema_fingerprint="f",
                        updated_at=now,
                    )
                )


def _day(n: int) -> date:
    return D0 + timedelta(days=n)


def test_each_status_from_manifest_and_ledger(coverage: Coverage) -> None:
    files = Files(coverage.engine)
    files.add("AAA", _day(0))  # present
    files.add("AAA", _day(1), silver="superseded")  # covered by the monthly file: present
    files.add("AAA", _day(2), silver=None)  # verified, not in silver yet
    files.add("AAA", _day(3), silver_sha="e" * 64)  # silver holds an older version
    files.add("AAA", _day(4), silver="drift", message="unexpected column 13")
    files.add("AAA", _day(5), manifest="corrupt", silver=None, error="checksum mismatch")
    files.add("AAA", _day(6), silver="corrupt", message="bad zip")
    files.add("AAA", _day(7), manifest="failed", silver=None, error="timed out")
    # days 8 and 9 have no file: a gap in the middle
    files.add("AAA", _day(10), version=2)  # republished, in silver at the new version
    files.add("BBB", _day(0))
    files.add("BBB", _day(1))  # BBB stops here: the days after its last file are not missing
    files.add("AAA", date(2024, 1, 1), frequency="monthly", interval=None, data_type="trades")
    files.add("AAA", date(2024, 4, 1), frequency="monthly", interval=None, data_type="trades")

    rows = pa.concat_tables(coverage.stream(chunk_rows=5)).to_pylist()
    status = {(r["data_type"], r["symbol"], r["period"]): r for r in rows}
    daily = {n: status[("klines", "AAA", _day(n))]["status"] for n in range(11)}
    assert daily == {
        0: "present", 1: "present", 2: "pending", 3: "pending", 4: "drift", 5: "corrupt",
        6: "corrupt", 7: "failed", 8: "missing", 9: "missing", 10: "present",
    }  # fmt: skip
    assert status[("klines", "AAA", _day(10))]["replaced"] is True
    assert status[("klines", "AAA", _day(10))]["versions"] == 2
    assert status[("klines", "AAA", _day(0))]["rows"] == 1440
    assert status[("klines", "AAA", _day(1))]["detail"] == "superseded by the monthly file"
    assert status[("klines", "AAA", _day(5))]["detail"] == "checksum mismatch"
    assert status[("klines", "AAA", _day(4))]["detail"] == "unexpected column 13"
    assert {k[2] for k in status if k[:2] == ("klines", "BBB")} == {_day(0), _day(1)}
    monthly = {k[2]: r["status"] for k, r in status.items() if k[0] == "trades"}
    assert monthly == {
        date(2024, 1, 1): "present", date(2024, 2, 1): "missing",
        date(2024, 3, 1): "missing", date(2024, 4, 1): "present",
    }  # fmt: skip
    assert all(r["interval"] is None for r in rows if r["data_type"] == "trades")

    summaries = {s.dataset.label: s for s in coverage.summaries()}
    klines = summaries["spot/daily/klines/1m"]
    assert klines.counts == {"present": 5, "pending": 2, "drift": 1, "corrupt": 2,
                             "failed": 1, "missing": 2}  # fmt: skip
    assert (klines.symbols, klines.replaced, klines.rows) == (2, 1, 4 * 1440)
    assert summaries["spot/monthly/trades"].count("missing") == 2

    lists = {found.kind: found for found in coverage.attention()}
    gaps = lists["missing"]
    assert (gaps.groups, gaps.total) == (2, 4)
    assert [p.text() for p in gaps.items] == [
        "spot/daily/klines/1m AAA: 2024-01-09 .. 2024-01-10 missing (2 days)",
        "spot/monthly/trades AAA: 2024-02 .. 2024-03 missing (2 months)",
    ]
    assert lists["corrupt"].total == 2 and lists["corrupt"].groups == 1
    assert (
        lists["corrupt"]
        .items[0]
        .text()
        .startswith("spot/daily/klines/1m AAA: 2 corrupt files, 2024-01-06 .. 2024-01-07")
    )
    assert lists["pending"].items[0].symbol is None  # pending is listed per dataset
    assert (lists["drift"].total, lists["failed"].total, lists["pending"].total) == (1, 1, 2)


def test_attention_lists_are_capped_worst_first(coverage: Coverage) -> None:
    files = Files(coverage.engine)
    for n, symbol in enumerate(["S1", "S2", "S3", "S4"]):
        files.add(symbol, _day(0))
        files.add(symbol, _day(2 + n))  # gaps of 1, 2, 3, 4 days
    lists = {found.kind: found for found in coverage.attention(limit=2)}
    gaps = lists["missing"]
    assert (gaps.groups, gaps.total, gaps.more) == (4, 10, 2)
    assert [(p.symbol, p.count) for p in gaps.items] == [("S4", 4), ("S3", 3)]
    report = collect(coverage, limit=2)
    html = render_html(report)
    assert "and 2 more" in html
    assert html.index("Needs attention") < html.index("S4") < html.index("<h2>Datasets")


def test_month_cells_when_days_do_not_fit(coverage: Coverage) -> None:
    files = Files(coverage.engine)
    for n in range(150):  # 2024-01-01 .. 2024-05-29
        if n == 40:
            files.add("AAA", _day(n), manifest="corrupt", silver=None, error="checksum")
        elif 60 <= n < 65:  # 2024-03-01 .. 2024-03-05 missing
            continue
        else:
            files.add("AAA", _day(n), version=2 if n == 10 else 1)
    (summary,) = coverage.summaries()
    heatmap = coverage.heatmap(summary, max_days=100)
    assert heatmap.by_month
    assert heatmap.columns == [date(2024, m, 1) for m in range(1, 6)]
    cells = {k[1].month: c for k, c in heatmap.cells.items()}
    assert cells[1].counts == {"present": 31} and cells[1].worst == "replaced"
    assert cells[1].replaced == 1 and cells[1].rows == 31 * 1440
    assert cells[2].counts == {"present": 28, "corrupt": 1} and cells[2].worst == "corrupt"
    assert cells[3].counts == {"present": 26, "missing": 5} and cells[3].worst == "missing"
    assert cells[5].counts == {"present": 29}
    html = render_html(collect(coverage))
    assert 'title="AAA 2024-03: 26 present, 5 missing, 37,440 rows"' in html
    assert "too many for one column each" in html

    by_day = coverage.heatmap(summary, max_days=200)
    assert not by_day.by_month and len(by_day.columns) == 150
    assert by_day.cells[("AAA", _day(61))].worst == "missing"
    assert by_day.cells[("AAA", _day(10))].worst == "replaced"


def test_symbols_capped_those_with_problems_first(coverage: Coverage) -> None:
    files = Files(coverage.engine)
    for i in range(10):
        for n in range(3):
            bad = (i, n) in {(7, 1), (3, 2)}
            files.add(f"S{i}", _day(n), manifest="corrupt" if bad else "verified",
                      silver=None if bad else "transformed")  # fmt: skip
    (summary,) = coverage.summaries()
    heatmap = coverage.heatmap(summary, max_symbols=3)
    assert heatmap.symbols[:2] == ["S3", "S7"] and len(heatmap.symbols) == 3
    assert (heatmap.hidden, heatmap.troubled) == (7, 2)
    html = render_html(collect(coverage, max_symbols=3))
    assert "showing 3 of 10 symbols, those with problems first (2 have problems), 7 more" in html


def test_html_escapes_symbol_text(coverage: Coverage) -> None:
    files = Files(coverage.engine)
    nasty = '<b>X&"Y'
    files.add(nasty, _day(0))
    files.add(nasty, _day(2), manifest="corrupt", silver=None, error="<script>alert(1)</script>")
    html = render_html(collect(coverage))
    assert "<b>X" not in html and "<script" not in html
    assert "&lt;b&gt;X&amp;&quot;Y" in html
    assert "&lt;script&gt;" in html
    assert html.startswith("<!DOCTYPE html>") and "<link" not in html
    for kind in ("present", "missing", "corrupt"):
        assert COLOURS[kind] in html


def test_an_empty_manifest_renders(coverage: Coverage) -> None:
    report = collect(coverage)
    assert report.summaries == [] and "No files in the manifest yet" in render_html(report)


def test_cell_budget_is_shared_between_datasets() -> None:
    from crypto_lakehouse.lake.coverage import Dataset

    def summary(name: str, symbols: int, days: int) -> DatasetSummary:
        dataset = Dataset("spot", "daily", name, "")
        return DatasetSummary(dataset, symbols, first=D0, last=_day(days - 1))

    many = [summary(f"t{i}", 400, 90) for i in range(30)] + [summary("small", 4, 90)]
    caps = symbol_caps(many, budget=60_000, max_symbols=60)
    assert caps["spot/daily/small"] == 4  # needs few: gets all of them
    cells = sum(caps[s.dataset.label] * columns_needed(s) for s in many)
    assert cells <= 60_000 and min(caps.values()) >= 4
    assert columns_needed(summary("long", 1, 400)) == 14  # 400 days -> 14 months


def test_terminal_summary_leads_with_attention_at_80_columns(
    coverage: Coverage, url: str, tmp_path, monkeypatch
) -> None:
    files = Files(coverage.engine)
    long_type = "premiumIndexKlines"
    for n in (0, 1, 4):
        files.add("VERYLONGSYMBOLNAMEUSDT", _day(n), market="futures/um", data_type=long_type)
    files.add("VERYLONGSYMBOLNAMEUSDT", _day(5), market="futures/um", data_type=long_type,
              manifest="corrupt", silver=None, error="checksum mismatch " * 5)  # fmt: skip
    monkeypatch.setenv("LAKEHOUSE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CATALOG_DATABASE_URL", url)
    monkeypatch.setenv("MINIO_ENDPOINT", "http://127.0.0.1:9")  # coverage does not touch S3
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    out = tmp_path / "report" / "coverage.html"
    result = CliRunner().invoke(app, ["coverage", "--html", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "Needs attention"
    assert "2024-01-03 .. 2024-01-04 missing (2 days)" in " ".join(result.output.split())
    assert max(len(line) for line in lines if not line.startswith("HTML report:")) <= 80
    assert out.exists() and "Needs attention" in out.read_text()

    bad = CliRunner().invoke(app, ["coverage", "--html", str(tmp_path)])  # a directory
    assert bad.exit_code == 2 and "cannot write" in bad.output


def test_gold_coverage_table_and_metric(lake: Lake) -> None:
    found = Coverage(lake.config.sqlalchemy_url)
    try:
        files = Files(found.engine)
        for n in (0, 1, 2, 6):
            files.add("AAA", _day(n))
        files.add("AAA", _day(3), market="futures/um", data_type="trades", interval=None)
        totals = build_coverage(lake.warehouse, found, chunk_rows=3)
        stored = lake.rows(COVERAGE_TABLE)
        assert stored.num_rows == 8
        assert sorted(stored.column("status").to_pylist()).count("missing") == 3
        assert totals == {"present": 5, "missing": 3, "replaced": 0}
        table = lake.warehouse.catalog.load_table(COVERAGE_TABLE)
        assert len(table.inspect.files()) >= 3  # written in chunks of 3 rows ...
        assert len(table.snapshots()) == 1  # ... committed as one snapshot
        metric = COVERAGE_MISSING_DAYS.labels(market="spot", data_type="klines")
        assert metric._value.get() == 3
        assert (
            COVERAGE_MISSING_DAYS.labels(market="futures/um", data_type="trades")._value.get() == 0
        )

        files.add("AAA", _day(3))  # the gap shrinks; the table is replaced, not appended to
        assert build_coverage(lake.warehouse, found)["missing"] == 2
        assert lake.rows(COVERAGE_TABLE).num_rows == 8
    finally:
        found.close()


# -- size and time at 50,000 files ----------------------------------------------------------

# (market, frequency, data type, interval, symbols, periods): 50,000 files in all.
SHAPES = {
    "mixed": [
        ("spot", "daily", "klines", "1m", 300, 100),  # 30,000: symbols capped
        ("futures/um", "daily", "trades", None, 40, 365),  # 14,600: month cells
        ("futures/um", "monthly", "fundingRate", None, 100, 36),  # 3,600
        ("spot", "daily", "klines", "1h", 20, 90),  # 1,800
    ],
    "many-datasets": [  # 50 datasets x 10 symbols x 100 days: every cell shown by day
        ("spot", "daily", f"type{i:02d}", None, 10, 100) for i in range(50)
    ],
}

_GENERATE = """
INSERT INTO bronze_files (path, market, frequency, data_type, symbol, "interval", period,
                          status, version, sha256, error, updated_at)
SELECT 'data/' || :market || '/' || :frequency || '/' || :data_type || '/' || s.symbol
           || '/' || coalesce(:interval, '') || '/' || p.period || '.zip',
       :market, :frequency, :data_type, s.symbol, :interval, p.period,
       CASE WHEN (s.i * 31 + p.n) % 211 = 0 THEN 'corrupt'
            WHEN (s.i * 17 + p.n) % 503 = 0 THEN 'failed' ELSE 'verified' END,
       CASE WHEN (s.i + p.n) % 149 = 0 THEN 2 ELSE 1 END, md5(s.symbol || p.period),
       CASE WHEN (s.i * 31 + p.n) % 211 = 0 THEN 'checksum mismatch' END, now()
FROM (SELECT i, 'SYM' || lpad(i::text, 4, '0') || 'USDT' AS symbol
      FROM generate_series(1, :symbols) i) s,
     (SELECT n, CASE WHEN :frequency = 'monthly'
                     THEN (date '2023-01-01' + make_interval(months => n))::date
                     ELSE date '2024-01-01' + n END AS period
      FROM generate_series(0, :periods - 1) n) p;
DELETE FROM bronze_files WHERE data_type = :data_type AND market = :market
  AND (hashtext(path) % 997 = 0);  -- gaps here and there
"""
_LEDGER = """
INSERT INTO lake_silver_files (path, sha256, table_name, market, frequency, data_type, symbol,
       "interval", period, month, status, rows, rejects, duplicates, versions,
       schema_fingerprint, message, updated_at)
SELECT path, sha256, 'silver.' || data_type, market, frequency, data_type, symbol, "interval",
       period, date_trunc('month', period)::date,
       CASE WHEN hashtext(path) % 53 = 0 THEN 'drift' ELSE 'transformed' END,
       1440, 0, 0, version, 'f',
       CASE WHEN hashtext(path) % 53 = 0 THEN 'unexpected column' END, now()
FROM bronze_files WHERE status = 'verified' AND hashtext(path) % 41 <> 0  -- some pending
"""


@pytest.mark.slow
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_page_stays_small_at_50000_files(coverage: Coverage, shape: str) -> None:
    with coverage.engine.begin() as conn:
        for market, frequency, data_type, interval, symbols, periods in SHAPES[shape]:
            for statement in _GENERATE.split(";")[:2]:
                conn.execute(sa.text(statement), {
                    "market": market, "frequency": frequency, "data_type": data_type,
                    "interval": interval, "symbols": symbols, "periods": periods,
                })  # fmt: skip
        conn.execute(sa.text(_LEDGER))
        conn.execute(sa.text("ANALYZE"))
        files = conn.execute(sa.text("SELECT count(*) FROM bronze_files")).scalar_one()
    assert 49_500 <= files <= 50_000

    started = time.perf_counter()
    html = render_html(collect(coverage))
    seconds = time.perf_counter() - started
    size = len(html.encode())
    print(f"\n{shape}: {files} files -> {size / 1e6:.2f} MB HTML in {seconds:.2f} s")
    assert size < 5_000_000
    assert seconds < 30
    assert html.index("Needs attention") < html.index("<h2>Datasets")
    assert "and " in html and " more" in html  # lists are capped
