"""The tasks of `ingest-archive`: discover (list and plan), transfer one partition batch.

Each is small and typed; retries (with backoff) apply only to errors whose `.transient`
is true. Task inputs are in-process objects (`IngestContext` holds the manifest and the
mover), never credentials in parameters; caching and result persistence are off because
every call must act and results stay in this process. Callers pass inputs through
`inputs()` (Prefect's `quote`): otherwise Prefect walks every object of every input
(a batch's files, the plan's listing) looking for futures, twice per task run, which
cost ~0.6 s of event-loop CPU per ingest of 482 files (cProfile).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff
from prefect.utilities.annotations import quote

from crypto_lakehouse.catalog import Decision, FileResult, ListedFile, Manifest, ManifestOutcome
from crypto_lakehouse.errors import LakehouseError
from crypto_lakehouse.flows.batches import Batch
from crypto_lakehouse.flows.discovery import Discovery, list_and_plan
from crypto_lakehouse.flows.limits import transfer_slot
from crypto_lakehouse.flows.mover import Mover
from crypto_lakehouse.flows.progress import IngestEvent, Listener, emit
from crypto_lakehouse.flows.target import IngestRequest, IngestTarget
from crypto_lakehouse.observability import tracing
from crypto_lakehouse.observability.metrics import INGEST_BYTES, INGEST_FILES, INGEST_LAST_VERIFIED
from crypto_lakehouse.storage import S3Storage
from crypto_lakehouse.transfer import check_reachable

PROBE_SECONDS = 5.0
# Before any flow run starts (every flow module imports this one): spans go to the OTLP
# endpoint when one is configured, Prefect's run spans included; otherwise a no-op.
tracing.install()


def flow_run_id() -> str | None:
    """The current flow run's id, for span attributes (None outside a flow run)."""
    from prefect.runtime import flow_run

    return str(flow_run.id) if flow_run.id else None


def inputs(*values: Any) -> list[Any]:
    """Task arguments Prefect hands over as they are, without walking their contents."""
    return [quote(value) for value in values]


def transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry when the task's exception says it may pass."""
    exc = getattr(state, "data", None)
    return isinstance(exc, BaseException) and bool(getattr(exc, "transient", False))


@dataclass
class IngestContext:
    """What every task of one run shares (built once at flow entry, not a parameter)."""

    run_id: str
    target: IngestTarget
    manifest: Manifest
    mover: Mover
    staging: Path  # each concurrent transfer stages under its own slot folder here
    listener: Listener | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    slots: asyncio.Queue[int] = field(default_factory=asyncio.Queue)


@dataclass
class BatchOutcome:
    label: str
    outcomes: dict[str, ManifestOutcome]
    results: list[FileResult]

    @property
    def bytes_verified(self) -> int:
        return sum(
            (r.listed.file.size or 0)
            for r in self.results
            if self.outcomes.get(r.listed.path) in VERIFIED
        )


VERIFIED = {ManifestOutcome.VERIFIED, ManifestOutcome.REPLACED, ManifestOutcome.REVERIFIED}


@task(
    name="discover",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=transient_only,
    cache_policy=NO_CACHE,
    persist_result=False,
)
async def discover(
    target: IngestTarget,
    request: IngestRequest,
    manifest: Manifest,
    before_plan: Callable[[], object] | None = None,
    on_window: Callable[[list[tuple[ListedFile, Decision]]], None] | None = None,
) -> Discovery:
    """List the archive (files the request covers, with ETag/LastModified and sidecars)
    and plan it against the manifest as the listing streams in (`list_and_plan`), handing
    the files to transfer to `on_window` in windows when given."""

    run = flow_run_id()

    def work() -> Discovery:
        source = target.source
        with tracing.step(
            "ingest.discover",
            flow_run_id=run,
            source_bucket=source.bucket,
            source_prefix=target.source_prefix,
            bronze_bucket=target.bronze_bucket,
        ) as span:
            _probe(target)
            found = list_and_plan(
                target, request.query(), manifest, before_plan=before_plan, on_window=on_window
            )
            tracing.note(
                span,
                listed=found.listed,
                listed_bytes=found.listed_bytes,
                to_transfer=found.handed_on + len(found.work.transfer),
                up_to_date=found.up_to_date,
                without_sidecar=len(found.without_sidecar),
                missing_periods=found.missing_periods,
            )
            return found

    return await anyio.to_thread.run_sync(work)


def _probe(target: IngestTarget) -> None:
    """Fail within seconds when the archive cannot answer.

    An endpoint URL gets a TCP check (milliseconds; the listing right after reports a
    missing bucket or a refused identity with the same errors). AWS's own endpoint (no
    URL) gets a one-request S3 probe: building its boto3 client costs 0.1-0.5 s of CPU.
    """
    source = target.source
    if source.endpoint.url:
        check_reachable(source.endpoint, PROBE_SECONDS)
    else:
        S3Storage(source.endpoint, timeout=PROBE_SECONDS, retries=0).probe_bucket(source.bucket)


@task(
    name="transfer-partition",
    task_run_name="transfer {batch.label}",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=transient_only,
    cache_policy=NO_CACHE,
    persist_result=False,
)
async def transfer_partition(batch: Batch, ctx: IngestContext) -> BatchOutcome:
    """Move one partition's files (zip + CHECKSUM) and record each file's outcome."""
    with tracing.step(
        "ingest.batch",
        flow_run_id=ctx.run_id,
        partition=batch.label,
        partitions=len(batch.partitions),
        files=len(batch.files),
        bytes=batch.size,
        bronze_bucket=ctx.target.bronze_bucket,
    ) as span:
        outcome = await _transfer(batch, ctx, span)
        tracing.note(span, bytes_verified=outcome.bytes_verified)
        return outcome


async def _transfer(batch: Batch, ctx: IngestContext, span: tracing.StepSpan) -> BatchOutcome:
    files = list(batch.files)

    def on_bytes(count: int) -> None:
        emit(IngestEvent("bytes", bytes=count), ctx.listener)

    slot = await ctx.slots.get()
    staging = ctx.staging / f"p{os.getpid()}-s{slot}"
    # Two pairs of round trips side by side: rows move to `started` while a slot of the
    # global limit is leased, and the outcomes are recorded while it is given back.
    started = asyncio.ensure_future(_mark_started(batch, ctx))
    recorded: asyncio.Future[dict[str, ManifestOutcome]] | None = None
    try:
        async with transfer_slot():  # says what it waits for when slots are all taken
            span.add_event("transfer slot leased")
            await started
            results = await _move(batch, ctx, staging, on_bytes)
            recorded = asyncio.ensure_future(_record(ctx, results))
        assert recorded is not None  # set before the lease is given back
        outcomes = await recorded
    finally:
        with contextlib.suppress(OSError):  # the engine removed its run folder inside
            staging.rmdir()
        ctx.slots.put_nowait(slot)
        for pending in (started, recorded):  # when the lease failed: let them finish
            if pending is None:
                continue
            if not pending.done():
                with contextlib.suppress(BaseException):
                    await pending
            elif not pending.cancelled():
                # Retrieved, so asyncio does not print it as a traceback at exit: the error
                # that ends this batch is already on its way up.
                pending.exception()
    _count(results, outcomes)
    emit(IngestEvent("batch", files=len(files), label=batch.label), ctx.listener)
    return BatchOutcome(batch.label, outcomes, results)


async def _mark_started(batch: Batch, ctx: IngestContext) -> None:
    """Rows to `started` before the engine runs: the durable hand-over's first half."""
    files = list(batch.files)
    target = ctx.target
    with tracing.step("ingest.mark_started", files=len(files)):
        await anyio.to_thread.run_sync(
            lambda: ctx.manifest.mark_started(
                ctx.run_id,
                files,
                source_url=target.source_label,
                bronze_bucket=target.bronze_bucket,
            )
        )


async def _record(ctx: IngestContext, results: list[FileResult]) -> dict[str, ManifestOutcome]:
    """The manifest write of one batch's outcomes (verified / corrupt / failed)."""
    with tracing.step("ingest.record", files=len(results)) as span:
        outcomes = await anyio.to_thread.run_sync(ctx.manifest.record, ctx.run_id, results)
        counts: dict[str, int] = {}
        for outcome in outcomes.values():
            counts[outcome.value] = counts.get(outcome.value, 0) + 1
        tracing.note(span, **counts)
        return outcomes


async def _move(
    batch: Batch, ctx: IngestContext, staging: Path, on_bytes: Callable[[int], None]
) -> list[FileResult]:
    """The engine (or the executor) moves the batch, each file's SHA-256 checked against
    its CHECKSUM sidecar; one result per file."""
    retried: list[str] = []
    with tracing.step("ingest.transfer", files=len(batch.files), bytes=batch.size) as span:
        results = await anyio.to_thread.run_sync(
            lambda: ctx.mover.move(
                ctx.target,
                list(batch.files),
                staging=staging,
                on_bytes=on_bytes,
                cancel=ctx.cancel,
                on_retried=retried.append,
            )
        )
        ok = sum(1 for r in results if r.ok)
        tracing.note(span, ok=ok, not_ok=len(results) - ok)
    for text in retried:  # transient errors s5cmd rode out with back-off (or then gave up on)
        get_run_logger().warning(
            "batch %s: s5cmd retried %s requests; %d of %d files ok",
            batch.label,
            text,
            ok,
            len(results),
        )
    return results


def _count(results: list[FileResult], outcomes: dict[str, ManifestOutcome]) -> None:
    verified_any = False
    for result in results:
        file = result.listed.file
        outcome = outcomes[result.listed.path]
        INGEST_FILES.labels(file.market.value, file.data_type.value, outcome.value).inc()
        if outcome in VERIFIED:
            INGEST_BYTES.labels(file.market.value, file.data_type.value).inc(file.size or 0)
            verified_any = True
    if verified_any:
        INGEST_LAST_VERIFIED.set(time.time())


async def record_without_sidecar(ctx: IngestContext, items: list[ListedFile]) -> BatchOutcome:
    """Files the archive publishes without a CHECKSUM cannot be verified: recorded failed."""
    results = [FileResult(item, ok=False, error="no .CHECKSUM sidecar published") for item in items]
    await anyio.to_thread.run_sync(
        lambda: ctx.manifest.mark_started(
            ctx.run_id,
            items,
            source_url=ctx.target.source_label,
            bronze_bucket=ctx.target.bronze_bucket,
        )
    )
    outcomes = await anyio.to_thread.run_sync(ctx.manifest.record, ctx.run_id, results)
    return BatchOutcome("without CHECKSUM", outcomes, results)


async def batch_failed(batch: Batch, ctx: IngestContext, exc: Exception) -> BatchOutcome:
    error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    results = [FileResult(item, ok=False, error=error) for item in batch.files]
    try:
        outcomes = await anyio.to_thread.run_sync(ctx.manifest.record, ctx.run_id, results)
    except LakehouseError:  # the catalog itself is down: the rows stay `started`
        outcomes = {item.path: ManifestOutcome.FAILED for item in batch.files}
    return BatchOutcome(batch.label, outcomes, results)
