"""Benchmarks that measure the project against baselines on the same machine, in one run.

Each module is one benchmark (`transfer`, ...); `crypto-lakehouse bench <name>` runs it.
Numbers are measured, never assumed: every ratio printed comes from timings taken in
the same process run, on the same data and servers.
"""
