"""Pick the operation store for a database URL.

Apart from `store.py` so that the base class never imports its subclasses (each of which
imports the base): the dependency runs one way, from here down.
"""

from __future__ import annotations

from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.executor.store import OperationStore
from crypto_lakehouse.executor.store_postgres import PostgresStore
from crypto_lakehouse.executor.store_sqlite import SqliteStore


def open_store(url: str) -> OperationStore:
    """`sqlite:///path` or `postgresql://...` (a `+driver` suffix is accepted and ignored).

    Raises ConfigError for any other scheme.
    """
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        return SqliteStore.from_url(url)
    if scheme in {"postgresql", "postgres"}:
        return PostgresStore.from_url(url)
    raise ConfigError(f"EXECUTOR_DATABASE_URL: unsupported scheme {scheme!r} (sqlite, postgresql)")
