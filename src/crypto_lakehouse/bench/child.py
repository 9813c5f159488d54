"""Benchmarks that measure one part alone run it in a child process (its own peak RSS,
none of the CLI's imports): the spec goes in as JSON on stdin (so no secret is on a
command line), the result comes back as the last line of stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any


def run_child(module: str, spec: dict[str, Any], error: type[Exception]) -> dict[str, Any]:
    """Run `python -m module` with `spec`; raise `error` with its stderr tail if it fails."""
    proc = subprocess.run(
        [sys.executable, "-m", module],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise error(f"{module} failed: {proc.stderr.strip()[-800:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
