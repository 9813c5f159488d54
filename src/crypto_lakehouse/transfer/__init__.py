"""The s5cmd transfer engine: plan -> command file -> one s5cmd process per batch -> results.

Usable alone (it knows nothing of Binance, Prefect or HTTP)::

    engine = TransferEngine(EngineOptions.from_settings(settings))
    report = engine.run(TransferRequest(source=src, source_url=S3Url.parse("s3://a/p/"),
                                        dest=lake, dest_url=S3Url.parse("s3://bronze/p/")))
    report.summary.ok

The names below are the package's public surface: other parts import them from here,
never from its modules (a test keeps it so). Besides the engine, they are the pieces a
caller needs to drive s5cmd itself (`Invocation`, `Listing`, `upload_tree`), to hand the
engine its own listing (`ListedObject`, which `TransferRequest.source_listing` holds) and
to stage bytes the way the engine does (`StagingArea`).
"""

from crypto_lakehouse.transfer.binary import Invocation, s5cmd_binary
from crypto_lakehouse.transfer.commands import has_glob
from crypto_lakehouse.transfer.engine import TransferEngine
from crypto_lakehouse.transfer.lines import folder_of
from crypto_lakehouse.transfer.listing import ListedObject, Listing, check_reachable, listed_stamp
from crypto_lakehouse.transfer.models import (
    EngineOptions,
    ListingScope,
    Mode,
    ObjectResult,
    TransferOutcome,
    TransferProgress,
    TransferReport,
    TransferRequest,
    TransferSummary,
)
from crypto_lakehouse.transfer.staging import StagingArea, memory_tier_dir
from crypto_lakehouse.transfer.upload import upload_tree

__all__ = [
    "EngineOptions",
    "Invocation",
    "ListedObject",
    "Listing",
    "ListingScope",
    "Mode",
    "ObjectResult",
    "StagingArea",
    "TransferEngine",
    "TransferOutcome",
    "TransferProgress",
    "TransferReport",
    "TransferRequest",
    "TransferSummary",
    "check_reachable",
    "folder_of",
    "has_glob",
    "listed_stamp",
    "memory_tier_dir",
    "s5cmd_binary",
    "upload_tree",
]
