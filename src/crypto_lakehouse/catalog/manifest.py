"""The bronze manifest: which archive files are in bronze, verified, and since when.

Ingest uses it in three steps per batch (the durable hand-over, as in dlt's load packages):

    plan(listed)            -> which listed files need a transfer, and why
    mark_started(run, ...)  -> rows move to `started` before the engine runs
    record(run, results)    -> rows move to `verified` / `corrupt` / `failed`; a verified
                               file whose SHA-256 changed keeps its old version in history

A run that dies between `mark_started` and `record` leaves `started` rows; the next plan
treats every row that is not `verified` as work, so it restarts where it stopped and
verifies each good file exactly once.

Readers (the lakehouse) use `verified_files(...)`: only rows whose bytes in bronze matched
the publisher's checksum.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr
from sqlalchemy import (
    Engine,
    create_engine,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from crypto_lakehouse.archive.paths import ArchiveFile
from crypto_lakehouse.catalog.bulk import (
    MARK_STARTED,
    RECORD,
    RECORDED_COLUMNS,
    STARTED_COLUMNS,
    arrays,
)
from crypto_lakehouse.catalog.schema import (
    FileStatus,
    RunStatus,
    bronze_file_history,
    bronze_files,
    ingest_runs,
    metadata,
)
from crypto_lakehouse.errors import CatalogError, CatalogUnavailable

if TYPE_CHECKING:
    from crypto_lakehouse.config import Settings

_CHUNK = 5000  # paths per IN (...) query
_SCHEMA_LOCK = 7_302_114  # pg advisory lock id: one schema creation at a time


class Decision(StrEnum):
    """Why a listed file is (or is not) transferred."""

    NEW = "new"  # never seen
    CHANGED = "changed"  # verified before, but the listing's ETag or size differ now
    RETRY = "retry"  # started/failed/pending: an earlier run did not finish it
    RECHECK = "recheck"  # corrupt before, and the source object changed since
    ELSEWHERE = "elsewhere"  # verified, but in another bronze bucket than this run's
    UP_TO_DATE = "up_to_date"  # verified, same ETag and size: nothing to do
    KNOWN_CORRUPT = "known_corrupt"  # corrupt before, the source object is unchanged


TRANSFER = frozenset(
    {Decision.NEW, Decision.CHANGED, Decision.RETRY, Decision.RECHECK, Decision.ELSEWHERE}
)


@dataclass(frozen=True)
class ListedFile:
    """An archive file as the source listing shows it (size, ETag, LastModified set)."""

    file: ArchiveFile
    source_key: str  # the full key in the source bucket (root prefix + `data/...`)

    @property
    def path(self) -> str:
        return self.file.key


@dataclass
class ManifestPlan:
    """`plan()`'s answer: files to transfer (with the reason) and files left alone."""

    transfer: list[tuple[ListedFile, Decision]] = field(default_factory=list)
    up_to_date: list[ListedFile] = field(default_factory=list)
    known_corrupt: list[ListedFile] = field(default_factory=list)


class ManifestOutcome(StrEnum):
    """What `record()` made of one file."""

    VERIFIED = "verified"  # first verified version
    REPLACED = "replaced"  # a new SHA-256: the old version went to history
    REVERIFIED = "reverified"  # transferred again, same bytes as before
    CORRUPT = "corrupt"
    FAILED = "failed"


@dataclass(frozen=True)
class FileResult:
    """One file's transfer result, as the flow hands it to `record()`."""

    listed: ListedFile
    ok: bool  # copied and its SHA-256 matched the publisher's CHECKSUM
    sha256: str | None = None
    corrupt: bool = False  # bytes did not match: quarantined
    error: str | None = None


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    market: str
    frequency: str
    data_type: str
    symbol: str
    interval: str | None
    period: date
    source_url: str | None
    bronze_bucket: str | None
    bronze_key: str | None
    size: int | None
    sha256: str | None
    etag: str | None
    last_modified: datetime | None
    status: FileStatus
    version: int
    error: str | None
    run_id: str | None
    ingested_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True)
class HistoryEntry:
    path: str
    version: int
    size: int | None
    sha256: str | None
    etag: str | None
    last_modified: datetime | None
    ingested_at: datetime | None
    replaced_at: datetime
    replaced_by_run: str | None


def _now() -> datetime:
    return datetime.now(UTC)


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Manifest:
    """The manifest in one PostgreSQL database (SQLAlchemy Core over psycopg).

    Every method raises `CatalogUnavailable` (transient) when the database does not answer
    and `CatalogError` for any other database failure.
    """

    def __init__(self, url: SecretStr | str, *, engine: Engine | None = None) -> None:
        raw = url.get_secret_value() if isinstance(url, SecretStr) else url
        self.engine = engine or create_engine(
            raw, pool_pre_ping=True, pool_size=5, max_overflow=10, future=True
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Manifest:
        """From `CATALOG_DATABASE_URL`; CatalogError when it is not set."""
        if settings.catalog_database_url is None:
            raise CatalogError(
                'CATALOG_DATABASE_URL is not set: run `eval "$(crypto-lakehouse stack env)"`'
            )
        return cls(settings.catalog_database_url)

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        """A transaction; database errors become ours here, nowhere else."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise CatalogUnavailable(f"catalog database unavailable: {exc.orig}") from exc
        except DBAPIError as exc:
            raise CatalogError(f"catalog database error: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            raise CatalogError(f"catalog error: {exc}") from exc

    def ensure_schema(self) -> None:
        """Create the tables if missing; safe when several processes call it at once."""
        with self._tx() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SCHEMA_LOCK})
            metadata.create_all(conn, checkfirst=True)

    # -- runs ----------------------------------------------------------------------------------

    def begin_run(self, run_id: str, parameters: dict[str, Any]) -> None:
        with self._tx() as conn:
            stmt = insert(ingest_runs).values(
                run_id=run_id,
                started_at=_now(),
                status=RunStatus.RUNNING.value,
                parameters=parameters,
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["run_id"],
                    set_={"status": RunStatus.RUNNING.value, "finished_at": None},
                )
            )

    def finish_run(self, run_id: str, status: RunStatus, summary: dict[str, Any]) -> None:
        with self._tx() as conn:
            conn.execute(
                update(ingest_runs)
                .where(ingest_runs.c.run_id == run_id)
                .values(status=status.value, finished_at=_now(), summary=summary)
            )

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest runs first, as plain dicts."""
        with self._tx() as conn:
            rows = conn.execute(
                select(ingest_runs).order_by(ingest_runs.c.started_at.desc()).limit(limit)
            ).mappings()
            return [dict(row) for row in rows]

    # -- the ingest hand-over ------------------------------------------------------------------

    def plan(self, listed: Sequence[ListedFile], bronze_bucket: str | None = None) -> ManifestPlan:
        """Decide per listed file: transfer it, or leave it (up to date / known corrupt).

        A verified file is left alone when the listing's ETag and size equal the ones it was
        verified with, so an unchanged archive costs one listing and no transfer. With
        `bronze_bucket`, a file verified in another bucket is transferred again (the
        manifest tracks one bronze location per file).
        """
        rows = self._rows_for([item.path for item in listed])
        plan = ManifestPlan()
        for item in listed:
            row = rows.get(item.path)
            decision = _decide(item, row)
            if (
                decision is Decision.UP_TO_DATE
                and bronze_bucket is not None
                and row["bronze_bucket"] != bronze_bucket
            ):
                decision = Decision.ELSEWHERE
            if decision is Decision.UP_TO_DATE:
                plan.up_to_date.append(item)
            elif decision is Decision.KNOWN_CORRUPT:
                plan.known_corrupt.append(item)
            else:
                plan.transfer.append((item, decision))
        return plan

    def mark_started(
        self,
        run_id: str,
        files: Sequence[ListedFile],
        *,
        source_url: str,
        bronze_bucket: str,
        bronze_prefix: str = "",
    ) -> None:
        """Move rows to `started` (creating new ones) before their transfer begins.

        One statement per chunk of files (arrays unnested server-side), not one per file.
        """
        params = {
            "source_url": source_url,
            "bronze_bucket": bronze_bucket,
            "status": FileStatus.STARTED.value,
            "run_id": run_id,
            "now": _now(),
        }
        with self._tx() as conn:
            rows = [
                {
                    "path": item.path,
                    "market": item.file.market.value,
                    "frequency": item.file.frequency.value,
                    "data_type": item.file.data_type.value,
                    "symbol": item.file.symbol,
                    "interval": item.file.interval,
                    "period": item.file.period,
                    "bronze_key": bronze_prefix + item.path,
                    "size": item.file.size,
                }
                for item in files
            ]
            for chunk in _chunks(rows):
                conn.execute(MARK_STARTED, params | arrays(chunk, STARTED_COLUMNS))

    def record(self, run_id: str, results: Sequence[FileResult]) -> dict[str, ManifestOutcome]:
        """Store the batch's results in one transaction; returns each path's outcome.

        The rows are locked and read once, and written back with one statement per chunk
        (plus one for the history of replaced versions), not one per file.
        """
        now = _now()
        outcomes: dict[str, ManifestOutcome] = {}
        with self._tx() as conn:
            paths = [r.listed.path for r in results]
            current = {}
            for chunk in _chunks(paths):
                for row in conn.execute(
                    select(bronze_files).where(bronze_files.c.path.in_(chunk)).with_for_update()
                ).mappings():
                    current[row["path"]] = row
            history: list[dict[str, Any]] = []
            updates: list[dict[str, Any]] = []
            for result in results:
                row = current.get(result.listed.path)
                if row is None:
                    raise CatalogError(f"{result.listed.path}: recorded before mark_started")
                outcome, values = _apply(row, result, run_id, now)
                if outcome is ManifestOutcome.REPLACED:
                    history.append(_superseded(row, run_id, now))
                updates.append({column: row[column] for column in RECORDED_COLUMNS} | values)
                outcomes[row["path"]] = outcome
            if history:
                conn.execute(bronze_file_history.insert(), history)
            for chunk in _chunks(updates):
                values = {"run_id": run_id, "now": now} | arrays(chunk, RECORDED_COLUMNS)
                conn.execute(RECORD, values)
        return outcomes

    # -- queries -------------------------------------------------------------------------------

    def get(self, path: str) -> ManifestEntry | None:
        with self._tx() as conn:
            row = conn.execute(select(bronze_files).where(bronze_files.c.path == path)).mappings()
            found = row.first()
            return _entry(found) if found else None

    def entries(
        self,
        *,
        status: FileStatus | None = None,
        market: str | None = None,
        data_type: str | None = None,
        symbol: str | None = None,
        interval: str | None = None,
        start: date | None = None,
        end: date | None = None,
        ingested_since: datetime | None = None,
    ) -> list[ManifestEntry]:
        """Rows matching every given filter, ordered by path (`end` is inclusive)."""
        query = select(bronze_files)
        filters = {
            "status": status.value if status else None,
            "market": market,
            "data_type": data_type,
            "symbol": symbol,
            "interval": interval,
        }
        for column, value in filters.items():
            if value is not None:
                query = query.where(bronze_files.c[column] == value)
        if start is not None:
            query = query.where(bronze_files.c.period >= start)
        if end is not None:
            query = query.where(bronze_files.c.period <= end)
        if ingested_since is not None:
            query = query.where(bronze_files.c.ingested_at > ingested_since)
        with self._tx() as conn:
            return [_entry(r) for r in conn.execute(query.order_by(bronze_files.c.path)).mappings()]

    def verified_files(self, **filters: Any) -> list[ManifestEntry]:
        """Files whose bytes in bronze matched the publisher's checksum (what silver reads).

        Filters as in `entries()`: market, data_type, symbol, interval, start, end (period,
        inclusive) and ingested_since (only files verified after that instant: incremental
        readers pass their last watermark).
        """
        return self.entries(status=FileStatus.VERIFIED, **filters)

    def history(self, path: str) -> list[HistoryEntry]:
        """Superseded versions of `path`, oldest first."""
        with self._tx() as conn:
            rows = conn.execute(
                select(bronze_file_history)
                .where(bronze_file_history.c.path == path)
                .order_by(bronze_file_history.c.version)
            ).mappings()
            return [HistoryEntry(**{k: v for k, v in row.items() if k != "id"}) for row in rows]

    def status_counts(self) -> dict[FileStatus, int]:
        with self._tx() as conn:
            rows = conn.execute(
                select(bronze_files.c.status, func.count()).group_by(bronze_files.c.status)
            )
            return {FileStatus(status): count for status, count in rows}

    def _rows_for(self, paths: Iterable[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self._tx() as conn:
            for chunk in _chunks(list(paths)):
                query = select(
                    bronze_files.c.path,
                    bronze_files.c.status,
                    bronze_files.c.etag,
                    bronze_files.c.size,
                    bronze_files.c.bronze_bucket,
                ).where(bronze_files.c.path.in_(chunk))
                for row in conn.execute(query).mappings():
                    found[row["path"]] = row
        return found


def _same_object(item: ListedFile, row: Any) -> bool:
    return row["etag"] == item.file.etag and row["size"] == item.file.size


def _decide(item: ListedFile, row: Any) -> Decision:
    if row is None:
        return Decision.NEW
    status = FileStatus(row["status"])
    if status is FileStatus.VERIFIED:
        return Decision.UP_TO_DATE if _same_object(item, row) else Decision.CHANGED
    if status is FileStatus.CORRUPT:
        return Decision.KNOWN_CORRUPT if _same_object(item, row) else Decision.RECHECK
    return Decision.RETRY


def _apply(
    row: Any, result: FileResult, run_id: str, now: datetime
) -> tuple[ManifestOutcome, dict[str, Any]]:
    """The row's new values for one result, and what that result means."""
    listed = result.listed.file
    values: dict[str, Any] = {
        "run_id": run_id,
        "updated_at": now,
        "etag": listed.etag,
        "last_modified": listed.last_modified,
    }
    if result.ok and result.sha256:
        values |= {"status": FileStatus.VERIFIED.value, "error": None, "size": listed.size}
        if row["sha256"] is None:
            return ManifestOutcome.VERIFIED, values | {
                "sha256": result.sha256,
                "version": 1,
                "ingested_at": now,
            }
        if row["sha256"] == result.sha256:
            return ManifestOutcome.REVERIFIED, values
        return ManifestOutcome.REPLACED, values | {
            "sha256": result.sha256,
            "version": row["version"] + 1,
            "ingested_at": now,
        }
    if result.corrupt:
        return ManifestOutcome.CORRUPT, values | {
            "status": FileStatus.CORRUPT.value,
            "error": result.error or "sha256 does not match the published CHECKSUM",
        }
    return ManifestOutcome.FAILED, values | {
        "status": FileStatus.FAILED.value,
        "error": result.error or "transfer failed",
    }


def _superseded(row: Any, run_id: str, now: datetime) -> dict[str, Any]:
    """The history row for the verified version a replacement supersedes."""
    kept = ("path", "version", "size", "sha256", "etag", "last_modified", "ingested_at")
    return {column: row[column] for column in kept} | {
        "replaced_at": now,
        "replaced_by_run": run_id,
    }


def _entry(row: Any) -> ManifestEntry:
    data = dict(row)
    data["status"] = FileStatus(data["status"])
    return ManifestEntry(**data)
