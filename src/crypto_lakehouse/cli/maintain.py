"""`crypto-lakehouse maintain`: compact, expire snapshots, remove orphans on the lake's tables.

Exit codes: 0 ok; 2 bad arguments, settings or an unknown table; 3 a table's maintenance
failed (the others still ran); 4 storage unreachable; 5 the local stack is not running.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crypto_lakehouse.cli._common import ExitCode, console, fail, handle_errors, load_settings
from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.lake.maintenance import (
    DEFAULT_EXPIRE_OLDER_THAN,
    DEFAULT_ORPHANS_OLDER_THAN,
    DEFAULT_RETAIN_LAST,
    MaintenanceOptions,
    MaintenanceReport,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`30m`, `12h`, `7d`, `2w` (or `0`) as a timedelta; ConfigError otherwise."""
    if text.strip() == "0":
        return timedelta(0)
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(f"not a duration: {text!r} (use e.g. 30m, 12h, 7d, 2w, or 0)")
    return timedelta(**{_UNITS[match[2]]: float(match[1])})


def _days(value: timedelta) -> str:
    return (
        f"{value.days}d" if value == timedelta(days=value.days) else f"{value.total_seconds():g}s"
    )


def _settings() -> Settings:
    """Settings, filled from the local stack when the environment does not say otherwise."""
    from crypto_lakehouse.cli.flows import use_stack_environment

    try:
        return use_stack_environment()
    except ConfigError:
        return load_settings()  # maintenance needs the catalog and S3, not Prefect


@handle_errors
def maintain(
    table: Annotated[
        list[str] | None, typer.Option("--table", help="Only this table (repeat); default: all.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Show what would happen; change nothing.")] = False,
    compact: Annotated[bool, typer.Option(help="Rewrite small data files.")] = True,
    expire_older_than: Annotated[
        str, typer.Option(help="Expire snapshots older than this (30m, 12h, 7d, 2w).")
    ] = _days(DEFAULT_EXPIRE_OLDER_THAN),
    retain_last: Annotated[
        int, typer.Option(min=1, help="Always keep this many latest snapshots.")
    ] = DEFAULT_RETAIN_LAST,
    orphans_older_than: Annotated[
        str, typer.Option(help="Delete unreferenced files only when older than this.")
    ] = _days(DEFAULT_ORPHANS_OLDER_THAN),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Compact small files, expire old snapshots and remove orphan files (silver and gold)."""
    from crypto_lakehouse.lake.maintenance import maintain as run
    from crypto_lakehouse.lake.warehouse import LakeConfig, Warehouse

    options = MaintenanceOptions(
        compact=compact,
        dry_run=dry_run,
        expire_older_than=parse_duration(expire_older_than),
        retain_last=retain_last,
        orphans_older_than=parse_duration(orphans_older_than),
    )
    warehouse = Warehouse(LakeConfig.from_settings(_settings()))
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True, disable=as_json) as bar:
        task = bar.add_task("tables", total=None)

        def progress(name: str, step: str, done: int, total: int) -> None:
            bar.update(task, description=f"{name}: {step}", completed=done, total=total)

        report = run(warehouse, options, table, progress)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=1))
    else:
        print_report(report)
    if not report.ok:
        raise fail("maintenance failed on some tables", ExitCode.OBJECTS_FAILED)


def print_report(report: MaintenanceReport) -> None:
    title = "maintenance (dry run: nothing changed)" if report.dry_run else "maintenance"
    summary = Table(title=title, show_edge=False, pad_edge=False)
    summary.add_column("table", no_wrap=True)
    for heading in ("files", "rows", "expired", "orphans", "metadata.json", "s"):
        summary.add_column(heading, justify="right")
    for t in report.tables:
        summary.add_row(
            t.table,
            f"{t.files_before:,} -> {t.files_after:,}",
            f"{t.rows_after:,}" + ("" if t.rows_after == t.rows_before else " [red]changed[/]"),
            f"{t.snapshots_expired}",
            f"{len(t.orphans)} ({_size(t.orphan_bytes)})",
            f"{_size(t.metadata_bytes_before)} -> {_size(t.metadata_bytes_after)}",
            f"{t.seconds:.1f}",
        )
    console.print(summary)
    for t in report.tables:
        if t.note:
            console.print(f"  {t.table}: {t.note}")
        if t.error:
            console.print(f"  [red]{t.table} failed:[/] {t.error}", soft_wrap=True)
        if report.dry_run:
            for uri in t.orphans:
                console.print(f"  would delete {uri}", soft_wrap=True, highlight=False)


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / 1024 / 1024:,.1f} MiB"
