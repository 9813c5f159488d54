"""Plan, then run: compare the source and destination listings and write down what to copy.

Both listings arrive sorted (S3 lists keys in UTF-8 byte order, which is also Python's
`str` order), so one merge pass decides every object without holding either listing in
memory. Objects to copy go to a JSON-lines plan file on disk; skipped and impossible
objects go straight to the ledger.

The up-to-date rule (`is_up_to_date`), in order:
1. sizes differ -> copy;
2. ETags equal -> skip (same content, or the same multipart layout of it);
3. both ETags are plain MD5s (single-part uploads) and differ -> copy;
4. otherwise (a multipart ETag on either side: its value depends on the part size, not
   only the content) -> skip when the destination was written at or after the source's
   LastModified, else copy.
`operation="copy"` skips nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson

from crypto_lakehouse.errors import ConfigError, TransferError
from crypto_lakehouse.storage.urls import SIDECAR_SUFFIX
from crypto_lakehouse.transfer.commands import unsupported_reason
from crypto_lakehouse.transfer.ledger import TransferLedger
from crypto_lakehouse.transfer.listing import ListedObject
from crypto_lakehouse.transfer.models import (
    ObjectResult,
    TransferOutcome,
    TransferRequest,
)

_MD5 = re.compile(r"^[0-9a-f]{32}$")


@dataclass(slots=True)
class PlanItem:
    """One object to copy, with its listing neighbours (for wildcard cover lines)."""

    key: str
    dest_key: str
    size: int
    etag: str
    prev: str | None  # the source key listed just before this one
    next: str | None  # ... and just after


@dataclass
class TransferPlan:
    path: Path
    copy_objects: int = 0
    copy_bytes: int = 0
    sidecars: set[str] = field(default_factory=set)  # source keys ending in .CHECKSUM
    extra_dest_keys: list[str] = field(default_factory=list)  # for delete_extra


def is_up_to_date(source: ListedObject, dest: ListedObject) -> bool:
    """True when `dest` already holds `source`'s content (see the module docstring)."""
    if source.size != dest.size:
        return False
    if source.etag and source.etag == dest.etag:
        return True
    if _MD5.match(source.etag) and _MD5.match(dest.etag):
        return False
    return bool(dest.last_modified) and dest.last_modified >= source.last_modified


def listing_scope(request: TransferRequest) -> tuple[str, str]:
    """The (source, destination) prefixes to list: narrowed to the explicit keys' common prefix."""
    src_prefix = request.source_url.prefix
    if request.keys is None or len(request.keys) == 0:
        return src_prefix, request.dest_url.prefix
    for key in request.keys:
        if not key.startswith(src_prefix):
            raise ConfigError(f"key {key!r} is not under the source prefix {src_prefix!r}")
    low, high = min(request.keys), max(request.keys)
    common = 0
    while common < min(len(low), len(high)) and low[common] == high[common]:
        common += 1
    narrowed = low[:common]
    return narrowed, request.dest_key(narrowed)


def build_plan(
    request: TransferRequest,
    source: Iterable[ListedObject],
    dest: Iterable[ListedObject],
    ledger: TransferLedger,
    path: Path,
) -> TransferPlan:
    """Merge the listings; write objects to copy to `path`; record skips and refusals.

    Raises TransferError when a listing is not sorted (the merge would be wrong).
    """
    plan = TransferPlan(path=path)
    wanted = _wanted_keys(request.keys)
    src_prefix, dest_prefix = request.source_url.prefix, request.dest_url.prefix
    quarantine = request.quarantine_prefix
    dest_iter = _checked_order(
        (d for d in dest if not (quarantine and d.key.startswith(quarantine))), "destination"
    )
    current_dest = next(dest_iter, None)
    with open(path, "wb") as out:
        pending: PlanItem | None = None
        prev_key: str | None = None
        for obj in _checked_order(iter(source), "source"):
            rest = obj.key[len(src_prefix) :]
            match: ListedObject | None = None
            while current_dest is not None:
                dest_rest = current_dest.key[len(dest_prefix) :]
                if dest_rest < rest:
                    if request.delete_extra:
                        plan.extra_dest_keys.append(current_dest.key)
                    current_dest = next(dest_iter, None)
                    continue
                if dest_rest == rest:
                    match = current_dest
                    current_dest = next(dest_iter, None)
                break
            if obj.key.endswith(SIDECAR_SUFFIX):
                plan.sidecars.add(obj.key)
            if pending is not None:
                pending.next = obj.key
                _write(out, pending)
                pending = None
            listed_before, prev_key = prev_key, obj.key
            if wanted is not None:
                if obj.key not in wanted:
                    continue
                wanted.discard(obj.key)
            dest_key = dest_prefix + rest
            refusal = unsupported_reason(obj.key) or unsupported_reason(dest_key)
            if refusal:
                ledger.add(_result(obj, dest_key, TransferOutcome.FAILED, refusal), counted=True)
                continue
            if match is not None and request.operation == "sync" and is_up_to_date(obj, match):
                ledger.add(_result(obj, dest_key, TransferOutcome.SKIPPED), counted=True)
                continue
            pending = PlanItem(obj.key, dest_key, obj.size, obj.etag, listed_before, None)
            plan.copy_objects += 1
            plan.copy_bytes += obj.size
            ledger.plan(1, obj.size)
        if pending is not None:
            _write(out, pending)
    if request.delete_extra:
        while current_dest is not None:
            plan.extra_dest_keys.append(current_dest.key)
            current_dest = next(dest_iter, None)
    for missing in sorted(wanted or ()):
        ledger.add(
            ObjectResult(
                missing,
                request.dest_key(missing),
                0,
                TransferOutcome.FAILED,
                error="not found at the source",
            ),
            counted=True,
        )
    return plan


def read_plan(path: Path) -> Iterator[PlanItem]:
    """The plan file's items, in listing order."""
    with open(path, "rb") as handle:
        for line in handle:
            k, d, s, e, p, n = orjson.loads(line)
            yield PlanItem(k, d, s, e, p, n)


def chunks(items: Iterable[PlanItem], max_objects: int, max_bytes: int) -> Iterator[list[PlanItem]]:
    """Group items in order: at most `max_objects` and `max_bytes` per group.

    An item larger than `max_bytes` travels alone (the caller decides whether it fits).
    """
    batch: list[PlanItem] = []
    size = 0
    for item in items:
        if batch and (len(batch) >= max_objects or size + item.size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item.size
    if batch:
        yield batch


def _wanted_keys(keys: Sequence[str] | None) -> set[str] | None:
    return set(keys) if keys is not None else None


def _write(out: BinaryIO, item: PlanItem) -> None:
    row = [item.key, item.dest_key, item.size, item.etag, item.prev, item.next]
    out.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))


def _result(
    obj: ListedObject, dest_key: str, outcome: TransferOutcome, error: str | None = None
) -> ObjectResult:
    return ObjectResult(obj.key, dest_key, obj.size, outcome, etag=obj.etag or None, error=error)


def _checked_order(items: Iterator[ListedObject], side: str) -> Iterator[ListedObject]:
    last: str | None = None
    for item in items:
        if last is not None and item.key <= last:
            raise TransferError(f"the {side} listing is not in key order at {item.key!r}")
        last = item.key
        yield item
