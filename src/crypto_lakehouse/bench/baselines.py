"""The reference copiers the transfer benchmark measures the engine against.

- `s5cmd_raw`: a plain two-step `s5cmd cp` (wildcard download to a folder, wildcard upload,
  folder removed), with the engine's worker count: the upper reference for staged mode.
- `s5cmd_raw_direct`: a plain server-side `s5cmd cp 's3://a/p/*' s3://b/q/`.
- `rclone`: Debian's rclone between the two endpoints with its fastest flags for many
  small objects (no HEADs, no destination checks); `AWS_CA_BUNDLE` is removed from its
  environment only (rclone 1.60 fails on every S3 remote with it set).
- `naive_boto3`: a sequential list / get / put loop, bytes held in memory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from crypto_lakehouse.storage import Endpoint, S3Storage
from crypto_lakehouse.transfer import Invocation

RCLONE_TRANSFERS = 64  # fastest on loopback; behind the latency proxy it gets the engine's
RCLONE_FLAGS = [
    "--no-check-dest",
    "--s3-no-check-bucket",
    "--s3-no-head",
    "--s3-no-head-object",
]


class BaselineError(RuntimeError):
    """A reference tool failed: the benchmark stops rather than print a wrong number."""


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-3:]
        raise BaselineError(f"{what} failed (exit {proc.returncode}): {' | '.join(tail)}")


def s5cmd_cp(endpoint: Endpoint, source: str, dest: str, workers: int, what: str) -> None:
    """One `s5cmd cp SOURCE DEST` process (wildcards allowed). Raises BaselineError."""
    inv = Invocation(endpoint, numworkers=workers)
    proc = subprocess.run(
        inv.argv("cp", source, dest), env=inv.env(), capture_output=True, text=True, check=False
    )
    _check(proc, what)


def upload_folder(endpoint: Endpoint, folder: Path, url: str, workers: int, what: str) -> None:
    """`s5cmd cp 'folder/*' url`: one process for a whole folder. Raises BaselineError."""
    s5cmd_cp(endpoint, f"{folder}/*", url, workers, what)


def s5cmd_raw(
    source: Endpoint,
    src_url: str,
    dest: Endpoint,
    dst_url: str,
    workdir: Path,
    workers: int,
    source_workers: int,
) -> None:
    """`s5cmd cp 's3://src/p/*' dir/` then `s5cmd cp 'dir/*' s3://dst/q/`, then remove dir."""
    folder = Path(tempfile.mkdtemp(prefix="raw-", dir=workdir))
    try:
        s5cmd_cp(source, f"{src_url}*", f"{folder}/", source_workers, "s5cmd download")
        upload_folder(dest, folder, dst_url, workers, "s5cmd upload")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def s5cmd_raw_direct(endpoint: Endpoint, src_url: str, dst_url: str, workers: int) -> None:
    s5cmd_cp(endpoint, f"{src_url}*", dst_url, workers, "s5cmd server-side copy")


def rclone_env(source: Endpoint, dest: Endpoint) -> dict[str, str]:
    """Two remotes, `src` and `dst`, configured through rclone's environment variables."""
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    for name, endpoint in (("SRC", source), ("DST", dest)):
        prefix = f"RCLONE_CONFIG_{name}_"
        env[prefix + "TYPE"] = "s3"
        env[prefix + "PROVIDER"] = "Other"
        env[prefix + "ENV_AUTH"] = "false"
        env[prefix + "REGION"] = endpoint.region
        if endpoint.url:
            env[prefix + "ENDPOINT"] = endpoint.url
        if not endpoint.anonymous and endpoint.access_key and endpoint.secret_key:
            env[prefix + "ACCESS_KEY_ID"] = endpoint.access_key.get_secret_value()
            env[prefix + "SECRET_ACCESS_KEY"] = endpoint.secret_key.get_secret_value()
    return env


def rclone(
    source: Endpoint,
    src: tuple[str, str],
    dest: Endpoint,
    dst: tuple[str, str],
    workdir: Path,
    transfers: int = RCLONE_TRANSFERS,
) -> None:
    """`rclone copy src:bucket/prefix dst:bucket/prefix` with the flags above and
    `transfers` parallel copies (and as many checkers)."""
    binary = shutil.which("rclone")
    if binary is None:
        raise BaselineError("rclone is not installed (Debian package 'rclone')")
    config = workdir / "rclone.conf"
    config.touch()
    proc = subprocess.run(
        [
            binary,
            "--config",
            str(config),
            "copy",
            f"src:{src[0]}/{src[1]}",
            f"dst:{dst[0]}/{dst[1]}",
            *RCLONE_FLAGS,
            "--transfers",
            str(transfers),
            "--checkers",
            str(transfers),
        ],
        env=rclone_env(source, dest),
        capture_output=True,
        text=True,
        check=False,
    )
    _check(proc, "rclone copy")


class NaiveBoto3:
    """The loop a first script would be: list, then get + put one object at a time.

    The two boto3 clients are built inside `copy`, so the timed run pays for them as the
    engine's traditional mode pays for its own (it builds them when a run starts).
    """

    def __init__(self, source: Endpoint, dest: Endpoint) -> None:
        self.source = source
        self.dest = dest

    def copy(self, src: tuple[str, str], dst: tuple[str, str]) -> int:
        source = S3Storage(self.source, timeout=30.0).client
        dest = S3Storage(self.dest, timeout=30.0).client
        copied = 0
        paginator = source.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=src[0], Prefix=src[1]):
            for item in page.get("Contents", ()):
                body = source.get_object(Bucket=src[0], Key=item["Key"])["Body"].read()
                rest = item["Key"][len(src[1]) :]
                dest.put_object(Bucket=dst[0], Key=dst[1] + rest, Body=body)
                copied += 1
        return copied
