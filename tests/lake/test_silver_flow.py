"""Flow build-silver on a real Prefect server: manifest in, silver out, drift ends Failed."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lake_helpers import Lake, make_zip

from crypto_lakehouse.archive.paths import parse_key
from crypto_lakehouse.catalog import Manifest
from crypto_lakehouse.catalog.manifest import FileResult, ListedFile
from crypto_lakehouse.flows.silver import build_silver

GOOD = "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2026-05-08.zip"
DRIFTED = "data/spot/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2026-05-09.zip"


def _register(manifest: Manifest, lake: Lake, key: str, data: bytes) -> None:
    lake.storage.put_bytes(lake.config.bronze_bucket, key, data)
    file = parse_key(key).with_listing(len(data), "etag", datetime.now(UTC))
    listed = ListedFile(file, key)
    manifest.mark_started(
        "run", [listed], source_url="s3://sample/", bronze_bucket=lake.config.bronze_bucket
    )
    sha = hashlib.sha256(data).hexdigest()
    manifest.record("run", [FileResult(listed, ok=True, sha256=sha)])


@pytest.mark.slow
def test_build_silver_flow_transforms_and_fails_on_drift(
    lake: Lake, prefect_server, binance_fixtures: Path, monkeypatch
) -> None:
    for name, value in lake.settings_env().items():
        monkeypatch.setenv(name, value)
    manifest = Manifest(lake.config.catalog_url)
    manifest.ensure_schema()
    _register(manifest, lake, GOOD, (binance_fixtures / GOOD).read_bytes())
    drifted = "".join(f"{1778284800000000 + i * 3_600_000_000},1,2,3\n" for i in range(24))
    _register(manifest, lake, DRIFTED, make_zip("BTCUSDT-1h-2026-05-09.csv", drifted))
    manifest.close()

    async def run() -> tuple:
        state = await build_silver(return_state=True)
        return state, await state.result(raise_on_failure=False)

    state, summary = asyncio.run(run())
    assert state.is_failed()
    assert summary["transformed"] == 1 and summary["rows"] == 24
    assert [d["file"] for d in summary["drift"]] == [DRIFTED]
    assert lake.rows("silver.spot_klines").num_rows == 24

    state, summary = asyncio.run(run())  # a re-run adds nothing and still reports the drift
    # Pending work is what the ledger lacks: the good file is not even read again; the
    # drifted one is looked at (drift is retried when the schema changes) and skipped.
    assert summary["transformed"] == 0 and summary["rows"] == 0 and summary["skipped"] == 1
    assert state.is_failed() and summary["drift"]
    assert lake.rows("silver.spot_klines").num_rows == 24
