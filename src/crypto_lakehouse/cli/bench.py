"""`crypto-lakehouse bench ...`: measurements, printed as tables with ratios, optionally JSON."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from crypto_lakehouse.cli._common import console, handle_errors, load_settings

app = typer.Typer(help="Benchmarks: measure against baselines on this machine, in one run.")


@app.command()
@handle_errors
def transfer(
    quick: bool = typer.Option(False, "--quick", help="Smaller workloads, fewer repeats."),
    json_file: Path | None = typer.Option(None, "--json", help="Also write results as JSON here."),
    objects: int | None = typer.Option(
        None,
        "--objects",
        min=1,
        help="Memory mode: copy this many 1 KiB objects with the engine and report its peak "
        "RSS and staging bytes (e.g. 100000).",
    ),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Measured runs per method (median)."),
) -> None:
    """engine-direct, engine-staged, traditional, s5cmd-raw, rclone and naive-boto3, side by side."""
    from crypto_lakehouse.bench.transfer import TransferBench

    bench = TransferBench(load_settings(), quick=quick, repeats=repeats, log=console.print)
    if objects is not None:
        result = bench.run_memory(objects)
    else:
        result = bench.run()
    console.print(result.table())
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(result.as_json(), indent=2) + "\n")
        console.print(f"results written to {json_file}")
