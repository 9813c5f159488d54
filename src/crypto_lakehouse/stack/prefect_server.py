"""A Prefect server (`prefect server start`) on 127.0.0.1, backed by the stack's PostgreSQL.

It runs as our own child (PID file, log file), is stopped with SIGINT by PID, and is
ready when `GET /api/health` answers. SQLite is never used: it stalls under concurrency
(HTTP 503s with tens of concurrent flow runs), so the database URL is required.

Three modes, for the HA set-up the monitoring tests build:

- `full`: API + UI + background services (scheduler, late runs, ...), one process.
- `api`: `--no-services`: only the webserver; several may share one database.
- `services`: `prefect server services start`: only the loop services, no port.

Clients (flows, workers, the CLI) reach it through `client_env()` (for child processes)
or `client_settings()` (for this process).

Concurrency leases (the slots of global limits such as `s5cmd-transfers`) are kept on disk
under `PREFECT_HOME/concurrency_leases` (Prefect's filesystem lease storage), not in the
server's memory: the limit's active-slot counts live in PostgreSQL and survive a restart,
so leases kept in memory would vanish while their slots stay taken, and every later
acquire would wait forever. On disk, a restarted server still knows each lease, renews it
for a run that is still going, and revokes it once it expires for a run that is gone.
Several server processes (the HA shape) must share one lease store: Redis
(`prefect_redis.lease_storage`, given through `extra_env`), as in deploy/k8s.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator, Mapping
from enum import StrEnum
from pathlib import Path

import httpx
from pydantic import SecretStr

from crypto_lakehouse.errors import StackError
from crypto_lakehouse.stack.postgres import PostgresServer
from crypto_lakehouse.stack.process import (
    ManagedProcess,
    free_port,
    installed_binary,
    port_in_use,
    wait_until,
)

PREFECT_DATABASE = "prefect"
FILESYSTEM_LEASE_STORAGE = "prefect.server.concurrency.lease_storage.filesystem"


def prefect_binary() -> str:
    """The `prefect` console script installed next to this interpreter."""
    return installed_binary("prefect", install_hint="install the prefect package")


class PrefectMode(StrEnum):
    FULL = "full"
    API = "api"  # --no-services
    SERVICES = "services"  # `prefect server services start`, no webserver


class PrefectServer:
    """One Prefect server process with its own `PREFECT_HOME` under `root`.

    `database_url` is an SQLAlchemy async URL (`postgresql+asyncpg://...`); asyncpg ships
    with prefect. The server runs its migrations on start unless `extra_env` says
    otherwise (`PREFECT_SERVER_DATABASE_MIGRATE_ON_START=false`).
    """

    def __init__(
        self,
        root: Path,
        *,
        database_url: SecretStr | str,
        port: int | None = None,
        mode: PrefectMode = PrefectMode.FULL,
        ui: bool = False,
        extra_env: Mapping[str, str] | None = None,
        name: str = "prefect",
    ) -> None:
        self.root = root
        self.home = root / "home"
        self.port = port or free_port()
        self.mode = mode
        self.ui = ui
        self.extra_env = dict(extra_env or {})
        self._database_url = (
            database_url if isinstance(database_url, SecretStr) else SecretStr(database_url)
        )
        self.process = ManagedProcess(name, root / f"{name}.pid", root / f"{name}.log")

    @classmethod
    def for_postgres(cls, root: Path, postgres: PostgresServer, **kwargs: object) -> PrefectServer:
        """A server on a running PostgresServer; creates the `prefect` database if missing."""
        postgres.create_database(PREFECT_DATABASE)
        url = postgres.info.url(PREFECT_DATABASE, driver="postgresql+asyncpg")
        return cls(root, database_url=SecretStr(url), **kwargs)  # type: ignore[arg-type]

    # -- addresses ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def lease_dir(self) -> Path:
        """Where the filesystem lease storage keeps one JSON file per concurrency lease."""
        return self.home / "concurrency_leases"

    @property
    def ui_url(self) -> str | None:
        return self.url if self.ui and self.mode is not PrefectMode.SERVICES else None

    def client_env(self) -> dict[str, str]:
        """Environment entries that point a child process (flow, worker, CLI) at this server."""
        return {"PREFECT_API_URL": self.api_url}

    @contextlib.contextmanager
    def client_settings(self) -> Iterator[None]:
        """Point Prefect clients in *this* process at the server for the `with` block."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}):
            yield

    # -- process ------------------------------------------------------------------------------

    def server_env(self) -> dict[str, str]:
        """The child's environment: our settings over the parent's, minus a stray API URL."""
        import os

        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            {
                "PREFECT_HOME": str(self.home),
                "PREFECT_SERVER_DATABASE_CONNECTION_URL": self._database_url.get_secret_value(),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_SERVER_UI_ENABLED": "true" if self.ui else "false",
                "PREFECT_SERVER_API_HOST": "127.0.0.1",
                "PREFECT_SERVER_API_PORT": str(self.port),
                # Hundreds of concurrent flow runs: a pool of up to 100 connections (the
                # stack's PostgreSQL allows 400) and patient waits when the CPU is short
                # (at 20+40 and 30 s, 200 runs on a loaded 2-core box got HTTP 500s).
                "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "40",
                "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": "60",
                "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_TIMEOUT": "120",
                "PREFECT_SERVER_DATABASE_TIMEOUT": "30",
                "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "15",
                "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
                "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": FILESYSTEM_LEASE_STORAGE,
                "PREFECT_UI_API_URL": self.api_url,
            }
        )
        env.update(self.extra_env)
        return env

    def argv(self) -> list[str]:
        if self.mode is PrefectMode.SERVICES:
            return [prefect_binary(), "server", "services", "start"]
        argv = [
            prefect_binary(),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--analytics-off",
            "--ui" if self.ui else "--no-ui",
        ]
        if self.mode is PrefectMode.API:
            argv.append("--no-services")
        return argv

    def start(self, *, timeout: float = 90.0) -> None:
        """Start (if not running) and wait until `/api/health` answers (or services run)."""
        if self.process.running_pid() is not None:
            return
        if self.mode is not PrefectMode.SERVICES and port_in_use(self.port):
            raise StackError(f"prefect: port {self.port} already in use on 127.0.0.1")
        self.home.mkdir(parents=True, exist_ok=True)
        self.process.start(self.argv(), env=self.server_env(), cwd=self.root)
        if self.mode is PrefectMode.SERVICES:
            wait_until(
                self._services_started,
                timeout=timeout,
                what="Prefect services",
                alive=lambda: self.process.running_pid() is not None,
                log_tail=self.process.log_tail,
            )
            return
        wait_until(
            self.healthy,
            timeout=timeout,
            what=f"Prefect server on {self.url}",
            alive=lambda: self.process.running_pid() is not None,
            log_tail=self.process.log_tail,
        )

    def _services_started(self) -> bool:
        # Prefect 3.9.1 prints "Starting services..." once and nothing after it.
        tail = self.process.log_tail(200)
        return "Starting services" in tail or "Started" in tail

    def healthy(self) -> bool:
        """True when the API answers its health check (services mode: the process lives)."""
        if self.mode is PrefectMode.SERVICES:
            return self.process.running_pid() is not None
        try:
            response = httpx.get(f"{self.api_url}/health", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def stop(self, *, timeout: float = 30.0) -> bool:
        """SIGINT by PID (uvicorn's graceful stop), SIGKILL after `timeout`. True if it ran."""
        return self.process.stop(timeout=timeout, sig=signal.SIGINT)
