"""The `crypto-lakehouse` command: thin wrappers that parse, call one part, print."""

from __future__ import annotations

import typer

from crypto_lakehouse import __version__
from crypto_lakehouse.cli import bench, exporter, stack, sync
from crypto_lakehouse.cli import demo as demo_cli
from crypto_lakehouse.cli import executor as executor_cli
from crypto_lakehouse.cli import flows as flows_cli
from crypto_lakehouse.cli import ingest as ingest_cli
from crypto_lakehouse.cli import lake as lake_cli
from crypto_lakehouse.cli import maintain as maintain_cli
from crypto_lakehouse.cli.archive import sample_archive
from crypto_lakehouse.cli.validate import validate

app = typer.Typer(
    name="crypto-lakehouse",
    help="Keep a private, verified copy of crypto market-data archives and serve it as tables.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(stack.app, name="stack")
app.command("sync")(sync.sync)
app.add_typer(bench.app, name="bench")
app.command("sample-archive")(sample_archive)
app.add_typer(exporter.app, name="exporter")
app.add_typer(executor_cli.app, name="executor")
app.add_typer(flows_cli.app, name="flows")
app.command("worker")(flows_cli.worker)
app.command("ingest")(ingest_cli.ingest)
app.command("demo")(demo_cli.demo)
app.command("silver")(lake_cli.silver)
app.command("gold")(lake_cli.gold)
app.command("query")(lake_cli.query)
app.command("coverage")(lake_cli.coverage)
app.command("maintain")(maintain_cli.maintain)
app.command("validate")(validate)


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
    were corrupt; 4 storage unreachable or refused; 5 a local service could not start;
    6 (validate) a performance target was missed or could not be measured."""


def main() -> None:
    app()
