"""`crypto-lakehouse sync` as a user runs it: exit codes, JSON report, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transfer_helpers import contents, seed, sha256, small_objects
from typer.testing import CliRunner

from crypto_lakehouse.cli import app
from crypto_lakehouse.stack.seaweed import SeaweedServer


@pytest.fixture
def env(source_server: SeaweedServer, lake_server: SeaweedServer, tmp_path: Path) -> dict:
    return {
        "SOURCE_ENDPOINT": source_server.url,
        "MINIO_ENDPOINT": lake_server.url,
        "MINIO_ACCESS_KEY": lake_server.admin.access_key,
        "MINIO_SECRET_KEY": lake_server.admin.secret_key,
        "STAGING_DIR": str(tmp_path / "staging"),
        "LAKEHOUSE_HOME": str(tmp_path / "home"),
    }


def _sync(env: dict, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["sync", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_sync_json_then_incremental(
    env: dict,
    source_server: SeaweedServer,
    lake_server: SeaweedServer,
    source_bucket: str,
    lake_bucket: str,
) -> None:
    seed(source_server.endpoint(), source_bucket, small_objects("d/", 4))
    args = (f"s3://{source_bucket}/d/", f"s3://{lake_bucket}/bronze/", "--anonymous-source")
    code, out, _ = _sync(env, *args, "--json")
    assert code == 0
    report = json.loads(out)
    assert report["summary"]["copied"] == 4 and report["problems"] == []
    assert len(contents(lake_server.endpoint(), lake_bucket)) == 4

    code, out, _ = _sync(env, *args, "--json")
    assert code == 0 and json.loads(out)["summary"]["skipped"] == 4

    code, out, _ = _sync(env, *args)  # the human table (no terminal: no progress bar)
    assert code == 0 and "skipped" in out


def test_sync_exit_3_when_an_object_is_corrupt(
    env: dict, source_server: SeaweedServer, source_bucket: str, lake_bucket: str
) -> None:
    seed(
        source_server.endpoint(),
        source_bucket,
        {"d/a.zip": b"real", "d/a.zip.CHECKSUM": f"{sha256(b'other')}  a.zip".encode()},
    )
    code, out, _ = _sync(
        env, f"s3://{source_bucket}/d/", f"s3://{lake_bucket}/", "--anonymous-source", "--json"
    )
    assert code == 3
    [problem] = json.loads(out)["problems"]
    assert problem["outcome"] == "corrupt" and problem["source_key"] == "d/a.zip"


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("bucket/no-scheme", "s3://dst-bucket/"), 2, "expected s3://"),
        (("s3://no-such-src-bucket/x/", "s3://dst-bucket/"), 4, "bucket not found"),
        (
            ("s3://abc/", "s3://dst-bucket/", "--source-endpoint", "http://127.0.0.1:1"),
            4,
            "no answer",
        ),
    ],
)
def test_sync_bad_input_exit_codes(env: dict, args: tuple[str, ...], code: int, words: str) -> None:
    exit_code, _, err = _sync(env, *args, "--anonymous-source")
    assert exit_code == code
    assert words in err and len(err.strip().splitlines()) == 1
