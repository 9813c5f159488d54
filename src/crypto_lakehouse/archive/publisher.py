"""Write a built sample archive into a bucket, the way a publisher updates the real one.

Objects already present with the same bytes (ETag = MD5 of a single-part upload) are left
alone, so re-running is cheap and only a new revision's replaced files get a new
LastModified, exactly what a re-ingest must notice.

Two ways to write: by default every object is a boto3 PUT on a small thread pool (the
whole sample built in memory first); with an `upload` function (the CLI passes the
transfer engine's `upload_tree`, one s5cmd process per folder), objects are rendered one
at a time into staging folders of up to `STAGED_OBJECTS` objects, and each folder is
uploaded while the next one is rendered. The archive layer never imports the transfer
engine itself: the caller hands the function in.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path

from crypto_lakehouse.archive.paths import ROOT
from crypto_lakehouse.archive.sample import (
    Sample,
    SampleBuild,
    SampleManifest,
    SampleSpec,
    build_sample,
    md5_hex,
)
from crypto_lakehouse.storage import S3Storage, S3Url

Progress = Callable[[int, int], None]  # (objects done, objects to write)
# (folder, bucket, key prefix) -> objects written: every file under the folder lands at
# prefix + its relative path. Raises the storage error of a failed object.
FolderUpload = Callable[[Path, str, str], int]
STAGED_OBJECTS = 4000
STAGED_BYTES = 256 * 1024 * 1024


def publish(
    sample: Sample,
    storage: S3Storage,
    bucket: str,
    *,
    root: str = ROOT,
    prune: bool = False,
    workers: int = 16,
    progress: Progress | None = None,
) -> SampleManifest:
    """Upload what changed; with `prune`, delete other objects under `root`.

    Raises the storage errors (EndpointUnreachable, AccessDenied, ...) of the first failed
    upload; objects already written stay written, and a re-run completes the rest.
    """
    storage.ensure_bucket(bucket)
    existing = {info.key: info.etag for info in storage.list_objects(bucket, root)}
    todo = [key for key, data in sample.objects.items() if existing.get(key) != md5_hex(data)]
    manifest = sample.manifest
    manifest.unchanged = len(sample.objects) - len(todo)
    done = 0
    if progress:
        progress(0, len(todo))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(storage.put_bytes, bucket, key, sample.objects[key]) for key in todo]
        try:
            for future in as_completed(futures):
                future.result()
                done += 1
                if progress:
                    progress(done, len(todo))
        finally:
            for future in futures:
                future.cancel()
    manifest.uploaded = done
    stale = sorted(key for key in existing if key not in sample.objects)
    if prune and stale:
        storage.delete_keys(bucket, stale)
        manifest.pruned = len(stale)
    return manifest


def publish_staged(
    build: SampleBuild,
    storage: S3Storage,
    bucket: str,
    upload: FolderUpload,
    *,
    staging: Path | None = None,
    prune: bool = False,
    progress: Progress | None = None,
) -> SampleManifest:
    """Render `build` object by object into staging folders and `upload` each folder.

    Same outcome as `publish` (unchanged objects skipped, `prune` deletes stale ones), with
    at most two folders on disk: one uploading, one being filled. `staging` is the parent
    of a private temporary folder (tmpfs is best: no disk writes); None = the system's
    temporary directory. Raises the storage error of the first failed upload.
    """
    manifest = build.manifest
    existing = {info.key: info.etag for info in storage.list_objects(bucket, build.root)}
    total = build.expected_objects
    written: set[str] = set()
    done = [0]
    if progress:
        progress(0, total)
    with (
        tempfile.TemporaryDirectory(prefix="sample-archive-", dir=staging) as tmp,
        ThreadPoolExecutor(max_workers=1) as uploader,
    ):
        pending: Future[int] | None = None
        folder, count, size, number = Path(tmp) / "0", 0, 0, 0

        def finish(job: Future[int] | None) -> None:
            if job is not None:
                manifest.uploaded += job.result()
                if progress:
                    progress(done[0], total)

        def ship() -> Future[int]:
            nonlocal pending
            finish(pending)
            pending = uploader.submit(_upload_and_remove, upload, folder, bucket)
            return pending

        for key, data in build.objects():
            written.add(key)
            done[0] += 1
            if existing.get(key) == md5_hex(data):
                manifest.unchanged += 1
                continue
            path = folder / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            count, size = count + 1, size + len(data)
            if count >= STAGED_OBJECTS or size >= STAGED_BYTES:
                ship()
                number += 1
                folder, count, size = Path(tmp) / str(number), 0, 0
        if count:
            ship()
        finish(pending)
    if progress:
        progress(total, total)
    stale = sorted(key for key in existing if key not in written)
    if prune and stale:
        storage.delete_keys(bucket, stale)
        manifest.pruned = len(stale)
    return manifest


def _upload_and_remove(upload: FolderUpload, folder: Path, bucket: str) -> int:
    try:
        return upload(folder, bucket, "")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_sample(
    spec: SampleSpec,
    storage: S3Storage,
    dest: S3Url,
    *,
    prune: bool = False,
    workers: int = 16,
    progress: Progress | None = None,
    upload: FolderUpload | None = None,
    staging: Path | None = None,
) -> SampleManifest:
    """Build the sample for `spec` and publish it under `dest` (`s3://bucket[/prefix]`).

    The bucket is created (or its access checked) first, so a refused write fails before
    the generation. With `upload`, objects stream through `staging` (`publish_staged`);
    without, the sample is built in memory and PUT object by object (`publish`).
    """
    storage.ensure_bucket(dest.bucket)
    root = (dest.prefix.rstrip("/") + "/" if dest.prefix else "") + ROOT
    if upload is not None:
        build = SampleBuild(spec, root=root)
        return publish_staged(
            build, storage, dest.bucket, upload, staging=staging, prune=prune, progress=progress
        )
    sample = build_sample(spec, root=root)
    return publish(
        sample, storage, dest.bucket, root=root, prune=prune, workers=workers, progress=progress
    )
