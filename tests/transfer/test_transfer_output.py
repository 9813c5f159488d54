"""Parsing s5cmd's --json lines, using output captured from the real binary in this test run."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pydantic import SecretStr

from crypto_lakehouse.errors import AccessDenied, BucketNotFound
from crypto_lakehouse.stack.seaweed import SeaweedServer
from crypto_lakehouse.storage import Endpoint
from crypto_lakehouse.transfer.binary import Invocation
from crypto_lakehouse.transfer.commands import CommandFile
from crypto_lakehouse.transfer.output import (
    Done,
    Failed,
    Listed,
    Other,
    is_empty_listing,
    parse_line,
    storage_error,
)


def _s5cmd(endpoint: Endpoint, *args: str) -> tuple[list[str], list[str]]:
    inv = Invocation(endpoint, retry_count=0, stats=True)
    proc = subprocess.run(
        inv.argv(*args), env=inv.env(), capture_output=True, text=True, timeout=60, check=False
    )
    return proc.stdout.splitlines(), proc.stderr.splitlines()


def test_real_success_error_stat_and_listing_lines(
    source_server: SeaweedServer, source_bucket: str, tmp_path: Path
) -> None:
    endpoint = source_server.endpoint()
    local = tmp_path / "a b.bin"
    local.write_bytes(b"12345")
    run_file = tmp_path / "cmds.run"
    with CommandFile(run_file, part_size_mib=5) as cf:
        cf.copy(str(local), f"s3://{source_bucket}/p/a b.bin")
        cf.copy(str(local), f"s3://{source_bucket}/p/plain.bin")
    out, err = _s5cmd(endpoint, "run", str(run_file))
    events = [parse_line(line) for line in out]
    uploads = sorted((e for e in events if isinstance(e, Done)), key=lambda e: e.destination)
    assert uploads == [
        Done("cp", str(local), f"s3://{source_bucket}/p/a b.bin", 5),
        Done("cp", str(local), f"s3://{source_bucket}/p/plain.bin", 5),
    ]
    # --stat adds a counter line that must not be mistaken for a result.
    assert any(isinstance(e, Other) and '"success":2' in e.text for e in events)

    with CommandFile(run_file, part_size_mib=5) as cf:
        cf.copy(f"s3://{source_bucket}/p/a b.bin", str(tmp_path / "dl" / "0"))
        cf.copy(f"s3://{source_bucket}/p/plain.bin", f"s3://{source_bucket}/q/copy")
        cf.copy(f"s3://{source_bucket}/p/missing", str(tmp_path / "dl" / "1"))
    out, err = _s5cmd(endpoint, "run", str(run_file))
    done = {e.destination: e for e in map(parse_line, out) if isinstance(e, Done)}
    assert done[str(tmp_path / "dl" / "0")].size == 5
    assert done[f"s3://{source_bucket}/q/copy"].source == f"s3://{source_bucket}/p/plain.bin"
    failures = [e for e in map(parse_line, err) if isinstance(e, Failed)]
    assert len(failures) == 1
    missing = f"s3://{source_bucket}/p/missing"
    assert failures[0].command == f"cp {missing} {tmp_path / 'dl' / '1'}"
    assert "404" in failures[0].error or "NoSuch" in failures[0].error

    out, err = _s5cmd(endpoint, "ls", f"s3://{source_bucket}/p/*")
    listed = [e for e in map(parse_line, out) if isinstance(e, Listed)]
    assert [(e.url, e.size) for e in listed] == [
        (f"s3://{source_bucket}/p/a b.bin", 5),
        (f"s3://{source_bucket}/p/plain.bin", 5),
    ]
    assert len(listed[0].etag) == 32 and listed[0].last_modified.endswith("Z")

    out, err = _s5cmd(endpoint, "ls", f"s3://{source_bucket}/nothing-here*")
    empty = [e for e in map(parse_line, err) if isinstance(e, Failed)]
    assert empty and is_empty_listing(empty[0].error)


def test_real_bucket_and_credential_errors_map_to_ours(source_server: SeaweedServer) -> None:
    _, err = _s5cmd(source_server.endpoint(), "ls", "s3://no-such-bucket-here/*")
    failure = next(e for e in map(parse_line, err) if isinstance(e, Failed))
    assert isinstance(storage_error(failure.error, "here"), BucketNotFound)

    wrong = Endpoint(
        url=source_server.url, access_key=SecretStr("nobody"), secret_key=SecretStr("wrong")
    )
    _, err = _s5cmd(wrong, "ls", "s3://lakehouse-probe/*")
    failure = next(e for e in map(parse_line, err) if isinstance(e, Failed))
    assert isinstance(storage_error(failure.error, "here"), AccessDenied)


def test_lines_that_are_not_results() -> None:
    assert isinstance(parse_line("plain warning text"), Other)
    assert isinstance(parse_line('{"operation":"cp","success":true'), Other)  # cut short
    assert isinstance(parse_line('{"operation":"cp","success":3,"error":0}'), Other)
