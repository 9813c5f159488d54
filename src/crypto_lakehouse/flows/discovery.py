"""Discovery for ingest: the archive listing streamed into the manifest's planner.

`ArchiveLister` (archive.discovery) yields the files a query covers page by page. Each
chunk is planned against the manifest as it arrives, and only what the run needs is
kept: the files to transfer, the known-corrupt ones, the files without a sidecar, counts,
and the gaps of each series (a series' files arrive together, so one series at a time is
held). With `on_window`, the files to transfer are handed on every `WINDOW_FILES` files
(the flow transfers them while the listing goes on, and the hand-over waits while the
window before is still queued), so a run holds at most a few windows of work, however
much of the archive it covers; without it, the whole work is returned at the end.
Every batch later hands the engine its own objects as discovery listed them
(`flows.mover.source_listing_for`), so the engine never lists the archive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date

from crypto_lakehouse.archive import ArchiveFile, ArchiveLister, ArchiveQuery, Gap, find_gaps
from crypto_lakehouse.archive.discovery import Resume
from crypto_lakehouse.catalog import Decision, ListedFile, Manifest, ManifestPlan
from crypto_lakehouse.flows.target import IngestTarget

PLAN_CHUNK = 5000  # files planned per manifest query
WINDOW_FILES = 50_000  # files to transfer handed on at once (about 1.5 KB each in memory)


@dataclass
class Discovery:
    """What a run keeps of the listing: the planned work, counts and the gaps found."""

    # `work.up_to_date` stays empty: those files are only counted; `work.transfer` holds
    # what was not handed on (`on_window`)
    work: ManifestPlan = field(default_factory=ManifestPlan)
    handed_on: int = 0  # files to transfer already handed on in windows
    up_to_date: int = 0
    without_sidecar: list[ListedFile] = field(default_factory=list)
    listed: int = 0  # files the query covers (zips, not sidecars)
    listed_bytes: int = 0
    gaps: list[str] = field(default_factory=list)
    missing_periods: int = 0  # files absent inside their series
    missing_days: set[date] = field(default_factory=set)  # distinct days/months with a gap


def list_and_plan(
    target: IngestTarget,
    query: ArchiveQuery,
    manifest: Manifest,
    *,
    before_plan: Callable[[], object] | None = None,
    resume: Resume | None = None,
    lister: ArchiveLister | None = None,
    on_window: Callable[[list[tuple[ListedFile, Decision]]], None] | None = None,
    window_files: int | None = None,
) -> Discovery:
    """List what `query` covers and plan it against the manifest, chunk by chunk.

    `before_plan` is called once before the first manifest query (the flow waits there
    for the catalog's schema, created while the listing starts). `on_window` gets the
    files to transfer every `window_files` (default `WINDOW_FILES`) of them (see the
    module's docstring). Raises the listing's storage errors and the manifest's catalog
    errors, and whatever `on_window` raises (which stops the listing).
    """
    lister = lister or ArchiveLister(target.source)
    window_files = window_files or WINDOW_FILES
    found = Discovery()
    series = _SeriesGaps(found)
    chunk: list[ListedFile] = []
    waiting = [before_plan]

    def plan(items: list[ListedFile]) -> None:
        if waiting[0] is not None:
            waiting[0]()
            waiting[0] = None
        work = manifest.plan(items, target.bronze_bucket)
        found.work.transfer += work.transfer
        found.work.known_corrupt += work.known_corrupt
        found.up_to_date += len(work.up_to_date)
        if on_window is not None and len(found.work.transfer) >= window_files:
            window, found.work.transfer = found.work.transfer, []
            found.handed_on += len(window)
            on_window(window)

    with closing(lister.pages(query, resume=resume)) as pages:  # stops listing on error
        for page in pages:
            for file in page:
                series.add(file)
                found.listed += 1
                found.listed_bytes += file.size or 0
                item = ListedFile(file, file.key_under(target.source.root))
                if file.checksum_etag is None:
                    found.without_sidecar.append(item)
                else:
                    chunk.append(item)
            if len(chunk) >= PLAN_CHUNK:
                plan(chunk)
                chunk = []
    if chunk:
        plan(chunk)
    series.close()
    return found


class _SeriesGaps:
    """Gaps found one series at a time: discovery delivers each series' files together."""

    def __init__(self, into: Discovery) -> None:
        self.into = into
        self.files: list[ArchiveFile] = []

    def add(self, file: ArchiveFile) -> None:
        if self.files and self.files[-1].series != file.series:
            self.close()
        self.files.append(file)

    def close(self) -> None:
        self._record(find_gaps(self.files))
        self.files = []

    def _record(self, gaps: Iterable[Gap]) -> None:
        for gap in gaps:
            self.into.gaps.append(str(gap))
            self.into.missing_periods += len(gap.missing)
            self.into.missing_days.update(gap.missing)
