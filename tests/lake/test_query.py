"""Queries that prune: the SQL's filters reach Iceberg planning, and results never change.

The converter (SQL -> per-table filter -> pyiceberg expression) is tested alone; the rest
runs on real PostgreSQL + SeaweedFS, comparing every pruned query with DuckDB over the
whole, unfiltered table.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from pyiceberg import expressions as ie
from pyiceberg.expressions.visitors import bind as iceberg_bind
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BooleanType,
    DateType,
    DoubleType,
    LongType,
    NestedField,
    StringType,
    TimestampType,
    TimestamptzType,
)
from typer.testing import CliRunner

from crypto_lakehouse.cli import app
from crypto_lakehouse.lake.catalog_reader import CatalogReader
from crypto_lakehouse.lake.pushdown import TRUE, AllOf, AnyOf, Pred, SqlReads, bind, to_iceberg
from crypto_lakehouse.lake.query import QueryEngine
from crypto_lakehouse.lake.warehouse import LakeConfig, Warehouse
from crypto_lakehouse.stack.postgres import PostgresServer
from crypto_lakehouse.storage import S3Storage

# ---- the converter alone --------------------------------------------------------------

COLUMNS = {
    "silver.k": ["symbol", "open_time", "date", "month", "close", "trades", "up", "interval"],
    "gold.d": ["symbol", "date", "volume"],
}
SCHEMA = Schema(
    NestedField(1, "symbol", StringType()),
    NestedField(2, "open_time", TimestamptzType()),
    NestedField(3, "date", DateType()),
    NestedField(4, "close", DoubleType()),
    NestedField(5, "trades", LongType()),
    NestedField(6, "up", BooleanType()),
    NestedField(7, "naive", TimestampType()),
)


def reads(sql: str) -> dict[str, str]:
    found = SqlReads(sql, ["silver", "gold"]).filters(lambda name: COLUMNS.get(name))
    return {name: str(f) for name, f in found.items()}


def test_top_level_comparisons_with_literals_are_read_per_table() -> None:
    sql = """SELECT * FROM silver.k AS a JOIN gold.d b ON a.symbol = b.symbol
             WHERE a.symbol = 'BTCUSDT' AND open_time BETWEEN '2024-01-01' AND '2024-02-01'
               AND (b.date IN (DATE '2024-01-02', '2024-01-03')) AND 10 < trades
               AND volume >= -2.5 AND "interval" = '1m'"""
    assert reads(sql) == {
        "silver.k": "symbol = 'BTCUSDT' AND open_time >= '2024-01-01' AND "
        "open_time <= '2024-02-01' AND trades > 10 AND interval = '1m'",
        "gold.d": "date IN ('2024-01-02', '2024-01-03') AND volume >= -2.5",
    }


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM silver.k WHERE lower(symbol) = 'btcusdt'",  # function of a column
        "SELECT * FROM silver.k WHERE symbol = 'A' OR trades > 5 + 1",  # one branch unknown
        "SELECT * FROM silver.k WHERE close > trades",  # two columns
        "SELECT * FROM silver.k WHERE symbol IN (SELECT symbol FROM gold.d)",  # subquery
        "SELECT * FROM silver.k WHERE symbol <> 'A' AND NOT trades = 3",  # not pushed
        "SELECT * FROM silver.k, gold.d WHERE date = '2024-01-01'",  # ambiguous column
        "SELECT * FROM silver.k ASOF JOIN gold.d USING (symbol) WHERE k.trades = 1",
        "SELECT * FROM silver.k POSITIONAL JOIN gold.d WHERE k.trades = 1",
        "SELECT * FROM silver.k t(a, b) WHERE a = 'X'",  # renamed columns
        "SELECT * FROM (SELECT * FROM silver.k) s WHERE s.symbol = 'A'",  # not at the table
        "SELECT * FROM silver.k WHERE symbol = 'A' UNION ALL SELECT * FROM silver.k",
    ],
)
def test_what_cannot_be_pushed_safely_pushes_nothing(sql: str) -> None:
    assert reads(sql)["silver.k"] == "TRUE"


def test_or_of_one_table_and_several_references_are_unions() -> None:
    assert reads("SELECT * FROM silver.k WHERE (symbol = 'A' AND trades > 1) OR symbol = 'B'") == {
        "silver.k": "(symbol = 'A' AND trades > 1) OR symbol = 'B'"
    }
    twice = """WITH a AS (SELECT * FROM silver.k WHERE symbol = 'A')
               SELECT * FROM a JOIN silver.k b ON a.open_time = b.open_time WHERE b.symbol = 'B'"""
    assert reads(twice) == {"silver.k": "symbol = 'B' OR symbol = 'A'"}
    # a column of the outer query in a correlated subquery is not the inner table's
    outer = """SELECT * FROM gold.d WHERE EXISTS
               (SELECT 1 FROM silver.k WHERE k.symbol = d.symbol AND volume > 3 AND up)"""
    assert reads(outer) == {"gold.d": "TRUE", "silver.k": "TRUE"}


def test_sql_it_cannot_parse_names_no_table() -> None:
    found = SqlReads("SELEC * FROM silver.k WHERE (", ["silver"])
    assert not found.parsed and found.tables == []


def test_bind_types_each_literal_for_its_column() -> None:
    sql = """SELECT * FROM silver.t WHERE symbol = 'X' AND date = '2024-03-01'
             AND open_time >= '2024-03-01 02:00:00+02:00' AND open_time < DATE '2024-03-02'
             AND close <= 100 AND trades IN (1, 2.0) AND up = true
             AND naive < TIMESTAMP '2024-03-01 12:30:00'"""
    found = SqlReads(sql, ["silver"]).filters(lambda _: [f.name for f in SCHEMA.fields])
    bound = bind(found["silver.t"], SCHEMA)
    utc = UTC
    assert bound == AllOf(
        (
            Pred("symbol", "=", ("X",)),
            Pred("date", "=", (date(2024, 3, 1),)),
            Pred("open_time", ">=", (datetime(2024, 3, 1, tzinfo=utc),)),
            Pred("open_time", "<", (datetime(2024, 3, 2, tzinfo=utc),)),
            Pred("close", "<=", (100.0,)),
            Pred("trades", "in", (1, 2)),
            Pred("up", "=", (True,)),
            Pred("naive", "<", (datetime(2024, 3, 1, 12, 30, tzinfo=utc),)),
        )
    )
    expression = to_iceberg(bound)
    assert expression == ie.And(
        ie.EqualTo("symbol", "X"),
        ie.EqualTo("date", date(2024, 3, 1)),
        ie.GreaterThanOrEqual("open_time", datetime(2024, 3, 1)),
        ie.LessThan("open_time", datetime(2024, 3, 2)),
        ie.LessThanOrEqual("close", 100.0),
        ie.In("trades", {1, 2}),
        ie.EqualTo("up", True),
        ie.LessThan("naive", datetime(2024, 3, 1, 12, 30)),
    )
    iceberg_bind(SCHEMA, expression, case_sensitive=True)  # every literal fits its column


@pytest.mark.parametrize(
    "where",
    [
        "symbol = 1",  # a number against a string column
        "trades = 'many'",  # a string against a number column
        "trades = 1.5",  # a fraction against a whole-number column
        "close > 1",  # DuckDB's NaN is above every number; Iceberg bounds leave NaN out
        "date = '2024-03-01 10:00'",  # a time against a day
        "date < TIMESTAMP '2024-03-01 10:00:00'",
        "naive = '2024-03-01 10:00+02'",  # an offset against a column without a zone
        "open_time = TIMESTAMP '2024-03-01 10:00:00+02'",  # DuckDB drops this offset
        "open_time > 'yesterday'",
        "nope = 1",  # no such column: DuckDB resolves it elsewhere or fails
        "date = '2024-02-30'",  # no such day: DuckDB reports it
        "date = DATE '2024-02-30'",
        "open_time < '0001-01-01 00:00:00+02'",  # before year 1 in UTC
    ],
)
def test_literals_that_do_not_fit_their_column_are_not_pushed(where: str) -> None:
    sql = f"SELECT * FROM silver.t WHERE symbol = 'X' AND {where}"
    found = SqlReads(sql, ["silver"]).filters(lambda _: [f.name for f in SCHEMA.fields] + ["nope"])
    assert bind(found["silver.t"], SCHEMA) == Pred("symbol", "=", ("X",))
    either = SqlReads(f"SELECT * FROM silver.t WHERE symbol = 'X' OR {where}", ["silver"])
    assert bind(either.filters(lambda _: [f.name for f in SCHEMA.fields])["silver.t"], SCHEMA) in (
        None,
        AnyOf((Pred("symbol", "=", ("X",)),)),
    )


def test_select_without_a_table_never_opens_the_catalog() -> None:
    opened: list[str] = []

    def open_warehouse() -> Warehouse:
        opened.append("catalog")
        raise AssertionError("SELECT 1 must not open the catalog")

    with QueryEngine(open_warehouse) as engine:
        assert engine.sql("SELECT 1 AS one, 'a.b' AS name").to_pylist() == [
            {"one": 1, "name": "a.b"}
        ]
    assert opened == []
    assert to_iceberg(None) == ie.AlwaysTrue() and to_iceberg(TRUE) == ie.AlwaysTrue()


# ---- against real servers ---------------------------------------------------------------

SYMBOLS = ["ADAUSDT", "BNBUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
MONTHS = [date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)]
HOURS = 60  # rows per symbol and month


def _klines(month: date, symbols: list[str]) -> pa.Table:
    """Hourly rows for each symbol from the month's first day, sorted by symbol then time."""
    rows = []
    for symbol in symbols:
        s = SYMBOLS.index(symbol)
        for h in range(HOURS):
            moment = datetime(month.year, month.month, 1, tzinfo=UTC) + timedelta(hours=h * 11)
            rows.append(
                {
                    "symbol": symbol,
                    "open_time": moment,
                    "date": moment.date(),
                    "month": month,
                    "close": 100.0 * (s + 1) + h,
                    "trades": s * 1000 + h,
                    "up": h % 3 == 0,
                }
            )
    schema = pa.schema(
        [
            ("symbol", pa.string()),
            ("open_time", pa.timestamp("us", tz="UTC")),
            ("date", pa.date32()),
            ("month", pa.date32()),
            ("close", pa.float64()),
            ("trades", pa.int64()),
            ("up", pa.bool_()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


@pytest.fixture
def warehouse(lake_config: LakeConfig) -> Iterator[Warehouse]:
    """silver.k: partitioned by month, three data files per month (two symbols each);
    gold.d: unpartitioned, one data file per month."""
    warehouse = Warehouse(lake_config)
    for name, partition_by in (("silver.k", ["month"]), ("gold.d", [])):
        warehouse.ensure_table(name, _klines(MONTHS[0], SYMBOLS[:1]).schema, partition_by)
    for month in MONTHS:
        for pair in range(3):
            data = _klines(month, SYMBOLS[pair * 2 : pair * 2 + 2])
            warehouse.commit("silver.k", lambda t, d=data: t.append(d))
        daily = _klines(month, SYMBOLS).select(["symbol", "date", "month", "close"])
        warehouse.commit("gold.d", lambda t, d=daily: t.append(d))
    yield warehouse
    warehouse.catalog.engine.dispose()


def _whole(warehouse: Warehouse, sql: str) -> list[tuple]:
    """The rows DuckDB gives over the whole tables, nothing planned or pruned."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name in ("silver.k", "gold.d"):
        namespace, table = name.split(".")
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {namespace}")
        data = warehouse.catalog.load_table(name).scan().to_arrow()
        con.register(f"whole_{table}", data)
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM whole_{table}")
    return sorted(con.sql(sql).fetchall(), key=repr)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sql", "planned"),
    [
        # partition (month) pruning, then statistics (symbol) pruning inside the month
        ("SELECT * FROM silver.k WHERE month = DATE '2024-02-01'", 3),
        ("SELECT * FROM silver.k WHERE month = '2024-02-01' AND symbol = 'BTCUSDT'", 1),
        ("SELECT * FROM silver.k WHERE symbol IN ('ADAUSDT', 'XRPUSDT')", 6),
        # timestamps: string, TIMESTAMPTZ with an offset, DATE against a timestamp column
        (
            "SELECT * FROM silver.k WHERE symbol = 'ETHUSDT' "
            "AND open_time >= '2024-03-01' AND open_time < '2024-03-02 00:00:00+00'",
            1,
        ),
        ("SELECT * FROM silver.k WHERE open_time < TIMESTAMPTZ '2024-01-20 02:00:00+02'", 3),
        ("SELECT * FROM silver.k WHERE open_time BETWEEN DATE '2024-02-02' AND '2024-02-20'", 3),
        ("SELECT * FROM silver.k WHERE date > '2024-03-20' OR date < '2024-01-02'", 6),
        # numbers and booleans, by column statistics alone
        ("SELECT * FROM silver.k WHERE trades >= 5000", 3),
        ("SELECT * FROM silver.k WHERE close <= 150.5 AND up = true", 3),
        ("SELECT count(*), max(close) FROM silver.k WHERE -1 < trades AND trades < 1000", 3),
        # an unpartitioned table prunes by statistics too
        ("SELECT * FROM gold.d WHERE date = '2024-02-03'", 1),
        # nothing pushable: every file, same rows
        ("SELECT * FROM silver.k WHERE upper(symbol) = 'BTCUSDT'", 9),
        ("SELECT * FROM silver.k WHERE symbol = 'BTCUSDT' OR trades * 2 = 4", 9),
        ("SELECT * FROM silver.k WHERE close > 600", 9),  # NaN rule: > on doubles
    ],
)
def test_pruned_queries_plan_fewer_files_and_return_the_same_rows(
    warehouse: Warehouse, sql: str, planned: int
) -> None:
    with QueryEngine(warehouse) as engine:
        got = sorted(tuple(r.values()) for r in engine.sql(sql).to_pylist())
        plan = engine.plans["silver.k" if "silver.k" in sql else "gold.d"]
    assert (plan.files, plan.total_files) == (planned, 9 if "silver.k" in sql else 3)
    assert sorted(got, key=repr) == _whole(warehouse, sql)
    assert got  # every query above matches rows: an empty result proves nothing


@pytest.mark.slow
def test_a_table_read_twice_is_planned_with_both_filters(warehouse: Warehouse) -> None:
    sql = """SELECT a.open_time, a.close AS btc, b.close AS eth
             FROM silver.k a JOIN silver.k b ON a.open_time = b.open_time
             WHERE a.symbol = 'BTCUSDT' AND b.symbol = 'ETHUSDT' AND a.month = '2024-01-01'
             ORDER BY 1"""
    with QueryEngine(warehouse) as engine:
        got = engine.sql(sql)
        plan = engine.plans["silver.k"]
        # A later query on the same engine with another filter is planned again.
        again = engine.sql("SELECT count(*) AS n FROM silver.k WHERE symbol = 'SOLUSDT'")
        later = engine.plans["silver.k"]
    assert plan.pushed == "(symbol = 'BTCUSDT' AND month = '2024-01-01') OR symbol = 'ETHUSDT'"
    assert plan.files == 3  # BTCUSDT and ETHUSDT share a file in each month
    assert got.num_rows == HOURS
    assert sorted((tuple(r.values()) for r in got.to_pylist()), key=repr) == _whole(warehouse, sql)
    assert again.to_pylist() == [{"n": HOURS * len(MONTHS)}] and later.files == 3


@pytest.mark.slow
def test_query_explain_through_the_cli(warehouse: Warehouse, monkeypatch, tmp_path) -> None:
    config = warehouse.config
    env = {
        "LAKEHOUSE_HOME": str(tmp_path / "home"),
        "CATALOG_DATABASE_URL": config.catalog_url.get_secret_value(),
        "MINIO_ENDPOINT": config.endpoint.url,
        "MINIO_ACCESS_KEY": config.endpoint.access_key.get_secret_value(),
        "MINIO_SECRET_KEY": config.endpoint.secret_key.get_secret_value(),
        "BRONZE_BUCKET": config.bronze_bucket,
        "SILVER_BUCKET": config.silver_bucket,
        "GOLD_BUCKET": config.gold_bucket,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    runner = CliRunner()
    sql = "SELECT * FROM silver.k WHERE symbol = 'BTCUSDT' AND month = '2024-03-01'"
    result = runner.invoke(app, ["query", "--explain", sql])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("silver.k: 1 of 9 data files")
    assert "pushed: symbol = 'BTCUSDT' AND month = '2024-03-01'" in result.output
    result = runner.invoke(app, ["query", "--explain", "--format", "json", sql])
    assert result.exit_code == 0, result.output
    [plan] = json.loads(result.output)
    assert (plan["table"], plan["files"], plan["total_files"]) == ("silver.k", 1, 9)
    result = runner.invoke(app, ["query", "SELECT count(*) AS n FROM silver.k WHERE symbol = 'X'"])
    assert result.exit_code == 0 and " 0 " in result.output  # no file can hold it: empty
    bad = runner.invoke(app, ["query", "SELECT * FROM silver.k WHERE date = '2024-02-30'"])
    assert bad.exit_code == 2 and "2024-02-30" in bad.output  # DuckDB's word, no traceback
    shown = runner.invoke(app, ["query", "SHOW"])
    assert shown.exit_code == 0 and shown.output.split() == ["silver.k", "gold.d"]


@pytest.mark.slow
def test_the_catalog_reader_plans_and_reads_what_the_warehouse_does(
    warehouse: Warehouse,
) -> None:
    sql = "SELECT * FROM silver.k WHERE month = '2024-02-01' AND symbol = 'BTCUSDT'"
    reader = CatalogReader(warehouse.config)
    try:
        assert reader.tables("silver") == warehouse.tables("silver") == ["silver.k"]
        assert reader.table("silver.nope") is None
        with QueryEngine(reader) as light, QueryEngine(warehouse) as full:
            rows = light.sql(sql).to_pylist()
            assert rows == full.sql(sql).to_pylist() and rows
            assert light.plans["silver.k"] == full.plans["silver.k"]
    finally:
        reader.close()
    # In a fresh interpreter: reading a table this way never imports SQLAlchemy.
    config = warehouse.config
    endpoint = config.endpoint
    args = [
        config.catalog_url.get_secret_value(),
        endpoint.url,
        endpoint.access_key.get_secret_value(),
        endpoint.secret_key.get_secret_value(),
    ]
    code = (
        "import sys; from pydantic import SecretStr; "
        "from crypto_lakehouse.lake.catalog_reader import CatalogReader; "
        "from crypto_lakehouse.lake.config import LakeConfig; "
        "from crypto_lakehouse.storage.endpoint import Endpoint; "
        "url, ep, ak, sk = sys.argv[1:]; "
        "e = Endpoint(ep, SecretStr(ak), SecretStr(sk)); "
        "c = LakeConfig(SecretStr(url), e, 'b', 's', 'g'); "
        "t = CatalogReader(c).table('silver.k'); "
        "print(t.current_snapshot() is not None, 'sqlalchemy' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["True", "False"], done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("light", [False, True], ids=["warehouse", "catalog-reader"])
def test_a_read_only_warehouse_creates_nothing(
    lake_config: LakeConfig, postgres_server: PostgresServer, light: bool
) -> None:
    database = f"lake_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(database)
    bucket = f"ro-{uuid.uuid4().hex[:10]}"
    fresh = dataclasses.replace(
        lake_config,
        catalog_url=type(lake_config.catalog_url)(postgres_server.info.url(database)),
        silver_bucket=f"{bucket}-s",
        gold_bucket=f"{bucket}-g",
    )

    def opener() -> Any:
        return CatalogReader(fresh) if light else Warehouse(fresh, read_only=True)

    with QueryEngine(opener) as engine:
        assert engine.tables() == []  # no catalog tables yet: nothing to list, no error
        assert engine.table("silver.k") is None
        assert engine.sql("SELECT 2 AS two").to_pylist() == [{"two": 2}]
    storage = S3Storage(fresh.endpoint)
    assert not storage.bucket_exists(fresh.silver_bucket)
    assert not storage.bucket_exists(fresh.gold_bucket)
