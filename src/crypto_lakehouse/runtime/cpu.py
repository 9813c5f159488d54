"""How many CPUs this process may really use: the container's CPU quota, not the node's cores.

In a Kubernetes pod `os.cpu_count()` counts the node's cores (64 on a big node) while the
pod's `limits.cpu` (say 4) is enforced by the kernel's CFS quota: sizing parallelism by
the former starts more s5cmd processes and threads than the quota can run, and they only
contend. The quota is read from cgroup v2 (`cpu.max`: `"max 100000"` or
`"200000 100000"`) or v1 (`cpu.cfs_quota_us` / `cpu.cfs_period_us`, `-1` = none), in the
process's own cgroup and every ancestor (the tightest wins); the CPU affinity mask
(`taskset`, cpuset) caps it too. Unreadable or absent files mean "no quota".
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
_V1_CONTROLLER_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """CPUs to size in-run parallelism by: the quota rounded up, at most the CPUs this
    process may be scheduled on, at least 1."""
    available = available_cpus()
    quota = cgroup_cpu_limit(cgroup_root, self_cgroup)
    if quota is None:
        return available
    return max(1, min(available, math.ceil(quota)))


def available_cpus() -> int:
    """CPUs in this process's affinity mask (what `taskset`/cpuset allow), else all cores."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def cgroup_cpu_limit(
    cgroup_root: Path = CGROUP_ROOT, self_cgroup: Path = PROC_SELF_CGROUP
) -> float | None:
    """The CPU quota in CPUs (e.g. 1.5), the tightest of v2 and v1 files found; None: none."""
    paths = _own_cgroups(self_cgroup)
    limits = [
        limit
        for limit in (
            *(parse_cpu_max(f) for f in _candidates(cgroup_root, paths.get("v2"), "cpu.max")),
            *(
                parse_cfs(quota, quota.with_name("cpu.cfs_period_us"))
                for quota in _v1_candidates(cgroup_root, paths.get("v1"))
            ),
        )
        if limit is not None
    ]
    return min(limits) if limits else None


def parse_cpu_max(path: Path) -> float | None:
    """cgroup v2 `cpu.max` ("QUOTA PERIOD", QUOTA may be "max") as CPUs; None: unlimited."""
    try:
        fields = path.read_text().split()
    except OSError:
        return None
    if not fields or fields[0] == "max":
        return None
    try:
        quota = int(fields[0])
        period = int(fields[1]) if len(fields) > 1 else 100_000
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def parse_cfs(quota_file: Path, period_file: Path) -> float | None:
    """cgroup v1 `cpu.cfs_quota_us` over `cpu.cfs_period_us` as CPUs; None: `-1` or absent."""
    try:
        quota = int(quota_file.read_text().strip())
        period = int(period_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _own_cgroups(self_cgroup: Path) -> dict[str, str]:
    """This process's cgroup path for v2 (`0::/path`) and for v1's cpu controller."""
    try:
        lines = self_cgroup.read_text().splitlines()
    except OSError:
        return {}
    found: dict[str, str] = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            found["v2"] = path
        elif "cpu" in controllers.split(","):
            found["v1"] = path
    return found


def _candidates(base: Path, own: str | None, name: str) -> Iterator[Path]:
    """`base/name`, then `name` in the process's own cgroup and each ancestor below base.

    In a container (its own cgroup namespace) the own path is `/` and `base` is the
    container's cgroup; on a host the own path is the real one under `base`."""
    seen = {base / name}
    yield base / name
    if not own:
        return
    relative = PurePosixPath(own.lstrip("/"))
    for depth in range(1, len(relative.parts) + 1):
        candidate = base.joinpath(*relative.parts[:depth]) / name
        if candidate not in seen:
            seen.add(candidate)
            yield candidate


def _v1_candidates(cgroup_root: Path, own: str | None) -> Iterator[Path]:
    for directory in _V1_CONTROLLER_DIRS:
        base = cgroup_root / directory
        if base.is_dir():
            yield from _candidates(base, own, "cpu.cfs_quota_us")
            return  # `cpu,cpuacct` is usually a symlink to the same hierarchy as `cpu`
