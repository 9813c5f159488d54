"""`crypto-lakehouse stack up|down|status|env`: the real local services."""

from __future__ import annotations

import shlex

import typer
from rich.table import Table

from crypto_lakehouse.cli._common import console, handle_errors, load_settings
from crypto_lakehouse.stack.manager import LocalStack, ServiceStatus

app = typer.Typer(help="Start, stop and inspect the local services (state in $LAKEHOUSE_HOME).")


def _print_status(rows: list[ServiceStatus]) -> None:
    table = Table("service", "address", "pid", "health")
    for row in rows:
        health = "[green]up[/]" if row.healthy else "[red]down[/]"
        table.add_row(row.name, row.address, str(row.pid or "-"), health)
    console.print(table)


@app.command()
@handle_errors
def up() -> None:
    """Start every service that is not running and wait until each answers a real request."""
    stack = LocalStack.from_settings(load_settings())
    with console.status("starting the local stack..."):
        rows = stack.up()
    _print_status(rows)
    console.print('Point other shells at it with: [bold]eval "$(crypto-lakehouse stack env)"[/]')


@app.command()
@handle_errors
def down() -> None:
    """Stop the services this stack started (by PID) and wait for them to exit."""
    stack = LocalStack.from_settings(load_settings())
    with console.status("stopping the local stack..."):
        stopped = stack.down()
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command()
@handle_errors
def status() -> None:
    """Show each service's address, PID and health. Exit code 1 when something is down."""
    stack = LocalStack.from_settings(load_settings())
    rows = stack.status()
    _print_status(rows)
    if not all(r.healthy for r in rows):
        raise typer.Exit(1)


@app.command()
@handle_errors
def env() -> None:
    """Print shell exports (including credentials) for this stack: eval "$(... stack env)"."""
    stack = LocalStack.from_settings(load_settings())
    if not stack.initialised:
        console.print("# the stack has never been started: run `crypto-lakehouse stack up`")
        raise typer.Exit(1)
    for key, value in stack.env().items():
        typer.echo(f"export {key}={shlex.quote(value)}")
