"""`crypto-lakehouse bench ...`: measurements, printed as tables with ratios, optionally JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from crypto_lakehouse.bench.netem import CONNECT_RTTS
from crypto_lakehouse.cli._common import console, handle_errors, load_settings

app = typer.Typer(help="Benchmarks: measure against baselines on this machine, in one run.")


@app.command()
@handle_errors
def transfer(
    quick: Annotated[bool, typer.Option("--quick", help="Smaller workloads.")] = False,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
    objects: Annotated[
        int | None,
        typer.Option(
            "--objects",
            min=1,
            help="Memory mode: copy this many small objects with the engine and report its "
            "peak RSS and staging bytes (e.g. 100000).",
        ),
    ] = None,
    repeats: Annotated[
        int, typer.Option("--repeats", min=1, help="Measured runs per method (median).")
    ] = 3,
    rtt: Annotated[
        list[float] | None,
        typer.Option(
            "--rtt",
            min=0,
            max=10_000,
            help="Put a latency proxy with this round trip (ms) in front of the source; "
            "repeat for several (e.g. --rtt 0 --rtt 50 --rtt 150).",
        ),
    ] = None,
    resets: Annotated[
        float,
        typer.Option("--resets", min=0.0, max=1.0, help="With --rtt: fraction of requests reset."),
    ] = 0.0,
    connect_rtts: Annotated[
        float,
        typer.Option(
            "--connect-rtts",
            min=0.0,
            max=10.0,
            help="With --rtt: round trips a new connection to the source waits before its "
            "request goes (1: TCP's handshake; 2-3: with TLS, as the real archive; 0: free "
            "connections, as on loopback).",
        ),
    ] = CONNECT_RTTS,
    tls: Annotated[
        bool | None,
        typer.Option(
            "--tls/--no-tls",
            help="With --rtt: the source serves HTTPS (HTTP/2) behind the proxy, as the real "
            "archive does, with a certificate made for the run. Default: on, but off with "
            "--resets (faults are injected into HTTP requests the proxy cannot read in TLS).",
            show_default=False,
        ),
    ] = None,
    method: Annotated[
        list[str] | None,
        typer.Option(
            "--method",
            help="Run only this method; repeat for several (e.g. --method engine-staged "
            "--method rclone). Targets that need another show 'not measured'.",
        ),
    ] = None,
) -> None:
    """engine-direct, engine-staged, traditional, s5cmd-raw, rclone, naive-boto3 side by side."""
    from crypto_lakehouse.bench.transfer import METHODS, TransferBench

    if resets and not rtt:
        raise typer.BadParameter("--resets needs --rtt", param_hint="--resets")
    if tls and resets:
        raise typer.BadParameter(
            "faults are injected into HTTP requests, which the proxy cannot read inside TLS: "
            "use --no-tls with --resets",
            param_hint="--tls",
        )
    if tls and not rtt:
        raise typer.BadParameter("--tls needs --rtt (the proxy's source)", param_hint="--tls")
    source_tls = bool(rtt) and not resets if tls is None else tls
    unknown = sorted(set(method or ()) - set(METHODS))
    if unknown:
        raise typer.BadParameter(
            f"unknown method {', '.join(unknown)}; choose from {', '.join(METHODS)}",
            param_hint="--method",
        )
    bench = TransferBench(
        load_settings(),
        quick=quick,
        repeats=repeats,
        log=console.print,
        rtts=rtt or (),
        resets=resets,
        only=method or (),
        connect_rtts=connect_rtts,
        tls=source_tls,
    )
    result = bench.run_memory(objects) if objects is not None else bench.run()
    narrow = not console.is_terminal  # a log or a pipe: a layout that fits 80 columns
    console.print(result.table(narrow=narrow), width=80 if narrow else None)
    for case, seconds in bench.proxy_cpu.items():
        console.print(f"proxy CPU {case}: {seconds:.2f} s over all its runs", highlight=False)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        data = {**result.as_json(), "proxy_cpu_seconds": bench.proxy_cpu}
        if rtt:
            data["proxy"] = {"connect_rtts": connect_rtts, "source_tls": source_tls}
        json_file.write_text(json.dumps(data, indent=2) + "\n")
        console.print(f"results written to {json_file}")


@app.command()
@handle_errors
def api(
    clients: Annotated[int, typer.Option(min=1, max=512, help="Concurrent clients.")] = 32,
    requests: Annotated[
        int, typer.Option(min=10, help="Requests per client and per measured route.")
    ] = 200,
    store: Annotated[
        list[str] | None,
        typer.Option(help="sqlite and/or postgres (a private cluster); repeat for both."),
    ] = None,
    workers: Annotated[
        list[int] | None,
        typer.Option(min=1, max=16, help="Worker processes of the replica; repeat to compare."),
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
) -> None:
    """Executor API latency: p50/p95/p99 of POST /sync and GET /operations/{id}."""
    from dataclasses import asdict

    from crypto_lakehouse.bench.api import run_api_bench

    results = {}
    for name in store or ["sqlite"]:
        for processes in workers or [1]:
            report = run_api_bench(
                clients=clients, per_client=requests, store=name, workers=processes
            )
            typer.echo(report.table())
            results[f"{name}/{processes}"] = [asdict(p) for p in report.phases]
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(results, indent=2) + "\n")


@app.command("ingest")
@handle_errors
def ingest_bench(
    symbols: Annotated[int, typer.Option(min=1, help="Symbols per market in the sample.")] = 2,
    repeats: Annotated[int, typer.Option(min=1, help="Measured rounds (median).")] = 3,
    parallel: Annotated[int, typer.Option(min=1, max=64, help="Flow transfer tasks.")] = 4,
    mover: Annotated[
        str,
        typer.Option(help="engine, or executor: also through local executor replicas (>= 0.8x)."),
    ] = "engine",
    replicas: Annotated[
        int, typer.Option(min=1, max=8, help="Executor replicas (--mover executor).")
    ] = 3,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
) -> None:
    """Ingest flow end to end vs the engine alone on the same files (target: <= 20% overhead)."""
    from rich.table import Table

    from crypto_lakehouse.bench.ingest import IngestBench
    from crypto_lakehouse.cli.flows import use_stack_environment
    from crypto_lakehouse.cli.ingest import quiet_prefect
    from crypto_lakehouse.errors import ConfigError
    from crypto_lakehouse.stack.manager import LocalStack
    from crypto_lakehouse.validation.targets import INGEST_OVERHEAD

    if mover not in ("engine", "executor"):
        raise ConfigError(f"--mover must be engine or executor, got {mover!r}")
    quiet_prefect(verbose=False)
    settings = use_stack_environment()
    stack = LocalStack.from_settings(settings)
    stack.require_running()
    bench = IngestBench(
        settings, stack, symbols=symbols, repeats=repeats, parallel=parallel, mover=mover,
        replicas=replicas, log=console.print,
    )  # fmt: skip
    result = bench.run()
    table = Table("method", "median s", "files/s", "vs engine", title=f"{result.files} files")
    for name, seconds, rate, ratio in result.rows():
        table.add_row(name, f"{seconds:.2f}", f"{rate:.1f}", ratio)
    console.print(table)
    if result.executor_ratio is not None:
        from crypto_lakehouse.bench.ingest import EXECUTOR_TARGET

        ok = "met" if result.executor_ratio >= EXECUTOR_TARGET else "missed"
        console.print(
            f"executor ({replicas} replicas) vs in-process: {result.executor_ratio:.2f}x "
            f"files/s (target >= {EXECUTOR_TARGET}x: {ok})"
        )
    verdict = "met" if result.overhead <= INGEST_OVERHEAD else "missed"
    console.print(
        f"Prefect overhead: {result.overhead:+.0%}, {result.overhead_seconds:+.2f} s per run "
        f"of {result.files} files (target <= {INGEST_OVERHEAD:.0%}: {verdict})"
    )
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(result.as_json(), indent=2) + "\n")


@app.command("flows")
@handle_errors
def flows_bench(
    runs: Annotated[int, typer.Option("--runs", min=1, help="Concurrent flow runs.")] = 500,
    hold: Annotated[float, typer.Option(min=0, help="Seconds each run's task holds.")] = 1.0,
    processes: Annotated[int, typer.Option(min=1, max=32, help="Client processes.")] = 1,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
) -> None:
    """N concurrent async flow runs against the stack's Prefect server (PostgreSQL)."""
    from crypto_lakehouse.cli.flows import use_stack_environment
    from crypto_lakehouse.cli.ingest import quiet_prefect

    quiet_prefect(verbose=False)
    use_stack_environment()
    from crypto_lakehouse.bench.flows import CONCURRENT_TARGET, run_flow_bench

    result = run_flow_bench(runs, hold_seconds=hold, processes=processes)
    console.print(
        f"{result.runs} runs: {result.completed} completed, {result.failed} failed "
        f"({result.client_errors} client errors) in {result.seconds:.1f} s = "
        f"{result.runs_per_second:.1f} runs/s; peak concurrent {result.peak_concurrent}; "
        f"target {CONCURRENT_TARGET}+ concurrent, none failed: "
        f"{'met' if result.target_met else 'missed'}"
    )
    console.print(f"  server states: {result.server_states}", highlight=False)
    for kind, count in result.error_kinds.items():
        console.print(f"  {count} x {kind}", soft_wrap=True, highlight=False)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(result.as_json(), indent=2) + "\n")


@app.command()
@handle_errors
def transform(
    rows: Annotated[
        int, typer.Option(min=1000, help="Trade rows in the generated file.")
    ] = 10_000_000,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
) -> None:
    """Silver build (S3 zip -> Iceberg) vs bare pyarrow CSV->Parquet: rows/s and peak RSS."""
    from crypto_lakehouse.bench.transform import TransformBench

    result = TransformBench(load_settings(), rows=rows, log=console.print).run()
    console.print(result.table(), highlight=False)
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(result.as_json(), indent=2, default=str) + "\n")
        console.print(f"results written to {json_file}")


@app.command()
@handle_errors
def scale(
    files: Annotated[
        list[int] | None,
        typer.Option("--files", min=100, help="Sample archive size; repeat (5000 and 50000)."),
    ] = None,
    large_rows: Annotated[
        int, typer.Option(min=1000, help="Rows per large trades file.")
    ] = 1_000_000,
    workers: Annotated[
        list[int] | None, typer.Option("--workers", min=1, help="Project onto N workers.")
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
) -> None:
    """Ingest, silver, gold, maintain and queries on N sample files, each on a private stack."""
    from crypto_lakehouse.bench import scale_report
    from crypto_lakehouse.bench.scale import ScaleBench

    runs = ScaleBench(
        load_settings(), files=files or [5000], large_rows=large_rows, log=console.print
    ).run()
    chosen = tuple(workers or scale_report.DEFAULT_WORKERS)
    typer.echo(scale_report.text(runs, chosen))
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        data = scale_report.as_json(runs, chosen)
        json_file.write_text(json.dumps(data, indent=2, default=str) + "\n")
        console.print(f"results written to {json_file}")


@app.command()
@handle_errors
def fanout(
    files: Annotated[int, typer.Option("--files", min=100, help="Sample archive size.")] = 5000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=8, help="Local process workers per pool.")
    ] = 2,
    children: Annotated[
        int | None, typer.Option(min=1, max=64, help="Child runs per step (default: workers).")
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
) -> None:
    """Ingest + silver of N sample files in one process, then fanned out over local workers."""
    from crypto_lakehouse.bench.fanout import FanoutBench, text

    run = FanoutBench(
        load_settings(), files=files, workers=workers, children=children, log=console.print
    ).run()
    typer.echo(text(run))
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(run.as_json(), indent=2, default=str) + "\n")
        console.print(f"results written to {json_file}")


@app.command()
@handle_errors
def faults(
    files: Annotated[
        int, typer.Option("--files", min=100, max=5000, help="Sample archive size.")
    ] = 1000,
    case: Annotated[
        list[int] | None,
        typer.Option(
            "--case",
            min=1,
            max=9,
            help="Run only this case (repeatable): 1 lake S3 killed, 2 source resets + 503, "
            "3 PostgreSQL restarted, 4 Prefect restarted, 5 staging cap too small, "
            "6 executor replica killed, 7 silver killed mid-commit, 8 API fuzzed, "
            "9 bad CLI input. Default: all.",
        ),
    ] = None,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
    markdown: Annotated[
        Path | None,
        typer.Option("--markdown", help="Also write the report (docs/reliability.md) here."),
    ] = None,
    date: Annotated[
        str | None, typer.Option(help="Date written in the results, YYYY-MM-DD (default today).")
    ] = None,
) -> None:
    """Reliability campaign: faults against a private local stack, bronze audited vs the source.

    Each case injects one fault, re-runs, and compares bronze with the source's CHECKSUM
    sidecars (size and SHA-256). Exit 0 when every case held, 1 otherwise, 2 bad usage.
    """
    import re

    from crypto_lakehouse.bench import faults_report
    from crypto_lakehouse.bench.faults import ALL_CASES, run_campaign

    if date is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
        raise typer.BadParameter("YYYY-MM-DD", param_hint="--date")
    settings = load_settings()
    command = "crypto-lakehouse bench faults" + "".join(f" --case {c}" for c in case or [])
    campaign = run_campaign(
        files=files, cases=case or ALL_CASES, command=command + f" --files {files}",
        date=date, log_dir=settings.home_dir / "bench" / "faults", log=console.print,
    )  # fmt: skip
    faults_report.print_table(campaign, console)
    data = campaign.as_json()
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(data, indent=2, default=str) + "\n")
        console.print(f"results written to {json_file}")
    if markdown is not None:
        report = faults_report.Campaign.from_json(json.loads(json.dumps(data, default=str)))
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(faults_report.document(report))
        console.print(f"report written to {markdown}")
    if not campaign.ok:
        raise typer.Exit(1)
