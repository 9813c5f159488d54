"""Deleting destination objects the source no longer has (`delete_extra`), in one s5cmd run."""

from __future__ import annotations

from crypto_lakehouse.transfer.commands import CommandFile, s3_url
from crypto_lakehouse.transfer.context import TransferContext
from crypto_lakehouse.transfer.runner import run_s5cmd
from crypto_lakehouse.transfer.staging import StagingArea
from crypto_lakehouse.transfer.tracker import Tracker


def delete_keys(ctx: TransferContext, keys: list[str], staging: StagingArea) -> int:
    """Remove `keys` from the destination bucket; returns how many s5cmd confirmed."""
    bucket = ctx.request.dest_url.bucket
    workdir = staging.new_chunk()
    tracker = Tracker(match_on="source")
    run_file = workdir / "delete.run"
    with CommandFile(run_file, part_size_mib=ctx.options.part_size_mib) as cf:
        for n, key in enumerate(keys):
            url = s3_url(bucket, key)
            cf.remove(url)
            tracker.expect(n, url, f"rm {url}")
    outcome = run_s5cmd(ctx.dest, ["run", str(run_file)], tracker.handler, cancel=ctx.cancel)
    ctx.ledger.add_retries(outcome.retried)
    staging.release(workdir, 0)
    return len(tracker.done)
