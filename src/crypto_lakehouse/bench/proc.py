"""CPU seconds of server processes, read from /proc (Linux), for the benchmarks' CPU columns.

On two cores a benchmark's client and its servers compete for the same CPU, so the CPU a
method makes the servers burn explains its wall time as much as its own CPU does.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path


def cpu_seconds(pids: Collection[int], *, children: bool = False) -> float | None:
    """utime + stime of `pids` (and, with `children`, their direct children); None if none run."""
    wanted = {str(pid) for pid in pids}
    stats = (
        Path("/proc").glob("[0-9]*/stat")
        if children
        else (Path(f"/proc/{pid}/stat") for pid in wanted)
    )
    ticks = os.sysconf("SC_CLK_TCK")
    total, found = 0.0, False
    for stat in stats:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if stat.parent.name in wanted or (children and fields[1] in wanted):
            total += (int(fields[11]) + int(fields[12])) / ticks
            found = True
    return total if found else None
