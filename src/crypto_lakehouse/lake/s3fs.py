"""pyarrow's S3 client for an endpoint: one place that knows how to address SeaweedFS/MinIO.

pyarrow's client is C++ and holds no GIL while it waits, which is why silver fetches small
zips with it and DuckDB reads data files through it. Path-style addressing, as SeaweedFS
and MinIO want; anonymous when the endpoint has no credentials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyarrow import fs as pafs

    from crypto_lakehouse.storage import Endpoint


def s3_filesystem(endpoint: Endpoint) -> pafs.S3FileSystem:
    """An S3FileSystem for `endpoint` (pyarrow imported on first use: queries start fast)."""
    from pyarrow import fs as pafs

    kwargs: dict[str, Any] = {"region": endpoint.region, "force_virtual_addressing": False}
    if endpoint.url:
        scheme, _, host = endpoint.url.partition("://")
        kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme)
    if endpoint.access_key is not None and endpoint.secret_key is not None:
        kwargs.update(
            access_key=endpoint.access_key.get_secret_value(),
            secret_key=endpoint.secret_key.get_secret_value(),
        )
    else:
        kwargs["anonymous"] = True
    return pafs.S3FileSystem(**kwargs)
