"""The per-run record of outcomes: thread-safe (s5cmd output is read on two threads)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable

from crypto_lakehouse.transfer.models import (
    Mode,
    ObjectResult,
    TransferOutcome,
    TransferProgress,
    TransferReport,
    TransferSummary,
)


class TransferLedger:
    """Collects ObjectResults and counts; hands out progress snapshots."""

    def __init__(self, progress: Callable[[TransferProgress], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._progress = progress
        self._last_reported: tuple[int, int] | None = None
        self.results: list[ObjectResult] = []
        self.counts: Counter[TransferOutcome] = Counter()
        self.objects_total = 0
        self.bytes_total = 0
        self.objects_done = 0
        self.bytes_done = 0
        self.bytes_copied = 0
        self.deleted = 0
        self.retried: Counter[str] = Counter()  # requests s5cmd retried, by cause
        self.started = time.monotonic()

    def plan(self, objects: int, nbytes: int) -> None:
        """Announce objects that will be reported later (they enter the totals now)."""
        with self._lock:
            self.objects_total += objects
            self.bytes_total += nbytes

    def add(self, result: ObjectResult, *, counted: bool = False) -> None:
        """Record a final outcome. `counted=True`: the object was not announced by plan()."""
        with self._lock:
            if counted:
                self.objects_total += 1
                self.bytes_total += result.size
            self.results.append(result)
            self.counts[result.outcome] += 1
            self.objects_done += 1
            self.bytes_done += result.size
            if result.outcome is TransferOutcome.COPIED:
                self.bytes_copied += result.size

    def add_retries(self, retried: Counter[str]) -> None:
        """Count the requests one s5cmd process retried (they succeeded or failed later)."""
        if retried:
            with self._lock:
                self.retried.update(retried)

    def snapshot(self) -> TransferProgress:
        with self._lock:
            return TransferProgress(
                self.objects_done, self.bytes_done, self.objects_total, self.bytes_total
            )

    def report_progress(self, *, force: bool = False) -> None:
        """Call the caller's progress callback (on the caller's thread) when something moved."""
        if self._progress is None:
            return
        snap = self.snapshot()
        key = (snap.objects_done, snap.objects_total)
        if force or key != self._last_reported:
            self._last_reported = key
            self._progress(snap)

    def report(
        self, mode: Mode, *, staging_peak: int = 0, cancelled: bool = False
    ) -> TransferReport:
        with self._lock:
            summary = TransferSummary(
                mode=mode,
                objects=len(self.results),
                bytes=sum(r.size for r in self.results),
                copied=self.counts[TransferOutcome.COPIED],
                skipped=self.counts[TransferOutcome.SKIPPED],
                failed=self.counts[TransferOutcome.FAILED],
                corrupt=self.counts[TransferOutcome.CORRUPT],
                seconds=time.monotonic() - self.started,
                bytes_copied=self.bytes_copied,
                staging_peak_bytes=staging_peak,
                cancelled=cancelled,
                deleted=self.deleted,
                retried=dict(self.retried),
            )
            return TransferReport(summary=summary, results=self.results)
