"""The durable operation queue: one table, shared by every replica.

An operation moves `pending -> running -> completed | failed | cancelled`. A replica
*claims* a pending operation (or a running one whose lease has expired: its replica
died) by writing its replica id, a fresh claim token and a lease deadline in one
statement; on PostgreSQL the candidate row is locked with `FOR UPDATE SKIP LOCKED`, so
two replicas never claim the same row. Every later write by the runner (heartbeat,
progress, final status) is fenced by that claim token: a replica that lost its lease
cannot overwrite the work of the replica that took over.

The queue bound is checked against a one-row counter that every transition into or out
of `pending` updates in the same transaction: counting pending rows would cost time
proportional to the queue on every submit. `initialise` recounts it, under its row lock.

On PostgreSQL every queued and finished operation is also announced (`NOTIFY`, sent
at commit): each replica LISTENs, so an idle replica claims new work at once and a
long-poll on any replica answers as soon as another replica finishes the operation.
Polling stays the fallback (and the only way on SQLite).

Times are Unix seconds computed by the database (`{now}`), so replicas with skewed
clocks still agree on lease expiry. `SqliteStore` and `PostgresStore` differ only in
connections, placeholders and that clock expression.
"""

# SQL is assembled only from module constants and the dialect's clock expression; every
# value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from crypto_lakehouse.errors import OperationNotFound, QueueFull
from crypto_lakehouse.executor.objects import (
    INSERT_OBJECT,
    OBJECT_SCHEMA,
    RECORD_OBJECT,
    SELECT_OBJECTS,
    ObjectReport,
    ObjectRow,
)


class Exec(Protocol):
    """What a transaction hands out: run one statement (rows it returns, if any), or one
    statement for many parameter rows (the driver batches them)."""

    def __call__(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...


TABLE = "executor_operations"
DEPTH = "executor_queue_depth"  # one row: how many operations are pending
COLUMNS = (
    "id, status, operation_type, spec, created_at, started_at, finished_at, updated_at, "
    "owner, claim_token, lease_expires_at, attempts, cancel_requested, objects_done, "
    "bytes_done, objects_total, bytes_total, summary, failures, failures_total, error"
)
SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        operation_type TEXT NOT NULL,
        spec TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        started_at DOUBLE PRECISION,
        finished_at DOUBLE PRECISION,
        updated_at DOUBLE PRECISION NOT NULL,
        owner TEXT,
        claim_token TEXT,
        lease_expires_at DOUBLE PRECISION,
        attempts INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        objects_done BIGINT NOT NULL DEFAULT 0,
        bytes_done BIGINT NOT NULL DEFAULT 0,
        objects_total BIGINT NOT NULL DEFAULT 0,
        bytes_total BIGINT NOT NULL DEFAULT 0,
        summary TEXT,
        failures TEXT,
        failures_total INTEGER NOT NULL DEFAULT 0,
        error TEXT
    )""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_status ON {TABLE} (status, created_at)",
    f"CREATE TABLE IF NOT EXISTS {DEPTH} (id INTEGER PRIMARY KEY, pending BIGINT NOT NULL)",
    f"INSERT INTO {DEPTH} (id, pending) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    *OBJECT_SCHEMA,
)
RETRY_AFTER_SECONDS = 5  # what a 429 tells clients when the queue is full
QUEUED = "executor_queued"  # channel: an operation became pending
FINISHED = "executor_finished"  # channel: an operation ended (payload: its id)


@dataclass
class OperationRecord:
    """One row. `spec` is the validated request plus effective settings; never a secret."""

    id: str
    status: str
    operation_type: str
    spec: dict[str, Any]
    created_at: float
    updated_at: float
    started_at: float | None = None
    finished_at: float | None = None
    owner: str | None = None
    claim_token: str | None = None
    lease_expires_at: float | None = None
    attempts: int = 0
    cancel_requested: bool = False
    objects_done: int = 0
    bytes_done: int = 0
    objects_total: int = 0
    bytes_total: int = 0
    summary: dict[str, Any] | None = None
    failures: list[dict[str, str]] = field(default_factory=list)
    failures_total: int = 0
    error: str | None = None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> OperationRecord:
        (op_id, status, op_type, spec, created, started, finished, updated, owner, token,
         lease, attempts, cancel, o_done, b_done, o_total, b_total, summary, failures,
         failures_total, error) = row  # fmt: skip
        return cls(
            id=op_id,
            status=status,
            operation_type=op_type,
            spec=json.loads(spec),
            created_at=created,
            updated_at=updated,
            started_at=started,
            finished_at=finished,
            owner=owner,
            claim_token=token,
            lease_expires_at=lease,
            attempts=attempts,
            cancel_requested=bool(cancel),
            objects_done=o_done,
            bytes_done=b_done,
            objects_total=o_total,
            bytes_total=b_total,
            summary=json.loads(summary) if summary else None,
            failures=json.loads(failures) if failures else [],
            failures_total=failures_total,
            error=error,
        )


@dataclass(frozen=True)
class Claim:
    """Proof that this replica owns a running operation until the lease runs out."""

    operation_id: str
    token: str
    owner: str


@dataclass(frozen=True)
class Heartbeat:
    """The answer to a lease renewal: still ours? has someone asked to cancel?"""

    owned: bool
    cancel_requested: bool


@dataclass
class OperationOutcome:
    """A run's final write."""

    status: str  # completed | failed | cancelled
    summary: dict[str, Any] | None = None
    failures: list[dict[str, str]] = field(default_factory=list)
    failures_total: int = 0
    error: str | None = None
    progress: tuple[int, int, int, int] | None = None  # objects/bytes done, objects/bytes total
    objects: Sequence[ObjectReport] = ()  # results of a listed operation's objects


class OperationStore(ABC):
    """Shared SQL over a dialect's connections; subclasses supply `_transaction` and `now`."""

    now: str  # SQL for "Unix seconds now" in this dialect
    remote: bool = False  # calls cross a network (run them off the event loop)
    skip_locked: str = ""  # row-locking clause for the claim's candidate query
    row_lock: str = ""  # row-locking clause for reading the queue counter
    schema_lock: str = ""  # statement serialising `initialise` across replicas (if needed)
    id_in: str = "id IN (SELECT value FROM json_each(%s))"  # `id` is one of a list (`id_list`)

    @staticmethod
    def id_list(ids: Sequence[str]) -> Any:
        """The parameter `id_in` takes."""
        return json.dumps(list(ids))

    @abstractmethod
    def _transaction(self, *, write: bool = False) -> AbstractContextManager[Exec]:
        """A transaction (`write=False`: possibly one snapshot per statement); errors from the
        driver come out as ExecutorUnavailable."""

    @abstractmethod
    def close(self) -> None: ...

    def listen(self, on_queued: Callable[[], None], on_finished: Callable[[str], None]) -> None:
        """Call `on_queued()` when any replica queues an operation and `on_finished(id)` when
        any replica finishes one, where the store can push that (PostgreSQL); elsewhere
        nothing is called and replicas rely on polling."""
        return None

    def _announce(self, run: Exec, channel: str, payload: str) -> None:
        """Tell listeners (`listen`) once the current transaction commits; a no-op here."""
        return None

    def _announce_queued(self) -> None:
        """`_announce` of QUEUED outside a transaction (after a batch of submits)."""
        return None

    def initialise(self) -> None:
        """Create the tables if needed and recount the queue depth from the rows.

        Replicas starting together (`serve --workers N`, a scaled deployment) take turns:
        concurrent `CREATE TABLE IF NOT EXISTS` on PostgreSQL deadlocks or collides.
        """
        with self._transaction(write=True) as run:
            if self.schema_lock:
                run(self.schema_lock, ())
            for statement in SCHEMA:
                run(statement, ())
        with self._transaction(write=True) as run:
            run(f"SELECT pending FROM {DEPTH} WHERE id = 1 {self.row_lock}", ())
            (pending,) = run(f"SELECT count(*) FROM {TABLE} WHERE status = 'pending'", ())[0]
            run(f"UPDATE {DEPTH} SET pending = %s WHERE id = 1", (pending,))

    def ping(self) -> None:
        with self._transaction() as run:
            run("SELECT 1", ())

    # -- the API's side ---------------------------------------------------------------

    def create(self, operation_type: str, spec: dict[str, Any], *, max_queue: int) -> str:
        """Queue a new operation and return its id; QueueFull when `max_queue` are pending."""
        (result,) = self.create_many([(operation_type, spec)], max_queue=max_queue)
        if isinstance(result, QueueFull):
            raise result
        return result

    def create_many(
        self, requests: Sequence[tuple[str, dict[str, Any]]], *, max_queue: int
    ) -> list[str | QueueFull]:
        """Queue several operations in one transaction (one commit): an id, or QueueFull, each.

        The counter row is read under its lock, so concurrent batches (other replicas too)
        see each other's reservations: the first `room` requests get in, the rest are refused.
        """
        rows = [
            (uuid.uuid4().hex, operation_type, json.dumps(spec, separators=(",", ":")))
            for operation_type, spec in requests
        ]
        room = len(rows)
        if not self._insert_if_room(rows, max_queue=max_queue):
            with self._transaction(write=True) as run:
                (pending,) = run(f"SELECT pending FROM {DEPTH} WHERE id = 1 {self.row_lock}", ())[0]
                room = max(0, min(len(rows), max_queue - int(pending)))
                if room:
                    run(f"UPDATE {DEPTH} SET pending = pending + %s WHERE id = 1", (room,))
                    run.many(
                        f"INSERT INTO {TABLE} (id, status, operation_type, spec, created_at, "
                        f"updated_at) VALUES (%s, 'pending', %s, %s, {self.now}, {self.now})",
                        rows[:room],
                    )
        if room:
            self._announce_queued()
        refused = [
            QueueFull(
                f"{max_queue} operations are already waiting (the limit)",
                retry_after=RETRY_AFTER_SECONDS,
            )
            for _ in rows[room:]
        ]
        return [op_id for op_id, _, _ in rows[:room]] + refused

    def _insert_if_room(self, rows: Sequence[tuple[str, str, str]], *, max_queue: int) -> bool:
        """A dialect's shortcut for `create_many`: insert every row (id, type, spec) and count
        them in, atomically, if they all fit; True if it did, False if it wrote nothing."""
        return False

    def create_listed(
        self,
        operation_type: str,
        spec: dict[str, Any],
        objects: Sequence[ObjectRow],
        *,
        max_queue: int,
    ) -> str:
        """Queue an operation with its object list in one transaction (no replica can claim
        it before its objects are there); QueueFull when `max_queue` are pending."""
        op_id = uuid.uuid4().hex
        with self._transaction(write=True) as run:
            (pending,) = run(f"SELECT pending FROM {DEPTH} WHERE id = 1 {self.row_lock}", ())[0]
            if int(pending) >= max_queue:
                raise QueueFull(
                    f"{max_queue} operations are already waiting (the limit)",
                    retry_after=RETRY_AFTER_SECONDS,
                )
            run(f"UPDATE {DEPTH} SET pending = pending + 1 WHERE id = 1", ())
            run(
                f"INSERT INTO {TABLE} (id, status, operation_type, spec, created_at, "
                f"updated_at) VALUES (%s, 'pending', %s, %s, {self.now}, {self.now})",
                (op_id, operation_type, json.dumps(spec, separators=(",", ":"))),
            )
            self._insert_objects(run, op_id, objects)
            self._announce(run, QUEUED, "")
        return op_id

    def _insert_objects(self, run: Exec, op_id: str, objects: Sequence[ObjectRow]) -> None:
        run.many(INSERT_OBJECT, [(op_id, o.key, o.size, o.expected_sha256) for o in objects])

    def _record_objects(self, run: Exec, op_id: str, reports: Sequence[ObjectReport]) -> None:
        run.many(RECORD_OBJECT, [(r.outcome, r.sha256, r.error, op_id, r.key) for r in reports])

    def objects(self, op_id: str, *, after: str = "", limit: int = 1000) -> list[ObjectRow]:
        """Up to `limit` listed objects of one operation with keys after `after`, in key order
        (an operation without a list has none)."""
        with self._transaction() as run:
            rows = run(SELECT_OBJECTS, (op_id, after, limit))
        return [ObjectRow.from_row(row) for row in rows]

    def get(self, op_id: str) -> OperationRecord:
        """One operation; OperationNotFound if there is none with that id."""
        (result,) = self.get_many([op_id])
        if isinstance(result, OperationNotFound):
            raise result
        return result

    def get_many(self, ids: Sequence[str]) -> list[OperationRecord | OperationNotFound]:
        """Several operations in one statement: the record, or OperationNotFound, per id."""
        with self._transaction() as run:
            rows = run(f"SELECT {COLUMNS} FROM {TABLE} WHERE {self.id_in}", (self.id_list(ids),))
        found = {row[0]: row for row in rows}
        return [
            OperationRecord.from_row(found[op_id])
            if op_id in found
            else OperationNotFound(f"no operation {op_id}")
            for op_id in ids
        ]

    def list(
        self, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[OperationRecord], int]:
        """Newest first; returns one page and the total matching."""
        where, params = ("WHERE status = %s", (status,)) if status else ("", ())
        with self._transaction() as run:
            (total,) = run(f"SELECT count(*) FROM {TABLE} {where}", params)[0]
            rows = run(
                f"SELECT {COLUMNS} FROM {TABLE} {where} "
                "ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s",
                (*params, limit, offset),
            )
        return [OperationRecord.from_row(r) for r in rows], int(total)

    def counts(self) -> dict[str, int]:
        with self._transaction() as run:
            rows = run(f"SELECT status, count(*) FROM {TABLE} GROUP BY status", ())
        return {status: int(n) for status, n in rows}

    def request_cancel(self, op_id: str) -> tuple[OperationRecord, bool]:
        """Cancel a pending operation now, or flag a running one for its runner to stop.

        Returns the record and whether this call moved it from pending to cancelled.
        """
        with self._transaction(write=True) as run:
            now_cancelled = run(
                f"UPDATE {TABLE} SET status = 'cancelled', cancel_requested = 1, "
                f"finished_at = {self.now}, updated_at = {self.now} "
                "WHERE id = %s AND status = 'pending' RETURNING id",
                (op_id,),
            )
            if now_cancelled:
                run(f"UPDATE {DEPTH} SET pending = pending - 1 WHERE id = 1", ())
            else:
                run(
                    f"UPDATE {TABLE} SET cancel_requested = 1, updated_at = {self.now} "
                    "WHERE id = %s AND status = 'running'",
                    (op_id,),
                )
        return self.get(op_id), bool(now_cancelled)

    # -- the runner's side ------------------------------------------------------------

    def claim(self, owner: str, lease_seconds: float) -> OperationRecord | None:
        """Take the oldest pending (or abandoned running) operation for `owner`, or None."""
        token = uuid.uuid4().hex
        with self._transaction(write=True) as run:
            # Two index-friendly probes (status, created_at) rather than one OR that scans
            # the whole table: abandoned runs first (they are older), then the queue.
            candidate = run(
                f"SELECT id, status FROM {TABLE} WHERE status = 'running' "
                f"AND lease_expires_at < {self.now} "
                f"ORDER BY created_at, id LIMIT 1 {self.skip_locked}",
                (),
            ) or run(
                f"SELECT id, status FROM {TABLE} WHERE status = 'pending' "
                f"ORDER BY created_at, id LIMIT 1 {self.skip_locked}",
                (),
            )
            if not candidate:
                return None
            op_id, previous = candidate[0]
            rows = run(
                f"UPDATE {TABLE} SET status = 'running', owner = %s, claim_token = %s, "
                f"lease_expires_at = {self.now} + %s, started_at = COALESCE(started_at, "
                f"{self.now}), updated_at = {self.now}, attempts = attempts + 1 "
                f"WHERE id = %s RETURNING {COLUMNS}",
                (owner, token, lease_seconds, op_id),
            )
            if previous == "pending":
                run(f"UPDATE {DEPTH} SET pending = pending - 1 WHERE id = 1", ())
        return OperationRecord.from_row(rows[0])

    def heartbeat(
        self, claim: Claim, lease_seconds: float, progress: tuple[int, int, int, int] | None
    ) -> Heartbeat:
        """Extend the lease (and record progress) if the claim still holds."""
        sets, params = (
            f"lease_expires_at = {self.now} + %s, updated_at = {self.now}",
            [lease_seconds],
        )
        if progress is not None:
            sets += ", objects_done = %s, bytes_done = %s, objects_total = %s, bytes_total = %s"
            params.extend(progress)
        with self._transaction(write=True) as run:
            rows = run(
                f"UPDATE {TABLE} SET {sets} WHERE id = %s AND claim_token = %s "
                "AND status = 'running' RETURNING cancel_requested",
                (*params, claim.operation_id, claim.token),
            )
        if not rows:
            return Heartbeat(owned=False, cancel_requested=False)
        return Heartbeat(owned=True, cancel_requested=bool(rows[0][0]))

    def finish(self, claim: Claim, outcome: OperationOutcome) -> bool:
        """Write the final status; False (nothing written) if the claim was lost."""
        sets = (
            f"status = %s, finished_at = {self.now}, updated_at = {self.now}, "
            "lease_expires_at = NULL, summary = %s, failures = %s, failures_total = %s, error = %s"
        )
        params: list[Any] = [
            outcome.status,
            json.dumps(outcome.summary) if outcome.summary is not None else None,
            json.dumps(outcome.failures),
            outcome.failures_total,
            outcome.error,
        ]
        if outcome.progress is not None:
            sets += ", objects_done = %s, bytes_done = %s, objects_total = %s, bytes_total = %s"
            params.extend(outcome.progress)
        with self._transaction(write=True) as run:
            rows = run(
                f"UPDATE {TABLE} SET {sets} WHERE id = %s AND claim_token = %s "
                "AND status = 'running' RETURNING id",
                (*params, claim.operation_id, claim.token),
            )
            if rows and outcome.objects:
                self._record_objects(run, claim.operation_id, outcome.objects)
            if rows:
                self._announce(run, FINISHED, claim.operation_id)
        return bool(rows)

    def release(self, claim: Claim) -> bool:
        """Hand a running operation back to the queue (graceful shutdown): pending again."""
        with self._transaction(write=True) as run:
            rows = run(
                f"UPDATE {TABLE} SET status = 'pending', owner = NULL, claim_token = NULL, "
                f"lease_expires_at = NULL, updated_at = {self.now} "
                "WHERE id = %s AND claim_token = %s AND status = 'running' RETURNING id",
                (claim.operation_id, claim.token),
            )
            if rows:
                run(f"UPDATE {DEPTH} SET pending = pending + 1 WHERE id = 1", ())
                self._announce(run, QUEUED, "")
        return bool(rows)

    def queue_depth(self) -> int:
        """Pending operations, from the counter (constant time; for the queue gauge)."""
        with self._transaction() as run:
            return int(run(f"SELECT pending FROM {DEPTH} WHERE id = 1", ())[0][0])
