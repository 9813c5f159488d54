"""Fan-out: one large ingest or silver build split into child flow runs that any worker runs.

    parent   count the work per (market, data type): the archive listing (ingest) or the
             pending silver query (silver). At most `min_files` files: run the usual body
             here, in this process, without the fan-out cost. Above: pack the groups into
             `children` shares of about equal files (largest first), start one child run per
             share with `run_deployment` on the child deployment's pool, wait, aggregate.
    child    `ingest-part` / `silver-part`: the usual body (`run_ingest`, `run_silver`) once
             per slice of its share (one market, some of its data types: a request is a
             market x data type product, so a slice never covers another share's files).
             Publishes its summary as the `fanout-part` artifact, which the parent reads.

Shares are disjoint by table (market x data type), so silver children never wait on each
other's table lock and every Iceberg commit stays the only writer of its table. The parent
ends Failed listing every child that did not complete (and the files the children list).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
from prefect import flow
from prefect.states import Failed

from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.flows.summary import IngestSummary
from crypto_lakehouse.flows.target import IngestRequest, IngestTarget
from crypto_lakehouse.lake.summary import SilverSummary

INGEST_PART_FLOW = "ingest-part"
SILVER_PART_FLOW = "silver-part"
INGEST_CHILD = "bronze-part"  # deployment names (flows/deployments.py SPECS)
SILVER_CHILD = "silver-part"
PART_ARTIFACT = "fanout-part"
DEFAULT_MIN_FILES = 2000  # fan out only above this many files
DEFAULT_CHILDREN = 4
POLL_SECONDS = 1.0
PICKUP_SECONDS = 300.0  # a child no worker started by then fails the parent
HEARTBEAT_SECONDS = 30  # workers run flows with PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30 (minimum)
SILENT_SECONDS = 90  # no heartbeat for this long: the run's process is gone, mark it Crashed
CRASH_AUTOMATION = "crash-silent-flow-runs"

Group = tuple[str, str]  # (market, data type): one silver table, one archive folder family
Slice = tuple[str, tuple[str, ...]]  # one market and some of its data types


@dataclass(frozen=True)
class Share:
    """One child's work: slices disjoint from every other share's, and their file count."""

    slices: tuple[Slice, ...]
    files: int

    @property
    def label(self) -> str:
        return "; ".join(f"{m} {','.join(d)}" for m, d in self.slices)


def split(counts: dict[Group, int], children: int) -> list[Share]:
    """Groups packed into at most `children` shares, largest group first into the share with
    the fewest files so far (longest-processing-time first); empty groups are left out."""
    if children < 1:
        raise ConfigError(f"children must be at least 1, got {children}")
    groups = sorted(((n, g) for g, n in counts.items() if n > 0), key=lambda x: (-x[0], x[1]))
    bins: list[tuple[int, list[Group]]] = [(0, []) for _ in range(min(children, len(groups)))]
    for files, group in groups:
        index = min(range(len(bins)), key=lambda i: (bins[i][0], i))
        total, members = bins[index]
        bins[index] = (total + files, [*members, group])
    shares = []
    for total, members in bins:
        by_market: dict[str, list[str]] = {}
        for market, data_type in sorted(members):
            by_market.setdefault(market, []).append(data_type)
        shares.append(Share(tuple((m, tuple(d)) for m, d in by_market.items()), total))
    return shares


@dataclass
class ChildRun:
    """One child flow run as the parent saw it end."""

    name: str
    flow_run_id: str
    share: str
    files: int
    state: str = ""
    message: str = ""
    worker: str | None = None  # the Prefect worker that ran it
    seconds: float | None = None  # running time (Prefect's total_run_time)
    pickup: float | None = None  # scheduled -> running: worker poll + flow-run process start
    summary: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED"


@dataclass
class FanOut:
    """What a parent did: fanned out or not, how long counting took, each child's end."""

    fanned_out: bool
    files: int  # counted before deciding
    count_seconds: float
    children: list[ChildRun] = field(default_factory=list)

    @property
    def failed(self) -> list[ChildRun]:
        return [c for c in self.children if not c.ok]

    def failure_message(self) -> str:
        return "failed children: " + ", ".join(
            f"{c.name} ({c.state.lower()}{': ' + c.message if c.message else ''})"
            for c in self.failed
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "fanned_out": self.fanned_out,
            "files": self.files,
            "count_seconds": round(self.count_seconds, 3),
            "children": [
                {k: v for k, v in vars(c).items() if k != "summary"} for c in self.children
            ],
        }


# -- merging the children's summaries ---------------------------------------------------------


def merge_ingest(parts: list[IngestSummary], run_id: str) -> IngestSummary:
    """One summary for the whole request: counts add up (the shares are disjoint)."""
    merged = IngestSummary(run_id=run_id)
    for part in parts:
        merged.source = merged.source or part.source
        merged.bronze = merged.bronze or part.bronze
        for name in ("listed", "listed_bytes", "transferred", "bytes_copied", "verified",
                     "replaced", "reverified", "skipped", "corrupt", "failed",
                     "missing_periods", "missing_days", "batches"):  # fmt: skip
            setattr(merged, name, getattr(merged, name) + getattr(part, name))
        merged.missing += part.missing
        merged.problems += part.problems
        for phase, seconds in part.phases.items():
            merged.phases[phase] = max(merged.phases.get(phase, 0.0), seconds)
    return merged


def merge_silver(parts: list[SilverSummary]) -> SilverSummary:
    """Counts add up; drift is the ledger's outstanding list, which every child reads whole."""
    merged = SilverSummary()
    for part in parts:
        for name in ("files", "transformed", "skipped", "superseded", "replaced", "rows",
                     "rejects", "duplicates", "line_mode"):  # fmt: skip
            setattr(merged, name, getattr(merged, name) + getattr(part, name))
        for table, rows in part.tables.items():
            merged.tables[table] = merged.tables.get(table, 0) + rows
        merged.corrupt += part.corrupt
        merged.failed += part.failed
        for key, count in part.recovered.items():
            merged.recovered[key] = merged.recovered.get(key, 0) + count
    seen: dict[str, dict[str, str]] = {}
    for part in parts:
        for item in part.drift:
            seen.setdefault(item["file"], item)
    merged.drift = list(seen.values())
    return merged


# -- children ---------------------------------------------------------------------------------


def narrow(request: IngestRequest, market: str, data_types: list[str]) -> IngestRequest:
    """`request` for one slice. Requested intervals shrink to those the slice publishes
    (none for a slice of funding rates): a query naming an unpublished interval is invalid."""
    from crypto_lakehouse.archive import ArchiveQuery

    published = {
        interval
        for *_, intervals in ArchiveQuery(
            markets=(market,), data_types=tuple(data_types), frequencies=tuple(request.frequencies)
        ).plan()
        for interval in intervals
    }
    kept = [i for i in request.intervals if i in published] if request.intervals else None
    fields = request.model_dump(exclude={"markets", "data_types", "intervals"})
    return IngestRequest(**fields, markets=[market], data_types=data_types, intervals=kept or None)


async def _publish_part(summary: dict[str, Any]) -> None:
    from prefect.artifacts import acreate_table_artifact

    await acreate_table_artifact(
        table=[summary], key=PART_ARTIFACT, description="This child's summary (for its parent)"
    )


@flow(name=INGEST_PART_FLOW, persist_result=False, validate_parameters=True)
async def ingest_part(request: IngestRequest | None, slices: list[Slice]) -> Any:
    """`ingest-archive` for one share: `request` narrowed to each slice's market and data
    types in turn (its unset fields take the deployment's, as in `ingest-archive`).
    Failed when a file is corrupt or failed, like `ingest-archive`."""
    from prefect.runtime import flow_run

    from crypto_lakehouse.flows.ingest import _publish, deployed_request, run_ingest
    from crypto_lakehouse.observability.push import pushing

    settings = Settings()
    run_id = str(flow_run.id or "local")
    parts = []
    async with pushing(settings.pushgateway_url):
        whole = await deployed_request(request)
        for market, data_types in slices:
            narrowed = narrow(whole, market, list(data_types))
            parts.append(await run_ingest(narrowed, settings, f"{run_id}/{market}"))
    summary = merge_ingest(parts, run_id)
    summary.seconds = sum(p.seconds for p in parts)
    await asyncio.gather(_publish(summary), _publish_part(summary.as_dict()))
    if not summary.ok:
        return Failed(message=summary.message(), data=summary.as_dict())
    return summary.as_dict()


@flow(name=SILVER_PART_FLOW, persist_result=False, validate_parameters=True)
async def silver_part(
    slices: list[Slice], symbols: list[str] | None = None, parallel: int = 2
) -> Any:
    """`build-silver` for one share's tables, without crash recovery (the parent did it)."""
    from crypto_lakehouse.flows.silver import run_silver
    from crypto_lakehouse.observability.push import push_at_end

    settings = Settings()
    parts = []
    for market, data_types in slices:
        parts.append(
            await run_silver(
                settings, markets=[market], data_types=list(data_types), symbols=symbols,
                parallel=parallel, recover=False,
            )
        )  # fmt: skip
    summary = merge_silver(parts)
    summary.seconds = sum(p.seconds for p in parts)
    await push_at_end(settings.pushgateway_url)
    await _publish_part(summary.as_dict())
    if not summary.ok:
        return Failed(message=summary.message(), data=summary.as_dict())
    return summary.as_dict()


# -- starting and waiting ---------------------------------------------------------------------


async def ensure_crash_detection() -> bool:
    """The Prefect automation that marks a running flow run Crashed once its heartbeats stop
    for `SILENT_SECONDS` (its worker and process were killed): without it a parent would wait
    for such a child forever. Heartbeats need `PREFECT_FLOWS_HEARTBEAT_FREQUENCY` in the
    workers' environment. Returns True when it was created now."""
    from datetime import timedelta

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    async with get_client() as client:
        if await client.read_automations_by_name(CRASH_AUTOMATION):
            return False
        final = ("Completed", "Failed", "Cancelled", "Crashed")
        await client.create_automation(
            AutomationCore(
                name=CRASH_AUTOMATION,
                description="A running flow run whose heartbeats stopped: its process is gone.",
                trigger=EventTrigger(
                    after={"prefect.flow-run.heartbeat"},
                    expect={
                        "prefect.flow-run.heartbeat",
                        *(f"prefect.flow-run.{s}" for s in final),
                    },
                    match={"prefect.resource.id": ["prefect.flow-run.*"]},
                    for_each={"prefect.resource.id"},
                    posture=Posture.Proactive,
                    threshold=1,
                    within=timedelta(seconds=SILENT_SECONDS),
                ),
                actions=[
                    ChangeFlowRunState(
                        state=StateType.CRASHED,
                        message=f"no heartbeat for {SILENT_SECONDS} s: its process is gone",
                    )
                ],
            )
        )
    return True


async def _start_children(
    flow_name: str, deployment: str, shares: list[Share], parameters: list[dict[str, Any]]
) -> list[ChildRun]:
    """One flow run per share on the child deployment (registered first: idempotent)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import arun_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.runtime import flow_run

    from crypto_lakehouse.flows.deployments import SPECS, deploy_all

    async with get_client() as client:
        try:  # one read; registering costs seconds (the flow's parameter schema)
            await client.read_deployment_by_name(f"{flow_name}/{deployment}")
        except ObjectNotFound:
            await deploy_all([s for s in SPECS if s.name == deployment])
    await ensure_crash_detection()
    parent = flow_run.name or "local"
    runs = await asyncio.gather(
        *(
            arun_deployment(
                f"{flow_name}/{deployment}",
                parameters=params,
                timeout=0,
                flow_run_name=f"{parent}-part-{i + 1}",
                tags=["fanout"],
            )
            for i, params in enumerate(parameters)
        )
    )
    return [
        ChildRun(run.name, str(run.id), share.label, share.files)
        for run, share in zip(runs, shares, strict=True)
    ]


async def _wait(children: list[ChildRun], pickup_seconds: float) -> None:
    """Poll every child until each is final; a child still not started after
    `pickup_seconds` (no worker on its pool) is cancelled and reported."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
    )
    from prefect.states import Cancelled

    ids = [UUID(c.flow_run_id) for c in children]
    by_id = {c.flow_run_id: c for c in children}
    started = time.monotonic()
    async with get_client() as client:
        while True:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
            )
            pending = [r for r in runs if r.state is None or not r.state.is_final()]
            if not pending:
                break
            if time.monotonic() - started > pickup_seconds:
                for run in pending:
                    if run.start_time is None:
                        await client.set_flow_run_state(
                            run.id, Cancelled(message="no worker picked it up"), force=True
                        )
            await asyncio.sleep(POLL_SECONDS)
        for run in runs:
            child = by_id[str(run.id)]
            child.state = run.state.type.value if run.state else "UNKNOWN"
            if run.state and not run.state.is_completed():
                child.message = run.state.message or ""
            child.worker = run.labels.get("prefect.worker.name")
            child.seconds = run.total_run_time.total_seconds()
            if run.start_time and run.expected_start_time:
                child.pickup = (run.start_time - run.expected_start_time).total_seconds()
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=ids),
                key=ArtifactFilterKey(any_=[PART_ARTIFACT]),
            )
        )
    for artifact in artifacts:
        data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        by_id[str(artifact.flow_run_id)].summary = data[0]


# -- the parents ------------------------------------------------------------------------------


def _fan_out(counts: dict[Group, int], min_files: int, children: int) -> bool:
    """Worth its cost: more than `min_files` files in at least two groups, two children."""
    return (
        sum(counts.values()) > min_files
        and children > 1
        and sum(1 for n in counts.values() if n) > 1
    )


def _count_archive(target: IngestTarget, request: IngestRequest) -> Counter[Group]:
    from crypto_lakehouse.archive import ArchiveLister

    return Counter(
        (f.market.value, f.data_type.value)
        for f in ArchiveLister(target.source).files(request.query())
    )


async def run_ingest_fanout(
    request: IngestRequest,
    settings: Settings,
    run_id: str,
    *,
    min_files: int = DEFAULT_MIN_FILES,
    children: int = DEFAULT_CHILDREN,
    pickup_seconds: float = PICKUP_SECONDS,
) -> tuple[IngestSummary, FanOut]:
    """The ingest parent's body: count by listing the archive, then run here or fan out.

    Raises the listing's storage errors; a child's failure is in the returned `FanOut`.
    """
    from crypto_lakehouse.flows.ingest import run_ingest

    started = time.monotonic()
    target = IngestTarget.resolve(request, settings)
    counts = await anyio.to_thread.run_sync(_count_archive, target, request)
    fan = FanOut(False, sum(counts.values()), time.monotonic() - started)
    if not _fan_out(counts, min_files, children):
        return await run_ingest(request, settings, run_id), fan
    shares = split(counts, children)
    # What the request set, as JSON (dates as ISO days); the slices name markets and data
    # types, and the fields left unset take the child deployment's values, then defaults.
    base = request.model_dump(mode="json", exclude_unset=True, exclude={"markets", "data_types"})
    parameters = [{"request": base, "slices": share.slices} for share in shares]
    fan.fanned_out = True
    fan.children = await _start_children(INGEST_PART_FLOW, INGEST_CHILD, shares, parameters)
    await _wait(fan.children, pickup_seconds)
    parts = [IngestSummary.from_dict(c.summary) for c in fan.children if c.summary]
    summary = merge_ingest(parts, run_id)
    summary.phases["count"] = round(fan.count_seconds, 3)
    summary.seconds = time.monotonic() - started
    return summary, fan


async def run_silver_fanout(
    settings: Settings,
    *,
    markets: list[str] | None = None,
    data_types: list[str] | None = None,
    symbols: list[str] | None = None,
    parallel: int = 2,
    rebuild: bool = False,
    min_files: int = DEFAULT_MIN_FILES,
    children: int = DEFAULT_CHILDREN,
    pickup_seconds: float = PICKUP_SECONDS,
) -> tuple[SilverSummary, FanOut]:
    """The silver parent's body: recover once, count pending files per table, run here or
    fan out by table. A complete unfiltered fan-out moves the cursor as `build-silver` does."""
    from crypto_lakehouse.catalog import Manifest
    from crypto_lakehouse.flows.silver import run_silver
    from crypto_lakehouse.lake.ledger import Ledger
    from crypto_lakehouse.lake.silver import BronzeFile, SilverBuilder, drop_silver
    from crypto_lakehouse.lake.warehouse import LakeConfig, Warehouse
    from crypto_lakehouse.storage import S3Storage

    started = time.monotonic()
    config = LakeConfig.from_settings(settings)
    if rebuild:
        await anyio.to_thread.run_sync(drop_silver, config)

    def prepare() -> tuple[dict[str, int], Counter[Group], Any]:
        manifest = Manifest(config.catalog_url)
        manifest.ensure_schema()
        manifest.close()
        ledger = Ledger(config.sqlalchemy_url)
        try:
            builder = SilverBuilder(
                Warehouse(config), ledger, S3Storage(config.endpoint), config.bronze_bucket
            )
            recovered = builder.recover()  # before any child: children never recover
            unfiltered = not (markets or data_types or symbols)
            since = ledger.cursor() if unfiltered else None
            began = ledger.database_now() if unfiltered else None
            pending = ledger.pending(
                markets=markets, data_types=data_types, symbols=symbols, since=since
            )
            counts = Counter(
                (a.market.value, a.data_type.value)
                for a in (BronzeFile.from_pending(p).archive for p in pending)
            )
        finally:
            ledger.dispose()
        return recovered, counts, began

    recovered, counts, began = await anyio.to_thread.run_sync(prepare)
    fan = FanOut(False, sum(counts.values()), time.monotonic() - started)
    if not _fan_out(counts, min_files, children):
        summary = await run_silver(
            settings, markets=markets, data_types=data_types, symbols=symbols,
            parallel=parallel, recover=False,
        )  # fmt: skip
        summary.recovered = recovered
        return summary, fan
    shares = split(counts, children)
    parameters = [
        {"slices": share.slices, "symbols": symbols, "parallel": parallel} for share in shares
    ]
    fan.fanned_out = True
    fan.children = await _start_children(SILVER_PART_FLOW, SILVER_CHILD, shares, parameters)
    await _wait(fan.children, pickup_seconds)
    summary = merge_silver([SilverSummary.from_dict(c.summary) for c in fan.children if c.summary])
    summary.recovered = recovered
    if began is not None and not fan.failed:
        await anyio.to_thread.run_sync(_advance_cursor, config, began)
    summary.seconds = time.monotonic() - started
    return summary, fan


def _advance_cursor(config: Any, began: Any) -> None:
    from crypto_lakehouse.lake.ledger import Ledger

    ledger = Ledger(config.sqlalchemy_url)
    try:
        ledger.advance_cursor(began)
    finally:
        ledger.dispose()


def _final(summary: Any, fan: FanOut) -> Any:
    """The parent's return value, or its Failed state naming the failed children."""
    data = {**summary.as_dict(), "fanout": fan.as_dict()}
    if fan.failed:
        return Failed(message=fan.failure_message(), data=data)
    if not summary.ok:
        return Failed(message=summary.message(), data=data)
    return data


@flow(name="ingest-fanout", persist_result=False, validate_parameters=True)
async def ingest_fanout(
    request: IngestRequest | None = None,
    min_files: int = DEFAULT_MIN_FILES,
    children: int = DEFAULT_CHILDREN,
    pickup_seconds: float = PICKUP_SECONDS,
) -> Any:
    """`ingest-archive` for `request` (None: every default), split over up to `children`
    child runs of deployment `ingest-part/bronze-part` when it covers more than
    `min_files` files; else run here. Failed listing the failed children and files."""
    from prefect.runtime import flow_run

    from crypto_lakehouse.flows.ingest import _publish, deployed_request

    summary, fan = await run_ingest_fanout(
        await deployed_request(request), Settings(), str(flow_run.id or "local"),
        min_files=min_files, children=children, pickup_seconds=pickup_seconds,
    )  # fmt: skip
    await _publish(summary)
    return _final(summary, fan)


@flow(name="silver-fanout", persist_result=False, validate_parameters=True)
async def silver_fanout(
    markets: list[str] | None = None,
    data_types: list[str] | None = None,
    symbols: list[str] | None = None,
    parallel: int = 2,
    rebuild: bool = False,
    min_files: int = DEFAULT_MIN_FILES,
    children: int = DEFAULT_CHILDREN,
    pickup_seconds: float = PICKUP_SECONDS,
) -> Any:
    """`build-silver` split by table over up to `children` runs of `silver-part/silver-part`
    when more than `min_files` files are pending; else run here."""
    from prefect.artifacts import acreate_markdown_artifact

    summary, fan = await run_silver_fanout(
        Settings(), markets=markets, data_types=data_types, symbols=symbols,
        parallel=parallel, rebuild=rebuild, min_files=min_files, children=children,
        pickup_seconds=pickup_seconds,
    )  # fmt: skip
    await acreate_markdown_artifact(
        markdown=summary.markdown(), key="silver-summary", description=summary.message()
    )
    return _final(summary, fan)


async def run_locally(parent: Any, **parameters: Any) -> tuple[str, dict[str, Any]]:
    """Run a parent flow in this process: (state name, its summary dict with `fanout`).

    Raises the error of a run that ended before it could summarise."""
    from crypto_lakehouse.errors import IngestFailed

    state = await parent(**parameters, return_state=True)
    result = await state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    if not isinstance(result, dict) or "fanout" not in result:
        raise IngestFailed(f"{parent.name} ended {state.name} without a summary")
    return state.name or str(state.type), result


def silver_summary_of(data: dict[str, Any]) -> SilverSummary:
    """The SilverSummary in a parent's return value (which also holds `fanout`)."""
    return SilverSummary.from_dict(
        {k: v for k, v in data.items() if k in SilverSummary.__dataclass_fields__}
    )
