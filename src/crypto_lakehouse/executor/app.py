"""The FastAPI application: routes, error replies, request metrics.

Each route parses, calls the service or its store once, and shapes the reply. Errors
become replies in one place (`_install_error_handlers`): invalid input 422 with field and
reason (the input itself is never echoed), unknown operation 404, full queue 429 with
`Retry-After`, store down 503. `/health`, `/ready` and `/metrics` are open; every other
route, the OpenAPI document and `/docs` included, needs the bearer token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crypto_lakehouse import __version__
from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import ExecutorUnavailable, OperationNotFound, QueueFull
from crypto_lakehouse.executor.auth import OPEN_PATHS, BearerAuth, document_security
from crypto_lakehouse.executor.hot import (
    ID_PARAMETER,
    ID_PATTERN,
    SYNC_BODY,
    parse_sync_request,
    path_operation_id,
    with_request_schemas,
)
from crypto_lakehouse.executor.models import (
    ErrorView,
    HealthView,
    OperationPage,
    OperationStatus,
    OperationView,
    ReadyView,
    SubmitResponse,
    ValidationProblems,
)
from crypto_lakehouse.executor.runner import EngineFactory
from crypto_lakehouse.executor.service import Service, s5cmd_version
from crypto_lakehouse.executor.sources import InvalidField
from crypto_lakehouse.executor.submitter import Submitter
from crypto_lakehouse.executor.views import page_json, view_json
from crypto_lakehouse.observability.metrics import (
    EXECUTOR_METRICS,
    HTTP_REQUEST_DURATION,
    S5CMD_OPERATIONS,
    S5CMD_QUEUED_OPERATIONS,
    S5CMD_STAGING_CAP_BYTES,
    component_registry,
)
from crypto_lakehouse.transfer import TransferEngine

log = logging.getLogger("crypto_lakehouse.executor")

OperationId = Annotated[str, Path(pattern=ID_PATTERN, description="32 hex digits")]
MAX_BODY_BYTES = 64 * 1024
_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationProblems, "description": "Invalid input: field and reason"},
    503: {"model": ErrorView, "description": "The operation store is unavailable"},
}


def create_app(
    settings: Settings,
    *,
    insecure_dev: bool = False,
    engine_factory: EngineFactory = TransferEngine,
) -> FastAPI:
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

    app = FastAPI(
        title="crypto-lakehouse s5cmd executor",
        version=__version__,
        description="Runs s5cmd transfers into the lake for clients without s5cmd or credentials.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.include_router(_operations_router(service))
    app.include_router(_probe_router(service))
    app.get("/docs", include_in_schema=False)(_swagger)
    _install_error_handlers(app, service)

    open_paths = set(OPEN_PATHS)
    if settings.executor_public_docs:
        open_paths |= {"/docs", "/openapi.json"}
    build_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        return document_security(with_request_schemas(build_openapi()), OPEN_PATHS)

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BearerAuth, guard=service.guard, open_paths=open_paths)
    app.add_middleware(RequestMetrics)
    return app


def app_from_environment() -> FastAPI:
    """uvicorn's factory for `serve --workers N`: each worker process is a replica of its own,
    configured from the environment (a token is always required there)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    return create_app(Settings())


def _operations_router(service: Service) -> APIRouter:
    router = APIRouter(responses=_ERRORS)
    io = service.io
    submitter = Submitter(service.store, io, max_queue=service.settings.executor_max_queue)

    @router.post(
        "/sync",
        status_code=202,
        response_model=SubmitResponse,
        responses={429: {"model": ErrorView, "description": "Queue full; see Retry-After"}},
        openapi_extra={"requestBody": SYNC_BODY},
    )
    async def submit(raw: Request) -> Response:
        """Queue a sync or copy into the lake; 202 with the operation id."""
        request = parse_sync_request(await raw.body())
        spec = service.plan.spec(request)
        op_id = await submitter.create(request.operation_type.value, spec)
        service.runner.wake()
        reply = SubmitResponse(operation_id=op_id, status=OperationStatus.PENDING)
        return _json(reply, 202, {"Location": f"/operations/{op_id}"})

    @router.get(
        "/operations/{operation_id}",
        response_model=OperationView,
        responses={404: {"model": ErrorView}},
        openapi_extra={"parameters": [ID_PARAMETER]},
    )
    async def get_operation(raw: Request) -> Response:
        """Status, progress, summary, outcome counts and failed objects of one operation."""
        operation_id = path_operation_id(raw)
        return _raw(view_json(await io(service.store.get, operation_id)))

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


def _raw(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _json(model: BaseModel, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise once with pydantic (FastAPI would validate the reply model again first)."""
    return Response(
        model.model_dump_json(), status_code=status, headers=headers, media_type="application/json"
    )


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


def _install_error_handlers(app: FastAPI, service: Service) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            loc = [str(p) for p in error.get("loc", ())]
            field = ".".join(loc[1:] if loc[:1] == ["body"] and len(loc) > 1 else loc)
            reason = str(error.get("msg", "invalid")).removeprefix("Value error, ")
            problems.append(
                {"field": field, "reason": service.redactor(reason), "type": error.get("type", "")}
            )
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(InvalidField)
    async def rejected(_: Request, exc: InvalidField) -> JSONResponse:
        problem = {"field": exc.field, "reason": exc.reason, "type": "not_allowed"}
        return JSONResponse({"detail": [problem]}, status_code=422)

    @app.exception_handler(QueueFull)
    async def full(_: Request, exc: QueueFull) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)}
        return JSONResponse({"detail": str(exc)}, status_code=429, headers=headers)

    @app.exception_handler(OperationNotFound)
    async def missing(_: Request, exc: OperationNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ExecutorUnavailable)
    async def unavailable(_: Request, exc: ExecutorUnavailable) -> JSONResponse:
        log.error("store unavailable: %s", service.redactor(str(exc)))
        return JSONResponse(
            {"detail": "operation store unavailable"}, status_code=503, headers={"Retry-After": "5"}
        )

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s", type(exc).__name__)
        return JSONResponse({"detail": "internal error"}, status_code=500)


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
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                response = JSONResponse({"detail": "request body too large"}, status_code=413)
                await response(scope, receive, send_with_status)
                return
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or (
                "unauthenticated" if status == 401 else "unmatched"
            )
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            HTTP_REQUEST_DURATION.labels(method, template, str(status)).observe(
                time.perf_counter() - start
            )
