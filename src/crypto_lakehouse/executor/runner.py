"""Runs claimed operations through the transfer engine, a bounded number at a time.

A dispatcher thread claims operations while this replica has a free slot (and is woken
early by a local submit); each claimed operation runs the engine in its own worker
thread, because `TransferEngine.run` blocks. Beside each run a monitor loop renews the
lease, writes progress (at most a few times a second) and watches the row's
`cancel_requested` flag, which any replica's API may set. Cancel and shutdown both set
the engine's cancel event, which stops that run's s5cmd processes; a cancelled run is
recorded as `cancelled` with only the objects the engine confirmed, while a shutdown
hands the operation back to the queue (`pending`) for another replica or the restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from crypto_lakehouse.errors import ExecutorError, LakehouseError
from crypto_lakehouse.executor.models import MAX_FAILED_OBJECTS, MAX_OBJECTS
from crypto_lakehouse.executor.objects import ObjectReport, ObjectRow
from crypto_lakehouse.executor.plan import OperationPlan
from crypto_lakehouse.executor.redaction import Redactor
from crypto_lakehouse.executor.store import Claim, OperationOutcome, OperationRecord, OperationStore
from crypto_lakehouse.observability.metrics import (
    S5CMD_ACTIVE_OPERATIONS,
    S5CMD_OPERATION_DURATION,
    S5CMD_OPERATIONS,
)
from crypto_lakehouse.transfer import (
    EngineOptions,
    TransferEngine,
    TransferOutcome,
    TransferProgress,
    TransferReport,
)

log = logging.getLogger("crypto_lakehouse.executor")

EngineFactory = Callable[[EngineOptions], TransferEngine]
PROGRESS_INTERVAL = 0.5  # seconds between progress writes of one operation


@dataclass
class _Running:
    """One operation this replica is running right now."""

    claim: Claim
    cancel: threading.Event = field(default_factory=threading.Event)
    user_cancelled: bool = False
    lost: bool = False
    progress: TransferProgress | None = None


class Runner:
    """Claims and runs operations for one replica; `max_operations=0` runs nothing."""

    def __init__(
        self,
        store: OperationStore,
        plan: OperationPlan,
        *,
        replica: str,
        max_operations: int,
        lease_seconds: float,
        redactor: Redactor,
        engine_factory: EngineFactory = TransferEngine,
        poll_seconds: float = 1.0,
    ) -> None:
        self.store = store
        self.plan = plan
        self.replica = replica
        self.max_operations = max_operations
        self.lease_seconds = lease_seconds
        self.redactor = redactor
        self.engine_factory = engine_factory
        self.poll_seconds = min(poll_seconds, lease_seconds / 3)
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._dispatcher: threading.Thread | None = None
        self.on_finished: Callable[[str], None] | None = None  # after a final status is written

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self.max_operations == 0:
            log.info("runner disabled (EXECUTOR_MAX_OPERATIONS=0): this replica only queues")
            return
        self._dispatcher = threading.Thread(target=self._dispatch, name="executor-dispatch")
        self._dispatcher.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop claiming, stop running engines, hand their operations back to the queue."""
        self._stopping.set()
        self._wake.set()
        with self._lock:
            for running in self._running.values():
                running.cancel.set()
        deadline = time.monotonic() + timeout
        for thread in [self._dispatcher, *self._threads]:
            if thread is not None:
                thread.join(max(0.1, deadline - time.monotonic()))

    def wake(self) -> None:
        """A new operation was queued here: look for work now instead of at the next poll."""
        self._wake.set()

    def cancel_local(self, operation_id: str) -> None:
        """Stop a run of ours at once (other replicas notice the flag at their next beat)."""
        with self._lock:
            running = self._running.get(operation_id)
        if running is not None:
            running.user_cancelled = True
            running.cancel.set()

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._running)

    # -- dispatching --------------------------------------------------------------------

    def _dispatch(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                while self.active < self.max_operations and not self._stopping.is_set():
                    record = self.store.claim(self.replica, self.lease_seconds)
                    if record is None:
                        break
                    self._start(record)
            except ExecutorError as exc:
                log.warning("claim failed, retrying: %s", exc)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._wake.wait(self.poll_seconds)

    def _start(self, record: OperationRecord) -> None:
        assert record.claim_token is not None
        running = _Running(Claim(record.id, record.claim_token, self.replica))
        with self._lock:
            self._running[record.id] = running
            S5CMD_ACTIVE_OPERATIONS.set(len(self._running))
        log.info("operation %s claimed (attempt %d)", record.id, record.attempts)
        thread = threading.Thread(
            target=self._run, args=(record, running), name=f"executor-op-{record.id[:8]}"
        )
        self._threads.append(thread)
        thread.start()

    # -- one operation ------------------------------------------------------------------

    def _run(self, record: OperationRecord, running: _Running) -> None:
        started = time.monotonic()
        try:
            if record.cancel_requested:  # cancelled while its last replica was dying
                running.user_cancelled = True
                outcome = OperationOutcome(status="cancelled")
            else:
                monitor = threading.Thread(
                    target=self._monitor, args=(running,), name=f"executor-beat-{record.id[:8]}"
                )
                monitor.start()
                try:
                    objects = self._listed(record)
                    request, options = self.plan.build(record, objects)
                    report = self.engine_factory(options).run(
                        request,
                        progress=lambda p: setattr(running, "progress", p),
                        cancel=running.cancel,
                    )
                    prefix = record.spec["source"]["prefix"] if objects else None
                    outcome = self._outcome(report, running, prefix)
                except LakehouseError as exc:
                    outcome = self._crashed(running, self.redactor(str(exc)))
                except Exception as exc:
                    log.exception("operation %s crashed", record.id)
                    outcome = self._crashed(running, f"internal error ({type(exc).__name__})")
                finally:
                    running.cancel.set()  # also ends the monitor loop
                    monitor.join()
            self._record(record, running, outcome, time.monotonic() - started)
        finally:
            with self._lock:
                self._running.pop(record.id, None)
                S5CMD_ACTIVE_OPERATIONS.set(len(self._running))
            self._wake.set()

    def _listed(self, record: OperationRecord) -> list[ObjectRow]:
        """A listed operation's objects (at most MAX_OBJECTS), read back from the store."""
        if not record.spec.get("listed_objects"):
            return []
        return self.store.objects(record.id, limit=MAX_OBJECTS)

    def _crashed(self, running: _Running, error: str) -> OperationOutcome:
        status = "cancelled" if running.user_cancelled else "failed"
        progress = _tuple(running.progress) if running.progress is not None else None
        return OperationOutcome(status=status, error=error, progress=progress)

    def _monitor(self, running: _Running) -> None:
        """Renew the lease, write progress, and pick up cancel requests from any replica."""
        renew_every = self.lease_seconds / 3
        last_renew = time.monotonic()
        last_written: TransferProgress | None = None
        while not running.cancel.wait(PROGRESS_INTERVAL):
            progress = running.progress
            due = time.monotonic() - last_renew >= renew_every
            if progress == last_written and not due:
                continue
            snapshot = _tuple(progress) if progress is not None else None
            try:
                beat = self.store.heartbeat(running.claim, self.lease_seconds, snapshot)
            except ExecutorError as exc:
                log.warning("heartbeat failed for %s: %s", running.claim.operation_id, exc)
                continue
            last_renew, last_written = time.monotonic(), replace(progress) if progress else None
            if not beat.owned:
                log.error("operation %s: lease lost; stopping", running.claim.operation_id)
                running.lost = True
                running.cancel.set()
            elif beat.cancel_requested:
                log.info("operation %s: cancel requested", running.claim.operation_id)
                running.user_cancelled = True
                running.cancel.set()

    def _outcome(
        self, report: TransferReport, running: _Running, prefix: str | None
    ) -> OperationOutcome:
        """The final write. A listed operation (`prefix` given: its source prefix) also
        reports each object's result, keyed as listed."""
        summary = report.summary
        bad = [
            r
            for r in report.results
            if r.outcome in (TransferOutcome.FAILED, TransferOutcome.CORRUPT)
        ]
        failures = [
            {
                "key": r.source_key,
                "outcome": str(r.outcome),
                "reason": self.redactor(r.error or str(r.outcome))[:1000],
            }
            for r in bad[:MAX_FAILED_OBJECTS]
        ]
        if summary.cancelled or (running.user_cancelled and not summary.ok):
            status = "cancelled"
        elif summary.ok:
            status = "completed"
        else:
            status = "failed"
        if status == "completed":
            progress = (summary.objects, summary.bytes, summary.objects, summary.bytes)
        elif running.progress is not None:
            progress = _tuple(running.progress)
        else:
            progress = (summary.copied + summary.skipped, summary.bytes_copied, summary.objects,
                        summary.bytes)  # fmt: skip
        objects = [
            ObjectReport(
                r.source_key[len(prefix) :],
                str(r.outcome),
                r.sha256,
                self.redactor(r.error)[:1000] if r.error else None,
            )
            for r in report.results
            if prefix is not None and r.source_key.startswith(prefix)
        ]
        return OperationOutcome(
            status=status,
            summary=summary.as_dict(),
            failures=failures,
            failures_total=len(bad),
            progress=progress,
            objects=objects,
        )

    def _record(
        self, record: OperationRecord, running: _Running, outcome: OperationOutcome, seconds: float
    ) -> None:
        op_id, op_type = record.id, record.operation_type
        if running.lost:
            log.warning("operation %s: not recording a result (another replica owns it)", op_id)
            return
        if self._stopping.is_set() and not running.user_cancelled and outcome.status != "completed":
            released = _quietly(lambda: self.store.release(running.claim))
            log.info("operation %s handed back to the queue at shutdown: %s", op_id, released)
            return
        if not _quietly(lambda: self.store.finish(running.claim, outcome)):
            log.warning("operation %s: final status not written (claim lost)", op_id)
            return
        if self.on_finished is not None:
            self.on_finished(op_id)
        S5CMD_OPERATIONS.labels(operation=op_type, status=outcome.status).inc()
        S5CMD_OPERATION_DURATION.labels(operation=op_type).observe(seconds)
        log.info("operation %s %s in %.2fs", op_id, outcome.status, seconds)


def _tuple(progress: TransferProgress) -> tuple[int, int, int, int]:
    return (
        progress.objects_done,
        progress.bytes_done,
        progress.objects_total,
        progress.bytes_total,
    )


def _quietly(write: Callable[[], bool]) -> bool:
    try:
        return write()
    except ExecutorError as exc:
        log.error("operation store write failed: %s", exc)
        return False
