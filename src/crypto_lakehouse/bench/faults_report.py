"""The campaign's results: one row per case, printed as a table, written as JSON and Markdown.

A case `held` when nothing is lost, nothing in bronze is corrupt, no manifest row lies
and the re-run converged. A case the campaign did not run has `held = None` and says why;
it is never counted as held.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

HOW = {
    "ran": "run here",  # the campaign drove the fault against its own stack
    "pytest": "its test, run now",  # the named test ran in a child pytest
    "not run": "not run",
}


@dataclass
class CaseResult:
    """One case: what was done, how the run ended, what the lake holds, how a re-run ended."""

    case: int
    title: str
    how: str  # a key of HOW
    happened: str = ""
    run: str = ""
    lost: int | None = None
    corrupt: int | None = None
    rerun: str = ""
    held: bool | None = None
    seconds: float = 0.0
    findings: list[str] = field(default_factory=list)  # what a reader must know
    details: dict[str, Any] = field(default_factory=dict)

    def verdict(self) -> str:
        return {True: "held", False: "FAILED", None: "not run"}[self.held]


@dataclass
class Campaign:
    """Every case's result and the conditions they ran in."""

    command: str
    date: str
    conditions: dict[str, Any]
    results: list[CaseResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every case that ran held (and at least one ran)."""
        ran = [r for r in self.results if r.held is not None]
        return bool(ran) and all(r.held for r in ran)

    def as_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "date": self.date,
            "conditions": self.conditions,
            "ok": self.ok,
            "cases": [asdict(r) | {"verdict": r.verdict()} for r in self.results],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Campaign:
        results = []
        for case in data["cases"]:
            case = {k: v for k, v in case.items() if k != "verdict"}
            results.append(CaseResult(**case))
        return cls(data["command"], data["date"], data["conditions"], results)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def rows(campaign: Campaign) -> list[list[str]]:
    """case, what happened, run outcome, lost, corrupt in bronze, re-run outcome, verdict."""
    return [
        [
            f"{r.case}. {r.title}",
            f"{r.happened} [{HOW[r.how]}]",
            r.run,
            _count(r.lost),
            _count(r.corrupt),
            r.rerun,
            r.verdict(),
        ]
        for r in campaign.results
    ]


HEADERS = ["case", "what happened", "run outcome", "lost", "corrupt", "re-run outcome", "verdict"]


def table(campaign: Campaign) -> Any:
    """A rich Table for the terminal."""
    from rich.table import Table

    out = Table(*HEADERS, title="bench faults", show_lines=True, title_justify="left")
    for row in rows(campaign):
        out.add_row(*row)
    return out


def print_table(campaign: Campaign, console: Any) -> None:
    """The table on `console`; 160 columns wide when it is a log or a pipe, not 80."""
    from rich.console import Console

    out = console if console.is_terminal else Console(width=160, file=console.file)
    out.print(table(campaign))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(campaign: Campaign) -> str:
    """The Markdown table and each case's findings (docs/reliability.md's body)."""
    lines = [
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows(campaign)]
    notes = [(r, f) for r in campaign.results for f in r.findings]
    if notes:
        lines += ["", "Findings:", ""]
        lines += [f"- case {r.case}: {_cell(f)}" for r, f in notes]
    return "\n".join(lines) + "\n"


DOC_INTRO = """\
# Reliability

`crypto-lakehouse bench faults` runs faults against the real local services (a private
stack under a temporary `LAKEHOUSE_HOME`: SeaweedFS source and lake, PostgreSQL, the
Prefect server), then checks what the lake holds against what the source publishes: every
zip in a case's bronze bucket is read back and compared, size and SHA-256, with the
source's `.CHECKSUM` sidecar. Cases 1-5 each ingest a clean sample archive into their own
bronze bucket and catalog database, inject the fault once the first batch (100 files) is
verified, wait for the run to end, restart what they stopped, and run `ingest` again.

Columns: **lost** = archive files with no object in bronze after the re-run; **corrupt** =
objects in bronze whose size or SHA-256 differ from the sidecar. A case **held** when
nothing is lost, nothing is corrupt, no manifest row says `verified` while bronze
disagrees, and the re-run converged (exit 0, every file verified exactly once, version 1,
no history). Where a case is covered by existing tests, the campaign runs those tests in a
child pytest and says so in the row ("its test, run now"); a case that did not run is
never reported as held.

Each row is one run. Where a fault lands varies from run to run (it follows the first
verified batch, while four batches are in flight), so a case that failed loudly in one run
may ride the fault out in the next: both are acceptable outcomes, a loss never is.

```bash
crypto-lakehouse bench faults                       # every case, about 1,000 files
crypto-lakehouse bench faults --case 1 --case 2     # some cases
crypto-lakehouse bench faults --json benchmarks/results/faults.json --markdown docs/reliability.md
```

Exit code: 0 when every case that ran held, 1 otherwise, 2 on bad usage.
"""


def document(campaign: Campaign) -> str:
    """docs/reliability.md: what the campaign does, the conditions, the table, findings."""
    c = campaign.conditions
    faults = c.get("source_faults") or {}
    load = ", ".join(str(x) for x in c.get("load_average_at_start") or [])
    lines = [
        DOC_INTRO,
        "## Results",
        "",
        f"`{campaign.command}`, {campaign.date}; {c.get('machine', '')}; load average "
        f"{load} at the start (other work on the same cores); a clean sample archive of "
        f"{c.get('archive_files', 0):,} files ({c.get('archive_bytes', 0):,} bytes); the "
        f"whole campaign took {c.get('seconds', 0):.0f} s. Case 2's proxy: "
        f"{faults.get('resets', 0):.0%} resets, {faults.get('slowdowns', 0):.0%} 503 "
        f"SlowDown; case 5's cap: {c.get('staging_cap_bytes', 0):,} bytes. Written from the "
        "command's JSON ([benchmarks/results/faults.json](../benchmarks/results/faults.json)).",
        "",
        markdown(campaign),
    ]
    return "\n".join(lines)
