"""A parent with more children than the Prefect server returns in one read (200 by default).

No worker runs anything: the children are flow runs created Completed on the session's real
Prefect server, each with the `fanout-part` artifact a child publishes, and the parent's
wait reads them. Every one must be seen completed, with its summary.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from prefect import flow

from crypto_lakehouse.flows import fanout
from crypto_lakehouse.stack.prefect_server import PrefectServer

CHILDREN = 230  # more than one server page (fanout.PAGE)
TWICE = 10  # children of the first id chunk that published their summary twice (a retry)


@flow(name="fanout-many-children-test", persist_result=False)
def _child() -> None:
    """Never run: only its name, for the flow runs created below."""


async def _completed_children(count: int, twice: int) -> list[fanout.ChildRun]:
    """`count` Completed runs with their part artifact (the first `twice` with two)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.states import Completed

    parent = uuid.uuid4().hex[:8]
    gate = asyncio.Semaphore(16)

    async def child(index: int) -> fanout.ChildRun:
        async with gate:
            run = await client.create_flow_run(
                _child, name=f"{parent}-part-{index + 1}", state=Completed()
            )
            summary = json.dumps([{"pieces": [index]}])  # as `_publish_part` stores it
            for _ in range(2 if index < twice else 1):
                await client.create_artifact(
                    ArtifactCreate(
                        key=fanout.PART_ARTIFACT, type="table", data=summary, flow_run_id=run.id
                    )
                )
        return fanout.ChildRun(run.name, str(run.id), "", 0)

    async with get_client() as client:
        return list(await asyncio.gather(*(child(i) for i in range(count))))


@pytest.mark.servers
@pytest.mark.slow
def test_wait_reads_every_child_beyond_one_server_page(prefect_server: PrefectServer) -> None:
    async def wait() -> list[fanout.ChildRun]:
        children = await _completed_children(CHILDREN, TWICE)
        await fanout._wait(children, pickup_seconds=5)
        return children

    async def artifacts(ids: list[uuid.UUID]) -> int:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            return len(await fanout._read_part_artifacts(client, ids))

    children = asyncio.run(wait())
    assert [c.state for c in children] == ["COMPLETED"] * CHILDREN
    assert all(c.ok for c in children)
    assert [c.summary for c in children] == [{"pieces": [i]} for i in range(CHILDREN)]
    # the first id chunk holds PAGE + TWICE artifacts: read past its first page too
    assert asyncio.run(artifacts([uuid.UUID(c.flow_run_id) for c in children])) == (
        CHILDREN + TWICE
    )
