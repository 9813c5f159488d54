"""The FastAPI application: routes, error replies, request metrics.

Each route parses, calls the service or its store once, and shapes the reply; the two hot
ones (`POST /sync`, `GET /operations/{id}`) are served by `HotRoutes` without FastAPI's
per-request machinery. Errors become replies in one place (`problems.problem_reply`).
`/health`, `/ready` and `/metrics` are open; every other route, the OpenAPI document and
`/docs` included, needs the bearer token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crypto_lakehouse import __version__
from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import ExecutorUnavailable
from crypto_lakehouse.executor.auth import OPEN_PATHS, BearerAuth, document_security
from crypto_lakehouse.executor.hot import (
    ID_PARAMETER,
    ID_PATTERN,
    OPERATION_PATH,
    SYNC_BODY,
    SYNC_PATH,
    WAIT_PARAMETER,
    HotRoutes,
    parse_wait,
    with_request_schemas,
)
from crypto_lakehouse.executor.models import (
    MAX_OBJECT_PAGE,
    ErrorView,
    HealthView,
    ObjectResultPage,
    OperationPage,
    OperationStatus,
    OperationView,
    ReadyView,
    SubmitResponse,
    ValidationProblems,
)
from crypto_lakehouse.executor.problems import HANDLED, body_cap, problem_reply, too_large
from crypto_lakehouse.executor.runner import EngineFactory
from crypto_lakehouse.executor.service import Service, s5cmd_version
from crypto_lakehouse.executor.views import objects_page_json, page_json, view_json
from crypto_lakehouse.observability.metrics import (
    EXECUTOR_METRICS,
    HTTP_REQUEST_DURATION,
    S5CMD_OPERATIONS,
    S5CMD_QUEUED_OPERATIONS,
    S5CMD_STAGING_CAP_BYTES,
    component_registry,
)
from crypto_lakehouse.observability.tracing import RequestTracing, request_tracing
from crypto_lakehouse.transfer import TransferEngine

log = logging.getLogger("crypto_lakehouse.executor")

OperationId = Annotated[str, Path(pattern=ID_PATTERN, description="32 hex digits")]
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
_AFTER = "The last key of the previous page (its `next_after`)"
_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
_HOT = {SYNC_PATH, OPERATION_PATH}
_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationProblems, "description": "Invalid input: field and reason"},
    503: {"model": ErrorView, "description": "The operation store is unavailable"},
}


class ExecutorApp(FastAPI):
    """FastAPI, except that requests for the hot routes go to `hot` (set by `create_app`)."""

    hot: ASGIApp | None = None
    hot_routes: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.hot is not None and scope["type"] == "http":
            template = HotRoutes.template(scope)
            if template is not None:
                scope["route"] = self.hot_routes[template]  # for RequestMetrics' label
                await self.hot(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    insecure_dev: bool = False,
    engine_factory: EngineFactory = TransferEngine,
) -> ExecutorApp:
    """Build one replica's app; ConfigError when the settings cannot run a safe service."""
    service = Service.from_settings(
        settings, insecure_dev=insecure_dev, engine_factory=engine_factory
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        S5CMD_STAGING_CAP_BYTES.set(settings.staging_cap_bytes)
        s5cmd_version()  # once, before the first probe asks
        service.start()
        try:
            yield
        finally:
            service.stop()

    app = ExecutorApp(
        title="crypto-lakehouse s5cmd executor",
        version=__version__,
        description="Runs s5cmd transfers into the lake for clients without s5cmd or credentials.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    hot = HotRoutes(service)
    operations = _operations_router(service, hot)
    app.include_router(operations)
    app.include_router(_probe_router(service))
    app.get("/docs", include_in_schema=False)(_swagger)
    for error in (*HANDLED, Exception):
        app.add_exception_handler(error, _problem_handler(service))

    open_paths = set(OPEN_PATHS)
    if settings.executor_public_docs:
        open_paths |= {"/docs", "/openapi.json"}
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        return document_security(with_request_schemas(build_openapi()), OPEN_PATHS)

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BearerAuth, guard=service.guard, open_paths=open_paths)
    app.add_middleware(RequestMetrics)
    app.hot = RequestMetrics(BearerAuth(hot, guard=service.guard, open_paths=open_paths))
    tracing = request_tracing()  # None unless an OTLP endpoint is configured
    if tracing is not None:
        app.add_middleware(RequestTracing, **tracing)
        app.hot = RequestTracing(app.hot, **tracing)
    app.hot_routes = {r.path: r for r in operations.routes if getattr(r, "path", None) in _HOT}
    return app


def app_from_environment() -> ExecutorApp:
    """uvicorn's factory for `serve --workers N`: each worker process is a replica of its own,
    configured from the environment (a token is always required there)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    return create_app(Settings())


def _operations_router(service: Service, hot: HotRoutes) -> APIRouter:
    router = APIRouter(responses=_ERRORS)
    io = service.io

    @router.post(
        SYNC_PATH,
        status_code=202,
        response_model=SubmitResponse,
        responses={429: {"model": ErrorView, "description": "Queue full; see Retry-After"}},
        openapi_extra={"requestBody": SYNC_BODY},
    )
    async def submit(raw: Request) -> Response:
        """Queue a sync or copy into the lake; 202 with the operation id."""
        body, op_id = await hot.submit(await raw.body())
        return _raw(body, 202, {"Location": f"/operations/{op_id}"})

    @router.get(
        OPERATION_PATH,
        response_model=OperationView,
        responses={404: {"model": ErrorView}},
        openapi_extra={"parameters": [ID_PARAMETER, WAIT_PARAMETER]},
    )
    async def get_operation(raw: Request) -> Response:
        """Status, progress, summary, outcome counts and failed objects of one operation;
        with `wait`, answered once it has ended (or after `wait` seconds)."""
        wait = parse_wait(raw.scope.get("query_string", b""))
        return _raw(await hot.operation(raw.path_params["operation_id"], wait))

    @router.get(
        "/operations/{operation_id}/objects",
        response_model=ObjectResultPage,
        responses={404: {"model": ErrorView}},
    )
    async def operation_objects(
        operation_id: OperationId,
        after: Annotated[str, Query(max_length=1024, pattern=_NO_CONTROL, description=_AFTER)] = "",
        limit: Annotated[int, Query(ge=1, le=MAX_OBJECT_PAGE)] = 1000,
    ) -> Response:
        """The listed objects' results in key order, a page at a time; final once the
        operation's `status` on the page is completed, failed or cancelled."""
        record = await io(service.store.get, operation_id)  # first: then the rows are final
        rows = await io(service.store.objects, operation_id, after=after, limit=limit)
        return _raw(objects_page_json(record, rows, limit))

    @router.get("/operations", response_model=OperationPage)
    async def list_operations(
        status: OperationStatus | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    ) -> Response:
        """Operations newest first, optionally only those in one status."""
        wanted = status.value if status else None
        records, total = await io(service.store.list, status=wanted, limit=limit, offset=offset)
        return _raw(page_json(records, total, limit, offset))

    @router.post(
        "/operations/{operation_id}/cancel",
        response_model=OperationView,
        responses={
            202: {"model": OperationView, "description": "Running: its runner is stopping it"},
            404: {"model": ErrorView},
            409: {"model": ErrorView, "description": "Already completed or failed"},
        },
    )
    async def cancel(operation_id: OperationId) -> Response:
        """Cancel: pending ones at once, running ones as soon as their runner notices."""
        record, cancelled_now = await io(service.store.request_cancel, operation_id)
        if cancelled_now:
            S5CMD_OPERATIONS.labels(operation=record.operation_type, status="cancelled").inc()
        if record.status in (OperationStatus.COMPLETED, OperationStatus.FAILED):
            return JSONResponse({"detail": f"operation already {record.status}"}, status_code=409)
        if record.status == OperationStatus.RUNNING:
            service.runner.cancel_local(operation_id)
            return _raw(view_json(record), 202)
        return _raw(view_json(record))

    return router


def _raw(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON serialised by us (FastAPI would validate the reply model again first)."""
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def _probe_router(service: Service) -> APIRouter:
    router = APIRouter()
    served = component_registry(EXECUTOR_METRICS)  # only the executor's own series

    @router.get("/health", response_model=HealthView)
    async def health() -> HealthView:
        """The process is alive; which s5cmd it runs."""
        return HealthView(
            status="alive",
            version=__version__,
            s5cmd_version=s5cmd_version(),
            replica=service.replica,
            auth="bearer" if service.guard.enabled else "disabled",
        )

    @router.get("/ready", response_model=ReadyView, responses={503: {"model": ReadyView}})
    def ready() -> ReadyView | JSONResponse:
        """Storage and the operation store both answer (503 otherwise)."""
        state = service.check_ready()
        view = ReadyView(ready=state.ready, storage=state.storage, database=state.database)
        return view if state.ready else JSONResponse(view.model_dump(), status_code=503)

    @router.get("/metrics", response_class=Response)
    def metrics() -> Response:
        """Prometheus text format; the queue gauge is read from the store at scrape time."""
        try:
            S5CMD_QUEUED_OPERATIONS.set(service.store.queue_depth())
        except ExecutorUnavailable as exc:
            log.warning("metrics: queue length unknown: %s", exc)
        return Response(generate_latest(served), media_type=CONTENT_TYPE_LATEST)

    return router


def _swagger() -> Response:
    return get_swagger_ui_html(openapi_url="/openapi.json", title="s5cmd executor")


def _problem_handler(service: Service) -> Any:
    async def handle(_: Request, exc: Exception) -> JSONResponse:
        return problem_reply(exc, service.redactor)

    return handle


class RequestMetrics:
    """Pure ASGI middleware: latency by method, route *template* and status; body size cap."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if not length.isdigit() or int(length) > body_cap(scope["path"]):
                await too_large()(scope, receive, send_with_status)
                return
            await self.app(scope, receive, send_with_status)
        finally:
            template = (
                "unauthenticated"
                if status == 401
                else getattr(scope.get("route"), "path", None) or "unmatched"
            )
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            HTTP_REQUEST_DURATION.labels(method, template, str(status)).observe(
                time.perf_counter() - start
            )
