"""Run `ingest-archive` in this process (CLI, demo, benchmarks) and get its summary back.

The run is a real Prefect flow run on the configured server (it shows in the UI); only
the execution happens here instead of on a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from crypto_lakehouse.errors import IngestFailed, LakehouseError
from crypto_lakehouse.flows.progress import Listener, listening
from crypto_lakehouse.flows.summary import IngestSummary
from crypto_lakehouse.flows.target import IngestRequest


@dataclass
class IngestRun:
    flow_run_id: str
    state: str  # Prefect state name: Completed, Failed, ...
    summary: IngestSummary

    @property
    def ok(self) -> bool:
        return self.summary.ok


async def run_ingest_locally(
    request: IngestRequest | Mapping[str, Any] | None = None, listener: Listener | None = None
) -> IngestRun:
    """Run the flow for `request` (or its fields as a mapping, e.g. JSON; None: every
    default); returns the run even when it ends Failed on bad files.

    Raises pydantic's ValidationError for a mapping that is not a valid request. A run that
    failed before it could summarise (unreachable source, bad settings) raises that error
    (a LakehouseError when it is one of ours).
    """
    from crypto_lakehouse.flows.ingest import ingest_archive

    def ignore(_: object) -> None:
        return None

    if not isinstance(request, IngestRequest):
        request = IngestRequest.model_validate(request or {})
    with listening(listener or ignore):
        state = await ingest_archive(request, return_state=True)
    result = await state.aresult(raise_on_failure=False)
    flow_run_id = str(state.state_details.flow_run_id)
    if isinstance(result, dict) and "listed" in result:
        return IngestRun(
            flow_run_id, state.name or str(state.type), IngestSummary.from_dict(result)
        )
    if isinstance(result, LakehouseError):
        raise result
    if isinstance(result, BaseException):
        raise IngestFailed(
            f"ingest flow run {flow_run_id} ended {state.name}: {result}"
        ) from result
    raise IngestFailed(f"ingest flow run {flow_run_id} ended {state.name} without a summary")
