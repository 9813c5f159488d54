"""Upload a local folder tree to S3 with one s5cmd process.

Why: writing many small objects from Python costs a PUT round trip per object (boto3,
one thread each); one `cp 'folder/*' s3://bucket/prefix` line lets s5cmd stream them
with its own worker pool. A file at `folder/a/b.zip` lands at `prefix + "a/b.zip"`.
The run file is written next to the folder, never inside it, so it is not uploaded.
"""

from __future__ import annotations

import threading
from pathlib import Path

from crypto_lakehouse.errors import TransferInterrupted
from crypto_lakehouse.storage.endpoint import Endpoint
from crypto_lakehouse.transfer.binary import Invocation
from crypto_lakehouse.transfer.commands import CommandFile, s3_url
from crypto_lakehouse.transfer.output import Done, Event, Failed, short_error, storage_error
from crypto_lakehouse.transfer.runner import run_s5cmd


def upload_tree(
    endpoint: Endpoint,
    folder: Path,
    bucket: str,
    prefix: str = "",
    *,
    workers: int = 32,
    retry_count: int = 3,
    part_size_mib: int = 50,
) -> int:
    """Copy every file under `folder` to `s3://bucket/prefix<relative path>`; return the count.

    Raises the storage error of the first failed object (AccessDenied, BucketNotFound,
    EndpointUnreachable, StorageError), or TransferInterrupted when s5cmd fails without saying
    which object; objects already written stay written.
    """
    folder = folder.resolve()
    run_file = folder.parent / f"{folder.name}.upload.run"
    with CommandFile(run_file, part_size_mib=part_size_mib) as commands:
        commands.copy(f"{folder}/*", s3_url(bucket, prefix), raw=False)
    lock = threading.Lock()
    done: list[int] = [0]
    failures: list[str] = []

    def handle(event: Event) -> None:
        with lock:
            if isinstance(event, Done):
                done[0] += 1
            elif isinstance(event, Failed):
                failures.append(event.error)

    invocation = Invocation(endpoint, numworkers=workers, retry_count=retry_count)
    try:
        result = run_s5cmd(invocation, ["run", str(run_file)], handle)
    finally:
        run_file.unlink(missing_ok=True)
    if failures:
        raise storage_error(failures[0], f"s3://{bucket}/{prefix}")
    if result.returncode != 0:
        tail = short_error(result.stderr_tail) or f"exit code {result.returncode}"
        raise TransferInterrupted(f"s5cmd upload to s3://{bucket}/{prefix} failed: {tail}")
    return done[0]
