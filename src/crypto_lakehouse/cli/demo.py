"""`crypto-lakehouse demo`: the main job end to end on this machine, as a list of steps.

    1. start the local stack (SeaweedFS source + lake, PostgreSQL, Prefect)
    2. write the sample archive (Binance's layout, planted defects) to the source endpoint
    3. ingest it into the lake's bronze bucket through the ingest-archive flow

Later parts append their own steps to `STEPS` (silver, gold, queries, coverage). A step
gets the shared `DemoRun`, prints what it did, and records findings.

Exit rule: 0 when every step ran and every file the archive covers is verified in bronze
except the sample's *planted* defects (the corrupt file is quarantined and listed as an
expected finding; the missing day is reported). That planted corrupt file makes the
ingest flow run end Failed in Prefect, by design. Exit 3 when a file that was not planted
as a defect is corrupt or failed; a step that cannot run exits with its error's code
(4 storage, 5 stack, ...).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import typer
from rich.rule import Rule

from crypto_lakehouse.cli._common import ExitCode, console, handle_errors, load_settings
from crypto_lakehouse.cli.lake import DEMO_STEPS as LAKE_STEPS
from crypto_lakehouse.config import Settings
from crypto_lakehouse.stack.manager import LocalStack

ARCHIVE_BUCKET = "data.binance.vision"  # the local source plays the real bucket, same name


@dataclass
class DemoRun:
    """What the steps share: settings, the stack, options, results, and the verdict."""

    settings: Settings
    stack: LocalStack
    options: dict[str, Any]
    results: dict[str, Any] = field(default_factory=dict)  # step outputs, by step
    findings: list[str] = field(default_factory=list)  # expected (planted) findings
    problems: list[str] = field(default_factory=list)  # unexpected: the demo exits 3
    report: list[tuple[str, str]] = field(default_factory=list)  # final summary rows


Step = tuple[str, Callable[[DemoRun], None]]


def start_stack(run: DemoRun) -> None:
    from crypto_lakehouse.cli.flows import use_stack_environment

    with console.status("starting SeaweedFS x2, PostgreSQL and Prefect (first start ~1 min)"):
        rows = run.stack.up()
    for row in rows:
        console.print(f"  {row.name:<30} {row.address:<26} {'up' if row.healthy else 'DOWN'}")
    run.settings = use_stack_environment()


def write_archive(run: DemoRun) -> None:
    from crypto_lakehouse.archive.publisher import write_sample
    from crypto_lakehouse.archive.sample import SampleSpec
    from crypto_lakehouse.storage import S3Storage, S3Url

    spec = SampleSpec(
        seed=run.options["seed"], symbols=run.options["symbols"], revision=run.options["revision"]
    )
    storage = S3Storage(run.stack.source.endpoint())
    storage.ensure_bucket(ARCHIVE_BUCKET)
    with console.status("writing the sample archive..."):
        sample = write_sample(spec, storage, S3Url(ARCHIVE_BUCKET, ""))
    run.results["sample"] = sample
    console.print(
        f"  s3://{ARCHIVE_BUCKET}/data/ on {run.stack.source.url}: {len(sample.files)} files "
        f"({sample.bytes / 1e6:.1f} MB with sidecars); written {sample.uploaded}, "
        f"unchanged {sample.unchanged}"
    )
    console.print(
        f"  planted: {len(sample.corrupt)} corrupt, {len(sample.replaced)} replaced "
        f"(revision {sample.revision}), {len(sample.missing)} missing files, "
        f"{len(sample.delisted)} delisted symbols, {len(sample.real)} real Binance files"
    )


def ingest_bronze(run: DemoRun) -> None:
    from crypto_lakehouse.cli.ingest import print_summary, run_with_progress

    parameters = {
        "source_bucket": ARCHIVE_BUCKET,
        "bronze_bucket": run.settings.bronze_bucket,
        "parallel_batches": run.options["parallel"],
    }
    ingest = run_with_progress(parameters)
    run.results["ingest"] = ingest
    summary = ingest.summary
    print_summary(summary, ingest.flow_run_id)
    planted = set(run.results["sample"].corrupt) if "sample" in run.results else set()
    for problem in summary.problems:
        if problem.kind == "corrupt" and problem.path in planted:
            run.findings.append(
                f"planted corrupt file quarantined, kept out of bronze: {problem.path}"
            )
        else:
            run.problems.append(f"{problem.kind}: {problem.path}: {problem.error}")
    if summary.missing_periods:
        run.findings.append(
            f"{summary.missing_days} day(s)/month(s) missing in the archive "
            f"({summary.missing_periods} files across its series), reported"
        )
    if summary.replaced:
        run.findings.append(f"{summary.replaced} replaced file(s) ingested again, old version kept")
    if summary.incremental:
        mode = f"incremental: nothing transferred, {summary.skipped} files already verified"
    elif summary.skipped:
        mode = (
            f"incremental: {summary.transferred} new or changed file(s) transferred, "
            f"{summary.skipped} already verified"
        )
    else:
        mode = "first ingest"
    run.report += [
        ("ingest", f"{mode}; Prefect flow run ended {ingest.state}"),
        ("files", str(summary.listed)),
        ("bytes", f"{summary.listed_bytes:,}"),
        ("verified", str(summary.verified + summary.replaced + summary.reverified)),
        ("skipped", str(summary.skipped)),
        ("replaced", str(summary.replaced)),
        ("corrupt", str(summary.corrupt)),
        ("missing days", f"{summary.missing_days} ({summary.missing_periods} files)"),
        ("ingest seconds", f"{summary.seconds:.1f}"),
    ]


STEPS: list[Step] = [
    ("start the local stack", start_stack),
    ("write the sample archive to the source endpoint", write_archive),
    ("ingest the archive into bronze (Prefect flow ingest-archive)", ingest_bronze),
    *LAKE_STEPS,  # silver, gold, a query, the coverage report (cli/lake.py)
]


def run_steps(run: DemoRun, steps: list[Step]) -> float:
    """Run every step in order; an exception stops the demo (handled by the command)."""
    started = time.monotonic()
    for number, (title, step) in enumerate(steps, start=1):
        console.print(Rule(f"[bold]{number}. {title}", align="left"))
        step(run)
    return time.monotonic() - started


def print_report(run: DemoRun, seconds: float) -> None:
    console.print(Rule("[bold]demo summary", align="left"))
    for name, value in run.report:
        console.print(f"  {name:<16} {value}")
    console.print(f"  {'total seconds':<16} {seconds:.1f}")
    for finding in run.findings:
        console.print(f"  [yellow]expected:[/] {finding}", soft_wrap=True)
    for problem in run.problems:
        console.print(f"  [red]unexpected:[/] {problem}", soft_wrap=True)
    ui = run.stack.prefect.ui_url
    if ui:
        console.print(f"  Prefect UI: {ui}  (flow runs: {ui}/runs)")
    console.print("  The stack keeps running; stop it with: crypto-lakehouse stack down")


@handle_errors
def demo(
    symbols: int = typer.Option(2, min=1, help="Symbols per market in the sample archive."),
    seed: int = typer.Option(7, help="Sample archive seed (same seed, same bytes)."),
    revision: int = typer.Option(
        1, min=1, help="Sample revision: 2+ republishes the planted replaced file (new checksum)."
    ),
    parallel: int = typer.Option(4, min=1, max=64, help="Transfer tasks in flight."),
) -> None:
    """Stack up, write the sample archive, ingest it into bronze, print the summary.

    Run it again: the second run is incremental (nothing is transferred) and says so.
    Exit 0 when only the planted defects are found; 3 when anything else is.
    """
    from crypto_lakehouse.cli.ingest import quiet_prefect

    quiet_prefect(verbose=False)
    settings = load_settings()
    run = DemoRun(
        settings,
        LocalStack.from_settings(settings),
        {"symbols": symbols, "seed": seed, "revision": revision, "parallel": parallel},
    )
    seconds = run_steps(run, STEPS)
    print_report(run, seconds)
    if run.problems:
        raise typer.Exit(int(ExitCode.OBJECTS_FAILED))
