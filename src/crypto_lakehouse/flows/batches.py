"""Cut the files to transfer into batches: one partition each, at most `max_files` files.

A partition (market, frequency, data type, interval, day or month) holds one file per
symbol; it is the unit one transfer task moves with one engine run. Large partitions
are split so a task stays bounded in time and staging space.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from crypto_lakehouse.archive import Partition
from crypto_lakehouse.catalog import ListedFile


@dataclass(frozen=True)
class Batch:
    """Files of one partition that one task transfers together."""

    partition: Partition
    part: int  # 1-based, when a partition is split
    parts: int
    files: tuple[ListedFile, ...]

    @property
    def label(self) -> str:
        """E.g. `spot/daily/klines/1h/2026-05-08` or `...-08 (2/3)`: the task run's name."""
        suffix = f" ({self.part}/{self.parts})" if self.parts > 1 else ""
        return self.partition.label + suffix

    @property
    def size(self) -> int:
        return sum(item.file.size or 0 for item in self.files)


def make_batches(items: Sequence[ListedFile], max_files: int) -> list[Batch]:
    """Group by partition (in partition order), split each into chunks of `max_files`."""
    if max_files < 1:
        raise ValueError("max_files must be at least 1")
    grouped: dict[Partition, list[ListedFile]] = defaultdict(list)
    for item in items:
        grouped[item.file.partition].append(item)
    batches = []
    for partition in sorted(grouped):
        files = sorted(grouped[partition], key=lambda item: item.path)
        parts = -(-len(files) // max_files)
        for index in range(parts):
            chunk = tuple(files[index * max_files : (index + 1) * max_files])
            batches.append(Batch(partition, index + 1, parts, chunk))
    return batches
