"""From a validated request to what the engine runs, and back from a stored record.

At submit time `OperationPlan.spec` resolves the source endpoint through the allow-list
and fixes the effective s5cmd knobs, producing the JSON stored with the operation (no
credentials in it). At run time, on whichever replica claims it, `OperationPlan.build`
turns that spec into a `TransferRequest` and `EngineOptions`, attaching the credentials
this replica holds for the lake.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from crypto_lakehouse.executor.models import OperationMode, SyncRequest
from crypto_lakehouse.executor.objects import ObjectRow
from crypto_lakehouse.executor.sources import SourcePolicy
from crypto_lakehouse.executor.store import OperationRecord
from crypto_lakehouse.storage.endpoint import Endpoint
from crypto_lakehouse.storage.urls import S3Url
from crypto_lakehouse.transfer import (
    EngineOptions,
    ListedObject,
    ListingScope,
    Mode,
    TransferRequest,
)

MODES = {
    OperationMode.DIRECT_SYNC: Mode.DIRECT,
    OperationMode.STAGED: Mode.STAGED,
    OperationMode.TRADITIONAL: Mode.TRADITIONAL,
    OperationMode.AUTO: Mode.AUTO,
}


@dataclass(frozen=True)
class OperationPlan:
    """The replica's view of the world: the lake, the source allow-list, engine defaults."""

    lake: Endpoint
    sources: SourcePolicy
    options: EngineOptions
    max_operations: int

    def spec(self, request: SyncRequest) -> dict[str, Any]:
        """The stored form of `request`; InvalidField when its source is not allowed."""
        source = self.sources.resolve(request.source.endpoint, request.source.anonymous)
        config = request.configuration
        spec = request.model_dump(mode="json", exclude={"objects"})
        # The list itself goes to its own table (`listed_rows`); the spec keeps its length.
        spec["listed_objects"] = len(request.objects or ())
        spec["source"]["endpoint"] = (
            None if self.sources.is_lake(request.source.endpoint) else request.source.endpoint
        )
        spec["source"]["anonymous"] = source.anonymous
        spec["configuration"] = {
            "max_concurrent": min(
                config.max_concurrent or self.options.max_concurrent, self.options.max_concurrent
            ),
            "part_size_mb": config.part_size_mb or self.options.part_size_mib,
        }
        return spec

    def build(
        self, record: OperationRecord, objects: Sequence[ObjectRow] = ()
    ) -> tuple[TransferRequest, EngineOptions]:
        """The engine call for a claimed operation; each run gets its share of the staging cap.

        With `objects` (a listed operation) the engine copies just those, planned from the
        list itself (nothing is listed at the source), each checked against its expected
        SHA-256 or its listed sidecar. The engine makes (and removes) a folder per run under
        the shared staging root, and sweeps folders left behind by dead processes.
        """
        spec = record.spec
        src = spec["source"]
        source = self.sources.resolve(src["endpoint"], src["anonymous"])
        request = TransferRequest(
            source=source,
            source_url=S3Url(src["bucket"], src["prefix"]),
            dest=self.lake,
            dest_url=S3Url(spec["destination"]["bucket"], spec["destination"]["prefix"]),
            mode=MODES[OperationMode(spec["operation_mode"])],
            operation=spec["operation_type"],
        )
        if objects:
            prefix = src["prefix"]
            listing = sorted(
                (ListedObject(prefix + o.key, o.size, "", "") for o in objects),
                key=lambda obj: obj.key,
            )
            request.keys = [obj.key for obj in listing]
            request.source_listing = listing
            request.source_listing_scope = ListingScope.OBJECTS
            request.expected_sha256 = {
                prefix + o.key: o.expected_sha256 for o in objects if o.expected_sha256
            }
        options = replace(
            self.options,
            max_concurrent=spec["configuration"]["max_concurrent"],
            part_size_mib=spec["configuration"]["part_size_mb"],
            staging_cap_bytes=max(
                self.options.staging_cap_bytes // max(1, self.max_operations), 64 * 1024 * 1024
            ),
        )
        return request, options
