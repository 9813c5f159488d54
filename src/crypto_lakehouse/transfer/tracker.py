"""Matching one s5cmd process's output lines back to the objects its run file asked for.

Success lines name each object by URL; error lines carry the command text `cp SRC DST`
with the object's URLs (for wildcard lines: the expanded URLs, or the pattern itself when
the whole line failed, e.g. its listing was refused). Whatever is not matched by the end
of the process is reported by the caller as failed, never as copied.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from crypto_lakehouse.transfer.output import Done, Event, Failed, Other, short_error


@dataclass
class Tracker:
    """Per-process bookkeeping; `handler` is given to runner.run_s5cmd."""

    match_on: str = "source"  # which URL of a success line identifies the object
    on_done: Callable[[int, Done], None] | None = None
    by_url: dict[str, int] = field(default_factory=dict)
    by_command: dict[str, int] = field(default_factory=dict)
    by_line: dict[str, list[int]] = field(default_factory=dict)
    done: dict[int, Done] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    unexpected: list[Done] = field(default_factory=list)
    stray_errors: list[str] = field(default_factory=list)
    others: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def expect(self, index: int, url: str, command: str) -> None:
        """Object `index` is reported by success URL `url` or error command `command`."""
        self.by_url[url] = index
        self.by_command[command] = index

    def expect_line(self, command: str, indexes: list[int]) -> None:
        """A wildcard line: its own failure (as a whole) fails all of `indexes`."""
        self.by_line[command] = indexes

    def handler(self, event: Event) -> None:
        if isinstance(event, Done):
            url = event.source if self.match_on == "source" else event.destination
            with self._lock:
                index = self.by_url.get(url)
                if index is None:
                    self.unexpected.append(event)
                    return
                if index in self.done:
                    return  # reported twice: count it once
                self.done[index] = event
                self.errors.pop(index, None)
            if self.on_done is not None:
                self.on_done(index, event)
        elif isinstance(event, Failed):
            reason = short_error(event.error)
            with self._lock:
                index = self.by_command.get(event.command)
                if index is not None:
                    if index not in self.done:
                        self.errors[index] = reason
                    return
                group = self.by_line.get(event.command)
                if group is not None:
                    for i in group:
                        if i not in self.done:
                            self.errors.setdefault(i, reason)
                    return
                self.stray_errors.append(f"{event.command}: {reason}")
        elif isinstance(event, Other) and event.text:
            with self._lock:
                if len(self.others) < 20:
                    self.others.append(event.text)

    def reason_for(self, index: int, *, returncode: int, cancelled: bool) -> str:
        """Why object `index` has no success line."""
        if index in self.errors:
            return self.errors[index]
        if cancelled:
            return "cancelled before this object finished"
        detail = "; ".join((self.stray_errors + self.others)[:2])
        suffix = f": {detail}" if detail else ""
        return f"s5cmd reported no result for this object (exit code {returncode}){suffix}"
