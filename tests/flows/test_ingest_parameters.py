"""Ingest options have one home: `IngestRequest` declares each and its default."""

from __future__ import annotations

import inspect

from crypto_lakehouse.flows.ingest import ingest_archive
from crypto_lakehouse.flows.target import IngestRequest


def test_the_flow_takes_the_requests_fields_and_no_defaults_of_its_own() -> None:
    parameters = inspect.signature(ingest_archive.fn).parameters
    assert set(parameters) == set(IngestRequest.model_fields)
    assert all(p.default is None for p in parameters.values())


def test_the_cli_shows_the_requests_defaults() -> None:
    from typer.testing import CliRunner

    from crypto_lakehouse.cli import app

    text = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"}).output
    for name in ("batch_files", "parallel_batches", "source_bucket"):
        assert f"(default {IngestRequest.model_fields[name].default})" in text
