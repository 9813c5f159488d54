"""Direct mode: both sides on one endpoint and identity, so S3 copies server-side (CopyObject).

One s5cmd process per chunk; no bytes pass through this machine, so nothing is hashed
here (verification needs the bytes: use staged mode for that).

s5cmd v2.3 URL-encodes the copy source with Go's `url.QueryEscape`, which writes a space
as `+`; S3 servers decode `+` in `x-amz-copy-source` as a plus sign, so a key with a
space cannot be copied server-side (SeaweedFS answers NoSuchKey). Those keys take the
staged path instead, over the same endpoint.
"""

from __future__ import annotations

from crypto_lakehouse.transfer.commands import CommandFile, expected_command, s3_url
from crypto_lakehouse.transfer.context import TransferContext
from crypto_lakehouse.transfer.lines import plan_lines
from crypto_lakehouse.transfer.planner import PlanItem
from crypto_lakehouse.transfer.runner import run_s5cmd
from crypto_lakehouse.transfer.staging import StagingArea
from crypto_lakehouse.transfer.tracker import Tracker


def needs_staging(item: PlanItem) -> bool:
    """True for keys s5cmd cannot name in a server-side copy (see the module docstring)."""
    return " " in item.key


class DirectCopier:
    """Server-side copies, chunk by chunk."""

    def __init__(self, ctx: TransferContext, staging: StagingArea) -> None:
        self.ctx = ctx
        self.staging = staging

    def copy(self, items: list[PlanItem]) -> list[PlanItem]:
        """Copy `items`; returns the ones that must be staged instead (not yet in the ledger)."""
        ctx = self.ctx
        deferred = [item for item in items if needs_staging(item)]
        items = [item for item in items if not needs_staging(item)]
        if not items:
            return deferred
        if ctx.cancelled:
            for item in items:
                ctx.fail(item, "cancelled before this object started")
            return deferred
        src_bucket = ctx.request.source_url.bucket
        dst_bucket = ctx.request.dest_url.bucket
        floor = ctx.request.source_url.prefix
        dest_floor = ctx.request.dest_url.prefix
        covers, per_key = plan_lines(
            items,
            lambda i: ctx.wildcard_eligible(items[i]),
            floor,
            per_folder=ctx.wildcards_per_folder,
        )
        tracker = Tracker(match_on="source", on_done=lambda i, _event: ctx.done(items[i]))
        chunk_dir = self.staging.new_chunk()
        run_file = chunk_dir / "direct.run"
        with CommandFile(run_file, part_size_mib=ctx.options.part_size_mib) as cf:
            for cover in covers:
                pattern = s3_url(src_bucket, cover.prefix + "*")
                target = s3_url(dst_bucket, dest_floor + cover.relative_dir[len(floor) :])
                cf.copy(pattern, target, raw=False)
                tracker.expect_line(f"cp {pattern} {target}", cover.indexes)
                for i in cover.indexes:
                    _expect(tracker, i, items[i], src_bucket, dst_bucket)
            for i in per_key:
                src, dst = _expect(tracker, i, items[i], src_bucket, dst_bucket)
                cf.copy(src, dst)
        outcome = run_s5cmd(
            ctx.source,
            ["run", str(run_file)],
            tracker.handler,
            cancel=ctx.cancel,
            tick=ctx.ledger.report_progress,
        )
        ctx.ledger.add_retries(outcome.retried)
        for i, item in enumerate(items):
            if i not in tracker.done:
                reason = tracker.reason_for(
                    i, returncode=outcome.returncode, cancelled=outcome.cancelled
                )
                ctx.fail(item, reason)
        self.staging.release(chunk_dir, 0)
        return deferred


def _expect(
    tracker: Tracker, index: int, item: PlanItem, src_bucket: str, dst_bucket: str
) -> tuple[str, str]:
    src, dst = s3_url(src_bucket, item.key), s3_url(dst_bucket, item.dest_key)
    tracker.expect(index, src, expected_command(src, dst))
    return src, dst
