"""The catalog database: the bronze manifest (which archive files are verified in bronze).

manifest = Manifest.from_settings(settings)
manifest.verified_files(market="spot", data_type="klines", ingested_since=watermark)
"""

from crypto_lakehouse.catalog.manifest import (
    Decision,
    FileResult,
    HistoryEntry,
    ListedFile,
    Manifest,
    ManifestEntry,
    ManifestOutcome,
    ManifestPlan,
)
from crypto_lakehouse.catalog.schema import FileStatus, RunStatus

__all__ = [
    "Decision",
    "FileResult",
    "FileStatus",
    "HistoryEntry",
    "ListedFile",
    "Manifest",
    "ManifestEntry",
    "ManifestOutcome",
    "ManifestPlan",
    "RunStatus",
]
