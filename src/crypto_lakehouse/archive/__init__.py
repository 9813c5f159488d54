"""Binance archive facts: markets, data types, intervals, paths, checksums, schemas, discovery.

Knows nothing of Prefect, HTTP, the lake or the CLI; it lists through `storage.S3Storage`.
"""

from crypto_lakehouse.archive.catalog import (
    Dataset,
    DataType,
    Frequency,
    Market,
    check,
    data_types_for,
    datasets,
    intervals_for,
    parse_data_type,
    parse_frequency,
    parse_market,
)
from crypto_lakehouse.archive.checksum import (
    Checksum,
    checksum_of,
    parse_checksum,
    sha256_hex,
    verify,
)
from crypto_lakehouse.archive.discovery import (
    ArchiveLister,
    ArchiveQuery,
    ArchiveSource,
    binance_source,
    is_settled,
    quote_asset,
)
from crypto_lakehouse.archive.gaps import Gap, find_gaps
from crypto_lakehouse.archive.paths import (
    ArchiveFile,
    Partition,
    data_key_of,
    is_checksum_key,
    parse_key,
)
from crypto_lakehouse.archive.reader import FileLayout, read_csv, read_zip
from crypto_lakehouse.archive.schemas import (
    Column,
    CsvSchema,
    TimeKind,
    all_schemas,
    detect_time_unit,
    looks_like_header,
    schema_for,
)

__all__ = [
    "ArchiveFile",
    "ArchiveLister",
    "ArchiveQuery",
    "ArchiveSource",
    "Checksum",
    "Column",
    "CsvSchema",
    "DataType",
    "Dataset",
    "FileLayout",
    "Frequency",
    "Gap",
    "Market",
    "Partition",
    "TimeKind",
    "all_schemas",
    "binance_source",
    "check",
    "checksum_of",
    "data_key_of",
    "data_types_for",
    "datasets",
    "detect_time_unit",
    "find_gaps",
    "intervals_for",
    "is_checksum_key",
    "is_settled",
    "looks_like_header",
    "parse_checksum",
    "parse_data_type",
    "parse_frequency",
    "parse_key",
    "parse_market",
    "quote_asset",
    "read_csv",
    "read_zip",
    "schema_for",
    "sha256_hex",
    "verify",
]
