"""The operation store on real SQLite and PostgreSQL: claims, leases, fencing, queue bound."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from crypto_lakehouse.errors import OperationNotFound, QueueFull
from crypto_lakehouse.executor.store import Claim, OperationOutcome, OperationStore
from crypto_lakehouse.executor.stores import open_store
from crypto_lakehouse.stack.postgres import PostgresServer


def _fresh_database(kind: str, request: pytest.FixtureRequest, sqlite_file: Path) -> str:
    """A URL of an empty store database: a SQLite file, or a new database on the server."""
    if kind == "sqlite":
        return f"sqlite:///{sqlite_file}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"exec_{uuid.uuid4().hex[:10]}"
    server.create_database(name)
    return server.info.url(name)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OperationStore]:
    opened = open_store(_fresh_database(request.param, request, tmp_path / "ops.db"))
    opened.initialise()
    yield opened
    opened.close()


def claim_of(record) -> Claim:
    return Claim(record.id, record.claim_token, record.owner)


def test_claims_are_exclusive_under_contention(store: OperationStore) -> None:
    ids = {store.create("sync", {"n": i}, max_queue=1000) for i in range(40)}
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (record := store.claim(name, 60)) is not None:
            with lock:
                claimed.append(record.id)

    threads = [threading.Thread(target=worker, args=(f"r{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Counter(claimed) == Counter(ids), "every operation claimed exactly once"
    assert store.counts() == {"running": 40}


def test_an_expired_lease_is_claimed_again_and_the_old_owner_is_fenced(
    store: OperationStore,
) -> None:
    op = store.create("copy", {}, max_queue=10)
    first = store.claim("dead-replica", 0.5)
    assert first is not None and first.id == op and first.attempts == 1
    assert store.claim("other", 30) is None, "a live lease is not claimable"
    time.sleep(0.8)
    second = store.claim("other", 30)
    assert second is not None and second.id == op and second.attempts == 2

    stale = store.heartbeat(claim_of(first), 30, (1, 1, 1, 1))
    assert stale.owned is False
    assert store.finish(claim_of(first), OperationOutcome(status="completed")) is False
    assert store.heartbeat(claim_of(second), 30, (3, 30, 5, 50)).owned is True
    assert store.finish(
        claim_of(second), OperationOutcome(status="completed", summary={"copied": 5})
    )
    final = store.get(op)
    assert (final.status, final.owner, final.objects_done, final.summary) == (
        "completed",
        "other",
        3,
        {"copied": 5},
    )


def test_queue_bound_holds_under_concurrent_submits(store: OperationStore) -> None:
    accepted, refused = [], []

    def submit() -> None:
        try:
            accepted.append(store.create("sync", {}, max_queue=7))
        except QueueFull as exc:
            refused.append(exc.retry_after)

    threads = [threading.Thread(target=submit) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(accepted) == 7 and len(refused) == 13
    assert all(seconds > 0 for seconds in refused)


def test_a_batch_larger_than_the_room_left_is_accepted_in_order_up_to_the_bound(
    store: OperationStore,
) -> None:
    store.create("sync", {"first": True}, max_queue=5)
    results = store.create_many([("sync", {"i": i}) for i in range(6)], max_queue=5)
    accepted = [r for r in results if isinstance(r, str)]
    assert len(accepted) == 4 and all(isinstance(r, QueueFull) for r in results[4:])
    assert [store.get(op_id).spec for op_id in accepted] == [{"i": i} for i in range(4)]
    assert store.queue_depth() == 5
    assert store.create_many([], max_queue=5) == []
    assert [r.id for r in store.get_many(accepted[:1] * 2)] == accepted[:1] * 2


def test_cancel_pending_at_once_and_running_by_flag(store: OperationStore) -> None:
    pending = store.create("sync", {}, max_queue=10)
    running = store.create("sync", {}, max_queue=10)
    record, now = store.request_cancel(pending)
    assert (record.status, now) == ("cancelled", True)
    assert store.request_cancel(pending)[1] is False, "idempotent"

    claimed = store.claim("r1", 30)
    assert claimed is not None and claimed.id == running, "cancelled ones are never claimed"
    record, now = store.request_cancel(running)
    assert (record.status, record.cancel_requested, now) == ("running", True, False)
    assert store.heartbeat(claim_of(claimed), 30, None).cancel_requested is True


def test_release_hands_the_operation_back(store: OperationStore) -> None:
    op = store.create("sync", {}, max_queue=10)
    first = store.claim("stopping", 30)
    assert store.release(claim_of(first))
    again = store.claim("next", 30)
    assert again is not None and again.id == op and again.owner == "next"


def test_list_pages_and_filters(store: OperationStore) -> None:
    ids = [store.create("sync", {"i": i}, max_queue=100) for i in range(5)]
    time.sleep(0.01)
    store.request_cancel(ids[0])
    page, total = store.list(limit=2, offset=0)
    assert total == 5 and len(page) == 2
    everything = [r.id for r in store.list(limit=10)[0]]
    assert set(everything) == set(ids)
    cancelled, total = store.list(status="cancelled")
    assert total == 1 and cancelled[0].id == ids[0]
    with pytest.raises(OperationNotFound):
        store.get(uuid.uuid4().hex)


def _initialise_together(url: str, replicas: int = 4) -> list[Exception]:
    """Open `replicas` stores on one database and initialise them at the same instant."""
    stores = [open_store(url) for _ in range(replicas)]
    start, failures = threading.Barrier(replicas), []

    def initialise(store: OperationStore) -> None:
        start.wait()
        try:
            store.initialise()
        except Exception as exc:
            failures.append(exc)

    threads = [threading.Thread(target=initialise, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    return failures


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_replicas_starting_together_all_initialise_one_database(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """`serve --workers N` and a scaled deployment start N replicas on one fresh database
    at once; PostgreSQL's concurrent CREATE TABLE IF NOT EXISTS can deadlock or collide."""
    for attempt in range(5):
        url = _fresh_database(kind, request, tmp_path / f"ops{attempt}.db")
        assert _initialise_together(url) == [], f"attempt {attempt}"
