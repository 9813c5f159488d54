"""Vacuum gives back the disk space of deleted objects (the transfer benchmark relies on it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import S3Storage

MIB = 1024 * 1024


def _volume_bytes(server: SeaweedServer) -> int:
    return sum(p.stat().st_size for p in Path(server.root, "data").rglob("*.dat"))


def test_vacuum_reclaims_deleted_objects(lake_server: SeaweedServer, lake_bucket: str) -> None:
    storage = S3Storage(lake_server.endpoint())
    keys = [f"junk/{i}" for i in range(6)]
    for key in keys:
        storage.put_bytes(lake_bucket, key, os.urandom(8 * MIB))
    lake_server.vacuum()
    full = _volume_bytes(lake_server)
    storage.delete_keys(lake_bucket, keys)
    # The filer hands deleted chunks to the volume servers asynchronously (about a second).
    deadline = time.monotonic() + 15
    while full - _volume_bytes(lake_server) < 40 * MIB and time.monotonic() < deadline:
        lake_server.vacuum()
        time.sleep(0.5)
    assert full - _volume_bytes(lake_server) >= 40 * MIB
