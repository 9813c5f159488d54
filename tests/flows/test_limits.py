"""The `s5cmd-transfers` limit on the real Prefect server: sizing, resizing, saying it waits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

import pytest

from crypto_lakehouse.flows.limits import (
    DEFAULT_TRANSFER_SLOTS,
    TRANSFER_LIMIT,
    LimitChange,
    ensure_transfer_limit,
    slots_in_use,
    transfer_slot,
)
from crypto_lakehouse.stack.prefect_server import PrefectServer


async def _fresh_limit() -> None:
    """The limit made anew: no slot held by a run of an earlier test (its lease can
    outlive the test by a minute) counts against this one."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        with contextlib.suppress(ObjectNotFound):
            await client.delete_global_concurrency_limit_by_name(TRANSFER_LIMIT)
    await ensure_transfer_limit()


@pytest.fixture
def transfer_limit(prefect_server: PrefectServer) -> Iterator[None]:
    """The session's limit, fresh, given back at its default size whatever the test did."""
    asyncio.run(_fresh_limit())
    yield
    asyncio.run(ensure_transfer_limit(DEFAULT_TRANSFER_SLOTS))


async def _size() -> int:
    usage = await slots_in_use()
    assert usage is not None
    return usage[1]


def test_deploy_sizes_resize_the_limit_and_runs_keep_it(transfer_limit: None) -> None:
    async def scenario() -> list[object]:
        return [
            await ensure_transfer_limit(7),
            await _size(),
            await ensure_transfer_limit(7),
            await ensure_transfer_limit(),  # what a flow run does: keeps the deployed size
            await _size(),
            await ensure_transfer_limit(2),
            await _size(),
        ]

    assert asyncio.run(scenario()) == [
        LimitChange.RESIZED,
        7,
        LimitChange.UNCHANGED,
        LimitChange.UNCHANGED,
        7,
        LimitChange.RESIZED,
        2,
    ]


def test_ensure_refuses_zero_slots(transfer_limit: None) -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        asyncio.run(ensure_transfer_limit(0))


def test_a_waiting_transfer_says_what_it_waits_for(
    transfer_limit: None, caplog: pytest.LogCaptureFixture
) -> None:
    """All slots held elsewhere: one log line naming the limit and its use; then it gets one."""
    from prefect.client.orchestration import get_client

    caplog.set_level(logging.INFO, logger="crypto_lakehouse.flows.limits")

    async def scenario() -> float:
        await ensure_transfer_limit(1)
        async with get_client() as client:
            held = await client.increment_concurrency_slots_with_lease(
                names=[TRANSFER_LIMIT], slots=1, mode="concurrency", lease_duration=60
            )
            lease_id = held.json()["lease_id"]
            entered = asyncio.Event()

            async def transfer() -> None:
                async with transfer_slot(notice_after=0.5):
                    entered.set()

            waiter = asyncio.ensure_future(transfer())
            deadline = time.monotonic() + 20
            while "waiting for a slot" not in caplog.text and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert not entered.is_set()
            released = time.monotonic()
            await client.release_concurrency_slots_with_lease(lease_id)
            await asyncio.wait_for(waiter, timeout=60)
            return time.monotonic() - released

    waited = asyncio.run(scenario())
    notices = [r.getMessage() for r in caplog.records if "waiting for a slot" in r.getMessage()]
    assert len(notices) == 1
    assert f"waiting for a slot of {TRANSFER_LIMIT} (1 of 1 in use)" in notices[0]
    assert waited < 45  # Prefect's retry interval is capped at 30 s


def test_a_free_slot_is_taken_without_a_notice(
    transfer_limit: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="crypto_lakehouse.flows.limits")

    async def scenario() -> tuple[int, int] | None:
        async with transfer_slot(notice_after=0.1):
            await asyncio.sleep(0.3)  # past the notice time: it must have been cancelled
            return await slots_in_use()

    usage = asyncio.run(scenario())
    assert usage is not None and usage[0] >= 1
    assert "waiting for a slot" not in caplog.text
