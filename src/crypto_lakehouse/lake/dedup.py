"""Drop rows whose natural key was already seen, within one file and against other files.

Within a file: the archive's files ascend on their first key column (trade id, open time),
which one comparison per batch proves, so the common case keeps no state at all. A file
that does not ascend is deduplicated by hashing its keys (exact from the first batch that
breaks the order on; memory then grows with the file, which the outcome reports).

Against other files (a daily and a monthly file of the same days): the keys already in the
table for the file's symbol and period, from other source files, are removed with an
anti-join. The first file in keeps its rows; a replaced file gives its rows back first.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from crypto_lakehouse.lake.parser import arange

_INDEX = "__row"


class FileDeduper:
    """Stateful per file: feed batches in order, get them back without repeated keys."""

    def __init__(self, key: list[str], existing: pa.Table | None = None) -> None:
        self.key = key
        self.existing = existing if existing is not None and existing.num_rows else None
        self.last: object | None = None
        self.ordered = True
        self.seen: pa.Table | None = None
        self.dropped = 0

    def __call__(self, batch: pa.Table) -> pa.Table:
        before = batch.num_rows
        if not before:
            return batch
        if self.ordered and self._ascends(batch):
            self.last = batch.column(self.key[0])[-1]
        else:
            self.ordered = False
            batch = self._unique(batch)
            if self.seen is not None:
                batch = batch.join(self.seen, self.key, join_type="left anti")
            keys = batch.select(self.key)
            if self.seen is not None:
                keys = keys.cast(self.seen.schema)
            self.seen = keys if self.seen is None else pa.concat_tables([self.seen, keys])
        if self.existing is not None:
            wanted = batch.select(self.key).schema
            if self.existing.schema != wanted:  # pyiceberg scans give large_string
                self.existing = self.existing.select(self.key).cast(wanted)
            batch = batch.join(self.existing, self.key, join_type="left anti")
        self.dropped += before - batch.num_rows
        return batch

    def _ascends(self, batch: pa.Table) -> bool:
        first = batch.column(self.key[0])
        if self.last is not None and not pc.greater(first[0], self.last).as_py():
            return False
        if len(first) < 2:
            return True
        return bool(pc.all(pc.greater(first.slice(1), first.slice(0, len(first) - 1))).as_py())

    def _unique(self, batch: pa.Table) -> pa.Table:
        numbered = batch.select(self.key).append_column(_INDEX, arange(batch.num_rows))
        firsts = numbered.group_by(self.key, use_threads=False).aggregate([(_INDEX, "min")])
        if firsts.num_rows == batch.num_rows:
            return batch
        firsts = firsts.column(f"{_INDEX}_min")
        return batch.take(pc.take(firsts, pc.sort_indices(firsts)))
