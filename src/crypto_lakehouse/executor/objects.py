"""Operations that name their objects: one row per object, from the request to its result.

A request with an explicit object list (`SyncRequest.objects`) stores each object in
`executor_objects` in the same transaction as the operation itself, so whichever replica
claims it (the first, or the one that takes over after a crash) runs exactly that list.
The run's final write fills in each object's outcome, verified SHA-256 and error, fenced
by the same claim token as the operation's status: a replica that lost its lease cannot
overwrite them. Results are read in key order, a page at a time, so neither a replica nor
a client ever holds more than a page of a large operation's results.
"""

# SQL is assembled only from module constants; every value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OBJECTS = "executor_objects"
OBJECT_COLUMNS = "object_key, size, expected_sha256, outcome, sha256, error"
OBJECT_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {OBJECTS} (
        operation_id TEXT NOT NULL,
        object_key TEXT NOT NULL,
        size BIGINT NOT NULL,
        expected_sha256 TEXT,
        outcome TEXT NOT NULL DEFAULT 'pending',
        sha256 TEXT,
        error TEXT,
        PRIMARY KEY (operation_id, object_key)
    )""",
)
INSERT_OBJECT = (
    f"INSERT INTO {OBJECTS} (operation_id, object_key, size, expected_sha256) "
    "VALUES (%s, %s, %s, %s)"
)
RECORD_OBJECT = (
    f"UPDATE {OBJECTS} SET outcome = %s, sha256 = %s, error = %s "
    "WHERE operation_id = %s AND object_key = %s"
)
SELECT_OBJECTS = (
    f"SELECT {OBJECT_COLUMNS} FROM {OBJECTS} WHERE operation_id = %s AND object_key > %s "
    "ORDER BY object_key LIMIT %s"
)


@dataclass(frozen=True, slots=True)
class ObjectRow:
    """One listed object. `key` is below the operation's source (and destination) prefix."""

    key: str
    size: int
    expected_sha256: str | None = None
    outcome: str = "pending"  # copied | skipped | failed | corrupt once reported
    sha256: str | None = None  # the digest the replica verified
    error: str | None = None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> ObjectRow:
        key, size, expected, outcome, sha256, error = row
        return cls(key, int(size), expected, outcome, sha256, error)


@dataclass(frozen=True, slots=True)
class ObjectReport:
    """A run's result for one listed object (its final write)."""

    key: str
    outcome: str
    sha256: str | None = None
    error: str | None = None
