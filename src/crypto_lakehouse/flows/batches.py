"""Cut the files to transfer into batches of whole partitions, at most `max_files` files each.

A partition (market, frequency, data type, interval, day or month) holds one file per
symbol. A batch is one or more whole partitions, in partition order, that one transfer
task moves with one engine run: packing small partitions saves an engine start (two
probes, two listings, two s5cmd processes) per partition, which dominates when
partitions hold a handful of files (measured: 7 batches of ~70 files took twice as long
as 4 of ~120). A partition larger than `max_files` is split into parts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from crypto_lakehouse.archive import Partition
from crypto_lakehouse.catalog import ListedFile


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


def make_batches(items: Sequence[ListedFile], max_files: int) -> list[Batch]:
    """Whole partitions packed in order up to `max_files` files; bigger ones split in parts."""
    if max_files < 1:
        raise ValueError("max_files must be at least 1")
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
    close()
    return batches
