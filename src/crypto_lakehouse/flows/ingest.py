"""Flow `ingest-archive`: keep a verified copy of the archive in bronze, incrementally.

    discover  list the archive (symbols, files, sidecars; only the requested dates) and
              ask the manifest, chunk by chunk as the listing streams in, which files
              need a transfer; find missing periods
    plan      cut the files to transfer into partition batches
    transfer  one task per batch: mark started -> engine (staged, SHA-256 checked against
              the CHECKSUM sidecars) -> record verified / corrupt / failed in the manifest
    report    summary + Markdown artifact; Failed when any file is corrupt or failed

Transfers hold a slot of the global concurrency limit `s5cmd-transfers`; tasks retry
(with backoff) only on errors whose `.transient` is true. Credentials come from settings
at flow entry, never from parameters.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable
from concurrent.futures import Future
from functools import partial
from typing import Any, TypeVar

import anyio
from prefect import flow
from prefect.states import Failed

from crypto_lakehouse.catalog import Decision, ListedFile, Manifest, ManifestOutcome, RunStatus
from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import BucketNotFound
from crypto_lakehouse.flows.batches import Batch, in_flight, size_batches
from crypto_lakehouse.flows.discovery import Discovery
from crypto_lakehouse.flows.limits import ensure_transfer_limit
from crypto_lakehouse.flows.mover import mover_for
from crypto_lakehouse.flows.progress import IngestEvent, current_listener, emit
from crypto_lakehouse.flows.summary import IngestProblem, IngestSummary
from crypto_lakehouse.flows.target import IngestRequest, IngestTarget
from crypto_lakehouse.flows.tasks import (
    PROBE_SECONDS,
    BatchOutcome,
    IngestContext,
    batch_failed,
    discover,
    inputs,
    record_without_sidecar,
    transfer_partition,
)
from crypto_lakehouse.observability.push import pushing
from crypto_lakehouse.storage import S3Storage
from crypto_lakehouse.transfer import Invocation, Listing, check_reachable

FLOW_NAME = "ingest-archive"
SCHEMA_WAIT_SECONDS = 120.0  # discovery's wait for the catalog's tables before planning

T = TypeVar("T")


def _tally(summary: IngestSummary, batches: list[BatchOutcome]) -> None:
    """Count one window's outcomes into the summary (the outcomes are then let go)."""
    for batch in batches:
        summary.bytes_copied += batch.bytes_verified
        for result in batch.results:
            outcome = batch.outcomes[result.listed.path]
            if outcome is ManifestOutcome.VERIFIED:
                summary.verified += 1
            elif outcome is ManifestOutcome.REPLACED:
                summary.replaced += 1
            elif outcome is ManifestOutcome.REVERIFIED:
                summary.reverified += 1
            else:
                summary.add_problem(
                    IngestProblem(result.listed.path, outcome.value, result.error or outcome.value)
                )


def _summarise(summary: IngestSummary, discovery: Discovery) -> None:
    summary.listed = discovery.listed
    summary.listed_bytes = discovery.listed_bytes
    summary.skipped = discovery.up_to_date
    summary.missing = discovery.gaps
    summary.missing_periods = discovery.missing_periods
    summary.missing_days = len(discovery.missing_days)
    for item in discovery.work.known_corrupt:
        summary.add_problem(
            IngestProblem(item.path, "corrupt", "unchanged since it was found corrupt", known=True)
        )


class _Windows:
    """Discovery's windows of work, from its thread to the flow's loop, one queued at most:
    the listing waits while the flow still has a window to start, so the run holds the
    window being transferred, the one queued and the one being listed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[list[tuple[ListedFile, Decision]]] = asyncio.Queue(1)
        self.stopped = threading.Event()

    def hand_on(self, window: list[tuple[ListedFile, Decision]]) -> None:
        """Called on discovery's thread; raises (ending the listing) once the flow stopped."""
        put = asyncio.run_coroutine_threadsafe(self.queue.put(window), self.loop)
        while not self.stopped.is_set():
            with contextlib.suppress(TimeoutError):
                put.result(timeout=0.5)
                return
        put.cancel()
        raise StopListing("the ingest stopped: no more windows are taken")

    def stop(self) -> None:
        self.stopped.set()


class StopListing(Exception):
    """Ends discovery's listing when the flow no longer takes its windows."""


async def run_ingest(request: IngestRequest, settings: Settings, run_id: str) -> IngestSummary:
    """The flow's body, callable inside any flow run (the flow wraps it with the final state).

    Discovery lists and plans on a thread; every `WINDOW_FILES` files to transfer it hands
    a window to this loop, which transfers it in batches while the listing goes on. A run
    of fewer files gets one window, once the listing has ended.
    """
    started = time.monotonic()
    target = IngestTarget.resolve(request, settings)
    manifest = Manifest.from_settings(settings)
    ctx = IngestContext(
        run_id,
        target,
        manifest,
        mover_for(settings),
        staging=settings.staging_root / "ingest",
        listener=current_listener(),
    )
    parallel = in_flight(request.parallel_batches)
    for slot in range(parallel):
        ctx.slots.put_nowait(slot)
    summary = IngestSummary(
        run_id=run_id, source=target.source_label, bronze=f"s3://{target.bronze_bucket}/"
    )
    windows = _Windows(asyncio.get_running_loop())
    planned_bytes = 0
    # Side jobs started with the archive listing, each a round trip it would otherwise wait
    # for: the catalog's schema and run row, the transfer limit, whether bronze exists.
    side: list[asyncio.Future[Any]] = []
    try:
        schema: Future[None] = Future()  # resolved once the catalog's tables exist
        setup = _start(side, anyio.to_thread.run_sync(_begin, manifest, run_id, request, schema))
        limit = _start(side, ensure_transfer_limit())
        # (a read-only probe: when its answer is not needed it is left to finish on its own)
        bucket = _start(
            side, anyio.to_thread.run_sync(_bucket_exists, target, abandon_on_cancel=True)
        )
        # Discovery plans each listed chunk against the manifest once its tables exist.
        wait_schema = partial(schema.result, timeout=SCHEMA_WAIT_SECONDS)
        discovering = _start(
            side,
            discover(*inputs(target, request, manifest, wait_schema, windows.hand_on)),
        )
        bronze_ready = False

        async def transfer(window: list[tuple[ListedFile, Decision]]) -> None:
            nonlocal planned_bytes, bronze_ready
            await setup
            await limit
            batches = size_batches([item for item, _ in window], request.batch_files, parallel)
            summary.transferred += len(window)
            summary.batches += len(batches)
            planned_bytes += sum(b.size for b in batches)
            event = IngestEvent("planned", files=summary.transferred, bytes=planned_bytes)
            emit(event, ctx.listener)
            if batches and not bronze_ready:
                if not await bucket:
                    await anyio.to_thread.run_sync(_create_bucket, target)
                bronze_ready = True
            if batches:
                _tally(summary, await _run_batches(batches, ctx, parallel))

        while True:  # windows handed on while discovery lists, then what it kept
            taking = asyncio.ensure_future(windows.queue.get())
            either: set[asyncio.Future[Any]] = {taking, discovering}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not taking.done():
                taking.cancel()
                if windows.queue.empty():
                    break
                taking = asyncio.ensure_future(windows.queue.get())
            await transfer(await taking)
        discovery = await discovering
        await setup
        clock = summary.phase("discover", started)
        if discovery.without_sidecar:
            _tally(summary, [await record_without_sidecar(ctx, discovery.without_sidecar)])
        if discovery.work.transfer or not summary.transferred:
            await transfer(discovery.work.transfer)
        summary.phase("transfer", clock)
        _summarise(summary, discovery)
    except BaseException:
        windows.stop()
        ctx.cancel.set()
        await _settle(side)
        summary.seconds = time.monotonic() - started
        await anyio.to_thread.run_sync(
            manifest.finish_run, run_id, RunStatus.ABORTED, summary.as_dict()
        )
        manifest.close()
        raise
    await _settle(side)  # the bucket's answer is not needed when nothing is transferred
    summary.seconds = time.monotonic() - started
    status = RunStatus.COMPLETED if summary.ok else RunStatus.FAILED
    await anyio.to_thread.run_sync(manifest.finish_run, run_id, status, summary.as_dict())
    manifest.close()
    return summary


def _start(side: list[asyncio.Future[Any]], job: Awaitable[T]) -> asyncio.Future[T]:
    future = asyncio.ensure_future(job)
    side.append(future)
    return future


async def _settle(side: list[asyncio.Future[Any]]) -> None:
    """Stop side jobs still running and ignore their outcome (a thread's job is waited for,
    unless it may be abandoned: a thread cannot be stopped)."""
    for future in side:
        future.cancel()  # a no-op when it is done
        with contextlib.suppress(BaseException):
            await future


def _begin(manifest: Manifest, run_id: str, request: IngestRequest, schema: Future[None]) -> None:
    """The catalog's tables (then `schema` is resolved: discovery may plan) and the run row."""
    try:
        manifest.ensure_schema()
    except BaseException as exc:
        schema.set_exception(exc)
        raise
    schema.set_result(None)
    manifest.begin_run(run_id, request.model_dump(mode="json"))


def _bucket_exists(target: IngestTarget) -> bool:
    """Whether bronze exists, asked with one s5cmd listing request stopped after one key.

    Building a boto3 client costs 0.1-0.5 s of CPU, so boto3 only creates the bucket.
    """
    check_reachable(target.lake, PROBE_SECONDS)
    try:
        with Listing(Invocation(endpoint=target.lake), target.bronze_bucket, "") as listing:
            next(iter(listing), None)
    except BucketNotFound:
        return False
    return True


def _create_bucket(target: IngestTarget) -> None:
    S3Storage(target.lake).ensure_bucket(target.bronze_bucket)


async def _run_batches(
    batches: list[Batch], ctx: IngestContext, parallel: int
) -> list[BatchOutcome]:
    """Every batch as its own task run, at most `parallel` in flight in this flow run.

    A batch that still fails after its retries does not stop the others: its files are
    recorded `failed` (the next run retries them) and listed in the summary.
    """
    gate = asyncio.Semaphore(parallel)

    async def one(batch: Batch) -> BatchOutcome:
        async with gate:
            try:
                return await transfer_partition(*inputs(batch, ctx))
            except Exception as exc:  # the task's own errors, after its retries
                return await batch_failed(batch, ctx, exc)

    return list(await asyncio.gather(*(one(b) for b in batches)))


async def _publish(summary: IngestSummary) -> None:
    from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

    artifacts = [
        acreate_markdown_artifact(
            markdown=summary.markdown(), key="ingest-summary", description=summary.message()
        )
    ]
    if summary.problems:
        artifacts.append(
            acreate_table_artifact(
                table=[
                    {"file": p.path, "problem": p.kind, "known": p.known, "detail": p.error}
                    for p in summary.problems
                ],
                key="ingest-problems",
                description="Files that are not verified in bronze after this run",
            )
        )
    await asyncio.gather(*artifacts)  # two API calls side by side


async def deployed_request(request: IngestRequest | None) -> IngestRequest:
    """`request` (None: every default) completed with its deployment's `request` parameter.

    In a deployment's flow run, the fields the run's request left unset take the values the
    deployment holds (e.g. `parallel_batches` from `flows deploy --parallel`): Prefect would
    replace the deployment's whole `request` with the run's. Outside one, `request` as is.
    """
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    request = request or IngestRequest()
    context = FlowRunContext.get()
    deployment_id = context.flow_run.deployment_id if context and context.flow_run else None
    if deployment_id is None:
        return request
    async with get_client() as client:
        deployment = await client.read_deployment(deployment_id)
    return request.over((deployment.parameters or {}).get("request") or {})


@flow(name=FLOW_NAME, persist_result=False, validate_parameters=True)
async def ingest_archive(request: IngestRequest | None = None) -> Any:
    """Copy the archive files `request` covers into bronze, verified; skip what is done.

    `request` holds every option and its default (`IngestRequest`); None or `{}` takes them
    all. Its `source` is "binance" (the real archive), an http(s) S3 endpoint URL (read
    anonymously), or empty for SOURCE_ENDPOINT. Ends Failed, listing the files, when any
    file is corrupt or failed; missing days are reported, not failed.
    """
    from prefect.runtime import flow_run

    request = await deployed_request(request)
    settings = Settings()
    async with pushing(settings.pushgateway_url):  # counters outlive the flow-run pod
        summary = await run_ingest(request, settings, str(flow_run.id or "local"))
    await _publish(summary)
    if not summary.ok:
        return Failed(message=summary.message(), data=summary.as_dict())
    return summary.as_dict()
