"""Executor requests become OpenTelemetry spans: in memory for the span shapes, and over
real OTLP/HTTP to a receiver the test runs, as the exporter sends them to Jaeger."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from crypto_lakehouse.config import Settings
from crypto_lakehouse.executor.app import create_app
from crypto_lakehouse.observability import tracing

TOKEN = "t" * 40
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        executor_api_token=TOKEN,
        executor_database_url=f"sqlite:///{tmp_path / 'ops.db'}",
        executor_max_operations=0,  # API only: nothing runs the queued operation
        lake_endpoint="http://127.0.0.1:9",
        lake_access_key="a",
        lake_secret_key="b",
        lakehouse_home=tmp_path / "home",
    )


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.use(None)


def test_each_request_is_one_server_span_named_by_its_route(
    spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {
        "source": {"bucket": "source-data", "prefix": "data/"},
        "destination": {"bucket": "bronze", "prefix": "copy/"},
    }
    with TestClient(create_app(_settings(tmp_path))) as client:
        assert client.get("/health").status_code == 200
        caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
        submitted = client.post("/sync", json=body, headers={**auth, **caller})
        assert submitted.status_code == 202, submitted.text
        op = submitted.json()["operation_id"]
        assert client.get(f"/operations/{op}", headers=auth).status_code == 200
        assert client.get("/operations", headers=auth).status_code == 200
        assert client.get("/operations").status_code == 401
    finished = spans.get_finished_spans()
    names = [s.name for s in finished]
    assert names == [
        "GET /health",
        "POST /sync",
        "GET /operations/{operation_id}",
        "GET /operations",
        "GET",  # refused before routing: no route to name it by
    ]
    assert {s.kind for s in finished} == {SpanKind.SERVER}
    by_name = {s.name: s for s in finished}
    submit = by_name["POST /sync"]
    assert submit.attributes["http.request.method"] == "POST"
    assert submit.attributes["http.route"] == "/sync"
    assert submit.attributes["http.response.status_code"] == 202
    # The caller's W3C trace context: the span continues the caller's trace.
    assert format(submit.context.trace_id, "032x") == CALLER_TRACE
    assert submit.parent is not None and format(submit.parent.span_id, "016x") == CALLER_SPAN
    assert by_name["GET /health"].parent is None
    assert finished[-1].attributes["http.response.status_code"] == 401


def test_tracing_is_off_without_an_endpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert tracing.provider_from_environment() is None
    tracing.use(None)
    app = create_app(_settings(tmp_path))
    assert not [m for m in app.user_middleware if m.cls is tracing.RequestTracing]
    assert not isinstance(app.hot, tracing.RequestTracing)


class _Receiver(BaseHTTPRequestHandler):
    """A stand-in for Jaeger's OTLP/HTTP port: keeps every decoded export request."""

    received: list[tuple[str, ExportTraceServiceRequest]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        type(self).received.append((self.path, request))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def test_spans_are_exported_over_otlp_http_when_an_endpoint_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        provider = tracing.provider_from_environment()
        assert provider is not None
        tracing.use(provider)
        with TestClient(create_app(_settings(tmp_path))) as client:
            assert client.get("/health").status_code == 200
        assert provider.force_flush(10_000)
        provider.shutdown()
    finally:
        tracing.use(None)
        server.shutdown()
        server.server_close()
    [(path, request)] = _Receiver.received
    assert path == "/v1/traces"
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}[
        "service.name"
    ]
    assert service == tracing.SERVICE_NAME
    names = [s.name for scope in resource_spans.scope_spans for s in scope.spans]
    assert names == ["GET /health"]


def test_executor_requests_carry_the_callers_trace(spans: InMemorySpanExporter) -> None:
    from crypto_lakehouse.executor.client import ExecutorClient

    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("traceparent"))
        return httpx.Response(200, json={"items": [], "total": 0, "limit": 50, "offset": 0})

    client = ExecutorClient("http://executor.test", TOKEN, transport=httpx.MockTransport(answer))
    client.list()  # outside any span: no trace to join
    with tracing.step("ingest.transfer", files=1):
        client.list()
    (step,) = [s for s in spans.get_finished_spans() if s.name == "ingest.transfer"]
    assert seen[0] is None
    _version, trace_id, parent_id, _flags = (seen[1] or "").split("-")
    assert (trace_id, parent_id) == (
        f"{step.context.trace_id:032x}",
        f"{step.context.span_id:016x}",
    )
