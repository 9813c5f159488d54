"""TransferEngine: check both sides, plan from the two listings, run the mode, summarise.

Bad input fails fast and before anything is written: a malformed URL or an impossible
mode is a ConfigError; a dead endpoint fails the TCP check within `probe_timeout`; an
unknown bucket or rejected credentials fail the listings (which run before any copy).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.observability.metrics import (
    S5CMD_BYTES_TRANSFERRED,
    S5CMD_OBJECTS_TRANSFERRED,
    S5CMD_RETRIED_REQUESTS,
    S5CMD_STAGING_CAP_BYTES,
)
from crypto_lakehouse.storage.endpoint import Endpoint
from crypto_lakehouse.storage.urls import validate_prefix
from crypto_lakehouse.transfer.binary import Invocation
from crypto_lakehouse.transfer.context import TransferContext
from crypto_lakehouse.transfer.direct import DirectCopier
from crypto_lakehouse.transfer.ledger import TransferLedger
from crypto_lakehouse.transfer.listing import ListedObject, Listing, check_reachable
from crypto_lakehouse.transfer.models import (
    EngineOptions,
    ListingScope,
    Mode,
    TransferProgress,
    TransferReport,
    TransferRequest,
)
from crypto_lakehouse.transfer.planner import (
    PlanItem,
    TransferPlan,
    build_plan,
    chunks,
    listing_scope,
    read_plan,
)
from crypto_lakehouse.transfer.remover import delete_keys
from crypto_lakehouse.transfer.runner import POLL_SECONDS
from crypto_lakehouse.transfer.staged import StagedCopier
from crypto_lakehouse.transfer.staging import StagingArea
from crypto_lakehouse.transfer.traditional import TraditionalCopier

ProgressFn = Callable[[TransferProgress], None]
log = logging.getLogger(__name__)


class TransferEngine:
    """Runs transfer requests with s5cmd. One engine may serve many runs, one at a time each."""

    def __init__(self, options: EngineOptions) -> None:
        self.options = options

    def resolve_mode(self, request: TransferRequest) -> Mode:
        """`auto` -> direct when one endpoint and identity serve both sides (and the caller
        did not hand over checksums to verify, which needs the bytes), else staged.

        Raises ConfigError for `direct` across two endpoints.
        """
        same = request.source.same_service(request.dest)
        if request.mode is Mode.AUTO:
            return Mode.DIRECT if same and not request.expected_sha256 else Mode.STAGED
        if request.mode is Mode.DIRECT and not same:
            raise ConfigError(
                "direct mode needs both sides on one endpoint with one signed identity; "
                "use --mode staged (or auto)"
            )
        return Mode(request.mode)

    def run(
        self,
        request: TransferRequest,
        *,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
        log_retries: bool = True,
    ) -> TransferReport:
        """Copy what the request names; every object considered gets one ObjectResult.

        Requests s5cmd retried are counted in the report and its metric, and logged as one
        warning unless `log_retries` is False (a caller that reports them in its own words).

        Raises ConfigError (bad request), EndpointUnreachable / AccessDenied /
        BucketNotFound / StorageError (a side cannot be listed; nothing was written),
        TransferError (s5cmd could not run at all). Objects that fail individually do
        not raise: they are `failed` or `corrupt` in the report.
        """
        mode = self.resolve_mode(request)
        _validate(request, mode)
        opts = self.options
        if request.keys is not None and len(request.keys) == 0:
            return TransferLedger(progress).report(
                mode
            )  # an explicit empty selection: nothing to do
        check_reachable(request.source, opts.probe_timeout)
        check_reachable(request.dest, opts.probe_timeout)
        ledger = TransferLedger(progress)
        staging = StagingArea(
            opts.staging_root,
            opts.staging_cap_bytes,
            memory_root=opts.staging_memory_root,
            memory_cap_bytes=opts.staging_memory_cap_bytes,
        )
        S5CMD_STAGING_CAP_BYTES.set(opts.staging_cap_bytes)
        try:
            ctx = TransferContext(
                options=opts,
                request=request,
                ledger=ledger,
                # Staged mode reads a far source (latency-bound: more workers); direct
                # mode's server-side copies are the lake's own work, sized like its writes.
                source=self._invocation(
                    request.source,
                    opts.max_concurrent if mode is Mode.DIRECT else opts.source_workers,
                ),
                dest=self._invocation(request.dest, opts.max_concurrent),
                sidecars=set(),
                cancel=cancel,
            )
            started = time.monotonic()
            plan = self._plan(ctx, staging)
            log.debug(
                "plan: %d objects to copy (%d bytes) in %.3fs",
                plan.copy_objects,
                plan.copy_bytes,
                time.monotonic() - started,
            )
            ctx.sidecars = plan.sidecars
            ledger.report_progress(force=True)
            self._execute(mode, ctx, plan, staging)
            if request.delete_extra and plan.extra_dest_keys and not ctx.cancelled:
                ledger.deleted = delete_keys(ctx, plan.extra_dest_keys, staging)
        finally:
            staging.close()
        ledger.report_progress(force=True)
        report = ledger.report(
            mode,
            staging_peak=staging.peak_bytes,
            cancelled=cancel is not None and cancel.is_set(),
        )
        S5CMD_OBJECTS_TRANSFERRED.inc(report.summary.copied)
        S5CMD_BYTES_TRANSFERRED.inc(report.summary.bytes_copied)
        for cause, count in report.summary.retried.items():
            S5CMD_RETRIED_REQUESTS.labels(cause).inc(count)
        if report.summary.retried and log_retries:
            log.warning(
                "s5cmd retried %s requests to %s or %s",
                report.summary.retries_text,
                request.source.describe(),
                request.dest.describe(),
            )
        return report

    def _invocation(self, endpoint: Endpoint, workers: int) -> Invocation:
        opts = self.options
        return Invocation(
            endpoint=endpoint,
            numworkers=workers,
            retry_count=opts.retry_count,
            log_level=opts.log_level,
            stats=opts.stats,
        )

    def _plan(self, ctx: TransferContext, staging: StagingArea) -> TransferPlan:
        request = ctx.request
        src_scope, dst_scope = listing_scope(request)
        timeout = self.options.probe_timeout
        with contextlib.ExitStack() as stack:
            source: Iterable[ListedObject]
            given = request.source_listing
            if given is not None:
                source = _given_listing(given, request.source_url.prefix, src_scope)
            else:
                source = stack.enter_context(
                    Listing(
                        ctx.source,
                        request.source_url.bucket,
                        src_scope,
                        first_output_timeout=timeout,
                    )
                )
            listing = stack.enter_context(
                Listing(ctx.dest, request.dest_url.bucket, dst_scope, first_output_timeout=timeout)
            )
            dest: Iterable[ListedObject] = listing
            if request.operation == "copy" and not request.delete_extra:
                dest = _preflight_only(listing)
            return build_plan(request, source, dest, ctx.ledger, staging.dir / "plan.jsonl")

    def _execute(
        self, mode: Mode, ctx: TransferContext, plan: TransferPlan, staging: StagingArea
    ) -> None:
        opts = self.options
        items = read_plan(plan.path)
        if mode is Mode.TRADITIONAL:
            copier = TraditionalCopier(ctx, staging)
            for batch in chunks(items, opts.batch_objects, opts.staging_cap_bytes):
                copier.copy(batch)
            return
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sha256") as hasher:
            staged = StagedCopier(ctx, staging, hasher)
            if mode is Mode.STAGED and opts.overlap:
                limit = min(opts.chunk_bytes, opts.staging_cap_bytes // 2)
                _overlapped(staged, chunks(items, opts.batch_objects, limit))
                return
            if mode is Mode.STAGED:
                limit = min(opts.chunk_bytes, opts.staging_cap_bytes)
                for batch in chunks(items, opts.batch_objects, limit):
                    staged.copy(batch)
                return
            direct = DirectCopier(ctx, staging)
            deferred = []
            for batch in chunks(items, opts.batch_objects, 1 << 62):
                deferred.extend(direct.copy(batch))
            limit = min(opts.chunk_bytes, opts.staging_cap_bytes)
            for batch in chunks(deferred, opts.batch_objects, limit):
                staged.copy(batch, wildcards=False)


def _preflight_only(listing: Listing) -> Iterator[ListedObject]:
    """No destination objects, once the listing has shown that it can be read.

    A copy overwrites whatever is there, so its plan needs none of the destination's keys;
    the listing only proves the bucket exists and the identity may read it (its errors are
    raised here, before any copy). Reading one key keeps that cost flat: a full listing
    of a batch's folder in a populated bronze grew with everything already ingested.
    """
    next(iter(listing), None)
    listing.close()  # stop s5cmd: the rest of the listing is not wanted
    yield from ()


def _given_listing(
    objects: Sequence[ListedObject], prefix: str, scope: str
) -> Iterator[ListedObject]:
    """The caller's listing of `prefix`, narrowed to `scope` as the engine's own would be."""
    for obj in objects:
        if not obj.key.startswith(prefix):
            raise ConfigError(f"source_listing holds {obj.key!r}, outside the prefix {prefix!r}")
        if obj.key.startswith(scope):
            yield obj


def _overlapped(staged: StagedCopier, batches: Iterable[list[PlanItem]]) -> None:
    """Download chunk k+1 while chunk k uploads on a second thread (two chunks staged at most,
    each at most half the cap). On by default (`STAGING_OVERLAP`): docs/transfer.md has the
    measurement."""
    report_progress = staged.ctx.ledger.report_progress
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload") as uploader:
        pending: Future[None] | None = None
        for batch in batches:
            prepared = staged.fetch(batch)
            if pending is not None:
                _wait_reporting(pending, report_progress)
                pending = None
            if prepared is not None:
                pending = uploader.submit(staged.store, prepared, foreground=False)
        if pending is not None:
            _wait_reporting(pending, report_progress)


def _wait_reporting(pending: Future[None], report_progress: Callable[[], None]) -> None:
    """Wait for an upload on another thread, reporting its progress from this one (the
    caller's callback runs on the caller's thread, and a progress bar or a cancel may
    depend on it)."""
    while True:
        try:
            return pending.result(timeout=POLL_SECONDS)
        except FutureTimeout:
            report_progress()


def _validate(request: TransferRequest, mode: Mode) -> None:
    if request.operation not in {"sync", "copy"}:
        raise ConfigError(f"operation must be 'sync' or 'copy', got {request.operation!r}")
    if request.delete_extra and request.keys is not None:
        raise ConfigError("delete_extra needs a whole prefix, not an explicit key list")
    if request.source_listing_scope is not ListingScope.PREFIX:
        if request.source_listing is None:
            raise ConfigError(
                f"source_listing_scope={request.source_listing_scope} needs a source_listing"
            )
        if request.delete_extra:
            raise ConfigError("delete_extra needs a source listing of the whole prefix")
    if request.quarantine_prefix:
        validate_prefix(request.quarantine_prefix)
        if request.dest_url.prefix.startswith(request.quarantine_prefix):
            raise ConfigError("the destination prefix lies inside the quarantine prefix")
    src, dst = request.source_url, request.dest_url
    if (
        (request.source.url or "").rstrip("/") == (request.dest.url or "").rstrip("/")
        and src.bucket == dst.bucket
        and (src.prefix.startswith(dst.prefix) or dst.prefix.startswith(src.prefix))
    ):
        raise ConfigError(f"source {src} and destination {dst} overlap")
