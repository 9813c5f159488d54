"""CPU seconds of server processes, read from /proc (Linux), for the benchmarks' CPU columns.

On two cores a benchmark's client and its servers compete for the same CPU, so the CPU a
method makes the servers burn explains its wall time as much as its own CPU does.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path


def _stat_fields(stat: Path) -> list[str] | None:
    """The fields of a /proc/<pid>/stat after the command name (state, ppid, ...); None when
    the process is gone."""
    try:
        return stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


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
        fields = _stat_fields(stat)
        if fields is None:
            continue
        if stat.parent.name in wanted or (children and fields[1] in wanted):
            total += (int(fields[11]) + int(fields[12])) / ticks
            found = True
    return total if found else None


def pids_marked(name: str, value: str) -> list[int]:
    """PIDs whose environment holds `name=value` (this user's processes; Linux).

    A process a helper started may start others outside its process group (Prefect's
    worker can start a flow run in a new session); an environment variable set by the
    helper reaches them all, so they can be stopped by PID without guessing by name.
    """
    wanted = f"{name}={value}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if wanted in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except (OSError, ValueError):
            continue
    return [pid for pid in found if pid != os.getpid()]


def tree_cpu_seconds(roots: Collection[int]) -> float:
    """CPU seconds the processes `roots` and all their descendants have used so far.

    Every live process of the trees counts its own time plus that of the children it has
    reaped (utime + stime + cutime + cstime): a reaped child's whole time moved into its
    parent's, so nothing counts twice. The difference of two readings is what the trees
    used in between, short-lived children (s5cmd, flow-run processes) included.
    """
    children: dict[str, list[str]] = {}
    times: dict[str, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(stat)
        if fields is None:
            continue
        children.setdefault(fields[1], []).append(stat.parent.name)
        times[stat.parent.name] = sum(int(f) for f in fields[11:15]) / ticks
    members: set[str] = set()
    todo = [str(pid) for pid in roots if str(pid) in times]
    while todo:
        pid = todo.pop()
        if pid not in members:
            members.add(pid)
            todo += children.get(pid, [])
    return sum(times[pid] for pid in members)


def host_busy_seconds() -> float:
    """CPU seconds every core of this host has been busy so far (all processes; /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    busy = sum(values) - values[3] - values[4]
    return busy / os.sysconf("SC_CLK_TCK")
