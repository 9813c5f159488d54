"""Benchmark results: medians, the ratios the targets are about, a table and the JSON file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table

from crypto_lakehouse.validation.targets import (
    RTT_TARGET_FROM_MS,
    RTT_TRANSFER_TARGETS,
    TRANSFER_TARGETS,
    RatioTarget,
)


@dataclass(frozen=True)
class TransferMeasurement:
    workload: str
    method: str
    seconds: float  # median of the measured runs
    runs: list[float]
    objects: int
    bytes: int
    cpu_seconds: float | None = None  # median client CPU (ours + s5cmd/rclone children)
    server_cpu_seconds: float | None = None  # median CPU of the S3 servers during the run
    # median TCP connections the method opened to the source (through the --rtt proxy only)
    source_connections: int | None = None


@dataclass
class BenchResult:
    measurements: list[TransferMeasurement] = field(default_factory=list)
    memory: dict[str, Any] | None = None
    # Runs that failed under injected faults (`--resets`): case, method, round, copied, error.
    failed_runs: list[dict[str, Any]] = field(default_factory=list)

    def add(self, measurement: TransferMeasurement) -> None:
        self.measurements.append(measurement)

    def seconds(self, workload: str, method: str) -> float | None:
        for m in self.measurements:
            if m.workload == workload and m.method == method:
                return m.seconds
        return None

    def targets(self) -> list[dict[str, Any]]:
        """Every target of the comparison, `met: None` ("not measured") when a side is missing.

        Loopback cases ("small", "large") are judged by `TRANSFER_TARGETS`; cases behind the
        latency proxy ("small@150ms") by `RTT_TRANSFER_TARGETS` from `RTT_TARGET_FROM_MS`
        up. A run without the comparison's workloads (the memory run) has no target rows.
        """
        cases = list(dict.fromkeys(m.workload for m in self.measurements))
        rows: list[dict[str, Any]] = []
        if set(cases) & {t.workload for t in TRANSFER_TARGETS}:
            rows.extend(self._judge(t, t.workload) for t in TRANSFER_TARGETS)
        for case in cases:
            base, rtt = split_case(case)
            if rtt is not None and rtt >= RTT_TARGET_FROM_MS:
                rows.extend(
                    self._judge(t, case) for t in RTT_TRANSFER_TARGETS if t.workload == base
                )
        return rows

    def _judge(self, t: RatioTarget, case: str) -> dict[str, Any]:
        num, den = self.seconds(case, t.numerator), self.seconds(case, t.denominator)
        row: dict[str, Any] = {
            "target": t.text,
            "workload": case,
            "ratio": None,
            "rule": ">=" if t.at_least else "<=",
            "limit": t.limit,
            "met": None,
        }
        if num is None or den is None or den <= 0:
            missing = [m for m, v in ((t.numerator, num), (t.denominator, den)) if not v]
            row["note"] = f"not measured: no {' or '.join(missing)} result"
        else:
            ratio = num / den
            row["ratio"] = round(ratio, 3)
            row["met"] = ratio >= t.limit if t.at_least else ratio <= t.limit
        return row

    def table(self, *, narrow: bool = False) -> Group:
        """The results as rich tables; `narrow` fits 80 columns (logs, pipes, CI).

        Narrow drops the list of runs and the ratio column from the wide table, prints
        each method's runs on its own line, and the targets as one line each.
        """
        parts: list[Any] = []
        for workload in dict.fromkeys(m.workload for m in self.measurements):
            rows = [m for m in self.measurements if m.workload == workload]
            first = self.seconds(workload, "engine-staged") or rows[0].seconds
            title = (
                f"{workload}: {rows[0].objects} objects, "
                f"{rows[0].bytes / 1e6:.1f} MB (median of {len(rows[0].runs)})"
            )
            proxied = any(m.source_connections is not None for m in rows)
            if narrow:
                table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1))
                columns: tuple[str, ...] = (
                    "method", "median s", "MB/s", "obj/s", "CPU s", "srv CPU", "x stg"
                )  # fmt: skip
                if proxied:
                    columns = (*columns[:-1], "conns", columns[-1])
            else:
                table = Table(title=title)
                columns = (
                    "method", "median s", "runs", "MB/s", "objects/s", "client CPU s",
                    "servers CPU s", "vs engine-staged",
                )  # fmt: skip
                if proxied:
                    columns = (*columns[:-1], "source connections", columns[-1])
            for column in columns:
                if column == "method":
                    table.add_column(column, no_wrap=True, min_width=22 if narrow else None)
                else:
                    table.add_column(column, justify="right")
            for m in rows:
                moved = 0 if m.method.endswith("-rerun") else m.bytes
                cells = [
                    m.method,
                    f"{m.seconds:.2f}",
                    " ".join(f"{r:.2f}" for r in m.runs),
                    f"{moved / 1e6 / m.seconds:.1f}" if moved else "-",
                    f"{m.objects / m.seconds:.0f}",
                    _seconds(m.cpu_seconds),
                    _seconds(m.server_cpu_seconds),
                    f"{m.seconds / first:.2f}" + ("" if narrow else "x time"),
                ]
                if proxied:
                    opened = m.source_connections
                    cells.insert(-1, "-" if opened is None else str(opened))
                if narrow:
                    del cells[2]
                table.add_row(*cells)
            parts.append(table)
            if narrow:
                parts.extend(
                    f"  runs {m.method}: " + " ".join(f"{r:.2f}" for r in m.runs) for m in rows
                )
        targets = self.targets()
        if targets and narrow:
            parts.append("targets (ratios of medians from this run):")
            for row in targets:
                verdict = {None: "not measured", True: "met", False: "MISSED"}[row["met"]]
                ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
                parts.append(
                    f"  {verdict:<12} {row['workload']:<5} {ratio:>6} "
                    f"{row['rule']}{row['limit']:<4} {row['target']}"
                )
        elif targets:
            table = Table(title="targets (ratios of medians from this run)")
            for column in ("target", "workload", "ratio", "limit", "met"):
                table.add_column(column)
            for row in targets:
                if row["met"] is None:
                    mark = "[yellow]not measured[/]"
                else:
                    mark = "[green]yes[/]" if row["met"] else "[red]no[/]"
                table.add_row(
                    row["target"],
                    row["workload"],
                    "-" if row["ratio"] is None else f"{row['ratio']:.3f}",
                    f"{row['rule']} {row['limit']}",
                    mark,
                )
            parts.append(table)
        if self.failed_runs:
            parts.append("runs that failed under injected faults (not in the medians):")
            parts.extend(
                f"  {f['workload']} {f['method']} round {f['round']}: copied {f['copied']} of "
                f"{f['objects']}; {f['error']}"
                for f in self.failed_runs
            )
        if self.memory:
            m = self.memory
            table = Table(title="engine memory (child process running only the engine)")
            table.add_column("measure")
            table.add_column("value", justify="right")
            table.add_row("objects copied", str(m["copied"]))
            table.add_row("peak RSS", f"{m['peak_rss_kib'] / 1024:.1f} MiB")
            table.add_row("RSS before the run", f"{m['rss_before_kib'] / 1024:.1f} MiB")
            table.add_row("staging peak (engine)", f"{m['staging_peak_bytes'] / 1e6:.1f} MB")
            table.add_row("staging peak (walked)", f"{m['staging_walked_peak_bytes'] / 1e6:.1f} MB")
            table.add_row("staging cap", f"{m['staging_cap_bytes'] / 1e6:.1f} MB")
            table.add_row(
                "of which may be in memory", f"{m.get('staging_memory_cap_bytes', 0) / 1e6:.1f} MB"
            )
            table.add_row(
                "first run / re-run", f"{m['seconds']:.1f} s / {m['rerun_seconds']:.1f} s"
            )
            parts.append(table)
        return Group(*parts)

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "results": [
                {
                    "workload": m.workload,
                    "method": m.method,
                    "seconds": round(m.seconds, 4),
                    "objects": m.objects,
                    "bytes": m.bytes,
                    "runs": [round(r, 4) for r in m.runs],
                    "client_cpu_seconds": (
                        None if m.cpu_seconds is None else round(m.cpu_seconds, 3)
                    ),
                    "server_cpu_seconds": (
                        None if m.server_cpu_seconds is None else round(m.server_cpu_seconds, 3)
                    ),
                    "source_connections": m.source_connections,
                }
                for m in self.measurements
            ],
            "targets": self.targets(),
        }
        if self.memory is not None:
            data["memory"] = self.memory
        if self.failed_runs:
            data["failed_runs"] = self.failed_runs
        return data


def case_label(workload: str, rtt_ms: float | None, resets: float = 0.0) -> str:
    """A case's name: the workload, and the proxy's round trip and reset rate if one runs."""
    if rtt_ms is None:
        return workload
    faults = f"+{resets:.0%}rst" if resets else ""
    return f"{workload}@{rtt_ms:g}ms{faults}"


def split_case(case: str) -> tuple[str, float | None]:
    """`case_label`'s inverse for what the targets need: ("small@150ms+1%rst") -> ("small", 150)."""
    workload, _, rest = case.partition("@")
    if not rest:
        return workload, None
    return workload, float(rest.split("ms", 1)[0])


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
