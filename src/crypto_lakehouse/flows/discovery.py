"""Discovery for ingest: the archive files a query covers, listed as few times as possible.

`ArchiveLister` walks symbol folders one LIST call at a time through boto3, which is the
right tool for a narrow question (one interval of every symbol). An ingest usually asks
a wide one, and there the calls dominate: the sample archive (964 objects) takes ~6 s
that way against ~0.4 s for one flat `s5cmd ls` (Go parses S3's XML several times faster
than boto3). So, per dataset (market, frequency, data type):

- exact symbol names     -> one s5cmd listing per symbol folder (or interval folder);
- all intervals wanted   -> one flat s5cmd listing of the dataset folder, or of the
  market/frequency folder (or the whole root) when every dataset in it is wanted;
- some intervals, any symbol -> `ArchiveLister` (symbol folders first, then only the
  wanted interval folders: a flat listing would read every interval; one s5cmd process
  per small folder costs more than a boto3 call).

Listings run side by side (bounded); every key is parsed and filtered by the query's own
rules (`ArchiveQuery.wants_symbol`, `covers`), so the result equals the lister's.

The flat s5cmd listings are complete listings of their prefixes, so they are kept
(`Listings`, up to `KEEP_OBJECTS` objects) and handed to the transfer engine: a batch
under a listed prefix is then planned without listing the archive a second time.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import pairwise

from crypto_lakehouse.archive import ArchiveFile, ArchiveLister, ArchiveQuery, ArchiveSource
from crypto_lakehouse.archive.catalog import (
    DataType,
    Frequency,
    Market,
    datasets,
    intervals_for,
)
from crypto_lakehouse.archive.paths import (
    CHECKSUM_SUFFIX,
    dataset_prefix,
    is_checksum_key,
    parse_key,
)
from crypto_lakehouse.errors import ArchiveError
from crypto_lakehouse.storage import S3Storage
from crypto_lakehouse.transfer.binary import Invocation
from crypto_lakehouse.transfer.commands import has_glob
from crypto_lakehouse.transfer.lines import folder_of
from crypto_lakehouse.transfer.listing import ListedObject, Listing

LISTING_THREADS = 8
KEEP_OBJECTS = 500_000  # listings kept for the engine, at most (~350 bytes per object)
_Dataset = tuple[Market, Frequency, DataType, tuple[str, ...]]
_Wanted = dict[tuple[Market, Frequency, DataType], tuple[str, ...]]


@dataclass
class Listings:
    """Complete listings of archive prefixes (prefix -> objects in key order) made by discovery."""

    limit: int = KEEP_OBJECTS
    by_prefix: dict[str, list[ListedObject]] = field(default_factory=dict)
    _kept: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def keep(self, prefix: str, objects: list[ListedObject]) -> None:
        """Keep one complete listing of `prefix` unless it would pass the limit.

        A listing out of key order is not kept (the engine would refuse it).
        """
        if any(a.key >= b.key for a, b in pairwise(objects)):
            return
        with self._lock:
            if self._kept + len(objects) <= self.limit:
                self.by_prefix[prefix] = objects
                self._kept += len(objects)

    def folders(self, keys: Iterable[str]) -> list[ListedObject] | None:
        """Complete listings of the folders holding `keys`, merged in key order, or None
        when one of those folders lies in no kept listing."""
        merged: list[ListedObject] = []
        root: str | None = None
        for folder in sorted({folder_of(key) for key in keys}):
            if root is not None and folder.startswith(root):
                continue  # listed with the folder it lies in (sorted: it comes right after)
            objects = self.under(folder)
            if objects is None:
                return None
            merged += objects  # folders in order, none inside another: keys stay in order
            root = folder
        return merged

    def under(self, prefix: str) -> list[ListedObject] | None:
        """A complete listing of `prefix`, cut from a kept listing that contains it, or None."""
        for listed, objects in self.by_prefix.items():
            if prefix.startswith(listed):
                start = bisect_left(objects, prefix, key=lambda o: o.key)
                end = start
                while end < len(objects) and objects[end].key.startswith(prefix):
                    end += 1
                return objects[start:end]
        return None


def discover_files(
    source: ArchiveSource,
    query: ArchiveQuery,
    threads: int = LISTING_THREADS,
    listings: Listings | None = None,
) -> list[ArchiveFile]:
    """Every data file the query covers (sorted), with size, ETag, LastModified, sidecar ETag.

    With `listings`, the complete flat listings made on the way are kept there.
    """
    storage = _LazyStorage(source)  # one boto3 client (thread-safe), made only if needed
    wanted = {(m, f, d): intervals for m, f, d, intervals in query.plan()}
    exact = bool(query.symbols) and not any(has_glob(s) for s in query.symbols or ())
    whole = [key for key, intervals in wanted.items() if _every_interval(key, intervals)]
    jobs = (
        []
        if exact
        else [_flat(source, query, p, wanted, listings) for p in _wide_prefixes(source, whole)]
    )
    for key, intervals in wanted.items():
        if exact or key not in whole:
            jobs += _jobs(source, query, (*key, intervals), storage, wanted, listings)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        found = pool.map(lambda job: job(), jobs)
        return sorted(file for files in found for file in files)


class _LazyStorage:
    """An `S3Storage` built on first use: creating a boto3 client costs ~0.3 s of CPU."""

    def __init__(self, source: ArchiveSource) -> None:
        self._source = source
        self._storage: S3Storage | None = None
        self._lock = threading.Lock()

    def get(self) -> S3Storage:
        with self._lock:
            if self._storage is None:
                self._storage = S3Storage(self._source.endpoint)
            return self._storage


def _every_interval(key: tuple[Market, Frequency, DataType], intervals: tuple[str, ...]) -> bool:
    market, frequency, data_type = key
    return not data_type.has_interval or set(intervals) == set(intervals_for(market, frequency))


def _wide_prefixes(
    source: ArchiveSource, whole: list[tuple[Market, Frequency, DataType]]
) -> list[str]:
    """As few flat listings as cover `whole`: the root, a market/frequency, or a dataset.

    A folder is listed whole only when every dataset in it is wanted, so nothing is read
    that the query does not need.
    """
    published = {(d.market, d.frequency, d.data_type) for d in datasets()}
    chosen = set(whole)
    if chosen == published:
        return [source.root]
    prefixes = []
    for market, frequency in sorted({(m, f) for m, f, _ in chosen}):
        inside = {key for key in published if key[:2] == (market, frequency)}
        if inside <= chosen:
            prefixes.append(f"{source.root}{market.value}/{frequency.value}/")
        else:
            prefixes += [
                dataset_prefix(m, f, d, source.root) for m, f, d in sorted(inside & chosen)
            ]
    return prefixes


def _jobs(
    source: ArchiveSource,
    query: ArchiveQuery,
    dataset: _Dataset,
    storage: _LazyStorage,
    wanted: _Wanted,
    listings: Listings | None,
) -> list:
    """Listings for one dataset the wide prefixes do not cover (exact symbols or intervals)."""
    market, frequency, data_type, intervals = dataset
    base = dataset_prefix(market, frequency, data_type, source.root)
    if query.symbols and not any(has_glob(s) for s in query.symbols):
        folders = [f"{base}{symbol.upper()}/" for symbol in query.symbols]
        if not _every_interval((market, frequency, data_type), intervals):
            folders = [f"{folder}{interval}/" for folder in folders for interval in intervals]
        return [_flat(source, query, folder, wanted, listings) for folder in folders]
    narrow = replace(
        query,
        markets=(market,),
        frequencies=(frequency,),
        data_types=(data_type,),
        intervals=intervals or None,
    )
    return [lambda: list(ArchiveLister(source, storage.get()).files(narrow))]


def _flat(
    source: ArchiveSource,
    query: ArchiveQuery,
    prefix: str,
    wanted: _Wanted,
    listings: Listings | None,
):
    def run() -> list[ArchiveFile]:
        with Listing(Invocation(endpoint=source.endpoint), source.bucket, prefix) as listing:
            objects = list(listing)
        if listings is not None:
            listings.keep(prefix, objects)
        sidecars = {o.key: o for o in objects if is_checksum_key(o.key)}
        files = []
        for obj in objects:
            if is_checksum_key(obj.key):
                continue
            try:
                file = parse_key(obj.key, source.root)
            except ArchiveError:
                continue  # not an archive file (a stray object): the lister skips it too
            intervals = wanted.get((file.market, file.frequency, file.data_type))
            if intervals is None or (intervals and file.interval not in intervals):
                continue
            if not (query.wants_symbol(file.symbol) and query.covers(file)):
                continue
            sidecar = sidecars.get(obj.key + CHECKSUM_SUFFIX)
            files.append(
                file.with_listing(
                    obj.size,
                    obj.etag,
                    _when(obj.last_modified),
                    sidecar.etag if sidecar else None,
                    sidecar.size if sidecar else None,
                )
            )
        return files

    return run


def _when(stamp: str) -> datetime:
    """s5cmd's `2026-01-01T00:00:00Z` as an aware datetime."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
