"""The ingest summary on the console stays readable when thousands of files fail at once."""

from __future__ import annotations

from crypto_lakehouse.cli import ingest as ingest_cli
from crypto_lakehouse.cli._common import console
from crypto_lakehouse.flows.summary import IngestProblem, IngestSummary


def test_a_long_problem_list_is_cut_with_a_count_of_the_rest() -> None:
    problems = [
        IngestProblem(f"data/spot/f{n}.zip", "failed", "connection refused") for n in range(25)
    ]
    summary = IngestSummary(listed=25, failed=25, problems=problems)
    with console.capture() as captured:
        ingest_cli.print_summary(summary, "")
    text = captured.get()
    shown = ingest_cli.PROBLEMS_SHOWN
    assert text.count("connection refused") == shown
    assert f"data/spot/f{shown - 1}.zip" in text and f"data/spot/f{shown}.zip" not in text
    assert f"... and {25 - shown} more files not verified" in text


def test_a_short_problem_list_is_shown_whole() -> None:
    problems = [IngestProblem(f"data/spot/f{n}.zip", "corrupt", "sha mismatch") for n in range(3)]
    with console.capture() as captured:
        ingest_cli.print_summary(IngestSummary(problems=problems), "")
    text = captured.get()
    assert text.count("sha mismatch") == 3 and "more files not verified" not in text
