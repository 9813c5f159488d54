"""A caller's own source listing (`TransferRequest.source_listing`) against real SeaweedFS.

The engine then lists only the destination; the copy, the checksum verification and the
wildcard covers (planned from the listing's neighbours) behave exactly as with its own.
"""

from __future__ import annotations

import dataclasses

import pytest
from transfer_helpers import Sides, contents, seed, sha256, small_objects, staged_request

import crypto_lakehouse.transfer.engine as engine_module
from crypto_lakehouse.errors import ConfigError, TransferError
from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.transfer import ListingScope, TransferEngine, TransferOutcome
from crypto_lakehouse.transfer.binary import Invocation
from crypto_lakehouse.transfer.listing import ListedObject, Listing


def replace_options(engine: TransferEngine, **knobs: object) -> TransferEngine:
    return TransferEngine(dataclasses.replace(engine.options, **knobs))  # type: ignore[arg-type]


def _listing(server: SeaweedServer, bucket: str, prefix: str) -> list[ListedObject]:
    with Listing(Invocation(server.endpoint(anonymous=True)), bucket, prefix) as listing:
        return list(listing)


@pytest.fixture
def objects_read(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(bucket, objects the engine read from it) for each listing the engine made."""
    reads: list[tuple[str, int]] = []

    class Counting(Listing):
        def __iter__(self):  # type: ignore[no-untyped-def]
            count = 0
            try:
                for obj in super().__iter__():
                    count += 1
                    yield obj
            finally:
                reads.append((self.bucket, count))

    monkeypatch.setattr(engine_module, "Listing", Counting)
    return reads


@pytest.fixture
def listed_buckets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The buckets the engine lists itself during the test."""
    seen: list[str] = []

    class Recording(Listing):
        def __init__(self, invocation: Invocation, bucket: str, prefix: str, **kw: float) -> None:
            seen.append(bucket)
            super().__init__(invocation, bucket, prefix, **kw)

    monkeypatch.setattr(engine_module, "Listing", Recording)
    return seen


def test_a_given_listing_replaces_the_source_listing(
    engine: TransferEngine,
    sides: Sides,
    listed_buckets: list[str],
) -> None:
    source_server, lake_server, source_bucket, lake_bucket = sides
    good, bad = b"good zip bytes", b"tampered bytes"
    objects = small_objects("in/a/", 6) | small_objects("in/b/", 6)
    objects |= {
        "in/c/good.zip": good,
        "in/c/good.zip.CHECKSUM": f"{sha256(good)}  good.zip\n".encode(),
        "in/c/bad.zip": bad,
        "in/c/bad.zip.CHECKSUM": f"{sha256(b'original')}  bad.zip\n".encode(),
    }
    seed(source_server.endpoint(), source_bucket, objects)
    given = _listing(source_server, source_bucket, "in/")
    assert len(given) == len(objects)
    # Every object but two neighbours of the selection: wildcard lines must not fetch them.
    left_out = {"in/a/f0003.bin", "in/b/f0000.bin"}
    keys = sorted(set(objects) - left_out)
    request = staged_request(
        source_server,
        lake_server,
        source_bucket,
        lake_bucket,
        keys=keys,
        operation="copy",
        source_listing=given,
    )

    report = engine.run(request)

    assert listed_buckets == [lake_bucket]  # the source was not listed again
    outcomes = {r.source_key: r.outcome for r in report.results}
    assert outcomes["in/c/bad.zip"] is TransferOutcome.CORRUPT
    assert report.summary.copied == len(keys) - 1
    expected = {"out/" + k.removeprefix("in/"): objects[k] for k in keys if k != "in/c/bad.zip"}
    assert contents(lake_server.endpoint(), lake_bucket, "out/") == expected
    assert list(contents(lake_server.endpoint(), lake_bucket, "_quarantine/")) == [
        "_quarantine/out/c/bad.zip"
    ]


def test_a_given_listing_of_a_wider_prefix_is_narrowed_to_the_keys(
    engine: TransferEngine,
    sides: Sides,
    listed_buckets: list[str],
) -> None:
    source_server, lake_server, source_bucket, lake_bucket = sides
    objects = small_objects("in/a/", 5) | small_objects("in/b/", 5)
    seed(source_server.endpoint(), source_bucket, objects)
    given = _listing(source_server, source_bucket, "in/")
    keys = [k for k in sorted(objects) if k.startswith("in/b/")]
    request = staged_request(
        source_server, lake_server, source_bucket, lake_bucket, keys=keys, source_listing=given
    )

    report = engine.run(request)

    assert (report.summary.copied, report.summary.ok, listed_buckets) == (5, True, [lake_bucket])
    assert sorted(contents(lake_server.endpoint(), lake_bucket)) == [
        "out/" + k.removeprefix("in/") for k in keys
    ]
    # Unchanged: a sync with the same listing skips everything.
    again = engine.run(
        staged_request(source_server, lake_server, source_bucket, lake_bucket, source_listing=given)
    )
    assert (again.summary.copied, again.summary.skipped) == (5, 5)  # only in/a/ was new


def test_a_given_listing_outside_the_prefix_or_out_of_order_is_refused(
    engine: TransferEngine,
    sides: Sides,
) -> None:
    source_server, lake_server, source_bucket, lake_bucket = sides
    seed(source_server.endpoint(), source_bucket, small_objects("in/", 3))
    given = _listing(source_server, source_bucket, "in/")
    stray = [ListedObject("other/x.bin", 1, "e", "2026-01-01T00:00:00Z"), *given]
    with pytest.raises(ConfigError, match="outside the prefix"):
        engine.run(
            staged_request(
                source_server, lake_server, source_bucket, lake_bucket, source_listing=stray
            )
        )
    with pytest.raises(TransferError, match="not in key order"):
        engine.run(
            staged_request(
                source_server,
                lake_server,
                source_bucket,
                lake_bucket,
                source_listing=list(reversed(given)),
            )
        )
    assert contents(lake_server.endpoint(), lake_bucket) == {}


def test_a_copy_reads_one_destination_key_however_many_are_there(
    engine: TransferEngine,
    sides: Sides,
    objects_read: list[tuple[str, int]],
) -> None:
    """A copy overwrites, so the destination's keys are not needed: only its first key is
    read (proving the bucket and the identity); a sync still reads every one."""
    source_server, lake_server, source_bucket, lake_bucket = sides
    objects = small_objects("in/", 8)
    seed(source_server.endpoint(), source_bucket, objects)
    stale = {f"out/f{i:04d}.bin": b"old" for i in range(8)}  # same keys, other bytes
    seed(lake_server.endpoint(), lake_bucket, stale | small_objects("out/e/", 30))  # e/ sorts first

    copied = engine.run(
        staged_request(source_server, lake_server, source_bucket, lake_bucket, operation="copy")
    )

    assert (copied.summary.copied, copied.summary.ok) == (8, True)
    assert [n for bucket, n in objects_read if bucket == lake_bucket] == [1]
    now = contents(lake_server.endpoint(), lake_bucket, "out/f")
    assert now == {"out/" + k.removeprefix("in/"): v for k, v in objects.items()}

    synced = engine.run(staged_request(source_server, lake_server, source_bucket, lake_bucket))
    assert (synced.summary.copied, synced.summary.skipped) == (0, 8)
    assert [n for bucket, n in objects_read if bucket == lake_bucket] == [1, 38]


def test_a_partial_listing_is_copied_one_line_per_object_and_nothing_more(
    engine: TransferEngine,
    sides: Sides,
    listed_buckets: list[str],
    wildcard_sources: list[str],
) -> None:
    """`ListingScope.OBJECTS`: the listing names only the objects to copy. The
    engine does not list the source, and writes no wildcard line (which would also fetch
    the objects between and around them)."""
    source_server, lake_server, source_bucket, lake_bucket = sides
    objects = small_objects("in/a/", 6)
    seed(source_server.endpoint(), source_bucket, objects)
    wanted = {"in/a/f0001.bin", "in/a/f0002.bin", "in/a/f0004.bin"}
    given = [o for o in _listing(source_server, source_bucket, "in/") if o.key in wanted]
    request = staged_request(
        source_server,
        lake_server,
        source_bucket,
        lake_bucket,
        operation="copy",
        source_listing=given,
        source_listing_scope=ListingScope.OBJECTS,
    )

    report = engine.run(request)

    assert (report.summary.copied, report.summary.ok, listed_buckets) == (3, True, [lake_bucket])
    assert [url for url in wildcard_sources if url.startswith(f"s3://{source_bucket}/")] == []
    assert contents(lake_server.endpoint(), lake_bucket) == {
        "out/" + k.removeprefix("in/"): objects[k] for k in sorted(wanted)
    }


@pytest.mark.parametrize("key_covers", [True, False])
def test_a_partial_listing_fetches_a_file_and_its_sidecar_with_one_line(
    engine: TransferEngine,
    sides: Sides,
    wildcard_sources: list[str],
    key_covers: bool,
) -> None:
    """`ListingScope.OBJECTS` with sidecars (an ingest batch): `x.zip*` fetches a zip and
    its CHECKSUM in one line. What else extends the key at the source (`x.zip.sig`,
    never listed) is fetched but swept, not copied; a tampered zip is still caught."""
    source_server, lake_server, source_bucket, lake_bucket = sides
    good, bad = b"good zip bytes", b"tampered bytes"
    objects = {
        "in/d/good.zip": good,
        "in/d/good.zip.CHECKSUM": f"{sha256(good)}  good.zip\n".encode(),
        "in/d/good.zip.sig": b"not planned",
        "in/d/bad.zip": bad,
        "in/d/bad.zip.CHECKSUM": f"{sha256(b'original')}  bad.zip\n".encode(),
        "in/d/lone.bin": b"no sidecar",
    }
    seed(source_server.endpoint(), source_bucket, objects)
    planned = sorted(k for k in objects if not k.endswith(".sig"))
    given = [o for o in _listing(source_server, source_bucket, "in/") if o.key in planned]
    request = staged_request(
        *sides,
        operation="copy",
        verify_sidecars=True,
        source_listing=given,
        source_listing_scope=ListingScope.OBJECTS,
    )

    report = replace_options(engine, key_covers=key_covers).run(request)

    globs = sorted(u for u in wildcard_sources if u.startswith(f"s3://{source_bucket}/"))
    expected_globs = [f"s3://{source_bucket}/in/d/{n}.zip*" for n in ("bad", "good")]
    assert globs == (expected_globs if key_covers else [])
    outcomes = {r.source_key: r.outcome for r in report.results}
    assert outcomes == {
        k: TransferOutcome.CORRUPT if k == "in/d/bad.zip" else TransferOutcome.COPIED
        for k in planned
    }
    copied = {"out/" + k.removeprefix("in/"): objects[k] for k in planned if k != "in/d/bad.zip"}
    assert contents(lake_server.endpoint(), lake_bucket, "out/") == copied


def test_a_partial_listing_needs_a_listing_and_refuses_delete_extra(
    engine: TransferEngine, sides: Sides
) -> None:
    for scope in (ListingScope.FOLDERS, ListingScope.OBJECTS):
        with pytest.raises(ConfigError, match="needs a source_listing"):
            engine.run(staged_request(*sides, source_listing_scope=scope))
        with pytest.raises(ConfigError, match="listing of the whole prefix"):
            engine.run(
                staged_request(
                    *sides, source_listing=[], source_listing_scope=scope, delete_extra=True
                )
            )


def test_folder_listings_give_wildcard_lines_that_stay_inside_their_folders(
    engine: TransferEngine,
    sides: Sides,
    listed_buckets: list[str],
    wildcard_sources: list[str],
) -> None:
    """`ListingScope.FOLDERS`: complete listings of in/a/ and in/c/ only. Runs of keys
    there get wildcard lines, none reaching in/b/ (not listed) or a key left out."""
    source_server, lake_server, source_bucket, lake_bucket = sides
    objects = small_objects("in/a/", 6) | small_objects("in/b/", 3) | small_objects("in/c/", 4)
    seed(source_server.endpoint(), source_bucket, objects)
    listed = _listing(source_server, source_bucket, "in/")
    given = [o for o in listed if not o.key.startswith("in/b/")]
    keys = [f"in/a/f000{i}.bin" for i in (1, 2, 3, 4)] + sorted(small_objects("in/c/", 4))
    request = staged_request(
        *sides,
        keys=keys,
        operation="copy",
        source_listing=given,
        source_listing_scope=ListingScope.FOLDERS,
    )

    report = engine.run(request)

    assert (report.summary.copied, report.summary.ok, listed_buckets) == (8, True, [lake_bucket])
    globs = [u for u in wildcard_sources if u.startswith(f"s3://{source_bucket}/")]
    assert globs, "runs inside a folder should be fetched with wildcard lines"
    assert all(
        u.startswith((f"s3://{source_bucket}/in/a/f000", f"s3://{source_bucket}/in/c/"))
        for u in globs
    )
    assert f"s3://{source_bucket}/in/c/*" in globs  # the whole folder is wanted: one line
    assert contents(lake_server.endpoint(), lake_bucket) == {
        "out/" + k.removeprefix("in/"): objects[k] for k in keys
    }
