"""The CPU quota parser on cgroup files written in a temporary folder (v2, v1, nested)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crypto_lakehouse.runtime.cpu import (
    available_cpus,
    cgroup_cpu_limit,
    parse_cfs,
    parse_cpu_max,
    usable_cpus,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def container_v2(tmp_path: Path) -> tuple[Path, Path]:
    """A container in its own cgroup namespace: `0::/`, the quota at the root."""
    root = tmp_path / "cgroup"
    proc = write(tmp_path / "proc-self-cgroup", "0::/\n")
    return root, proc


@pytest.mark.parametrize(
    ("text", "cpus"),
    [("max 100000\n", None), ("200000 100000\n", 2.0), ("150000 100000", 1.5), ("50000", 0.5)],
)
def test_cpu_max_is_parsed(tmp_path: Path, text: str, cpus: float | None) -> None:
    assert parse_cpu_max(write(tmp_path / "cpu.max", text)) == cpus


@pytest.mark.parametrize("text", ["", "garbage 100000", "0 100000", "100000 0"])
def test_a_malformed_cpu_max_means_no_quota(tmp_path: Path, text: str) -> None:
    assert parse_cpu_max(write(tmp_path / "cpu.max", text)) is None


def test_cfs_quota_over_period(tmp_path: Path) -> None:
    quota = write(tmp_path / "cpu.cfs_quota_us", "250000\n")
    period = write(tmp_path / "cpu.cfs_period_us", "100000\n")
    assert parse_cfs(quota, period) == 2.5
    write(quota, "-1\n")
    assert parse_cfs(quota, period) is None
    assert parse_cfs(tmp_path / "absent", period) is None


def test_v2_quota_is_rounded_up_and_capped_by_affinity(container_v2: tuple[Path, Path]) -> None:
    root, proc = container_v2
    write(root / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_limit(root, proc) == 1.5
    assert usable_cpus(root, proc) == min(2, available_cpus())
    write(root / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(root, proc) is None
    assert usable_cpus(root, proc) == available_cpus()


def test_a_tiny_quota_still_gives_one_cpu(container_v2: tuple[Path, Path]) -> None:
    root, proc = container_v2
    write(root / "cpu.max", "10000 100000\n")
    assert usable_cpus(root, proc) == 1


def test_v2_nested_cgroup_takes_the_tightest_ancestor(tmp_path: Path) -> None:
    """On a host (no cgroup namespace) the process's own path leads to its quota."""
    root = tmp_path / "cgroup"
    proc = write(tmp_path / "self", "0::/kubepods/pod1/ctr\n")
    write(root / "kubepods" / "cpu.max", "800000 100000\n")
    write(root / "kubepods" / "pod1" / "cpu.max", "300000 100000\n")
    write(root / "kubepods" / "pod1" / "ctr" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(root, proc) == 3.0


def test_v1_quota_under_the_cpu_controller(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = write(tmp_path / "self", "12:memory:/\n4:cpu,cpuacct:/\n0::/\n")
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "100000\n")
    write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(root, proc) == 1.0
    assert usable_cpus(root, proc) == 1


def test_v1_without_quota_and_no_files_fall_back_to_the_cpus(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    proc = write(tmp_path / "self", "1:cpu:/\n")
    write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(root, proc) is None
    assert usable_cpus(root, proc) == available_cpus()
    assert cgroup_cpu_limit(tmp_path / "nothing", tmp_path / "no-proc") is None


def test_available_cpus_is_the_affinity_mask() -> None:
    assert available_cpus() == len(os.sched_getaffinity(0))
