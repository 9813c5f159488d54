"""Turning a chunk of plan items into run-file lines: wildcard covers first, per-key otherwise."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import groupby

from crypto_lakehouse.transfer.commands import cover_prefixes, has_glob
from crypto_lakehouse.transfer.planner import PlanItem


def folder_of(key: str) -> str:
    """The folder a key lies in: everything up to its last `/` ("" at a bucket's root).

    The unit of `ListingScope.FOLDERS`: a listing complete for it bounds wildcard lines.
    """
    return key[: key.rfind("/") + 1]


@dataclass(frozen=True)
class Cover:
    """A wildcard line's source prefix and the chunk indexes it fetches."""

    prefix: str
    indexes: list[int]

    @property
    def relative_dir(self) -> str:
        """Where s5cmd puts matches: relative to the prefix's last `/` (see url.parseBatch)."""
        return folder_of(self.prefix)


def plan_lines(
    items: list[PlanItem], eligible: Callable[[int], bool], floor: str, *, per_folder: bool = False
) -> tuple[list[Cover], list[int]]:
    """Split a chunk into wildcard covers and per-key indexes.

    Consecutive eligible items that were also neighbours in the source listing form a
    run; each run is covered by the shortest prefixes that match none of the run's
    listed neighbours (so a wildcard never fetches an object we did not plan).

    `per_folder`: the listing is complete only under each key's folder, so runs are cut
    at folder changes and a neighbour in another folder does not bound a cover: the
    folder itself does (its listing holds everything a prefix inside it can match).
    """
    covers: list[Cover] = []
    per_key: list[int] = []
    for whole_run in _runs(items, eligible, per_key):
        segments = _by_folder(items, whole_run) if per_folder else [(whole_run, floor)]
        for run, run_floor in segments:
            keys = [items[i].key for i in run]
            before, after = items[run[0]].prev, items[run[-1]].next
            if per_folder:  # a neighbour outside the folder says nothing about inside it
                before = before if before is not None and before.startswith(run_floor) else None
                after = after if after is not None and after.startswith(run_floor) else None
            for prefix, local in cover_prefixes(keys, before, after, run_floor):
                chosen = [run[i] for i in local]
                if prefix is not None:
                    covers.append(Cover(prefix, chosen))
                else:
                    per_key.extend(chosen)
    per_key.sort()
    return covers, per_key


def key_covers(
    items: list[PlanItem], eligible: Callable[[int], bool]
) -> tuple[list[Cover], list[int]]:
    """Split a chunk listed object by object (`ListingScope.OBJECTS`) into `key*` covers
    and per-key indexes.

    With no listing around the keys, the only safe wildcard is a key itself: `x.zip*`
    fetches `x.zip`, `x.zip.CHECKSUM` and whatever else extends that exact key (nothing,
    in a Binance-style archive). So an item and the items right after it whose keys
    extend its key share one line; an item alone stays a per-key line.

    Why bother: s5cmd sends a HEAD before each per-key GET, and a `run` line holds its
    slot until its objects are done. A file and its sidecar as two per-key lines hold two
    slots for two round trips each; as one cover, one slot for two (LIST, then both GETs).
    """
    covers: list[Cover] = []
    per_key: list[int] = []
    i, n = 0, len(items)
    while i < n:
        key = items[i].key
        if not eligible(i) or has_glob(key):
            per_key.append(i)
            i += 1
            continue
        j = i + 1
        while j < n and eligible(j) and items[j].key.startswith(key):
            j += 1
        if j - i > 1:
            covers.append(Cover(key, list(range(i, j))))
        else:
            per_key.append(i)
        i = j
    return covers, per_key


def _by_folder(items: list[PlanItem], run: list[int]) -> list[tuple[list[int], str]]:
    """`run` cut where the key's folder changes, each part with its folder."""
    return [
        (list(part), folder) for folder, part in groupby(run, key=lambda i: folder_of(items[i].key))
    ]


def _runs(
    items: list[PlanItem], eligible: Callable[[int], bool], per_key: list[int]
) -> Iterator[list[int]]:
    run: list[int] = []
    for i, item in enumerate(items):
        if not eligible(i):
            per_key.append(i)
            if run:
                yield run
                run = []
            continue
        if run and items[run[-1]].next != item.key:
            yield run
            run = []
        run.append(i)
    if run:
        yield run


def ancestors(rest: str) -> Iterator[str]:
    """`a/b/c` -> `a`, `a/b` (paths that must be directories for `rest` to be a file)."""
    cut = rest.find("/")
    while cut != -1:
        yield rest[:cut]
        cut = rest.find("/", cut + 1)


def file_dir_conflicts(rests: dict[int, str]) -> set[int]:
    """Indexes whose path is also a directory of another item (`a/b` next to `a/b/c`).

    A filesystem cannot hold both, so those items are staged under an index name.
    """
    by_path = {rest: i for i, rest in rests.items()}
    clashes: set[int] = set()
    for rest in rests.values():
        for parent in ancestors(rest):
            hit = by_path.get(parent)
            if hit is not None:
                clashes.add(hit)
    return clashes
