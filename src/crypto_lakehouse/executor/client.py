"""`ExecutorClient`: submit, status, wait (with progress), cancel - over httpx.

HTTP failures are translated here, once, into the project's errors: unreachable or 5xx
-> ExecutorUnavailable (transient), 429 -> QueueFull with the server's Retry-After,
404 -> OperationNotFound, 401 and 422 -> ConfigError (a wrong token or a bad request will
not get better by retrying).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from pydantic import SecretStr

from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import (
    ConfigError,
    ExecutorError,
    ExecutorUnavailable,
    OperationNotFound,
    QueueFull,
)
from crypto_lakehouse.executor.models import (
    OperationPage,
    OperationStatus,
    OperationView,
    SubmitResponse,
    SyncRequest,
)

ProgressCallback = Callable[[OperationView], None]


class ExecutorClient:
    """A synchronous client for one executor service (any replica behind one URL)."""

    def __init__(
        self,
        base_url: str,
        token: str | SecretStr | None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> ExecutorClient:
        """EXECUTOR_URL and EXECUTOR_API_TOKEN; ConfigError when the URL is missing."""
        if not settings.executor_url:
            raise ConfigError("EXECUTOR_URL is not set")
        return cls(settings.executor_url, settings.executor_api_token, **kwargs)

    def __enter__(self) -> ExecutorClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- calls --------------------------------------------------------------------------

    def submit(self, request: SyncRequest | Mapping[str, Any]) -> SubmitResponse:
        """Queue an operation; QueueFull (with `retry_after`) when the service is saturated."""
        body = request.model_dump(mode="json") if isinstance(request, SyncRequest) else request
        return SubmitResponse.model_validate(self._call("POST", "/sync", json=body))

    def status(self, operation_id: str) -> OperationView:
        return OperationView.model_validate(self._call("GET", f"/operations/{operation_id}"))

    def list(
        self, *, status: OperationStatus | str | None = None, limit: int = 50, offset: int = 0
    ) -> OperationPage:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = str(status)
        return OperationPage.model_validate(self._call("GET", "/operations", params=params))

    def cancel(self, operation_id: str) -> OperationView:
        """Ask to cancel; the returned view may still say `running` while it stops."""
        return OperationView.model_validate(
            self._call("POST", f"/operations/{operation_id}/cancel")
        )

    def wait(
        self,
        operation_id: str,
        *,
        on_progress: ProgressCallback | None = None,
        poll_seconds: float = 0.5,
        timeout: float | None = None,
    ) -> OperationView:
        """Poll until the operation is completed, failed or cancelled; return its last view.

        `on_progress` gets every view that differs from the previous one. Transient errors
        while polling (a replica restarting) are retried until `timeout`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: OperationView | None = None
        while True:
            try:
                view = self.status(operation_id)
            except ExecutorUnavailable:
                if deadline is not None and time.monotonic() > deadline:
                    raise
                time.sleep(poll_seconds)
                continue
            if on_progress is not None and (last is None or _moved(last, view)):
                on_progress(view)
            last = view
            if view.status.terminal:
                return view
            if deadline is not None and time.monotonic() > deadline:
                raise ExecutorError(
                    f"operation {operation_id} still {view.status} after {timeout:.0f}s"
                )
            time.sleep(poll_seconds)

    def run(
        self,
        request: SyncRequest,
        *,
        on_progress: ProgressCallback | None = None,
        timeout: float | None = None,
    ) -> OperationView:
        """Submit (waiting out a full queue) and wait for the result."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                submitted = self.submit(request)
                break
            except QueueFull as exc:
                if deadline is not None and time.monotonic() + exc.retry_after > deadline:
                    raise
                time.sleep(exc.retry_after)
        remaining = None if deadline is None else max(1.0, deadline - time.monotonic())
        return self.wait(submitted.operation_id, on_progress=on_progress, timeout=remaining)

    # -- transport ----------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ExecutorUnavailable(
                f"executor at {self._http.base_url} unreachable ({type(exc).__name__})"
            ) from exc
        if response.is_success:
            return response.json()
        detail = _detail(response)
        code = response.status_code
        if code == 401:
            raise ConfigError("the executor rejected the token (check EXECUTOR_API_TOKEN)")
        if code == 404:
            raise OperationNotFound(detail)
        if code == 422:
            raise ConfigError(f"the executor rejected the request: {detail}")
        if code == 429:
            raise QueueFull(detail, retry_after=_retry_after(response))
        if code >= 500:
            raise ExecutorUnavailable(f"executor answered {code}: {detail}")
        raise ExecutorError(f"executor answered {code}: {detail}")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", "")
    except (ValueError, AttributeError):
        return response.text[:200]
    if isinstance(detail, list):
        return "; ".join(f"{d.get('field')}: {d.get('reason')}" for d in detail)
    return str(detail)


def _retry_after(response: httpx.Response) -> int:
    try:
        return max(1, int(response.headers.get("Retry-After", "5")))
    except ValueError:
        return 5


def _moved(before: OperationView, after: OperationView) -> bool:
    return before.status != after.status or before.progress != after.progress
