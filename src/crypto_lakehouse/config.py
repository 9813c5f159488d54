"""One settings model, built once at the edge (CLI, service start-up, flow entry) and passed down.

Environment names follow the design document (`MINIO_ENDPOINT`, `S5CMD_MAX_CONCURRENT`, ...).
`S5CMD_PART_SIZE` is in bytes, as in the design; s5cmd's `--part-size` takes MiB, and
`part_size_mib` does that conversion in one place.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
DEFAULT_HOME = Path("~/.crypto-lakehouse")
DEFAULT_TRANSFER_SLOTS = 4


class Settings(BaseSettings):
    """Every knob of the project; secrets are `SecretStr` and never logged."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    lakehouse_home: Path = Field(
        default=DEFAULT_HOME, validation_alias=AliasChoices("LAKEHOUSE_HOME")
    )

    # The lake (MinIO in production, SeaweedFS locally): signed requests.
    lake_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("MINIO_ENDPOINT", "lake_endpoint")
    )
    lake_access_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("MINIO_ACCESS_KEY", "lake_access_key")
    )
    lake_secret_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("MINIO_SECRET_KEY", "lake_secret_key")
    )
    lake_region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("MINIO_REGION", "lake_region")
    )
    bronze_bucket: str = Field(
        default="bronze", validation_alias=AliasChoices("BRONZE_BUCKET", "bronze_bucket")
    )
    silver_bucket: str = Field(
        default="silver", validation_alias=AliasChoices("SILVER_BUCKET", "silver_bucket")
    )
    gold_bucket: str = Field(
        default="gold", validation_alias=AliasChoices("GOLD_BUCKET", "gold_bucket")
    )

    # The source archive (Binance's public bucket in production): anonymous reads.
    source_endpoint: str | None = Field(
        default=None, validation_alias=AliasChoices("SOURCE_ENDPOINT", "source_endpoint")
    )
    source_region: str = Field(
        default="ap-northeast-1", validation_alias=AliasChoices("SOURCE_REGION", "source_region")
    )
    # Only for writing a sample archive to a source endpoint; reading stays anonymous.
    source_access_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SOURCE_ACCESS_KEY", "source_access_key")
    )
    source_secret_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("SOURCE_SECRET_KEY", "source_secret_key")
    )

    # s5cmd knobs.
    s5cmd_max_concurrent: int = Field(
        default=32,
        ge=1,
        le=1024,
        validation_alias=AliasChoices("S5CMD_MAX_CONCURRENT", "s5cmd_max_concurrent"),
    )
    # A far source (the real archive is 50-250 ms away) is latency-bound: objects/s is
    # about workers / round trip, so reading it gets s5cmd's own default of 256 workers,
    # while writing to the near lake keeps `s5cmd_max_concurrent` (docs/transfer.md).
    s5cmd_source_workers: int = Field(
        default=256,
        ge=1,
        le=1024,
        validation_alias=AliasChoices("S5CMD_SOURCE_WORKERS", "s5cmd_source_workers"),
        description="s5cmd --numworkers for reading the source (listing and downloads).",
    )
    s5cmd_part_size: int = Field(
        default=50 * MIB,
        ge=5 * MIB,
        le=5 * 1024 * MIB,
        validation_alias=AliasChoices("S5CMD_PART_SIZE", "s5cmd_part_size"),
        description="Multipart part size in bytes (the design's unit).",
    )
    s5cmd_retry_count: int = Field(
        default=3,
        ge=0,
        le=20,
        validation_alias=AliasChoices("S5CMD_RETRY_COUNT", "s5cmd_retry_count"),
    )
    s5cmd_log_level: str = Field(
        default="error", validation_alias=AliasChoices("S5CMD_LOG_LEVEL", "s5cmd_log_level")
    )
    s5cmd_stats: bool = Field(
        default=False, validation_alias=AliasChoices("S5CMD_STATS", "s5cmd_stats")
    )
    # A file and its sidecar in one wildcard line (`x.zip*`: one LIST, then both GETs) hold
    # an s5cmd `run` slot for two round trips where two per-key lines (HEAD + GET each)
    # hold two slots for two each: half the slot time per file against a far source.
    s5cmd_key_covers: bool = Field(
        default=True,
        validation_alias=AliasChoices("S5CMD_KEY_COVERS", "s5cmd_key_covers"),
        description=(
            "Fetch a file and its sidecars with one wildcard line, not a line each; "
            "off where a LIST costs more than the HEADs it saves (S3 bills LIST higher)."
        ),
    )
    staging_dir: Path | None = Field(
        default=None, validation_alias=AliasChoices("STAGING_DIR", "staging_dir")
    )
    staging_cap_bytes: int = Field(
        default=2 * 1024 * MIB,
        ge=MIB,
        validation_alias=AliasChoices("STAGING_CAP_BYTES", "staging_cap_bytes"),
    )
    staging_memory_dir: Path | None = Field(
        # The engine stages in a private `crypto-lakehouse-<uid>` folder (0700, owner checked).
        default=Path("/dev/shm"),  # noqa: S108
        validation_alias=AliasChoices("STAGING_MEMORY_DIR", "staging_memory_dir"),
        description="tmpfs for chunks of small objects; empty or unusable = disk only.",
    )
    staging_memory_cap_bytes: int = Field(
        default=256 * MIB,
        ge=0,
        validation_alias=AliasChoices("STAGING_MEMORY_CAP_BYTES", "staging_memory_cap_bytes"),
        description="Bytes of staging that may sit in memory (part of the overall cap); 0 = off.",
    )
    staging_chunk_bytes: int = Field(
        default=256 * MIB,
        ge=MIB,
        validation_alias=AliasChoices("STAGING_CHUNK_BYTES", "staging_chunk_bytes"),
        description="Staged transfers: bytes per download/verify/upload chunk (one s5cmd each).",
    )
    # On: behind the latency proxy overlap was ahead in every run at 50 and 150 ms and
    # level at 0 ms (docs/transfer.md, "Overlap").
    staging_overlap: bool = Field(
        default=True,
        validation_alias=AliasChoices("STAGING_OVERLAP", "staging_overlap"),
        description="Staged transfers: download chunk k+1 while chunk k uploads.",
    )

    # Databases and services.
    catalog_database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CATALOG_DATABASE_URL", "catalog_database_url"),
    )
    executor_url: str | None = Field(
        default=None, validation_alias=AliasChoices("EXECUTOR_URL", "executor_url")
    )
    executor_api_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("EXECUTOR_API_TOKEN", "executor_api_token")
    )
    # An ingest batch through the executor is cut into up to this many operations, submitted
    # together so that several replicas work on one batch (3 measured 0.90-0.92x the
    # in-process engine with 3 replicas; more replicas want more).
    executor_operations_in_flight: int = Field(
        default=3,
        ge=1,
        le=64,
        validation_alias=AliasChoices(
            "EXECUTOR_OPERATIONS_IN_FLIGHT", "executor_operations_in_flight"
        ),
    )
    executor_database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("EXECUTOR_DATABASE_URL", "executor_database_url"),
    )
    # The executor service: operations run at once per replica (0 = API only, no runner),
    # pending operations accepted before 429, claim lease, SSRF allow-list for sources.
    executor_max_operations: int = Field(
        default=2,
        ge=0,
        le=64,
        validation_alias=AliasChoices("EXECUTOR_MAX_OPERATIONS", "executor_max_operations"),
    )
    executor_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        validation_alias=AliasChoices("EXECUTOR_WORKERS", "executor_workers"),
    )
    executor_max_queue: int = Field(
        default=100,
        ge=1,
        le=10_000_000,
        validation_alias=AliasChoices("EXECUTOR_MAX_QUEUE", "executor_max_queue"),
    )
    executor_lease_seconds: float = Field(
        default=30.0,
        ge=1.0,
        le=3600.0,
        validation_alias=AliasChoices("EXECUTOR_LEASE_SECONDS", "executor_lease_seconds"),
    )
    executor_allowed_source_endpoints: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "EXECUTOR_ALLOWED_SOURCE_ENDPOINTS", "executor_allowed_source_endpoints"
        ),
        description="Comma-separated source endpoint URLs (or 'aws'); default: lake, source, aws.",
    )
    executor_public_docs: bool = Field(
        default=False,
        validation_alias=AliasChoices("EXECUTOR_PUBLIC_DOCS", "executor_public_docs"),
    )
    # Flow runs are short-lived pods nobody scrapes: they push their metrics here (off
    # when unset). E.g. http://pushgateway.monitoring.svc.cluster.local:9091
    pushgateway_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("PUSHGATEWAY_URL", "pushgateway_url"),
    )
    # Slots of the Prefect global concurrency limit `s5cmd-transfers`: s5cmd batches at
    # once across every flow run and worker (`flows deploy` sizes the limit to this).
    transfer_slots: int = Field(
        default=DEFAULT_TRANSFER_SLOTS,
        ge=1,
        le=1024,
        validation_alias=AliasChoices("TRANSFER_SLOTS", "transfer_slots"),
    )

    @field_validator("s5cmd_log_level")
    @classmethod
    def _known_log_level(cls, value: str) -> str:
        allowed = {"trace", "debug", "info", "error"}
        if value not in allowed:
            raise ValueError(f"must be one of {sorted(allowed)}")
        return value

    @field_validator("staging_memory_dir", mode="before")
    @classmethod
    def _empty_means_off(cls, value: object) -> object:
        """`STAGING_MEMORY_DIR=` (empty) turns memory staging off rather than meaning `.`."""
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def part_size_mib(self) -> int:
        """s5cmd's `--part-size` in MiB, rounded up from the byte setting."""
        return max(5, -(-self.s5cmd_part_size // MIB))

    @property
    def home_dir(self) -> Path:
        return self.lakehouse_home.expanduser()

    @property
    def staging_root(self) -> Path:
        return (self.staging_dir or self.home_dir / "staging").expanduser()
