#!/usr/bin/env python3
"""Run the transfer benchmark and keep its JSON next to this script.

    .venv/bin/python benchmarks/transfer.py            # full: 2000 x 4 KiB and 20 x 32 MiB
    .venv/bin/python benchmarks/transfer.py --quick    # smaller workloads
    .venv/bin/python benchmarks/transfer.py --objects 100000   # engine memory at scale

Everything after the script name is passed to `crypto-lakehouse bench transfer`. The
results land in benchmarks/results/transfer.json (or transfer-memory.json for
--objects) unless --json is given.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    args = list(argv)
    if "--json" not in args:
        name = "transfer-memory.json" if "--objects" in args else "transfer.json"
        args += ["--json", str(HERE / "results" / name)]
    cli = Path(sys.executable).with_name("crypto-lakehouse")
    command = [str(cli)] if cli.exists() else [sys.executable, "-m", "crypto_lakehouse"]
    return subprocess.call([*command, "bench", "transfer", *args])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
