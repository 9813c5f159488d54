"""`archive` stands alone: importing it loads no higher layer, no Prefect, no HTTP server."""

from __future__ import annotations

import json
import subprocess
import sys

import crypto_lakehouse.archive as archive

FORBIDDEN = (
    "crypto_lakehouse.flows",
    "crypto_lakehouse.executor",
    "crypto_lakehouse.cli",
    "crypto_lakehouse.lake",
    "crypto_lakehouse.transfer",
    "prefect",
    "fastapi",
)


def test_importing_archive_loads_no_higher_layer() -> None:
    code = (
        "import json, sys\n"
        "import crypto_lakehouse.archive, crypto_lakehouse.archive.sample\n"
        "import crypto_lakehouse.archive.publisher\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True
        ).stdout
    )
    bad = [m for m in loaded if m.startswith(FORBIDDEN)]
    assert bad == []


def test_public_names_are_sorted_and_importable() -> None:
    assert archive.__all__ == sorted(archive.__all__)
    for name in archive.__all__:
        assert getattr(archive, name) is not None
