"""The `crypto-lakehouse` command: thin wrappers that parse, call one part, print.

Command modules load on first use (`LazyGroup`): `query "SELECT 1"` must not pay for
boto3, Prefect, pyiceberg or the transfer engine that other commands need. Root `--help`
loads every module, to print each command's own help line.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

from crypto_lakehouse import __version__

if TYPE_CHECKING:  # typer's own click (it vendors one)
    from typer._click import Command, Context

# name -> (module under crypto_lakehouse.cli, attribute): a function registered as a command
# or a typer app registered as a group. Commands first, then groups: the root help's order.
_COMMANDS: dict[str, tuple[str, str]] = {
    "sync": ("sync", "sync"),
    "sample-archive": ("archive", "sample_archive"),
    "worker": ("flows", "worker"),
    "ingest": ("ingest", "ingest"),
    "demo": ("demo", "demo"),
    "silver": ("lake", "silver"),
    "gold": ("lake", "gold"),
    "update": ("update", "update"),
    "query": ("lake", "query"),
    "coverage": ("lake", "coverage"),
    "maintain": ("maintain", "maintain"),
    "validate": ("validate", "validate"),
}
_GROUPS: dict[str, str] = {
    "stack": "stack",
    "bench": "bench",
    "exporter": "exporter",
    "executor": "executor",
    "flows": "flows",
}


def load_command(name: str) -> Command:
    """Import the module behind `name` and build its click command as the root would."""
    holder = typer.Typer(rich_markup_mode="rich")  # as the root app
    if name in _GROUPS:
        module = importlib.import_module(f"crypto_lakehouse.cli.{_GROUPS[name]}")
        holder.add_typer(module.app, name=name)
    else:
        module_name, attribute = _COMMANDS[name]
        module = importlib.import_module(f"crypto_lakehouse.cli.{module_name}")
        holder.command(name)(getattr(module, attribute))
    return typer.main.get_group(holder).commands[name]


class LazyGroup(TyperGroup):
    """The root group: knows every command's name, imports a command's module when asked."""

    def list_commands(self, ctx: Context) -> list[str]:
        known = super().list_commands(ctx)
        return known + [name for name in [*_COMMANDS, *_GROUPS] if name not in known]

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands and (cmd_name in _COMMANDS or cmd_name in _GROUPS):
            self.add_command(load_command(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="crypto-lakehouse",
    cls=LazyGroup,
    help="Keep a private, verified copy of crypto market-data archives and serve it as tables.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"crypto-lakehouse {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Exit codes: 0 ok; 1 unexpected error; 2 bad input or settings; 3 some objects failed or
    were corrupt; 4 storage or a service unreachable, failing or refusing; 5 a local service
    could not start; 6 (validate) a performance target was missed or could not be measured."""


def main() -> None:
    app()
