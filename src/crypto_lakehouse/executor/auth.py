"""Bearer-token authentication for the executor's API.

Both sides are hashed before the constant-time comparison, so neither the token's
content nor its length leaks through timing. The token is never echoed: a failed check
answers the same fixed 401 whatever was sent.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import HTTPException, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from crypto_lakehouse.errors import ConfigError

MIN_TOKEN_LENGTH = 16
_bearer = HTTPBearer(auto_error=False, description="EXECUTOR_API_TOKEN")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


class TokenGuard:
    """A FastAPI dependency; `TokenGuard(None)` (only under --insecure-dev) lets all through."""

    def __init__(self, token: SecretStr | None) -> None:
        if token is not None and len(token.get_secret_value()) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"EXECUTOR_API_TOKEN is too short: use at least {MIN_TOKEN_LENGTH} random "
                "characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        self._expected = _digest(token.get_secret_value()) if token is not None else None

    @property
    def enabled(self) -> bool:
        return self._expected is not None

    def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)]
    ) -> None:
        if self._expected is None:
            return
        sent = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(_digest(sent), self._expected):
            raise HTTPException(
                status_code=401,
                detail="missing or invalid bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
