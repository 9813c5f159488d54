"""Flow daily-update on real servers: one day in, through bronze, silver and gold, once."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime

import pytest
from flow_helpers import IngestEnv

from crypto_lakehouse.config import Settings
from crypto_lakehouse.flows.update import daily_update, last_complete_day
from crypto_lakehouse.lake.query import QueryEngine
from crypto_lakehouse.lake.warehouse import LakeConfig, Warehouse

DAY = date(2026, 5, 5)  # BTCUSDT and ETHUSDT 1h klines in the tiny archive


def test_the_default_day_is_yesterday_in_utc() -> None:
    assert last_complete_day(datetime(2026, 3, 1, 0, 30, tzinfo=UTC)) == date(2026, 2, 28)


def _run(env: IngestEnv) -> tuple[object, dict]:
    source_bucket = env.parameters["source_bucket"]

    async def go() -> tuple[object, dict]:
        state = await daily_update(
            start=DAY, markets=["spot"], data_types=["klines"], source_bucket=source_bucket,
            return_state=True,
        )  # fmt: skip
        return state, await state.result(raise_on_failure=False)

    return asyncio.run(go())


@pytest.mark.slow
def test_one_day_reaches_silver_and_gold_and_a_rerun_adds_nothing(
    ingest_env: IngestEnv,
) -> None:
    state, result = _run(ingest_env)
    assert state.is_completed(), result  # type: ignore[attr-defined]
    steps = result["steps"]
    assert [steps[s]["state"] for s in ("ingest", "silver", "gold")] == ["Completed"] * 3
    assert steps["ingest"]["summary"]["verified"] == 2  # the day's two symbols, nothing else
    assert steps["silver"]["summary"]["rows"] == 48
    sql = "SELECT symbol, count(*) AS n FROM silver.spot_klines GROUP BY symbol ORDER BY symbol"
    with QueryEngine(Warehouse(LakeConfig.from_settings(Settings()))) as engine:
        rows = engine.sql(sql).to_pylist()
    assert rows == [{"symbol": "BTCUSDT", "n": 24}, {"symbol": "ETHUSDT", "n": 24}]
    gold = steps["gold"]["summary"]
    assert gold["recomputed"]["gold.klines_1h"] >= 2  # each symbol's month, from the new day
    assert gold["pieces"]["gold.klines_1h"] >= 1  # silver read in bounded pieces, reported

    state, again = _run(ingest_env)
    assert state.is_completed(), again  # type: ignore[attr-defined]
    assert again["steps"]["ingest"]["summary"]["verified"] == 0
    assert again["steps"]["ingest"]["summary"]["skipped"] == 2
    assert again["steps"]["silver"]["summary"]["rows"] == 0
