"""`crypto-lakehouse validate`: measure the design's four performance targets, honestly."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from crypto_lakehouse.cli._common import ExitCode, console, handle_errors, load_settings
from crypto_lakehouse.storage import Endpoint
from crypto_lakehouse.transfer import EngineOptions
from crypto_lakehouse.validation import TARGETS, ValidationReport, Validator


def _endpoint_from_settings_or_stack(settings, use_stack: bool) -> tuple[Endpoint, str | None]:  # noqa: ANN001
    from crypto_lakehouse.stack.manager import LocalStack

    if settings.lake_endpoint and not use_stack:
        lake = Endpoint(
            url=settings.lake_endpoint,
            access_key=settings.lake_access_key,
            secret_key=settings.lake_secret_key,
            region=settings.lake_region,
        )
        return lake, None
    stack = LocalStack.from_settings(settings)
    stack.require_running()
    return stack.lake_endpoint(), stack.prefect.api_url


def _print(report: ValidationReport) -> None:
    table = Table("target", "design claim", "measured", "verdict", "how")
    for result in report.results:
        target = TARGETS[result.key]
        measured = "-" if result.measured is None else f"{result.measured:g} {target.unit}"
        verdict = {True: "[green]met[/]", False: "[red]missed[/]", None: "[yellow]not measured[/]"}
        note = f"\n[dim]{result.note}[/]" if result.note else ""
        table.add_row(result.key, target.claim, measured, verdict[result.passed], result.method + note)
    console.print(table)


def validate(
    prefect_api: str | None = typer.Option(
        None, "--prefect-api", help="Prefect API URL (default: the local stack's)."
    ),
    only: list[str] = typer.Option(
        [], "--only", help=f"Measure only these targets: {', '.join(TARGETS)}."
    ),
    flow_runs: int = typer.Option(100, "--flow-runs", min=1, max=2000),
    small_objects: int = typer.Option(500, "--small-objects", min=10, max=100_000),
    json_file: Path | None = typer.Option(None, "--json", help="Also write the report here."),
    local_stack: bool = typer.Option(
        True, "--local-stack/--configured", help="Measure the local stack or MINIO_* settings."
    ),
) -> None:
    """Measure s5cmd improvement, concurrent workflows, API p95 and storage throughput.

    Exit code 0 when every measured target is met, 6 when any is missed or unmeasured.
    """
    unknown = set(only) - set(TARGETS)
    if unknown:
        raise typer.BadParameter(f"unknown target(s) {sorted(unknown)}", param_hint="--only")
    run = handle_errors(_run)
    run(prefect_api, set(only), flow_runs, small_objects, json_file, local_stack)


def _run(prefect_api, only, flow_runs, small_objects, json_file, local_stack) -> None:  # noqa: ANN001
    settings = load_settings()
    lake, stack_api = _endpoint_from_settings_or_stack(settings, local_stack)
    validator = Validator(
        lake=lake,
        engine_options=EngineOptions.from_settings(settings),
        prefect_api_url=prefect_api or stack_api,
        flow_runs=flow_runs,
        small_objects=small_objects,
        log=lambda msg: console.print(f"[dim]{msg}[/]"),
    )
    report = validator.run(only or None)
    _print(report)
    if json_file is not None:
        json_file.write_text(json.dumps(report.as_json(), indent=2) + "\n")
        console.print(f"report written to {json_file}")
    if not report.all_met:
        raise typer.Exit(ExitCode.TARGETS_MISSED)
