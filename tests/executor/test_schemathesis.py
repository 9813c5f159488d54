"""Schemathesis (v4) over the served OpenAPI document: no input makes the service answer 5xx.

Also checked: every status code, content type and body the service sends is the one its
OpenAPI document declares. (Allow-list rejections of schema-valid endpoints and S3's
bucket rules are runtime policy, so `positive_data_acceptance` is not asked for.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
HOOKS = "schemathesis_hooks.py"  # caps long-poll waits (nothing ever ends on this replica)

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def test_fuzzing_the_api_finds_no_server_error(
    start_replica, api_token: str, tmp_path: Path
) -> None:
    replica = start_replica("fuzzed", executor_max_operations=0, executor_max_queue=1_000_000)
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{replica.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {api_token}",
            "--checks",
            CHECKS,
            "--max-examples",
            "30",
            "--seed",
            "20240601",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(Path(__file__).with_name(HOOKS))},
        timeout=600,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "Operations:" in output and "8 selected" in output
    assert api_token not in output
    assert api_token not in replica.log()
