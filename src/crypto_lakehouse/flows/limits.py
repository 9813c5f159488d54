"""The Prefect global concurrency limit that bounds s5cmd transfers across all flow runs.

Every transfer task holds one slot of `s5cmd-transfers` while its engine runs, so however
many ingest runs and workers are active, at most `slots` s5cmd batches hit the endpoints.
"""

from __future__ import annotations

TRANSFER_LIMIT = "s5cmd-transfers"
DEFAULT_TRANSFER_SLOTS = 4


async def ensure_transfer_limit(slots: int = DEFAULT_TRANSFER_SLOTS) -> bool:
    """Create the limit if it does not exist (an existing limit keeps its size). True if made."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    async with get_client() as client:
        try:
            await client.read_global_concurrency_limit_by_name(TRANSFER_LIMIT)
            return False
        except ObjectNotFound:
            pass
        try:
            await client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=TRANSFER_LIMIT, limit=slots, active=True)
            )
        except ObjectAlreadyExists:  # another run created it meanwhile
            return False
        return True
