"""Move one batch of archive files into bronze and say, per file, whether it is verified.

Two ways, one interface (`Mover.move`):

- `EngineMover`: the transfer engine in this process, staged mode (the archive and the
  lake are different endpoints), every zip with its `.CHECKSUM` sidecar, SHA-256 checked
  while staged; a mismatch is quarantined and never reaches bronze.
- `ExecutorMover`: the same through the s5cmd executor service (`EXECUTOR_URL`), for
  workers that should not run s5cmd themselves: the files named in the request, the
  replica verifying and reporting each one.

Both always copy (never "sync"): a file only comes here when the manifest says it is not
verified, and copying is what re-verifies it.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from crypto_lakehouse.archive.paths import CHECKSUM_SUFFIX
from crypto_lakehouse.catalog import FileResult, ListedFile
from crypto_lakehouse.config import Settings
from crypto_lakehouse.flows.target import IngestTarget
from crypto_lakehouse.storage import QUARANTINE_PREFIX
from crypto_lakehouse.storage.urls import S3Url
from crypto_lakehouse.transfer import (
    EngineOptions,
    ListedObject,
    ListingScope,
    Mode,
    ObjectResult,
    TransferEngine,
    TransferOutcome,
    TransferProgress,
    TransferRequest,
    folder_of,
    listed_stamp,
)

if TYPE_CHECKING:
    from crypto_lakehouse.executor.client import ExecutorClient

BytesFn = Callable[[int], None]  # called with the bytes moved since the last call
RetriedFn = Callable[[str], None]  # called with "12 (SlowDown 10, ...)" when requests were retried


class Mover(Protocol):
    def move(
        self,
        target: IngestTarget,
        files: Sequence[ListedFile],
        *,
        staging: Path | None = None,
        on_bytes: BytesFn | None = None,
        cancel: threading.Event | None = None,
        on_retried: RetriedFn | None = None,
    ) -> list[FileResult]: ...


def mover_for(settings: Settings) -> Mover:
    """The executor when `EXECUTOR_URL` is set, else the engine in this process."""
    if settings.executor_url:
        return ExecutorMover(settings, in_flight=settings.executor_operations_in_flight)
    return EngineMover(EngineOptions.from_settings(settings))


class EngineMover:
    def __init__(self, options: EngineOptions) -> None:
        self.options = options

    def move(
        self,
        target: IngestTarget,
        files: Sequence[ListedFile],
        *,
        staging: Path | None = None,
        on_bytes: BytesFn | None = None,
        cancel: threading.Event | None = None,
        on_retried: RetriedFn | None = None,
    ) -> list[FileResult]:
        keys: list[str] = []
        for item in files:
            keys += [item.source_key, item.source_key + CHECKSUM_SUFFIX]
        prefix = common_folder(keys, target.source_prefix)
        given, scope = source_listing_for(files)
        request = TransferRequest(
            source=target.source.endpoint,
            source_url=S3Url(target.source.bucket, prefix),
            dest=target.lake,
            dest_url=S3Url(target.bronze_bucket, prefix[len(target.source_prefix) :]),
            mode=Mode.STAGED,
            keys=keys,
            verify_sidecars=True,
            quarantine_prefix=QUARANTINE_PREFIX,
            operation="copy",
            source_listing=given,
            source_listing_scope=scope,
        )
        seen = [0]

        def progress(snapshot: TransferProgress) -> None:
            if on_bytes is not None and snapshot.bytes_done > seen[0]:
                on_bytes(snapshot.bytes_done - seen[0])
                seen[0] = snapshot.bytes_done

        # Concurrent engine runs each get their own staging root (`staging`): runs sharing a
        # root may remove each other's fresh folders while cleaning up stale ones.
        options = self.options
        if staging is not None:
            options = dataclasses.replace(options, staging_root=staging)
        report = TransferEngine(options).run(
            request, progress=progress, cancel=cancel, log_retries=on_retried is None
        )
        if on_retried is not None and report.summary.retried:
            on_retried(report.summary.retries_text)
        by_key = {r.source_key: r for r in report.results}
        return [file_result(item, by_key.get(item.source_key)) for item in files]


def common_folder(keys: Sequence[str], floor: str) -> str:
    """The deepest folder (ending in `/`, or `floor`) that holds every key.

    The engine's source prefix: its wildcard lines never reach above it and it lists
    the destination under it, so the deepest folder keeps both tight. (Before the engine
    took a bucket's root as a wildcard, the root prefix meant a HEAD before every GET:
    ~1 s more for 964 objects, measured.)
    """
    if not keys:
        return floor
    common = os.path.commonprefix([min(keys), max(keys)])  # noqa: RUF071
    folder = folder_of(common)
    return folder if len(folder) > len(floor) else floor


def source_listing_for(
    files: Sequence[ListedFile],
) -> tuple[list[ListedObject] | None, ListingScope]:
    """What the engine plans the batch from, so that it never lists the archive itself.

    A batch spanning folders has a wide prefix (`data/spot/`: millions of keys in the real
    archive). Discovery streams its listing and keeps none of it whole, so a batch hands
    over its own objects as discovery listed them (one line each, nothing listed at the
    source): bounded by the batch, not by the archive. None when discovery did not record
    all of it: the engine then lists the prefix.
    """
    known = known_objects(files)
    if known is not None:
        return known, ListingScope.OBJECTS
    return None, ListingScope.PREFIX


def known_objects(files: Sequence[ListedFile]) -> list[ListedObject] | None:
    """The files and their sidecars as discovery listed them, in key order; None when
    discovery did not record all of it (the engine then lists the source itself)."""
    objects = []
    for item in files:
        file = item.file
        if (
            file.size is None
            or file.etag is None
            or file.last_modified is None
            or file.checksum_etag is None
            or file.checksum_size is None
        ):
            return None
        stamp = listed_stamp(file.last_modified)
        sidecar = item.source_key + CHECKSUM_SUFFIX
        objects.append(ListedObject(item.source_key, file.size, file.etag, stamp))
        # The sidecar's LastModified is not kept; only a sync (never a copy) would use it.
        objects.append(ListedObject(sidecar, file.checksum_size, file.checksum_etag, ""))
    return sorted(objects, key=lambda obj: obj.key)


def file_result(item: ListedFile, result: ObjectResult | None) -> FileResult:
    """The manifest's view of one zip's engine result."""
    if result is None:
        return FileResult(item, ok=False, error="the engine reported nothing for this file")
    if result.outcome is TransferOutcome.CORRUPT:
        return FileResult(item, ok=False, corrupt=True, error=result.error)
    if result.outcome is TransferOutcome.COPIED and result.sha256:
        return FileResult(item, ok=True, sha256=result.sha256)
    if result.outcome is TransferOutcome.COPIED:
        return FileResult(item, ok=False, error="copied without a checksum check")
    return FileResult(item, ok=False, error=result.error or f"not copied ({result.outcome})")


MIN_OPERATION_FILES = 100  # below this a batch is not split further (a run's fixed cost)
CANCEL_CHECK_SECONDS = 2.0  # a long-poll's length while a cancel may come


class ExecutorMover:
    """Through the executor service: each file and its sidecar named in the request.

    A batch becomes one operation, or a few (`operation_parts`: `in_flight` at most, each
    of at least MIN_OPERATION_FILES files and at most MAX_OBJECTS objects), submitted
    together (never more than `in_flight` at once) and awaited by long-polls, so that
    replicas sharing one store run them side by side. The replica plans from the list
    (nothing is listed at the source), checks every zip against its sidecar and records
    each object's outcome and verified SHA-256; those per-object results are the whole
    answer (nothing is read back from bronze).
    """

    def __init__(self, settings: Settings, *, in_flight: int | None = None) -> None:
        self.settings = settings
        wanted = settings.executor_operations_in_flight if in_flight is None else in_flight
        self.in_flight = max(1, wanted)

    def move(
        self,
        target: IngestTarget,
        files: Sequence[ListedFile],
        *,
        staging: Path | None = None,
        on_bytes: BytesFn | None = None,
        cancel: threading.Event | None = None,
        on_retried: RetriedFn | None = None,
    ) -> list[FileResult]:
        from crypto_lakehouse.executor.client import ExecutorClient

        parts = operation_parts(files, self.in_flight)
        results: dict[str, FileResult] = {}
        with (
            ExecutorClient.from_settings(self.settings, timeout=60.0) as client,
            ThreadPoolExecutor(
                max(1, min(self.in_flight, len(parts))), thread_name_prefix="executor-op"
            ) as pool,
        ):
            # Each operation in the caller's context (its own copy): the trace span goes along.
            running = [
                pool.submit(contextvars.copy_context().run, _run_part, client, target, part, cancel)
                for part in parts
            ]
            for future in as_completed(running):
                for result in future.result():
                    results[result.listed.source_key] = result
                    if on_bytes is not None and result.ok:
                        on_bytes(result.listed.file.size or 0)
        return [results[item.source_key] for item in files]


def operation_parts(files: Sequence[ListedFile], in_flight: int) -> list[list[ListedFile]]:
    """The batch cut into key-ordered runs, one per operation: as many as `in_flight` allows
    with MIN_OPERATION_FILES each, more only when a part would exceed MAX_OBJECTS objects
    (a file travels with its sidecar)."""
    from crypto_lakehouse.executor.models import MAX_OBJECTS

    ordered = sorted(files, key=lambda item: item.source_key)
    if not ordered:
        return []
    most = MAX_OBJECTS // 2
    count = max(-(-len(ordered) // most), min(in_flight, len(ordered) // MIN_OPERATION_FILES), 1)
    size = -(-len(ordered) // count)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def _run_part(
    client: ExecutorClient,
    target: IngestTarget,
    files: Sequence[ListedFile],
    cancel: threading.Event | None,
) -> list[FileResult]:
    """One listed operation: submit (waiting out a full queue), long-poll, read the results."""
    from crypto_lakehouse.errors import ExecutorError, QueueFull
    from crypto_lakehouse.executor.models import (
        ObjectOutcome,
        ObjectSpec,
        OperationMode,
        OperationType,
        SyncRequest,
    )

    keys: list[str] = []
    for item in files:
        keys += [item.source_key, item.source_key + CHECKSUM_SUFFIX]
    prefix = common_folder(keys, target.source_prefix)
    objects = []
    for item in files:
        rest = item.source_key[len(prefix) :]
        objects.append(ObjectSpec(key=rest, size=item.file.size or 0))
        sidecar_size = item.file.checksum_size or 0
        objects.append(ObjectSpec(key=rest + CHECKSUM_SUFFIX, size=sidecar_size))
    request = SyncRequest.for_urls(
        S3Url(target.source.bucket, prefix),
        S3Url(target.bronze_bucket, prefix[len(target.source_prefix) :]),
        source_endpoint=target.source.endpoint.url,
        anonymous=target.source.endpoint.anonymous,
        mode=OperationMode.STAGED,
        operation_type=OperationType.COPY,
        objects=objects,
    )
    stopped = cancel.is_set if cancel is not None else None
    while True:
        try:
            op_id = client.submit(request).operation_id
            break
        except QueueFull as exc:
            if stopped is not None and stopped():
                return [FileResult(i, ok=False, error="cancelled before submission") for i in files]
            time.sleep(exc.retry_after)
    view = client.wait(op_id, stop=stopped, long_poll=CANCEL_CHECK_SECONDS)
    if not view.status.terminal:  # cancelled here: stop it there, then take what landed
        with contextlib.suppress(ExecutorError):  # 409: it ended in the meantime
            client.cancel(op_id)
        view = client.wait(op_id, long_poll=CANCEL_CHECK_SECONDS)
    by_key: dict[str, ObjectResult] = {}
    for obj in client.iter_objects(op_id):
        if obj.outcome is not ObjectOutcome.PENDING:
            outcome = TransferOutcome(obj.outcome.value)
            by_key[obj.source_key] = ObjectResult(
                obj.source_key, obj.dest_key, obj.size, outcome, obj.sha256, error=obj.error
            )
    unreported = view.error or f"operation {op_id} {view.status} without a result for it"
    return [
        file_result(item, by_key[item.source_key])
        if item.source_key in by_key
        else FileResult(item, ok=False, error=unreported)
        for item in files
    ]
