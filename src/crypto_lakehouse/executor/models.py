"""The executor's HTTP vocabulary: what a client sends and what it gets back.

Requests reject unknown fields (`extra="forbid"`) and check bucket names and prefixes
with the storage layer's rules, so a bad value is answered with 422 naming the field
before anything is queued. These models import only pydantic: `ExecutorClient` shares
them without pulling in FastAPI.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.storage.urls import S3Url, validate_bucket_name, validate_prefix

MAX_FAILED_OBJECTS = 100  # failed objects kept per operation; the total is kept as a number


def _bucket(value: str) -> str:
    try:
        return validate_bucket_name(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def _prefix(value: str) -> str:
    try:
        return validate_prefix(value)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


BucketName = Annotated[str, Field(min_length=3, max_length=63), AfterValidator(_bucket)]
Prefix = Annotated[str, Field(max_length=1024), AfterValidator(_prefix)]


class OperationType(StrEnum):
    """`sync` skips objects already up to date at the destination; `copy` always copies."""

    SYNC = "sync"
    COPY = "copy"


class OperationMode(StrEnum):
    """The design's names for the engine's modes (`direct_sync` is the engine's `direct`)."""

    DIRECT_SYNC = "direct_sync"
    STAGED = "staged"
    TRADITIONAL = "traditional"
    AUTO = "auto"


class OperationStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in {
            OperationStatus.COMPLETED,
            OperationStatus.FAILED,
            OperationStatus.CANCELLED,
        }


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSpec(_Strict):
    """Where to read. No `endpoint` means the lake itself; other endpoints must be allowed."""

    bucket: BucketName
    prefix: Prefix = ""
    endpoint: str | None = Field(
        default=None,
        min_length=8,
        max_length=2048,
        pattern=r"^https?://",
        description="http(s)://host[:port] of the source S3 service; omitted: the lake. "
        "Must be on the service's EXECUTOR_ALLOWED_SOURCE_ENDPOINTS list.",
    )
    anonymous: bool | None = Field(
        default=None,
        description="Unsigned reads. Default: signed on the lake, anonymous elsewhere "
        "(the service holds credentials for the lake only).",
    )


class DestinationSpec(_Strict):
    """Where to write: always a bucket on the service's configured lake."""

    bucket: BucketName
    prefix: Prefix = ""


class TransferConfiguration(_Strict):
    """Per-operation s5cmd knobs; omitted values come from the service's settings."""

    max_concurrent: int | None = Field(
        default=None, ge=1, le=1024, description="s5cmd --numworkers (capped by the service)."
    )
    part_size_mb: int | None = Field(
        default=None, ge=5, le=5120, description="Multipart part size in MiB."
    )


class SyncRequest(_Strict):
    """The design's `POST /sync` payload."""

    operation_type: OperationType = OperationType.SYNC
    source: SourceSpec
    destination: DestinationSpec
    operation_mode: OperationMode = OperationMode.AUTO
    configuration: TransferConfiguration = Field(default_factory=TransferConfiguration)

    @classmethod
    def for_urls(
        cls,
        source: S3Url,
        destination: S3Url,
        *,
        source_endpoint: str | None = None,
        anonymous: bool | None = None,
        mode: OperationMode = OperationMode.AUTO,
        operation_type: OperationType = OperationType.SYNC,
        max_concurrent: int | None = None,
        part_size_mb: int | None = None,
    ) -> SyncRequest:
        """Build a request from two `s3://` addresses (what flows and the CLI hold)."""
        return cls(
            operation_type=operation_type,
            source=SourceSpec(
                bucket=source.bucket,
                prefix=source.prefix,
                endpoint=source_endpoint,
                anonymous=anonymous,
            ),
            destination=DestinationSpec(bucket=destination.bucket, prefix=destination.prefix),
            operation_mode=mode,
            configuration=TransferConfiguration(
                max_concurrent=max_concurrent, part_size_mb=part_size_mb
            ),
        )


class SubmitResponse(BaseModel):
    operation_id: str
    status: OperationStatus


class Progress(BaseModel):
    objects_done: int = 0
    objects_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0


class OutcomeCounts(BaseModel):
    copied: int = 0
    skipped: int = 0
    failed: int = 0
    corrupt: int = 0


class FailedObject(BaseModel):
    key: str
    outcome: str
    reason: str


class SourceView(BaseModel):
    bucket: str
    prefix: str
    endpoint: str | None = Field(description="null: the lake")
    anonymous: bool


class OperationView(BaseModel):
    """One operation as stored: what was asked, how far it got, and how it ended."""

    operation_id: str
    status: OperationStatus
    operation_type: OperationType
    operation_mode: OperationMode
    source: SourceView
    destination: DestinationSpec
    configuration: TransferConfiguration = Field(description="The effective values.")
    progress: Progress
    counts: OutcomeCounts
    summary: dict[str, Any] | None = Field(
        default=None, description="The engine's summary once the run ended."
    )
    failed_objects: list[FailedObject] = Field(
        default_factory=list, description=f"At most {MAX_FAILED_OBJECTS} entries."
    )
    failed_objects_total: int = 0
    error: str | None = None
    cancel_requested: bool = False
    attempts: int = Field(0, description="How many times a replica claimed it.")
    replica: str | None = Field(None, description="The replica that ran it last.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime


class OperationPage(BaseModel):
    items: list[OperationView]
    total: int
    limit: int
    offset: int


class HealthView(BaseModel):
    status: str
    version: str
    s5cmd_version: str
    replica: str
    auth: str = Field(description="'bearer', or 'disabled' under --insecure-dev")


class ReadyView(BaseModel):
    ready: bool
    storage: str
    database: str


class FieldProblem(BaseModel):
    field: str
    reason: str
    type: str


class ValidationProblems(BaseModel):
    detail: list[FieldProblem]


class ErrorView(BaseModel):
    detail: str
