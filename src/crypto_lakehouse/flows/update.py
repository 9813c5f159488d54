"""Flow `daily-update`: the archive's newest day into bronze, silver and gold, in one run.

Binance publishes each UTC day's files during the next day. The daily job is the three
steps users otherwise run one by one (`ingest`, `silver`, `gold`), as subflows of one flow
run in one process: Prefect, pyiceberg and the catalog are loaded once, not three times,
and each step sees only what is new (ingest lists the day's folders, silver reads the
ledger's pending rows, gold recomputes the touched partitions). The run ends Failed when
any step does, and the steps after a failed ingest still run on what it verified.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from prefect import flow
from prefect.states import Failed

from crypto_lakehouse.flows.ingest import ingest_archive
from crypto_lakehouse.flows.silver import build_gold_flow, build_silver
from crypto_lakehouse.flows.target import IngestRequest

UPDATE_FLOW = "daily-update"


def last_complete_day(now: datetime | None = None) -> date:
    """Yesterday in UTC: the newest day whose daily files Binance can have published."""
    return ((now or datetime.now(UTC)) - timedelta(days=1)).date()


@flow(name=UPDATE_FLOW, persist_result=False, validate_parameters=True)
async def daily_update(
    start: date | None = None,
    end: date | None = None,
    markets: list[str] | None = None,
    data_types: list[str] | None = None,
    symbols: list[str] | None = None,
    source: str | None = None,
    source_bucket: str | None = None,
) -> Any:
    """Ingest the days `start`..`end` (default: yesterday, UTC), then silver, then gold.

    The other parameters are `IngestRequest` fields (an empty one takes its default there);
    `markets`, `data_types` and `symbols` narrow silver too. Returns each step's summary
    and seconds; Failed names the steps that failed.
    """
    day = last_complete_day()
    start, end = start or end or day, end or start or day
    given: dict[str, Any] = {"markets": markets, "data_types": data_types, "symbols": symbols,
                             "source": source, "source_bucket": source_bucket}  # fmt: skip
    request = IngestRequest(start=start, end=end, **{k: v for k, v in given.items() if v})
    steps: dict[str, Any] = {}
    failed: list[str] = []

    async def step(name: str, run: Any) -> None:
        began = time.monotonic()
        state = await run
        result = await state.result(raise_on_failure=False)
        steps[name] = {
            "state": state.name,
            "seconds": round(time.monotonic() - began, 3),
            "summary": result if isinstance(result, dict) else None,
            "error": None if isinstance(result, dict) else str(result),
        }
        if not state.is_completed():
            failed.append(name)

    await step("ingest", ingest_archive(request, return_state=True))
    await step(
        "silver",
        build_silver(markets=markets, data_types=data_types, symbols=symbols, return_state=True),
    )
    await step("gold", build_gold_flow(return_state=True))
    result = {"start": start.isoformat(), "end": end.isoformat(), "steps": steps}
    if failed:
        return Failed(message=f"daily-update: {', '.join(failed)} failed", data=result)
    return result
