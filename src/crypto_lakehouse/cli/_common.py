"""What every command shares: the console, settings built once, errors mapped to exit codes."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from enum import IntEnum
from typing import ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import (
    ConfigError,
    LakehouseError,
    StackError,
    StorageError,
)

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


class ExitCode(IntEnum):
    OK = 0
    UNEXPECTED = 1
    BAD_INPUT = 2
    OBJECTS_FAILED = 3
    STORAGE = 4
    STACK = 5
    TARGETS_MISSED = 6


def exit_code_for(exc: LakehouseError) -> ExitCode:
    if isinstance(exc, ConfigError):
        return ExitCode.BAD_INPUT
    if isinstance(exc, StorageError):
        return ExitCode.STORAGE
    if isinstance(exc, StackError):
        return ExitCode.STACK
    return ExitCode.UNEXPECTED


def fail(message: str, code: ExitCode) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(int(code))


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn our errors into one line on stderr and a meaningful exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except LakehouseError as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise fail(first_line, exit_code_for(exc)) from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
            )
            # `title` is the model's name: the settings (environment, .env) or what the
            # command was given (its flags, e.g. an ingest's IngestRequest)
            what = "settings" if exc.title == Settings.__name__ else "input"
            raise fail(f"invalid {what}: {problems}", ExitCode.BAD_INPUT) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)
        except Exception as exc:
            line = _service_failure(exc)
            if line is None:
                raise
            raise fail(line, ExitCode.STORAGE) from None

    return wrapper


def _service_failure(exc: BaseException) -> str | None:
    """One line for an HTTP service (the Prefect API, mostly) that failed or vanished
    mid-command, e.g. a 500 while its database restarts; None for anything else (a bug,
    which keeps its traceback). httpx is looked up, not imported: a command that never
    loaded it cannot have raised its errors."""
    httpx = sys.modules.get("httpx")
    if httpx is None:
        return None
    if isinstance(exc, httpx.HTTPStatusError):
        request, response = exc.request, exc.response
        return (
            f"service error: {response.status_code} {response.reason_phrase} from "
            f"{request.method} {request.url.host}:{request.url.port}{request.url.path}"
        )
    if isinstance(exc, httpx.TransportError):
        return f"service unreachable: {type(exc).__name__}: {str(exc)[:200]}"
    return None


def load_settings() -> Settings:
    """Settings from the environment (and defaults), validated once here at the edge."""
    return Settings()
