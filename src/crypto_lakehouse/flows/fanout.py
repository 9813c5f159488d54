"""Fan-out: one large ingest or silver build split into child flow runs that any worker runs.

    ingest   the parent lists the request once, counting files per (market, data type,
             symbol), and cuts it into *pieces* of about equal files: whole groups, or a
             large group's symbols in contiguous ranges. It starts `children` runs of
             `ingest-part` with the whole piece list, then works through the pieces itself;
             every consumer (the parent and each child) takes the next unclaimed piece
             (a claim is a Prefect variable created once: the server refuses a second), so
             the parent is busy while the children's processes start, and whoever is
             faster does more. Pieces go largest first, so the last ones are short.
    silver   the parent recovers once, counts pending files per table and packs the tables
             into `children` shares (largest first into the lightest share); one
             `silver-part` run per share. Shares are disjoint by table, so every Iceberg
             commit stays the only writer of its table.

At most `min_files` files: the usual body runs in the parent's process, without the
fan-out cost. Each consumer publishes its summary as the `fanout-part` artifact, which the
parent reads and adds up. The parent ends Failed listing every child that did not complete
(and the files the children list).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from prefect import flow
from prefect.states import Failed

from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.flows.summary import PROBLEMS_KEPT, IngestSummary
from crypto_lakehouse.flows.target import IngestRequest, IngestTarget
from crypto_lakehouse.lake.summary import SilverSummary

if TYPE_CHECKING:
    from prefect.client.schemas.objects import Artifact, FlowRun

INGEST_PART_FLOW = "ingest-part"
SILVER_PART_FLOW = "silver-part"
INGEST_CHILD = "bronze-part"  # deployment names (flows/deployments.py SPECS)
SILVER_CHILD = "silver-part"
PART_ARTIFACT = "fanout-part"
DEFAULT_MIN_FILES = 2000  # fan out only above this many files
DEFAULT_CHILDREN = 4
PIECES_PER_CONSUMER = 1  # pieces per consumer (parent + children): each piece is a whole run
CLAIM_PREFIX = "fanout"  # claim of piece i of parent run R: Prefect variable fanout_R_i
POLL_SECONDS = 1.0
PICKUP_SECONDS = 300.0  # a child no worker started by then fails the parent
HEARTBEAT_SECONDS = 30  # workers run flows with PREFECT_FLOWS_HEARTBEAT_FREQUENCY=30 (minimum)
SILENT_SECONDS = 90  # no heartbeat for this long: the run's process is gone, mark it Crashed
CRASH_AUTOMATION = "crash-silent-flow-runs"
# Rows per Prefect read: the server's default and largest `limit`
# (PREFECT_SERVER_API_DEFAULT_LIMIT); a read without `limit` gets this many at most.
PAGE = 200

Group = tuple[str, str]  # (market, data type): one silver table, one archive folder family
Slice = tuple[str, tuple[str, ...]]  # one market and some of its data types
# An ingest piece: one market, some of its data types, and the symbols it covers (None:
# every symbol of the request); JSON-able as a flow parameter.
Piece = tuple[str, tuple[str, ...], tuple[str, ...] | None]
SymbolGroup = tuple[str, str, str]  # (market, data type, symbol)


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


def piece_label(piece: Piece) -> str:
    market, data_types, symbols = piece
    label = f"{market} {','.join(data_types)}"
    if symbols:
        label += f" {symbols[0]}" + (
            f"..{symbols[-1]} ({len(symbols)})" if len(symbols) > 1 else ""
        )
    return label


def cut(counts: dict[SymbolGroup, int], pieces: int) -> list[tuple[Piece, int]]:
    """The request cut into about `pieces` pieces of similar file counts, largest first.

    A (market, data type) group above the target size (total / pieces) is cut into
    contiguous runs of its sorted symbols of about the target size each: on the real
    archive spot klines and trades are far larger than everything else, and a whole group
    would bound the balance. A symbol is never cut (its series stay whole, so the gaps of a
    series are found by the consumer that lists it). Smaller groups of one market are
    packed together up to the target size. Returns (piece, files) pairs.
    """
    if pieces < 1:
        raise ConfigError(f"pieces must be at least 1, got {pieces}")
    groups: dict[Group, dict[str, int]] = {}
    for (market, data_type, symbol), n in counts.items():
        if n > 0:
            groups.setdefault((market, data_type), {})[symbol] = n
    total = sum(sum(s.values()) for s in groups.values())
    if not total:
        return []
    target = -(-total // pieces)
    out: list[tuple[Piece, int]] = []
    small: list[tuple[int, Group]] = []
    for (market, data_type), symbols in sorted(groups.items()):
        size = sum(symbols.values())
        if size <= target:
            small.append((size, (market, data_type)))
            continue
        run: list[str] = []
        files = 0
        for symbol in sorted(symbols):
            run.append(symbol)
            files += symbols[symbol]
            if files >= target:
                out.append(((market, (data_type,), tuple(run)), files))
                run, files = [], 0
        if run:
            out.append(((market, (data_type,), tuple(run)), files))
    packs: dict[str, list[tuple[int, list[str]]]] = {}  # market -> open packs
    for size, (market, data_type) in sorted(small, key=lambda x: (-x[0], x[1])):
        open_packs = packs.setdefault(market, [])
        fit = next((i for i, (n, _) in enumerate(open_packs) if n + size <= target), None)
        if fit is None:
            open_packs.append((size, [data_type]))
        else:
            n, types = open_packs[fit]
            open_packs[fit] = (n + size, [*types, data_type])
    for market, open_packs in sorted(packs.items()):
        out += [((market, tuple(sorted(types)), None), n) for n, types in open_packs]
    return sorted(out, key=lambda x: (-x[1], piece_label(x[0])))


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
    pieces: list[int] = field(default_factory=list)  # ingest: the pieces it claimed and ran
    not_needed: bool = False  # cancelled before it started: every piece was already taken
    summary: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.state == "COMPLETED" or (self.not_needed and self.state == "CANCELLED")


@dataclass
class FanOut:
    """What a parent did: fanned out or not, how long counting took, each child's end."""

    fanned_out: bool
    files: int  # counted before deciding
    count_seconds: float
    children: list[ChildRun] = field(default_factory=list)
    pieces: int = 0  # ingest: pieces cut (silver: 0, one share per child)
    parent_pieces: list[int] = field(default_factory=list)  # ingest: done by the parent
    parent_files: int = 0
    missing_pieces: list[int] = field(default_factory=list)  # ingest: claimed, not reported

    @property
    def failed(self) -> list[ChildRun]:
        return [c for c in self.children if not c.ok]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.missing_pieces

    def failure_message(self) -> str:
        parts = []
        if self.failed:
            parts.append("failed children: " + ", ".join(
                f"{c.name} ({c.state.lower()}{': ' + c.message if c.message else ''})"
                for c in self.failed
            ))  # fmt: skip
        if self.missing_pieces:  # claimed by a run that ended without reporting them
            parts.append(f"pieces not done: {self.missing_pieces}")
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "fanned_out": self.fanned_out,
            "files": self.files,
            "count_seconds": round(self.count_seconds, 3),
            "pieces": self.pieces,
            "parent_pieces": self.parent_pieces,
            "parent_files": self.parent_files,
            "missing_pieces": self.missing_pieces,
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
        merged.problems += part.problems[: max(0, PROBLEMS_KEPT - len(merged.problems))]
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


def narrow(
    request: IngestRequest,
    market: str,
    data_types: list[str],
    symbols: list[str] | tuple[str, ...] | None = None,
) -> IngestRequest:
    """`request` for one slice or piece. Requested intervals shrink to those the slice
    publishes (none for a slice of funding rates): a query naming an unpublished interval is
    invalid. `symbols`: the exact names the parent listed (they passed the request's
    filters), so the piece lists only their folders."""
    from crypto_lakehouse.archive import ArchiveQuery
    from crypto_lakehouse.archive.catalog import parse_data_type, parse_frequency, parse_market

    published = {
        interval
        for *_, intervals in ArchiveQuery(
            markets=(parse_market(market),),
            data_types=tuple(parse_data_type(d) for d in data_types),
            frequencies=tuple(parse_frequency(f) for f in request.frequencies),
        ).plan()
        for interval in intervals
    }
    kept = [i for i in request.intervals if i in published] if request.intervals else None
    fields = request.model_dump(exclude={"markets", "data_types", "intervals", "symbols"})
    return IngestRequest(
        **fields, markets=[market], data_types=data_types, intervals=kept or None,
        symbols=list(symbols) if symbols else request.symbols,
    )  # fmt: skip


async def _publish_part(summary: dict[str, Any]) -> None:
    from prefect.artifacts import acreate_table_artifact

    await acreate_table_artifact(
        table=[summary], key=PART_ARTIFACT, description="This child's summary (for its parent)"
    )


def _claim_name(parent: str, index: int) -> str:
    return f"{CLAIM_PREFIX}_{parent.replace('-', '')}_{index}"


async def consume(
    parent: str,
    pieces: list[Piece],
    owner: str,
    work: Callable[[int, Piece], Awaitable[IngestSummary]],
) -> list[tuple[int, IngestSummary]]:
    """Take the parent's pieces in order, each one only if no other consumer has: a claim
    is the Prefect variable `fanout_<parent>_<i>`, which the server creates once (a second
    create is refused with 409). Returns (index, summary) of the pieces done here."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import VariableCreate
    from prefect.exceptions import ObjectAlreadyExists

    done = []
    async with get_client() as client:
        for index, piece in enumerate(pieces):
            try:
                await client.create_variable(
                    VariableCreate(name=_claim_name(parent, index), value=owner)
                )
            except ObjectAlreadyExists:
                continue
            done.append((index, await work(index, piece)))
    return done


async def release_claims(parent: str, count: int) -> None:
    """Delete the parent's claim variables (once every consumer has ended)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async def drop(index: int) -> None:
        with contextlib.suppress(ObjectNotFound):
            await client.delete_variable_by_name(_claim_name(parent, index))

    async with get_client() as client:
        await asyncio.gather(*(drop(i) for i in range(count)))


def _piece_worker(
    request: IngestRequest, settings: Settings, run_id: str
) -> Callable[[int, Piece], Awaitable[IngestSummary]]:
    from crypto_lakehouse.flows.ingest import run_ingest

    async def work(index: int, piece: Piece) -> IngestSummary:
        market, data_types, symbols = piece
        narrowed = narrow(request, market, list(data_types), symbols)
        return await run_ingest(narrowed, settings, f"{run_id}/{index + 1}")

    return work


@flow(name=INGEST_PART_FLOW, persist_result=False, validate_parameters=True)
async def ingest_part(request: IngestRequest | None, pieces: list[Piece], parent: str) -> Any:
    """`ingest-archive` for the pieces of fan-out `parent` (its claim key) that no other
    consumer has claimed: `request` narrowed to each piece in turn (its unset fields take
    the deployment's, as in `ingest-archive`). Failed when a file is corrupt or failed."""
    from prefect.runtime import flow_run

    from crypto_lakehouse.flows.ingest import _publish, deployed_request
    from crypto_lakehouse.observability.push import pushing

    settings = Settings()
    run_id = str(flow_run.id or "local")
    async with pushing(settings.pushgateway_url):
        whole = await deployed_request(request)
        done = await consume(
            parent, pieces, flow_run.name or run_id, _piece_worker(whole, settings, run_id)
        )
    parts = [summary for _, summary in done]
    summary = merge_ingest(parts, run_id)
    summary.seconds = sum(p.seconds for p in parts)
    data = {**summary.as_dict(), "pieces": [index for index, _ in done]}
    await asyncio.gather(_publish(summary), _publish_part(data))
    if not summary.ok:
        return Failed(message=summary.message(), data=data)
    return data


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
    """The Prefect automation that marks a running flow run Crashed once it has been silent
    for `SILENT_SECONDS` (its worker and process were killed): without it a parent would wait
    for such a child forever. Silence counts from the run's last heartbeat or, for a run
    killed before its first heartbeat reached the server, from its Running state (an event
    the server itself emits). Heartbeats need `PREFECT_FLOWS_HEARTBEAT_FREQUENCY` in the
    workers' environment. Returns True when it was created or brought up to date now."""
    from prefect.client.orchestration import get_client

    wanted = _crash_automation()
    async with get_client() as client:
        found = await client.read_automations_by_name(CRASH_AUTOMATION)
        if found and _same_trigger(found[0].trigger, wanted.trigger):
            return False
        if found:
            await client.update_automation(found[0].id, wanted)
        else:
            await client.create_automation(wanted)
    return True


def _same_trigger(have: Any, want: Any) -> bool:
    """What decides when the automation fires (the server adds ids and defaults)."""
    fields = ("after", "expect", "match", "for_each", "posture", "threshold", "within")
    return all(getattr(have, f, None) == getattr(want, f) for f in fields)


def _crash_automation() -> Any:
    from datetime import timedelta

    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

    final = ("Completed", "Failed", "Cancelled", "Crashed")
    return AutomationCore(
        name=CRASH_AUTOMATION,
        description="A running flow run that went silent: its process is gone.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat", "prefect.flow-run.Running"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in final)},
            match={"prefect.resource.id": ["prefect.flow-run.*"]},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=SILENT_SECONDS),
        ),
        actions=[
            # (name and force are the model's defaults, spelled out: mypy does not see a
            # pydantic `Field(None, ...)` default given positionally)
            ChangeFlowRunState(
                name=None,
                state=StateType.CRASHED,
                message=f"silent for {SILENT_SECONDS} s (no heartbeat): its process is gone",
                force=False,
            )
        ],
    )


async def _start_children(
    flow_name: str,
    deployment: str,
    shares: list[tuple[str, int]],
    parameters: list[dict[str, Any]],
) -> list[ChildRun]:
    """One flow run per (label, files) share on the child deployment (registered first:
    idempotent). Ingest children learn their share as they claim pieces: ("", 0)."""
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
        ChildRun(run.name, str(run.id), label, files)
        for run, (label, files) in zip(runs, shares, strict=True)
    ]


async def _wait(children: list[ChildRun], pickup_seconds: float, all_taken: bool = False) -> None:
    """Poll every child until each is final; a child still not started after
    `pickup_seconds` (no worker on its pool) is cancelled and reported. `all_taken`: every
    ingest piece is claimed, so a child not picked up yet is cancelled at once, not needed
    (a small request does not wait for a process that would find nothing to do)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    ids = [UUID(c.flow_run_id) for c in children]
    by_id = {c.flow_run_id: c for c in children}
    started = time.monotonic()
    async with get_client() as client:
        while True:
            runs = await _read_runs(client, ids)
            if all_taken:
                await _cancel_unneeded(client, runs, by_id)
                all_taken = False
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
            worker = run.labels.get("prefect.worker.name")  # a label value: str, number, bool
            child.worker = None if worker is None else str(worker)
            child.seconds = run.total_run_time.total_seconds()
            if run.start_time and run.expected_start_time:
                child.pickup = (run.start_time - run.expected_start_time).total_seconds()
        artifacts = await _read_part_artifacts(client, ids)
    for artifact in artifacts:
        by_id[str(artifact.flow_run_id)].summary = _part_summary(artifact.data)


# Every child is read, however many there are: a read without `limit` returns the server's
# first PAGE rows only. The reads filter by the children's exact ids in chunks of at most
# PAGE, not limit/offset pages over all of them: each request sends only its chunk's ids,
# its result is bounded by the chunk (no sort has to stay stable between pages while the
# children change state) and the cost is the same ceil(n / PAGE) requests per poll.
def _chunks(ids: list[uuid.UUID]) -> list[list[uuid.UUID]]:
    return [ids[i : i + PAGE] for i in range(0, len(ids), PAGE)]


async def _read_runs(client: Any, ids: list[uuid.UUID]) -> list[FlowRun]:
    """The flow runs of `ids`, all of them."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    runs: list[FlowRun] = []
    for chunk in _chunks(ids):
        runs += await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=len(chunk)
        )
    return runs


async def _read_part_artifacts(client: Any, ids: list[uuid.UUID]) -> list[Artifact]:
    """Every `fanout-part` artifact of the runs `ids`, in the server's order (by id)
    within each chunk. A run can hold more than one (a retried run publishes again),
    so a chunk's artifacts are paged with `offset` until a short page."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    artifacts: list[Artifact] = []
    for chunk in _chunks(ids):
        found = ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=chunk),
            key=ArtifactFilterKey(any_=[PART_ARTIFACT]),
        )
        offset = 0
        while True:
            page = await client.read_artifacts(artifact_filter=found, limit=PAGE, offset=offset)
            artifacts += page
            if len(page) < PAGE:
                break
            offset += PAGE
    return artifacts


def _part_summary(data: object) -> dict[str, Any] | None:
    """The summary in a `fanout-part` artifact's data: a one-row table (`_publish_part`),
    which the server returns as its JSON text. None when it holds no such row."""
    rows = json.loads(data) if isinstance(data, str) else data
    if isinstance(rows, list) and rows and isinstance(rows[0], dict):
        return rows[0]
    return None


async def _cancel_unneeded(client: Any, runs: list[Any], by_id: dict[str, ChildRun]) -> None:
    """Cancel the children still scheduled (no worker has taken them), through the server's
    orchestration rules (not forced): one a worker took meanwhile is left to run."""
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Cancelled

    for run in runs:
        if run.state is None or run.state.type is not StateType.SCHEDULED:
            continue
        result = await client.set_flow_run_state(
            run.id, Cancelled(message="not needed: every piece was already taken")
        )
        if result.status is SetStateStatus.ACCEPT:
            by_id[str(run.id)].not_needed = True


# -- the parents ------------------------------------------------------------------------------


def _fan_out(counts: dict[Any, int], min_files: int, children: int) -> bool:
    """Worth its cost: more than `min_files` files in at least two groups (ingest: symbols
    of a group; silver: tables), two children."""
    return (
        sum(counts.values()) > min_files
        and children > 1
        and sum(1 for n in counts.values() if n) > 1
    )


def _count_archive(target: IngestTarget, request: IngestRequest) -> Counter[SymbolGroup]:
    from crypto_lakehouse.archive import ArchiveLister

    return Counter(
        (f.market.value, f.data_type.value, f.symbol)
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
    parent_works: bool = True,
) -> tuple[IngestSummary, FanOut]:
    """The ingest parent's body: count by listing the archive, then run here or fan out.

    Fanned out: `children` runs of `ingest-part` share the pieces with this process (when
    `parent_works`), each taking the next unclaimed one. Raises the listing's storage
    errors and this process's own pieces' errors; a child's failure is in the `FanOut`.
    """
    from crypto_lakehouse.flows.ingest import run_ingest

    started = time.monotonic()
    target = IngestTarget.resolve(request, settings)
    counts = await anyio.to_thread.run_sync(_count_archive, target, request)
    fan = FanOut(False, sum(counts.values()), time.monotonic() - started)
    if not _fan_out(counts, min_files, children):
        return await run_ingest(request, settings, run_id), fan
    consumers = children + (1 if parent_works else 0)
    cuts = cut(counts, PIECES_PER_CONSUMER * consumers)
    pieces = [piece for piece, _ in cuts]
    # What the request set, as JSON (dates as ISO days); the pieces name markets, data types
    # and symbols, and the fields left unset take the child deployment's values, then defaults.
    base = request.model_dump(mode="json", exclude_unset=True, exclude={"markets", "data_types"})
    claims = uuid.uuid4().hex  # this fan-out's claim names (a re-run never sees old ones)
    parameters = {"request": base, "pieces": pieces, "parent": claims}
    fan.fanned_out = True
    fan.pieces = len(pieces)
    fan.children = await _start_children(
        INGEST_PART_FLOW, INGEST_CHILD, [("", 0)] * children, [parameters] * children
    )
    own: list[tuple[int, IngestSummary]] = []
    if parent_works:  # busy while the children's processes start
        own = await consume(claims, pieces, "parent", _piece_worker(request, settings, run_id))
    await _wait(fan.children, pickup_seconds, all_taken=parent_works)
    # Only once every consumer has ended: a claim dropped earlier could be taken again. (When
    # this process fails first, its few claims stay: their names are never used again.)
    await release_claims(claims, len(pieces))
    files = [n for _, n in cuts]
    fan.parent_pieces = [index for index, _ in own]
    fan.parent_files = sum(files[i] for i in fan.parent_pieces)
    for child in fan.children:
        taken = child.pieces = (child.summary or {}).get("pieces", [])
        child.files = sum(files[i] for i in taken)
        child.share = "; ".join(piece_label(pieces[i]) for i in taken) or "-"
    done = fan.parent_pieces + [i for c in fan.children for i in c.pieces]
    fan.missing_pieces = sorted(set(range(len(pieces))) - set(done))
    parts = [summary for _, summary in own]
    parts += [IngestSummary.from_dict(c.summary) for c in fan.children if c.summary]
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
    from crypto_lakehouse.lake.config import LakeConfig
    from crypto_lakehouse.lake.ledger import Ledger
    from crypto_lakehouse.lake.silver import BronzeFile, SilverBuilder, drop_silver
    from crypto_lakehouse.lake.warehouse import Warehouse
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
    fan.children = await _start_children(
        SILVER_PART_FLOW, SILVER_CHILD, [(s.label, s.files) for s in shares], parameters
    )
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
    if not fan.ok:
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
    parent_works: bool = True,
) -> Any:
    """`ingest-archive` for `request` (None: every default), shared by `children` child
    runs of deployment `ingest-part/bronze-part` and this run (`parent_works`) when it
    covers more than `min_files` files; else run here. Failed listing the failed children
    and files."""
    from prefect.runtime import flow_run

    from crypto_lakehouse.flows.ingest import _publish, deployed_request

    summary, fan = await run_ingest_fanout(
        await deployed_request(request), Settings(), str(flow_run.id or "local"),
        min_files=min_files, children=children, pickup_seconds=pickup_seconds,
        parent_works=parent_works,
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
