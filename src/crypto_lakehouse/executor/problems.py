"""Errors as HTTP replies, in one place for FastAPI's exception handlers and the hot routes.

Invalid input is 422 with field and reason (the input itself is never echoed), an unknown
operation 404, a body over its cap 413 (12 MiB for `POST /sync`, which may name 10,000
objects; 64 KiB elsewhere), a full queue 429 with `Retry-After`, a store that
is down 503, anything else 500 without details.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from crypto_lakehouse.errors import ExecutorUnavailable, OperationNotFound, QueueFull
from crypto_lakehouse.executor.sources import InvalidField

log = logging.getLogger("crypto_lakehouse.executor")
MAX_BODY_BYTES = 64 * 1024
MAX_SYNC_BODY_BYTES = 12 * 1024 * 1024  # MAX_OBJECTS keys of up to ~1 KiB, and their fields


def body_cap(path: str) -> int:
    """The largest request body accepted on `path`."""
    return MAX_SYNC_BODY_BYTES if path == "/sync" else MAX_BODY_BYTES


class BodyTooLarge(Exception):
    """A request body over its path's cap (413)."""


def too_large() -> JSONResponse:
    return JSONResponse({"detail": "request body too large"}, status_code=413)


HANDLED = (
    RequestValidationError,
    InvalidField,
    BodyTooLarge,
    QueueFull,
    OperationNotFound,
    ExecutorUnavailable,
)


def problem_reply(exc: Exception, redact: Callable[[str], str]) -> JSONResponse:
    """The reply for `exc`; `redact` scrubs secrets from anything that quotes input or logs."""
    if isinstance(exc, RequestValidationError):
        return JSONResponse({"detail": _validation_problems(exc, redact)}, status_code=422)
    if isinstance(exc, InvalidField):
        problem = {"field": exc.field, "reason": exc.reason, "type": "not_allowed"}
        return JSONResponse({"detail": [problem]}, status_code=422)
    if isinstance(exc, QueueFull):
        headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"detail": str(exc)}, status_code=429, headers=headers)
    if isinstance(exc, BodyTooLarge):
        return too_large()
    if isinstance(exc, OperationNotFound):
        return JSONResponse({"detail": str(exc)}, status_code=404)
    if isinstance(exc, ExecutorUnavailable):
        log.error("store unavailable: %s", redact(str(exc)))
        return JSONResponse(
            {"detail": "operation store unavailable"}, status_code=503, headers={"Retry-After": "5"}
        )
    log.error("unhandled %s", type(exc).__name__)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def _validation_problems(
    exc: RequestValidationError, redact: Callable[[str], str]
) -> list[dict[str, str]]:
    problems = []
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ())]
        field = ".".join(loc[1:] if loc[:1] == ["body"] and len(loc) > 1 else loc)
        reason = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append({"field": field, "reason": redact(reason), "type": error.get("type", "")})
    return problems
