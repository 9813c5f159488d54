"""`crypto-lakehouse ingest`: run the ingest-archive flow here, with progress and a summary.

Exit codes: 0 every covered file verified; 3 some files corrupt or failed (listed);
2 bad input; 4 the source or lake cannot be reached; 5 the stack is not running.
"""

from __future__ import annotations

import asyncio
import os
from datetime import date
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from crypto_lakehouse.cli._common import ExitCode, console, handle_errors
from crypto_lakehouse.flows.progress import IngestEvent
from crypto_lakehouse.flows.summary import IngestSummary
from crypto_lakehouse.flows.target import IngestRequest

# Defaults live in IngestRequest; the CLI only shows them.
_DEFAULT = {name: field.default for name, field in IngestRequest.model_fields.items()}
PROBLEMS_SHOWN = 20  # files listed on the console; a broken lake can fail thousands at once


def quiet_prefect(verbose: bool) -> None:
    """Prefect's log lines repeat what the summary says; show them only with --verbose.

    Must run before Prefect is imported (it reads its logging level once).
    """
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "CRITICAL")


def preflight_binance(source: str | None) -> None:
    """The real archive is often unreachable (no internet): say so in a second, not a minute."""
    if source != "binance":
        return
    from crypto_lakehouse.archive import binance_source
    from crypto_lakehouse.storage import S3Storage

    real = binance_source()
    S3Storage(real.endpoint, timeout=5.0, retries=0).probe_bucket(real.bucket)


def ui_url() -> str:
    return os.environ.get("PREFECT_API_URL", "").removesuffix("/api")


def run_with_progress(
    request: IngestRequest | dict[str, Any] | None = None, *, show: bool = True
) -> Any:
    """Run the flow for `request` (or its fields) in this process; a progress bar follows
    files and bytes."""
    from crypto_lakehouse.flows.local import run_ingest_locally

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=console, transient=True, disable=not show) as bar:
        files = bar.add_task("files", total=None, detail="listing the archive...")
        moved = bar.add_task("bytes", total=None, detail="", visible=False)

        def listener(event: IngestEvent) -> None:
            if event.kind == "planned":
                bar.update(files, total=max(event.files, 1), detail=f"{event.files} to transfer")
                bar.update(moved, total=max(event.bytes, 1), visible=event.files > 0)
                if event.files == 0:
                    bar.update(files, completed=1, detail="nothing to transfer")
            elif event.kind == "batch":
                bar.update(files, advance=event.files, detail=event.label)
            elif event.kind == "bytes":
                bar.update(moved, advance=event.bytes)

        return asyncio.run(run_ingest_locally(request, listener))


def print_summary(summary: IngestSummary, flow_run_id: str) -> None:
    table = Table(title="ingest summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("files", summary.listed),
        ("bytes", f"{summary.listed_bytes:,}"),
        ("verified", summary.verified),
        ("replaced (new version, old kept in history)", summary.replaced),
        ("re-verified (same bytes)", summary.reverified),
        ("skipped (already verified)", summary.skipped),
        ("corrupt (quarantined)", summary.corrupt),
        ("failed", summary.failed),
        ("missing days/months in the archive", summary.missing_days),
        ("missing files (inside a series)", summary.missing_periods),
        ("seconds", f"{summary.seconds:.1f}"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)
    if summary.incremental:
        console.print("[green]incremental:[/] every file was already verified; nothing moved")
    for problem in summary.problems[:PROBLEMS_SHOWN]:
        known = " (known, unchanged at the source)" if problem.known else ""
        console.print(f"[red]{problem.kind}{known}:[/] {problem.path}", soft_wrap=True)
        console.print(f"  {problem.error}", soft_wrap=True, highlight=False)
    if unshown := summary.not_shown(PROBLEMS_SHOWN):
        console.print(
            f"[red]... and {unshown:,} more files not verified[/] "
            "(all of them: the run's `ingest-problems` artifact, or the manifest's rows with "
            "status corrupt/failed); a re-run retries them",
            soft_wrap=True,
        )
    for gap in summary.missing[:20]:
        console.print(f"[yellow]missing:[/] {gap}", soft_wrap=True)
    if len(summary.missing) > 20:
        console.print(f"[yellow]... and {len(summary.missing) - 20} more series with gaps[/]")
    if ui_url():
        console.print(f"Prefect run: {ui_url()}/runs/flow-run/{flow_run_id}", soft_wrap=True)


@handle_errors
def ingest(
    market: Annotated[
        list[str] | None,
        typer.Option("--market", "-m", help="spot, futures/um, futures/cm, option (default all)."),
    ] = None,
    data_type: Annotated[
        list[str] | None, typer.Option("--data-type", "-d", help="e.g. klines (repeatable).")
    ] = None,
    frequency: Annotated[
        list[str] | None, typer.Option("--frequency", help="daily, monthly (repeatable).")
    ] = None,
    interval: Annotated[
        list[str] | None, typer.Option("--interval", "-i", help="e.g. 1h (repeatable).")
    ] = None,
    symbol: Annotated[
        list[str] | None, typer.Option("--symbol", "-s", help="Name or glob (repeatable).")
    ] = None,
    quote: Annotated[
        str | None, typer.Option(help="Only symbols quoted in this asset (USDT).")
    ] = None,
    start: Annotated[str | None, typer.Option(help="First day, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option(help="Last day, YYYY-MM-DD.")] = None,
    source: Annotated[
        str | None,
        typer.Option(help="'binance' (the real archive) or an S3 URL; default SOURCE_ENDPOINT."),
    ] = None,
    source_bucket: Annotated[
        str | None,
        typer.Option(help=f"Bucket holding data/ (default {_DEFAULT['source_bucket']})."),
    ] = None,
    bronze_bucket: Annotated[
        str | None, typer.Option(help="Default BRONZE_BUCKET (bronze).")
    ] = None,
    batch_files: Annotated[
        int | None,
        typer.Option(
            min=1, help=f"Most files per transfer task (default {_DEFAULT['batch_files']})."
        ),
    ] = None,
    parallel: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help=f"Transfer tasks in flight (default {_DEFAULT['parallel_batches']}).",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's task logs.")
    ] = False,
    fan_out: Annotated[
        bool,
        typer.Option(
            "--fan-out",
            help="Flow ingest-fanout: above --min-files files, child runs on the transfer "
            "pool's workers (deployment ingest-part/bronze-part) share the work.",
        ),
    ] = False,
    children: Annotated[int, typer.Option(min=1, max=64, help="With --fan-out.")] = 4,
    min_files: Annotated[int, typer.Option(min=0, help="With --fan-out.")] = 2000,
) -> None:
    """Copy archive files into bronze, verify each against its CHECKSUM, record the manifest."""
    from crypto_lakehouse.cli.flows import use_stack_environment
    from crypto_lakehouse.errors import ConfigError

    try:
        dates = [date.fromisoformat(d) if d else None for d in (start, end)]
    except ValueError as exc:
        raise ConfigError(f"dates are YYYY-MM-DD: {exc}") from None
    flags = {
        "markets": market or None,
        "data_types": data_type or None,
        "frequencies": frequency or None,
        "intervals": interval or None,
        "symbols": symbol or None,
        "quote": quote,
        "start": dates[0],
        "end": dates[1],
        "source": source,
        "source_bucket": source_bucket,
        "bronze_bucket": bronze_bucket,
        "batch_files": batch_files,
        "parallel_batches": parallel,
    }
    request = IngestRequest(**{k: v for k, v in flags.items() if v is not None})
    preflight_binance(source)
    quiet_prefect(verbose)
    use_stack_environment()
    if fan_out:
        run_fanned_out(request, children, min_files)
        return
    run = run_with_progress(request)
    print_summary(run.summary, run.flow_run_id)
    if not run.ok:
        raise typer.Exit(int(ExitCode.OBJECTS_FAILED))


def print_children(fan: dict[str, Any]) -> None:
    """One line per child run of a fanned-out flow: share, worker, state, seconds."""
    if not fan["fanned_out"]:
        console.print(f"{fan['files']} files: ran in this process (no fan-out)")
        return
    table = Table("child run", "share", "files", "worker", "state", "seconds")
    if fan.get("pieces"):  # ingest: the parent works through pieces too
        mine = f"{len(fan['parent_pieces'])} of {fan['pieces']} pieces"
        table.add_row("(this process)", mine, str(fan["parent_files"]), "", "", "")
    for c in fan["children"]:
        seconds = f"{c['seconds']:.1f}" if c["seconds"] is not None else ""
        table.add_row(
            c["name"], c["share"], str(c["files"]), c["worker"] or "", c["state"], seconds
        )
    console.print(table)


def run_fanned_out(request: IngestRequest, children: int, min_files: int) -> None:
    from crypto_lakehouse.flows import fanout

    with console.status("ingest-fanout: counting, then waiting for the child runs..."):
        state, data = asyncio.run(
            fanout.run_locally(
                fanout.ingest_fanout, request=request, children=children, min_files=min_files
            )
        )
    print_children(data["fanout"])
    summary = IngestSummary.from_dict(data)
    print_summary(summary, "")
    console.print(f"ingest-fanout ended {state}")
    if state != "Completed":
        raise typer.Exit(int(ExitCode.OBJECTS_FAILED))
