"""A run that fails a great many files counts them all and names the first ones only."""

from __future__ import annotations

from crypto_lakehouse.flows.summary import PROBLEMS_KEPT, IngestProblem, IngestSummary


def test_every_problem_is_counted_and_the_first_ones_are_named() -> None:
    summary = IngestSummary()
    for n in range(PROBLEMS_KEPT + 250):
        summary.add_problem(IngestProblem(f"data/f{n}.zip", "failed", "connection refused"))
    summary.add_problem(IngestProblem("data/bad.zip", "corrupt", "sha mismatch", known=True))
    assert (summary.failed, summary.corrupt) == (PROBLEMS_KEPT + 250, 1)
    assert len(summary.problems) == PROBLEMS_KEPT and summary.problems_unlisted == 251
    assert not summary.ok
    assert summary.message().endswith(f"and {PROBLEMS_KEPT + 251 - 10} more")
    assert "... and 251 more (the manifest has them all)" in summary.markdown()


def test_a_few_problems_are_all_named() -> None:
    summary = IngestSummary()
    summary.add_problem(IngestProblem("data/a.zip", "corrupt", "sha mismatch"))
    assert summary.problems_unlisted == 0 and "more" not in summary.message()
