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

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.storage.urls import S3Url, validate_bucket_name, validate_prefix

MAX_FAILED_OBJECTS = 100  # failed objects kept per operation; the total is kept as a number
MAX_OBJECTS = 10_000  # objects one request may name (`SyncRequest.objects`)
MAX_OBJECT_PAGE = 5_000  # per-object results per page (`GET /operations/{id}/objects`)
MAX_WAIT_SECONDS = 60.0  # the longest long-poll (`GET /operations/{id}?wait=`)


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


def _object_key(value: str) -> str:
    if value.endswith("/"):
        raise ValueError("an object key must not end with '/'")
    return _prefix(value)


BucketName = Annotated[str, Field(min_length=3, max_length=63), AfterValidator(_bucket)]
Prefix = Annotated[str, Field(max_length=1024), AfterValidator(_prefix)]
ObjectKey = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_object_key)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


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


class ObjectSpec(_Strict):
    """One object of an explicit list: `source.prefix + key` is copied to
    `destination.prefix + key`."""

    key: ObjectKey = Field(description="The key below source.prefix (and destination.prefix).")
    size: int = Field(ge=0, le=5 * 1024**4, description="Bytes, as the caller listed it.")
    sha256: Sha256 | None = Field(
        default=None,
        description="Expected SHA-256 (64 lower-case hex digits): the replica verifies the "
        "bytes against it. Without it, a sibling `<key>.CHECKSUM` in the list is used.",
    )


class SyncRequest(_Strict):
    """The design's `POST /sync` payload.

    Without `objects` the operation covers everything under `source.prefix`. With
    `objects` it copies exactly those (one s5cmd line each, nothing listed at the source),
    verifies each against its `sha256` or its listed `.CHECKSUM` sidecar, and keeps a
    result per object (`GET /operations/{id}/objects`). A list needs `operation_type`
    `copy` and holds at most MAX_OBJECTS distinct keys.
    """

    operation_type: OperationType = OperationType.SYNC
    source: SourceSpec
    destination: DestinationSpec
    operation_mode: OperationMode = OperationMode.AUTO
    configuration: TransferConfiguration = Field(default_factory=TransferConfiguration)
    objects: list[ObjectSpec] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_OBJECTS,
        description=f"At most {MAX_OBJECTS} objects; omitted: the whole prefix.",
    )

    @field_validator("objects")
    @classmethod
    def _a_copy_of_distinct_keys(
        cls, objects: list[ObjectSpec] | None, info: ValidationInfo
    ) -> list[ObjectSpec] | None:
        if objects is None:
            return objects
        if info.data.get("operation_type") is not OperationType.COPY:
            raise ValueError("an explicit object list needs operation_type 'copy'")
        if info.data.get("operation_mode") is OperationMode.DIRECT_SYNC:
            raise ValueError("an explicit object list is verified, so it cannot be direct_sync")
        seen: set[str] = set()
        for item in objects:
            if item.key in seen:
                raise ValueError(f"key {item.key!r} is listed twice")
            seen.add(item.key)
        return objects

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
        objects: list[ObjectSpec] | None = None,
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
            objects=objects,
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
    listed_objects: int = Field(
        0,
        description="Objects named by the request (0: the whole prefix); each one's result "
        "is at GET /operations/{id}/objects.",
    )
    error: str | None = None
    cancel_requested: bool = False
    attempts: int = Field(0, description="How many times a replica claimed it.")
    replica: str | None = Field(None, description="The replica that ran it last.")
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime


class ObjectOutcome(StrEnum):
    """One listed object's result; `pending` until its run has reported it."""

    PENDING = "pending"
    COPIED = "copied"
    SKIPPED = "skipped"
    FAILED = "failed"
    CORRUPT = "corrupt"


class ObjectResultView(BaseModel):
    """One listed object: where it went and how, with the SHA-256 the replica verified."""

    key: str = Field(description="As listed (below source.prefix).")
    source_key: str
    dest_key: str
    size: int
    outcome: ObjectOutcome
    sha256: str | None = Field(None, description="The verified digest; null if not verified.")
    error: str | None = None


class ObjectResultPage(BaseModel):
    """Results in key order; pass `next_after` as `after` for the next page (null: done)."""

    operation_id: str
    status: OperationStatus
    items: list[ObjectResultView]
    next_after: str | None = None


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
