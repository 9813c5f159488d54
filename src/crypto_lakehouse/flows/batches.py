"""Cut the files to transfer into batches of whole partitions, at most `max_files` files each.

A partition (market, frequency, data type, interval, day or month) holds one file per
symbol. A batch is one or more whole partitions, in partition order, that one transfer
task moves with one engine run: packing small partitions saves an engine start (two
probes, two listings, two s5cmd processes) per partition, which dominates when
partitions hold a handful of files (measured: 7 batches of ~70 files took twice as long
as 4 of ~120). A partition larger than `max_files` is split into parts.

How many batches (`size_batches`): as many as run at once, so one batch's download
overlaps another's upload, but no more. Batches in flight are capped at the machine's
cores: each s5cmd process already runs 32 workers, so more processes than cores only
contend (measured on 2 cores, 482 files, `bench ingest`: transfer 3.2-3.6 s with 4
batches in flight, 2.5-2.7 s with 2). A batch below `MIN_BATCH_FILES` is not worth its
start-up (~0.4 s of listings, processes, task and manifest round trips, while this
machine copies ~200 files/s), so small work gets fewer batches, down to one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from crypto_lakehouse.archive import Partition
from crypto_lakehouse.catalog import ListedFile
from crypto_lakehouse.runtime import usable_cpus


@dataclass(frozen=True)
class Batch:
    """Files of whole partitions, transferred together by one task."""

    partitions: tuple[Partition, ...]
    files: tuple[ListedFile, ...]
    part: int = 1  # 1-based, when one partition is split
    parts: int = 1

    @property
    def label(self) -> str:
        """`spot/daily/klines/1h/2026-05-08`, `... (2/3)` or `first .. last (+n)`: the task name."""
        first, last = self.partitions[0], self.partitions[-1]
        label = first.label
        if last != first:
            label += f" .. {last.label} ({len(self.partitions)} partitions)"
        return label + (f" ({self.part}/{self.parts})" if self.parts > 1 else "")

    @property
    def size(self) -> int:
        return sum(item.file.size or 0 for item in self.files)


MIN_BATCH_FILES = 200


def in_flight(parallel: int, cores: int | None = None) -> int:
    """Batches to run at once: `parallel`, at most one per CPU this process may use (the
    container's CPU quota, not the node's cores)."""
    return max(1, min(parallel, cores or usable_cpus()))


def size_batches(items: Sequence[ListedFile], max_files: int, parallel: int) -> list[Batch]:
    """One batch per slot in flight (`parallel`), fewer when each would hold fewer than
    `MIN_BATCH_FILES` files; never more than `max_files` files in one batch."""
    wanted = max(1, min(parallel, len(items) // MIN_BATCH_FILES))
    return make_batches(items, max_files, target=-(-len(items) // wanted))


def make_batches(
    items: Sequence[ListedFile], max_files: int, target: int | None = None
) -> list[Batch]:
    """Whole partitions packed in order up to `max_files` files; bigger ones split in parts.

    With `target`, a batch is closed as soon as it holds `target` files or more (a soft
    size: whole partitions may take it past `target`, never past `max_files`).
    """
    if max_files < 1:
        raise ValueError("max_files must be at least 1")
    target = min(target or max_files, max_files)
    grouped: dict[Partition, list[ListedFile]] = defaultdict(list)
    for item in items:
        grouped[item.file.partition].append(item)
    batches: list[Batch] = []
    open_parts: list[Partition] = []
    open_files: list[ListedFile] = []

    def close() -> None:
        if open_files:
            batches.append(Batch(tuple(open_parts), tuple(open_files)))
        open_parts.clear()
        open_files.clear()

    for partition in sorted(grouped):
        files = sorted(grouped[partition], key=lambda item: item.path)
        if open_parts and len(open_files) + len(files) > max_files:
            close()
        if len(files) > max_files:
            parts = -(-len(files) // max_files)
            for index in range(parts):
                chunk = tuple(files[index * max_files : (index + 1) * max_files])
                batches.append(Batch((partition,), chunk, index + 1, parts))
            continue
        open_parts.append(partition)
        open_files.extend(files)
        if len(open_files) >= target:
            close()
    close()
    return batches
