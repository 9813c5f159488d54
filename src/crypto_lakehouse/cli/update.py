"""`crypto-lakehouse update`: the daily job (flow daily-update) run here, step by step."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Any

import typer

from crypto_lakehouse.cli._common import ExitCode, console, handle_errors
from crypto_lakehouse.errors import ConfigError


def _day(text: str | None, name: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        raise ConfigError(f"--{name} is a day, YYYY-MM-DD; got {text!r}") from None


@handle_errors
def update(
    start: Annotated[
        str | None, typer.Option(help="First day, YYYY-MM-DD (default: yesterday, UTC).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Last day (default: --start).")] = None,
    market: Annotated[list[str] | None, typer.Option(help="Only this market (repeat).")] = None,
    data_type: Annotated[list[str] | None, typer.Option(help="Only this data type.")] = None,
    symbol: Annotated[list[str] | None, typer.Option(help="Only this symbol.")] = None,
    source: Annotated[
        str | None,
        typer.Option(help="'binance' (the real archive) or an S3 URL; default SOURCE_ENDPOINT."),
    ] = None,
    source_bucket: Annotated[
        str | None, typer.Option(help="Bucket holding data/ (default: the archive's).")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show Prefect's task logs.")
    ] = False,
) -> None:
    """Ingest a day (default yesterday, UTC), then bring silver and gold up to date.

    One flow run (daily-update) with ingest-archive, build-silver and build-gold as its
    subflows, in this process; the deployment `daily-update` runs the same on a schedule.
    Exits 3 when a step failed (the others still ran), 2 on bad input.
    """
    from crypto_lakehouse.cli.flows import use_stack_environment
    from crypto_lakehouse.cli.ingest import preflight_binance, quiet_prefect

    first, last = _day(start, "start"), _day(end, "end")
    if first and last and last < first:
        raise ConfigError(f"--end {last} is before --start {first}")
    preflight_binance(source)
    quiet_prefect(verbose)
    use_stack_environment()
    from crypto_lakehouse.flows.update import daily_update

    async def go() -> tuple[Any, Any]:
        state = await daily_update(
            start=first, end=last, markets=market or None, data_types=data_type or None,
            symbols=symbol or None, source=source, source_bucket=source_bucket,
            return_state=True,
        )  # fmt: skip
        return state, await state.result(raise_on_failure=False)

    with console.status("daily-update: ingest, silver, gold..."):
        state, result = asyncio.run(go())
    if not isinstance(result, dict):
        raise ConfigError(f"daily-update ended {state.name}: {result}")
    console.print(f"daily-update {result['start']}..{result['end']} ended {state.name}")
    for name, step in result["steps"].items():
        line = f"  {name:<7} {step['state']:<10} {step['seconds']:>7.1f} s"
        if step["error"]:
            line += f"  {step['error']}"
        console.print(line, soft_wrap=True)
    if not state.is_completed():
        raise typer.Exit(int(ExitCode.OBJECTS_FAILED))
