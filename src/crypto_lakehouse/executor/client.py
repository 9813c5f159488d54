"""`ExecutorClient`: submit, status, wait (with progress), cancel - over httpx.

HTTP failures are translated here, once, into the project's errors: unreachable or 5xx
-> ExecutorUnavailable (transient), 429 -> QueueFull with the server's Retry-After,
404 -> OperationNotFound, 401 and 422 -> ConfigError (a wrong token or a bad request will
not get better by retrying).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
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
    MAX_OBJECT_PAGE,
    MAX_WAIT_SECONDS,
    ObjectResultPage,
    ObjectResultView,
    OperationPage,
    OperationStatus,
    OperationView,
    SubmitResponse,
    SyncRequest,
)
from crypto_lakehouse.observability import tracing

ProgressCallback = Callable[[OperationView], None]
LONG_POLL_SECONDS = 20.0  # one long-poll's wait (the server answers sooner when it ends)


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

    def status(self, operation_id: str, *, wait: float = 0.0) -> OperationView:
        """One operation's view; with `wait` (seconds, at most MAX_WAIT_SECONDS) the server
        answers once it has ended, or after `wait` seconds."""
        if wait <= 0:
            return OperationView.model_validate(self._call("GET", f"/operations/{operation_id}"))
        wait = min(wait, MAX_WAIT_SECONDS)
        reply = self._call(
            "GET",
            f"/operations/{operation_id}",
            params={"wait": f"{wait:g}"},
            timeout=self._http.timeout.read + wait if self._http.timeout.read else None,
        )
        return OperationView.model_validate(reply)

    def objects(
        self, operation_id: str, *, after: str = "", limit: int = MAX_OBJECT_PAGE
    ) -> ObjectResultPage:
        """One page of a listed operation's per-object results, in key order."""
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        return ObjectResultPage.model_validate(
            self._call("GET", f"/operations/{operation_id}/objects", params=params)
        )

    def iter_objects(self, operation_id: str) -> Iterator[ObjectResultView]:
        """Every per-object result of a listed operation, a page at a time."""
        after = ""
        while True:
            page = self.objects(operation_id, after=after)
            yield from page.items
            if page.next_after is None:
                return
            after = page.next_after

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
        stop: Callable[[], bool] | None = None,
        long_poll: float = LONG_POLL_SECONDS,
    ) -> OperationView:
        """Long-poll until the operation is completed, failed or cancelled; its last view.

        Each request waits on the server (`?wait=`), which answers the moment the operation
        ends, or after `long_poll` seconds; with `on_progress` it waits at most `poll_seconds`,
        so progress is reported that often (every view that differs from the previous one).
        `stop` is asked between requests: when it says True the current view is returned
        as it is. Transient errors
        (a replica restarting) are retried until `timeout`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: OperationView | None = None
        slice_seconds = poll_seconds if on_progress is not None else long_poll
        while True:
            wait = slice_seconds
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            asked = time.monotonic()
            try:
                view = self.status(operation_id, wait=wait)
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
            if stop is not None and stop():
                return view
            if deadline is not None and time.monotonic() > deadline:
                raise ExecutorError(
                    f"operation {operation_id} still {view.status} after {timeout:.0f}s"
                )
            if time.monotonic() - asked < min(wait, poll_seconds) / 2:
                time.sleep(poll_seconds)  # a server that does not long-poll answers at once

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
        # The caller's span (a flow run's transfer step) as `traceparent`: the replica's
        # request span joins the flow run's trace. Empty while tracing is off.
        headers = tracing.trace_headers()
        try:
            response = self._http.request(method, path, headers=headers or None, **kwargs)
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
