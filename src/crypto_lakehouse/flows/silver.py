"""Flows `build-silver` and `build-gold`: bronze -> silver Iceberg tables -> gold answers.

    build-silver  verified bronze files (manifest) not yet in silver at their SHA-256
                  -> one task per partition (dataset + day or month, all symbols) reads
                  the zips and writes data files -> one commit per table per wave
                  (daily files first, then monthly ones, so a monthly file can drop the
                  rows its daily files already brought) -> summary artifact.
                  Ends Failed while any file is flagged for schema drift or corrupt.
    build-gold    resampled klines (+ check against Binance's), funding, trade stats,
                  coverage; ends Failed when the resampling check finds a mismatch.

Tasks retry only transient errors. Credentials come from settings at flow entry.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import anyio
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from crypto_lakehouse.archive.catalog import Frequency
from crypto_lakehouse.archive.paths import Partition
from crypto_lakehouse.catalog import Manifest
from crypto_lakehouse.config import Settings
from crypto_lakehouse.flows.tasks import transient_only
from crypto_lakehouse.lake.coverage import Coverage, build_coverage
from crypto_lakehouse.lake.gold import build_gold
from crypto_lakehouse.lake.ledger import Ledger
from crypto_lakehouse.lake.silver import BronzeFile, FileOutcome, Pending, SilverBuilder
from crypto_lakehouse.lake.summary import SilverSummary
from crypto_lakehouse.lake.warehouse import LakeConfig, Warehouse
from crypto_lakehouse.observability.push import push_at_end
from crypto_lakehouse.storage import S3Storage

SILVER_FLOW = "build-silver"
GOLD_FLOW = "build-gold"


@task(
    name="silver-partition",
    task_run_name="silver {label}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=transient_only,
    cache_policy=NO_CACHE,
)
async def prepare_partition(
    builder: SilverBuilder, label: str, files: list[BronzeFile]
) -> list[FileOutcome | Pending]:
    """Read one partition's files and write their data files (visible after the commit)."""
    return await anyio.to_thread.run_sync(lambda: [builder.prepare(f) for f in files])


@task(name="silver-commit", task_run_name="commit {wave}", cache_policy=NO_CACHE)
async def commit_wave(builder: SilverBuilder, wave: str, pending: list[Pending]) -> list:
    """One snapshot per table for everything this wave prepared, then the ledger."""
    return await anyio.to_thread.run_sync(builder.commit, pending)


def _filters(markets: list[str] | None, data_types: list[str] | None, symbols: list[str] | None):
    return [
        {"market": m, "data_type": d, "symbol": s}
        for m in (markets or [None])
        for d in (data_types or [None])
        for s in (symbols or [None])
    ]


def verified_bronze(manifest: Manifest, **choice: list[str] | None) -> list[BronzeFile]:
    """Verified bronze files matching the choice (lists of markets, data types, symbols)."""
    found: dict[str, BronzeFile] = {}
    for f in _filters(choice.get("markets"), choice.get("data_types"), choice.get("symbols")):
        for entry in manifest.verified_files(**{k: v for k, v in f.items() if v is not None}):
            found[entry.path] = BronzeFile.from_entry(entry)
    return [found[k] for k in sorted(found)]


async def run_silver(
    settings: Settings,
    *,
    markets: list[str] | None = None,
    data_types: list[str] | None = None,
    symbols: list[str] | None = None,
    parallel: int = 2,
) -> SilverSummary:
    """The flow's body: every verified file not yet in silver, partition by partition."""
    started = time.monotonic()
    config = LakeConfig.from_settings(settings)
    manifest = Manifest(config.catalog_url)
    warehouse = await anyio.to_thread.run_sync(Warehouse, config)
    ledger = await anyio.to_thread.run_sync(Ledger, config.sqlalchemy_url)
    builder = SilverBuilder(warehouse, ledger, S3Storage(config.endpoint), config.bronze_bucket)
    summary = SilverSummary()
    try:
        await anyio.to_thread.run_sync(manifest.ensure_schema)
        files = await anyio.to_thread.run_sync(
            lambda: verified_bronze(
                manifest, markets=markets, data_types=data_types, symbols=symbols
            )
        )
        known = {r.key: r for r in await anyio.to_thread.run_sync(ledger.all)}
        todo = []
        for bronze in files:  # files already in silver need no task at all
            skipped = builder.already_in(bronze, known.get(bronze.key))
            if skipped is None:
                todo.append(bronze)
            else:
                summary.add(skipped)
        for frequency in (Frequency.DAILY, Frequency.MONTHLY):
            wave = [f for f in todo if f.archive.frequency is frequency]
            for outcome in await _run_wave(builder, frequency.value, wave, parallel):
                summary.add(outcome)
        summary.note_outstanding(await anyio.to_thread.run_sync(ledger.all))
    finally:
        manifest.close()
        ledger.dispose()
    summary.seconds = time.monotonic() - started
    return summary


async def _run_wave(
    builder: SilverBuilder, wave: str, files: list[BronzeFile], parallel: int
) -> list[FileOutcome]:
    partitions: dict[Partition, list[BronzeFile]] = defaultdict(list)
    for bronze in files:
        partitions[bronze.archive.partition].append(bronze)
    gate = asyncio.Semaphore(parallel)

    async def one(partition: Partition, members: list[BronzeFile]) -> list:
        async with gate:
            return await prepare_partition(builder, partition.label, members)

    results = await asyncio.gather(*(one(p, m) for p, m in sorted(partitions.items())))
    prepared = [item for part in results for item in part]
    done = [p for p in prepared if isinstance(p, FileOutcome)]
    pending = [p for p in prepared if isinstance(p, Pending)]
    if pending:
        done += await commit_wave(builder, wave, pending)
    return done


@flow(name=SILVER_FLOW, persist_result=False, validate_parameters=True)
async def build_silver(
    markets: list[str] | None = None,
    data_types: list[str] | None = None,
    symbols: list[str] | None = None,
    parallel: int = 2,
) -> Any:
    """Bring every verified bronze file into silver (idempotent; replaced files replace rows).

    Ends Failed, with the files listed in the `silver-summary` artifact, while any file is
    flagged for schema drift or found corrupt.
    """
    from prefect.artifacts import acreate_markdown_artifact

    summary = await run_silver(
        Settings(), markets=markets, data_types=data_types, symbols=symbols, parallel=parallel
    )
    await push_at_end(Settings().pushgateway_url)  # counters outlive the flow-run pod
    await acreate_markdown_artifact(
        markdown=summary.markdown(), key="silver-summary", description=summary.message()
    )
    if not summary.ok:
        return Failed(message=summary.message(), data=summary.as_dict())
    return summary.as_dict()


def gold_and_coverage(settings: Settings) -> dict[str, Any]:
    """Gold tables and coverage from the current silver, manifest and ledger."""
    config = LakeConfig.from_settings(settings)
    warehouse = Warehouse(config)
    result = build_gold(warehouse)
    coverage = Coverage(config.sqlalchemy_url)
    try:
        counts = build_coverage(warehouse, coverage)  # SQL in the catalog database
    finally:
        coverage.close()
    return {
        "rows": result.rows,
        "checked": result.checked,
        "mismatches": [{**m, "open_time": str(m["open_time"])} for m in result.mismatches],
        "coverage": counts,
    }


@flow(name=GOLD_FLOW, persist_result=False)
async def build_gold_flow() -> Any:
    """Recompute gold and coverage; Failed when resampled klines disagree with Binance's."""
    from prefect.artifacts import acreate_markdown_artifact

    result = await anyio.to_thread.run_sync(gold_and_coverage, Settings())
    await push_at_end(Settings().pushgateway_url, coverage=True)
    lines = ["# build-gold", "", "| table | rows |", "|---|---|"]
    lines += [f"| {t} | {n:,} |" for t, n in sorted(result["rows"].items())]
    lines += ["", f"Resampled bars checked against Binance's: {result['checked']}, "
              f"mismatched: {len(result['mismatches'])}"]  # fmt: skip
    await acreate_markdown_artifact(markdown="\n".join(lines), key="gold-summary")
    if result["mismatches"]:
        return Failed(message=f"{len(result['mismatches'])} resampled bar(s) differ", data=result)
    return result
