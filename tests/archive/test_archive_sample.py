"""The generated sample archive: layout, formats, determinism, consistency, planted defects."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from crypto_lakehouse.archive.catalog import PUBLISHED, DataType, Frequency, Market
from crypto_lakehouse.archive.checksum import parse_checksum, sha256_hex
from crypto_lakehouse.archive.paths import ArchiveFile, parse_key
from crypto_lakehouse.archive.reader import read_zip, unzip_single
from crypto_lakehouse.archive.sample import Sample, SampleSpec, build_sample
from crypto_lakehouse.archive.schemas import looks_like_header
from crypto_lakehouse.errors import ConfigError

SPEC = SampleSpec(symbols=1)


@pytest.fixture(scope="module")
def sample() -> Sample:
    return build_sample(SPEC)


def _table(sample: Sample, file: ArchiveFile) -> pa.Table:
    return read_zip(sample.objects[file.key], file.schema, name=file.key)[0]


def _files(sample: Sample) -> list[ArchiveFile]:
    return [parse_key(k) for k in sample.manifest.files]


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    small = SampleSpec(symbols=1, orders_per_day=6)
    first, again = build_sample(small), build_sample(small)
    assert again.objects == first.objects
    assert again.manifest == first.manifest
    other = build_sample(SampleSpec(symbols=1, orders_per_day=6, seed=8))
    assert other.objects.keys() == first.objects.keys()
    key = "data/spot/daily/trades/ETHUSDT/ETHUSDT-trades-2025-01-01.zip"
    assert other.objects[key] != first.objects[key]


def test_every_market_data_type_and_frequency_is_present(sample: Sample) -> None:
    found = {(f.market, f.frequency, f.data_type) for f in _files(sample)}
    expected = {
        (market, frequency, data_type)
        for market, published in PUBLISHED.items()
        for data_type, frequencies in published.items()
        for frequency in frequencies
    }
    assert found == expected
    intervals = {(f.market, f.frequency, f.interval) for f in _files(sample) if f.interval}
    assert (Market.SPOT, Frequency.DAILY, "1s") in intervals
    assert (Market.FUTURES_UM, Frequency.MONTHLY, "1mo") in intervals
    assert (Market.FUTURES_CM, Frequency.MONTHLY, "1w") in intervals
    assert not any(i == "1s" for m, _, i in intervals if m is not Market.SPOT)


def test_default_size_is_a_few_hundred_files() -> None:
    spec = SampleSpec()
    assert (spec.symbols, spec.days) == (2, 3)
    from crypto_lakehouse.archive.sample import plan_files

    assert 200 <= len(plan_files(spec)) <= 600


def test_every_zip_has_a_matching_sidecar_except_the_corrupt_one(sample: Sample) -> None:
    manifest = sample.manifest
    assert manifest.objects == 2 * len(manifest.files) == len(sample.objects)
    for key in manifest.files:
        checksum = parse_checksum(sample.objects[key + ".CHECKSUM"], key.rsplit("/", 1)[1])
        assert checksum.matches(sample.objects[key]) is (key not in manifest.corrupt)
        member = unzip_single(sample.objects[key], key) if key not in manifest.corrupt else None
        if member is not None:
            assert member  # every file has rows


def test_real_files_are_included_byte_for_byte(sample: Sample, binance_fixtures: Path) -> None:
    real = sorted(str(p.relative_to(binance_fixtures)) for p in binance_fixtures.rglob("*.zip"))
    assert sample.manifest.real == real
    for path in binance_fixtures.rglob("*"):
        if path.is_file():
            assert sample.objects[str(path.relative_to(binance_fixtures))] == path.read_bytes()


def test_zip_members_are_named_like_binance(sample: Sample) -> None:
    import io
    import zipfile

    key = "data/futures/um/daily/klines/ETHUSDT/1h/ETHUSDT-1h-2022-08-10.zip"
    with zipfile.ZipFile(io.BytesIO(sample.objects[key])) as archive:
        (info,) = archive.infolist()
    assert info.filename == "ETHUSDT-1h-2022-08-10.csv"
    assert info.compress_type == zipfile.ZIP_DEFLATED
    assert info.external_attr >> 16 == 0o100644


# -- cut-overs ---------------------------------------------------------------------------------


def _first_line(sample: Sample, key: str) -> str:
    return unzip_single(sample.objects[key]).split(b"\n", 1)[0].decode()


def test_futures_headers_appear_at_the_2022_cut_over(sample: Sample) -> None:
    base = "data/futures/um/daily/aggTrades/BNBUSDT/BNBUSDT-aggTrades-{}.zip"
    sample2 = build_sample(SampleSpec(symbols=2, days=3, orders_per_day=4))
    assert not looks_like_header(_first_line(sample2, base.format("2022-08-10")))
    assert looks_like_header(_first_line(sample2, base.format("2022-08-11")))
    monthly = "data/futures/cm/monthly/trades/BTCUSD_PERP/BTCUSD_PERP-trades-{}.zip"
    assert not looks_like_header(_first_line(sample, monthly.format("2022-08")))
    assert (
        _first_line(sample, monthly.format("2022-09"))
        == "id,price,qty,base_qty,time,is_buyer_maker"
    )
    metrics = "data/futures/um/daily/metrics/ETHUSDT/ETHUSDT-metrics-2022-08-10.zip"
    assert looks_like_header(_first_line(sample, metrics))  # metrics always had one
    for key in sample.manifest.files:
        if key.startswith("data/spot/"):
            assert not looks_like_header(_first_line(sample, key)), key


def test_spot_switches_to_microseconds_on_2025_01_01(sample: Sample) -> None:
    spot = Market.SPOT
    for day, unit in [(date(2024, 12, 31), "ms"), (date(2025, 1, 1), "us")]:
        for data_type, interval in [("trades", None), ("aggTrades", None), ("klines", "1s")]:
            file = ArchiveFile(spot, "daily", data_type, "ETHUSDT", day, interval)
            layout = read_zip(sample.objects[file.key], file.schema)[1]
            assert set(layout.time_units.values()) == {unit}, file.key
    for month, unit in [(date(2024, 12, 1), "ms"), (date(2025, 1, 1), "us")]:
        file = ArchiveFile(spot, "monthly", "klines", "ETHUSDT", month, "1h")
        assert set(read_zip(sample.objects[file.key], file.schema)[1].time_units.values()) == {unit}
    futures = ArchiveFile("futures/um", "daily", "trades", "ETHUSDT", date(2022, 8, 12))
    assert read_zip(sample.objects[futures.key], futures.schema)[1].time_units == {"time": "ms"}


def test_every_file_reads_with_its_schema(sample: Sample) -> None:
    for file in _files(sample):
        if file.key in sample.manifest.corrupt:
            continue
        table, _ = read_zip(sample.objects[file.key], file.schema, name=file.key)
        assert table.num_rows > 0, file.key
        assert table.column_names == file.schema.names


# -- internal consistency ----------------------------------------------------------------------


def _bars_from_trades(trades: pa.Table, seconds: int) -> dict[datetime, tuple]:
    groups: dict[datetime, list] = defaultdict(list)
    for row in trades.to_pylist():
        moment = row["time"]
        start = datetime.fromtimestamp(moment.timestamp() // seconds * seconds, tz=UTC)
        groups[start].append(row)
    return {
        start: (
            rows[0]["price"],
            max(r["price"] for r in rows),
            min(r["price"] for r in rows),
            rows[-1]["price"],
            sum(r["qty"] for r in rows),
            len(rows),
        )
        for start, rows in groups.items()
    }


def _bars(table: pa.Table) -> dict[datetime, tuple]:
    return {
        r["open_time"]: (r["open"], r["high"], r["low"], r["close"], r["volume"], r["count"])
        for r in table.to_pylist()
    }


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        all(
            math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-9) for x, y in zip(a[k], b[k], strict=True)
        )
        for k in a
    )


@pytest.mark.parametrize(
    ("market", "symbol", "day"),
    [
        (Market.SPOT, "ETHUSDT", date(2025, 1, 1)),
        (Market.FUTURES_UM, "ETHUSDT", date(2022, 8, 10)),
        (Market.FUTURES_CM, "BTCUSD_PERP", date(2022, 8, 11)),
    ],
)
def test_klines_of_every_interval_agree_with_the_trades(
    sample: Sample, market: Market, symbol: str, day: date
) -> None:
    trades = _table(sample, ArchiveFile(market, "daily", "trades", symbol, day))
    assert trades.num_rows > 0
    for interval, seconds in [("1m", 60), ("1h", 3600), ("1d", 86400)]:
        klines = _table(sample, ArchiveFile(market, "daily", "klines", symbol, day, interval))
        assert _same(_bars(klines), _bars_from_trades(trades, seconds)), interval
    aggs = _table(sample, ArchiveFile(market, "daily", "aggTrades", symbol, day))
    assert math.isclose(
        pa.compute.sum(aggs["quantity"]).as_py(), pa.compute.sum(trades["qty"]).as_py()
    )
    ids = trades["id"].to_pylist()
    assert (
        aggs["first_trade_id"][0].as_py() == ids[0] and aggs["last_trade_id"][-1].as_py() == ids[-1]
    )


def test_monthly_klines_agree_with_daily_ones(sample: Sample) -> None:
    daily = _bars(
        _table(sample, ArchiveFile("spot", "daily", "klines", "ETHUSDT", date(2024, 12, 31), "1d"))
    )
    monthly = _bars(
        _table(sample, ArchiveFile("spot", "monthly", "klines", "ETHUSDT", date(2024, 12, 1), "1d"))
    )
    assert len(monthly) == 31
    (day,) = daily
    assert _same({day: monthly[day]}, daily)
    # The month's single 1mo kline summarises its 1d klines.
    month = _bars(
        _table(
            sample,
            ArchiveFile("futures/um", "monthly", "klines", "ETHUSDT", date(2022, 8, 1), "1mo"),
        )
    )
    days = list(
        _bars(
            _table(
                sample,
                ArchiveFile("futures/um", "monthly", "klines", "ETHUSDT", date(2022, 8, 1), "1d"),
            )
        ).values()
    )
    (summary,) = month.values()
    expected = (
        days[0][0],
        max(d[1] for d in days),
        min(d[2] for d in days),
        days[-1][3],
        sum(d[4] for d in days),
        sum(d[5] for d in days),
    )
    assert all(math.isclose(x, y) for x, y in zip(summary, expected, strict=True))


def test_mark_price_klines_follow_the_trades(sample: Sample) -> None:
    day = date(2022, 8, 12)
    trades = _bars(
        _table(sample, ArchiveFile("futures/um", "daily", "klines", "ETHUSDT", day, "1h"))
    )
    marks = _bars(
        _table(sample, ArchiveFile("futures/um", "daily", "markPriceKlines", "ETHUSDT", day, "1h"))
    )
    assert marks.keys() == trades.keys()
    assert all(abs(marks[k][3] - trades[k][3]) < 0.1 for k in marks)


# -- planted defects ---------------------------------------------------------------------------


def test_a_missing_day(sample: Sample) -> None:
    missing = sample.manifest.missing
    assert missing and all("futures/um/daily/" in k and "2022-08-11" in k for k in missing)
    assert {parse_key(k).data_type for k in missing} == set(PUBLISHED[Market.FUTURES_UM]) - {
        DataType.FUNDING_RATE
    }
    for key in missing:
        assert key not in sample.objects and key + ".CHECKSUM" not in sample.objects
        assert key.replace("2022-08-11", "2022-08-10") in sample.objects
        assert key.replace("2022-08-11", "2022-08-12") in sample.objects


def test_a_corrupt_file(sample: Sample) -> None:
    (key,) = sample.manifest.corrupt
    checksum = parse_checksum(sample.objects[key + ".CHECKSUM"])
    assert sha256_hex(sample.objects[key]) != checksum.sha256


def test_a_new_revision_replaces_exactly_the_planted_file() -> None:
    sample = build_sample(SampleSpec(symbols=1, orders_per_day=6))
    revised = build_sample(SampleSpec(symbols=1, orders_per_day=6, revision=2))
    changed = sorted(k for k in sample.objects if sample.objects[k] != revised.objects[k])
    (key,) = sample.manifest.replaced
    assert changed == [key, key + ".CHECKSUM"]
    assert revised.manifest.replaced == [key] and revised.manifest.revision == 2
    assert parse_checksum(revised.objects[key + ".CHECKSUM"]).matches(revised.objects[key])


def test_delisted_symbols_stop_early(sample: Sample) -> None:
    delisted = {(d.market, d.symbol): d.last_day for d in sample.manifest.delisted}
    assert delisted == {
        ("spot", "XMRUSDT"): date(2024, 12, 31),
        ("futures/um", "BNXUSDTSETTLED"): date(2022, 8, 10),
    }
    for (market, symbol), last_day in delisted.items():
        periods = {f.period for f in _files(sample) if f.symbol == symbol and f.market == market}
        assert periods == {last_day}


def test_spec_rejects_bad_values() -> None:
    for bad in ({"symbols": 0}, {"days": 0}, {"revision": 0}, {"intervals": ("2m",)}):
        with pytest.raises(ConfigError):
            SampleSpec(**bad)


# -- at scale: --files N, --start-day, large files, staged upload ----------------------------


def test_for_files_comes_close_to_the_asked_count_with_a_realistic_mix() -> None:
    from crypto_lakehouse.archive.sample import LARGE_SYMBOL, plan_files

    for asked in (1_000, 5_000, 50_000):
        spec = SampleSpec.for_files(asked)
        assert abs(spec.file_count() - asked) <= 0.05 * asked, (asked, spec)
        assert spec.large_files == max(1, round(asked / 5000)) and not spec.defects
    plan = plan_files(SampleSpec.for_files(5_000))
    klines = [f for f in plan if f.data_type.has_interval and f.frequency is Frequency.DAILY]
    large = [f for f in plan if f.symbol == LARGE_SYMBOL and f.market is Market.SPOT]
    assert len(klines) > 0.8 * len(plan)  # mostly small daily kline files
    assert [f.data_type for f in large] == [DataType.TRADES]  # one large trades day


def test_a_start_day_window_has_every_interval_and_the_whole_months_it_holds() -> None:
    spec = SampleSpec(symbols=1, start=date(2024, 1, 20), days=45, defects=False,
                      intervals=("1m", "1mo"))  # fmt: skip
    assert spec.window(Market.SPOT)[0] == date(2024, 1, 20)
    assert spec.window(Market.FUTURES_UM)[-1] == date(2024, 3, 4)
    assert spec.months(Market.SPOT) == (date(2024, 2, 1),)
    assert spec.months(Market.OPTION) == ()
    assert SampleSpec(symbols=1, start=date(2024, 1, 1), days=31).months(Market.SPOT) == (
        date(2024, 1, 1),
    )
    many = SampleSpec(symbols=9, start=date(2024, 1, 1), days=1)
    names = many.symbols_of(Market.SPOT)
    assert len(set(names)) == 9 and names[7:] == ["SIMAUSDT", "SIMBUSDT"]
    assert many.symbols_of(Market.FUTURES_CM)[-1] == "SIMEUSD_PERP"


def test_a_daily_update_is_one_new_day_of_every_symbol_and_data_type() -> None:
    from dataclasses import replace

    from crypto_lakehouse.archive.sample import plan_files

    spec = SampleSpec.for_files(2_000)
    assert spec.start is not None
    day = spec.window(Market.SPOT)[-1] + timedelta(days=1)
    update = plan_files(replace(spec, start=day, days=1, large_files=1))
    assert {f.period for f in update} == {day}
    old_series = {f.series for f in plan_files(spec) if f.frequency is Frequency.DAILY}
    assert {f.series for f in update} == old_series


def test_spec_rejects_bad_scale_values() -> None:
    for bad in (
        {"large_files": 4, "days": 3},
        {"large_rows": 0},
        {"days": 29},  # more than 28 only with a start day
        {"symbols": 201},
    ):
        with pytest.raises(ConfigError):
            SampleSpec(**bad)
    with pytest.raises(ConfigError):
        SampleSpec.for_files(0)
    assert SampleSpec(start=date(2024, 1, 1), days=400).days == 400


def test_large_trades_files_are_binance_shaped_and_exactly_sized() -> None:
    from crypto_lakehouse.archive.sample import LARGE_SYMBOL

    spec = SampleSpec(symbols=1, start=date(2024, 12, 31), days=2, defects=False,
                      intervals=("1d",), large_files=2, large_rows=250_001)  # fmt: skip
    sample = build_sample(spec)
    large = sorted(k for k in sample.manifest.files if f"spot/daily/trades/{LARGE_SYMBOL}/" in k)
    assert [parse_key(k).period for k in large] == [date(2024, 12, 31), date(2025, 1, 1)]
    units = []
    for key in large:
        checksum = parse_checksum(sample.objects[key + ".CHECKSUM"], key.rsplit("/", 1)[1])
        assert checksum.matches(sample.objects[key])
        table, layout = read_zip(sample.objects[key], parse_key(key).schema, name=key)
        assert table.num_rows == 250_001
        assert len(set(table["id"].to_pylist())) == 250_001
        assert table.column("time")[0].as_py().date() == parse_key(key).period
        assert table.column("time")[-1].as_py().date() == parse_key(key).period
        units.append(layout.time_units["time"])
    assert units == ["ms", "us"]  # spot's microsecond cut-over holds for large files too
    first = unzip_single(sample.objects[large[0]]).split(b"\n", 1)[0].decode()
    assert first.endswith(",True") and first.split(",")[1].count(".") == 1
    assert len(first.split(",")[1].split(".")[1]) == 8  # spot prints 8 decimals


def test_the_built_objects_match_the_announced_count_and_all_parse() -> None:
    from crypto_lakehouse.archive.sample import SampleBuild

    spec = SampleSpec.for_files(300, large_rows=1000)
    build = SampleBuild(spec)
    objects = dict(build.objects())
    assert len(objects) == build.expected_objects == 2 * spec.file_count()
    assert len(build.manifest.files) == spec.file_count()
    for key in build.manifest.files:
        parse_key(key)
        name = key.rsplit("/", 1)[1]
        assert parse_checksum(objects[key + ".CHECKSUM"], name).matches(objects[key]), key
    assert build.manifest.missing == build.manifest.corrupt == build.manifest.delisted == []


def test_staged_publish_through_s5cmd_writes_exactly_the_planned_files(
    source_server, source_bucket: str
) -> None:
    from crypto_lakehouse.archive.publisher import write_sample
    from crypto_lakehouse.storage import S3Storage, S3Url
    from crypto_lakehouse.transfer.upload import upload_tree

    admin = S3Storage(source_server.endpoint())
    spec = SampleSpec.for_files(300, large_rows=1000)
    calls: list[int] = []

    def upload(folder: Path, bucket: str, prefix: str) -> int:
        calls.append(sum(1 for p in folder.rglob("*") if p.is_file()))
        return upload_tree(source_server.endpoint(), folder, bucket, prefix)

    progress: list[tuple[int, int]] = []
    manifest = write_sample(
        spec,
        admin,
        S3Url(source_bucket),
        upload=upload,
        progress=lambda d, t: progress.append((d, t)),
    )
    listed = {o.key: o for o in admin.list_objects(source_bucket)}
    zips = sorted(k for k in listed if k.endswith(".zip"))
    assert zips == manifest.files and len(zips) == spec.file_count()
    assert len(listed) == manifest.objects == manifest.uploaded == sum(calls)
    assert progress[0] == (0, manifest.objects) and progress[-1] == (manifest.objects,) * 2
    for key in zips[:: max(1, len(zips) // 25)] + [k for k in zips if "BTCUSDT-trades" in k]:
        data = admin.get_bytes(source_bucket, key)
        sidecar = admin.get_bytes(source_bucket, key + ".CHECKSUM")
        assert parse_checksum(sidecar, key.rsplit("/", 1)[1]).matches(data), key
        parse_key(key)
    again = write_sample(spec, admin, S3Url(source_bucket), upload=upload)
    assert (again.uploaded, again.unchanged) == (0, manifest.objects)


def test_a_refused_staged_upload_is_an_access_error(
    source_server, source_bucket: str, tmp_path: Path
) -> None:
    from pydantic import SecretStr

    from crypto_lakehouse.errors import AccessDenied
    from crypto_lakehouse.storage import Endpoint
    from crypto_lakehouse.transfer.upload import upload_tree

    folder = tmp_path / "tree"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "a.zip").write_bytes(b"x")
    stranger = Endpoint(source_server.url, SecretStr("nobody"), SecretStr("wrong-secret"))
    with pytest.raises(AccessDenied, match=source_bucket):
        upload_tree(stranger, folder, source_bucket, retry_count=0)
    assert not (tmp_path / "tree.upload.run").exists()
    assert upload_tree(source_server.endpoint(), folder, source_bucket, "p/") == 1
