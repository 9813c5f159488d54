"""Bad input fails within seconds with one clear error, and nothing reaches the destination."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from transfer_helpers import contents, staged_request

from crypto_lakehouse.errors import (
    AccessDenied,
    BucketNotFound,
    ConfigError,
    EndpointUnreachable,
    LakehouseError,
)
from crypto_lakehouse.stack.process import free_port
from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import Endpoint, S3Url
from crypto_lakehouse.transfer import Mode, TransferEngine, TransferRequest
from crypto_lakehouse.transfer.binary import Invocation
from crypto_lakehouse.transfer.runner import run_s5cmd

QUICK = 10.0  # seconds: s5cmd's own retries would take about a minute


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A TCP port that accepts connections and never answers (a hung server)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=2)
    for conn in accepted:
        conn.close()
    server.close()


def _expect_fast_error(
    engine: TransferEngine, request: TransferRequest, error: type[LakehouseError]
) -> str:
    started = time.monotonic()
    with pytest.raises(error) as info:
        engine.run(request)
    assert time.monotonic() - started < QUICK
    message = str(info.value)
    assert "\n" not in message and message
    return message


@pytest.fixture
def seeded(source_bucket: str) -> str:
    """A source bucket that exists (what is in it does not matter to these errors)."""
    return source_bucket


def test_unknown_source_bucket(
    engine: TransferEngine,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    lake_bucket: str,
) -> None:
    request = staged_request(source_server, lake_server, "no-such-source", lake_bucket)
    assert "no-such-source" in _expect_fast_error(engine, request, BucketNotFound)
    assert contents(lake_server.endpoint(), lake_bucket) == {}


@pytest.mark.parametrize("operation", ["sync", "copy"])  # a copy reads one key of it only
def test_unknown_destination_bucket(
    engine: TransferEngine,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    seeded: str,
    operation: str,
) -> None:
    request = staged_request(
        source_server, lake_server, seeded, "no-such-dest", operation=operation
    )
    assert "no-such-dest" in _expect_fast_error(engine, request, BucketNotFound)


def test_wrong_credentials(
    engine: TransferEngine,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    seeded: str,
    lake_bucket: str,
) -> None:
    request = staged_request(source_server, lake_server, seeded, lake_bucket)
    request.dest = Endpoint(
        url=lake_server.url, access_key=SecretStr("nobody"), secret_key=SecretStr("wrong")
    )
    _expect_fast_error(engine, request, AccessDenied)
    assert contents(lake_server.endpoint(), lake_bucket) == {}


def test_anonymous_read_of_a_private_bucket(
    engine: TransferEngine,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    lake_bucket: str,
) -> None:
    request = staged_request(source_server, lake_server, lake_bucket, lake_bucket)
    request.source = lake_server.endpoint(anonymous=True)
    request.dest_url = S3Url(lake_bucket, "copy/")
    _expect_fast_error(engine, request, AccessDenied)


def test_dead_endpoint(
    engine: TransferEngine,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    seeded: str,
    lake_bucket: str,
) -> None:
    request = staged_request(source_server, lake_server, seeded, lake_bucket)
    request.source = Endpoint(url=f"http://127.0.0.1:{free_port()}", anonymous=True)
    _expect_fast_error(engine, request, EndpointUnreachable)


def test_endpoint_that_never_answers(
    engine: TransferEngine, lake_server: SeaweedServer, lake_bucket: str, silent_endpoint: str
) -> None:
    request = TransferRequest(
        source=Endpoint(url=silent_endpoint, anonymous=True),
        source_url=S3Url("some-bucket", ""),
        dest=lake_server.endpoint(),
        dest_url=S3Url(lake_bucket, "x/"),
    )
    assert "no answer" in _expect_fast_error(engine, request, EndpointUnreachable)


@pytest.mark.parametrize("text", ["bucket/prefix", "s3://", "s3://A_B/x", "s3://ok-bucket/../x"])
def test_malformed_urls(text: str) -> None:
    with pytest.raises(ConfigError):
        S3Url.parse(text)


@pytest.mark.parametrize("url", ["ftp://host", "http://", "http://host:notaport"])
def test_malformed_endpoints(url: str) -> None:
    with pytest.raises(ConfigError):
        Endpoint(url=url)


def test_direct_mode_across_two_endpoints_is_refused(
    engine: TransferEngine,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    seeded: str,
    lake_bucket: str,
) -> None:
    request = staged_request(source_server, lake_server, seeded, lake_bucket, mode=Mode.DIRECT)
    _expect_fast_error(engine, request, ConfigError)


def test_overlapping_source_and_destination_are_refused(
    engine: TransferEngine, lake_server: SeaweedServer, lake_bucket: str
) -> None:
    lake = lake_server.endpoint()
    request = TransferRequest(
        source=lake,
        source_url=S3Url(lake_bucket, "a/"),
        dest=lake,
        dest_url=S3Url(lake_bucket, "a/b/"),
    )
    _expect_fast_error(engine, request, ConfigError)


def test_cancel_stops_a_hung_s5cmd_process(silent_endpoint: str) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    started = time.monotonic()
    result = run_s5cmd(
        Invocation(Endpoint(url=silent_endpoint, anonymous=True), retry_count=0),
        ["ls", "s3://some-bucket/*"],
        lambda event: None,
        cancel=cancel,
    )
    assert result.cancelled  # s5cmd exits 0 on SIGTERM: the flag is what counts
    assert time.monotonic() - started < QUICK
