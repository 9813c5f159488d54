"""One bronze zip -> typed, decorated, deduplicated Arrow rows (or the reason it cannot be).

Two paths, one result:

- `read_whole`: the zip's bytes are already in memory (small files, the archive's common
  case: a daily 1h klines zip is about 1.5 KB). The SHA-256 is checked before anything is
  parsed, so a corrupt file never yields a row.
- `read_streaming`: large files are inflated while they stream from S3 and parsed in
  blocks; rows go to `sink` as they come, and the SHA-256 is known only at the end, so the
  caller gives such a file data files of its own and discards them if the bytes were bad.

Both sniff the head without the (costly) sample type check; when the typed parse fails,
the sample decides between schema drift and a reread in line mode with rejects.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import pyarrow as pa

from crypto_lakehouse.archive.paths import ArchiveFile
from crypto_lakehouse.errors import ChecksumMismatch
from crypto_lakehouse.lake.dedup import FileDeduper
from crypto_lakehouse.lake.feed import CsvFeed
from crypto_lakehouse.lake.parser import (
    SNIFF_BYTES,
    Layout,
    NeedsLineMode,
    check_sample,
    fast_batches,
    line_batches,
    sniff,
)
from crypto_lakehouse.lake.tables import SilverTable
from crypto_lakehouse.lake.zipstream import ZipMemberStream


class Sink(Protocol):
    """Where rows go as they are parsed; `reset` forgets everything added so far."""

    def add(self, rows: pa.Table) -> None: ...

    def reset(self) -> None: ...


class _Collected:
    def __init__(self) -> None:
        self.tables: list[pa.Table] = []

    def add(self, rows: pa.Table) -> None:
        if rows.num_rows:
            self.tables.append(rows)

    def reset(self) -> None:
        self.tables = []


@dataclass
class FileRows:
    """What reading one file gave: its rows (unless streamed to a sink) and counts."""

    rows: pa.Table | None
    count: int
    duplicates: int
    rejects: pa.Table | None  # columns line, text, reason
    layout: Layout
    mode: str  # fast | lines


def read_whole(
    data: bytes, sha256: str, archive: ArchiveFile, table: SilverTable, source_file: str
) -> FileRows:
    """Parse a zip held in memory; ChecksumMismatch/ZipFormatError/SchemaDrift when bad."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ChecksumMismatch(
            f"{source_file}: bronze bytes hash to {digest[:12]}..., "
            f"the manifest says {sha256[:12]}..."
        )
    stream = ZipMemberStream(io.BytesIO(data))
    csv = stream.read()
    stream.finish()  # the member's CRC-32 against the zip's directory
    parts = _Collected()
    result = _parse(
        lambda: io.BytesIO(csv), csv[:SNIFF_BYTES], len(csv) <= SNIFF_BYTES,
        archive, table, source_file, parts,
    )  # fmt: skip
    result.rows = _concat(parts.tables, table)
    return result


def read_streaming(
    open_stream: Callable[[], ZipMemberStream],
    sha256: str,
    archive: ArchiveFile,
    table: SilverTable,
    source_file: str,
    sink: Sink,
) -> FileRows:
    """Parse a zip while it streams; rows go to `sink` (reset when the fast parse gives up
    and the file is reread in line mode); the SHA-256 is checked at the end."""
    streams: list[ZipMemberStream] = []

    def opened() -> BinaryIO:
        stream = open_stream()
        streams.append(stream)
        return stream  # type: ignore[return-value]

    first = opened()
    head = _read_up_to(first, SNIFF_BYTES)
    state = {"first": True}

    def feed() -> BinaryIO:
        if state.pop("first", False):
            return CsvFeed(head, first)  # type: ignore[return-value]
        stream = opened()
        return CsvFeed(_read_up_to(stream, SNIFF_BYTES), stream)  # type: ignore[return-value]

    result = _parse(feed, head, len(head) < SNIFF_BYTES, archive, table, source_file, sink)
    digest = streams[-1].finish()
    if digest != sha256:
        raise ChecksumMismatch(
            f"{source_file}: bronze bytes hash to {digest[:12]}..., "
            f"the manifest says {sha256[:12]}..."
        )
    return result


def _parse(
    open_csv: Callable[[], BinaryIO],
    head: bytes,
    at_eof: bool,
    archive: ArchiveFile,
    table: SilverTable,
    source_file: str,
    sink: Sink,
) -> FileRows:
    """Fast mode first; at its first unplaceable row, the sample decides drift or lines."""
    layout = sniff(head, table.csv, at_eof=at_eof, check_types=False)
    dedup = FileDeduper(table.file_key)
    try:
        count = 0
        for good in _paced(open_csv(), fast_batches, table, layout):
            rows = _decorate(good, dedup, table, archive, source_file)
            sink.add(rows)
            count += rows.num_rows
        return FileRows(None, count, dedup.dropped, None, layout, "fast")
    except NeedsLineMode:
        sink.reset()
    check_sample(head, table.csv, layout, at_eof=at_eof)  # SchemaDrift when mostly bad
    dedup = FileDeduper(table.file_key)
    count, rejects = 0, []
    for good, bad in _paced(open_csv(), line_batches, table, layout):
        rows = _decorate(good, dedup, table, archive, source_file)
        sink.add(rows)
        count += rows.num_rows
        if bad.num_rows:
            rejects.append(bad)
    bad_rows = pa.concat_tables(rejects) if rejects else None
    return FileRows(None, count, dedup.dropped, bad_rows, layout, "lines")


def _paced(stream: BinaryIO, batches: Callable, table: SilverTable, layout: Layout) -> Iterator:
    if isinstance(stream, CsvFeed):
        return stream.paced(batches(stream, table.csv, layout))
    return iter(batches(stream, table.csv, layout))


def _decorate(
    good: pa.Table, dedup: FileDeduper, table: SilverTable, archive: ArchiveFile, source: str
) -> pa.Table:
    if not good.num_rows:
        return table.arrow_schema().empty_table()
    rows = table.decorate(
        good, symbol=archive.symbol, interval=archive.interval, source_file=source
    )
    return dedup(rows)


def _concat(parts: list[pa.Table], table: SilverTable) -> pa.Table:
    if not parts:
        return table.arrow_schema().empty_table()
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts)


def _read_up_to(stream: ZipMemberStream, size: int) -> bytes:
    parts, total = [], 0
    while total < size:
        piece = stream.read(size - total)
        if not piece:
            break
        parts.append(piece)
        total += len(piece)
    return b"".join(parts)
