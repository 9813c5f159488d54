"""`crypto-lakehouse sample-archive`: write a local archive of Binance's exact shape."""

from __future__ import annotations

import json
import time
from datetime import date
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from crypto_lakehouse.archive.publisher import write_sample
from crypto_lakehouse.archive.sample import SampleManifest, SampleSpec
from crypto_lakehouse.cli._common import console, handle_errors, load_settings
from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import StackError
from crypto_lakehouse.stack.manager import LocalStack
from crypto_lakehouse.storage import Endpoint, S3Storage, S3Url

if TYPE_CHECKING:
    from pathlib import Path


def _endpoint(settings: Settings, url: str | None) -> Endpoint:
    """The given URL with SOURCE_ACCESS_KEY/SECRET_KEY, else the local stack's source (admin)."""
    if url:
        return Endpoint(
            url=url,
            access_key=settings.source_access_key,
            secret_key=settings.source_secret_key,
            region=settings.source_region,
        )
    stack = LocalStack(settings.home_dir)
    if not stack.source.healthy():
        raise StackError("the source endpoint is not running: run `crypto-lakehouse stack up`")
    return stack.source.endpoint()


def _print(manifest: SampleManifest, dest: S3Url) -> None:
    table = Table("planted", "count", "example", title=f"sample archive at {dest}")
    table.add_row("files (zip + .CHECKSUM each)", str(len(manifest.files)), manifest.files[0])
    table.add_row("real Binance files", str(len(manifest.real)), _first(manifest.real))
    table.add_row("missing (a day)", str(len(manifest.missing)), _first(manifest.missing))
    table.add_row(
        "corrupt (bytes != checksum)", str(len(manifest.corrupt)), _first(manifest.corrupt)
    )
    table.add_row(
        f"replaced (revision {manifest.revision})",
        str(len(manifest.replaced)),
        _first(manifest.replaced),
    )
    table.add_row(
        "delisted",
        str(len(manifest.delisted)),
        ", ".join(f"{d.market} {d.symbol} (last {d.last_day})" for d in manifest.delisted),
    )
    console.print(table)
    console.print(
        f"objects: {manifest.objects} ({manifest.bytes / 1e6:.1f} MB); written "
        f"{manifest.uploaded}, unchanged {manifest.unchanged}, pruned {manifest.pruned}"
    )


def _first(items: list[str]) -> str:
    return items[0] if items else "-"


@handle_errors
def sample_archive(
    dest: str = typer.Option(
        ..., "--dest", help="Where to write: s3://BUCKET or s3://BUCKET/PREFIX."
    ),
    symbols: int = typer.Option(2, "--symbols", help="Symbols per market."),
    days: int = typer.Option(
        3, "--days", help="Daily files per cut-over window (3+ plants a missing day)."
    ),
    seed: int = typer.Option(7, "--seed", help="Same seed, same bytes."),
    revision: int = typer.Option(1, "--revision", help="2+ republishes the planted replaced file."),
    orders_per_day: int = typer.Option(
        48, "--orders-per-day", help="Simulated taker orders per symbol-day (file sizes)."
    ),
    endpoint: str | None = typer.Option(
        None, "--endpoint", help="S3 endpoint URL (default: the local stack's source endpoint)."
    ),
    prune: bool = typer.Option(False, "--prune", help="Delete other objects under data/."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
    files: int | None = typer.Option(
        None, "--files", min=1, help="About this many files (chooses --symbols and --days)."
    ),
    start_day: str | None = typer.Option(
        None, "--start-day", help="YYYY-MM-DD: one window from this day, every interval."
    ),
    large_files: int | None = typer.Option(
        None, "--large-files", min=0, help="Busy BTCUSDT spot trades days (--files: 1 per 5000)."
    ),
    large_rows: int = typer.Option(1_000_000, "--large-rows", min=1, help="Rows per large file."),
    defects: bool = typer.Option(
        True, "--defects/--no-defects", help="Plant missing, corrupt, replaced, delisted files."
    ),
) -> None:
    """Write a deterministic archive in Binance's layout and formats, with planted defects."""
    from dataclasses import replace

    from crypto_lakehouse.archive.catalog import ALL_INTERVALS
    from crypto_lakehouse.errors import ConfigError
    from crypto_lakehouse.transfer import upload_tree

    settings = load_settings()
    target = S3Url.parse(dest)
    try:
        start = date.fromisoformat(start_day) if start_day else None
    except ValueError:
        raise ConfigError(f"--start-day is YYYY-MM-DD, got {start_day!r}") from None
    if files is not None:
        spec = SampleSpec.for_files(files, seed=seed, large_rows=large_rows, defects=defects)
        spec = replace(spec, start=start or spec.start, revision=revision)
    else:
        spec = SampleSpec(
            seed=seed, symbols=symbols, days=days, revision=revision,
            orders_per_day=orders_per_day, start=start, defects=defects, large_rows=large_rows,
            intervals=ALL_INTERVALS if start else SampleSpec.intervals,
        )  # fmt: skip
    if large_files is not None:
        spec = replace(spec, large_files=large_files)
    endpoint_used = _endpoint(settings, endpoint)
    storage = S3Storage(endpoint_used)

    def upload(folder: Path, bucket: str, prefix: str) -> int:
        return upload_tree(
            endpoint_used, folder, bucket, prefix, workers=settings.s5cmd_max_concurrent
        )

    started = time.perf_counter()
    columns = (TextColumn("uploading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=as_json) as bar:
        task = bar.add_task("upload", total=None)
        manifest = write_sample(
            spec,
            storage,
            target,
            prune=prune,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            upload=upload,
            staging=settings.staging_memory_dir,
        )
    seconds = time.perf_counter() - started
    if as_json:
        typer.echo(json.dumps(manifest.to_dict(), indent=2))
    else:
        _print(manifest, target)
        console.print(
            f"{len(manifest.files)} files in {seconds:.1f} s "
            f"({len(manifest.files) / seconds:.0f} files/s; {spec.symbols} symbols per market, "
            f"{spec.days} days, {spec.large_files} large files)"
        )
