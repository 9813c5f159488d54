"""Group commit (and group read) for the hot routes: calls that arrive together share one
store call.

A submit is durable only once its row is committed, and the commit is most of what a
submit costs; a read from PostgreSQL is mostly a round trip and the driver's per-statement
work. Under load many requests are parsed and waiting at the same moment: the first one
schedules a flush on the event loop, everyone who arrives before the flush runs joins it,
and one `*_many` store call serves them all (`OperationStore.create_many` checks the queue
bound row by row inside its transaction, so the bound stays exact). While a batch is in
the store, newcomers gather for the next one. With no concurrency a batch is just one call
(one extra loop turn).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

Io = Callable[..., Awaitable[Any]]
T = TypeVar("T")
R = TypeVar("R")
MAX_BATCH = 256


class Batcher(Generic[T, R]):
    """`await batcher(item)` from the event loop; `many` answers a list of items with one
    result or one exception each (an exception it raises fails the whole batch); `io` runs it
    (inline, or on a thread)."""

    def __init__(
        self,
        many: Callable[[list[T]], Sequence[R | Exception]],
        io: Io,
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.many = many
        self.io = io
        self.max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._flushing = False
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps only weak refs

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._waiting.append((item, future))
        if not self._flushing:
            self._flushing = True
            self._task = loop.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                try:
                    results = await self.io(self.many, [item for item, _ in batch])
                except Exception as exc:  # the whole call failed: everyone hears it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():  # its request went away
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._flushing = False
