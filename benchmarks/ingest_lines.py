#!/usr/bin/env python3
"""Ingest-shaped batches from a far source: a file and its sidecar in one line, or a line each.

    flock /tmp/lakehouse-bench.lock .venv/bin/python benchmarks/ingest_lines.py
    .venv/bin/python benchmarks/ingest_lines.py --pairs 200 --rtt 50 --repeats 1   # quick

An ingest batch reaches the engine as a listing of just its objects (each zip and its
`.CHECKSUM`, `ListingScope.OBJECTS`). s5cmd sends a HEAD before every per-key GET and a
`run` line keeps its slot until its objects are done, so two per-key lines per file hold
two slots for two round trips each. With `S5CMD_KEY_COVERS` (the default) the engine
writes one `x.zip*` line per file instead: one LIST, then both GETs.

Starts two SeaweedFS servers in a temporary folder (a source serving HTTPS, as the real
archive does, behind the latency proxy; a signed lake), writes `--pairs` zips of 4 KiB
with their sidecars, then copies them with the engine as the ingest mover asks (keys, the
objects' listing, sidecars verified, staged) with key covers on and off, alternating in
rounds (round 0 a warm-up, discarded). Prints medians, the ratio and the connections the
proxy accepted. Results: benchmarks/results/ingest-lines.json.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from crypto_lakehouse.bench.baselines import upload_folder
from crypto_lakehouse.bench.netem import NetemConfig, NetemProxy
from crypto_lakehouse.bench.tls import make_tls_files, trusting
from crypto_lakehouse.config import Settings
from crypto_lakehouse.stack.seaweed import Credentials, SeaweedServer
from crypto_lakehouse.storage import Endpoint, S3Storage, S3Url
from crypto_lakehouse.transfer import (
    EngineOptions,
    Invocation,
    ListingScope,
    Mode,
    TransferEngine,
    TransferRequest,
)
from crypto_lakehouse.transfer.listing import ListedObject, Listing

HERE = Path(__file__).resolve().parent
SOURCE_BUCKET, LAKE_BUCKET, PREFIX = "archive", "bronze", "data/spot/daily/klines/X/1h/"
METHODS = {"key-covers": True, "per-key-lines": False}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=1000, help="zips (each with a sidecar)")
    parser.add_argument("--rtt", type=float, action="append", help="ms; repeat (default 50, 150)")
    parser.add_argument("--repeats", type=int, default=3, help="measured rounds (median)")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "ingest-lines.json")
    args = parser.parse_args()
    rtts = args.rtt or [50.0, 150.0]
    with contextlib.ExitStack() as stack:  # undone in reverse: servers, trust, folder
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lakehouse-lines-")))
        tls = make_tls_files(root / "tls")
        stack.enter_context(trusting(tls.ca))  # s5cmd (Go) and boto3 trust the run's authority
        source = SeaweedServer(
            "lines-source",
            root / "source",
            admin=Credentials.generate(),
            anonymous_read=True,
            tls=(tls.cert, tls.key),
        )
        lake = SeaweedServer("lines-lake", root / "lake", admin=Credentials.generate())
        for server in (source, lake):
            stack.callback(server.stop)
            server.start()
        keys = _publish(source.endpoint(), root / "gen", args.pairs)
        S3Storage(lake.endpoint()).ensure_bucket(LAKE_BUCKET)
        options = EngineOptions.from_settings(Settings())
        options.staging_root = root / "staging"
        rows = []
        for rtt in rtts:
            config = NetemConfig.in_front_of(source.https_url or "", rtt_ms=rtt)
            with NetemProxy(config) as proxy:
                far = Endpoint(url=proxy.https_url, anonymous=True)
                rows.append(_case(far, lake.endpoint(), options, keys, rtt, proxy, args.repeats))
    print(f"\n{args.pairs} zips x 4 KiB + sidecars, staged, every zip checked against its sidecar")
    print("| rtt | key-covers | per-key-lines | speed-up | connections (covers / per-key) |")
    print("|---|---|---|---|---|")
    for row in rows:
        s = row["seconds"]
        print(
            f"| {row['rtt_ms']:g} ms | {s['key-covers']:.2f} s | {s['per-key-lines']:.2f} s "
            f"| {row['speedup']:.2f}x | {row['connections']['key-covers']} / "
            f"{row['connections']['per-key-lines']} |"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "command": " ".join(["benchmarks/ingest_lines.py", *sys.argv[1:]]),
                "pairs": args.pairs,
                "cases": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written: {args.json}")
    return 0


def _publish(endpoint: Endpoint, folder: Path, pairs: int) -> list[str]:
    """Write `pairs` zips and their sidecars to the source with one s5cmd upload."""
    folder.mkdir(parents=True)
    keys = []
    for day in range(pairs):
        name = f"X-1h-{day:06d}.zip"
        data = os.urandom(4096)
        (folder / name).write_bytes(data)
        (folder / f"{name}.CHECKSUM").write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
        keys += [PREFIX + name, PREFIX + name + ".CHECKSUM"]
    S3Storage(endpoint).ensure_bucket(SOURCE_BUCKET)
    upload_folder(endpoint, folder, f"s3://{SOURCE_BUCKET}/{PREFIX}", 64, "publishing the pairs")
    shutil.rmtree(folder)
    return sorted(keys)


def _case(
    far: Endpoint,
    lake: Endpoint,
    options: EngineOptions,
    keys: list[str],
    rtt: float,
    proxy: NetemProxy,
    repeats: int,
) -> dict:
    with Listing(Invocation(far), SOURCE_BUCKET, PREFIX) as listing:
        listed: list[ListedObject] = list(listing)
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    connections: dict[str, list[int]] = {name: [] for name in METHODS}
    for round_ in range(repeats + 1):
        for name, covers in METHODS.items():
            engine = TransferEngine(dataclasses.replace(options, key_covers=covers))
            dest_prefix = f"{name}/{round_}/"
            request = TransferRequest(
                source=far,
                source_url=S3Url(SOURCE_BUCKET, PREFIX),
                dest=lake,
                dest_url=S3Url(LAKE_BUCKET, dest_prefix),
                mode=Mode.STAGED,
                keys=keys,
                verify_sidecars=True,
                operation="copy",
                source_listing=listed,
                source_listing_scope=ListingScope.OBJECTS,
            )
            before = proxy.connections()
            started = time.monotonic()
            report = engine.run(request)
            seconds = time.monotonic() - started
            summary = report.summary
            if not summary.ok or summary.copied != len(keys):
                raise SystemExit(f"{name}: copied {summary.copied} of {len(keys)}, not all ok")
            print(f"{rtt:g} ms round {round_} {name}: {seconds:.2f} s", flush=True)
            if round_:
                times[name].append(seconds)
                connections[name].append(proxy.connections() - before)
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    return {
        "rtt_ms": rtt,
        "seconds": medians,
        "runs": times,
        "connections": {name: int(statistics.median(c)) for name, c in connections.items()},
        "speedup": medians["per-key-lines"] / medians["key-covers"],
    }


if __name__ == "__main__":
    sys.exit(main())
