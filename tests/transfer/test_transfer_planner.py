"""The up-to-date rule and chunking (pure logic)."""

from __future__ import annotations

import pytest

from crypto_lakehouse.transfer.listing import ListedObject
from crypto_lakehouse.transfer.planner import PlanItem, chunks, is_up_to_date

MD5_A, MD5_B = "a" * 32, "b" * 32
OLD, NEW = "2025-01-01T00:00:00Z", "2025-06-01T00:00:00Z"


@pytest.mark.parametrize(
    ("source", "dest", "fresh"),
    [
        ((10, MD5_A, OLD), (10, MD5_A, OLD), True),  # same content
        ((10, MD5_A, NEW), (10, MD5_A, OLD), True),  # same ETag: touched, not changed
        ((11, MD5_A, OLD), (10, MD5_A, NEW), False),  # size differs
        ((10, MD5_A, OLD), (10, MD5_B, NEW), False),  # two MD5s differ: content differs
        ((10, MD5_A, OLD), (10, "c" * 32 + "-3", NEW), True),  # multipart copy made later
        ((10, MD5_A, NEW), (10, "c" * 32 + "-3", OLD), False),  # source replaced afterwards
        ((10, "d" * 32 + "-2", OLD), (10, MD5_B, OLD), True),  # same second: not older
    ],
)
def test_up_to_date_rule(source: tuple, dest: tuple, fresh: bool) -> None:
    assert is_up_to_date(ListedObject("k", *source), ListedObject("k", *dest)) is fresh


def test_chunks_respect_count_and_bytes() -> None:
    items = [
        PlanItem(f"k{i}", f"k{i}", size, "", None, None) for i, size in enumerate([4, 4, 4, 9, 1])
    ]
    groups = [[i.key for i in group] for group in chunks(items, max_objects=2, max_bytes=8)]
    assert groups == [["k0", "k1"], ["k2"], ["k3"], ["k4"]]


def test_public_surface_is_what_other_parts_code_against() -> None:
    import crypto_lakehouse.transfer as transfer

    assert sorted(transfer.__all__) == [
        "EngineOptions",
        "Mode",
        "ObjectResult",
        "Outcome",
        "TransferEngine",
        "TransferProgress",
        "TransferReport",
        "TransferRequest",
        "TransferSummary",
    ]
