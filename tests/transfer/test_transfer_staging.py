"""The staging area: where chunks land (memory or disk), its caps, and clean-up of dead runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crypto_lakehouse.errors import TransferError
from crypto_lakehouse.transfer.staging import StagingArea, remove_stale_runs


def test_small_chunks_go_to_memory_until_its_cap_then_to_disk(tmp_path: Path) -> None:
    (tmp_path / "mem").mkdir()  # stands in for the tmpfs mount, which must exist
    area = StagingArea(
        tmp_path / "disk", 10_000, memory_root=tmp_path / "mem", memory_cap_bytes=3000
    )
    first, second, third = (area.new_chunk(n) for n in (2000, 2000, 1000))
    assert first.parent == area.memory_dir
    assert area.memory_dir.parent == tmp_path / "mem" / f"crypto-lakehouse-{os.getuid()}"
    assert second.parent == area.dir, "over the memory cap: disk"
    assert third.parent == area.memory_dir, "2000 + 1000 still fits"
    area.release(first, 2000)
    assert area.new_chunk(2000).parent == area.memory_dir, "released memory is reusable"
    assert area.new_chunk().parent == area.dir, "one-object work folders stay on disk"
    area.close()
    assert list(area.memory_dir.parent.iterdir()) == [] and list(area.root.iterdir()) == []


def test_the_memory_cap_is_shared_by_the_runs_of_one_process(tmp_path: Path) -> None:
    (tmp_path / "mem").mkdir()
    tier = {"memory_root": tmp_path / "mem", "memory_cap_bytes": 3000}
    one, two = (StagingArea(tmp_path / name, 10_000, **tier) for name in ("a", "b"))
    kept = one.new_chunk(2000)
    assert kept.parent == one.memory_dir
    assert two.new_chunk(2000).parent == two.dir, "the other run already holds 2000 of 3000"
    one.close()  # closing gives back what a run still held
    assert two.new_chunk(2000).parent == two.memory_dir
    two.close()


def test_an_unusable_memory_root_means_disk_only(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")  # the tier's folder cannot be made below a file
    area = StagingArea(tmp_path / "disk", 10_000, memory_root=blocker, memory_cap_bytes=3000)
    assert area.memory_dir is None
    assert area.new_chunk(100).parent == area.dir
    area.close()


def test_the_overall_cap_counts_both_tiers(tmp_path: Path) -> None:
    (tmp_path / "mem").mkdir()
    area = StagingArea(tmp_path / "disk", 3000, memory_root=tmp_path / "mem", memory_cap_bytes=3000)
    area.reserve(2000)
    with pytest.raises(TransferError, match="above its cap"):
        area.reserve(1500)
    area.close()


def test_clean_up_removes_dead_runs_only(tmp_path: Path) -> None:
    root = tmp_path / "staging"
    mine = StagingArea(root, 1000)
    dead_pid = _pid_of_an_exited_process()
    dead = root / "run-20260101T000000-1-abcdef"
    dead.mkdir()
    (dead / "owner").write_text(f"{dead_pid}\n")
    half_built = root / ".new-20260101T000000-2-abcdef"
    half_built.mkdir()  # young: another run may be about to rename it
    assert remove_stale_runs(root) == [dead]
    assert mine.dir.is_dir() and half_built.is_dir()
    old = 1_000_000_000
    os.utime(half_built, (old, old))
    assert remove_stale_runs(root) == [half_built]
    mine.close()


def _pid_of_an_exited_process() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
