"""`crypto-lakehouse validate`: measure the design's four performance targets, honestly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crypto_lakehouse.cli._common import ExitCode, console, handle_errors, load_settings
from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.storage import Endpoint
from crypto_lakehouse.transfer import EngineOptions
from crypto_lakehouse.validation import TARGETS, ValidationReport, Validator

_VERDICT = {True: "[green]met[/]", False: "[red]missed[/]", None: "[yellow]not measured[/]"}


def _targets_of(settings: Settings, use_stack: bool) -> tuple[Endpoint, str | None]:
    """The lake endpoint and Prefect API to measure: the local stack's, or the configured ones."""
    if not use_stack:
        if not settings.lake_endpoint:
            raise ConfigError("--configured needs MINIO_ENDPOINT (and its keys)")
        lake = Endpoint(
            url=settings.lake_endpoint,
            access_key=settings.lake_access_key,
            secret_key=settings.lake_secret_key,
            region=settings.lake_region,
        )
        return lake, None
    from crypto_lakehouse.stack.manager import LocalStack

    stack = LocalStack.from_settings(settings)
    stack.require_running()
    return stack.lake_endpoint(), stack.prefect.api_url


def _print(report: ValidationReport) -> None:
    table = Table("target", "design claim", "measured", "verdict", "how")
    for result in report.results:
        target = TARGETS[result.key]
        measured = "-" if result.measured is None else f"{result.measured:g} {target.unit}"
        how = result.method + (f"\n[dim]{result.note}[/]" if result.note else "")
        table.add_row(result.key, target.claim, measured, _VERDICT[result.passed], how)
    console.print(table)


@handle_errors
def validate(
    prefect_api: Annotated[
        str | None, typer.Option("--prefect-api", help="Prefect API URL (default: the stack's).")
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Measure only this target (repeatable): " + ", ".join(TARGETS)),
    ] = None,
    flow_runs: Annotated[int, typer.Option("--flow-runs", min=1, max=2000)] = 100,
    small_objects: Annotated[int, typer.Option("--small-objects", min=10, max=100_000)] = 500,
    json_file: Annotated[Path | None, typer.Option("--json", help="Also write JSON here.")] = None,
    local_stack: Annotated[
        bool,
        typer.Option("--local-stack/--configured", help="The local stack, or MINIO_* settings."),
    ] = True,
) -> None:
    """Measure s5cmd improvement, concurrent workflows, API p95 and storage throughput.

    Exit code 0 when every target is met, 6 when any is missed or could not be measured.
    """
    unknown = set(only or ()) - set(TARGETS)
    if unknown:
        raise ConfigError(f"unknown target(s) {sorted(unknown)}; known: {', '.join(TARGETS)}")
    settings = load_settings()
    lake, stack_api = _targets_of(settings, local_stack)
    validator = Validator(
        lake=lake,
        engine_options=EngineOptions.from_settings(settings),
        prefect_api_url=prefect_api or stack_api,
        flow_runs=flow_runs,
        small_objects=small_objects,
        log=lambda msg: console.print(f"[dim]{msg}[/]"),
    )
    report = validator.run(set(only) if only else None)
    _print(report)
    if json_file is not None:
        json_file.write_text(json.dumps(report.as_json(), indent=2) + "\n")
        console.print(f"report written to {json_file}")
    if not report.all_met:
        raise typer.Exit(int(ExitCode.TARGETS_MISSED))
