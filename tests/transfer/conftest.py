"""Fixtures for the transfer tests: engines with a private staging folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from transfer_helpers import Sides

from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.transfer import EngineOptions, TransferEngine


@pytest.fixture
def sides(
    source_server: SeaweedServer, lake_server: SeaweedServer, source_bucket: str, lake_bucket: str
) -> Sides:
    return Sides(source_server, lake_server, source_bucket, lake_bucket)


@pytest.fixture
def engine(tmp_path: Path) -> TransferEngine:
    return TransferEngine(EngineOptions(staging_root=tmp_path / "staging", probe_timeout=3.0))


@pytest.fixture
def make_engine(tmp_path: Path) -> Callable[..., TransferEngine]:
    def build(**overrides: object) -> TransferEngine:
        options = EngineOptions(staging_root=tmp_path / "staging", probe_timeout=3.0)
        for name, value in overrides.items():
            setattr(options, name, value)
        return TransferEngine(options)

    return build
