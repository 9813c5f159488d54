"""The benchmarks' CPU readings come from /proc: check them against processes we run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from crypto_lakehouse.bench.proc import (
    cpu_seconds,
    host_busy_seconds,
    pids_marked,
    tree_cpu_seconds,
)


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


_BURN_THEN_SLEEP = (
    "import time\nend=time.process_time()+{burn}\n"
    "while time.process_time()<end: pass\ntime.sleep(30)"
)


def test_a_tree_counts_live_grandchildren_and_reaped_children() -> None:
    """A parent that reaps a 0.3 s child and keeps a 0.4 s grandchild alive: both count."""
    script = (
        "import subprocess, sys, time\n"
        f"subprocess.run([sys.executable, '-c', {_BURN_THEN_SLEEP.format(burn=0.3)!r}"
        ".replace('time.sleep(30)', '')])\n"
        f"subprocess.Popen([sys.executable, '-c', {_BURN_THEN_SLEEP.format(burn=0.4)!r}])\n"
        "time.sleep(30)\n"
    )
    before_host = host_busy_seconds()
    parent = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while tree_cpu_seconds([parent.pid]) < 0.7 and time.monotonic() < deadline:
            time.sleep(0.05)
        used = tree_cpu_seconds([parent.pid])
        alone = cpu_seconds([parent.pid]) or 0.0  # the parent's own time, without children
        assert used >= 0.7
        assert used - alone >= 0.65
        assert host_busy_seconds() - before_host >= 0.7
    finally:
        os.killpg(parent.pid, 9)
        parent.wait()


def test_marked_processes_are_found_by_their_environment() -> None:
    mark = f"test-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "LAKEHOUSE_TEST_MARK": mark}
    marked = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], env=env)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pids_marked("LAKEHOUSE_TEST_MARK", mark) == [marked.pid]
        assert pids_marked("LAKEHOUSE_TEST_MARK", mark + "x") == []
    finally:
        for proc in (marked, other):
            proc.kill()
            proc.wait()
