"""Bearer-token authentication for the executor's API, as ASGI middleware.

Every path except the open probes (`/health`, `/ready`, `/metrics`) needs
`Authorization: Bearer <EXECUTOR_API_TOKEN>`; that includes unknown paths, so an
unauthenticated caller cannot even learn which routes exist. Both sides are hashed
before the constant-time comparison, so neither the token's content nor its length leaks
through timing; a failed check always answers the same fixed 401 and never echoes what
was sent. It runs before routing (cheaper than a FastAPI dependency on every route);
`document_security` puts the scheme into the OpenAPI document all the same.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from crypto_lakehouse.errors import ConfigError

MIN_TOKEN_LENGTH = 16
OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})
_UNAUTHORIZED = b'{"detail":"missing or invalid bearer token"}'


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


class TokenGuard:
    """Holds the token's digest; `TokenGuard(None)` (only under --insecure-dev) admits all."""

    def __init__(self, token: SecretStr | None) -> None:
        if token is not None and len(token.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"EXECUTOR_API_TOKEN is too short: use at least {MIN_TOKEN_LENGTH} random "
                "characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        self._expected = (
            _digest(token.get_secret_value().encode("utf-8", "surrogatepass"))
            if token is not None
            else None
        )

    @property
    def enabled(self) -> bool:
        return self._expected is not None

    def admits(self, authorization: bytes | None) -> bool:
        """True when the raw Authorization header carries the token (or auth is off)."""
        if self._expected is None:
            return True
        scheme, _, credentials = (authorization or b"").partition(b" ")
        ok = hmac.compare_digest(_digest(credentials.strip()), self._expected)
        return ok and scheme.lower() == b"bearer"


class BearerAuth:
    """Pure ASGI middleware: 401 before routing for every path not in `open_paths`."""

    def __init__(self, app: ASGIApp, guard: TokenGuard, open_paths: Iterable[str]) -> None:
        self.app = app
        self.guard = guard
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if self.guard.admits(header):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(_UNAUTHORIZED)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _UNAUTHORIZED})


def document_security(schema: dict[str, Any], open_paths: Iterable[str]) -> dict[str, Any]:
    """Declare the bearer scheme in an OpenAPI document, on every operation but the open ones."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["HTTPBearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "EXECUTOR_API_TOKEN",
    }
    unauthorized = {
        "description": "Missing or invalid bearer token",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorView"}}},
    }
    for path, operations in schema.get("paths", {}).items():
        if path in open_paths:
            continue
        for operation in operations.values():
            operation["security"] = [{"HTTPBearer": []}]
            operation.setdefault("responses", {})["401"] = unauthorized
    return schema
