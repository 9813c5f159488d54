"""Group commit for `POST /sync`: submissions that arrive together share one transaction.

A submit is durable only once its row is committed, and the commit is most of what a
submit costs (SQLite writes and syncs its WAL pages per commit). Under load many requests
are parsed and waiting at the same moment; the first one schedules a flush on the event
loop, everyone that arrives before the flush runs joins it, and a single
`OperationStore.create_many` commits them all. The queue bound is still checked row by
row inside that transaction, so it stays exact. With no concurrency a batch is just one
submission (one extra loop turn).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from crypto_lakehouse.errors import QueueFull
from crypto_lakehouse.executor.store import OperationStore

Io = Callable[..., Awaitable[Any]]
MAX_BATCH = 256


class Submitter:
    """Batches `create` calls made from the event loop; `io` runs the store call."""

    def __init__(self, store: OperationStore, io: Io, *, max_queue: int) -> None:
        self.store = store
        self.io = io
        self.max_queue = max_queue
        self._waiting: list[tuple[str, dict[str, Any], asyncio.Future[str]]] = []
        self._flushing = False
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps only weak refs

    async def create(self, operation_type: str, spec: dict[str, Any]) -> str:
        """The new operation's id once committed; QueueFull or ExecutorUnavailable otherwise."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.append((operation_type, spec, future))
        if not self._flushing:
            self._flushing = True
            self._task = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                try:
                    results = await self.io(
                        self.store.create_many,
                        [(op_type, spec) for op_type, spec, _ in batch],
                        max_queue=self.max_queue,
                    )
                except Exception as exc:  # the whole transaction failed: everyone hears it
                    for *_, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (*_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, QueueFull):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._flushing = False
