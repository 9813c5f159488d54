"""What an ingest asks for (`IngestRequest`, the flow's one parameter) and where it goes.

`IngestRequest` is the one home of every ingest option and its default: the flows take it
as their `request` parameter (Prefect validates it and shows it as a form in the UI), the
CLI maps its flags onto it, deployments and `run_deployment` pass its JSON form.

Parameters carry endpoint *URLs* only, never credentials: they are shown in the Prefect
UI and stored with every run. `IngestTarget.resolve()` adds the lake's credentials from
`Settings` at the flow's entry (environment, or the worker's environment).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from crypto_lakehouse.archive import ArchiveQuery, ArchiveSource, binance_source
from crypto_lakehouse.archive.catalog import parse_data_type, parse_frequency, parse_market
from crypto_lakehouse.archive.discovery import BINANCE_BUCKET
from crypto_lakehouse.archive.paths import ROOT
from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import ArchiveError, ConfigError
from crypto_lakehouse.storage import Endpoint
from crypto_lakehouse.storage.urls import validate_bucket_name, validate_prefix

BINANCE = "binance"
DEFAULT_MARKETS = ["spot", "futures/um", "futures/cm", "option"]


class IngestRequest(BaseModel):
    """One ingest: what to copy, from which archive, into which bronze bucket."""

    # (plain defaults, not factories, so the parameter schema - the UI's form - shows them;
    # pydantic copies a mutable default for each instance)
    markets: list[str] = list(DEFAULT_MARKETS)
    data_types: list[str] | None = None  # None: every published data type
    frequencies: list[str] = ["daily", "monthly"]
    intervals: list[str] | None = None  # None: every published interval
    symbols: list[str] | None = None  # names or globs (`BTC*`); None: all symbols
    quote: str | None = None  # only symbols quoted in this asset (USDT, ...)
    start: date | None = None  # inclusive, by file period
    end: date | None = None
    source: str | None = None  # "binance", an http(s) endpoint URL, or None: settings
    source_bucket: str = BINANCE_BUCKET
    source_root: str = ROOT  # the prefix that holds `data/...` is `source_root`
    lake_endpoint: str | None = None  # None: MINIO_ENDPOINT
    bronze_bucket: str | None = None  # None: BRONZE_BUCKET
    batch_files: int = Field(default=1000, ge=1, le=20000)  # files per transfer task
    parallel_batches: int = Field(default=4, ge=1, le=64)  # most batches in flight (<= cores)

    @field_validator("markets", "data_types", "frequencies")
    @classmethod
    def _archive_names(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        """Known names only, in the archive's spelling (`um` -> `futures/um`): a typo fails
        here, at the edge, with the valid names, rather than deep in a run."""
        parse = {
            "markets": parse_market,
            "data_types": parse_data_type,
            "frequencies": parse_frequency,
        }[info.field_name or ""]
        if value is None:
            return None
        try:
            return [parse(v).value for v in value]
        except ArchiveError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _dates_in_order(self) -> IngestRequest:
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self

    @field_validator("source_root")
    @classmethod
    def _root(cls, value: str) -> str:
        value = validate_prefix(value)
        if not value.endswith(ROOT):
            raise ValueError(f"source_root must end with {ROOT!r} (the archive's layout)")
        return value

    @field_validator("source_bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        return validate_bucket_name(value)

    def over(self, defaults: Mapping[str, Any]) -> IngestRequest:
        """This request, with the fields it did not set taken from `defaults` (field names
        to values, e.g. a deployment's `request` parameter) before the model's defaults.

        Prefect merges a run's parameters over its deployment's one level deep, so a run
        that passes `request` would otherwise drop every field its deployment set.
        Raises pydantic's ValidationError when `defaults` holds an invalid value.
        """
        given = self.model_dump(exclude_unset=True)
        if not defaults or set(defaults) <= set(given):
            return self
        return IngestRequest.model_validate({**defaults, **given})

    def query(self) -> ArchiveQuery:
        return ArchiveQuery(
            markets=tuple(parse_market(m) for m in self.markets),
            data_types=(
                tuple(parse_data_type(d) for d in self.data_types) if self.data_types else None
            ),
            frequencies=tuple(parse_frequency(f) for f in self.frequencies),
            intervals=tuple(self.intervals) if self.intervals else None,
            symbols=tuple(self.symbols) if self.symbols else None,
            quote=self.quote,
            start=self.start,
            end=self.end,
        )


@dataclass(frozen=True)
class IngestTarget:
    """The resolved ends of an ingest: the archive source and the bronze bucket on the lake."""

    source: ArchiveSource
    lake: Endpoint
    bronze_bucket: str

    @property
    def source_prefix(self) -> str:
        """The source key prefix that maps onto bronze's root (`source_root` minus `data/`)."""
        return self.source.root[: -len(ROOT)]

    @property
    def source_label(self) -> str:
        where = self.source.endpoint.url or "aws"
        return f"{where}/{self.source.bucket}/{self.source_prefix}"

    @classmethod
    def resolve(cls, request: IngestRequest, settings: Settings) -> IngestTarget:
        """Endpoints from the request's URLs, credentials from settings (ConfigError if none)."""
        choice = request.source or settings.source_endpoint or BINANCE
        if choice == BINANCE:
            real = binance_source()
            source = ArchiveSource(real.endpoint, request.source_bucket, request.source_root)
        else:
            endpoint = Endpoint(url=choice, anonymous=True, region=settings.source_region)
            source = ArchiveSource(endpoint, request.source_bucket, request.source_root)
        lake_url = request.lake_endpoint or settings.lake_endpoint
        if not lake_url:
            raise ConfigError("no lake endpoint: set MINIO_ENDPOINT or pass lake_endpoint")
        if settings.lake_access_key is None or settings.lake_secret_key is None:
            raise ConfigError("lake credentials missing: set MINIO_ACCESS_KEY and MINIO_SECRET_KEY")
        lake = Endpoint(
            url=lake_url,
            access_key=settings.lake_access_key,
            secret_key=settings.lake_secret_key,
            region=settings.lake_region,
        )
        bucket = validate_bucket_name(request.bronze_bucket or settings.bronze_bucket)
        return cls(source, lake, bucket)
