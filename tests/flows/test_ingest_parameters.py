"""Ingest options have one home: `IngestRequest` declares each and its default, and the
ingest flows take it whole as their `request` parameter."""

from __future__ import annotations

import inspect
from datetime import date

import pytest
from pydantic import ValidationError

from crypto_lakehouse.flows.deployments import SPECS, with_parallel
from crypto_lakehouse.flows.fanout import ingest_fanout, ingest_part
from crypto_lakehouse.flows.ingest import ingest_archive
from crypto_lakehouse.flows.target import DEFAULT_MARKETS, IngestRequest


@pytest.mark.parametrize("flow", [ingest_archive, ingest_fanout, ingest_part])
def test_the_ingest_flows_take_one_request_and_no_option_of_their_own(flow: object) -> None:
    parameters = inspect.signature(flow.fn).parameters  # type: ignore[attr-defined]
    assert parameters["request"].annotation in ("IngestRequest | None", IngestRequest | None)
    assert not set(parameters) & set(IngestRequest.model_fields)


def test_the_parameter_schema_is_the_requests_with_its_defaults() -> None:
    """What `flows deploy` registers as the deployment's parameter schema (the UI's form)."""
    schema = ingest_archive.parameters.model_dump()
    assert list(schema["properties"]) == ["request"]
    assert schema["required"] == []
    fields = schema["definitions"]["IngestRequest"]["properties"]
    assert set(fields) == set(IngestRequest.model_fields)
    assert fields["markets"]["default"] == DEFAULT_MARKETS  # a prefilled form, not []
    assert fields["start"]["anyOf"][0] == {"format": "date", "type": "string"}


def test_a_request_given_as_json_is_validated_into_the_model() -> None:
    """`run_deployment` and the API send the request as JSON: dates as ISO days."""
    given = {"request": {"markets": ["spot"], "start": "2026-05-01"}}
    request = ingest_archive.validate_parameters(given)["request"]
    assert request == IngestRequest(markets=["spot"], start=date(2026, 5, 1))
    assert request.model_fields_set == {"markets", "start"}
    assert ingest_archive.validate_parameters({}) == {"request": None}
    with pytest.raises(Exception, match="batch_files"):
        ingest_archive.validate_parameters({"request": {"batch_files": 0}})


def test_unset_fields_take_the_deployments_values_then_the_defaults() -> None:
    deployed = {"parallel_batches": 2, "markets": ["option"], "start": "2026-01-01"}
    run = IngestRequest(markets=["spot"], batch_files=10)
    merged = run.over(deployed)
    assert merged.markets == ["spot"] and merged.batch_files == 10  # the run's own
    assert merged.parallel_batches == 2 and merged.start == date(2026, 1, 1)  # deployment's
    assert merged.frequencies == IngestRequest().frequencies  # neither: the default
    assert run.over({}) is run
    assert IngestRequest().over(deployed) == IngestRequest.model_validate(deployed)
    with pytest.raises(ValidationError):
        IngestRequest().over({"parallel_batches": 0})


def test_deploy_parallel_sets_the_requests_parallel_batches() -> None:
    by_name = {spec.name: spec for spec in SPECS}
    for name in ("bronze", "bronze-part"):
        spec = by_name[name]
        assert with_parallel(spec, spec.load_flow(), 3) == {"request": {"parallel_batches": 3}}
        assert with_parallel(spec, spec.load_flow(), None) == {}
    daily = by_name["daily"]
    assert with_parallel(daily, daily.load_flow(), 3) == {}  # no parallelism parameter


def test_the_cli_shows_the_requests_defaults() -> None:
    from typer.testing import CliRunner

    from crypto_lakehouse.cli import app

    text = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "200"}).output
    for name in ("batch_files", "parallel_batches", "source_bucket"):
        assert f"(default {IngestRequest.model_fields[name].default})" in text


def test_the_cli_refuses_an_invalid_request_before_running() -> None:
    """Checked where the flags become an IngestRequest: exit 2, one line, no flow run."""
    from typer.testing import CliRunner

    from crypto_lakehouse.cli import app

    done = CliRunner().invoke(app, ["ingest", "--source-bucket", "A!"])
    assert done.exit_code == 2, done.output
    assert "invalid bucket name 'A!'" in done.output
    assert "Traceback" not in done.output


def test_archive_names_are_checked_and_spelled_as_the_archive() -> None:
    from pydantic import ValidationError

    from crypto_lakehouse.flows.target import IngestRequest

    request = IngestRequest(markets=["um", "spot"], data_types=["aggtrades"])
    assert request.markets == ["futures/um", "spot"] and request.data_types == ["aggTrades"]
    for field, bad in (("markets", "moon"), ("data_types", "candles"), ("frequencies", "hourly")):
        with pytest.raises(ValidationError, match=f"{bad!r}"):
            IngestRequest(**{field: [bad]})


def test_dates_out_of_order_are_rejected_at_the_edge() -> None:
    from datetime import date

    from pydantic import ValidationError

    from crypto_lakehouse.flows.target import IngestRequest

    with pytest.raises(ValidationError, match="start 2024-01-05 is after end 2024-01-01"):
        IngestRequest(start=date(2024, 1, 5), end=date(2024, 1, 1))
    assert IngestRequest(start=date(2024, 1, 1), end=date(2024, 1, 1)).end == date(2024, 1, 1)
