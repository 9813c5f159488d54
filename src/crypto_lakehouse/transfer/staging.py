"""The local staging folder: a fresh directory per run, a byte cap, stale runs removed later.

Each run writes under `<root>/run-<time>-<pid>-<random>/` with an `owner` file holding
its PID. A new folder per run matters on ext4: creating files right after a mass delete
is slow for a minute or two, so a run never reuses the folder of the previous one, and
folders left by dead processes are removed at the *end* of a later run, not the start.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import threading
import time
from pathlib import Path

from crypto_lakehouse.errors import ConfigError, TransferError
from crypto_lakehouse.observability.metrics import S5CMD_STAGING_BYTES

_OWNER = "owner"


class StagingArea:
    """One run's staging directory and its byte accounting."""

    def __init__(self, root: Path, cap_bytes: int) -> None:
        if cap_bytes <= 0:
            raise ConfigError("the staging cap must be positive")
        self.root = root.expanduser()
        self.cap_bytes = cap_bytes
        self.held_bytes = 0
        self.peak_bytes = 0
        self._lock = threading.Lock()
        self._chunks = 0
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%dT%H%M%S")
            self.dir = self.root / f"run-{stamp}-{os.getpid()}-{secrets.token_hex(3)}"
            self.dir.mkdir()
            (self.dir / _OWNER).write_text(f"{os.getpid()}\n")
        except OSError as exc:
            raise ConfigError(f"cannot create the staging folder under {self.root}: {exc}") from exc

    def new_chunk(self) -> Path:
        self._chunks += 1
        path = self.dir / f"c{self._chunks:05d}"
        path.mkdir()
        return path

    def reserve(self, nbytes: int) -> None:
        """Account for `nbytes` about to land; TransferError if the cap would be crossed."""
        with self._lock:
            if self.held_bytes + nbytes > self.cap_bytes:
                raise TransferError(
                    f"staging would hold {self.held_bytes + nbytes} bytes, above its cap "
                    f"of {self.cap_bytes}"
                )
            self.held_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.held_bytes)
        S5CMD_STAGING_BYTES.inc(nbytes)

    def release(self, chunk: Path, nbytes: int) -> None:
        """Delete a finished chunk's folder (or single file) and give its bytes back."""
        if chunk.is_dir():
            shutil.rmtree(chunk, ignore_errors=True)
        else:
            chunk.unlink(missing_ok=True)
        with self._lock:
            self.held_bytes = max(0, self.held_bytes - nbytes)
        S5CMD_STAGING_BYTES.dec(nbytes)

    def close(self) -> None:
        """Remove this run's folder, then folders of earlier runs whose process is gone."""
        shutil.rmtree(self.dir, ignore_errors=True)
        remove_stale_runs(self.root)


def remove_stale_runs(root: Path) -> list[Path]:
    """Delete `run-*` folders whose owner PID no longer runs. Returns what was removed."""
    removed: list[Path] = []
    with contextlib.suppress(FileNotFoundError):
        for entry in root.iterdir():
            if not entry.name.startswith("run-") or not entry.is_dir():
                continue
            if _owner_alive(entry / _OWNER):
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _owner_alive(owner: Path) -> bool:
    try:
        pid = int(owner.read_text().strip())
    except (OSError, ValueError):
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
