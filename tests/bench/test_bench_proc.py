"""The benchmarks' CPU readings come from /proc: check them against processes we run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from crypto_lakehouse.bench.proc import cpu_seconds


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_own_cpu_grows_by_what_we_burn() -> None:
    before = cpu_seconds([os.getpid()])
    _burn(0.3)
    after = cpu_seconds([os.getpid()])
    assert before is not None and after is not None
    assert 0.25 <= after - before <= 1.0


def test_children_are_counted_only_when_asked() -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend=time.process_time()+0.4\n"
            "while time.process_time()<end: pass\ntime.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 10
        while (cpu_seconds([child.pid]) or 0) < 0.35 and time.monotonic() < deadline:
            time.sleep(0.05)
        alone = cpu_seconds([os.getpid()]) or 0.0
        with_children = cpu_seconds([os.getpid()], children=True) or 0.0
        assert with_children - alone >= 0.35
    finally:
        child.kill()
        child.wait()


def test_no_such_process_reads_as_none() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert cpu_seconds([child.pid]) is None
