"""`crypto-lakehouse sync SRC DST`: copy a prefix between S3 endpoints with the s5cmd engine.

Identities: the destination signs with MINIO_ACCESS_KEY/MINIO_SECRET_KEY. The source is
anonymous with `--anonymous-source`; otherwise it signs with SOURCE_ACCESS_KEY/
SOURCE_SECRET_KEY when set, with the lake's keys when it is the lake's endpoint, and
with the default AWS credential chain otherwise.
"""

from __future__ import annotations

import json
import threading
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from crypto_lakehouse.cli._common import ExitCode, console, handle_errors, load_settings
from crypto_lakehouse.config import Settings
from crypto_lakehouse.storage import Endpoint, S3Url
from crypto_lakehouse.transfer import (
    EngineOptions,
    Mode,
    TransferEngine,
    TransferProgress,
    TransferReport,
    TransferRequest,
)

_SHOWN_FAILURES = 20


class SyncMode(StrEnum):
    """The engine's modes a user picks from. `traditional` (one object at a time) is the
    baseline `validate` and `bench transfer` measure against, not a way to copy data."""

    AUTO = Mode.AUTO.value
    DIRECT = Mode.DIRECT.value
    STAGED = Mode.STAGED.value


@handle_errors
def sync(
    src: Annotated[str, typer.Argument(help="Source, s3://bucket/prefix/")],
    dst: Annotated[str, typer.Argument(help="Destination, s3://bucket/prefix/")],
    source_endpoint: Annotated[
        str | None,
        typer.Option(
            "--source-endpoint",
            help="Source endpoint URL (default: $SOURCE_ENDPOINT, else AWS S3).",
        ),
    ] = None,
    dest_endpoint: Annotated[
        str | None,
        typer.Option("--dest-endpoint", help="Destination S3 URL (default: $MINIO_ENDPOINT)."),
    ] = None,
    anonymous_source: Annotated[
        bool, typer.Option("--anonymous-source", help="Read the source unsigned (public buckets).")
    ] = False,
    mode: Annotated[SyncMode, typer.Option("--mode", case_sensitive=False)] = SyncMode.AUTO,
    copy: Annotated[
        bool, typer.Option("--copy", help="Copy everything, even objects already up to date.")
    ] = False,
    delete: Annotated[
        bool, typer.Option("--delete", help="Remove destination objects that SRC lacks.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Copy SRC to DST; a second run copies only what changed.

    Exit codes: 0 every object copied or skipped; 3 some failed or were corrupt (quarantined);
    2 bad input; 4 an endpoint or bucket could not be reached or was refused.
    """
    settings = load_settings()
    request = TransferRequest(
        source=_source_endpoint(settings, source_endpoint, anonymous_source),
        source_url=S3Url.parse(src),
        dest=_dest_endpoint(settings, dest_endpoint),
        dest_url=S3Url.parse(dst),
        mode=Mode(mode.value),
        operation="copy" if copy else "sync",
        delete_extra=delete,
    )
    engine = TransferEngine(EngineOptions.from_settings(settings))
    report = _run_with_progress(engine, request, show=console.is_terminal and not as_json)
    if as_json:
        typer.echo(json.dumps(_as_json(report), ensure_ascii=False))
    else:
        _print(report)
    if not report.summary.ok:
        raise typer.Exit(int(ExitCode.OBJECTS_FAILED))


def _source_endpoint(settings: Settings, url: str | None, anonymous: bool) -> Endpoint:
    url = url or settings.source_endpoint
    if anonymous:
        return Endpoint(url=url, anonymous=True, region=settings.source_region)
    if settings.source_access_key is not None and settings.source_secret_key is not None:
        return Endpoint(
            url=url,
            access_key=settings.source_access_key,
            secret_key=settings.source_secret_key,
            region=settings.source_region,
        )
    if url and settings.lake_endpoint and url.rstrip("/") == settings.lake_endpoint.rstrip("/"):
        return _dest_endpoint(settings, url)
    return Endpoint(url=url, region=settings.source_region)


def _dest_endpoint(settings: Settings, url: str | None) -> Endpoint:
    return Endpoint(
        url=url or settings.lake_endpoint,
        access_key=settings.lake_access_key,
        secret_key=settings.lake_secret_key,
        region=settings.lake_region,
    )


def _run_with_progress(
    engine: TransferEngine, request: TransferRequest, *, show: bool
) -> TransferReport:
    if not show:
        return engine.run(request)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("listing", total=None)

        def update(snap: TransferProgress) -> None:
            bar.update(
                task,
                description=f"objects {snap.objects_done}/{snap.objects_total}",
                completed=snap.bytes_done,
                total=snap.bytes_total or None,
            )

        return engine.run(request, progress=update, cancel=threading.Event())


def _print(report: TransferReport) -> None:
    s = report.summary
    table = Table("mode", "objects", "copied", "skipped", "failed", "corrupt", "MB", "s", "MB/s")
    table.add_row(
        str(s.mode),
        str(s.objects),
        str(s.copied),
        str(s.skipped),
        str(s.failed),
        str(s.corrupt),
        f"{s.bytes_copied / 1e6:.1f}",
        f"{s.seconds:.2f}",
        f"{s.mb_per_s:.1f}",
    )
    console.print(table)
    bad = report.failures() + report.corrupt()
    for result in bad[:_SHOWN_FAILURES]:
        console.print(
            f"[red]{result.outcome}[/] {escape(result.source_key)}: {escape(result.error or '')}",
            highlight=False,
        )
    if len(bad) > _SHOWN_FAILURES:
        console.print(f"... and {len(bad) - _SHOWN_FAILURES} more (use --json for all)")


def _as_json(report: TransferReport) -> dict[str, Any]:
    bad = report.failures() + report.corrupt()
    return {
        "summary": report.summary.as_dict(),
        "problems": [
            {
                "source_key": r.source_key,
                "dest_key": r.dest_key,
                "outcome": str(r.outcome),
                "error": r.error,
            }
            for r in bad
        ],
    }
