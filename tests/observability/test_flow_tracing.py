"""A flow run's steps become OpenTelemetry spans under Prefect's own run spans.

The step helper is tested alone (shape, attributes, errors, and that it costs nothing and
loads nothing while tracing is off), then on a real `daily-update` run (ingest, silver and
gold as subflows) and a `maintain-lake` run against the test servers, whose spans an
in-memory exporter keeps.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from crypto_lakehouse.observability import tracing
from crypto_lakehouse.stack.postgres import PostgresServer
from crypto_lakehouse.stack.prefect_server import PrefectServer
from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import S3Storage

# The tiny archive of the flow tests (tests/flows has no package to import it from).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "flows"))
from flow_helpers import build_tiny_archive

DAY = date(2026, 5, 5)  # BTCUSDT and ETHUSDT 1h klines in the tiny archive

# OpenTelemetry's global provider (the one Prefect's run spans use) can be set once per
# process: every test here shares this one and reads what it kept since the test began.
EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    tracing.install(PROVIDER)
    if trace.get_tracer_provider() is not PROVIDER:
        pytest.fail("another OpenTelemetry provider was made global earlier in this process")
    EXPORTER.clear()
    yield EXPORTER
    tracing.use(None)  # steps off again; Prefect's spans still reach PROVIDER, unread


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def test_a_step_is_a_child_span_with_namespaced_attributes(
    spans: InMemorySpanExporter,
) -> None:
    tracer = PROVIDER.get_tracer("test")
    with tracer.start_as_current_span("outer") as outer:
        with tracing.step("ingest.batch", files=2, partition="p", flow_run_id=None) as span:
            tracing.note(span, bytes_verified=10, skipped=None)
            span.add_event("transfer slot leased")
        with pytest.raises(ValueError), tracing.step("silver.commit", table="t"):
            raise ValueError("refused")
    done = {s.name: s for s in spans.get_finished_spans()}
    batch = done["ingest.batch"]
    assert batch.parent is not None and batch.parent.span_id == outer.get_span_context().span_id
    assert _attrs(batch) == {
        "lakehouse.files": 2,
        "lakehouse.partition": "p",
        "lakehouse.bytes_verified": 10,
    }  # None values left out
    assert [e.name for e in batch.events] == ["transfer slot leased"]
    failed = done["silver.commit"]
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]


def test_outgoing_requests_carry_the_current_span_as_traceparent(
    spans: InMemorySpanExporter,
) -> None:
    with tracing.step("ingest.transfer") as span:
        headers = tracing.trace_headers()
    context = span.get_span_context()  # type: ignore[attr-defined]
    version, trace_id, span_id, _flags = headers["traceparent"].split("-")
    assert (version, trace_id, span_id) == (
        "00",
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
    )
    tracing.use(None)
    assert tracing.trace_headers() == {}


def test_the_service_name_is_the_flows_unless_otel_service_name_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    names = []
    for given in (None, "ingest-pods"):
        if given:
            monkeypatch.setenv("OTEL_SERVICE_NAME", given)
        provider = tracing.provider_from_environment(tracing.FLOWS_SERVICE_NAME)
        assert provider is not None
        names.append(provider.resource.attributes["service.name"])
        provider.shutdown()
    assert names == [tracing.FLOWS_SERVICE_NAME, "ingest-pods"]


def test_steps_cost_one_shared_object_and_load_nothing_while_tracing_is_off() -> None:
    code = (
        "import json, sys\n"
        "import crypto_lakehouse.lake.silver, crypto_lakehouse.lake.committer\n"
        "from crypto_lakehouse.observability import tracing\n"
        "a = tracing.step('x', files=1)\n"
        "with a as span:\n"
        "    tracing.note(span, rows=1)\n"
        "same = a is tracing.step('y') and span is tracing.step('z').__enter__()\n"
        "print(json.dumps([same, tracing.install(), sorted(sys.modules)]))"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    }
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    ).stdout
    same, provider, modules = json.loads(out)
    assert same is True
    assert provider is None
    assert [m for m in modules if m.startswith(("opentelemetry", "prefect", "starlette"))] == []


# -- a real flow run -------------------------------------------------------------------------------


@pytest.fixture
def lake_env(
    prefect_server: PrefectServer,
    postgres_server: PostgresServer,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
    binance_fixtures: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """The tiny archive on the source, an empty bronze bucket, a fresh catalog database,
    and the settings the flows read at entry (as environment variables)."""
    build_tiny_archive(S3Storage(source_server.endpoint()), source_bucket, binance_fixtures)
    database = f"cat_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(database)
    lake = lake_server.endpoint()
    env = {
        "SOURCE_ENDPOINT": source_server.url,
        "MINIO_ENDPOINT": lake_server.url,
        "MINIO_ACCESS_KEY": lake.access_key.get_secret_value(),  # type: ignore[union-attr]
        "MINIO_SECRET_KEY": lake.secret_key.get_secret_value(),  # type: ignore[union-attr]
        "CATALOG_DATABASE_URL": postgres_server.info.url(database),
        "BRONZE_BUCKET": lake_bucket,
        "STAGING_DIR": str(tmp_path / "staging"),
        "LAKEHOUSE_HOME": str(tmp_path / "home"),
        **prefect_server.client_env(),
    }
    monkeypatch.delenv("EXECUTOR_URL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {**env, "source_bucket": source_bucket}


def _one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def _parent(spans: list[ReadableSpan], span: ReadableSpan) -> ReadableSpan:
    assert span.parent is not None, span.name
    [parent] = [s for s in spans if s.context.span_id == span.parent.span_id]
    return parent


@pytest.mark.slow
def test_a_daily_update_trace_shows_each_step_of_each_subflow(
    spans: InMemorySpanExporter, lake_env: dict[str, str]
) -> None:
    from crypto_lakehouse.flows.maintenance import maintain_lake
    from crypto_lakehouse.flows.update import daily_update

    async def update() -> Any:
        state = await daily_update(
            start=DAY, markets=["spot"], data_types=["klines"],
            source_bucket=lake_env["source_bucket"], return_state=True,
        )  # fmt: skip
        return state, await state.result(raise_on_failure=False)

    state, result = asyncio.run(update())
    assert state.is_completed(), result
    done = list(spans.get_finished_spans())
    flows = [s for s in done if _attrs(s).get("prefect.run.type") == "flow"]
    assert len(flows) == 4  # daily-update and its three subflows
    [root] = [s for s in flows if s.parent is None]
    assert {s.context.trace_id for s in done} == {root.context.trace_id}  # one trace

    def flow_of(span: ReadableSpan) -> ReadableSpan:
        while _attrs(span).get("prefect.run.type") != "flow":
            span = _parent(done, span)
        return span

    # ingest: discovery, then per batch: manifest rows started, transfer, manifest write
    discover = _one(done, "ingest.discover")
    assert _attrs(_parent(done, discover)).get("prefect.run.type") == "task"
    ingest_flow = flow_of(discover)
    assert _parent(done, ingest_flow) is root
    run_id = _attrs(ingest_flow)["prefect.run.id"]
    d = _attrs(discover)
    assert d["lakehouse.flow_run_id"] == run_id
    assert d["lakehouse.source_bucket"] == lake_env["source_bucket"]
    assert (d["lakehouse.listed"], d["lakehouse.to_transfer"]) == (2, 2)
    batches = [s for s in done if s.name == "ingest.batch"]
    assert batches
    for batch in batches:
        task = _parent(done, batch)
        assert _attrs(task)["prefect.run.type"] == "task"
        assert task.name.startswith("transfer spot/daily/klines/1h/2026-05-05")
        assert _attrs(batch)["lakehouse.flow_run_id"] == run_id
        children = [s.name for s in done if s.parent and s.parent.span_id == batch.context.span_id]
        assert sorted(children) == ["ingest.mark_started", "ingest.record", "ingest.transfer"]
        assert [e.name for e in batch.events] == ["transfer slot leased"]
    assert sum(_attrs(b)["lakehouse.files"] for b in batches) == 2
    sizes = sum(_attrs(b)["lakehouse.bytes"] for b in batches)
    assert sizes > 0
    assert sum(_attrs(b)["lakehouse.bytes_verified"] for b in batches) == sizes
    records = [s for s in done if s.name == "ingest.record"]
    assert sum(_attrs(r)["lakehouse.verified"] for r in records) == 2
    transfers = [s for s in done if s.name == "ingest.transfer"]
    assert sum(_attrs(t)["lakehouse.ok"] for t in transfers) == 2

    # silver: one batch of one table, read into data files, committed, ledger written
    batch = _one(done, "silver.batch")
    silver_flow = flow_of(batch)
    assert silver_flow is not ingest_flow and _parent(done, silver_flow) is root
    b = _attrs(batch)
    assert b["lakehouse.flow_run_id"] == _attrs(silver_flow)["prefect.run.id"]
    assert (b["lakehouse.table"], b["lakehouse.files"]) == ("spot_klines", 2)
    assert (b["lakehouse.transformed"], b["lakehouse.rows"]) == (2, 48)
    read = _one(done, "silver.read")
    assert _parent(done, read) is batch
    r = _attrs(read)
    assert (r["lakehouse.table"], r["lakehouse.rows"]) == ("silver.spot_klines", 48)
    assert r["lakehouse.periods"] == f"{DAY}..{DAY}"
    assert r["lakehouse.data_files"] >= 1
    commit = _one(done, "silver.commit")
    assert _parent(done, commit) is batch
    assert _attrs(commit)["lakehouse.records"] == 2
    assert _attrs(commit)["lakehouse.batch_id"] == r["lakehouse.batch_id"]
    assert _parent(done, _one(done, "silver.ledger")) is commit

    # gold: the build with one event per table, then coverage, in the gold subflow
    gold = _one(done, "gold.build")
    gold_flow = flow_of(gold)
    assert gold_flow not in (ingest_flow, silver_flow)
    assert _attrs(gold)["lakehouse.flow_run_id"] == _attrs(gold_flow)["prefect.run.id"]
    tables = {e.attributes["lakehouse.table"]: e.attributes for e in gold.events}  # type: ignore[index]
    assert tables["gold.klines_1h"]["lakehouse.recomputed"] >= 2
    assert _attrs(gold)["lakehouse.tables"] == len(tables)
    assert flow_of(_one(done, "gold.coverage")) is gold_flow

    # nothing that looks like an address or a credential in any step's attributes
    secrets = {lake_env["MINIO_ACCESS_KEY"], lake_env["MINIO_SECRET_KEY"]}
    for span in done:
        if span.name.split(".")[0] in ("ingest", "silver", "gold"):
            for value in _attrs(span).values():
                assert "://" not in str(value) and not any(x in str(value) for x in secrets)

    # maintenance: one span per table under its task run
    spans.clear()
    report = maintain_lake(tables=["silver.spot_klines"], compact=True)
    [table] = [s for s in spans.get_finished_spans() if s.name == "maintenance.table"]
    t = _attrs(table)
    assert (t["lakehouse.table"], t["lakehouse.failed"]) == ("silver.spot_klines", False)
    assert t["lakehouse.files_before"] == report["tables"][0]["files_before"]
