"""Start an executor replica as a child process on a free loopback port, as a user would.

Used by the tests, the API benchmark and the local stack: it runs
`python -m crypto_lakehouse executor serve`, waits until `/health` answers, and stops
the process by its PID (SIGTERM for a graceful stop, SIGKILL to simulate a crash).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from crypto_lakehouse.stack.process import ManagedProcess, free_port, wait_for_exit, wait_until


class ExecutorProcess:
    """One replica: `env` is its whole configuration (merged over this process's PATH/HOME)."""

    def __init__(
        self,
        root: Path,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        insecure_dev: bool = False,
        name: str = "executor",
        wrapper: Sequence[str] = (),
    ) -> None:
        """`wrapper` prefixes the command (it must exec it, so the PID stays the server's)."""
        self.root = root
        self.env = dict(env)
        self.port = port or free_port()
        self.insecure_dev = insecure_dev
        self.wrapper = list(wrapper)
        self.process = ManagedProcess(name, root / f"{name}.pid", root / f"{name}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.running_pid()

    def argv(self) -> list[str]:
        argv = [*self.wrapper, sys.executable, "-m", "crypto_lakehouse", "executor", "serve"]
        argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        return argv + (["--insecure-dev"] if self.insecure_dev else [])

    def start(self, *, timeout: float = 60.0) -> ExecutorProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
        self.process.start(self.argv(), env={**base, **self.env}, cwd=self.root)
        wait_until(
            self._healthy,
            timeout=timeout,
            what=f"executor on {self.url}",
            alive=lambda: self.process.running_pid() is not None,
            log_tail=self.process.log_tail,
        )
        return self

    def _healthy(self) -> bool:
        return httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200

    def stop(self, *, timeout: float = 30.0) -> bool:
        """Graceful stop: running operations are handed back to the queue."""
        return self.process.stop(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown code runs; leases expire on their own."""
        pid = self.process.running_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        wait_for_exit(pid, 10)
        self.process.pid_file.unlink(missing_ok=True)

    def log(self) -> str:
        try:
            return self.process.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""
