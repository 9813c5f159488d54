"""The operation store on PostgreSQL: what several replicas share.

The claim's candidate row is read with `FOR UPDATE SKIP LOCKED`, so concurrent claims
from different replicas pass over each other's rows instead of waiting or colliding.
The queue counter's row lock makes the queue bound exact when many replicas accept
submissions at once. Connections come from a small pool; the
URL (which holds a password) is never logged nor put into an error message.

A batch of submissions that fits the queue is one statement (`insert_if_room`), and reads
run without BEGIN/COMMIT: the API's latency under load follows the round trips per batch.
"""

# SQL is assembled only from module constants; every value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from crypto_lakehouse.errors import ExecutorUnavailable
from crypto_lakehouse.executor.objects import OBJECTS, ObjectReport, ObjectRow
from crypto_lakehouse.executor.store import (
    DEPTH,
    FINISHED,
    QUEUED,
    TABLE,
    Exec,
    OperationStore,
)

log = logging.getLogger("crypto_lakehouse.executor")
_ROWS = psycopg.pq.ExecStatus.TUPLES_OK
LISTEN_RETRY_SECONDS = 1.0


class PostgresStore(OperationStore):
    now = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"
    skip_locked = "FOR UPDATE SKIP LOCKED"
    row_lock = "FOR UPDATE"
    schema_lock = f"SELECT pg_advisory_xact_lock(hashtext('{TABLE}'))"
    remote = True
    id_in = "id = ANY(%s)"
    # Reserve room in the counter and insert the rows, or (no room for all) do neither.
    insert_if_room = f"""WITH reserved AS (
        UPDATE {DEPTH} SET pending = pending + %s WHERE id = 1 AND pending + %s <= %s
        RETURNING pending
    )
    INSERT INTO {TABLE} (id, status, operation_type, spec, created_at, updated_at)
    SELECT row.id, 'pending', row.operation_type, row.spec, {now}, {now}
    FROM reserved, unnest(%b::text[], %b::text[], %b::text[]) AS row(id, operation_type, spec)
    RETURNING id"""

    # A listed operation's objects and their results: one statement each, however many.
    insert_objects = f"""INSERT INTO {OBJECTS} (operation_id, object_key, size, expected_sha256)
    SELECT %s, row.object_key, row.size, row.expected
    FROM unnest(%s::text[], %s::bigint[], %s::text[]) AS row(object_key, size, expected)"""
    record_objects = f"""UPDATE {OBJECTS} AS o SET outcome = r.outcome, sha256 = r.sha256,
        error = r.error
    FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])
        AS r(object_key, outcome, sha256, error)
    WHERE o.operation_id = %s AND o.object_key = r.object_key"""

    @staticmethod
    def id_list(ids: Sequence[str]) -> Any:
        return list(ids)

    def _insert_objects(self, run: Exec, op_id: str, objects: Sequence[ObjectRow]) -> None:
        keys = [o.key for o in objects]
        sizes = [o.size for o in objects]
        expected = [o.expected_sha256 for o in objects]
        run(self.insert_objects, (op_id, keys, sizes, expected))

    def _record_objects(self, run: Exec, op_id: str, reports: Sequence[ObjectReport]) -> None:
        columns = (
            [r.key for r in reports],
            [r.outcome for r in reports],
            [r.sha256 for r in reports],
            [r.error for r in reports],
        )
        run(self.record_objects, (*columns, op_id))

    def __init__(self, conninfo: str, *, max_connections: int = 16) -> None:
        self._conninfo = conninfo
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._closed = False

    def _insert_if_room(self, rows: Sequence[tuple[str, str, str]], *, max_queue: int) -> bool:
        """One statement (one round trip, the counter's row lock held only while it runs)."""
        if not rows:
            return True
        ids, types, specs = (list(column) for column in zip(*rows, strict=True))
        n = len(rows)
        with self._transaction() as run:  # a single statement is its own transaction
            inserted = run(self.insert_if_room, (n, n, max_queue, ids, types, specs))
        return len(inserted) == len(rows)

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """Accept SQLAlchemy-style `postgresql+psycopg://` too (the driver part is dropped)."""
        scheme, sep, rest = url.partition("://")
        return cls(f"{scheme.split('+', 1)[0]}{sep}{rest}")

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self._conninfo, connect_timeout=5, autocommit=True)
        except psycopg.Error as exc:
            raise ExecutorUnavailable(
                f"operation store: PostgreSQL unreachable ({type(exc).__name__})"
            ) from None

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        if not self._slots.acquire(timeout=30):
            raise ExecutorUnavailable("operation store: no free PostgreSQL connection")
        conn: psycopg.Connection | None = None
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self._connect()
            yield conn
        except BaseException:
            idle = psycopg.pq.TransactionStatus.IDLE
            if conn is not None and (conn.closed or conn.info.transaction_status != idle):
                conn.close()  # state unknown: never hand it out again
                conn = None
            raise
        finally:
            if conn is not None and not self._closed:
                self._idle.put(conn)
            elif conn is not None:
                conn.close()
            self._slots.release()

    @contextmanager
    def _transaction(self, *, write: bool = False) -> Iterator[Exec]:
        """Reads run without BEGIN/COMMIT (two round trips fewer; each statement is atomic)."""
        try:
            with self._connection() as conn:
                if write:
                    with conn.transaction():
                        yield _Run(conn)
                else:
                    yield _Run(conn)
        except psycopg.Error as exc:
            # psycopg's messages can quote the statement but never the connection string.
            raise ExecutorUnavailable(
                f"operation store: PostgreSQL error ({type(exc).__name__})"
            ) from exc

    # -- notifications: replicas hear of new and finished operations at once -------------

    def _announce(self, run: Exec, channel: str, payload: str) -> None:
        run("SELECT pg_notify(%s, %s)", (channel, payload))  # delivered at commit

    def _announce_queued(self) -> None:
        with self._transaction() as run:
            self._announce(run, QUEUED, "")

    def listen(self, on_queued: Callable[[], None], on_finished: Callable[[str], None]) -> None:
        """LISTEN on a connection of its own, in a daemon thread, until `close`.

        A lost connection is opened again; `on_queued` is also called after each (re)connect,
        for anything queued while nobody listened. Polling stays the fallback.
        """
        thread = threading.Thread(
            target=self._listen, args=(on_queued, on_finished), name="executor-listen", daemon=True
        )
        thread.start()

    def _listen(self, on_queued: Callable[[], None], on_finished: Callable[[str], None]) -> None:
        while not self._closed:
            try:
                with psycopg.connect(self._conninfo, connect_timeout=5, autocommit=True) as conn:
                    conn.execute(f"LISTEN {QUEUED}")
                    conn.execute(f"LISTEN {FINISHED}")
                    on_queued()
                    while not self._closed:
                        for note in conn.notifies(timeout=1.0):
                            if note.channel == QUEUED:
                                on_queued()
                            else:
                                on_finished(note.payload)
            except psycopg.Error as exc:
                log.warning("operation store: LISTEN lost (%s); retrying", type(exc).__name__)
                threading.Event().wait(LISTEN_RETRY_SECONDS)

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class _Run:
    """`Exec` on one connection: server-side prepared statements; `many` is pipelined."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def __call__(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        cursor = self.conn.execute(sql, tuple(params), prepare=True)  # type: ignore[arg-type]
        result = cursor.pgresult  # (not `description`: it builds a Column per column)
        return cursor.fetchall() if result is not None and result.status == _ROWS else []

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(sql, rows)  # type: ignore[arg-type]
