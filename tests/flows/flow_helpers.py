"""A tiny archive of the real shape on the source endpoint, for the ingest flow tests.

The real fixture files sit at their real paths; synthetic daily klines fill a week
around them with one planted missing day and one planted corrupt file (bytes that do
not match their CHECKSUM). `replace()` publishes a new version of a file, as Binance does.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from crypto_lakehouse.archive import ArchiveFile
from crypto_lakehouse.catalog import Manifest
from crypto_lakehouse.storage import S3Storage

MISSING_DAY = date(2026, 5, 4)
CORRUPT = ArchiveFile("spot", "daily", "klines", "ETHUSDT", date(2026, 5, 6), "1h")


def kline_zip(file: ArchiveFile, seed: str = "") -> bytes:
    """A small, deterministic zip holding one CSV named like Binance's."""
    rows = "\n".join(
        f"{1746057600000 + h * 3600000},{100 + h}.0,{101 + h}.0,{99 + h}.0,{100 + h}.5,1.0,"
        f"{1746061199999 + h * 3600000},100.0,10,0.5,50.0,0{seed}"
        for h in range(24)
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(file.csv_name, date_time=(2026, 5, 9, 0, 0, 0))
        zf.writestr(info, rows + "\n")
    return buffer.getvalue()


def sidecar(data: bytes, file: ArchiveFile) -> bytes:
    return f"{hashlib.sha256(data).hexdigest()}  {file.filename}\n".encode()


@dataclass
class TinyArchive:
    storage: S3Storage
    bucket: str
    good: dict[str, str] = field(default_factory=dict)  # path -> sha256 of files that verify
    corrupt: str = ""

    def put(self, file: ArchiveFile, data: bytes, *, checksum: bytes | None = None) -> None:
        self.storage.put_bytes(self.bucket, file.key, data)
        self.storage.put_bytes(self.bucket, file.checksum_key, checksum or sidecar(data, file))

    def add_good(self, file: ArchiveFile, data: bytes) -> None:
        self.put(file, data)
        self.good[file.key] = hashlib.sha256(data).hexdigest()

    def replace(self, file: ArchiveFile) -> str:
        """Publish a new version (new bytes, new CHECKSUM); returns its sha256."""
        self.add_good(file, kline_zip(file, seed="-v2"))
        return self.good[file.key]

    # The query that covers everything in this archive.
    parameters = {
        "markets": ["spot", "futures/um"],
        "data_types": ["klines", "fundingRate"],
        "intervals": ["1h"],
        "start": "2026-04-01",
        "end": "2026-05-31",
    }


def build_tiny_archive(storage: S3Storage, bucket: str, fixtures: Path) -> TinyArchive:
    archive = TinyArchive(storage, bucket)
    for path in sorted(fixtures.rglob("*.zip")):
        key = str(path.relative_to(fixtures))
        checksum = path.with_name(path.name + ".CHECKSUM").read_bytes()
        storage.put_bytes(bucket, key, path.read_bytes())
        storage.put_bytes(bucket, key + ".CHECKSUM", checksum)
        archive.good[key] = checksum.split()[0].decode()
    for day in range(1, 8):
        if day == MISSING_DAY.day:
            continue
        file = ArchiveFile("spot", "daily", "klines", "BTCUSDT", date(2026, 5, day), "1h")
        archive.add_good(file, kline_zip(file))
    for day in (5, 7):
        file = ArchiveFile("spot", "daily", "klines", "ETHUSDT", date(2026, 5, day), "1h")
        archive.add_good(file, kline_zip(file))
    data = kline_zip(CORRUPT)
    archive.put(CORRUPT, data[:-7] + b"garbage", checksum=sidecar(data, CORRUPT))
    archive.corrupt = CORRUPT.key
    return archive


@dataclass
class IngestEnv:
    archive: TinyArchive
    bronze: S3Storage
    bronze_bucket: str
    manifest: Manifest
    env: dict[str, str]  # what a child process (worker, CLI) needs
    parameters: dict
