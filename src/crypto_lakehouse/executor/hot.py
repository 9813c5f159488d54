"""The two hot routes, `POST /sync` and `GET /operations/{id}`, without the framework.

Clients poll `GET /operations/{id}` and submit in bursts. FastAPI's routing, parameter and
body machinery and its middlewares cost most of those requests' CPU, so `HotRoutes`
serves them as plain ASGI and validates input here with the same pydantic models and the
same rules - a failure is the same `RequestValidationError` (422, field and reason) -
while the OpenAPI document still declares the parameter and the body (`ID_PARAMETER`,
`SYNC_BODY`).
"""

from __future__ import annotations

import functools
import re
import time
from typing import Any
from urllib.parse import parse_qsl

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from crypto_lakehouse.executor.batcher import Batcher
from crypto_lakehouse.executor.completions import WAIT_POLL_SECONDS
from crypto_lakehouse.executor.models import (
    MAX_WAIT_SECONDS,
    OperationStatus,
    SubmitResponse,
    SyncRequest,
)
from crypto_lakehouse.executor.objects import ObjectRow
from crypto_lakehouse.executor.problems import MAX_SYNC_BODY_BYTES, BodyTooLarge, problem_reply
from crypto_lakehouse.executor.service import Service
from crypto_lakehouse.executor.store import OperationRecord
from crypto_lakehouse.executor.views import view_json

SYNC_PATH = "/sync"
OPERATION_PATH = "/operations/{operation_id}"
ID_PATTERN = "^[0-9a-f]{32}$"
_ID = re.compile(ID_PATTERN)
ID_PARAMETER = {
    "name": "operation_id",
    "in": "path",
    "required": True,
    "description": "32 hex digits",
    "schema": {"type": "string", "pattern": ID_PATTERN, "title": "Operation Id"},
}
WAIT_PARAMETER = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": f"Long-poll: answer as soon as the operation is completed, failed or "
    f"cancelled, or after this many seconds (0-{MAX_WAIT_SECONDS:.0f}; default 0: at once).",
    "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_SECONDS, "default": 0},
}
SYNC_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SyncRequest"}}},
}


def parse_sync_request(body: bytes) -> SyncRequest:
    """Validate the JSON bytes; RequestValidationError with `body.*` locations otherwise."""
    try:
        return SyncRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def check_operation_id(operation_id: str) -> str:
    """The id if it is 32 hex digits; RequestValidationError (a path parameter's) otherwise."""
    if not _ID.match(operation_id):
        raise RequestValidationError(
            [
                {
                    "loc": ("path", "operation_id"),
                    "msg": f"String should match pattern '{ID_PATTERN}'",
                    "type": "string_pattern_mismatch",
                }
            ]
        )
    return operation_id


def parse_wait(query_string: bytes) -> float:
    """The `wait` query parameter in seconds (0 when absent); RequestValidationError when it
    is not a number from 0 to MAX_WAIT_SECONDS."""
    values = [v for k, v in parse_qsl(query_string.decode("latin-1"), True) if k == "wait"]
    if not values:
        return 0.0
    try:
        seconds = float(values[-1])
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT_SECONDS:  # also false for nan
        raise RequestValidationError(
            [
                {
                    "loc": ("query", "wait"),
                    "msg": f"Input should be a number from 0 to {MAX_WAIT_SECONDS:.0f}",
                    "type": "less_than_equal",
                }
            ]
        )
    return seconds


def with_request_schemas(schema: dict[str, Any]) -> dict[str, Any]:
    """Add `SyncRequest` (and the models it uses) to the document's components."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    generated = SyncRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in generated.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault("SyncRequest", generated)
    return schema


class HotRoutes:
    """`POST /sync` and `GET /operations/{id}` as plain ASGI.

    The executor's app sends these two straight here (behind the same bearer check, body cap
    and request metrics as every route), skipping FastAPI's routing, dependency solving,
    exception middlewares and Response objects; the FastAPI routes of the same paths call
    `submit` and `operation` too, so both ways answer alike. Submits share transactions and
    reads share statements (`Batcher`).
    """

    def __init__(self, service: Service) -> None:
        self.service = service
        max_queue = service.settings.executor_max_queue
        store = service.store
        self.submissions: Batcher[tuple[str, dict[str, Any]], str] = Batcher(
            functools.partial(store.create_many, max_queue=max_queue), service.io
        )
        self.reads: Batcher[str, OperationRecord] = Batcher(store.get_many, service.io)

    @staticmethod
    def template(scope: Scope) -> str | None:
        """The route template of a request for one of the hot routes, else None."""
        path, method = scope["path"], scope["method"]
        if path == SYNC_PATH:
            return SYNC_PATH if method == "POST" else None
        if method == "GET" and path.startswith("/operations/"):
            rest = path[len("/operations/") :]
            return OPERATION_PATH if rest and "/" not in rest else None
        return None

    async def submit(self, body: bytes) -> tuple[bytes, str]:
        """Validate, plan and durably queue one request: the 202 reply body and the new id.

        A request naming its objects is queued with them in a transaction of its own."""
        request = parse_sync_request(body)
        spec = self.service.plan.spec(request)
        if request.objects:
            rows = [ObjectRow(o.key, o.size, o.sha256) for o in request.objects]
            store, max_queue = self.service.store, self.service.settings.executor_max_queue
            op_id = await self.service.io(
                store.create_listed,
                request.operation_type.value,
                spec,
                rows,
                max_queue=max_queue,
            )
        else:
            op_id = await self.submissions((request.operation_type.value, spec))
        self.service.runner.wake()
        reply = SubmitResponse(operation_id=op_id, status=OperationStatus.PENDING)
        return reply.model_dump_json().encode(), op_id

    async def operation(self, operation_id: str, wait: float = 0.0) -> bytes:
        """The `OperationView` JSON of one operation; OperationNotFound, or 422 for a bad id.

        With `wait` > 0, not before it has ended or `wait` seconds have passed: this
        replica's runner wakes the waiter when it finishes the operation, and the store is
        re-read every WAIT_POLL_SECONDS for an end written by another replica.
        """
        record = await self.reads(check_operation_id(operation_id))
        deadline = time.monotonic() + wait
        while not OperationStatus(record.status).terminal:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await self.service.completions.wait(operation_id, min(remaining, WAIT_POLL_SECONDS))
            record = await self.reads(operation_id)
        return view_json(record)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json")]
        try:
            if scope["path"] == SYNC_PATH:
                body, op_id = await self.submit(await _body(receive))
                status = 202
                headers.append((b"location", f"/operations/{op_id}".encode()))
            else:
                operation_id = scope["path"].rsplit("/", 1)[1]
                wait = parse_wait(scope.get("query_string", b""))
                body, status = await self.operation(operation_id, wait), 200
        except _Disconnected:
            return
        except Exception as exc:
            await problem_reply(exc, self.service.redactor)(scope, receive, send)
            return
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _Disconnected(Exception):
    """The client went away before its request body arrived."""


async def _body(receive: Receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_SYNC_BODY_BYTES:  # a chunked body has no Content-Length to check up front
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
