"""Everything one replica holds, built once from Settings at start-up.

`Service.from_settings` checks the configuration (lake endpoint, token, allow-list)
before anything listens, so a misconfigured replica refuses to start with one clear
message instead of failing its first request.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import BucketNotFound, ConfigError, LakehouseError
from crypto_lakehouse.executor.auth import TokenGuard
from crypto_lakehouse.executor.completions import Completions
from crypto_lakehouse.executor.plan import OperationPlan
from crypto_lakehouse.executor.redaction import Redactor
from crypto_lakehouse.executor.runner import EngineFactory, Runner
from crypto_lakehouse.executor.sources import SourcePolicy
from crypto_lakehouse.executor.store import OperationStore
from crypto_lakehouse.executor.stores import open_store
from crypto_lakehouse.storage.client import S3Storage
from crypto_lakehouse.storage.endpoint import Endpoint
from crypto_lakehouse.transfer import EngineOptions, TransferEngine, s5cmd_binary

log = logging.getLogger("crypto_lakehouse.executor")
READY_CACHE_SECONDS = 2.0
T = TypeVar("T")


def lake_endpoint(settings: Settings) -> Endpoint:
    """The destination every operation writes to (MINIO_ENDPOINT and its keys)."""
    if not settings.lake_endpoint:
        raise ConfigError("MINIO_ENDPOINT is not set: the executor needs the lake it writes to")
    return Endpoint(
        url=settings.lake_endpoint,
        access_key=settings.lake_access_key,
        secret_key=settings.lake_secret_key,
        region=settings.lake_region,
    )


def database_url(settings: Settings) -> str:
    """EXECUTOR_DATABASE_URL, else SQLite under $LAKEHOUSE_HOME/executor/."""
    if settings.executor_database_url is not None:
        return settings.executor_database_url.get_secret_value()
    return f"sqlite:///{settings.home_dir / 'executor' / 'operations.db'}"


@cache
def s5cmd_version() -> str:
    try:
        out = subprocess.run(
            [s5cmd_binary(), "version"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError, ConfigError) as exc:
        return f"unavailable ({type(exc).__name__})"
    return out.stdout.strip() or "unknown"


@dataclass
class Readiness:
    """The last readiness check, cached briefly: /ready is unauthenticated and polled often."""

    ready: bool = False
    storage: str = "unchecked"
    database: str = "unchecked"
    checked_at: float = field(default=-1e9)


@dataclass
class Service:
    settings: Settings
    lake: Endpoint
    plan: OperationPlan
    store: OperationStore
    runner: Runner
    guard: TokenGuard
    redactor: Redactor
    replica: str
    readiness: Readiness = field(default_factory=Readiness)
    completions: Completions = field(default_factory=Completions)
    # Store calls from routes on PostgreSQL: a small pool of our own (cheaper than anyio's).
    _io_threads: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="executor-io")
    )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        insecure_dev: bool = False,
        engine_factory: EngineFactory = TransferEngine,
        store: OperationStore | None = None,
    ) -> Service:
        """Check the configuration and build the replica; ConfigError when it cannot run."""
        guard, lake, sources = check_settings(settings, insecure_dev=insecure_dev)
        token = settings.executor_api_token
        replica = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        plan = OperationPlan(
            lake, sources, EngineOptions.from_settings(settings), settings.executor_max_operations
        )
        redactor = Redactor(
            [token, settings.lake_access_key, settings.lake_secret_key, _db_password(settings)]
        )
        store = store or open_store(database_url(settings))
        runner = Runner(
            store,
            plan,
            replica=replica,
            max_operations=settings.executor_max_operations,
            lease_seconds=settings.executor_lease_seconds,
            redactor=redactor,
            engine_factory=engine_factory,
        )
        service = cls(settings, lake, plan, store, runner, guard, redactor, replica)
        runner.on_finished = service.completions.notify  # wakes this replica's long-polls
        return service

    async def io(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call from a route: inline on SQLite (local, microseconds), on a thread
        on PostgreSQL (a network round trip must not stall the event loop)."""
        if not self.store.remote:
            return call(*args, **kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._io_threads, functools.partial(call, *args, **kwargs)
        )

    def start(self) -> None:
        self.store.initialise()
        self.store.listen(self.runner.wake, self.completions.notify)
        self.runner.start()
        log.info(
            "executor replica %s: lake %s, store %s, %d operation(s) at once, queue %d, "
            "lease %.0fs, allowed sources: %s",
            self.replica,
            self.lake.describe(),
            type(self.store).__name__,
            self.settings.executor_max_operations,
            self.settings.executor_max_queue,
            self.settings.executor_lease_seconds,
            self.plan.sources.describe(),
        )

    def stop(self) -> None:
        self.runner.stop()
        self._io_threads.shutdown(wait=True)
        self.store.close()

    def check_ready(self) -> Readiness:
        """Storage answers (a missing bucket still proves it answers) and the store answers."""
        now = time.monotonic()
        if now - self.readiness.checked_at < READY_CACHE_SECONDS:
            return self.readiness
        storage = database = "ok"
        try:
            S3Storage(self.lake, timeout=2.0, retries=0).probe_bucket(self.settings.bronze_bucket)
        except BucketNotFound:
            pass
        except LakehouseError as exc:
            storage = self.redactor(str(exc))
        try:
            self.store.ping()
        except LakehouseError as exc:
            database = self.redactor(str(exc))
        self.readiness = Readiness(storage == database == "ok", storage, database, now)
        return self.readiness


def check_settings(
    settings: Settings, *, insecure_dev: bool = False
) -> tuple[TokenGuard, Endpoint, SourcePolicy]:
    """Token, lake and allow-list, checked before anything opens or listens."""
    token = settings.executor_api_token
    if token is None and not insecure_dev:
        raise ConfigError(
            "EXECUTOR_API_TOKEN is not set: refusing to start an unauthenticated executor "
            "(use --insecure-dev only on a development machine)"
        )
    guard = TokenGuard(None if insecure_dev and token is None else token)
    lake = lake_endpoint(settings)
    return guard, lake, SourcePolicy.from_settings(settings, lake)


def _db_password(settings: Settings) -> str | None:
    from urllib.parse import urlsplit

    if settings.executor_database_url is None:
        return None
    try:
        return urlsplit(settings.executor_database_url.get_secret_value()).password
    except ValueError:
        return None
