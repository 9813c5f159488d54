"""What every mode needs for one run, built once by the engine."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from crypto_lakehouse.storage.urls import SIDECAR_SUFFIX
from crypto_lakehouse.transfer.binary import Invocation
from crypto_lakehouse.transfer.commands import is_clean_path
from crypto_lakehouse.transfer.ledger import TransferLedger
from crypto_lakehouse.transfer.models import (
    EngineOptions,
    ListingScope,
    ObjectResult,
    TransferOutcome,
    TransferRequest,
)
from crypto_lakehouse.transfer.planner import PlanItem


@dataclass
class TransferContext:
    options: EngineOptions
    request: TransferRequest
    ledger: TransferLedger
    source: Invocation
    dest: Invocation
    sidecars: set[str]
    cancel: threading.Event | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    @property
    def wildcards_allowed(self) -> bool:
        """Wildcard lines rebuild paths relative to the last `/`: both prefixes must end there.

        And they fetch whatever matches: a listing of just the objects allows none.
        """
        if self.request.source_listing_scope is ListingScope.OBJECTS:
            return False
        return self._paths_rebuildable

    @property
    def key_covers_allowed(self) -> bool:
        """A listing of just the objects still allows `key*` lines for a key and the keys
        that extend it (a file and its sidecar): anything else they match is unplanned,
        fetched but never uploaded (the staged copier sweeps it)."""
        return (
            self.request.source_listing_scope is ListingScope.OBJECTS
            and self.options.key_covers
            and self._paths_rebuildable
        )

    @property
    def _paths_rebuildable(self) -> bool:
        src, dst = self.request.source_url.prefix, self.request.dest_url.prefix
        return (src == "" or src.endswith("/")) and (dst == "" or dst.endswith("/"))

    @property
    def wildcards_per_folder(self) -> bool:
        """Wildcard lines must stay inside each key's folder (the listing is complete there)."""
        return self.request.source_listing_scope is ListingScope.FOLDERS

    def rest(self, item: PlanItem) -> str:
        """The part of the key below the source prefix (also below the destination prefix)."""
        return item.key[len(self.request.source_url.prefix) :]

    def wildcard_eligible(self, item: PlanItem) -> bool:
        return self.wildcards_allowed and is_clean_path(self.rest(item))

    def fail(
        self, item: PlanItem, reason: str, outcome: TransferOutcome = TransferOutcome.FAILED
    ) -> None:
        self.ledger.add(
            ObjectResult(
                item.key, item.dest_key, item.size, outcome, etag=item.etag or None, error=reason
            )
        )

    def done(self, item: PlanItem, sha256: str | None = None) -> None:
        self.ledger.add(
            ObjectResult(
                item.key,
                item.dest_key,
                item.size,
                TransferOutcome.COPIED,
                sha256=sha256,
                etag=item.etag or None,
            )
        )

    def expected_sha256(self, key: str) -> str | None:
        if self.request.expected_sha256:
            return self.request.expected_sha256.get(key)
        return None

    def sidecar_for(self, key: str) -> str | None:
        """The sibling `.CHECKSUM` key when the source has one and sidecars are honoured."""
        if not self.request.verify_sidecars:
            return None
        candidate = key + SIDECAR_SUFFIX
        return candidate if candidate in self.sidecars else None
