"""Traditional mode: the baseline the design compares against, implemented honestly.

One object at a time: GET it with boto3 into a staging file (hashing as the bytes
arrive), verify it like staged mode does, PUT it with boto3. Both clients are created
once and keep their connections alive, so the cost measured is the sequential round
trips, not client start-up or process spawning (which would make the baseline look
worse than a competent sequential script).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from crypto_lakehouse.config import MIB
from crypto_lakehouse.transfer.checksums import normalise_sha256, parse_sidecar
from crypto_lakehouse.transfer.context import TransferContext
from crypto_lakehouse.transfer.models import TransferOutcome
from crypto_lakehouse.transfer.planner import PlanItem
from crypto_lakehouse.transfer.staging import StagingArea

_BLOCK = MIB


class TraditionalCopier:
    def __init__(self, ctx: TransferContext, staging: StagingArea) -> None:
        from crypto_lakehouse.storage.client import S3Storage  # boto3 only for this mode

        self.ctx = ctx
        self.staging = staging
        self.src = S3Storage(
            ctx.request.source, timeout=30.0, retries=ctx.options.retry_count
        ).client
        self.dst = S3Storage(ctx.request.dest, timeout=30.0, retries=ctx.options.retry_count).client
        self.workdir = staging.new_chunk()

    def copy(self, items: list[PlanItem]) -> None:
        for item in items:
            if self.ctx.cancelled:
                self.ctx.fail(item, "cancelled before this object started")
                continue
            if item.size > self.staging.cap_bytes:
                self.ctx.fail(item, f"larger than the staging cap ({self.staging.cap_bytes} bytes)")
                continue
            self.staging.reserve(item.size)
            try:
                self._one(item)
            finally:
                self.staging.release(self.workdir / "object", item.size)
            self.ctx.ledger.report_progress()

    def _one(self, item: PlanItem) -> None:
        ctx = self.ctx
        path = self.workdir / "object"
        try:
            digest = self._download(item.key, path)
            expected, problem = self._expected(item.key)
        except Exception as exc:
            ctx.fail(item, f"download failed: {_describe(exc)}")
            return
        if problem is not None:
            ctx.fail(item, problem)
            return
        corrupt = expected is not None and digest != expected
        dest_key = ctx.request.quarantine_prefix + item.dest_key if corrupt else item.dest_key
        try:
            with open(path, "rb") as body:
                self.dst.put_object(Bucket=ctx.request.dest_url.bucket, Key=dest_key, Body=body)
        except Exception as exc:
            reason = f"upload failed: {_describe(exc)}"
            if corrupt:
                ctx.fail(item, f"sha256 mismatch; quarantine {reason}", TransferOutcome.CORRUPT)
            else:
                ctx.fail(item, reason)
            return
        if corrupt:
            ctx.fail(
                item, f"sha256 mismatch: expected {expected}, got {digest}", TransferOutcome.CORRUPT
            )
        else:
            ctx.done(item, digest if expected is not None else None)

    def _download(self, key: str, path: Path) -> str:
        reply = self.src.get_object(Bucket=self.ctx.request.source_url.bucket, Key=key)
        sha = hashlib.sha256()
        with open(path, "wb") as out:
            for block in reply["Body"].iter_chunks(_BLOCK):
                sha.update(block)
                out.write(block)
        return sha.hexdigest()

    def _expected(self, key: str) -> tuple[str | None, str | None]:
        given = self.ctx.expected_sha256(key)
        if given is not None:
            digest = normalise_sha256(given)
            return (digest, None) if digest else (None, f"invalid expected sha256 {given!r}")
        sidecar = self.ctx.sidecar_for(key)
        if sidecar is None:
            return None, None
        body = self.src.get_object(Bucket=self.ctx.request.source_url.bucket, Key=sidecar)
        digest = parse_sidecar(body["Body"].read().decode("utf-8", errors="replace"))
        if digest is None:
            return None, f"checksum sidecar {sidecar!r} does not hold a sha256"
        return digest, None


def _describe(exc: Any) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        return f"{code}: {message}".strip(": ") or str(exc)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
