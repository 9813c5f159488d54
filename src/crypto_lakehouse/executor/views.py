"""A stored operation as the API shows it: `OperationView`'s JSON, built straight from the row.

`GET /operations/{id}` is the hottest route (clients poll it), so its reply is a plain
dict dumped once with the standard library instead of a tree of pydantic objects built
and then serialised (five times cheaper). `OperationView` stays the declared schema: every
reply validates against it (the client parses with it; the schemathesis test checks it).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from crypto_lakehouse.executor.objects import ObjectRow
from crypto_lakehouse.executor.store import OperationRecord

_COUNTS = ("copied", "skipped", "failed", "corrupt")


def _timestamp(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")


def view_dict(record: OperationRecord) -> dict[str, Any]:
    """The JSON-ready form of `OperationView` for one row."""
    spec = record.spec
    summary = record.summary or {}
    return {
        "operation_id": record.id,
        "status": record.status,
        "operation_type": spec["operation_type"],
        "operation_mode": spec["operation_mode"],
        "source": spec["source"],
        "destination": spec["destination"],
        "configuration": spec["configuration"],
        "progress": {
            "objects_done": record.objects_done,
            "objects_total": record.objects_total,
            "bytes_done": record.bytes_done,
            "bytes_total": record.bytes_total,
        },
        "counts": {name: int(summary.get(name, 0)) for name in _COUNTS},
        "summary": record.summary,
        "failed_objects": record.failures,
        "failed_objects_total": record.failures_total,
        "listed_objects": int(spec.get("listed_objects", 0)),
        "error": record.error,
        "cancel_requested": record.cancel_requested,
        "attempts": record.attempts,
        "replica": record.owner,
        "created_at": _timestamp(record.created_at),
        "started_at": _timestamp(record.started_at),
        "finished_at": _timestamp(record.finished_at),
        "updated_at": _timestamp(record.updated_at),
    }


def view_json(record: OperationRecord) -> bytes:
    return json.dumps(view_dict(record), separators=(",", ":")).encode()


def page_json(records: list[OperationRecord], total: int, limit: int, offset: int) -> bytes:
    items = [view_dict(r) for r in records]
    page = {"items": items, "total": total, "limit": limit, "offset": offset}
    return json.dumps(page, separators=(",", ":")).encode()


def objects_page_json(record: OperationRecord, rows: list[ObjectRow], limit: int) -> bytes:
    """`ObjectResultPage`'s JSON: `rows` (read after `record`) with their full keys."""
    source, dest = record.spec["source"]["prefix"], record.spec["destination"]["prefix"]
    items = [
        {
            "key": row.key,
            "source_key": source + row.key,
            "dest_key": dest + row.key,
            "size": row.size,
            "outcome": row.outcome,
            "sha256": row.sha256,
            "error": row.error,
        }
        for row in rows
    ]
    page = {
        "operation_id": record.id,
        "status": record.status,
        "items": items,
        "next_after": rows[-1].key if len(rows) == limit else None,
    }
    return json.dumps(page, separators=(",", ":")).encode()
