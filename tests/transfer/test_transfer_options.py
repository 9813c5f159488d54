"""Engine knobs have one home: `Settings` declares each default, `EngineOptions` reads it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from crypto_lakehouse.config import Settings
from crypto_lakehouse.transfer import EngineOptions


def test_defaults_are_the_settings_defaults(tmp_path: Path, monkeypatch) -> None:
    for name in ("S5CMD_MAX_CONCURRENT", "S5CMD_PART_SIZE", "STAGING_CHUNK_BYTES"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(lakehouse_home=tmp_path, staging_memory_dir="")
    from_settings = EngineOptions.from_settings(settings)
    direct = EngineOptions(staging_root=settings.staging_root)
    # Only the memory tier differs on purpose: a directly built engine stages on disk.
    assert direct == replace(from_settings, staging_memory_cap_bytes=0)


def test_options_survive_the_trip_to_a_child_process(tmp_path: Path) -> None:
    options = EngineOptions(
        staging_root=tmp_path / "s",
        staging_memory_root=tmp_path / "shm",
        staging_memory_cap_bytes=1 << 20,
        max_concurrent=7,
        overlap=True,
    )
    assert EngineOptions.from_json(options.as_json()) == options
