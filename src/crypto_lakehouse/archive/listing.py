"""Paged, ranged listings of archive folders, and many of them run side by side in order.

A leaf folder (`.../{SYMBOL}/[{interval}/]`) holds one symbol's files in date order
(`BTCUSDT-1h-2024-01-05.zip`, then its `.zip.CHECKSUM`), so a date range is a key range.
`list_range` starts ListObjectsV2 just before the first period's key (`StartAfter`) and
stops paging at the first key past the last period: nothing before the range is read,
and at most one page past it, which the caller sizes to the range (`page_size`).

`in_order` runs listings on a few threads and hands their pages over in job order, each
job at most `depth` pages ahead, so memory stays bounded by threads x depth pages however
many keys the listings return.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Generic, TypeVar

from crypto_lakehouse.archive.catalog import DataType, Frequency, Market
from crypto_lakehouse.archive.paths import CHECKSUM_SUFFIX, is_checksum_key, period_label
from crypto_lakehouse.storage.client import ObjectInfo, S3Storage, translate_errors

PAGE_KEYS = 1000  # S3's largest page
T = TypeVar("T")


@dataclass(frozen=True)
class KeyRange:
    """The keys of one folder that sort after `folder + after` and up to the keys that
    start with `folder + last` (both optional: an open end)."""

    folder: str
    after: str | None = None
    last: str | None = None
    page_size: int = PAGE_KEYS

    def past(self, key: str) -> bool:
        """True once `key` sorts after every key that starts with `folder + last`."""
        if self.last is None:
            return False
        stop = self.folder + self.last
        return key > stop and not key.startswith(stop)


Series = tuple[Market, Frequency, DataType, str, str | None]  # `ArchiveFile.series`


def next_period(period: date, frequency: Frequency) -> date:
    """The day or month after `period`."""
    if frequency is Frequency.DAILY:
        return period + timedelta(days=1)
    return date(period.year + period.month // 12, period.month % 12 + 1, 1)


def periods_between(first: date, last: date, frequency: Frequency) -> int:
    """How many days (or months) from `first` to `last`, both included (0 if none)."""
    if first > last:
        return 0
    if frequency is Frequency.DAILY:
        return (last - first).days + 1
    return (last.year - first.year) * 12 + last.month - first.month + 1


@dataclass(frozen=True)
class LeafFolder:
    """One leaf folder of one symbol: `.../{SYMBOL}/` or `.../{SYMBOL}/{interval}/`."""

    market: Market
    frequency: Frequency
    data_type: DataType
    symbol: str
    interval: str | None
    folder: str

    @property
    def series(self) -> Series:
        return (self.market, self.frequency, self.data_type, self.symbol, self.interval)

    def name(self, period: date) -> str:
        """The file's stem: `BTCUSDT-1h-2024-01-05` sorts just before that day's keys."""
        kind = self.interval or self.data_type.value
        return f"{self.symbol}-{kind}-{period_label(period, self.frequency)}"

    def key_range(self, first: date | None, last: date | None) -> KeyRange | None:
        """The keys of periods `first` to `last` (None: open), or None when none can exist.

        `after` is the first period's stem (it sorts before that period's keys and after
        the previous period's sidecar); a bounded range asks for pages of its own size
        plus one key, so listing it reads about one key past the range.
        """
        page_size = PAGE_KEYS
        if first is not None and last is not None:
            count = periods_between(first, last, self.frequency)
            if count == 0:
                return None
            page_size = min(PAGE_KEYS, 2 * count + 1)  # a file and its sidecar per period
        return KeyRange(
            self.folder,
            after=self.name(first) if first is not None else None,
            last=self.name(last) if last is not None else None,
            page_size=page_size,
        )


def list_range(storage: S3Storage, bucket: str, keys: KeyRange) -> Iterator[list[ObjectInfo]]:
    """The objects of `keys`, in key order, one S3 page at a time; stops requesting pages
    as soon as a key past the range arrives. Raises the storage errors (BucketNotFound,
    AccessDenied, EndpointUnreachable, StorageError)."""
    request: dict[str, Any] = {
        "Bucket": bucket,
        "Prefix": keys.folder,
        "MaxKeys": max(1, min(keys.page_size, PAGE_KEYS)),
    }
    if keys.after is not None:
        request["StartAfter"] = keys.folder + keys.after
    while True:
        with translate_errors(storage.endpoint, bucket):
            reply = storage.client.list_objects_v2(**request)
        page: list[ObjectInfo] = []
        for item in reply.get("Contents", ()):
            if keys.past(item["Key"]):
                if page:
                    yield page
                return
            page.append(
                ObjectInfo(
                    key=item["Key"],
                    size=int(item["Size"]),
                    etag=str(item.get("ETag", "")).strip('"'),
                    last_modified=item["LastModified"],
                )
            )
        if page:
            yield page
        token = reply.get("NextContinuationToken")
        if not reply.get("IsTruncated") or not token:
            return
        request.pop("StartAfter", None)  # the token carries the position
        request["ContinuationToken"] = token


def with_sidecars(
    pages: Iterable[list[ObjectInfo]],
) -> Iterator[tuple[ObjectInfo, ObjectInfo | None]]:
    """Each non-sidecar object with its `.CHECKSUM` sidecar (or None), from a key-ordered
    listing. A sidecar sorts right after its file (`x.zip` < `x.zip.CHECKSUM`), so one
    pending object is all that is held; sidecars without their file are dropped."""
    pending: ObjectInfo | None = None
    for page in pages:
        for info in page:
            if pending is not None and info.key == pending.key + CHECKSUM_SUFFIX:
                yield pending, info
                pending = None
                continue
            if pending is not None and info.key > pending.key + CHECKSUM_SUFFIX:
                yield pending, None
                pending = None
            if is_checksum_key(info.key):
                continue  # a sidecar without its file
            if pending is not None:  # a stray key between a file and its sidecar
                yield info, None
            else:
                pending = info
    if pending is not None:
        yield pending, None


class _Raised:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


class _Job(Generic[T]):
    """One producer thread's hand-over queue; `put` gives up once the consumer left."""

    def __init__(self, depth: int, stop: threading.Event) -> None:
        self.items: queue.Queue[Any] = queue.Queue(depth)
        self.stop = stop

    def put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.items.put(item, timeout=0.1)
            except queue.Full:
                continue
            return True
        return False

    def run(self, job: Callable[[], Iterable[T]]) -> None:
        try:
            for item in job():
                if not self.put(item):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self.put(_Raised(exc))
            return
        self.put(_DONE)


def in_order(
    jobs: Iterable[Callable[[], Iterable[T]]], threads: int, depth: int = 2
) -> Generator[T, None, None]:
    """The items of every job, job after job, while up to `threads` jobs run ahead.

    A job runs on a thread of its own and may be at most `depth` items ahead of the
    consumer, so at most threads x depth items wait in memory. The first error a job
    raises is raised here, in order; closing the iterator early stops the workers.
    """
    stop = threading.Event()
    pending = iter(jobs)
    running: deque[_Job[T]] = deque()

    def start_next() -> bool:
        job = next(pending, None)
        if job is None:
            return False
        runner: _Job[T] = _Job(depth, stop)
        # A daemon thread per job: one the consumer abandoned never holds up the exit.
        threading.Thread(target=runner.run, args=(job,), daemon=True, name="listing").start()
        running.append(runner)
        return True

    try:
        while len(running) < max(1, threads) and start_next():
            pass
        while running:
            item = running[0].items.get()
            if item is _DONE:
                running.popleft()
                start_next()
            elif isinstance(item, _Raised):
                raise item.error
            else:
                yield item
    finally:
        stop.set()  # workers still running give up at their next hand-over
