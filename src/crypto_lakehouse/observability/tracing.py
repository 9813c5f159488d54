"""OpenTelemetry traces of the executor's HTTP requests and of each flow run's steps,
exported over OTLP when asked.

Off by default: nothing is created, wrapped or exported unless an OTLP endpoint is set
with OpenTelemetry's own variables (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or
`OTEL_EXPORTER_OTLP_ENDPOINT` plus `/v1/traces`), read once on first use; the cluster
sets them to Jaeger's collector. The exporter speaks OTLP over HTTP/protobuf and also
reads the SDK's other standard variables (headers, timeout, service name). While off,
this module imports no OpenTelemetry code and `step()` hands out one shared do-nothing
context, so the lake layer can mark its steps at no cost.

Each executor request becomes one SERVER span named `<METHOD> <route template>` with the
HTTP semantic-convention attributes; an incoming W3C `traceparent` makes it a child of
the caller's span, so a flow run's trace continues into the executor.

A flow run's steps are INTERNAL spans opened with `step("ingest.batch", files=...)`.
`install()` (called when the flow modules are imported, before any run starts) also
makes the provider OpenTelemetry's global one, which Prefect's own flow-run and task-run
spans use: a step's span then nests under its task run's span, under its flow run's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from crypto_lakehouse import __version__

if TYPE_CHECKING:  # the SDK and the API load only when tracing is on
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

SERVICE_NAME = "s5cmd-executor"
FLOWS_SERVICE_NAME = "crypto-lakehouse-flows"
ATTRIBUTE_PREFIX = "lakehouse."  # every step attribute's namespace
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
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        # OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) wins when set
        resource = resource.merge(Resource({"service.name": service_name}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def use(provider: TracerProvider | None) -> None:
    """Set the provider apps built and steps opened from now on trace to (None: off)."""
    global _provider, _step_tracer
    _provider = provider
    _step_tracer = None


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
        from opentelemetry import propagate
        from opentelemetry.trace import SpanKind, Status, StatusCode

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


# -- flow-run steps ------------------------------------------------------------------------------


class StepSpan(Protocol):
    """What a step's code may do with its span: add what it learnt while working."""

    def set_attribute(self, key: str, value: Any) -> None: ...

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None: ...


class _Untraced:
    """The span every step gets while tracing is off: it keeps nothing."""

    def set_attribute(self, key: str, value: Any) -> None:
        return None

    def add_event(self, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        return None


_UNTRACED = contextlib.nullcontext(_Untraced())  # reusable: hands out the same object
_step_tracer: trace.Tracer | None = None


def install(provider: TracerProvider | None = _UNSET) -> TracerProvider | None:
    """Use `provider` (default: the one the environment asks for) and make it
    OpenTelemetry's global provider, so Prefect's flow-run and task-run spans go to it too.

    Call it before a flow run starts (the flow modules call it when imported); while
    tracing is off it only reads two environment variables. The global provider can be
    set once per process: a later, different provider serves `step()` and the executor,
    not Prefect's spans.
    """
    global _provider
    if provider is not _UNSET:
        use(provider)
    elif _provider is _UNSET:
        _provider = provider_from_environment(FLOWS_SERVICE_NAME)
    chosen = active_provider()
    if chosen is not None:
        from opentelemetry import trace as api

        if isinstance(api.get_tracer_provider(), api.ProxyTracerProvider):
            api.set_tracer_provider(chosen)
    return chosen


def step(name: str, **attributes: Any) -> contextlib.AbstractContextManager[StepSpan]:
    """A span around one step of a flow run, child of the current span (task run, step).

    `attributes` become `lakehouse.<key>` (None values are left out): say what a reader
    of the trace needs (flow run id, table, partition, counts), never a secret or a URL.
    Counts known only at the end go on the span the context yields
    (`note(span, rows=n)`). An exception leaving the block is
    recorded on the span, which ends with status ERROR.
    """
    if _provider is None:  # off: one shared object, nothing allocated
        return _UNTRACED
    tracer = _step_tracer or _tracer_for_steps()
    if tracer is None:
        return _UNTRACED
    return tracer.start_as_current_span(name, attributes=attributes_of(attributes))


def note(span: StepSpan, **values: Any) -> None:
    """Add what a step learnt while working (counts) to its span, as `lakehouse.<key>`."""
    if isinstance(span, _Untraced):
        return
    for key, value in values.items():
        if value is not None:
            span.set_attribute(ATTRIBUTE_PREFIX + key, value)


def attributes_of(values: Mapping[str, Any]) -> dict[str, Any]:
    """Step attributes under the `lakehouse.` namespace, None values left out."""
    return {ATTRIBUTE_PREFIX + k: v for k, v in values.items() if v is not None}


def trace_headers() -> dict[str, str]:
    """W3C `traceparent` (and `tracestate`) of the current span, for an outgoing request,
    so the executor's spans join the flow run's trace; empty while tracing is off."""
    if _provider is None or _provider is _UNSET:
        return {}
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _tracer_for_steps() -> trace.Tracer | None:
    global _step_tracer
    provider = active_provider()
    if provider is None:
        return None
    _step_tracer = provider.get_tracer("crypto_lakehouse.flows", __version__)
    return _step_tracer
