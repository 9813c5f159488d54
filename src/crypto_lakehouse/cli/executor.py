"""`crypto-lakehouse executor serve|submit|status|list|cancel`: the s5cmd executor service."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer

from crypto_lakehouse.cli._common import (
    ExitCode,
    console,
    err_console,
    fail,
    handle_errors,
    load_settings,
)
from crypto_lakehouse.executor import (
    ExecutorClient,
    OperationMode,
    OperationStatus,
    OperationType,
    OperationView,
    SyncRequest,
)
from crypto_lakehouse.storage.urls import S3Url

app = typer.Typer(help="Run the s5cmd executor service, or talk to one (EXECUTOR_URL).")

_BANNER = (
    "INSECURE DEVELOPMENT MODE: --insecure-dev given and no EXECUTOR_API_TOKEN set; "
    "every route is open to anyone who can reach {where}. Never run this in production."
)


@app.command()
@handle_errors
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to bind."),
    port: int = typer.Option(8080, min=1, max=65535),
    workers: int | None = typer.Option(
        None, min=1, max=64, help="Processes, each a replica (default EXECUTOR_WORKERS or 1)."
    ),
    insecure_dev: bool = typer.Option(
        False, "--insecure-dev", help="Allow running without EXECUTOR_API_TOKEN (loopback only)."
    ),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request."),
) -> None:
    """Serve the executor API; refuses to start without EXECUTOR_API_TOKEN."""
    import uvicorn

    from crypto_lakehouse.executor.app import create_app
    from crypto_lakehouse.executor.service import check_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_settings()
    processes = workers or settings.executor_workers
    if insecure_dev and settings.executor_api_token is None:
        if host not in {"127.0.0.1", "localhost", "::1"}:
            raise fail("--insecure-dev only binds to loopback (127.0.0.1)", ExitCode.BAD_INPUT)
        if processes > 1:
            raise fail("--insecure-dev runs a single process (no --workers)", ExitCode.BAD_INPUT)
        for _ in range(3):
            logging.getLogger("crypto_lakehouse.executor").warning(
                _BANNER.format(where=f"{host}:{port}")
            )
    check_settings(settings, insecure_dev=insecure_dev)  # before anything listens
    # uvloop and httptools (package dependencies) halve the CPU per request compared with
    # uvicorn's pure-Python fallback (asyncio + h11), which "auto" would pick silently.
    options = {
        "host": host,
        "port": port,
        "access_log": access_log,
        "log_level": "info",
        "loop": "uvloop",
        "http": "httptools",
    }
    if processes == 1:
        uvicorn.run(create_app(settings, insecure_dev=insecure_dev), **options)
    else:
        factory = "crypto_lakehouse.executor.app:app_from_environment"
        uvicorn.run(factory, factory=True, workers=processes, **options)


@app.command()
@handle_errors
def submit(
    source: str = typer.Argument(..., help="s3://bucket/prefix to read."),
    destination: str = typer.Argument(..., help="s3://bucket/prefix on the lake."),
    source_endpoint: str | None = typer.Option(None, help="Source S3 URL (default: the lake)."),
    anonymous: bool | None = typer.Option(None, "--anonymous/--signed", help="Unsigned reads."),
    mode: Annotated[OperationMode, typer.Option()] = OperationMode.AUTO,
    operation_type: Annotated[OperationType, typer.Option("--type")] = OperationType.SYNC,
    max_concurrent: int | None = typer.Option(None, min=1, max=1024),
    part_size_mb: int | None = typer.Option(None, min=5, max=5120),
    wait: bool = typer.Option(False, "--wait", help="Wait and show progress until it ends."),
) -> None:
    """Queue a sync/copy; prints the operation id (or, with --wait, the result)."""
    request = SyncRequest.for_urls(
        S3Url.parse(source),
        S3Url.parse(destination),
        source_endpoint=source_endpoint,
        anonymous=anonymous,
        mode=mode,
        operation_type=operation_type,
        max_concurrent=max_concurrent,
        part_size_mb=part_size_mb,
    )
    with ExecutorClient.from_settings(load_settings()) as client:
        submitted = client.submit(request)
        if not wait:
            typer.echo(submitted.operation_id)
            return
        err_console.print(f"operation {submitted.operation_id} queued")
        view = client.wait(submitted.operation_id, on_progress=_print_progress)
    _finish(view)


@app.command()
@handle_errors
def status(
    operation_id: str,
    as_json: bool = typer.Option(False, "--json", help="Print the full JSON view."),
    objects: bool = typer.Option(
        False, "--objects", help="Also each listed object's result (JSON lines with --json)."
    ),
) -> None:
    """Show one operation."""
    with ExecutorClient.from_settings(load_settings()) as client:
        view = client.status(operation_id)
        if as_json:
            typer.echo(view.model_dump_json(indent=2))
        else:
            _print_view(view)
        for item in client.iter_objects(operation_id) if objects else ():
            if as_json:
                typer.echo(item.model_dump_json())
            else:
                typer.echo(f"{item.outcome:8} {item.sha256 or '-':64} {item.source_key}")


@app.command("list")
@handle_errors
def list_(
    status: Annotated[OperationStatus | None, typer.Option()] = None,
    limit: int = typer.Option(20, min=1, max=500),
    offset: int = typer.Option(0, min=0),
) -> None:
    """List operations, newest first."""
    with ExecutorClient.from_settings(load_settings()) as client:
        page = client.list(status=status, limit=limit, offset=offset)
    for item in page.items:
        src = f"s3://{item.source.bucket}/{item.source.prefix}"
        dst = f"s3://{item.destination.bucket}/{item.destination.prefix}"
        typer.echo(f"{item.operation_id}  {item.status:<9}  {src} -> {dst}")
    err_console.print(f"{len(page.items)} of {page.total}")


@app.command()
@handle_errors
def cancel(operation_id: str) -> None:
    """Cancel an operation (a running one stops its s5cmd processes)."""
    with ExecutorClient.from_settings(load_settings()) as client:
        view = client.cancel(operation_id)
    typer.echo(
        f"{view.operation_id} {view.status}"
        + (" (stopping)" if view.cancel_requested and not view.status.terminal else "")
    )


def _print_progress(view: OperationView) -> None:
    p = view.progress
    err_console.print(
        f"{view.status}: {p.objects_done}/{p.objects_total} objects, "
        f"{p.bytes_done}/{p.bytes_total} bytes"
    )


def _print_view(view: OperationView) -> None:
    console.print_json(json.dumps({
        "operation_id": view.operation_id,
        "status": view.status,
        "progress": view.progress.model_dump(),
        "counts": view.counts.model_dump(),
        "failed_objects_total": view.failed_objects_total,
        "error": view.error,
    }))  # fmt: skip


def _finish(view: OperationView) -> None:
    _print_view(view)
    if view.status == OperationStatus.COMPLETED:
        return
    if view.status == OperationStatus.FAILED and view.failed_objects_total:
        raise typer.Exit(int(ExitCode.OBJECTS_FAILED))
    raise typer.Exit(int(ExitCode.UNEXPECTED))
