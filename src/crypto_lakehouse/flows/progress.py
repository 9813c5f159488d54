"""Progress of an ingest for whoever runs the flow in-process (the CLI's progress bar).

The flow cannot take a callback as a parameter (parameters are JSON, shown in the UI), so
the caller installs a listener for the duration of the call; tasks report to it. With no
listener (a worker runs the flow) reports go nowhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class IngestEvent:
    """`planned`: files and bytes to transfer so far (once per window of work; the last one
    is the run's total); `bytes`: more bytes moved; `batch`: a batch finished."""

    kind: str
    files: int = 0
    bytes: int = 0
    label: str = ""


Listener = Callable[[IngestEvent], None]
_listener: ContextVar[Listener | None] = ContextVar("ingest_listener", default=None)


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send this context's ingest events to `listener` (it must be thread-safe)."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def current_listener() -> Listener | None:
    return _listener.get()


def emit(event: IngestEvent, listener: Listener | None = None) -> None:
    """Report `event` to `listener` (or the current one); a failing listener is ignored."""
    target = listener or _listener.get()
    if target is None:
        return
    with contextlib.suppress(Exception):
        target(event)
