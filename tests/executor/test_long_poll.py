"""The long-poll's pieces without a server: waking waiters, parsing `wait`."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fastapi.exceptions import RequestValidationError

from crypto_lakehouse.executor.completions import Completions
from crypto_lakehouse.executor.hot import parse_wait


def test_notify_from_another_thread_wakes_only_that_operations_waiters() -> None:
    completions = Completions()

    async def scenario() -> tuple[bool, bool, float]:
        started = time.monotonic()
        threading.Timer(0.1, completions.notify, args=("a",)).start()
        woken, other = await asyncio.gather(completions.wait("a", 5), completions.wait("b", 0.3))
        return woken, other, time.monotonic() - started

    woken, other, seconds = asyncio.run(scenario())
    assert woken and not other
    assert seconds < 1, "the notified waiter did not wait for its timeout"
    assert completions._waiters == {}, "waiters are forgotten once they return"


def test_a_notify_with_nobody_waiting_is_harmless() -> None:
    Completions().notify("nobody")


@pytest.mark.parametrize(
    ("query", "seconds"), [(b"", 0.0), (b"wait=0", 0.0), (b"wait=2.5", 2.5), (b"x=1&wait=60", 60.0)]
)
def test_wait_is_read_from_the_query(query: bytes, seconds: float) -> None:
    assert parse_wait(query) == seconds


@pytest.mark.parametrize("query", [b"wait=-1", b"wait=60.5", b"wait=nan", b"wait=inf", b"wait="])
def test_a_bad_wait_is_a_validation_error(query: bytes) -> None:
    with pytest.raises(RequestValidationError):
        parse_wait(query)
