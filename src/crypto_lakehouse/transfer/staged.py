"""Staged mode: two endpoints, bytes pass through a capped local folder and are verified there.

Per chunk: one s5cmd process downloads (anonymously when the source is public), SHA-256
is computed while the download runs (as s5cmd reports each file: small files on the
reader thread, large ones on a thread pool), each digest is compared with the caller's
or the `.CHECKSUM` sidecar's, then one s5cmd process uploads the good files (signed)
and sends mismatches to the quarantine prefix.

Layout of a chunk folder: `t/<rest>` files fetched by wildcard lines (uploaded back with
one wildcard line), `k/<n>` files fetched one key per line (keys a filesystem or a
wildcard would alter), `s/<n>` sidecars that are not themselves in the chunk, `q/<n>`
quarantined files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from crypto_lakehouse.transfer.checksums import normalise_sha256, parse_sidecar, sha256_file
from crypto_lakehouse.transfer.commands import (
    CommandFile,
    expected_command,
    is_clean_path,
    s3_url,
)
from crypto_lakehouse.transfer.context import TransferContext
from crypto_lakehouse.transfer.lines import file_dir_conflicts, key_covers, plan_lines
from crypto_lakehouse.transfer.models import TransferOutcome
from crypto_lakehouse.transfer.planner import PlanItem
from crypto_lakehouse.transfer.runner import run_s5cmd
from crypto_lakehouse.transfer.staging import StagingArea
from crypto_lakehouse.transfer.tracker import Tracker

log = logging.getLogger(__name__)

# Files up to this size are hashed on the thread that reads s5cmd's output: a thread-pool
# hand-off costs more than hashing 64 KiB, and small files come thousands at a time.
_HASH_INLINE_BYTES = 64 * 1024


@dataclass
class _Chunk:
    """Where each item of one chunk sits locally, and what we learned about it."""

    dir: Path
    items: list[PlanItem]
    local: dict[int, str] = field(default_factory=dict)  # str: built per object, cheaply
    in_tree: set[int] = field(default_factory=set)
    digests: dict[int, Future[str] | str] = field(default_factory=dict)
    sidecar_paths: dict[str, Path] = field(default_factory=dict)
    sidecar_errors: dict[str, str] = field(default_factory=dict)
    downloaded: set[int] = field(default_factory=set)
    verified: dict[int, str] = field(default_factory=dict)

    @property
    def tree(self) -> Path:
        return self.dir / "t"


@dataclass
class _Prepared:
    """A downloaded, verified chunk waiting for its upload."""

    chunk: _Chunk
    nbytes: int
    quarantined: dict[int, str] = field(default_factory=dict)
    download_seconds: float = 0.0
    verify_seconds: float = 0.0


class StagedCopier:
    """Copies chunks of plan items through the staging area."""

    def __init__(
        self, ctx: TransferContext, staging: StagingArea, hasher: ThreadPoolExecutor
    ) -> None:
        self.ctx = ctx
        self.staging = staging
        self.hasher = hasher

    def copy(self, items: list[PlanItem], *, wildcards: bool = True) -> None:
        """Download, verify and upload one chunk; every item ends in the ledger."""
        prepared = self.fetch(items, wildcards=wildcards)
        if prepared is not None:
            self.store(prepared)

    def fetch(self, items: list[PlanItem], *, wildcards: bool = True) -> _Prepared | None:
        """Download and verify one chunk. None when nothing is left to upload.

        The chunk's bytes stay reserved in the staging area until `store` releases them.
        """
        ctx = self.ctx
        if ctx.cancelled:
            for item in items:
                ctx.fail(item, "cancelled before this object started")
            return None
        nbytes = sum(item.size for item in items)
        if nbytes > self.staging.cap_bytes:
            for item in items:
                ctx.fail(item, f"larger than the staging cap ({self.staging.cap_bytes} bytes)")
            return None
        self.staging.reserve(nbytes)
        chunk = _Chunk(self.staging.new_chunk(nbytes), items)
        prepared = _Prepared(chunk, nbytes)
        try:
            started = time.monotonic()
            self._download(chunk, wildcards)
            prepared.download_seconds = time.monotonic() - started
            if ctx.cancelled:
                for i in chunk.downloaded:
                    ctx.fail(items[i], "cancelled before upload")
                chunk.downloaded.clear()
            started = time.monotonic()
            prepared.quarantined = self._verify(chunk)
            prepared.verify_seconds = time.monotonic() - started
        except BaseException:
            self._release(prepared)
            raise
        if not chunk.downloaded:
            self._release(prepared)
            return None
        return prepared

    def store(self, prepared: _Prepared, *, foreground: bool = True) -> None:
        """Upload a fetched chunk and release its staging bytes.

        `foreground=False` (an upload thread overlapping the next download) leaves the
        progress callback to the calling thread.
        """
        try:
            started = time.monotonic()
            self._upload(prepared.chunk, prepared.quarantined, tick=foreground)
            log.debug(
                "chunk of %d objects, %d bytes: download %.3fs verify %.3fs upload %.3fs",
                len(prepared.chunk.items),
                prepared.nbytes,
                prepared.download_seconds,
                prepared.verify_seconds,
                time.monotonic() - started,
            )
        finally:
            self._release(prepared)

    def _release(self, prepared: _Prepared) -> None:
        for pending in prepared.chunk.digests.values():
            if not isinstance(pending, str):
                pending.cancel()
        self.staging.release(prepared.chunk.dir, prepared.nbytes)

    # -- download ------------------------------------------------------------------------

    def _download(self, chunk: _Chunk, wildcards: bool) -> None:
        ctx, items = self.ctx, chunk.items
        bucket = ctx.request.source_url.bucket
        floor = ctx.request.source_url.prefix
        key_covered = wildcards and ctx.key_covers_allowed
        eligible = {
            i: (
                is_clean_path(ctx.rest(item))
                if key_covered
                else wildcards and ctx.wildcard_eligible(item)
            )
            for i, item in enumerate(items)
        }
        clashes = file_dir_conflicts({i: ctx.rest(items[i]) for i, ok in eligible.items() if ok})
        if key_covered:
            covers, per_key = key_covers(items, lambda i: eligible[i] and i not in clashes)
        else:
            covers, per_key = plan_lines(
                items,
                lambda i: eligible[i] and i not in clashes,
                floor,
                per_folder=ctx.wildcards_per_folder,
            )
        tracker = Tracker(match_on="source", on_done=lambda i, ev: self._downloaded(chunk, i))
        run_file = chunk.dir / "download.run"
        tree = f"{chunk.tree}/"
        keyed = f"{chunk.dir}/k/"
        with CommandFile(run_file, part_size_mib=ctx.options.part_size_mib) as cf:
            for cover in covers:
                dest_dir = tree + cover.relative_dir[len(floor) :]
                pattern = s3_url(bucket, cover.prefix + "*")
                cf.copy(pattern, dest_dir, raw=False)
                tracker.expect_line(f"cp {pattern} {dest_dir}", cover.indexes)
                for i in cover.indexes:
                    local = tree + ctx.rest(items[i])
                    chunk.local[i] = local
                    chunk.in_tree.add(i)
                    url = s3_url(bucket, items[i].key)
                    tracker.expect(i, url, expected_command(url, local))
            for i in per_key:
                local = keyed + str(i)
                chunk.local[i] = local
                url = s3_url(bucket, items[i].key)
                cf.copy(url, local)
                tracker.expect(i, url, expected_command(url, local))
            sidecars = self._sidecar_lines(chunk, cf, tracker)
        outcome = run_s5cmd(
            ctx.source,
            ["run", str(run_file)],
            tracker.handler,
            cancel=ctx.cancel,
            tick=ctx.ledger.report_progress,
        )
        ctx.ledger.add_retries(outcome.retried)
        for n, key in enumerate(sidecars):
            if len(items) + n in tracker.done:
                chunk.sidecar_paths[key] = chunk.dir / "s" / str(n)
            else:
                chunk.sidecar_errors[key] = tracker.reason_for(
                    len(items) + n, returncode=outcome.returncode, cancelled=outcome.cancelled
                )
        for i, item in enumerate(items):
            if i not in tracker.done:
                ctx.fail(
                    item,
                    tracker.reason_for(
                        i, returncode=outcome.returncode, cancelled=outcome.cancelled
                    ),
                )
        failed_in_tree = any(i not in tracker.done for i in chunk.in_tree)
        if tracker.unexpected or failed_in_tree:
            self._sweep(chunk)

    def _sidecar_lines(self, chunk: _Chunk, cf: CommandFile, tracker: Tracker) -> list[str]:
        """Fetch sidecars that are not part of this chunk (e.g. already up to date)."""
        ctx, items = self.ctx, chunk.items
        in_chunk = {item.key for item in items}
        wanted: list[str] = []
        for item in items:
            if ctx.expected_sha256(item.key) is not None:
                continue
            sidecar = ctx.sidecar_for(item.key)
            if sidecar is not None and sidecar not in in_chunk and sidecar not in wanted:
                wanted.append(sidecar)
        bucket = ctx.request.source_url.bucket
        for n, key in enumerate(wanted):
            local = chunk.dir / "s" / str(n)
            url = s3_url(bucket, key)
            cf.copy(url, str(local))
            tracker.expect(len(items) + n, url, expected_command(url, str(local)))
        return wanted

    def _downloaded(self, chunk: _Chunk, index: int) -> None:
        """Runs on s5cmd's stdout reader: start hashing while the rest downloads."""
        if index >= len(chunk.items):
            return
        chunk.downloaded.add(index)
        item = chunk.items[index]
        if self.ctx.expected_sha256(item.key) is None and not self.ctx.sidecar_for(item.key):
            return
        if item.size <= _HASH_INLINE_BYTES:
            chunk.digests[index] = sha256_file(chunk.local[index])
        else:
            chunk.digests[index] = self.hasher.submit(sha256_file, chunk.local[index])

    def _sweep(self, chunk: _Chunk) -> None:
        """Delete files in the tree that must not be uploaded (unplanned or failed objects)."""
        keep = {chunk.local[i] for i in chunk.downloaded if i in chunk.in_tree}
        for root, _dirs, files in os.walk(chunk.tree):
            for name in files:
                path = os.path.join(root, name)
                if path not in keep:
                    with contextlib.suppress(OSError):
                        os.unlink(path)

    # -- verify --------------------------------------------------------------------------

    def _verify(self, chunk: _Chunk) -> dict[int, str]:
        """Compare digests; move mismatches to `q/`. Returns {index: reason} of those."""
        ctx, items = self.ctx, chunk.items
        by_key = {item.key: i for i, item in enumerate(items)}
        quarantined: dict[int, str] = {}
        for i in sorted(chunk.downloaded):
            item = items[i]
            expected, problem = self._expected(chunk, item, by_key)
            if problem is not None:
                ctx.fail(item, problem)
                chunk.downloaded.discard(i)
                _unlink(chunk.local[i])
                continue
            if expected is None:
                continue
            pending = chunk.digests[i]
            digest = pending if isinstance(pending, str) else pending.result()
            if digest == expected:
                chunk.verified[i] = digest
                continue
            quarantined[i] = f"sha256 mismatch: expected {expected}, got {digest}"
            target = chunk.dir / "q" / str(i)
            target.parent.mkdir(exist_ok=True)
            os.replace(chunk.local[i], target)
            chunk.local[i] = str(target)
            chunk.in_tree.discard(i)
        return quarantined

    def _expected(
        self, chunk: _Chunk, item: PlanItem, by_key: dict[str, int]
    ) -> tuple[str | None, str | None]:
        """(expected digest, problem). A problem keeps the object out of the destination."""
        given = self.ctx.expected_sha256(item.key)
        if given is not None:
            digest = normalise_sha256(given)
            return (digest, None) if digest else (None, f"invalid expected sha256 {given!r}")
        sidecar = self.ctx.sidecar_for(item.key)
        if sidecar is None:
            return None, None
        path = chunk.sidecar_paths.get(sidecar)
        if path is None and sidecar in by_key and by_key[sidecar] in chunk.downloaded:
            path = Path(chunk.local[by_key[sidecar]])
        if path is None:
            reason = chunk.sidecar_errors.get(sidecar, "it was not downloaded")
            return None, f"checksum sidecar {sidecar!r} unavailable: {reason}"
        try:
            digest = parse_sidecar(path.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            return None, f"checksum sidecar {sidecar!r} unreadable: {exc}"
        if digest is None:
            return None, f"checksum sidecar {sidecar!r} does not hold a sha256"
        return digest, None

    # -- upload --------------------------------------------------------------------------

    def _upload(self, chunk: _Chunk, quarantined: dict[int, str], *, tick: bool = True) -> None:
        ctx, items = self.ctx, chunk.items
        bucket = ctx.request.dest_url.bucket
        quarantine = ctx.request.quarantine_prefix
        todo = sorted(chunk.downloaded)
        if not todo:
            return

        def uploaded(i: int, _event: object) -> None:
            # Recorded as s5cmd reports it, so progress moves and a cancel keeps it.
            if i not in quarantined:
                ctx.done(items[i], chunk.verified.get(i))

        tracker = Tracker(match_on="destination", on_done=uploaded)
        run_file = chunk.dir / "upload.run"
        tree_items = [i for i in todo if i in chunk.in_tree]
        with CommandFile(run_file, part_size_mib=ctx.options.part_size_mib) as cf:
            if tree_items:
                pattern = f"{chunk.tree}/*"
                target = s3_url(bucket, ctx.request.dest_url.prefix)
                cf.copy(pattern, target, raw=False)
                tracker.expect_line(f"cp {pattern} {target}", tree_items)
            for i in todo:
                item = items[i]
                dest_key = quarantine + item.dest_key if i in quarantined else item.dest_key
                url = s3_url(bucket, dest_key)
                local = chunk.local[i]
                if i not in chunk.in_tree:
                    cf.copy(local, url)
                tracker.expect(i, url, expected_command(local, url))
        outcome = run_s5cmd(
            ctx.dest,
            ["run", str(run_file)],
            tracker.handler,
            cancel=ctx.cancel,
            tick=ctx.ledger.report_progress if tick else None,
        )
        ctx.ledger.add_retries(outcome.retried)
        for i in todo:
            item = items[i]
            if i in quarantined:
                reason = quarantined[i]
                if i not in tracker.done:
                    why = tracker.reason_for(
                        i, returncode=outcome.returncode, cancelled=outcome.cancelled
                    )
                    reason += f"; quarantine upload failed: {why}"
                ctx.fail(item, reason, TransferOutcome.CORRUPT)
            elif i not in tracker.done:
                ctx.fail(
                    item,
                    tracker.reason_for(
                        i, returncode=outcome.returncode, cancelled=outcome.cancelled
                    ),
                )


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
