"""The manifest's bulk writes: one statement carries a whole chunk of rows.

Each column travels as one bound array and PostgreSQL unnests them into rows, so marking
or recording 480 files is one round trip and one small statement to compile instead of
one statement per file (measured on the local stack: `mark_started` 0.21-0.35 s -> 0.03 s,
`record` 0.37-0.74 s -> 0.05-0.08 s for 480 files).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Date,
    DateTime,
    Integer,
    Text,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert

from crypto_lakehouse.catalog.schema import bronze_files


def _unnest(alias: str, columns: Sequence[tuple[str, Any]]) -> Any:
    """`unnest(:a_x::t[], ...) AS alias(x, ...)`: one bound array per column (parameter
    `a_<column>`), so one statement carries a whole chunk of rows."""
    arrays = [bindparam(f"a_{name}", type_=ARRAY(kind)) for name, kind in columns]
    names = [name for name, _ in columns]
    return func.unnest(*arrays).table_valued(*names).render_derived(name=alias)


def arrays(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> dict[str, list[Any]]:
    """The bound arrays of `_unnest` for `rows` (dicts keyed by column)."""
    return {f"a_{column}": [row[column] for row in rows] for column in columns}


_STARTED = _unnest(
    "v",
    [
        ("path", Text),
        ("market", Text),
        ("frequency", Text),
        ("data_type", Text),
        ("symbol", Text),
        ("interval", Text),
        ("period", Date),
        ("bronze_key", Text),
        ("size", BigInteger),
    ],
)
STARTED_COLUMNS = tuple(_STARTED.c.keys())
MARK_STARTED = insert(bronze_files).from_select(
    [*STARTED_COLUMNS, "source_url", "bronze_bucket", "status", "run_id", "updated_at"],
    select(
        *_STARTED.c,
        bindparam("source_url"),
        bindparam("bronze_bucket"),
        bindparam("status"),
        bindparam("run_id"),
        bindparam("now"),
    ),
)
MARK_STARTED = MARK_STARTED.on_conflict_do_update(
    index_elements=["path"],
    set_={
        "status": MARK_STARTED.excluded.status,
        "bronze_bucket": MARK_STARTED.excluded.bronze_bucket,
        "bronze_key": MARK_STARTED.excluded.bronze_key,
        "run_id": MARK_STARTED.excluded.run_id,
        "error": None,
        "updated_at": MARK_STARTED.excluded.updated_at,
    },
)
# What `record()` writes per row, besides run_id and updated_at.
_RECORDED = _unnest(
    "v",
    [
        ("path", Text),
        ("status", Text),
        ("error", Text),
        ("size", BigInteger),
        ("sha256", Text),
        ("version", Integer),
        ("etag", Text),
        ("last_modified", DateTime(timezone=True)),
        ("ingested_at", DateTime(timezone=True)),
    ],
)
RECORDED_COLUMNS = tuple(_RECORDED.c.keys())
RECORD = (
    update(bronze_files)
    .where(bronze_files.c.path == _RECORDED.c.path)
    .values(
        {name: _RECORDED.c[name] for name in RECORDED_COLUMNS if name != "path"}
        | {"run_id": bindparam("run_id"), "updated_at": bindparam("now")}
    )
)
