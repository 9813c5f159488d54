"""A bronze object as a byte stream that survives dropped connections."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError

from crypto_lakehouse.errors import EndpointUnreachable
from crypto_lakehouse.storage import S3Storage
from crypto_lakehouse.storage.client import translate_errors


class ResumableBody:
    """An S3 object read front to back; a dropped connection resumes with a Range request.

    Servers drop long-lived downloads that are read slowly (the parser sets the pace); the
    ETag pins the object, so a resumed read can never splice two versions together.
    """

    ATTEMPTS = 5

    def __init__(self, storage: S3Storage, bucket: str, key: str) -> None:
        self.storage, self.bucket, self.key = storage, bucket, key
        self.offset = 0
        self.etag: str | None = None
        self._body = self._get()

    def _get(self) -> Any:
        extra: dict[str, str] = {}
        if self.offset:
            extra = {"Range": f"bytes={self.offset}-", "IfMatch": self.etag or "*"}
        with translate_errors(self.storage.endpoint, self.bucket, self.key):
            reply = self.storage.client.get_object(Bucket=self.bucket, Key=self.key, **extra)
        self.etag = self.etag or reply.get("ETag")
        return reply["Body"]

    def read(self, size: int = -1) -> bytes:
        for attempt in range(self.ATTEMPTS):
            try:
                data = self._body.read(size)
            except (BotoCoreError, OSError) as exc:  # reset, timeout, incomplete read
                if attempt == self.ATTEMPTS - 1:
                    message = f"reading {self.key} kept failing at byte {self.offset}: {exc}"
                    raise EndpointUnreachable(message) from exc
                self._body = self._get()
                continue
            self.offset += len(data)
            return data
        return b""
