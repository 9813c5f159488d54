"""Child processes we own: free ports, PID files, readiness polling, stopping by PID.

Nothing here ever looks a process up by name: only PIDs we started (and wrote down) are
signalled.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from crypto_lakehouse.errors import StackError

# Ports this process has handed out. A port is free until its server binds it, so two
# picks before either server starts could return the same port (or one server's gRPC twin
# at +10000 could be another's HTTP port): every pick here avoids all earlier ones.
_handed_out: set[int] = set()


def free_port(*, also_free: Callable[[int], bool] | None = None) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and that this process has not
    handed out before. `also_free(port)` adds a condition (e.g. a free twin port); ports it
    names are reserved too when it returns True."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port in _handed_out or (also_free is not None and not also_free(port)):
            continue
        _handed_out.add(port)
        return port
    raise StackError("no free TCP port found on 127.0.0.1")


def reserve_port(port: int) -> bool:
    """Hand out `port` if this process has not yet and nothing listens on it."""
    if port in _handed_out or port_in_use(port):
        return False
    _handed_out.add(port)
    return True


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


@dataclass
class ManagedProcess:
    """A long-running child: started detached, its PID kept in `pid_file`."""

    name: str
    pid_file: Path
    log_file: Path

    def read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def running_pid(self) -> int | None:
        """The recorded PID if that process still lives; a stale PID file is removed."""
        pid = self.read_pid()
        if pid is None:
            return None
        if pid_alive(pid):
            return pid
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Start `argv` in its own session (so a Ctrl-C in the shell does not reach it)."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        return proc.pid

    def stop(self, *, timeout: float = 90.0, sig: int = signal.SIGTERM) -> bool:
        """Signal our PID and wait for it to exit; SIGKILL after `timeout`. True if it was up."""
        pid = self.running_pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        if not wait_for_exit(pid, timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_for_exit(pid, 10)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return not pid_alive(pid)


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    log_tail: Callable[[], str] | None = None,
) -> None:
    """Poll `check` until it returns True; StackError on timeout or when `alive` says died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - a not-yet-ready service fails in many ways
            pass
        if alive is not None and not alive():
            tail = log_tail() if log_tail else ""
            raise StackError(f"{what} exited during start-up\n{tail}".rstrip())
        time.sleep(0.15)
    tail = log_tail() if log_tail else ""
    raise StackError(f"{what} not ready after {timeout:.0f}s\n{tail}".rstrip())


def installed_binary(name: str, *, install_hint: str) -> str:
    """A program a wheel installed next to this interpreter (or on PATH).

    The interpreter's own bin folder comes first, so a `.venv` run without activating it
    still finds the wheel's binary. StackError with `install_hint` when it is absent.
    """
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise StackError(f"'{name}' not found: {install_hint}")
