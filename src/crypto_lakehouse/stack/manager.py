"""The local stack as one unit: `up` is idempotent, `down` stops by PID, `status` reports.

State lives under `$LAKEHOUSE_HOME/stack/`: `stack.json` (ports; no secrets) and
`credentials.json` (mode 0600, generated on first start). Services start in order and
stop in reverse order.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import SecretStr

from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import StackError
from crypto_lakehouse.stack.postgres import PostgresServer
from crypto_lakehouse.stack.prefect_server import PREFECT_DATABASE, PrefectServer
from crypto_lakehouse.stack.process import free_port
from crypto_lakehouse.stack.seaweed import Credentials, SeaweedPorts, SeaweedServer
from crypto_lakehouse.storage.endpoint import Endpoint

CATALOG_DATABASE = "catalog"


@dataclass
class ServiceStatus:
    name: str
    address: str
    pid: int | None
    healthy: bool


@dataclass
class StackPorts:
    source: SeaweedPorts
    lake: SeaweedPorts
    postgres: int
    prefect: int

    @classmethod
    def pick(cls) -> StackPorts:
        return cls(SeaweedPorts.pick(), SeaweedPorts.pick(), free_port(), free_port())

    @classmethod
    def from_json(cls, data: dict) -> StackPorts:
        return cls(
            SeaweedPorts(**data["source"]),
            SeaweedPorts(**data["lake"]),
            data["postgres"],
            data.get("prefect") or free_port(),  # state written before Prefect joined
        )


@dataclass
class StackCredentials:
    source_admin: Credentials
    source_reader: Credentials
    lake_admin: Credentials
    lake_reader: Credentials

    @classmethod
    def generate(cls) -> StackCredentials:
        return cls(*(Credentials.generate() for _ in range(4)))

    @classmethod
    def from_json(cls, data: dict) -> StackCredentials:
        return cls(**{k: Credentials(**v) for k, v in data.items()})


class LocalStack:
    """Every local service, built from the state directory."""

    def __init__(self, home: Path) -> None:
        self.root = home.expanduser() / "stack"
        self.state_file = self.root / "stack.json"
        self.credentials_file = self.root / "credentials.json"
        self.ports = self._load_ports()
        self.credentials = self._load_credentials()
        self.source = SeaweedServer(
            "source",
            self.root / "source",
            admin=self.credentials.source_admin,
            reader=self.credentials.source_reader,
            anonymous_read=True,
            ports=self.ports.source,
        )
        self.lake = SeaweedServer(
            "lake",
            self.root / "lake",
            admin=self.credentials.lake_admin,
            reader=self.credentials.lake_reader,
            ports=self.ports.lake,
        )
        self.postgres = PostgresServer(self.root / "postgres", port=self.ports.postgres)
        self.prefect = PrefectServer(
            self.root / "prefect",
            database_url=self.postgres.info.url(PREFECT_DATABASE, driver="postgresql+asyncpg"),
            port=self.ports.prefect,
            ui=True,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalStack:
        return cls(settings.home_dir)

    # -- state ---------------------------------------------------------------------------

    def _load_ports(self) -> StackPorts:
        if self.state_file.exists():
            return StackPorts.from_json(json.loads(self.state_file.read_text()))
        return StackPorts.pick()

    def _load_credentials(self) -> StackCredentials:
        if self.credentials_file.exists():
            return StackCredentials.from_json(json.loads(self.credentials_file.read_text()))
        return StackCredentials.generate()

    def save(self) -> None:
        """Write ports and credentials, so every later command finds the same stack."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps(asdict(self.ports), indent=2))
        fd = os.open(self.credentials_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(self.credentials), handle, indent=2)
        self.credentials_file.chmod(0o600)

    @property
    def initialised(self) -> bool:
        return self.state_file.exists()

    # -- lifecycle -------------------------------------------------------------------------

    def up(self) -> list[ServiceStatus]:
        """Start whatever is not running; wait until each answers a real request."""
        self.save()
        try:
            self.source.start()
            self.lake.start()
            self.postgres.start()
            self.postgres.create_database(CATALOG_DATABASE)
            self.postgres.create_database(PREFECT_DATABASE)
            self.prefect.start(timeout=180)
        except StackError:
            raise
        except OSError as exc:
            raise StackError(f"could not start the stack: {exc}") from exc
        return self.status()

    def down(self) -> list[str]:
        """Stop every running service by its PID, in reverse start order."""
        stopped = []
        services = (
            ("prefect", self.prefect),
            ("postgres", self.postgres),
            ("lake", self.lake),
            ("source", self.source),
        )
        for name, service in services:
            if service.stop():
                stopped.append(name)
        return stopped

    def status(self) -> list[ServiceStatus]:
        pg_pid = self.postgres.process.running_pid()
        return [
            ServiceStatus(
                "source (S3, anonymous read)",
                self.source.url,
                self.source.process.running_pid(),
                self.source.healthy(),
            ),
            ServiceStatus(
                "lake (S3, signed)",
                self.lake.url,
                self.lake.process.running_pid(),
                self.lake.healthy(),
            ),
            ServiceStatus(
                "postgres",
                f"127.0.0.1:{self.postgres.port}",
                pg_pid,
                pg_pid is not None and self.postgres.healthy(),
            ),
            ServiceStatus(
                "prefect (API + UI)",
                self.prefect.url,
                self.prefect.process.running_pid(),
                self.prefect.healthy(),
            ),
        ]

    def require_running(self) -> None:
        down = [s.name for s in self.status() if not s.healthy]
        if down:
            names = ", ".join(down)
            raise StackError(f"stack not running ({names}): run `crypto-lakehouse stack up`")

    # -- what clients need -------------------------------------------------------------------

    def source_endpoint(self, *, anonymous: bool = True) -> Endpoint:
        return self.source.endpoint(anonymous=anonymous)

    def lake_endpoint(self) -> Endpoint:
        return self.lake.endpoint()

    def catalog_url(self) -> SecretStr:
        return SecretStr(self.postgres.info.url(CATALOG_DATABASE))

    def env(self) -> dict[str, str]:
        """Shell exports that point the CLI, flows and services at this stack."""
        lake = self.credentials.lake_admin
        return {
            "LAKEHOUSE_HOME": str(self.root.parent),
            "SOURCE_ENDPOINT": self.source.url,
            "MINIO_ENDPOINT": self.lake.url,
            "MINIO_ACCESS_KEY": lake.access_key,
            "MINIO_SECRET_KEY": lake.secret_key,
            "CATALOG_DATABASE_URL": self.catalog_url().get_secret_value(),
            **self.prefect.client_env(),
        }
