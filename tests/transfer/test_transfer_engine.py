"""The engine against two real SeaweedFS servers: every mode, incremental runs, odd keys,
checksums, permissions, the staging cap and cancellation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from transfer_helpers import (
    SPECIAL_NAMES,
    Sides,
    contents,
    seed,
    seed_many,
    sha256,
    small_objects,
    staged_request,
)

from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import S3Storage, S3Url
from crypto_lakehouse.transfer import (
    Mode,
    TransferEngine,
    TransferOutcome,
    TransferProgress,
    TransferRequest,
)


def _same_endpoint_request(
    lake_server: SeaweedServer, src_bucket: str, dst_bucket: str, mode: Mode
) -> TransferRequest:
    lake = lake_server.endpoint()
    return TransferRequest(
        source=lake,
        source_url=S3Url(src_bucket, "in/"),
        dest=lake,
        dest_url=S3Url(dst_bucket, "out/"),
        mode=mode,
    )


def _as_dest(objects: dict[str, bytes]) -> dict[str, bytes]:
    return {"out/" + key.removeprefix("in/"): data for key, data in objects.items()}


@pytest.mark.parametrize(
    "mode", [Mode.STAGED, pytest.param(Mode.TRADITIONAL, marks=pytest.mark.slow), Mode.AUTO]
)
def test_two_endpoint_modes_copy_then_skip(
    engine: TransferEngine,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
    mode: Mode,
) -> None:
    objects = small_objects("in/", 10)
    objects["in/deeper/nested/x.bin"] = b"nested"
    seed(source_server.endpoint(), source_bucket, objects)
    request = staged_request(source_server, lake_server, source_bucket, lake_bucket, mode=mode)

    first = engine.run(request)
    assert first.summary.mode == (Mode.STAGED if mode is Mode.AUTO else mode)
    assert (first.summary.copied, first.summary.failed, first.summary.ok) == (11, 0, True)
    assert contents(lake_server.endpoint(), lake_bucket) == _as_dest(objects)

    again = engine.run(request)
    assert (again.summary.copied, again.summary.skipped) == (0, 11)
    assert {r.outcome for r in again.results} == {TransferOutcome.SKIPPED}


@pytest.mark.parametrize(
    "mode", [Mode.DIRECT, Mode.AUTO, pytest.param(Mode.TRADITIONAL, marks=pytest.mark.slow)]
)
def test_same_endpoint_modes_copy_then_skip(
    engine: TransferEngine, lake_server: SeaweedServer, lake_bucket: str, mode: Mode
) -> None:
    src_bucket = f"{lake_bucket}-src"
    S3Storage(lake_server.endpoint()).ensure_bucket(src_bucket)
    objects = small_objects("in/", 8)
    seed(lake_server.endpoint(), src_bucket, objects)
    request = _same_endpoint_request(lake_server, src_bucket, lake_bucket, mode)

    first = engine.run(request)
    assert first.summary.mode == (Mode.DIRECT if mode is Mode.AUTO else mode)
    assert (first.summary.copied, first.summary.ok) == (8, True)
    assert contents(lake_server.endpoint(), lake_bucket) == _as_dest(objects)
    assert engine.run(request).summary.skipped == 8


def test_changed_and_new_objects_are_the_only_ones_copied(
    engine: TransferEngine,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
) -> None:
    objects = small_objects("in/", 10)
    seed(source_server.endpoint(), source_bucket, objects)
    request = staged_request(source_server, lake_server, source_bucket, lake_bucket)
    engine.run(request)
    changed = {"in/f0003.bin": b"same size?" * 50, "in/new.bin": b"brand new"}
    seed(source_server.endpoint(), source_bucket, changed)

    report = engine.run(request)
    copied = sorted(r.source_key for r in report.results if r.outcome is TransferOutcome.COPIED)
    assert copied == ["in/f0003.bin", "in/new.bin"]
    assert report.summary.skipped == 9
    assert contents(lake_server.endpoint(), lake_bucket) == _as_dest({**objects, **changed})


@pytest.mark.parametrize(
    "mode", [Mode.STAGED, Mode.DIRECT, pytest.param(Mode.TRADITIONAL, marks=pytest.mark.slow)]
)
def test_special_character_keys_round_trip_byte_for_byte(
    engine: TransferEngine,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
    mode: Mode,
) -> None:
    objects = {f"in/{name}": f"body of {name!r}".encode() for name in SPECIAL_NAMES}
    objects["in/-dash-at-start-of-rest"] = b"dash"
    if mode is Mode.DIRECT:
        source = lake_server.endpoint()
        src_bucket = f"{lake_bucket}-src"
        S3Storage(source).ensure_bucket(src_bucket)
        seed(source, src_bucket, objects)
        request = _same_endpoint_request(lake_server, src_bucket, lake_bucket, mode)
    else:
        seed(source_server.endpoint(), source_bucket, objects)
        request = staged_request(source_server, lake_server, source_bucket, lake_bucket, mode=mode)

    report = engine.run(request)
    assert report.summary.ok, report.failures()
    assert report.summary.copied == len(objects)
    assert contents(lake_server.endpoint(), lake_bucket) == _as_dest(objects)
    assert engine.run(request).summary.skipped == len(objects)


def test_checksum_mismatch_goes_to_quarantine_only(
    engine: TransferEngine,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
) -> None:
    good, bad, given = b"good zip bytes", b"tampered bytes", b"caller checked"
    objects = {
        "in/good.zip": good,
        "in/good.zip.CHECKSUM": f"{sha256(good)}  good.zip\n".encode(),
        "in/bad.zip": bad,
        "in/bad.zip.CHECKSUM": f"{sha256(b'original')}  bad.zip\n".encode(),
        "in/given.bin": given,
        "in/given-wrong.bin": given,
    }
    seed(source_server.endpoint(), source_bucket, objects)
    expected = {"in/given.bin": sha256(given), "in/given-wrong.bin": sha256(b"other")}
    request = staged_request(
        source_server, lake_server, source_bucket, lake_bucket, expected_sha256=expected
    )

    report = engine.run(request)
    outcomes = {r.source_key: r.outcome for r in report.results}
    assert outcomes["in/good.zip"] is TransferOutcome.COPIED
    assert outcomes["in/given.bin"] is TransferOutcome.COPIED
    assert outcomes["in/bad.zip"] is TransferOutcome.CORRUPT
    assert outcomes["in/given-wrong.bin"] is TransferOutcome.CORRUPT
    assert {r.sha256 for r in report.results if r.source_key == "in/good.zip"} == {sha256(good)}
    assert all("sha256 mismatch" in (r.error or "") for r in report.corrupt())
    assert not report.summary.ok

    lake = contents(lake_server.endpoint(), lake_bucket)
    assert "out/bad.zip" not in lake and "out/given-wrong.bin" not in lake
    assert lake["_quarantine/out/bad.zip"] == bad
    assert lake["_quarantine/out/given-wrong.bin"] == given
    assert lake["out/good.zip"] == good


def test_traditional_mode_quarantines_too(
    engine: TransferEngine,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
) -> None:
    objects = {"in/x.zip": b"bytes", "in/x.zip.CHECKSUM": f"{'0' * 64}  x.zip".encode()}
    seed(source_server.endpoint(), source_bucket, objects)
    request = staged_request(
        source_server, lake_server, source_bucket, lake_bucket, mode=Mode.TRADITIONAL
    )
    report = engine.run(request)
    assert [r.source_key for r in report.corrupt()] == ["in/x.zip"]
    lake = contents(lake_server.endpoint(), lake_bucket)
    assert "out/x.zip" not in lake and lake["_quarantine/out/x.zip"] == b"bytes"


@pytest.mark.parametrize(
    "mode", [Mode.STAGED, pytest.param(Mode.TRADITIONAL, marks=pytest.mark.slow)]
)
def test_read_only_identity_gives_failed_outcomes_with_reasons(
    engine: TransferEngine,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
    mode: Mode,
) -> None:
    seed(source_server.endpoint(), source_bucket, small_objects("in/", 3))
    request = staged_request(source_server, lake_server, source_bucket, lake_bucket, mode=mode)
    request.dest = lake_server.endpoint(read_only=True)

    report = engine.run(request)
    assert report.summary.failed == 3 and report.summary.copied == 0
    assert all(r.error and "AccessDenied" in r.error for r in report.failures()), report.failures()
    assert contents(lake_server.endpoint(), lake_bucket) == {}


def test_read_only_identity_in_direct_mode(
    engine: TransferEngine, lake_server: SeaweedServer, lake_bucket: str
) -> None:
    src_bucket = f"{lake_bucket}-src"
    S3Storage(lake_server.endpoint()).ensure_bucket(src_bucket)
    seed(lake_server.endpoint(), src_bucket, small_objects("in/", 4))
    reader = lake_server.endpoint(read_only=True)
    request = TransferRequest(
        source=reader,
        source_url=S3Url(src_bucket, "in/"),
        dest=reader,
        dest_url=S3Url(lake_bucket, "out/"),
        mode=Mode.DIRECT,
    )
    report = engine.run(request)
    assert report.summary.failed == 4
    assert all(r.error and "AccessDenied" in r.error for r in report.failures())


def test_explicit_keys_and_a_missing_one(
    engine: TransferEngine,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
) -> None:
    seed(source_server.endpoint(), source_bucket, small_objects("in/day/", 6))
    keys = ["in/day/f0001.bin", "in/day/f0004.bin", "in/day/gone.bin"]
    request = staged_request(source_server, lake_server, source_bucket, lake_bucket, keys=keys)
    report = engine.run(request)
    outcomes = {r.source_key: r.outcome for r in report.results}
    assert outcomes == {
        "in/day/f0001.bin": TransferOutcome.COPIED,
        "in/day/f0004.bin": TransferOutcome.COPIED,
        "in/day/gone.bin": TransferOutcome.FAILED,
    }
    assert sorted(contents(lake_server.endpoint(), lake_bucket)) == [
        "out/day/f0001.bin",
        "out/day/f0004.bin",
    ]


@pytest.mark.parametrize(("overlap", "memory"), [(False, False), (True, False), (True, True)])
def test_staging_never_exceeds_its_cap(
    make_engine: Callable[..., TransferEngine],
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
    overlap: bool,
    memory: bool,
    tmp_path: Path,
) -> None:
    objects = small_objects("in/", 20, size=1000)
    objects["in/huge.bin"] = b"h" * 5000
    seed(source_server.endpoint(), source_bucket, objects)
    # With a memory tier of 2500 bytes, one of the two 2000-byte chunks fits in memory.
    (tmp_path / "mem").mkdir()
    tier = {"staging_memory_root": tmp_path / "mem", "staging_memory_cap_bytes": 2500}
    engine = make_engine(staging_cap_bytes=4000, overlap=overlap, **(tier if memory else {}))
    report = engine.run(staged_request(source_server, lake_server, source_bucket, lake_bucket))
    assert 0 < report.summary.staging_peak_bytes <= 4000
    assert report.summary.copied == 20
    assert contents(lake_server.endpoint(), lake_bucket) == _as_dest(
        {k: v for k, v in objects.items() if k != "in/huge.bin"}
    )
    [huge] = report.failures()
    assert huge.source_key == "in/huge.bin" and "staging cap" in (huge.error or "")


def test_delete_extra_removes_what_the_source_lacks(
    engine: TransferEngine,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
) -> None:
    seed(source_server.endpoint(), source_bucket, small_objects("in/", 3))
    seed(lake_server.endpoint(), lake_bucket, {"out/stale.bin": b"old", "other/keep.bin": b"k"})
    request = staged_request(
        source_server, lake_server, source_bucket, lake_bucket, delete_extra=True
    )
    report = engine.run(request)
    assert report.summary.deleted == 1
    lake = contents(lake_server.endpoint(), lake_bucket)
    assert "out/stale.bin" not in lake and "other/keep.bin" in lake


def test_cancel_stops_s5cmd_and_claims_only_finished_objects(
    engine: TransferEngine,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
    tmp_path: Path,
) -> None:
    import threading

    objects = small_objects("in/", 300, size=64)
    seed_many(source_server.endpoint(), source_bucket, objects, tmp_path / "seed")
    cancel = threading.Event()

    def stop_soon(progress: TransferProgress) -> None:
        if progress.objects_done:
            cancel.set()  # the first uploads finished: stop the upload process mid-batch

    request = staged_request(source_server, lake_server, source_bucket, lake_bucket)
    report = engine.run(request, progress=stop_soon, cancel=cancel)
    assert report.summary.cancelled and not report.summary.ok
    assert report.summary.objects == 300
    lake = contents(lake_server.endpoint(), lake_bucket)
    claimed = {r.dest_key for r in report.results if r.outcome is TransferOutcome.COPIED}
    assert claimed <= set(lake)
    for key in claimed:
        assert lake[key] == objects["in/" + key.removeprefix("out/")]
    assert 0 < len(claimed) < 300
    assert all("cancel" in (r.error or "") for r in report.failures())


@pytest.mark.parametrize("overlap", [False, True])
def test_chunks_hold_at_most_chunk_bytes(
    make_engine: Callable[..., TransferEngine],
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
    overlap: bool,
) -> None:
    objects = small_objects("in/", 12, size=1000)
    seed(source_server.endpoint(), source_bucket, objects)
    engine = make_engine(staging_cap_bytes=100_000, chunk_bytes=3000, overlap=overlap)
    report = engine.run(staged_request(source_server, lake_server, source_bucket, lake_bucket))
    assert report.summary.copied == 12
    if overlap:  # four chunks of three objects, the next downloading while one uploads
        assert report.summary.staging_peak_bytes in {3000, 6000}
    else:
        assert report.summary.staging_peak_bytes == 3000, "four chunks, one at a time"
    assert contents(lake_server.endpoint(), lake_bucket) == _as_dest(objects)


@pytest.mark.parametrize("mode", [Mode.STAGED, Mode.DIRECT])
def test_a_whole_bucket_from_its_root(engine: TransferEngine, sides: Sides, mode: Mode) -> None:
    """An empty source prefix is fetched by one `s3://bucket/*` line (see cover_prefixes)."""
    source_server, lake_server, source_bucket, lake_bucket = sides
    objects = {**small_objects("a/", 5), **small_objects("b/c/", 5), "top.bin": b"top"}
    if mode is Mode.DIRECT:
        writer = source = lake_server.endpoint()
        src_bucket = f"{lake_bucket}-root"
        S3Storage(source).ensure_bucket(src_bucket)
    else:
        writer, source = source_server.endpoint(), source_server.endpoint(anonymous=True)
        src_bucket = source_bucket
    seed(writer, src_bucket, objects)
    request = TransferRequest(
        source=source,
        source_url=S3Url(src_bucket, ""),
        dest=lake_server.endpoint(),
        dest_url=S3Url(lake_bucket, ""),
        mode=mode,
    )
    first = engine.run(request)
    assert (first.summary.copied, first.summary.ok) == (11, True)
    assert contents(lake_server.endpoint(), lake_bucket) == objects
    assert engine.run(request).summary.skipped == 11
