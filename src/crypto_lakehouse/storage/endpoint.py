"""An S3 endpoint and how to talk to it: one value passed down, never read from the environment."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlparse

from pydantic import SecretStr

from crypto_lakehouse.errors import ConfigError


@dataclass(frozen=True)
class Endpoint:
    """Where an S3 service lives and which identity to use there.

    `url=None` means AWS itself (the Binance archive). `anonymous=True` sends unsigned
    requests (s5cmd `--no-sign-request`), which the public archive requires.
    """

    url: str | None = None
    access_key: SecretStr | None = field(default=None, repr=False)
    secret_key: SecretStr | None = field(default=None, repr=False)
    anonymous: bool = False
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        if self.url is not None:
            parsed = urlparse(self.url)
            if parsed.scheme not in {"http", "https"} or not parsed.hostname:
                raise ConfigError(f"endpoint URL must be http(s)://host[:port], got {self.url!r}")
            try:
                parsed.port  # noqa: B018 - raises on a malformed port
            except ValueError as exc:
                raise ConfigError(f"endpoint URL has a bad port: {self.url!r}") from exc
        if not self.anonymous and (self.access_key is None) != (self.secret_key is None):
            raise ConfigError("give both an access key and a secret key, or neither")

    def same_service(self, other: Endpoint) -> bool:
        """True when one s5cmd process (one `--endpoint-url`) can reach both sides.

        Server-side copy also needs one identity that can read the source and write the
        destination, so an anonymous side never counts as the same service.
        """
        return (
            _normalise(self.url) == _normalise(other.url)
            and not self.anonymous
            and not other.anonymous
            and self.access_key == other.access_key
        )

    def child_env(self) -> dict[str, str]:
        """Environment entries that give a child process (s5cmd, rclone) this identity."""
        env = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        if self.access_key is not None and self.secret_key is not None:
            env["AWS_ACCESS_KEY_ID"] = self.access_key.get_secret_value()
            env["AWS_SECRET_ACCESS_KEY"] = self.secret_key.get_secret_value()
        return env

    def describe(self) -> str:
        """A log-safe description: URL and identity kind, never the keys."""
        who = "anonymous" if self.anonymous else ("signed" if self.access_key else "default creds")
        return f"{self.url or 'aws'} ({who})"


def _normalise(url: str | None) -> str | None:
    return url.rstrip("/").lower() if url else None
