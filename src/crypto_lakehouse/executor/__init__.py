"""The s5cmd executor service (design component C4) and its client.

The service (`crypto_lakehouse.executor.app.create_app`, run by `crypto-lakehouse executor
serve`) queues transfer operations in a database and runs them through the transfer
engine; clients use `ExecutorClient`. Importing this package pulls in neither FastAPI nor
the engine, so flows can use the client cheaply.
"""

from crypto_lakehouse.executor.client import ExecutorClient
from crypto_lakehouse.executor.models import (
    DestinationSpec,
    OperationMode,
    OperationStatus,
    OperationType,
    OperationView,
    SourceSpec,
    SubmitResponse,
    SyncRequest,
    TransferConfiguration,
)

__all__ = [
    "DestinationSpec",
    "ExecutorClient",
    "OperationMode",
    "OperationStatus",
    "OperationType",
    "OperationView",
    "SourceSpec",
    "SubmitResponse",
    "SyncRequest",
    "TransferConfiguration",
]
