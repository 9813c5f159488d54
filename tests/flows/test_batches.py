"""Batching partitions and the tasks' retry condition: pure logic, no servers."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from crypto_lakehouse.archive import ArchiveFile
from crypto_lakehouse.catalog import ListedFile
from crypto_lakehouse.errors import (
    ChecksumMismatch,
    EndpointUnreachable,
    TransferError,
    TransferInterrupted,
)
from crypto_lakehouse.flows.batches import MIN_BATCH_FILES, in_flight, make_batches, size_batches
from crypto_lakehouse.flows.tasks import transient_only


def listed(symbol: str, day: int, interval: str = "1h", data_type: str = "klines") -> ListedFile:
    file = ArchiveFile("spot", "daily", data_type, symbol, date(2026, 5, day), interval)
    return ListedFile(file.with_listing(10, "e", datetime(2026, 5, 9, tzinfo=UTC)), file.key)


def test_whole_partitions_are_packed_together_up_to_the_cap() -> None:
    items = [listed(s, d) for s in ("BTCUSDT", "ETHUSDT") for d in (1, 2, 3)]
    items += [listed("BTCUSDT", 1, interval="1m")]
    monthly = ArchiveFile("futures/um", "monthly", "fundingRate", "BTCUSDT", date(2026, 4, 1))
    monthly = monthly.with_listing(5, "e", datetime(2026, 5, 9, tzinfo=UTC))
    items += [ListedFile(monthly, monthly.key)]
    batches = make_batches(items, max_files=4)
    assert [b.label for b in batches] == [
        "futures/um/monthly/fundingRate/2026-04 .. spot/daily/klines/1h/2026-05-01 (2 partitions)",
        "spot/daily/klines/1h/2026-05-02 .. spot/daily/klines/1h/2026-05-03 (2 partitions)",
        "spot/daily/klines/1m/2026-05-01",
    ]
    assert [len(b.files) for b in batches] == [3, 4, 1]
    # A partition never straddles two batches, and every file is in exactly one.
    assert sorted(i.path for b in batches for i in b.files) == sorted(i.path for i in items)
    for batch in batches:
        assert {i.file.partition for i in batch.files} == set(batch.partitions)


def test_a_partition_larger_than_the_cap_is_split_in_parts() -> None:
    items = [listed(f"S{n:02d}USDT", 1) for n in range(5)]
    batches = make_batches(items, max_files=2)
    assert [b.label for b in batches] == [
        "spot/daily/klines/1h/2026-05-01 (1/3)",
        "spot/daily/klines/1h/2026-05-01 (2/3)",
        "spot/daily/klines/1h/2026-05-01 (3/3)",
    ]
    assert sum(b.size for b in batches) == 50
    with pytest.raises(ValueError):
        make_batches(items, max_files=0)


class _State:
    def __init__(self, data: object) -> None:
        self.data = data


@pytest.mark.parametrize(
    ("error", "retry"),
    [
        (EndpointUnreachable("down"), True),
        (TransferInterrupted("s5cmd could not start: out of memory"), True),
        (TransferError("the source listing is not in key order"), False),
        (ChecksumMismatch("bad bytes"), False),
        (ValueError("bug"), False),
        (None, False),
    ],
)
def test_tasks_retry_only_transient_errors(error: object, retry: bool) -> None:
    assert transient_only(None, None, _State(error)) is retry


def test_batches_are_sized_from_the_work_and_the_slots() -> None:
    items = [listed(f"S{n:03d}USDT", d) for n in range(100) for d in (1, 2, 3, 4, 5)]
    # 500 files, 2 slots: two batches of whole partitions (days), balanced in order.
    two = size_batches(items, max_files=1000, parallel=2)
    assert [len(b.files) for b in two] == [300, 200]
    # Each batch would hold fewer than MIN_BATCH_FILES: fewer batches, down to one.
    assert len(size_batches(items[:399], max_files=1000, parallel=4)) == 1
    assert len(size_batches(items, max_files=1000, parallel=4)) == 2
    # `max_files` stays a hard cap per batch.
    assert [len(b.files) for b in size_batches(items, max_files=100, parallel=1)] == [100] * 5
    assert size_batches([], max_files=10, parallel=2) == []
    assert MIN_BATCH_FILES > 1


def test_batches_in_flight_are_capped_at_the_cores() -> None:
    assert in_flight(4, cores=2) == 2
    assert in_flight(4, cores=8) == 4
    assert in_flight(0, cores=8) == 1
