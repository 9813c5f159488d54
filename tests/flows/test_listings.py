"""What a batch hands the engine instead of a listing (its own objects), and the engine's
source prefix for a batch (no servers)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from crypto_lakehouse.archive import ArchiveFile
from crypto_lakehouse.catalog import ListedFile
from crypto_lakehouse.flows.mover import common_folder, source_listing_for
from crypto_lakehouse.transfer import ListingScope

WHEN = datetime(2026, 5, 9, 12, 0, 1, tzinfo=UTC)


def _listed(symbol: str, day: int, *, sidecar: bool = True) -> ListedFile:
    file = ArchiveFile("spot", "daily", "klines", symbol, date(2026, 5, day), "1h")
    file = file.with_listing(
        1000 + day,
        f"etag-{day}",
        WHEN,
        "sidecar-etag" if sidecar else None,
        90 if sidecar else None,
    )
    return ListedFile(file, "mirror/" + file.key)


def test_a_batch_hands_over_its_own_objects_in_key_order() -> None:
    files = [_listed("ETHUSDT", 2), _listed("BTCUSDT", 3), _listed("BTCUSDT", 2)]
    objects, scope = source_listing_for(files)
    assert scope is ListingScope.OBJECTS
    assert objects is not None
    keys = [o.key for o in objects]
    assert keys == sorted(keys) and len(keys) == 6  # each zip and its sidecar, nothing else
    assert keys[:2] == [files[2].source_key, files[2].source_key + ".CHECKSUM"]
    zip_, sidecar = objects[0], objects[1]
    assert (zip_.size, zip_.etag, zip_.last_modified) == (1002, "etag-2", "2026-05-09T12:00:01Z")
    assert (sidecar.size, sidecar.etag) == (90, "sidecar-etag")


def test_without_the_sidecar_listing_the_engine_lists_itself() -> None:
    objects, scope = source_listing_for(
        [_listed("BTCUSDT", 2), _listed("BTCUSDT", 3, sidecar=False)]
    )
    assert (objects, scope) == (None, ListingScope.PREFIX)


def test_common_folder_is_the_deepest_folder_holding_every_key() -> None:
    keys = ["data/spot/daily/klines/BTC/1h/x.zip", "data/spot/daily/klines/ETH/1h/y.zip"]
    assert common_folder(keys, "") == "data/spot/daily/klines/"
    assert common_folder(["data/a.zip", "data/a.zip.CHECKSUM"], "") == "data/"
    assert common_folder(["mirror/data/x", "mirror/other/y"], "mirror/") == "mirror/"
    assert common_folder(["a/x", "b/y"], "") == ""
    assert common_folder([], "mirror/") == "mirror/"
