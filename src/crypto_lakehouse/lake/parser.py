"""CSV bytes of one archive file -> typed Arrow batches, judged by the file's own first lines.

Binance changed header rows and epoch units over the years, so each file is sniffed: its
first line says whether it has a header (which must then name the schema's columns), its
first data row gives the column count and each epoch column's unit (13 digits ms, 16 us).
A first data row that does not fit, or a sample that mostly fails the column types, is
schema drift (`SchemaDrift`): the file is flagged and skipped, never guessed at.

Parsing has two modes, both vectorised (never a Python loop over rows):

- `fast`: pyarrow's streaming CSV reader with the schema's types. It stops with
  `NeedsLineMode` at the first sign of a bad row (wrong field count, a value that does not
  convert, an empty key, an epoch in the other unit), because it cannot say which line.
- `lines`: every line read as one string, split and checked column by column with Arrow
  kernels, so each bad row becomes a `Reject` with its exact line number and text.

Every time column leaves as `timestamp[us, UTC]` (dates as `date32`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from crypto_lakehouse.archive.schemas import (
    Column,
    CsvSchema,
    TimeKind,
    detect_time_unit,
    looks_like_header,
)
from crypto_lakehouse.errors import ArchiveError, LakehouseError, SchemaDrift

UTC_US = pa.timestamp("us", tz="UTC")
BLOCK_SIZE = 8 << 20
SNIFF_BYTES = 256 << 10
SAMPLE_ROWS = 1000
_LINE_DELIMITER = "\x1f"  # a byte that never occurs in the archive's CSVs
_UNIT_RANGE = {"ms": (10**11, 10**14), "us": (10**14, 10**17)}  # years 1973-5138 either way

_PATTERNS = {
    pa.int64(): r"^-?\d+$",
    pa.float64(): r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$",
    pa.bool_(): r"^(?i:true|false|0|1)$",
}
_TIME_PATTERNS = {
    TimeKind.TEXT: r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$",
    TimeKind.DATE: r"^\d{4}-\d{2}-\d{2}$",
}


class NeedsLineMode(LakehouseError):
    """The fast reader met a row it cannot place; reread the file line by line."""


@dataclass(frozen=True)
class Layout:
    """What sniffing found: a header row or not, and each epoch column's unit."""

    header: bool
    units: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Reject:
    """One line that did not parse: 1-based line number in the CSV, its text, and why."""

    line: int
    text: str
    reason: str


# -- sniffing ------------------------------------------------------------------------------------


def sniff(head: bytes, schema: CsvSchema, *, at_eof: bool, check_types: bool = True) -> Layout:
    """Judge a file by its first bytes; raise SchemaDrift when they do not fit `schema`.

    With `check_types=False` the sample's column types are not checked (about 4 ms a file,
    most of a small file's cost): a builder that parses with the schema's types learns the
    same when the parse fails, and then calls `check_sample`.
    """
    texts = _head_lines(head, at_eof=at_eof)
    if not texts:
        return Layout(header=False)
    header = looks_like_header(texts[0])
    if header:
        found = [name.strip().strip('"').lstrip("\ufeff") for name in texts[0].split(",")]
        if found != schema.names:
            raise SchemaDrift(
                f"header {','.join(found)!r} differs from the {schema.market} "
                f"{schema.data_type} schema {','.join(schema.names)!r}"
            )
    data = texts[1:] if header else texts
    if not data:
        return Layout(header=header)
    fields = data[0].split(",")
    if len(fields) != len(schema.columns):
        raise SchemaDrift(
            f"{len(fields)} columns in the first data row; the {schema.market} "
            f"{schema.data_type} schema has {len(schema.columns)}"
        )
    units: dict[str, str] = {}
    for name in schema.epoch_columns:
        value = fields[schema.names.index(name)].strip()
        try:
            units[name] = detect_time_unit(value)
        except (ArchiveError, ValueError) as exc:
            raise SchemaDrift(f"column {name}: {value!r} is not an epoch") from exc
    layout = Layout(header=header, units=units)
    if check_types:
        _check_sample(data, schema, layout)
    return layout


def check_sample(head: bytes, schema: CsvSchema, layout: Layout, *, at_eof: bool) -> None:
    """Raise SchemaDrift when most of the first rows do not fit the column types."""
    texts = _head_lines(head, at_eof=at_eof)
    _check_sample(texts[1:] if layout.header else texts, schema, layout)


def _head_lines(head: bytes, *, at_eof: bool) -> list[str]:
    lines = head.split(b"\n")
    if not at_eof:
        lines = lines[:-1]  # the last piece may be a cut line
    texts = [ln.rstrip(b"\r").decode("utf-8", errors="replace") for ln in lines]
    while texts and not texts[-1]:
        texts.pop()
    return texts


def _check_sample(data: list[str], schema: CsvSchema, layout: Layout) -> None:
    sample = data[:SAMPLE_ROWS]
    if not sample:
        return
    strings = pa.array(sample, pa.string())
    _, bad, _ = _check_lines(strings, schema, layout)
    if len(bad) * 2 > len(sample):
        raise SchemaDrift(
            f"{len(bad)} of the first {len(sample)} rows do not fit the {schema.market} "
            f"{schema.data_type} column types (first: {_first_reason(bad)})"
        )


def _first_reason(bad: pa.Table) -> str:
    return str(bad.column("reason")[0].as_py()) if len(bad) else ""


# -- normalising ----------------------------------------------------------------------------------


def normalise(batch: pa.RecordBatch | pa.Table, schema: CsvSchema, layout: Layout) -> pa.Table:
    """Time columns to `timestamp[us, UTC]` (epochs scaled per file unit), dates to date32."""
    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    for name, kind in schema.time_columns.items():
        index = table.schema.get_field_index(name)
        column = table.column(index)
        if kind is TimeKind.EPOCH:
            scaled = pc.multiply(column, 1000) if layout.units.get(name, "ms") == "ms" else column
            converted = scaled.cast(UTC_US)
        elif kind is TimeKind.TEXT:
            converted = pc.strptime(column, format="%Y-%m-%d %H:%M:%S", unit="us").cast(UTC_US)
        else:
            converted = pc.strptime(column, format="%Y-%m-%d", unit="s").cast(pa.date32())
        table = table.set_column(index, pa.field(name, converted.type), converted)
    return table


# -- fast mode -----------------------------------------------------------------------------------


def fast_batches(stream: BinaryIO, schema: CsvSchema, layout: Layout) -> Iterator[pa.Table]:
    """Typed, normalised batches; raises NeedsLineMode at the first row it cannot place."""
    bad_rows: list[str] = []

    def invalid(row: pacsv.InvalidRow) -> str:
        bad_rows.append(row.text)
        return "error"

    required = set(schema.key) | set(schema.time_columns)
    try:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(
                column_names=schema.names, skip_rows=int(layout.header), block_size=BLOCK_SIZE
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=invalid, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types=schema.arrow_schema(), strings_can_be_null=False
            ),
        )
        for batch in reader:
            if any(batch.column(name).null_count for name in required):
                raise NeedsLineMode("an empty key or time value")
            for name, unit in layout.units.items():
                low, high = _UNIT_RANGE[unit]
                bounds = pc.min_max(batch.column(name))
                if bounds["min"].as_py() < low or bounds["max"].as_py() >= high:
                    raise NeedsLineMode(f"column {name} leaves the file's {unit} range")
            yield normalise(batch, schema, layout)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise NeedsLineMode(str(exc).splitlines()[0]) from exc


# -- line mode ------------------------------------------------------------------------------------


def line_batches(
    stream: BinaryIO, schema: CsvSchema, layout: Layout
) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(typed good rows, rejects) per block; rejects have columns line, text, reason."""
    reader = pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(
            column_names=["line"], skip_rows=int(layout.header), block_size=BLOCK_SIZE
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=_LINE_DELIMITER, quote_char=False, ignore_empty_lines=False
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={"line": pa.string()},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    first_line = 1 + int(layout.header)
    try:
        for batch in reader:
            good, bad, _ = _check_lines(batch.column(0), schema, layout, first_line=first_line)
            first_line += batch.num_rows
            yield normalise(good, schema, layout), bad
    except pa.ArrowInvalid as exc:
        raise ArchiveError(f"unreadable CSV: {str(exc).splitlines()[0]}") from exc


def _check_lines(
    lines: pa.Array, schema: CsvSchema, layout: Layout, *, first_line: int = 1
) -> tuple[pa.Table, pa.Table, pa.Array]:
    """Split lines into typed rows and rejects, one Arrow kernel per column, no row loop."""
    width = len(schema.columns)
    lines = pc.utf8_rtrim(lines, characters="\r")
    fields = pc.add(pc.count_substring(lines, ","), 1)
    reason = pc.if_else(
        pc.not_equal(fields, width),
        pc.binary_join_element_wise(
            fields.cast(pa.string()), pa.scalar(f" columns, expected {width}"), ""
        ),
        pa.scalar(None, pa.string()),
    )
    fits = pc.equal(fields, width)
    split = pc.split_pattern(pc.if_else(fits, lines, pa.scalar(",".join([""] * width))), ",")
    flat = pc.list_flatten(split)
    rows = len(lines)
    columns: list[pa.Array] = []
    required = set(schema.key) | set(schema.time_columns)
    for position, column in enumerate(schema.columns):
        picks = arange(rows, start=position, step=width)
        values = pc.utf8_trim_whitespace(pc.take(flat, picks))
        empty = pc.equal(values, "")
        pattern = _TIME_PATTERNS.get(column.time) or _PATTERNS.get(column.type)
        ok = pc.match_substring_regex(values, pattern) if pattern else pa.array([True] * rows)
        allowed_empty = pa.scalar(column.name not in required)
        ok = pc.or_kleene(ok, pc.and_kleene(empty, allowed_empty))
        if column.name in layout.units:
            low, high = _UNIT_RANGE[layout.units[column.name]]
            number = pc.if_else(ok, values, "0").cast(pa.int64())
            in_range = pc.and_(pc.greater_equal(number, low), pc.less(number, high))
            ok = pc.and_(ok, pc.or_(in_range, empty))
        message = f"column {column.name}: not {_describe(column)}"
        reason = pc.if_else(pc.and_(fits, pc.invert(ok)), pc.coalesce(reason, message), reason)
        columns.append(values)
    bad_mask = pc.is_valid(reason)
    good_mask = pc.invert(bad_mask)
    typed = [
        _convert(pc.filter(values, good_mask), column)
        for values, column in zip(columns, schema.columns, strict=True)
    ]
    good = pa.table(typed, names=schema.names)
    numbers = arange(rows, start=first_line)
    bad = pa.table(
        {
            "line": pc.filter(numbers, bad_mask),
            "text": pc.filter(lines, bad_mask),
            "reason": pc.filter(reason, bad_mask),
        }
    )
    return good, bad, bad_mask


def arange(count: int, *, start: int = 0, step: int = 1) -> pa.Array:
    """`start, start + step, ...` (`count` values) as int64, built by Arrow kernels (no numpy)."""
    if count == 0:
        return pa.array([], pa.int64())
    ones = pa.repeat(pa.scalar(1, pa.int64()), count)
    return pc.add(pc.multiply(pc.subtract(pc.cumulative_sum(ones), 1), step), start)


def _convert(values: pa.Array, column: Column) -> pa.Array:
    """Checked strings to the column's type; empty strings (allowed only off-key) become null."""
    if column.type == pa.string():
        return values
    empty = pc.equal(values, "")
    if column.type == pa.bool_():
        truth = pc.is_in(pc.utf8_lower(values), value_set=pa.array(["true", "1"]))
        return pc.if_else(empty, pa.scalar(None, pa.bool_()), truth)
    typed = pc.if_else(empty, "0", values).cast(column.type)
    return pc.if_else(empty, pa.scalar(None, column.type), typed)


_TYPE_WORDS = {pa.int64(): "an integer", pa.float64(): "a number", pa.bool_(): "a boolean"}


def _describe(column: Column) -> str:
    if column.time is TimeKind.EPOCH:
        return "an epoch in the file's unit"
    if column.time is TimeKind.TEXT:
        return "a YYYY-MM-DD HH:MM:SS time"
    if column.time is TimeKind.DATE:
        return "a YYYY-MM-DD date"
    return _TYPE_WORDS.get(column.type, str(column.type))
