"""Binance archive facts: markets, data types, intervals, paths, checksums, schemas, discovery."""
