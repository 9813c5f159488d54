"""`crypto-lakehouse sample-archive`: write a local archive of Binance's exact shape."""

from __future__ import annotations

import json

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
) -> None:
    """Write a deterministic archive in Binance's layout and formats, with planted defects."""
    settings = load_settings()
    target = S3Url.parse(dest)
    spec = SampleSpec(
        seed=seed, symbols=symbols, days=days, revision=revision, orders_per_day=orders_per_day
    )
    storage = S3Storage(_endpoint(settings, endpoint))
    columns = (TextColumn("uploading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=as_json) as bar:
        task = bar.add_task("upload", total=None)
        manifest = write_sample(
            spec,
            storage,
            target,
            prune=prune,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    if as_json:
        typer.echo(json.dumps(manifest.to_dict(), indent=2))
    else:
        _print(manifest, target)
