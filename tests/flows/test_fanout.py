"""Fan-out: how work is split and merged, and a real run over two local process workers.

The end-to-end test runs the tiny archive once in one process and once fanned out (real
Prefect server, two workers per pool, each taking one run at a time) on separate catalog
databases and buckets, and compares the manifest and the silver rows.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import IngestEnv

from crypto_lakehouse.bench.fanout import local_workers
from crypto_lakehouse.catalog import Manifest
from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.flows import fanout
from crypto_lakehouse.flows.deployments import GENERAL_POOL, TRANSFER_POOL, deploy_all
from crypto_lakehouse.flows.summary import IngestProblem, IngestSummary
from crypto_lakehouse.flows.target import IngestRequest
from crypto_lakehouse.lake.summary import SilverSummary
from crypto_lakehouse.stack.postgres import PostgresServer
from crypto_lakehouse.stack.prefect_server import PrefectServer
from crypto_lakehouse.storage import S3Storage

COUNTS = {
    ("spot", "klines"): 546,
    ("spot", "trades"): 43,
    ("futures/um", "klines"): 504,
    ("futures/um", "markPriceKlines"): 504,
    ("futures/cm", "klines"): 504,
    ("futures/cm", "trades"): 42,
    ("option", "BVOLIndex"): 0,
}


def test_split_is_disjoint_complete_and_balanced() -> None:
    shares = fanout.split(COUNTS, 3)
    assert len(shares) == 3
    covered = [(m, d) for s in shares for m, ds in s.slices for d in ds]
    assert sorted(covered) == sorted(g for g, n in COUNTS.items() if n)  # each group once
    assert sum(s.files for s in shares) == sum(COUNTS.values())
    assert max(s.files for s in shares) - min(s.files for s in shares) <= 546
    for share in shares:  # a slice is one market: its product covers nothing of another share
        assert len({m for m, _ in share.slices}) == len(share.slices)


def test_split_never_makes_more_shares_than_groups() -> None:
    assert len(fanout.split({("spot", "klines"): 10, ("spot", "trades"): 1}, 8)) == 2
    assert fanout.split({}, 4) == []
    with pytest.raises(ConfigError):
        fanout.split(COUNTS, 0)


def _covered(cuts: list[tuple[fanout.Piece, int]], counts: dict) -> list[tuple[str, str, str]]:
    """Every (market, data type, symbol) a list of pieces covers (None: all of the group's)."""
    out = []
    for (market, data_types, symbols), _ in cuts:
        for data_type in data_types:
            group = sorted(s for m, d, s in counts if (m, d) == (market, data_type))
            out += [(market, data_type, s) for s in (symbols or group)]
    return out


def test_a_dominant_group_is_cut_by_symbol_ranges() -> None:
    """As on the real archive: spot klines far larger than the rest. The pieces cover every
    symbol once, a large group's pieces are contiguous symbol ranges, small groups of one
    market are packed whole, and the pieces go largest first."""
    counts = {("spot", "klines", f"S{i:03d}USDT"): 300 for i in range(40)}  # 12,000 files
    counts |= {("spot", "trades", f"S{i:03d}USDT"): 20 for i in range(10)}
    counts |= {("futures/um", "fundingRate", f"S{i:03d}USDT"): 5 for i in range(10)}
    counts |= {("futures/um", "klines", f"S{i:03d}USDT"): 30 for i in range(10)}
    counts[("option", "BVOLIndex", "BTCBVOLUSDT")] = 0
    cuts = fanout.cut(counts, 9)
    assert sorted(_covered(cuts, counts)) == sorted(k for k, n in counts.items() if n)
    assert sum(n for _, n in cuts) == sum(counts.values())
    target = -(-sum(counts.values()) // 9)
    klines = [(p, n) for p, n in cuts if p[1] == ("klines",) and p[0] == "spot"]
    assert len(klines) >= 8  # the dominant group alone fills most pieces
    for (_, _, symbols), n in klines:
        assert symbols and list(symbols) == sorted(symbols)
        assert n <= target + 300  # at most one symbol over the target
    assert [n for _, n in cuts] == sorted((n for _, n in cuts), reverse=True)
    small = [p for p, _ in cuts if p[2] is None]
    assert ("futures/um", ("fundingRate", "klines"), None) in small  # packed, one market
    assert ("spot", ("trades",), None) in small
    assert fanout.cut({}, 3) == []
    with pytest.raises(ConfigError):
        fanout.cut(counts, 0)


def test_a_symbol_is_never_cut() -> None:
    counts = {("spot", "klines", "BTCUSDT"): 1000, ("spot", "klines", "ETHUSDT"): 10}
    cuts = fanout.cut(counts, 4)
    assert [(p[2], n) for p, n in cuts] == [(("BTCUSDT",), 1000), (("ETHUSDT",), 10)]


def test_small_requests_stay_in_one_process() -> None:
    assert not fanout._fan_out({("spot", "klines"): 1500, ("spot", "trades"): 400}, 2000, 4)
    assert fanout._fan_out({("spot", "klines"): 1500, ("spot", "trades"): 600}, 2000, 4)
    assert not fanout._fan_out({("spot", "klines"): 5000}, 2000, 4)  # one group: no split
    assert not fanout._fan_out({("spot", "klines"): 5000, ("spot", "trades"): 1}, 0, 1)


def test_a_slice_keeps_only_the_intervals_it_publishes() -> None:
    request = IngestRequest(
        markets=["spot", "futures/um"], intervals=["1h", "1s"], symbols=["BTC*"]
    )
    funding = fanout.narrow(request, "futures/um", ["fundingRate"])
    assert funding.intervals is None and funding.markets == ["futures/um"]
    assert funding.symbols == ["BTC*"]
    klines = fanout.narrow(request, "futures/um", ["klines", "fundingRate"])
    assert klines.intervals == ["1h"]  # 1s klines are spot-only
    assert fanout.narrow(request, "spot", ["klines"]).intervals == ["1h", "1s"]
    piece = fanout.narrow(request, "spot", ["klines"], ("BTCUSDT", "BTCFDUSD"))
    assert piece.symbols == ["BTCUSDT", "BTCFDUSD"]  # the names the parent listed
    assert piece.query().exact_symbols() == ("BTCFDUSD", "BTCUSDT")  # lists only those


def test_merged_summaries_add_up() -> None:
    a = IngestSummary(listed=3, verified=2, skipped=1, missing=["x"], phases={"discover": 1.0})
    b = IngestSummary(listed=5, failed=1, problems=[IngestProblem("p", "failed", "boom")],
                      phases={"discover": 2.0})  # fmt: skip
    merged = fanout.merge_ingest([a, b], "parent")
    assert (merged.listed, merged.verified, merged.failed, merged.skipped) == (8, 2, 1, 1)
    assert merged.missing == ["x"] and [p.path for p in merged.problems] == ["p"]
    assert merged.phases == {"discover": 2.0} and not merged.ok
    drift = [{"file": "d", "detail": "x"}]
    s1 = SilverSummary(files=2, transformed=2, rows=10, tables={"t": 10}, drift=drift)
    s2 = SilverSummary(files=1, transformed=1, rows=5, tables={"t": 5, "u": 0}, drift=drift)
    silver = fanout.merge_silver([s1, s2])
    assert (silver.files, silver.rows, silver.tables) == (3, 15, {"t": 15, "u": 0})
    assert silver.drift == drift  # every child reads the same outstanding list


def _side_env(
    env: IngestEnv, postgres: PostgresServer, lake: S3Storage, bronze: str
) -> dict[str, str]:
    database = f"cat_{uuid.uuid4().hex[:10]}"
    postgres.create_database(database)
    for bucket in (bronze, f"{bronze}-s", f"{bronze}-g"):
        lake.ensure_bucket(bucket)
    return {
        **env.env,
        "CATALOG_DATABASE_URL": postgres.info.url(database),
        "BRONZE_BUCKET": bronze,
        "SILVER_BUCKET": f"{bronze}-s",
        "GOLD_BUCKET": f"{bronze}-g",
    }


def _verified(url: str) -> set[str]:
    manifest = Manifest(url)
    try:
        return {e.path for e in manifest.verified_files()}
    finally:
        manifest.close()


@pytest.mark.slow
def test_fan_out_over_two_workers_equals_one_process(
    ingest_env: IngestEnv,
    postgres_server: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from crypto_lakehouse.flows.local import run_ingest_locally
    from crypto_lakehouse.flows.silver import build_silver

    lake = ingest_env.bronze
    one = _side_env(ingest_env, postgres_server, lake, f"{ingest_env.bronze_bucket}-one")
    fan = _side_env(ingest_env, postgres_server, lake, f"{ingest_env.bronze_bucket}-fan")
    request = {k: v for k, v in ingest_env.parameters.items()}

    def use(env: dict[str, str]) -> None:
        for key, value in env.items():
            monkeypatch.setenv(key, value)

    async def one_silver() -> dict:
        state = await build_silver(return_state=True)
        return await state.result(raise_on_failure=False)

    use(one)
    single = asyncio.run(run_ingest_locally(request)).summary
    single_silver = asyncio.run(one_silver())

    use(fan)
    asyncio.run(deploy_all())
    logs = tmp_path / "workers"
    environ = dict(os.environ)  # the fan-out side's settings, as a worker's environment
    with (
        local_workers(TRANSFER_POOL, 2, environ, logs) as movers,
        local_workers(GENERAL_POOL, 2, environ, logs) as builders,
    ):
        state, ingest = asyncio.run(  # the children do every piece: no help from the parent
            fanout.run_locally(
                fanout.ingest_fanout, request=request, min_files=0, children=2, parent_works=False
            )
        )
        silver_state, silver = asyncio.run(
            fanout.run_locally(fanout.silver_fanout, min_files=0, children=2)
        )

    # Two children, one per worker, claim the pieces (spot klines by symbol, USD-M funding)
    # between them: each piece run once. The parent fails naming the child whose files were
    # not all verified (the planted corrupt file is an ETHUSDT spot kline).
    fan_out = ingest["fanout"]
    children = fan_out["children"]
    assert fan_out["fanned_out"] and len(children) == 2 and fan_out["parent_pieces"] == []
    assert {c["worker"] for c in children} == set(movers.names)
    assert sorted(i for c in children for i in c["pieces"]) == list(range(fan_out["pieces"]))
    assert fan_out["pieces"] >= 2
    assert state == "Failed"
    failed = [c for c in children if c["state"] != "COMPLETED"]
    assert len(failed) == 1 and "spot klines" in failed[0]["share"]
    for key in ("listed", "verified", "corrupt", "failed", "skipped", "missing_periods"):
        assert ingest[key] == getattr(single, key), key
    assert sorted(p["path"] for p in ingest["problems"]) == sorted(p.path for p in single.problems)
    assert _verified(fan["CATALOG_DATABASE_URL"]) == _verified(one["CATALOG_DATABASE_URL"])
    assert _verified(fan["CATALOG_DATABASE_URL"]) == set(ingest_env.archive.good)

    # Again, with no worker left and the parent working: it runs every piece itself (all
    # verified already: skipped) and cancels the children no worker took, as not needed.
    again_state, again = asyncio.run(
        fanout.run_locally(fanout.ingest_fanout, request=request, min_files=0, children=2)
    )
    assert again["fanout"]["parent_pieces"] == list(range(again["fanout"]["pieces"]))
    assert [(c["state"], c["not_needed"]) for c in again["fanout"]["children"]] == [
        ("CANCELLED", True),
        ("CANCELLED", True),
    ]
    assert again["skipped"] == ingest["verified"] and again["verified"] == 0
    assert again_state == "Failed"  # the known corrupt file, as in a plain re-run
    assert again["corrupt"] == single.corrupt

    silver_children = silver["fanout"]["children"]
    assert silver_state == "Completed" and len(silver_children) == 2
    assert {c["worker"] for c in silver_children} == set(builders.names)
    for key in ("transformed", "rows", "tables"):
        assert silver[key] == single_silver[key], key
    assert silver["rows"] > 0


@pytest.mark.slow
def test_cli_fan_out_of_a_small_request_runs_in_one_process(ingest_env: IngestEnv) -> None:
    """Below --min-files no child is started (no worker runs in this test) and the command
    reports as `ingest` and `silver` do: exit 3 for the planted corrupt file, then 0."""
    for suffix in ("s", "g"):
        ingest_env.bronze.ensure_bucket(f"{ingest_env.bronze_bucket}-{suffix}")
    env = {
        **os.environ,
        **ingest_env.env,
        "SILVER_BUCKET": f"{ingest_env.bronze_bucket}-s",
        "GOLD_BUCKET": f"{ingest_env.bronze_bucket}-g",
        "COLUMNS": "200",
    }
    p = ingest_env.parameters
    ingest = [sys.executable, "-m", "crypto_lakehouse", "ingest", "--fan-out",
              "--source-bucket", p["source_bucket"], "--start", p["start"], "--end", p["end"],
              "--market", "spot", "--market", "futures/um", "--data-type", "klines",
              "--data-type", "fundingRate", "--interval", "1h"]  # fmt: skip
    done = subprocess.run(ingest, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "ran in this process (no fan-out)" in done.stdout
    assert "ETHUSDT-1h-2026-05-06.zip" in done.stdout  # the corrupt file, listed
    silver = [sys.executable, "-m", "crypto_lakehouse", "silver", "--fan-out"]
    done = subprocess.run(silver, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ran in this process (no fan-out)" in done.stdout
    assert "silver-fanout ended Completed" in done.stdout


@pytest.mark.slow
def test_crash_detection_counts_silence_from_running_and_updates_an_older_automation(
    prefect_server: PrefectServer,
) -> None:
    """A child killed before its first heartbeat reached the server must still end Crashed:
    the automation also starts counting at the Running state (a server-side event). An
    automation made by an older version (heartbeats only) is brought up to date."""
    from prefect.client.orchestration import get_client

    async def stored() -> Any:
        async with get_client() as client:
            (found,) = await client.read_automations_by_name(fanout.CRASH_AUTOMATION)
            return found

    async def scenario() -> None:
        async with get_client() as client:
            for old in await client.read_automations_by_name(fanout.CRASH_AUTOMATION):
                await client.delete_automation(old.id)
            older = fanout._crash_automation()
            older.trigger.after = {"prefect.flow-run.heartbeat"}
            await client.create_automation(older)
        assert await fanout.ensure_crash_detection()  # updated
        found = await stored()
        assert "prefect.flow-run.Running" in found.trigger.after
        assert found.trigger.within.total_seconds() == fanout.SILENT_SECONDS
        assert not await fanout.ensure_crash_detection()  # up to date: left alone
        assert (await stored()).id == found.id

    asyncio.run(scenario())
