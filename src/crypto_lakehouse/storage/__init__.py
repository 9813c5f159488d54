"""S3 endpoints, buckets, listing and small object reads/writes (boto3)."""

from crypto_lakehouse.storage.client import ObjectInfo, S3Storage
from crypto_lakehouse.storage.endpoint import Endpoint
from crypto_lakehouse.storage.urls import S3Url, validate_bucket_name

__all__ = ["Endpoint", "ObjectInfo", "S3Storage", "S3Url", "validate_bucket_name"]
