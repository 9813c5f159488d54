"""Start-up stays fast: the CLI and the query path import no heavy part they do not use.

`python -X importtime` lists every module a process imports (on stderr); a command that
imports Prefect, pyiceberg or boto3 at start-up pays about a second before doing anything.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

HEAVY = {"prefect", "pyiceberg", "boto3", "botocore", "sqlalchemy", "psycopg", "sqlglot"}


def imported(code: str) -> set[str]:
    """Top-level package names of every module `code` imports in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            module = line.rsplit("|", 1)[1].strip()
            if module != "imported package":  # the header line
                names.add(module.split(".")[0])
    assert "crypto_lakehouse" in names, done.stderr[-2000:]  # the parse saw real lines
    return names


def test_importing_the_cli_imports_no_heavy_part() -> None:
    assert imported("import crypto_lakehouse.cli") & HEAVY == set()


def test_the_query_command_loads_without_pyiceberg_prefect_or_boto3() -> None:
    """What `query "SELECT 1"` loads before it runs: its command, the engine, the config."""
    code = (
        "from crypto_lakehouse.cli import load_command; load_command('query'); "
        "import crypto_lakehouse.lake.query, crypto_lakehouse.lake.config"
    )
    assert imported(code) & HEAVY == set()


def test_the_heavy_check_would_see_a_heavy_import() -> None:
    assert {"pyiceberg", "sqlalchemy"} <= imported("import crypto_lakehouse.lake.warehouse")


@pytest.mark.parametrize("name", ["query", "maintain", "stack", "bench", "sample-archive"])
def test_a_lazily_loaded_command_answers_help(name: str) -> None:
    from crypto_lakehouse.cli import app

    result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_root_help_lists_every_command() -> None:
    from crypto_lakehouse.cli import _COMMANDS, _GROUPS, app

    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in [*_COMMANDS, *_GROUPS]:
        assert f" {name} " in result.output, name
