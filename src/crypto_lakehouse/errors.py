"""The project's error tree; foreign errors are translated where they enter.

    LakehouseError
    ├── ConfigError            bad settings or arguments (terminal)
    ├── StorageError           an S3 endpoint misbehaved
    │   ├── EndpointUnreachable    nothing answers (transient)
    │   ├── AccessDenied           credentials rejected (terminal)
    │   └── BucketNotFound         (terminal)
    ├── TransferError          a batch cannot run: over the staging cap, listing out of
    │                          order, binary not executable (terminal)
    │   └── TransferInterrupted    s5cmd could not start for lack of resources, or died
    │                              without a per-object error (transient)
    ├── ChecksumMismatch       bytes do not match their published SHA-256 (terminal)
    ├── ArchiveError           a path or combination Binance does not publish (terminal)
    │   └── ZipFormatError         a bronze object is not a single-member archive zip
    ├── SchemaDrift            a file's columns or types do not match its schema (terminal)
    ├── StackError             a local service could not start or stop
    ├── CatalogError           the manifest database refused a request (terminal)
    │   └── CatalogUnavailable     the manifest database is unreachable (transient)
    ├── IngestFailed           an ingest finished, but files were corrupt or failed
    └── ExecutorError          the executor service or its operation store failed a request
        ├── ExecutorUnavailable    unreachable, 5xx, or its database is down (transient)
        ├── QueueFull              too many pending operations; retry later (transient)
        └── OperationNotFound      no operation with that id (terminal)

`transient` says whether retrying the same call can help; Prefect retries only those.
"""

from __future__ import annotations


class LakehouseError(Exception):
    """Root of every error this package raises on purpose."""

    transient: bool = False


class ConfigError(LakehouseError):
    """Settings or arguments are invalid."""


class StorageError(LakehouseError):
    """An S3 endpoint refused or failed a request."""


class EndpointUnreachable(StorageError):
    """Nothing answers at the endpoint, or it timed out."""

    transient = True


class AccessDenied(StorageError):
    """The endpoint rejected the credentials (or their absence)."""


class BucketNotFound(StorageError):
    """The bucket does not exist on the endpoint."""


class TransferError(LakehouseError):
    """A batch cannot run at all (not: some objects failed).

    Terminal: what raises it (a chunk above the staging cap, a listing out of key order,
    a binary that cannot be executed) fails the same way on every retry.
    """


class TransferInterrupted(TransferError):
    """s5cmd could not start for lack of resources (processes, memory, file descriptors),
    or exited non-zero without naming any object: a later try may get through."""

    transient = True


class ChecksumMismatch(LakehouseError):
    """An object's bytes do not hash to the SHA-256 its publisher announced."""


class ArchiveError(LakehouseError):
    """A market / data type / interval combination or path Binance does not publish."""


class StackError(LakehouseError):
    """A local service (SeaweedFS, PostgreSQL, Prefect, ...) could not start or stop."""


class ExecutorError(LakehouseError):
    """The executor service (or its operation store) refused or failed a request."""


class ExecutorUnavailable(ExecutorError):
    """The service or its database does not answer, or answered 5xx."""

    transient = True


class QueueFull(ExecutorError):
    """The pending-operation queue is at its bound; `retry_after` says when to try again."""

    transient = True

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OperationNotFound(ExecutorError):
    """No operation has that id."""


class ZipFormatError(ArchiveError):
    """A bronze object is not the single-member zip the archive publishes (terminal)."""


class SchemaDrift(LakehouseError):
    """A file's columns or value types do not match its data type's schema (terminal).

    The transform flags and skips such a file rather than guessing at its layout.
    """


class CatalogError(LakehouseError):
    """The manifest (catalog) database refused or failed a request."""


class CatalogUnavailable(CatalogError):
    """The manifest database does not answer (down, restarting, network)."""

    transient = True


class IngestFailed(LakehouseError):
    """An ingest ran to the end, but some files were corrupt or failed; `problems` lists them."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []
