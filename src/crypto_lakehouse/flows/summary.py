"""An ingest run's summary: counts, the problem list, missing periods; as a dict and as Markdown.

The dict is the flow's return value (and its Failed state's data), stored in the manifest's
run log; the Markdown becomes a Prefect table artifact on the run.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

# Problems listed in a summary (and its artifacts, its run log row): every file not verified
# is counted, the first ones are named. The manifest holds every file's status.
PROBLEMS_KEPT = 1000


@dataclass
class IngestProblem:
    """A file that is not verified in bronze after this run."""

    path: str
    kind: str  # corrupt | failed
    error: str
    known: bool = False  # already corrupt in an earlier run and unchanged since


@dataclass
class IngestSummary:
    run_id: str = ""
    source: str = ""
    bronze: str = ""
    listed: int = 0  # archive files the query covers (zips, not sidecars)
    listed_bytes: int = 0
    transferred: int = 0  # files handed to the engine this run
    bytes_copied: int = 0  # bytes of files verified this run
    verified: int = 0  # first versions verified this run
    replaced: int = 0  # new versions (new SHA-256) verified this run; old ones in history
    reverified: int = 0  # transferred again, same bytes as before
    skipped: int = 0  # verified before, unchanged at the source: not transferred
    corrupt: int = 0  # quarantined this run, or known corrupt and unchanged
    failed: int = 0
    missing: list[str] = field(default_factory=list)  # "series: missing d1, d2"
    missing_periods: int = 0  # files absent inside a series (a day missing in 17 series: 17)
    missing_days: int = 0  # distinct days (or months) with anything missing
    batches: int = 0
    seconds: float = 0.0
    problems: list[IngestProblem] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step of the run

    def add_problem(self, problem: IngestProblem) -> None:
        """Count a file that is not verified; name it while fewer than `PROBLEMS_KEPT` are."""
        if problem.kind == "corrupt":
            self.corrupt += 1
        else:
            self.failed += 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(problem)

    def not_shown(self, shown: int) -> int:
        """Files not verified beyond the first `shown` of `problems` (a list shows those)."""
        return max(0, self.corrupt + self.failed - min(shown, len(self.problems)))

    @property
    def problems_unlisted(self) -> int:
        """Files not verified that `problems` does not name (beyond `PROBLEMS_KEPT`)."""
        return self.not_shown(len(self.problems))

    def phase(self, name: str, since: float) -> float:
        """Record the seconds since `since` (monotonic) as phase `name`; returns now."""
        now = time.monotonic()
        self.phases[name] = round(now - since, 3)
        return now

    @property
    def ok(self) -> bool:
        """Every covered file is verified in bronze (missing days do not count against it)."""
        return self.corrupt == 0 and self.failed == 0

    @property
    def incremental(self) -> bool:
        """True when nothing needed a transfer: everything was already verified."""
        return self.transferred == 0 and self.skipped > 0

    def message(self) -> str:
        """One line for the flow run's final state."""
        if self.ok:
            return (
                f"{self.verified + self.replaced + self.reverified} verified, "
                f"{self.skipped} already verified, {self.missing_periods} missing periods"
            )
        listed = ", ".join(f"{p.path} ({p.kind})" for p in self.problems[:10])
        more = f" and {rest} more" if (rest := self.not_shown(10)) else ""
        return f"{self.corrupt} corrupt, {self.failed} failed: {listed}{more}"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["seconds"] = round(self.seconds, 3)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IngestSummary:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        values["problems"] = [IngestProblem(**p) for p in values.get("problems", [])]
        return cls(**values)

    def markdown(self) -> str:
        rows = [
            ("files listed", self.listed),
            ("bytes listed", self.listed_bytes),
            ("transferred", self.transferred),
            ("verified (new)", self.verified),
            ("replaced (new version)", self.replaced),
            ("re-verified (same bytes)", self.reverified),
            ("skipped (already verified)", self.skipped),
            ("corrupt (quarantined)", self.corrupt),
            ("failed", self.failed),
            ("missing days/months", self.missing_days),
            ("missing files", self.missing_periods),
            ("seconds", round(self.seconds, 1)),
        ]
        lines = [
            f"## Ingest {self.run_id}",
            f"From `{self.source}` into `{self.bronze}`.",
            "",
            "| | |",
            "|---|---:|",
            *(f"| {name} | {value} |" for name, value in rows),
        ]
        if self.problems:
            lines += ["", "### Not verified", "", "| file | problem | detail |", "|---|---|---|"]
            for p in self.problems:
                kind = f"{p.kind} (known)" if p.known else p.kind
                lines.append(f"| `{p.path}` | {kind} | {p.error.replace('|', '/')} |")
            if self.problems_unlisted:
                lines += ["", f"... and {self.problems_unlisted} more (the manifest has them all)"]
        if self.missing:
            lines += ["", "### Missing in the archive", ""]
            lines += [f"- {gap}" for gap in self.missing[:50]]
        return "\n".join(lines)
