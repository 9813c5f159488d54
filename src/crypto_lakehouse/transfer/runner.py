"""One s5cmd process: start it, stream its JSON lines to a handler, stop it when asked.

We own the Popen object, so cancelling signals exactly that PID (SIGTERM, then SIGKILL).
The child runs in its own session: a Ctrl-C in the user's terminal reaches only us, and
we stop the child on the way out. An S3 object only appears when its PUT (or the last
part of a multipart upload) completes, and s5cmd prints its success line after that, so
an object without a success line was never half-written at the destination.
"""

from __future__ import annotations

import errno
import subprocess
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from crypto_lakehouse.errors import TransferError, TransferInterrupted
from crypto_lakehouse.transfer.binary import Invocation
from crypto_lakehouse.transfer.output import Event, Other, Retried, parse_line

Handler = Callable[[Event], None]
POLL_SECONDS = 0.05  # how often a waiting caller reports progress and checks for a cancel
# fork/exec failures a later try may not meet again: the machine was briefly out of something.
_OUT_OF_RESOURCES = frozenset({errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE})
_GRACE_SECONDS = 3.0


@dataclass
class ProcessResult:
    """How the process ended (per-object outcomes went to the handler)."""

    returncode: int
    cancelled: bool = False
    timed_out: bool = False
    seconds: float = 0.0
    stderr_tail: str = ""  # last non-JSON stderr lines, for batch-level errors
    retried: Counter[str] = field(default_factory=Counter)  # requests s5cmd retried, by cause


def run_s5cmd(
    invocation: Invocation,
    command: list[str],
    handler: Handler,
    *,
    cancel: threading.Event | None = None,
    tick: Callable[[], None] | None = None,
    first_output_timeout: float | None = None,
    cwd: Path | None = None,
) -> ProcessResult:
    """Run `s5cmd <global flags> <command>`, feeding every output line to `handler`.

    `handler` runs on reader threads (one for stdout, one for stderr) and must be
    thread-safe. `tick` runs on the calling thread every 50 ms (progress reports).
    `first_output_timeout` kills a process that prints nothing at all for that long
    (a server that accepts connections but never answers).
    Raises TransferInterrupted when the system lacks the resources to start it (a retry
    may succeed), TransferError when the binary cannot be executed at all.
    """
    argv = invocation.argv(*command)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=invocation.env(),
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as exc:
        if exc.errno in _OUT_OF_RESOURCES:
            raise TransferInterrupted(f"could not start s5cmd: {exc}") from exc
        raise TransferError(f"could not start s5cmd: {exc}") from exc

    seen_output = threading.Event()
    tail: deque[str] = deque(maxlen=5)
    retried: list[Counter[str]] = [Counter(), Counter()]  # one per reader: no lock needed
    readers = [
        threading.Thread(
            target=_pump, args=(proc.stdout, handler, seen_output, None, retried[0]), daemon=True
        ),
        threading.Thread(
            target=_pump, args=(proc.stderr, handler, seen_output, tail, retried[1]), daemon=True
        ),
    ]
    for reader in readers:
        reader.start()

    result = ProcessResult(returncode=-1)
    try:
        while True:
            try:
                proc.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            if tick is not None:
                tick()
            if cancel is not None and cancel.is_set():
                result.cancelled = True
                _stop(proc)
                break
            if (
                first_output_timeout is not None
                and not seen_output.is_set()
                and time.monotonic() - started > first_output_timeout
            ):
                result.timed_out = True
                _stop(proc)
                break
    except BaseException:
        _stop(proc)
        raise
    finally:
        for reader in readers:
            reader.join(timeout=10)
    result.returncode = proc.returncode if proc.returncode is not None else -1
    result.seconds = time.monotonic() - started
    result.stderr_tail = "\n".join(tail)
    result.retried = retried[0] + retried[1]
    if tick is not None:
        tick()
    return result


def _pump(
    stream: IO[bytes] | None,
    handler: Handler,
    seen: threading.Event,
    tail: deque[str] | None,
    retried: Counter[str],
) -> None:
    """Read lines as bytes: decoding and setting the event per line cost more than parsing."""
    if stream is None:
        return
    with stream:
        for line in stream:
            if not seen.is_set():
                seen.set()
            if not line.strip():
                continue
            event = parse_line(line)
            if isinstance(event, Retried):
                retried[event.cause] += 1
                continue
            if tail is not None and isinstance(event, Other):
                tail.append(event.text)
            handler(event)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate our child by its Popen handle; SIGKILL if it ignores SIGTERM."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=_GRACE_SECONDS)
