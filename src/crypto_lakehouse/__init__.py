"""crypto-lakehouse: a private, verified copy of crypto market-data archives as lakehouse tables."""

__version__ = "0.1.0"
