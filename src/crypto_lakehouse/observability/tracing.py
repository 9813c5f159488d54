"""OpenTelemetry traces of the executor's HTTP requests, exported over OTLP when asked.

Off by default: nothing is created, wrapped or exported unless an OTLP endpoint is set
with OpenTelemetry's own variables (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or
`OTEL_EXPORTER_OTLP_ENDPOINT` plus `/v1/traces`), read once when the first app is built;
the cluster sets them to Jaeger's collector. The exporter speaks OTLP over HTTP/protobuf
and also reads the SDK's other standard variables (headers, timeout, service name).

Each request becomes one SERVER span named `<METHOD> <route template>` with the HTTP
semantic-convention attributes; an incoming W3C `traceparent` makes it a child of the
caller's span, so a flow run's trace continues into the executor.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from crypto_lakehouse import __version__

SERVICE_NAME = "s5cmd-executor"
_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_UNSET: Any = object()
_provider: TracerProvider | None = _UNSET


def otlp_endpoint(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """The configured OTLP endpoint, or None when tracing is off."""
    for name in _ENDPOINT_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def provider_from_environment(service_name: str = SERVICE_NAME) -> TracerProvider | None:
    """A provider that batches spans to the OTLP endpoint; None when none is configured."""
    if otlp_endpoint() is None:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    resource = Resource.create({"service.name": service_name, "service.version": __version__})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def use(provider: TracerProvider | None) -> None:
    """Set the provider apps built from now on trace to (None: tracing off)."""
    global _provider
    _provider = provider


def active_provider() -> TracerProvider | None:
    """The provider in use; the first call reads the environment."""
    global _provider
    if _provider is _UNSET:
        _provider = provider_from_environment()
    return _provider


def request_tracing() -> dict[str, Any] | None:
    """Keyword arguments for `RequestTracing` (`app.add_middleware(RequestTracing, **kw)`),
    or None when tracing is off, so an untraced app carries no extra layer at all."""
    provider = active_provider()
    if provider is None:
        return None
    return {"tracer": provider.get_tracer("crypto_lakehouse.executor", __version__)}


class RequestTracing:
    """Pure ASGI middleware: one SERVER span per HTTP request."""

    def __init__(self, app: ASGIApp, *, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        with self.tracer.start_as_current_span(
            method,
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        ) as span:
            status = 500

            async def send_with_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_with_status)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if route:  # known only after routing
                    span.update_name(f"{method} {route}")
                    span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
