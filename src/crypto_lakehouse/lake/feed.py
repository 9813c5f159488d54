"""The CSV bytes pyarrow's streaming reader pulls, with a bounded read-ahead.

pyarrow's streaming CSV reader reads its input on a background thread up to 32 blocks
ahead of the batches taken from it (not configurable). Our blocks are the inflated pieces
of the zip (about 4 MiB), so a consumer that stops to write a data file let ~130 MiB of
CSV pile up; a file too small to fill that queue piled up less, so peak memory grew with
the file up to that cap.

`CsvFeed` hands the bytes out as Arrow buffers (`read_buffer`, which pyarrow prefers to
`read`) and counts those pyarrow still holds. While the consumer holds a batch (between
two items of `paced`), a read waits until pyarrow holds less than `ahead` bytes. While the
consumer waits for a batch (or before the first: `open_csv` reads a block), a read waits
at most `STALL` seconds for a release, so the reader can never stall itself (it keeps the
tail of the previous block until the next arrives; batches might point into blocks).
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Protocol, TypeVar

import pyarrow as pa

READ_AHEAD = 16 << 20
STALL = 0.05  # seconds a waiting consumer sees no bytes released before reads go on

T = TypeVar("T")


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class CsvFeed:
    """The sniffed head bytes, then the rest of the inflated stream."""

    def __init__(
        self, head: bytes, rest: Readable, *, ahead: int = READ_AHEAD, stall: float = STALL
    ) -> None:
        self._head = head
        self._rest = rest
        self._ahead = ahead
        self._stall = stall
        self._held = 0  # bytes handed to pyarrow and not yet released by it
        self._consumer_busy = False  # holding a batch, not waiting for one
        self._cond = threading.Condition()
        self.closed = False

    @property
    def held(self) -> int:
        """Bytes handed to pyarrow that it has not released yet."""
        return self._held

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size is None or size < 0:
                data, self._head = self._head + self._rest.read(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._rest.read(size)

    def read_buffer(self, size: int) -> pa.Buffer:
        """Like `read`, waiting first while pyarrow holds more than `ahead` bytes."""
        with self._cond:
            while self._held >= self._ahead:
                if self._consumer_busy:
                    self._cond.wait()
                elif not self._cond.wait(self._stall):
                    break  # the consumer waits for a batch that needs more bytes
        data = self.read(size)
        buffer = pa.py_buffer(data)
        if data:
            with self._cond:
                self._held += len(data)
            weakref.finalize(buffer, self._release, len(data))
        return buffer

    def _release(self, size: int) -> None:
        with self._cond:
            self._held -= size
            self._cond.notify_all()

    def paced(self, items: Iterable[T]) -> Iterator[T]:
        """`items`; while the consumer holds one, reads wait for pyarrow to release bytes."""
        try:
            for item in items:
                self._set_busy(True)
                yield item
                self._set_busy(False)
        finally:
            self._stop_pacing()  # a reader given up on must not stay blocked in read_buffer

    def _set_busy(self, busy: bool) -> None:
        with self._cond:
            self._consumer_busy = busy
            self._cond.notify_all()

    def _stop_pacing(self) -> None:
        with self._cond:
            self._ahead = sys.maxsize
            self._cond.notify_all()

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._stop_pacing()
        self.closed = True
