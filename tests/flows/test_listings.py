"""Discovery's kept listings and the engine's source prefix for a batch (no servers)."""

from __future__ import annotations

from crypto_lakehouse.flows.discovery import Listings
from crypto_lakehouse.flows.mover import common_folder
from crypto_lakehouse.transfer.listing import ListedObject


def _objects(*keys: str) -> list[ListedObject]:
    return [ListedObject(key, 1, "etag", "2026-01-01T00:00:00Z") for key in keys]


def test_a_kept_listing_answers_for_any_prefix_inside_it() -> None:
    listings = Listings()
    keys = ("data/a/1", "data/a/2", "data/ab/1", "data/b/1", "data/b/2/x")
    listings.keep("data/", _objects(*keys))

    assert [o.key for o in listings.under("data/a/") or []] == ["data/a/1", "data/a/2"]
    assert [o.key for o in listings.under("data/b/") or []] == ["data/b/1", "data/b/2/x"]
    assert [o.key for o in listings.under("data/") or []] == list(keys)
    assert listings.under("data/c/") == []  # listed, and nothing is there
    assert listings.under("other/") is None  # never listed: the engine must list it


def test_listings_past_the_limit_or_out_of_order_are_not_kept() -> None:
    listings = Listings(limit=3)
    listings.keep("data/a/", _objects("data/a/1", "data/a/2"))
    listings.keep("data/b/", _objects("data/b/1", "data/b/2"))  # 4 > 3: not kept
    listings.keep("data/c/", _objects("data/c/2", "data/c/1"))  # out of order
    assert listings.under("data/a/") is not None
    assert listings.under("data/b/") is None
    assert listings.under("data/c/") is None


def test_common_folder_is_the_deepest_folder_holding_every_key() -> None:
    keys = ["data/spot/daily/klines/BTC/1h/x.zip", "data/spot/daily/klines/ETH/1h/y.zip"]
    assert common_folder(keys, "") == "data/spot/daily/klines/"
    assert common_folder(["data/a.zip", "data/a.zip.CHECKSUM"], "") == "data/"
    assert common_folder(["mirror/data/x", "mirror/other/y"], "mirror/") == "mirror/"
    assert common_folder(["a/x", "b/y"], "") == ""
    assert common_folder([], "mirror/") == "mirror/"
