"""The per-file reader on the real archive files: zip stream, hash, header and unit, types."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest

from crypto_lakehouse.archive.schemas import all_schemas, schema_for
from crypto_lakehouse.errors import ChecksumMismatch, SchemaDrift, ZipFormatError
from crypto_lakehouse.lake.parser import (
    UTC_US,
    NeedsLineMode,
    fast_batches,
    line_batches,
    sniff,
)
from crypto_lakehouse.lake.zipstream import ZipMemberStream

SPOT_KLINES = "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2026-05-08.zip"
FUNDING = "data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2026-04.zip"


def _published_sha(path: Path) -> str:
    return path.with_name(path.name + ".CHECKSUM").read_text().split()[0]


@pytest.mark.parametrize("relative", [SPOT_KLINES, FUNDING])
def test_zip_stream_inflates_and_hashes_like_zipfile(binance_fixtures: Path, relative: str) -> None:
    path = binance_fixtures / relative
    with path.open("rb") as raw:
        stream = ZipMemberStream(raw, chunk=97)  # tiny chunks cross every header boundary
        data = stream.read()
        digest = stream.finish()
    assert digest == _published_sha(path)
    with zipfile.ZipFile(path) as archive:
        assert data == archive.read(stream.member_name)


def test_zip_stream_rejects_damage_and_non_zips(binance_fixtures: Path) -> None:
    raw = bytearray((binance_fixtures / SPOT_KLINES).read_bytes())
    with pytest.raises(ZipFormatError):
        ZipMemberStream(io.BytesIO(b"open_time,open\n1,2\n"))
    # Flip a byte inside the deflated data: zlib or the CRC-32 check must notice.
    raw[200] ^= 0xFF
    stream = ZipMemberStream(io.BytesIO(bytes(raw)))
    with pytest.raises((ChecksumMismatch, ZipFormatError)):
        stream.read()
        stream.finish()


def test_zip_stream_refuses_two_members() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.csv", "1,2\n")
        archive.writestr("b.csv", "3,4\n")
    stream = ZipMemberStream(io.BytesIO(buffer.getvalue()))
    stream.read()
    with pytest.raises(ZipFormatError, match="2 members"):
        stream.finish()


def _csv(binance_fixtures: Path, relative: str) -> bytes:
    with zipfile.ZipFile(binance_fixtures / relative) as archive:
        return archive.read(archive.namelist()[0])


def test_spot_klines_without_header_in_microseconds(binance_fixtures: Path) -> None:
    data = _csv(binance_fixtures, SPOT_KLINES)
    schema = schema_for("spot", "klines")
    layout = sniff(data[:4096], schema, at_eof=len(data) <= 4096)
    assert not layout.header
    assert layout.units == {"open_time": "us", "close_time": "us"}
    table = pa.concat_tables(fast_batches(io.BytesIO(data), schema, layout))
    assert table.num_rows == data.count(b"\n")
    assert table.schema.field("open_time").type == UTC_US
    first = data.split(b"\n")[0].split(b",")
    assert table.column("open_time")[0].value == int(first[0])  # microseconds kept as they are
    assert table.column("close_time")[0].value == int(first[6])
    assert table.column("open")[0].as_py() == float(first[1])


def test_futures_funding_with_header_in_milliseconds(binance_fixtures: Path) -> None:
    data = _csv(binance_fixtures, FUNDING)
    schema = schema_for("futures/um", "fundingRate")
    layout = sniff(data, schema, at_eof=True)
    assert layout.header
    assert layout.units == {"calc_time": "ms"}
    table = pa.concat_tables(fast_batches(io.BytesIO(data), schema, layout))
    lines = data.decode().splitlines()
    assert table.num_rows == len(lines) - 1
    assert table.column("calc_time")[0].value == int(lines[1].split(",")[0]) * 1000


def test_line_mode_agrees_with_fast_mode_on_clean_files(binance_fixtures: Path) -> None:
    for relative, market, data_type in [
        (SPOT_KLINES, "spot", "klines"),
        (FUNDING, "futures/um", "fundingRate"),
    ]:
        data = _csv(binance_fixtures, relative)
        schema = schema_for(market, data_type)
        layout = sniff(data, schema, at_eof=True)
        fast = pa.concat_tables(fast_batches(io.BytesIO(data), schema, layout))
        parts = list(line_batches(io.BytesIO(data), schema, layout))
        good = pa.concat_tables([g for g, _ in parts])
        assert sum(len(b) for _, b in parts) == 0
        assert good.equals(fast)


def test_bad_rows_become_rejects_with_exact_lines(binance_fixtures: Path) -> None:
    lines = _csv(binance_fixtures, FUNDING).decode().splitlines()
    schema = schema_for("futures/um", "fundingRate")
    broken = list(lines)
    broken[3] = "1775030400000,8"  # a short row: line 4
    broken[5] = "1775059200000,8,abc"  # not a number: line 6
    broken[7] = ""  # an empty line: line 8
    broken[9] = "1775059200000000,8,0.0001"  # a microsecond epoch in a ms file: line 10
    data = ("\n".join(broken) + "\n").encode()
    layout = sniff(data, schema, at_eof=True)
    with pytest.raises(NeedsLineMode):
        list(fast_batches(io.BytesIO(data), schema, layout))
    parts = list(line_batches(io.BytesIO(data), schema, layout))
    rejects = pa.concat_tables([b for _, b in parts]).to_pylist()
    good = sum(g.num_rows for g, _ in parts)
    assert [r["line"] for r in rejects] == [4, 6, 8, 10]
    assert rejects[0]["text"] == broken[3]
    assert "2 columns" in rejects[0]["reason"]
    assert "last_funding_rate" in rejects[1]["reason"]
    assert "calc_time" in rejects[3]["reason"]
    assert good == len(lines) - 1 - 4


def test_drift_wrong_column_count_or_header_or_types() -> None:
    schema = schema_for("futures/um", "fundingRate")
    with pytest.raises(SchemaDrift, match="4 columns"):
        sniff(b"1775001600000,8,-0.0001,extra\n", schema, at_eof=True)
    with pytest.raises(SchemaDrift, match="header"):
        sniff(b"calc_time,interval,rate\n1775001600000,8,-0.0001\n", schema, at_eof=True)
    with pytest.raises(SchemaDrift, match="column types"):
        sniff(b"1775001600000,eight,-0.0001\n" * 10, schema, at_eof=True)
    with pytest.raises(SchemaDrift, match="epoch"):
        sniff(b"2026-04-01,8,-0.0001\n", schema, at_eof=True)


def _row_for(schema) -> str:
    values = {
        "epoch": "1700000000000",
        "text": "2023-11-14 22:13:20",
        "date": "2023-11-14",
    }
    cells = []
    for column in schema.columns:
        if column.time is not None:
            cells.append(values[column.time.value])
        elif column.type == pa.bool_():
            cells.append("True")
        elif column.type == pa.int64():
            cells.append("7")
        elif column.type == pa.float64():
            cells.append("1.5")
        else:
            cells.append("X")
    return ",".join(cells)


@pytest.mark.parametrize("schema", all_schemas(), ids=lambda s: f"{s.market}-{s.data_type}")
def test_every_schema_reads_with_and_without_header(schema) -> None:
    row = _row_for(schema)
    for header in (False, True):
        text = (schema.header_line or ",".join(schema.names)) + "\n" if header else ""
        data = (text + row + "\n" + row + "\n").encode()
        layout = sniff(data, schema, at_eof=True)
        assert layout.header is header
        table = pa.concat_tables(fast_batches(io.BytesIO(data), schema, layout))
        assert table.num_rows == 2
        assert table.column_names == schema.names
        for name in schema.time_columns:
            assert table.schema.field(name).type in (UTC_US, pa.date32())
        parts = list(line_batches(io.BytesIO(data), schema, layout))
        assert pa.concat_tables([g for g, _ in parts]).equals(table)
