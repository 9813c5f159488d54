"""How ExecutorMover cuts a batch into listed operations (pure)."""

from __future__ import annotations

from datetime import date, timedelta

from crypto_lakehouse.archive import ArchiveFile
from crypto_lakehouse.catalog import ListedFile
from crypto_lakehouse.executor.models import MAX_OBJECTS
from crypto_lakehouse.flows.mover import MIN_OPERATION_FILES, operation_parts


def files(count: int) -> list[ListedFile]:
    out = []
    for i in range(count):
        period = date(2020, 1, 1) + timedelta(days=i % 2000)
        meta = ArchiveFile("spot", "daily", "klines", f"S{i // 2000}USDT", period, "1h", size=1)
        out.append(ListedFile(meta, meta.key))
    return out[::-1]  # any order in, key order out


def test_a_small_batch_is_one_operation() -> None:
    assert [len(p) for p in operation_parts(files(MIN_OPERATION_FILES * 2 - 1), 3)] == [199]


def test_a_batch_is_spread_over_the_operations_in_flight_in_key_order() -> None:
    batch = files(MIN_OPERATION_FILES * 5)
    parts = operation_parts(batch, 3)
    assert [len(p) for p in parts] == [167, 167, 166]
    keys = [item.source_key for part in parts for item in part]
    assert keys == sorted(item.source_key for item in batch)


def test_no_operation_exceeds_the_object_limit() -> None:
    parts = operation_parts(files(MAX_OBJECTS // 2 * 3 + 1), 1)  # a file travels with its sidecar
    assert len(parts) == 4 and max(len(p) for p in parts) * 2 <= MAX_OBJECTS


def test_nothing_to_move_is_no_operation() -> None:
    assert operation_parts([], 3) == []
