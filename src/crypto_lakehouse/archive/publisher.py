"""Write a built sample archive into a bucket, the way a publisher updates the real one.

Objects already present with the same bytes (ETag = MD5 of a single-part upload) are left
alone, so re-running is cheap and only a new revision's replaced files get a new
LastModified, exactly what a re-ingest must notice. Uploads run on a small thread pool
(boto3 clients are thread-safe); many small objects are latency-bound, not CPU-bound.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

from crypto_lakehouse.archive.paths import ROOT
from crypto_lakehouse.archive.sample import (
    Sample,
    SampleManifest,
    SampleSpec,
    build_sample,
    md5_hex,
)
from crypto_lakehouse.storage import S3Storage, S3Url

Progress = Callable[[int, int], None]  # (objects done, objects to write)


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


def write_sample(
    spec: SampleSpec,
    storage: S3Storage,
    dest: S3Url,
    *,
    prune: bool = False,
    workers: int = 16,
    progress: Progress | None = None,
) -> SampleManifest:
    """Build the sample for `spec` and publish it under `dest` (`s3://bucket[/prefix]`).

    The bucket is created (or its access checked) first, so a refused write fails before
    the few seconds of generation.
    """
    storage.ensure_bucket(dest.bucket)
    root = (dest.prefix.rstrip("/") + "/" if dest.prefix else "") + ROOT
    sample = build_sample(spec, root=root)
    return publish(
        sample, storage, dest.bucket, root=root, prune=prune, workers=workers, progress=progress
    )
