"""The latency and fault proxy in front of a real SeaweedFS: delay, integrity, faults, cap."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from crypto_lakehouse.bench.netem import NetemConfig, NetemProxy
from crypto_lakehouse.bench.tls import make_tls_files
from crypto_lakehouse.stack.seaweed import Credentials, SeaweedServer
from crypto_lakehouse.storage import Endpoint, S3Storage
from crypto_lakehouse.transfer import Invocation, upload_tree

MIB = 1024 * 1024


def _client(url: str):
    """An unsigned client with no retries, so every fault reaches the test."""
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        config=Config(
            signature_version=UNSIGNED,
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=5,
            read_timeout=10,
            s3={"addressing_style": "path"},
        ),
    )


@pytest.fixture
def one_mib(source_server: SeaweedServer, source_bucket: str) -> Iterator[tuple[str, str]]:
    """(key, sha256) of a 1 MiB random object in the source bucket."""
    data = os.urandom(MIB)
    S3Storage(source_server.endpoint()).client.put_object(
        Bucket=source_bucket, Key="one.bin", Body=data
    )
    yield "one.bin", hashlib.sha256(data).hexdigest()


def _proxy(server: SeaweedServer, **knobs: object) -> NetemProxy:
    return NetemProxy(NetemConfig.in_front_of(server.url, seed=7, **knobs))  # type: ignore[arg-type]


def _get(url: str, bucket: str, key: str) -> tuple[float, bytes]:
    client = _client(url)  # a fresh client: its connection set-up is part of the time
    started = time.perf_counter()
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    return time.perf_counter() - started, body


def test_rtt_delays_a_get_and_bytes_arrive_intact(
    source_server: SeaweedServer, source_bucket: str, one_mib: tuple[str, str]
) -> None:
    key, sha = one_mib
    direct = min(_get(source_server.url, source_bucket, key)[0] for _ in range(3))
    with _proxy(source_server, rtt_ms=100) as proxy:
        runs = [_get(proxy.url, source_bucket, key) for _ in range(3)]
        cpu = proxy.cpu_seconds()
    assert all(hashlib.sha256(body).hexdigest() == sha for _, body in runs)
    assert min(t for t, _ in runs) >= direct + 0.100
    assert cpu > 0  # read from the child's /proc entry


def test_a_new_connection_waits_its_handshake_and_is_counted(
    source_server: SeaweedServer, source_bucket: str, one_mib: tuple[str, str]
) -> None:
    """One GET on a fresh connection: one round trip for the request, one for the handshake;
    a second GET on the same client reuses the connection and pays only the first."""
    key, sha = one_mib
    with _proxy(source_server, rtt_ms=200, connect_rtts=1) as proxy:
        client = _client(proxy.url)
        started = time.perf_counter()
        body = client.get_object(Bucket=source_bucket, Key=key)["Body"].read()
        first = time.perf_counter() - started
        started = time.perf_counter()
        client.get_object(Bucket=source_bucket, Key=key)["Body"].read()
        second = time.perf_counter() - started
        assert proxy.connections() == 1  # boto3 kept its connection alive
        _get(proxy.url, source_bucket, key)  # a new client: a new connection
        assert proxy.connections() == 2
    assert hashlib.sha256(body).hexdigest() == sha
    assert first >= 0.400
    assert 0.200 <= second < 0.390


def test_zero_rtt_adds_little(
    source_server: SeaweedServer, source_bucket: str, one_mib: tuple[str, str]
) -> None:
    key, sha = one_mib
    with _proxy(source_server) as proxy:
        seconds, body = min(_get(proxy.url, source_bucket, key) for _ in range(3))
    assert hashlib.sha256(body).hexdigest() == sha
    assert seconds < 0.5


def test_resets_make_a_get_fail(
    source_server: SeaweedServer, source_bucket: str, one_mib: tuple[str, str]
) -> None:
    key, _ = one_mib
    with _proxy(source_server, resets=1.0) as proxy, pytest.raises(BotoCoreError):
        _get(proxy.url, source_bucket, key)


def test_slowdown_answers_503_with_s3_error(
    source_server: SeaweedServer, source_bucket: str, one_mib: tuple[str, str]
) -> None:
    key, _ = one_mib
    with _proxy(source_server, slowdowns=1.0) as proxy, pytest.raises(ClientError) as caught:
        _get(proxy.url, source_bucket, key)
    assert caught.value.response["Error"]["Code"] == "SlowDown"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_stall_holds_the_response(
    source_server: SeaweedServer, source_bucket: str, one_mib: tuple[str, str]
) -> None:
    key, sha = one_mib
    with _proxy(source_server, stalls=1.0, stall_seconds=1.0) as proxy:
        seconds, body = _get(proxy.url, source_bucket, key)
    assert hashlib.sha256(body).hexdigest() == sha
    assert seconds >= 1.0


def test_bandwidth_cap_bounds_throughput(
    source_server: SeaweedServer, source_bucket: str, one_mib: tuple[str, str]
) -> None:
    key, sha = one_mib
    rate = 2 * MIB  # bytes/s: 1 MiB takes about 0.5 s (less the 64 KiB burst)
    with _proxy(source_server, bandwidth=rate) as proxy:
        seconds, body = _get(proxy.url, source_bucket, key)
    assert hashlib.sha256(body).hexdigest() == sha
    assert seconds >= (MIB - 64 * 1024) / rate * 0.95
    assert seconds < 3.0


def test_bad_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="resets"):
        NetemConfig("127.0.0.1", 1, resets=1.5)
    with pytest.raises(ValueError, match="bandwidth"):
        NetemConfig("127.0.0.1", 1, bandwidth=0)


def test_a_tls_source_is_read_through_the_proxy_over_http2(tmp_path: Path) -> None:
    """The benchmark's stand-in for the real archive: HTTPS with a certificate made for the
    run, behind the proxy (bytes pass through untouched). s5cmd trusts the run's authority
    through AWS_CA_BUNDLE and, speaking HTTP/2, fetches many objects over a few connections
    (over plain HTTP it opens about one per object: it keeps two idle per host)."""
    tls = make_tls_files(tmp_path / "tls")
    server = SeaweedServer(
        "tls-source",
        tmp_path / "server",
        admin=Credentials.generate(),
        anonymous_read=True,
        tls=(tls.cert, tls.key),
    )
    server.start()
    try:
        assert server.https_url is not None and server.https_port is not None
        files = tmp_path / "files"
        files.mkdir()
        for i in range(200):
            (files / f"f{i:03d}").write_bytes(os.urandom(1024))
        S3Storage(server.endpoint()).ensure_bucket("tls-bucket")
        upload_tree(server.endpoint(), files, "tls-bucket", "p/")
        with NetemProxy(NetemConfig("127.0.0.1", server.https_port, seed=7)) as proxy:
            inv = Invocation(Endpoint(url=proxy.https_url, anonymous=True), numworkers=64)
            env = {**inv.env(), "AWS_CA_BUNDLE": str(tls.ca)}
            out = tmp_path / "out"
            proc = subprocess.run(
                inv.argv("cp", "s3://tls-bucket/p/*", f"{out}/"), env=env, capture_output=True
            )
            opened = proxy.connections()
        assert proc.returncode == 0, proc.stderr[-500:]
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in files.iterdir())
        assert all((out / p.name).read_bytes() == p.read_bytes() for p in files.iterdir())
        assert 1 <= opened <= 20  # HTTP/2: a few connections carry 201 requests
    finally:
        server.stop()
