"""Read one archive file into an Arrow table, detecting its header row and time unit.

Binance changed both over time (see `schemas`), so every file is judged by its own bytes:
a header row is skipped when the first line is one, and each epoch column's unit is taken
from its values (13 digits ms, 16 digits us). pyarrow's errors become `ArchiveError` here.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from crypto_lakehouse.archive.schemas import (
    CsvSchema,
    TimeKind,
    detect_time_unit,
    looks_like_header,
)
from crypto_lakehouse.errors import ArchiveError

UTC_MICROS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class FileLayout:
    """What one file turned out to be: header row or not, and each epoch column's unit."""

    header: bool
    time_units: dict[str, str]


def unzip_single(data: bytes, name: str = "archive") -> bytes:
    """The one CSV inside an archive zip; ArchiveError if the zip is damaged or not single."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if len(members) != 1:
                raise ArchiveError(f"{name}: expected one CSV in the zip, found {members}")
            return archive.read(members[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise ArchiveError(f"{name}: not a readable zip ({exc})") from exc


def read_csv(
    data: bytes, schema: CsvSchema, *, normalize_times: bool = True, name: str = "csv"
) -> tuple[pa.Table, FileLayout]:
    """Parse CSV bytes with `schema`'s columns and types.

    With `normalize_times`, epoch columns become `timestamp[us, UTC]` (ms or us detected per
    column), 'YYYY-MM-DD HH:MM:SS' columns likewise, and date columns `date32`.
    Raises ArchiveError when the column count or a value does not fit the schema.
    """
    first_line = data.split(b"\n", 1)[0].decode("utf-8", errors="replace")
    header = looks_like_header(first_line)
    if not first_line.strip():
        return schema.arrow_schema().empty_table(), FileLayout(header, {})
    found = len(first_line.split(","))
    if found != len(schema.columns):
        raise ArchiveError(
            f"{name}: {found} columns, but {schema.market} {schema.data_type} has "
            f"{len(schema.columns)} ({', '.join(schema.names)})"
        )
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=schema.names, skip_rows=int(header)),
            convert_options=pacsv.ConvertOptions(
                column_types=schema.arrow_schema(), strings_can_be_null=False
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ArchiveError(f"{name}: does not match the {schema.data_type} schema: {exc}") from exc
    units: dict[str, str] = {}
    if normalize_times:
        table, units = _normalize(table, schema)
    return table, FileLayout(header, units)


def read_zip(
    data: bytes, schema: CsvSchema, *, normalize_times: bool = True, name: str = "archive"
) -> tuple[pa.Table, FileLayout]:
    """`read_csv` on the single CSV inside an archive zip."""
    return read_csv(unzip_single(data, name), schema, normalize_times=normalize_times, name=name)


def _normalize(table: pa.Table, schema: CsvSchema) -> tuple[pa.Table, dict[str, str]]:
    units: dict[str, str] = {}
    for name, kind in schema.time_columns.items():
        index = table.schema.get_field_index(name)
        column = table.column(index)
        if kind is TimeKind.EPOCH:
            unit = _column_unit(column, name)
            units[name] = unit
            scaled = pc.multiply(column, 1000) if unit == "ms" else column
            converted = scaled.cast(pa.int64()).cast(UTC_MICROS)
        elif kind is TimeKind.TEXT:
            converted = pc.assume_timezone(
                pc.strptime(column, format="%Y-%m-%d %H:%M:%S", unit="us"), "UTC"
            )
        else:
            converted = pc.strptime(column, format="%Y-%m-%d", unit="s").cast(pa.date32())
        table = table.set_column(index, pa.field(name, converted.type), converted)
    return table, units


def _column_unit(column: pa.ChunkedArray, name: str) -> str:
    if len(column) == 0 or column.null_count == len(column):
        return "ms"
    low, high = pc.min_max(column).values()
    units = {detect_time_unit(low.as_py()), detect_time_unit(high.as_py())}
    if len(units) != 1:
        raise ArchiveError(f"column {name} mixes millisecond and microsecond epochs")
    return units.pop()
