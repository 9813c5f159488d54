#!/usr/bin/env python3
"""Archive discovery at scale: listing clients, ranged listings and peak memory.

    flock /tmp/lakehouse-bench.lock .venv/bin/python benchmarks/discovery.py
    .venv/bin/python benchmarks/discovery.py --symbols 5 --days 100 --repeats 1   # quick
    .venv/bin/python benchmarks/discovery.py --rtt 150 --threads 8,64 --days 100 \
        --methods discover-last-day,discover-last-week --json /tmp/far.json   # a far source

Starts its own SeaweedFS (anonymous read, like the Binance archive) in a temporary folder,
writes `symbols x days` daily 1h klines files with their `.CHECKSUM` sidecars (one s5cmd
upload), then runs every method in a child process of its own, `--repeats` times
(median seconds, largest peak RSS). Each child reports wall seconds, CPU seconds (its own
and its children's, i.e. s5cmd), its peak RSS (VmHWM) and how much of it came after
the imports (`+MiB`: what the listing itself held), what it found, and the
ListObjectsV2 requests and keys S3 returned (counted by a botocore hook on the real client;
not available for s5cmd). Results: benchmarks/results/discovery.json.

`--rtt MS` puts the latency proxy (`crypto_lakehouse.bench.netem`) in front of the
server, as the real archive is 50-250 ms away; `--threads 8,64` runs each `discover-*`
method once per number of folders listed at once (`ArchiveLister.threads`), reported
as `method@threads`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIRST_DAY = date(2022, 1, 1)
METHODS = {
    "boto3-list": "boto3 paged ListObjectsV2 of data/ (keys only)",
    "s5cmd-list": "one `s5cmd ls` process of data/, read line by line (keys only)",
    "discover-all": "ArchiveLister.files, whole archive, streamed (counted, not kept)",
    "discover-all-held": "ArchiveLister.files, whole archive, kept in a list",
    "discover-tenth": "ArchiveLister.files, a tenth of the symbols, streamed",
    "discover-last-day": "ArchiveLister.files, start = end = the last day",
    "discover-last-week": "ArchiveLister.files, the last 7 days",
    "s5cmd-last-day": "one `s5cmd ls` of data/, filtered to the last day",
}


# -- the child: one measurement --------------------------------------------------------------


def _count_requests(storage: Any) -> dict[str, int]:
    """Count ListObjectsV2 requests and the keys/prefixes S3 returned, on the real client."""
    seen = {"requests": 0, "keys_returned": 0}

    def after_call(parsed: dict[str, Any], **_: Any) -> None:
        seen["requests"] += 1
        seen["keys_returned"] += len(parsed.get("Contents", ())) + len(
            parsed.get("CommonPrefixes", ())
        )

    storage.client.meta.events.register("after-call.s3.ListObjectsV2", after_call)
    return seen


def _high_water_kib() -> int:
    """This process's peak RSS (VmHWM). `ru_maxrss` would do, but a child started by a
    large parent inherits the parent's peak across exec; VmHWM can be reset."""
    text = Path("/proc/self/status").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("VmHWM:"))
    return int(line.split()[1])


def child(spec: dict[str, Any]) -> dict[str, Any]:
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the parent's peak is not ours
    from crypto_lakehouse.archive import ArchiveLister, ArchiveQuery, ArchiveSource
    from crypto_lakehouse.archive.paths import parse_key
    from crypto_lakehouse.storage import Endpoint, S3Storage
    from crypto_lakehouse.transfer.binary import Invocation
    from crypto_lakehouse.transfer.listing import Listing

    endpoint = Endpoint(url=spec["url"], anonymous=True)
    bucket, method = spec["bucket"], spec["method"]
    last = date.fromisoformat(spec["last_day"])
    counts: dict[str, int] = {}
    imported = _high_water_kib()  # after the imports
    started = time.perf_counter()
    if method == "boto3-list":
        storage = S3Storage(endpoint)
        counts = _count_requests(storage)
        found = sum(1 for _ in storage.list_objects(bucket, "data/"))
    elif method in {"s5cmd-list", "s5cmd-last-day"}:
        with Listing(Invocation(endpoint=endpoint), bucket, "data/") as listing:
            if method == "s5cmd-list":
                found = sum(1 for _ in listing)
            else:
                found = sum(
                    1 for o in listing if o.key.endswith(".zip") and parse_key(o.key).period == last
                )
    else:
        storage = S3Storage(endpoint)
        counts = _count_requests(storage)
        lister = ArchiveLister(ArchiveSource(endpoint, bucket), storage, threads=spec["threads"])
        query: dict[str, Any] = {"markets": ("spot",), "data_types": ("klines",)}
        if method == "discover-tenth":
            query["symbols"] = tuple(spec["symbols"][: max(1, len(spec["symbols"]) // 10)])
        elif method == "discover-last-day":
            query |= {"start": last, "end": last}
        elif method == "discover-last-week":
            query |= {"start": last - timedelta(days=6), "end": last}
        files = lister.files(ArchiveQuery(**query))
        found = len(list(files)) if method == "discover-all-held" else sum(1 for _ in files)
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "method": method,
        "threads": spec["threads"],
        "seconds": round(seconds, 3),
        "cpu_seconds": round(own.ru_utime + own.ru_stime, 3),
        "child_cpu_seconds": round(kids.ru_utime + kids.ru_stime, 3),
        "peak_rss_mib": round(_high_water_kib() / 1024, 1),
        "rss_growth_mib": round((_high_water_kib() - imported) / 1024, 1),
        "found": found,
        **counts,
    }


# -- the parent: server, data, rounds --------------------------------------------------------


def _populate(url: str, admin: Any, bucket: str, symbols: list[str], days: int, tmp: Path) -> int:
    """Write the archive's keys with one s5cmd upload of a local tree; returns the key count."""
    from crypto_lakehouse.archive.checksum import checksum_of
    from crypto_lakehouse.archive.paths import ArchiveFile
    from crypto_lakehouse.transfer.binary import Invocation

    tree = tmp / "tree"
    for symbol in symbols:
        for n in range(days):
            file = ArchiveFile("spot", "daily", "klines", symbol, FIRST_DAY + timedelta(n), "1h")
            path = tree / file.key
            path.parent.mkdir(parents=True, exist_ok=True)
            body = f"{file.stem}\n".encode()
            path.write_bytes(body)
            (tree / file.checksum_key).write_text(checksum_of(body, file.filename).line())
    invocation = Invocation(endpoint=admin)
    argv = invocation.argv("cp", f"{tree}/*", f"s3://{bucket}/")
    done = subprocess.run(argv, env=invocation.env(), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"upload failed: {done.stderr[-500:]}")
    shutil.rmtree(tree)
    return len(symbols) * days * 2


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--child"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{spec['method']} failed: {done.stderr[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _label(method: str, threads: int) -> str:
    return f"{method}@{threads}" if method.startswith("discover-") else method


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--days", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument("--rtt", type=float, default=0.0, help="ms of round trip (a proxy)")
    parser.add_argument(
        "--threads", default="8", help="discover-*: folders listed at once, e.g. 8,64"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "discovery.json")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.load(sys.stdin))))
        return 0

    from crypto_lakehouse.bench.netem import NetemConfig, NetemProxy
    from crypto_lakehouse.stack.seaweed import Credentials, SeaweedServer
    from crypto_lakehouse.storage import S3Storage

    thread_counts = [int(n) for n in args.threads.split(",")]

    symbols = [f"S{n:03d}USDT" for n in range(args.symbols)]
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="bench-discovery-", dir=base) as folder:
        tmp = Path(folder)
        server = SeaweedServer(
            "bench-source", tmp / "seaweed", admin=Credentials.generate(), anonymous_read=True
        )
        server.start()
        proxy = None
        try:
            bucket = "bench-archive"
            S3Storage(server.endpoint()).ensure_bucket(bucket)
            clock = time.perf_counter()
            keys = _populate(server.url, server.endpoint(), bucket, symbols, args.days, tmp)
            print(f"{keys:,} keys written in {time.perf_counter() - clock:.1f} s", flush=True)
            last_day = FIRST_DAY + timedelta(args.days - 1)
            url = server.url
            if args.rtt:
                proxy = NetemProxy(NetemConfig.in_front_of(url, rtt_ms=args.rtt)).start()
                url = proxy.url
            spec = {"url": url, "bucket": bucket, "symbols": symbols}
            spec["last_day"] = last_day.isoformat()
            chosen = [
                (m, n)
                for m in args.methods.split(",")
                if m in METHODS
                for n in (thread_counts if m.startswith("discover-") else thread_counts[:1])
            ]
            rounds: dict[str, list[dict[str, Any]]] = {_label(m, n): [] for m, n in chosen}
            for _ in range(args.repeats):
                for method, threads in chosen:  # alternate, so drift in load hits all alike
                    run = _run_child(spec | {"method": method, "threads": threads})
                    rounds[_label(method, threads)].append(run)
        finally:
            if proxy is not None:
                proxy.stop()
            server.stop()
    results = {}
    for method, runs in rounds.items():
        best = dict(runs[0])
        best["seconds"] = statistics.median(r["seconds"] for r in runs)
        best["cpu_seconds"] = statistics.median(r["cpu_seconds"] for r in runs)
        best["child_cpu_seconds"] = statistics.median(r["child_cpu_seconds"] for r in runs)
        best["peak_rss_mib"] = max(r["peak_rss_mib"] for r in runs)
        best["rss_growth_mib"] = max(r["rss_growth_mib"] for r in runs)
        best["what"] = METHODS[best["method"]]
        results[method] = best
    report = {
        "date": date.today().isoformat(),
        "keys": keys,
        "symbols": args.symbols,
        "days": args.days,
        "repeats": args.repeats,
        "rtt_ms": args.rtt,
        "cpus": os.cpu_count(),
        "results": results,
    }
    print(f"{'method':<23} {'found':>8} {'s':>7} {'cpu s':>6} {'s5cmd':>6} {'MiB':>6} "
          f"{'+MiB':>6} {'requests':>8} {'keys read':>9}")  # fmt: skip
    for method, r in results.items():
        print(
            f"{method:<23} {r['found']:>8} {r['seconds']:>7.2f} {r['cpu_seconds']:>6.2f} "
            f"{r['child_cpu_seconds']:>6.2f} {r['peak_rss_mib']:>6.1f} {r['rss_growth_mib']:>6.1f} "
            f"{r.get('requests', '-'):>8} {r.get('keys_returned', '-'):>9}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
