"""The operation store on SQLite: the default for one replica (or several on one host).

One connection per store, used under a lock (SQLite serialises writers anyway); write
transactions start with `BEGIN IMMEDIATE`, which takes the database's write lock up front,
so a claim or a bounded insert is atomic across processes sharing the file. WAL mode
lets readers proceed during a write, and a `kill -9` never leaves a half-written row.

With `synchronous=NORMAL` a commit does not wait for the disk; only WAL checkpoints
fsync. SQLite would run those inside whichever commit crosses the threshold, adding
tens of milliseconds to that request, so automatic checkpoints are off and a background
thread with its own connection checkpoints (PASSIVE: never blocking writers) every
second instead.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crypto_lakehouse.errors import ConfigError, ExecutorUnavailable
from crypto_lakehouse.executor.store import Exec, OperationStore

log = logging.getLogger("crypto_lakehouse.executor")
CHECKPOINT_SECONDS = 1.0


class SqliteStore(OperationStore):
    now = "((julianday('now') - 2440587.5) * 86400.0)"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
        except (OSError, sqlite3.Error) as exc:
            raise ExecutorUnavailable(
                f"operation store: cannot open SQLite database ({exc})"
            ) from exc

        self._stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop, name="executor-sqlite-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30.0)
        try:
            while not self._stop.wait(CHECKPOINT_SECONDS):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    log.warning("SQLite checkpoint failed (will retry): %s", exc)
        finally:
            conn.close()

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        """`sqlite:///relative/path`, `sqlite:////absolute/path`."""
        _, sep, path = url.partition(":///")
        if not sep or not path:
            raise ConfigError("EXECUTOR_DATABASE_URL: expected sqlite:///path/to/file.db")
        return cls(Path(path).expanduser())

    @contextmanager
    def _transaction(self, *, write: bool = False) -> Iterator[Exec]:
        with self._lock:
            try:
                if write:
                    self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield _Run(self._conn)
                except BaseException:
                    if write:
                        self._conn.execute("ROLLBACK")
                    raise
                if write:
                    self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise ExecutorUnavailable(f"operation store: SQLite error ({exc})") from exc

    def close(self) -> None:
        self._stop.set()
        self._checkpointer.join(timeout=10)
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("final SQLite checkpoint failed: %s", exc)
            self._conn.close()


class _Run:
    """`Exec` on one SQLite connection (`%s` placeholders become `?`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __call__(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql.replace("%s", "?"), tuple(params)).fetchall()

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql.replace("%s", "?"), rows)
