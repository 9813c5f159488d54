"""The s5cmd transfer engine: plan -> command file -> one s5cmd process per batch -> results.

Usable alone (it knows nothing of Binance, Prefect or HTTP)::

    engine = TransferEngine(EngineOptions.from_settings(settings))
    report = engine.run(TransferRequest(source=src, source_url=S3Url.parse("s3://a/p/"),
                                        dest=lake, dest_url=S3Url.parse("s3://bronze/p/")))
    report.summary.ok
"""

from crypto_lakehouse.transfer.engine import TransferEngine
from crypto_lakehouse.transfer.models import (
    EngineOptions,
    ListingScope,
    Mode,
    ObjectResult,
    Outcome,
    TransferProgress,
    TransferReport,
    TransferRequest,
    TransferSummary,
)

__all__ = [
    "EngineOptions",
    "ListingScope",
    "Mode",
    "ObjectResult",
    "Outcome",
    "TransferEngine",
    "TransferProgress",
    "TransferReport",
    "TransferRequest",
    "TransferSummary",
]
