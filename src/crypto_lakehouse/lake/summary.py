"""What a silver build did, in numbers and lists a person can act on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from crypto_lakehouse.lake.ledger import FileRecord, Status


@dataclass
class SilverSummary:
    """Counts per outcome, the files needing attention, and the outstanding drift."""

    files: int = 0
    transformed: int = 0
    skipped: int = 0
    superseded: int = 0  # daily files whose month came in through the monthly file
    replaced: int = 0
    rows: int = 0
    rejects: int = 0
    duplicates: int = 0
    line_mode: int = 0
    tables: dict[str, int] = field(default_factory=dict)  # rows added per table
    drift: list[dict[str, str]] = field(default_factory=list)  # outstanding, from the ledger
    corrupt: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)  # unexpected errors per file
    seconds: float = 0.0
    recovered: dict[str, int] = field(default_factory=dict)  # batches a crash left open

    def add(self, outcome: Any) -> None:  # silver.FileOutcome
        self.files += 1
        if outcome.status == "skipped":
            self.skipped += 1
            return
        if outcome.status == "superseded":
            self.superseded += 1
            return
        if outcome.status == "transformed":
            self.transformed += 1
            self.replaced += int(outcome.replaced)
            self.rows += outcome.rows
            self.rejects += outcome.rejects
            self.duplicates += outcome.duplicates
            self.line_mode += int(outcome.mode == "lines")
            self.tables[outcome.table] = self.tables.get(outcome.table, 0) + outcome.rows
        elif outcome.status == "corrupt":
            self.corrupt.append({"file": outcome.key, "detail": outcome.message or ""})

    def note_outstanding(self, records: list[FileRecord]) -> None:
        """Files the ledger holds as drifted (flagged in this run or before)."""
        self.drift = [
            {"file": r.path, "detail": r.message or ""} for r in records if r.status is Status.DRIFT
        ]

    @property
    def ok(self) -> bool:
        return not (self.drift or self.corrupt or self.failed)

    def message(self) -> str:
        text = (
            f"{self.transformed} file(s) transformed ({self.rows:,} rows, {self.replaced} "
            f"replaced), {self.skipped} already in silver, {self.superseded} superseded by "
            f"their monthly file, {self.rejects} rejected line(s), "
            f"{self.duplicates} duplicate row(s) dropped"
        )
        if self.drift:
            text += f"; {len(self.drift)} file(s) flagged for schema drift"
        if self.corrupt:
            text += f"; {len(self.corrupt)} corrupt file(s)"
        if self.failed:
            text += f"; {len(self.failed)} file(s) failed"
        return text

    def markdown(self) -> str:
        lines = ["# build-silver", "", self.message(), "", "| table | rows added |", "|---|---|"]
        lines += [f"| {t} | {n:,} |" for t, n in sorted(self.tables.items())]
        for title, items in (("Schema drift", self.drift), ("Corrupt", self.corrupt),
                             ("Failed", self.failed)):  # fmt: skip
            if items:
                lines += ["", f"## {title}", "", "| file | detail |", "|---|---|"]
                lines += [f"| {i['file']} | {i['detail'][:300]} |" for i in items]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SilverSummary:
        return cls(**data)
