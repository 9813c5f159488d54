"""The local staging folders: a fresh directory per run, a byte cap, stale runs removed later.

Each run writes under `<root>/run-<time>-<pid>-<random>/` with an `owner` file holding
its PID. A new folder per run matters on ext4: creating files right after a mass delete
is slow for a minute or two, so a run never reuses the folder of the previous one, and
folders left by dead processes are removed at the *end* of a later run, not the start.
The folder is built under a hidden name and renamed once its owner file exists, so a
concurrent run's clean-up never sees (and deletes) a live folder without an owner.

A chunk is staged in memory when a tmpfs is configured (`/dev/shm` by default; the
folder is `crypto-lakehouse-<uid>` in it) and the chunk fits what is left of the memory
cap, whatever its objects' sizes: a download of thousands of small files is bound by file
creation, which tmpfs makes cheap (docs/transfer.md has the numbers). A chunk that does
not fit goes to disk. Both tiers count toward the overall cap.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import threading
import time
from pathlib import Path

from crypto_lakehouse.errors import ConfigError, TransferError
from crypto_lakehouse.observability.metrics import S5CMD_STAGING_BYTES

log = logging.getLogger(__name__)

_OWNER = "owner"
_RUN = "run-"
_BUILDING = ".new-"
_BUILDING_GRACE_SECONDS = 300  # a half-built folder older than this belongs to a crash

# Bytes this process holds on each tmpfs. The memory cap is per process, not per run: the
# executor and the ingest flow run several engines at once, and RAM is shared by all.
_memory_lock = threading.Lock()
_memory_held: dict[Path, int] = {}


class StagingArea:
    """One run's staging directories (disk, and memory when usable) and their byte accounting."""

    def __init__(
        self,
        root: Path,
        cap_bytes: int,
        *,
        memory_root: Path | None = None,
        memory_cap_bytes: int = 0,
    ) -> None:
        if cap_bytes <= 0:
            raise ConfigError("the staging cap must be positive")
        self.root = root.expanduser()
        self.cap_bytes = cap_bytes
        self.held_bytes = 0
        self.peak_bytes = 0
        self._lock = threading.Lock()
        self._chunks = 0
        try:
            self.dir = _new_run_dir(self.root)
        except OSError as exc:
            raise ConfigError(f"cannot create the staging folder under {self.root}: {exc}") from exc
        self.memory_root: Path | None = None
        self.memory_dir: Path | None = None
        self.memory_cap_bytes = 0
        self._in_memory: dict[Path, int] = {}
        if memory_root is not None and memory_cap_bytes > 0:
            self._open_memory_tier(memory_root.expanduser(), memory_cap_bytes)

    def _open_memory_tier(self, tmpfs: Path, cap_bytes: int) -> None:
        """Use a private folder on `tmpfs` when it can hold the memory cap; else stay on disk.

        `tmpfs` (e.g. /dev/shm) is shared by every user, so the folder is per user, 0700,
        and used only when we own it.
        """
        root = memory_tier_dir(tmpfs)
        try:
            root.mkdir(mode=0o700, exist_ok=True)
            owner = root.lstat()
            if not root.is_dir() or root.is_symlink() or owner.st_uid != os.getuid():
                log.debug("memory staging off: %s is not a folder of ours", root)
                return
            stat = os.statvfs(root)
            free = stat.f_bavail * stat.f_frsize
            if free < cap_bytes:
                log.debug("memory staging off: %s has %d bytes free, cap %d", root, free, cap_bytes)
                return
            self.memory_dir = _new_run_dir(root)
        except OSError as exc:
            log.debug("memory staging off: %s: %s", root, exc)
            return
        self.memory_root = root
        self.memory_cap_bytes = cap_bytes

    def new_chunk(self, nbytes: int = 0) -> Path:
        """A fresh folder for a chunk of `nbytes` (already reserved); in memory when it fits.

        `nbytes=0` (work folders that hold one object at a time) always means disk.
        """
        self._chunks += 1
        name = f"c{self._chunks:05d}"
        in_memory = False
        if self.memory_dir is not None and self.memory_root is not None and nbytes > 0:
            with _memory_lock:
                held = _memory_held.get(self.memory_root, 0)
                in_memory = held + nbytes <= self.memory_cap_bytes
                if in_memory:
                    _memory_held[self.memory_root] = held + nbytes
        folder = self.memory_dir if in_memory and self.memory_dir is not None else self.dir
        path = folder / name
        if in_memory:
            self._in_memory[path] = nbytes
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
        self._give_back_memory(self._in_memory.pop(chunk, 0))
        S5CMD_STAGING_BYTES.dec(nbytes)

    def _give_back_memory(self, nbytes: int) -> None:
        if nbytes and self.memory_root is not None:
            with _memory_lock:
                _memory_held[self.memory_root] -= nbytes

    def close(self) -> None:
        """Remove this run's folders, then folders of earlier runs whose process is gone."""
        shutil.rmtree(self.dir, ignore_errors=True)
        remove_stale_runs(self.root)
        if self.memory_dir is not None and self.memory_root is not None:
            shutil.rmtree(self.memory_dir, ignore_errors=True)
            self._give_back_memory(sum(self._in_memory.values()))
            self._in_memory.clear()
            remove_stale_runs(self.memory_root)


def memory_tier_dir(tmpfs: Path) -> Path:
    """This user's folder on a shared tmpfs."""
    return tmpfs / f"crypto-lakehouse-{os.getuid()}"


def _new_run_dir(root: Path) -> Path:
    """Create `root/run-...` with its owner file already inside (built hidden, then renamed)."""
    root.mkdir(parents=True, exist_ok=True)
    name = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"
    building = root / (_BUILDING + name)
    building.mkdir()
    (building / _OWNER).write_text(f"{os.getpid()}\n")
    final = root / (_RUN + name)
    building.rename(final)
    return final


def remove_stale_runs(root: Path) -> list[Path]:
    """Delete `run-*` folders whose owner PID no longer runs. Returns what was removed.

    Half-built folders (a crash between mkdir and rename) go once they are old.
    """
    removed: list[Path] = []
    with contextlib.suppress(FileNotFoundError):
        for entry in root.iterdir():
            if entry.name.startswith(_RUN):
                stale = entry.is_dir() and not _owner_alive(entry / _OWNER)
            elif entry.name.startswith(_BUILDING):
                stale = _older_than(entry, _BUILDING_GRACE_SECONDS)
            else:
                continue
            if stale:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False


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
