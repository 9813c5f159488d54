"""The up-to-date rule and chunking (pure logic)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crypto_lakehouse.transfer.lines import key_covers, plan_lines
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

    assert transfer.__all__ == sorted(transfer.__all__, key=lambda n: (not n.isupper(), n))
    assert set(transfer.__all__) == {
        "EngineOptions",
        "Invocation",
        "ListedObject",
        "Listing",
        "ListingScope",
        "Mode",
        "ObjectResult",
        "StagingArea",
        "TransferEngine",
        "TransferOutcome",
        "TransferProgress",
        "TransferReport",
        "TransferRequest",
        "TransferSummary",
        "check_reachable",
        "folder_of",
        "has_glob",
        "listed_stamp",
        "memory_tier_dir",
        "s5cmd_binary",
        "upload_tree",
    }
    for name in transfer.__all__:
        assert getattr(transfer, name) is not None


def test_other_parts_use_only_the_public_surface() -> None:
    """Outside transfer/ (and its own tests), code imports `crypto_lakehouse.transfer`."""
    package = Path(__file__).resolve().parents[2] / "src" / "crypto_lakehouse"
    offenders = []
    for path in package.rglob("*.py"):
        relative = path.relative_to(package).as_posix()
        if relative.startswith("transfer/"):
            continue
        if re.search(r"crypto_lakehouse\.transfer\.\w+ import", path.read_text()):
            offenders.append(relative)
    assert offenders == []


def _listed(keys: list[str], wanted: set[str]) -> list[PlanItem]:
    """Plan items for `wanted`, with their neighbours in the listing `keys` (sorted)."""
    return [
        PlanItem(
            k, k, 1, "", keys[i - 1] if i else None, keys[i + 1] if i + 1 < len(keys) else None
        )
        for i, k in enumerate(keys)
        if k in wanted
    ]


def test_per_folder_covers_stop_at_the_folder_a_listing_is_complete_for() -> None:
    # A union of two folder listings: nothing is known between them (p/b/ may hold keys).
    keys = ["p/a/1", "p/a/2", "p/a/3", "p/c/1", "p/c/2"]
    items = _listed(keys, {"p/a/2", "p/a/3", "p/c/1", "p/c/2"})

    covers, per_key = plan_lines(items, lambda i: True, "p/", per_folder=True)

    assert [(c.prefix, c.indexes) for c in covers] == [
        ("p/a/2", [0]),
        ("p/a/3", [1]),
        ("p/c/", [2, 3]),
    ]
    assert per_key == []
    # Without it, the listing counts as complete for p/: one cover spans the folders.
    spanning, _ = plan_lines(items, lambda i: True, "p/")
    assert [c.prefix for c in spanning] == ["p/a/2", "p/a/3", "p/c"]


def test_key_covers_join_a_key_with_the_keys_that_extend_it_only() -> None:
    keys = [
        "p/a.zip",
        "p/a.zip.CHECKSUM",
        "p/b.zip",  # its sidecar is not in the chunk: a per-key line
        "p/c.zip",
        "p/c.zip.CHECKSUM",
        "p/c.zip.CHECKSUM.sig",
        "p/d*.zip",  # a glob in the key: never a wildcard
        "p/d*.zip.CHECKSUM",
        "p/e.zip",
        "p/e.zip.CHECKSUM",  # not eligible (e.g. a file/folder clash): e.zip stays alone
    ]
    items = [PlanItem(k, k, 1, "", None, None) for k in keys]

    covers, per_key = key_covers(items, lambda i: i != 9)

    assert [(c.prefix, c.indexes) for c in covers] == [
        ("p/a.zip", [0, 1]),
        ("p/c.zip", [3, 4, 5]),
    ]
    assert per_key == [2, 6, 7, 8, 9]
