"""`crypto-lakehouse silver | gold | query | coverage`: the lakehouse tables from the shell.

Exit codes: 0 ok; 3 files flagged (schema drift, corrupt) or resampled bars that disagree
with Binance's; 2 bad SQL or settings; 4 storage unreachable; 5 the stack is not running.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from crypto_lakehouse.cli._common import ExitCode, console, fail, handle_errors, load_settings
from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import ConfigError


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def _settings() -> Settings:
    """Settings, filled from the local stack when the environment does not say otherwise."""
    from crypto_lakehouse.cli.flows import use_stack_environment

    try:
        return use_stack_environment()
    except ConfigError:
        return load_settings()  # no Prefect needed for queries and reports


def _read_settings() -> tuple[Settings, Any]:
    """Settings for a read, filled from the local stack like `_settings`, but without first
    health-checking every service (about a second): (settings, the stack or None)."""
    from crypto_lakehouse.stack.manager import LocalStack

    stack = LocalStack.from_settings(load_settings())
    if not stack.initialised:
        return load_settings(), None
    for key, value in stack.env().items():
        os.environ.setdefault(key, value)
    return load_settings(), stack


def _warehouse_opener(settings: Settings, stack: Any) -> Callable[[], Any]:
    """Opens the catalog read-only when called, that is only when the SQL names a table."""

    def open_warehouse() -> Any:
        from crypto_lakehouse.lake.config import LakeConfig

        config = LakeConfig.from_settings(settings)
        try:
            if config.libpq_url is not None:  # one psycopg query, no SQLAlchemy
                from crypto_lakehouse.lake.catalog_reader import CatalogReader

                return CatalogReader(config)
            from crypto_lakehouse.lake.warehouse import Warehouse

            return Warehouse(config, read_only=True)
        except Exception:
            if stack is not None:
                stack.require_running()  # StackError naming the service that is down
            raise

    return open_warehouse


def run_silver_flow(parallel: int = 2, **choice: Any) -> tuple[str, Any]:
    """Run `build-silver` here as a real Prefect flow run; (state name, SilverSummary)."""
    from crypto_lakehouse.flows.silver import build_silver
    from crypto_lakehouse.lake.summary import SilverSummary

    async def go() -> tuple[Any, Any]:
        state = await build_silver(parallel=parallel, **choice, return_state=True)
        return state, await state.result(raise_on_failure=False)

    state, data = asyncio.run(go())
    if isinstance(data, BaseException):
        raise data
    if not isinstance(data, dict):
        data = None
    if data is None:
        raise ConfigError(f"build-silver ended {state.name} without a summary")
    return state.name or str(state.type), SilverSummary.from_dict(data)


def print_silver(summary: Any) -> None:
    console.print(f"  {summary.message()} in {summary.seconds:.1f} s")
    for table, rows in sorted(summary.tables.items()):
        console.print(f"    {table:<40} +{rows:,} rows")
    for kind, items in (("drift", summary.drift), ("corrupt", summary.corrupt)):
        for item in items:
            console.print(f"  [red]{kind}:[/] {item['file']}: {item['detail']}", soft_wrap=True)


@handle_errors
def silver(
    market: Annotated[list[str] | None, typer.Option(help="Only this market (repeat).")] = None,
    data_type: Annotated[list[str] | None, typer.Option(help="Only this data type.")] = None,
    symbol: Annotated[list[str] | None, typer.Option(help="Only this symbol.")] = None,
    parallel: Annotated[
        int, typer.Option(min=1, max=32, help="Batches in flight (each up to 5,000 files).")
    ] = 2,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Drop every silver table and the ledger, then rebuild them from bronze "
            "(bronze is the source of truth; the way to a new table layout).",
        ),
    ] = False,
    fan_out: Annotated[
        bool,
        typer.Option(
            "--fan-out",
            help="Flow silver-fanout: above --min-files pending files, child runs on the "
            "general pool's workers (deployment silver-part/silver-part) take tables.",
        ),
    ] = False,
    children: Annotated[int, typer.Option(min=1, max=64, help="With --fan-out.")] = 4,
    min_files: Annotated[int, typer.Option(min=0, help="With --fan-out.")] = 2000,
) -> None:
    """Bring verified bronze files into the silver Iceberg tables (flow build-silver).

    Files go in batches of many source files per Parquet data file, one commit per batch;
    a second run over the same bronze adds nothing.
    """
    from crypto_lakehouse.cli.ingest import quiet_prefect

    quiet_prefect(verbose=False)
    _settings()
    if fan_out:
        from crypto_lakehouse.cli.ingest import print_children
        from crypto_lakehouse.flows import fanout

        with console.status("silver-fanout: counting, then waiting for the child runs..."):
            state, data = asyncio.run(
                fanout.run_locally(
                    fanout.silver_fanout, markets=market, data_types=data_type, symbols=symbol,
                    parallel=parallel, rebuild=rebuild, children=children, min_files=min_files,
                )
            )  # fmt: skip
        print_children(data["fanout"])
        summary = fanout.silver_summary_of(data)
    else:
        with console.status("building silver..."):
            state, summary = run_silver_flow(
                parallel, markets=market, data_types=data_type, symbols=symbol, rebuild=rebuild
            )
    console.print(f"{'silver-fanout' if fan_out else 'build-silver'} ended {state}")
    print_silver(summary)
    if not summary.ok or state != "Completed":
        raise typer.Exit(int(ExitCode.OBJECTS_FAILED))


@handle_errors
def gold(
    full: Annotated[
        bool, typer.Option("--full", help="Recompute every partition, not only changed ones.")
    ] = False,
) -> None:
    """Bring gold up to date (resampled klines + checks, funding, trade stats) and coverage.

    Only the (market, symbol, month) partitions whose silver files changed since the last
    build are recomputed; exits 3 while any resampled bar differs from Binance's.
    """
    from crypto_lakehouse.flows.silver import gold_and_coverage

    with console.status("building gold..."):
        result = gold_and_coverage(_settings(), full=full)
    for table, rows in sorted(result["rows"].items()):
        redone = result["recomputed"].get(table, 0)
        pieces = result["pieces"].get(table, 0)
        read = f" in {pieces:,} silver reads" if pieces else ""
        console.print(f"  {table:<28} {rows:,} rows, {redone:,} partitions recomputed{read}")
    console.print(
        f"  resampled bars checked against Binance's: {result['checked']}, "
        f"mismatched: {len(result['mismatches'])}"
    )
    took = result["seconds"]
    console.print(
        f"  gold tables in {took['gold']:.1f} s, gold.coverage in {took['coverage']:.1f} s"
    )
    for miss in result["mismatches"][:20]:
        console.print(f"  [red]mismatch:[/] {miss}", soft_wrap=True)
    if result["mismatches"]:
        raise typer.Exit(int(ExitCode.OBJECTS_FAILED))


@handle_errors
def query(
    sql: Annotated[str, typer.Argument(help="DuckDB SQL over silver.* and gold.* tables.")],
    output_format: Annotated[
        Format, typer.Option("--format", help="Output format.")
    ] = Format.table,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write here.")] = None,
    limit: Annotated[int, typer.Option(help="Rows shown in table format.")] = 50,
    explain: Annotated[
        bool, typer.Option("--explain", help="Per table: the filter pushed, files planned.")
    ] = False,
) -> None:
    """Run SQL over the lake's tables (offline, DuckDB). `query "SHOW"` lists the tables.

    The SQL's filters on each table are pushed into Iceberg planning, so only data files
    that can hold matching rows are read; `--explain` shows that plan without running."""
    from crypto_lakehouse.lake.query import QueryEngine

    if output_format is Format.parquet and output is None:
        raise fail("--format parquet needs --output FILE", ExitCode.BAD_INPUT)
    with QueryEngine(_warehouse_opener(*_read_settings())) as engine:
        if sql.strip().upper() in {"SHOW", "SHOW TABLES"}:
            for name in engine.tables():
                typer.echo(name)
            return
        if explain:
            _print_plans(engine.explain(sql), output_format)
            return
        result = engine.sql(sql)
    _emit(result, output_format, output, limit)


def _print_plans(plans: list, output_format: Format) -> None:
    if output_format is Format.json:
        typer.echo(json.dumps([vars(plan) for plan in plans], indent=2))
        return
    for plan in plans:
        total = "?" if plan.total_files is None else f"{plan.total_files:,}"
        typer.echo(
            f"{plan.table}: {plan.files:,} of {total} data files "
            f"({plan.bytes / 2**20:.1f} MiB); pushed: {plan.pushed}"
        )


def _emit(result: Any, output_format: Format, output: Path | None, limit: int) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if output_format is Format.table:
        table = Table(*result.column_names)
        for row in result.slice(0, limit).to_pylist():
            table.add_row(*("" if v is None else str(v) for v in row.values()))
        console.print(table)
        if result.num_rows > limit:
            console.print(f"({result.num_rows} rows, {limit} shown)")
        return
    if output_format is Format.parquet:
        pq.write_table(result, output)
    elif output_format is Format.csv:
        if output is None:
            sink = __import__("io").BytesIO()
            pacsv.write_csv(result, sink)
            typer.echo(sink.getvalue().decode(), nl=False)
        else:
            pacsv.write_csv(result, output)
    else:
        text = json.dumps(result.to_pylist(), default=str, indent=1)
        if output is None:
            typer.echo(text)
        else:
            output.write_text(text + "\n")
    if output is not None:
        console.print(f"{result.num_rows} rows written to {output}")


@handle_errors
def coverage(
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write the HTML report (heatmaps) here.")
    ] = None,
) -> None:
    """What needs attention (gaps, corrupt, drift, failed, pending), then counts per dataset.

    Computed by SQL in the catalog database. Exit 2 when the HTML file cannot be written.
    """
    from crypto_lakehouse.lake.warehouse import LakeConfig

    summaries, attention, path = coverage_report(LakeConfig.from_settings(_settings()), html)
    print_coverage(summaries, attention)
    if path is not None:
        console.print(f"HTML report: {path}", soft_wrap=True)


def coverage_report(config: Any, html: Path | None) -> tuple[list, list, Path | None]:
    """Summaries and attention lists (and the HTML report when `html` is given)."""
    from crypto_lakehouse.lake.coverage import Coverage
    from crypto_lakehouse.lake.report import collect, write_html

    found = Coverage(config.sqlalchemy_url)
    try:
        if html is None:
            return found.summaries(), found.attention(COVERAGE_LINES), None
        report = collect(found)
    finally:
        found.close()
    try:
        path = write_html(report, html).resolve()
    except OSError as exc:
        raise fail(f"cannot write {html}: {exc.strerror}", ExitCode.BAD_INPUT) from None
    return report.summaries, report.attention, path


COVERAGE_LINES = 8  # lines per attention list in the terminal


def print_coverage(summaries: list, attention: list) -> None:
    """Attention lists first, then one line per dataset; 80 columns unless on a terminal."""
    from rich.console import Console
    from rich.markup import escape
    from rich.padding import Padding

    from crypto_lakehouse.lake.coverage import PROBLEMS
    from crypto_lakehouse.lake.report import HEADINGS

    out = console if console.is_terminal else Console(width=80, highlight=False)
    lists = [found for found in attention if found.groups]
    out.print("[bold]Needs attention[/]" if lists else "Nothing needs attention: no gaps, "
              "and every file is in silver.")  # fmt: skip
    for found in lists:
        out.print(f"  {HEADINGS[found.kind]}: {found.headline()}")
        for problem in found.items[:COVERAGE_LINES]:
            out.print(Padding(escape(problem.text()), (0, 0, 0, 4), expand=False))
        if found.groups > COVERAGE_LINES:
            out.print(f"    and {found.groups - min(COVERAGE_LINES, len(found.items)):,} more")
    table = Table("dataset", "sym", "periods", "present", "rows", "needs attention",
                  show_edge=False, pad_edge=False)  # fmt: skip
    table.columns[0].overflow = table.columns[5].overflow = "fold"
    for s in summaries:
        bad = ", ".join(f"{s.count(k):,} {k}" for k in PROBLEMS if s.count(k))
        table.add_row(escape(s.dataset.label), f"{s.symbols:,}", f"{s.periods:,}",
                      f"{s.count('present'):,}", f"{s.rows:,}", bad or "-")  # fmt: skip
    out.print(table)
    total = {k: sum(s.count(k) for s in summaries) for k in ("present", "missing", "corrupt")}
    out.print(
        f"total: {sum(s.periods for s in summaries):,} periods, {total['present']:,} present, "
        f"{sum(s.replaced for s in summaries):,} replaced, {total['missing']:,} missing, "
        f"{total['corrupt']:,} corrupt"
    )


# -- demo steps (appended to `crypto-lakehouse demo` by cli/demo.py) ----------------------

SAMPLE_QUERY = """
SELECT t.market, t.symbol, t.date, t.trades, round(t.vwap, 4) AS vwap,
       round(k.close, 4) AS close_1d, round(f.daily_rate * 100, 5) AS funding_pct
FROM gold.trades_daily t
LEFT JOIN gold.klines_1d k
  ON k.market = t.market AND k.symbol = t.symbol AND CAST(k.open_time AS DATE) = t.date
LEFT JOIN gold.funding_daily f
  ON f.market = t.market AND f.symbol = t.symbol AND f.date = t.date
ORDER BY t.market, t.symbol, t.date LIMIT 8
"""


def demo_silver(run: Any) -> None:
    state, summary = run_silver_flow(2)
    console.print(f"  Prefect flow run build-silver ended {state}")
    print_silver(summary)
    for item in summary.drift + summary.corrupt + summary.failed:
        run.problems.append(f"silver: {item['file']}: {item['detail']}")
    run.report.append(
        (
            "silver",
            f"{summary.transformed} transformed, {summary.skipped} already in, "
            f"{summary.rows:,} rows, {summary.rejects} rejects",
        )
    )


def demo_gold(run: Any) -> None:
    from crypto_lakehouse.flows.silver import gold_and_coverage

    result = gold_and_coverage(run.settings)
    for table, rows in sorted(result["rows"].items()):
        console.print(f"  {table:<28} {rows:,} rows")
    console.print(
        f"  resampled bars checked against Binance's own: {result['checked']}, "
        f"mismatched: {len(result['mismatches'])}"
    )
    run.problems += [f"gold: resampled bar differs: {m}" for m in result["mismatches"]]
    run.report.append(("gold", f"{result['checked']} bars checked, "
                               f"{len(result['mismatches'])} mismatched"))  # fmt: skip


def demo_query(run: Any) -> None:
    from crypto_lakehouse.lake.query import QueryEngine
    from crypto_lakehouse.lake.warehouse import LakeConfig, Warehouse

    console.print(f'  crypto-lakehouse query "{" ".join(SAMPLE_QUERY.split())}"', soft_wrap=True)
    with QueryEngine(Warehouse(LakeConfig.from_settings(run.settings))) as engine:
        _emit(engine.sql(SAMPLE_QUERY), Format.table, None, 8)


def demo_coverage(run: Any) -> None:
    from crypto_lakehouse.lake.warehouse import LakeConfig

    config = LakeConfig.from_settings(run.settings)
    target = run.settings.home_dir / "reports" / "coverage.html"
    summaries, attention, path = coverage_report(config, target)
    print_coverage(summaries, attention)
    console.print(f"  coverage report (open in a browser): {path}")
    run.report.append(("coverage", str(path)))


DEMO_STEPS = [
    ("build silver Iceberg tables (Prefect flow build-silver)", demo_silver),
    ("build gold tables and check resampled klines against Binance's", demo_gold),
    ("query the lake with DuckDB", demo_query),
    ("write the coverage report", demo_coverage),
]
