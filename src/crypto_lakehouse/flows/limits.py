"""The Prefect global concurrency limit that bounds s5cmd transfers across all flow runs.

Every transfer task holds one slot of `s5cmd-transfers` while its engine runs, so however
many ingest runs and workers are active, at most `slots` s5cmd batches hit the endpoints.
`flows deploy` sizes the limit (`TRANSFER_SLOTS`, `--transfer-slots`); a flow run only
creates it when missing and never resizes it.

A slot is a lease of `TRANSFER_LEASE_SECONDS` that the holder's client renews while it
runs: when a run dies (SIGKILL, a lost pod) its slot comes back once the lease expires and
the server's repossessor (every 15 s) revokes it. The lease survives a server restart
only when the server keeps leases outside its memory (filesystem or Redis lease storage,
see `stack.prefect_server` and deploy/k8s/base/prefect/config.yaml); otherwise a restart
strands the slots of every run that held one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any

from crypto_lakehouse.config import DEFAULT_TRANSFER_SLOTS

TRANSFER_LIMIT = "s5cmd-transfers"
# Prefect's shortest lease (its API refuses less than 60 s); the client renews it at 75%.
TRANSFER_LEASE_SECONDS = 60.0
WAIT_NOTICE_SECONDS = 5.0
REPOSSESSOR_SECONDS = 15.0  # how often Prefect's server revokes expired leases (its default)

__all__ = [
    "DEFAULT_TRANSFER_SLOTS",
    "TRANSFER_LEASE_SECONDS",
    "TRANSFER_LIMIT",
    "LimitChange",
    "ensure_transfer_limit",
    "transfer_slot",
]

log = logging.getLogger(__name__)


class LimitChange(StrEnum):
    CREATED = "created"
    RESIZED = "resized"
    UNCHANGED = "unchanged"


async def ensure_transfer_limit(slots: int | None = None) -> LimitChange:
    """Make `s5cmd-transfers` exist; with `slots`, also give it that size.

    `slots=None` (flow runs): create it with `DEFAULT_TRANSFER_SLOTS` if missing, keep an
    existing size. A number (`flows deploy`): create it with that size, or update an
    existing limit whose size differs. Raises `ValueError` for fewer than one slot.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import (
        GlobalConcurrencyLimitCreate,
        GlobalConcurrencyLimitUpdate,
    )
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    if slots is not None and slots < 1:
        raise ValueError("a concurrency limit needs at least one slot")
    async with get_client() as client:
        for _ in range(2):  # a second pass when another run created it meanwhile
            try:
                current = await client.read_global_concurrency_limit_by_name(TRANSFER_LIMIT)
            except ObjectNotFound:
                try:
                    await client.create_global_concurrency_limit(
                        GlobalConcurrencyLimitCreate(
                            name=TRANSFER_LIMIT, limit=slots or DEFAULT_TRANSFER_SLOTS, active=True
                        )
                    )
                except ObjectAlreadyExists:
                    continue
                return LimitChange.CREATED
            if slots is None or current.limit == slots:
                return LimitChange.UNCHANGED
            await client.update_global_concurrency_limit(
                TRANSFER_LIMIT, GlobalConcurrencyLimitUpdate(limit=slots)
            )
            return LimitChange.RESIZED
    return LimitChange.UNCHANGED


async def slots_in_use() -> tuple[int, int] | None:
    """(active slots, size) of `s5cmd-transfers`; None when it cannot be read."""
    from prefect.client.orchestration import get_client

    try:
        async with get_client() as client:
            limit = await client.read_global_concurrency_limit_by_name(TRANSFER_LIMIT)
    except Exception:  # only for a log line; the acquire itself reports real errors
        return None
    return limit.active_slots, limit.limit


@contextlib.asynccontextmanager
async def transfer_slot(notice_after: float = WAIT_NOTICE_SECONDS) -> AsyncIterator[None]:
    """Hold one slot of `s5cmd-transfers` for the `with` block (waits as long as it takes).

    When no slot is granted within `notice_after` seconds, logs once what it waits for
    ("waiting for a slot of s5cmd-transfers (4 of 4 in use)"), so a run that waits on
    slots held elsewhere says so instead of hanging silently. The lease names the task run
    holding it (Prefect shows it as the slot's holder).
    """
    from prefect.concurrency.asyncio import concurrency

    notice = asyncio.ensure_future(_notice_when_waiting(notice_after))
    try:
        async with concurrency(
            TRANSFER_LIMIT,
            occupy=1,
            lease_duration=TRANSFER_LEASE_SECONDS,
            holder=_holder(),
        ):
            notice.cancel()
            yield
    finally:
        notice.cancel()


async def _notice_when_waiting(after: float) -> None:
    await asyncio.sleep(after)
    usage = await slots_in_use()
    counts = f" ({usage[0]} of {usage[1]} in use)" if usage else ""
    _logger().info(
        "waiting for a slot of %s%s; a slot held by a run that is gone comes back within "
        "%.0f s of its last renewal",
        TRANSFER_LIMIT,
        counts,
        TRANSFER_LEASE_SECONDS + REPOSSESSOR_SECONDS,
    )


def _logger() -> Any:
    """The task run's logger (the message shows in the Prefect UI), else this module's."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return log


def _holder() -> Any:
    """The current task run (or flow run) as the lease's holder; None outside a run."""
    from prefect.client.schemas.objects import ConcurrencyLeaseHolder
    from prefect.context import FlowRunContext, TaskRunContext

    task_run = TaskRunContext.get()
    if task_run is not None:
        return ConcurrencyLeaseHolder(type="task_run", id=task_run.task_run.id)
    flow_run = FlowRunContext.get()
    if flow_run is not None and flow_run.flow_run is not None:
        return ConcurrencyLeaseHolder(type="flow_run", id=flow_run.flow_run.id)
    return None
