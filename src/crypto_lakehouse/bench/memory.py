"""Child process of `bench transfer --objects N`: the engine alone, and its peak memory.

The benchmark's own process holds the CLI, rich, boto3 and the other baselines; the
engine runs here instead, importing only `crypto_lakehouse.transfer`, so the peak RSS
reported is what a process that embeds the engine pays. Input (endpoints, keys) arrives
as JSON on stdin, so no secret appears on a command line; the result is one JSON line.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from pathlib import Path

from pydantic import SecretStr

from crypto_lakehouse.storage.endpoint import Endpoint
from crypto_lakehouse.storage.urls import S3Url
from crypto_lakehouse.transfer import (
    EngineOptions,
    Mode,
    TransferEngine,
    TransferRequest,
    memory_tier_dir,
)


def _status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _reset_peak() -> bool:
    """Reset VmHWM (Linux >= 4.0: write 5 to clear_refs); False when not permitted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _sample_staging(roots: list[Path], stop: threading.Event, peak: list[int]) -> None:
    """Walk the staging folders (disk and tmpfs) every 50 ms: an outside check of the
    engine's own accounting."""
    while not stop.wait(0.05):
        total = 0
        for path in (p for root in roots for p in root.rglob("*")):
            try:
                if path.is_file():
                    total += path.stat().st_size
            except OSError:
                continue
        peak[0] = max(peak[0], total)


def main() -> None:
    spec = json.load(sys.stdin)
    source = Endpoint(url=spec["source_url"], anonymous=True)
    dest = Endpoint(
        url=spec["dest_url"],
        access_key=SecretStr(spec["dest_access_key"]),
        secret_key=SecretStr(spec["dest_secret_key"]),
    )
    options = EngineOptions.from_json(spec["options"])
    staging, tmpfs = options.staging_root, options.staging_memory_root
    walked_roots = [staging] + ([memory_tier_dir(tmpfs)] if tmpfs is not None else [])
    request = TransferRequest(
        source=source,
        source_url=S3Url.parse(spec["source"]),
        dest=dest,
        dest_url=S3Url.parse(spec["dest"]),
        mode=Mode.STAGED,
    )
    engine = TransferEngine(options)
    before = _status_kib("VmRSS")
    reset = _reset_peak()
    stop, walked = threading.Event(), [0]
    sampler = threading.Thread(
        target=_sample_staging, args=(walked_roots, stop, walked), daemon=True
    )
    sampler.start()
    started = time.monotonic()
    report = engine.run(request)
    seconds = time.monotonic() - started
    stop.set()
    sampler.join(timeout=5)
    peak = _status_kib("VmHWM")
    started = time.monotonic()
    rerun = engine.run(request)
    rerun_seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "objects": report.summary.objects,
                "copied": report.summary.copied,
                "failed": report.summary.failed,
                "bytes": report.summary.bytes,
                "seconds": seconds,
                "rerun_seconds": rerun_seconds,
                "rerun_skipped": rerun.summary.skipped,
                "rss_before_kib": before,
                "peak_rss_kib": peak,
                "peak_is_run_only": reset,
                "staging_peak_bytes": report.summary.staging_peak_bytes,
                "staging_walked_peak_bytes": walked[0],
                "staging_cap_bytes": options.staging_cap_bytes,
                "staging_memory_cap_bytes": options.staging_memory_cap_bytes,
            }
        )
    )


if __name__ == "__main__":
    main()
