"""`bench scale`'s verdicts and text: the steps table, the targets, the projection, JSON.

Plain text of at most 100 columns, so it reads the same in a terminal and in a CI log.
Every target names the N it is judged at; a value that was not measured says so and why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from crypto_lakehouse.bench.projection import Costs, Projection, archive_size
from crypto_lakehouse.bench.scale import Run, Step
from crypto_lakehouse.validation.targets import SCALE_TARGETS, PerformanceTarget

SMALL_N, LARGE_N = 5_000, 50_000
DEFAULT_WORKERS = (10, 50)


@dataclass
class Verdict:
    key: str
    measured: float | None
    note: str = ""

    @property
    def target(self) -> PerformanceTarget:
        return SCALE_TARGETS[self.key]

    @property
    def status(self) -> str:
        if self.measured is None:
            return "not measured"
        return "met" if self.target.met_by(self.measured) else "missed"

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "status": self.status, "target": asdict(self.target)}


def _rate(run: Run | None, name: str) -> float | None:
    step = run.step(name) if run else None
    return step.files_per_s if step and step.exit_code == 0 else None


def verdicts(runs: list[Run]) -> list[Verdict]:
    """Each target judged at the N the issue names; absent runs make it 'not measured'."""
    by_n = {r.requested: r for r in runs}
    small, large = by_n.get(SMALL_N), by_n.get(LARGE_N)
    missing_large = f"no {LARGE_N:,}-file run (bench scale --files {LARGE_N})"
    out = []
    out.append(
        Verdict("silver_small_files", _rate(large, "silver"), "" if large else missing_large)
    )
    out.append(
        Verdict(
            "silver_large_ratio",
            large.large_ratio if large else None,
            "silver rows/s net of silver-noop" if large else missing_large,
        )
    )
    ratios = {}
    for step in ("ingest", "silver"):
        a, b = _rate(small, step), _rate(large, step)
        if a and b:
            ratios[step] = b / a
    out.append(
        Verdict(
            "growth",
            min(ratios.values()) if len(ratios) == 2 else None,
            ", ".join(f"{k} {v:.2f}" for k, v in ratios.items())
            or f"needs --files {SMALL_N} --files {LARGE_N}",
        )
    )
    out.append(Verdict("peak_rss", large.max_rss_mib if large else None, _rss_note(large)))
    out.append(_data_files(large) if large else Verdict("data_files", None, missing_large))
    one = large.queries.get("select-1") if large else None
    out.append(Verdict("select_1", one.seconds if one and one.exit_code == 0 else None))
    out.append(Verdict("query_month", large.query_over_select1 if large else None))
    out.append(Verdict("daily_update", large.update_seconds if large else None))
    return out


def _rss_note(run: Run | None) -> str:
    if run is None:
        return ""
    steps = [s for s in [*run.steps, *run.queries.values()] if s.peak_rss_mib is not None]
    worst = max(steps, key=lambda s: s.peak_rss_mib or 0.0, default=None)
    return f"largest: {worst.name}" if worst else ""


def _data_files(run: Run) -> Verdict:
    maintain = run.step("maintain")
    if not run.after_maintain or maintain is None or maintain.exit_code != 0:
        return Verdict("data_files", None, "maintain not measured or failed")
    files = sum(t.data_files for t in run.after_maintain.values())
    return Verdict("data_files", files / run.files, f"{files:,} data files, {run.files:,} sources")


def projection(runs: list[Run], workers: tuple[int, ...] = DEFAULT_WORKERS) -> Projection | None:
    """From the largest complete run: None when a step it needs failed or is missing."""
    for run in sorted(runs, key=lambda r: r.requested, reverse=True):
        steps = {n: run.step(n) for n in ("ingest", "silver", "gold", "maintain")}
        rate = run.silver_large_net_rate
        large = run.step("silver-large")
        needed = [steps["ingest"], steps["silver"], steps["gold"]]
        if rate is None or large is None or any(s is None or s.seconds is None for s in needed):
            continue
        maintain = steps["maintain"]
        costs = Costs.measured(
            files=run.files,
            ingest_s=_seconds(steps["ingest"]),
            small_files=steps["silver"].files or 0,  # type: ignore[union-attr]
            small_rows=steps["silver"].rows or 0,  # type: ignore[union-attr]
            silver_small_s=_seconds(steps["silver"]),
            large_rows=large.rows or 0,
            silver_large_net_s=(large.rows or 0) / rate,
            gold_s=_seconds(steps["gold"]),
            maintain_s=maintain.seconds if maintain else None,
        )
        return Projection(archive_size(), costs, workers)
    return None


def _seconds(step: Step | None) -> float:
    return step.seconds or 0.0 if step else 0.0


def _num(value: float | None, spec: str = ",.1f") -> str:
    return "-" if value is None else format(value, spec)


def steps_table(run: Run) -> list[str]:
    lines = [
        f"N={run.requested:,}: {run.files:,} files ({run.symbols} symbols per market x "
        f"{run.days} days, every interval),",
        f"  {run.large_files} of them large trades files of {run.large_rows:,} rows",
        f"{'step':<18}{'seconds':>9}{'files':>9}{'files/s':>10}{'rows':>14}{'rows/s':>12}"
        f"{'RSS MiB':>9}{'exit':>6}",
    ]
    for step in [*run.steps, *([run.bare] if run.bare else [])]:
        if step.seconds is None:
            lines.append(f"{step.name:<18}not measured: {step.note}")
            continue
        lines.append(
            f"{step.name:<18}{step.seconds:>9.1f}{_num(step.files, ',d'):>9}"
            f"{_num(step.files_per_s):>10}{_num(step.rows, ',d'):>14}"
            f"{_num(step.rows_per_s, ',.0f'):>12}{_num(step.peak_rss_mib, '.0f'):>9}"
            f"{_num(step.exit_code, 'd'):>6}"
        )
    for name, q in run.queries.items():
        lines.append(
            f"{'query ' + name:<28}{q.seconds or 0:>9.2f} s median of 3{'':>8}"
            f"{_num(q.peak_rss_mib, '.0f'):>9}{_num(q.exit_code, 'd'):>6}"
        )
    if run.update_seconds is not None:
        lines.append(f"{'daily update':<18}{run.update_seconds:>9.1f} (ingest + silver + gold)")
    lines.append(
        f"{'silver table':<40}{'data files':>11}{'after maintain':>15}{'metadata KiB':>14}"
    )
    for name, table in sorted(run.after_silver.items()):
        after = run.after_maintain.get(name)
        lines.append(
            f"{name:<40}{table.data_files:>11,}{_num(after and after.data_files, ',d'):>15}"
            f"{(after or table).metadata_bytes / 1024:>14,.1f}"
        )
    return lines


def text(runs: list[Run], workers: tuple[int, ...] = DEFAULT_WORKERS) -> str:
    lines: list[str] = []
    for run in runs:
        lines += [*steps_table(run), ""]
    lines.append(f"{'target':<62}{'measured':>12}  verdict")
    for v in verdicts(runs):
        value = _num(v.measured, ",.2f")
        lines.append(f"{v.target.claim[:61]:<62}{value:>12}  {v.status}")
        if v.note:
            lines.append(f"{'':<4}{v.note}")
    lines.append("")
    found = projection(runs, workers)
    lines += found.lines() if found else ["projection: no complete run to project from"]
    return "\n".join(lines)


def as_json(runs: list[Run], workers: tuple[int, ...] = DEFAULT_WORKERS) -> dict[str, Any]:
    found = projection(runs, workers)
    return {
        "runs": [r.as_json() for r in runs],
        "targets": [v.as_json() for v in verdicts(runs)],
        "projection": found.as_json() if found else None,
    }
