"""Flows `build-silver` and `build-gold`: bronze -> silver Iceberg tables -> gold answers.

    build-silver  verified bronze files (manifest) not yet in silver at their SHA-256,
                  streamed from one SQL query in planning order -> one task per batch
                  (up to 5,000 files of one table) reads the zips, writes a few data files
                  and commits one snapshot -> summary artifact.
                  Ends Failed while any file is flagged for schema drift or corrupt.
    build-gold    resampled klines (+ check against Binance's), funding, trade stats,
                  coverage; ends Failed when the resampling check finds a mismatch.

Tasks retry only transient errors. Credentials come from settings at flow entry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import anyio
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from crypto_lakehouse.catalog import Manifest
from crypto_lakehouse.config import Settings
from crypto_lakehouse.flows.tasks import flow_run_id, transient_only
from crypto_lakehouse.lake.config import LakeConfig
from crypto_lakehouse.lake.coverage import Coverage, build_coverage
from crypto_lakehouse.lake.gold import GoldResult, build_gold
from crypto_lakehouse.lake.ledger import Ledger, Status
from crypto_lakehouse.lake.silver import (
    BronzeFile,
    FileOutcome,
    SilverBuilder,
    batches,
    drop_silver,
)
from crypto_lakehouse.lake.summary import SilverSummary
from crypto_lakehouse.lake.warehouse import Warehouse
from crypto_lakehouse.observability import tracing
from crypto_lakehouse.observability.push import push_at_end
from crypto_lakehouse.storage import S3Storage

SILVER_FLOW = "build-silver"
LIGHT_PER_LANE = 4  # light batches in flight per lane of `parallel`
# A light batch: at most this many small files and zip bytes (about 40 MB of rows in memory).
LIGHT_BATCH_FILES = 1_000
LIGHT_BATCH_BYTES = 4 << 20
LOOKAHEAD_FILES = 20_000  # pending files looked at before the first batch starts
GOLD_FLOW = "build-gold"


@task(
    name="silver-batch",
    task_run_name="silver {label}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=transient_only,
    cache_policy=NO_CACHE,
)
async def build_batch(
    builder: SilverBuilder, label: str, files: list[BronzeFile]
) -> list[FileOutcome]:
    """Read one batch of one table's files, write its data files, commit it (one snapshot)."""
    first = files[0].archive
    with tracing.step(
        "silver.batch",
        flow_run_id=flow_run_id(),
        table=f"{first.market.value}_{first.data_type.value}",
        batch=label,
        files=len(files),
        bytes=sum(f.size or 0 for f in files),
    ) as span:
        outcomes = await anyio.to_thread.run_sync(builder.build_batch, files)
        statuses: dict[str, int] = {}
        for outcome in outcomes:
            statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
        tracing.note(span, rows=sum(o.rows for o in outcomes if o.status == "transformed"))
        tracing.note(span, **statuses)
        return outcomes


def batch_weight(files: list[BronzeFile], large_file_bytes: int) -> int:
    """Gate units a batch takes: `LIGHT_PER_LANE` (a whole lane of `parallel`), or 1 for a
    light batch (at most `LIGHT_BATCH_FILES` small files, `LIGHT_BATCH_BYTES` of zips).

    A daily update is one light batch per table, some 24 of them, each a few files; run
    `parallel` at a time they wait on each other's round trips (catalog, S3, ledger), not on
    CPU. Light batches hold little memory (tens of MB of rows), so up to `LIGHT_PER_LANE` of
    them share one lane; heavy batches (backfills: up to 5,000 files or 1 GiB) still run at
    most `parallel` at a time, which keeps memory bounded by `parallel` batches.
    """
    if len(files) > LIGHT_BATCH_FILES:
        return LIGHT_PER_LANE
    size = 0
    for bronze in files:
        if bronze.size is None or bronze.size > large_file_bytes:
            return LIGHT_PER_LANE
        size += bronze.size
    return 1 if size <= LIGHT_BATCH_BYTES else LIGHT_PER_LANE


def heavy_first(
    work: Iterator[list[BronzeFile]], large_file_bytes: int, lookahead: int = LOOKAHEAD_FILES
) -> Iterator[list[BronzeFile]]:
    """The batches, those of the first `lookahead` files reordered so that tables with a
    heavy batch start first; a table's own batches keep their order (monthly files first).

    A daily update's one big file (a busy symbol's trades day, seconds of work) would
    otherwise start last, after the light tables that sort before it, and end the run alone.
    Past the lookahead (a backfill) batches stream in planning order as they come.
    """
    head: list[list[BronzeFile]] = []
    held = 0
    for files in work:
        head.append(files)
        held += len(files)
        if held >= lookahead:
            break
    weight: dict[tuple[str, str], int] = {}
    for files in head:
        table = _table_of(files)
        weight[table] = max(weight.get(table, 0), batch_weight(files, large_file_bytes))
    order = {table: n for n, table in enumerate(weight)}  # first seen, planning order
    head.sort(key=lambda files: (-weight[_table_of(files)], order[_table_of(files)]))
    yield from head
    yield from work


def _table_of(files: list[BronzeFile]) -> tuple[str, str]:
    first = files[0].archive
    return first.market.value, first.data_type.value


def _label(files: list[BronzeFile]) -> str:
    first, last = files[0].archive, files[-1].archive
    dataset = f"{first.market.value} {first.data_type.value}"
    return f"{dataset} {first.period}..{last.period} ({len(files)} files)"


async def run_silver(
    settings: Settings,
    *,
    markets: list[str] | None = None,
    data_types: list[str] | None = None,
    symbols: list[str] | None = None,
    parallel: int = 2,
    rebuild: bool = False,
    recover: bool = True,
) -> SilverSummary:
    """The flow's body: verified files not yet in silver, batch by batch, streamed.

    Pending work is one SQL query over manifest and ledger, read as it goes; at most
    `parallel` batches are in flight, so memory is bounded by the batch size, not the lake.
    A complete unfiltered run moves the cursor, so the next one reads only newer files.
    `recover=False` leaves open batches alone: a fan-out child must not undo a sibling's
    batch in flight (the parent recovers once, before any child starts).
    """
    started = time.monotonic()
    config = LakeConfig.from_settings(settings)
    if rebuild:
        await anyio.to_thread.run_sync(drop_silver, config)
    manifest = Manifest(config.catalog_url)
    await anyio.to_thread.run_sync(manifest.ensure_schema)
    manifest.close()
    warehouse = await anyio.to_thread.run_sync(Warehouse, config)
    ledger = await anyio.to_thread.run_sync(Ledger, config.sqlalchemy_url)
    builder = SilverBuilder(warehouse, ledger, S3Storage(config.endpoint), config.bronze_bucket)
    summary = SilverSummary()
    unfiltered = not (markets or data_types or symbols)
    try:
        if recover:
            summary.recovered = await anyio.to_thread.run_sync(builder.recover)
        since = await anyio.to_thread.run_sync(ledger.cursor) if unfiltered else None
        began = await anyio.to_thread.run_sync(ledger.database_now)
        pending = (
            BronzeFile.from_pending(p)
            for p in ledger.pending(
                markets=markets, data_types=data_types, symbols=symbols, since=since
            )
        )
        work = heavy_first(batches(pending), builder.large_file_bytes)
        gate = asyncio.Semaphore(max(1, parallel) * LIGHT_PER_LANE)
        running: set[asyncio.Task[None]] = set()

        async def one(files: list[BronzeFile], units: int) -> None:
            try:
                for outcome in await build_batch(builder, _label(files), files):
                    summary.add(outcome)
            finally:
                for _ in range(units):
                    gate.release()

        while True:
            files = await anyio.to_thread.run_sync(next, work, None)
            if files is None:
                break
            units = batch_weight(files, builder.large_file_bytes)
            for _ in range(units):  # only this loop acquires: no two batches hold parts
                await gate.acquire()
            running.add(asyncio.create_task(one(files, units)))
            done = {t for t in running if t.done()}
            running -= done
            for finished in done:
                finished.result()  # a failed batch fails the run (its files stay pending)
        await asyncio.gather(*running)
        if unfiltered:
            await anyio.to_thread.run_sync(ledger.advance_cursor, began)
        summary.note_outstanding(await anyio.to_thread.run_sync(ledger.outstanding, Status.DRIFT))
    finally:
        ledger.dispose()
    summary.seconds = time.monotonic() - started
    return summary


@flow(name=SILVER_FLOW, persist_result=False, validate_parameters=True)
async def build_silver(
    markets: list[str] | None = None,
    data_types: list[str] | None = None,
    symbols: list[str] | None = None,
    parallel: int = 2,
    rebuild: bool = False,
) -> Any:
    """Bring every verified bronze file into silver (idempotent; replaced files replace rows).

    `rebuild` drops every silver table and the ledger first and rebuilds them from bronze
    (the way to a new table layout).

    Ends Failed, with the files listed in the `silver-summary` artifact, while any file is
    flagged for schema drift or found corrupt.
    """
    from prefect.artifacts import acreate_markdown_artifact

    summary = await run_silver(
        Settings(),
        markets=markets,
        data_types=data_types,
        symbols=symbols,
        parallel=parallel,
        rebuild=rebuild,
    )
    await push_at_end(Settings().pushgateway_url)  # counters outlive the flow-run pod
    await acreate_markdown_artifact(
        markdown=summary.markdown(), key="silver-summary", description=summary.message()
    )
    if not summary.ok:
        return Failed(message=summary.message(), data=summary.as_dict())
    return summary.as_dict()


def gold_and_coverage(settings: Settings, *, full: bool = False) -> dict[str, Any]:
    """Gold tables (only partitions changed in silver, or all with `full`) and coverage."""
    config = LakeConfig.from_settings(settings)
    warehouse = Warehouse(config)
    started = time.monotonic()
    run = flow_run_id()
    with tracing.step("gold.build", flow_run_id=run, full=full) as span:
        result = build_gold(warehouse, full=full)
        _note_gold(span, result)
    built = time.monotonic()
    coverage = Coverage(config.sqlalchemy_url)
    try:
        with tracing.step("gold.coverage", flow_run_id=run) as span:
            counts = build_coverage(warehouse, coverage)  # SQL in the catalog database
            tracing.note(span, **counts)
    finally:
        coverage.close()
    seconds = {"gold": built - started, "coverage": time.monotonic() - built}
    return {
        "seconds": seconds,
        "rows": result.rows,
        "recomputed": result.recomputed,
        "commits": result.commits,
        "pieces": result.pieces,  # silver queries per table (bounded by rows, lake/gold.py)
        "largest_plan": result.largest_plan,  # most rows in the files one query planned
        "checked": result.checked,
        "mismatches": [{**m, "open_time": str(m["open_time"])} for m in result.mismatches],
        "coverage": counts,
    }


def _note_gold(span: tracing.StepSpan, result: GoldResult) -> None:
    """Each gold table as an event of the build's span (lake/gold.py builds them in turn)."""
    for table, rows in sorted(result.rows.items()):
        counts = {
            "table": table,
            "rows": rows,
            "recomputed": result.recomputed.get(table, 0),
            "commits": result.commits.get(table, 0),
            "pieces": result.pieces.get(table, 0),
            "largest_plan": result.largest_plan.get(table, 0),
        }
        span.add_event("table built", tracing.attributes_of(counts))
    tracing.note(
        span,
        tables=len(result.rows),
        commits=sum(result.commits.values()),
        checked=result.checked,
        mismatches=len(result.mismatches),
    )


@flow(name=GOLD_FLOW, persist_result=False)
async def build_gold_flow(full: bool = False) -> Any:
    """Bring gold up to date and rebuild coverage; Failed when resampled klines disagree
    with Binance's. `full` recomputes every gold partition instead of the changed ones."""
    from prefect.artifacts import acreate_markdown_artifact

    result = await anyio.to_thread.run_sync(lambda: gold_and_coverage(Settings(), full=full))
    took = result["seconds"]
    get_run_logger().info(
        "gold tables %.1f s, gold.coverage %.1f s", took["gold"], took["coverage"]
    )
    await push_at_end(Settings().pushgateway_url, coverage=True)
    lines = ["# build-gold", "", "| table | rows | partitions recomputed |", "|---|---|---|"]
    lines += [
        f"| {t} | {n:,} | {result['recomputed'].get(t, 0):,} |"
        for t, n in sorted(result["rows"].items())
    ]
    lines += ["", f"Resampled bars checked against Binance's: {result['checked']}, "
              f"mismatched: {len(result['mismatches'])}"]  # fmt: skip
    await acreate_markdown_artifact(markdown="\n".join(lines), key="gold-summary")
    if result["mismatches"]:
        return Failed(message=f"{len(result['mismatches'])} resampled bar(s) differ", data=result)
    return result
