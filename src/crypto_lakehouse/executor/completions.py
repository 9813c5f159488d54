"""Long-polls that end as soon as an operation ends: `GET /operations/{id}?wait=SECONDS`.

A waiter parks on an asyncio event instead of re-reading the store in a loop. The runner
of this replica calls `notify` (from its worker thread) right after an operation's final
status is written, which wakes that operation's waiters at once; an operation finished by
another replica is seen at the waiter's next re-read (`WAIT_POLL_SECONDS`), since only the
shared store knows about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

WAIT_POLL_SECONDS = 0.25  # how often a long-poll re-reads the store


class Completions:
    """Who waits for which operation, and a thread-safe way to wake them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def notify(self, operation_id: str) -> None:
        """Wake every waiter of `operation_id` (callable from any thread)."""
        with self._lock:
            waiters = self._waiters.pop(operation_id, [])
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(event.set)

    async def wait(self, operation_id: str, timeout: float) -> bool:
        """Until `notify(operation_id)` or `timeout` seconds; True if notified."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(operation_id, []).append(entry)
        try:
            await asyncio.wait_for(entry[1].wait(), timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                waiters = self._waiters.get(operation_id)
                if waiters is not None and entry in waiters:
                    waiters.remove(entry)
                    if not waiters:
                        del self._waiters[operation_id]
