"""A private PostgreSQL cluster (Debian's `postgresql`) under a directory we own, on 127.0.0.1.

Made with `initdb`, started with `pg_ctl`-free `postgres -D` as our own child so that we
stop it by PID. When running as root, the cluster runs as the `postgres` system user
(PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from crypto_lakehouse.errors import StackError
from crypto_lakehouse.stack.process import ManagedProcess, free_port, port_in_use, wait_until

_PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def pg_binary(name: str) -> str:
    for directory in _PG_BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    found = shutil.which(name)
    if found:
        return found
    raise StackError(f"PostgreSQL '{name}' not found: install Debian's postgresql (make setup)")


@dataclass(frozen=True)
class PostgresInfo:
    host: str
    port: int
    user: str
    password: str

    def url(self, database: str, *, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://{self.user}:{self.password}@{self.host}:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        return (
            f"host={self.host} port={self.port} user={self.user} "
            f"password={self.password} dbname={database}"
        )


class PostgresServer:
    """One cluster: `root/data` holds it; the superuser password is kept in `root/password`.

    Durable by default: the manifest and the catalog live here, and `fsync=off` loses them
    on a power cut. `fast=True` (tests, benchmarks' throw-away clusters) turns off fsync
    and synchronous commit, trading durability for speed on data that is thrown away.
    """

    def __init__(
        self,
        root: Path,
        *,
        port: int | None = None,
        user: str = "lakehouse",
        fast: bool = False,
    ) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port or free_port()
        self.user = user
        self.fast = fast
        self.process = ManagedProcess("postgres", root / "postgres.pid", root / "postgres.log")

    @property
    def password(self) -> str:
        path = self.root / "password"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(24))
            path.chmod(0o600)
        return path.read_text().strip()

    @property
    def info(self) -> PostgresInfo:
        return PostgresInfo("127.0.0.1", self.port, self.user, self.password)

    def _run_as(self) -> tuple[int, int] | None:
        """(uid, gid) of the `postgres` user when we are root, else None."""
        if os.geteuid() != 0:
            return None
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise StackError("running as root needs the 'postgres' system user") from exc
        return entry.pw_uid, entry.pw_gid

    def _chown_tree(self, ids: tuple[int, int] | None) -> None:
        if ids is None:
            return
        for path in [self.root, *self.root.rglob("*")]:
            with contextlib.suppress(FileNotFoundError):
                os.chown(path, *ids)
        # The postgres user must be able to reach root through its parents.
        parent = self.root.parent
        while parent != parent.parent:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                with contextlib.suppress(PermissionError):
                    parent.chmod(mode | 0o001)
            parent = parent.parent

    def _preexec(self, ids: tuple[int, int] | None):
        if ids is None:
            return None

        def drop() -> None:
            os.setgid(ids[1])
            os.setuid(ids[0])

        return drop

    def init(self) -> None:
        """Create the cluster once; a second call does nothing."""
        if (self.data / "PG_VERSION").exists():
            return
        ids = self._run_as()
        self.root.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._chown_tree(ids)
        result = subprocess.run(
            [
                pg_binary("initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            capture_output=True,
            text=True,
            preexec_fn=self._preexec(ids),
            check=False,
        )
        pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise StackError(f"initdb failed: {result.stderr.strip()[-500:]}")

    def start(self, *, timeout: float = 30.0) -> None:
        if self.process.running_pid() is not None:
            return
        if port_in_use(self.port):
            raise StackError(f"postgres: port {self.port} already in use on 127.0.0.1")
        self.init()
        ids = self._run_as()
        self._chown_tree(ids)
        argv = [
            pg_binary("postgres"),
            "-D",
            str(self.data),
            "-c",
            "listen_addresses=127.0.0.1",
            "-p",
            str(self.port),
            "-c",
            f"unix_socket_directories={self.root}",
            "-c",
            "max_connections=400",
            "-c",
            "shared_buffers=128MB",
        ]
        if self.fast:
            argv += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.process.log_file, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=self._preexec(ids),
                start_new_session=True,
            )
        self.process.pid_file.write_text(f"{proc.pid}\n")
        wait_until(
            self._accepts_connections,
            timeout=timeout,
            what=f"PostgreSQL on 127.0.0.1:{self.port}",
            alive=lambda: self.process.running_pid() is not None,
            log_tail=self.process.log_tail,
        )

    def _accepts_connections(self) -> bool:
        import psycopg

        with psycopg.connect(self.info.dsn("postgres"), connect_timeout=2):
            return True

    def create_database(self, name: str) -> None:
        """Create `name` if missing (names are ours, never user input)."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.info.dsn("postgres"), autocommit=True) as conn:
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            exists = conn.execute(query, (name,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def healthy(self) -> bool:
        try:
            return self._accepts_connections()
        except Exception:
            return False

    def stop(self, *, timeout: float = 30.0) -> bool:
        # SIGINT is PostgreSQL's "fast shutdown": roll back clients, exit cleanly.
        import signal

        return self.process.stop(timeout=timeout, sig=signal.SIGINT)
