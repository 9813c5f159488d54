"""The coverage report as one self-contained HTML file: what needs attention, then heatmaps.

No scripts, no external CSS or fonts: a browser opens it from disk with no server. The page
leads with what needs attention (gaps as date ranges, corrupt, drift, failed and pending
files, worst first, each list capped with "and N more"), then a table of every dataset,
then one heatmap per dataset: symbols x days, or symbols x months (coloured by the month's
worst status) when the days do not fit. Every coloured cell has a tooltip.

The page's size is bounded whatever the lake holds: the heatmaps share a budget of cells
(symbols per dataset are capped to fit it, those with problems first) and the lists are
capped, so it stays a few MB at 50,000 files and grows only with the number of datasets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path

from crypto_lakehouse.lake.coverage import (
    STATUSES,
    Cell,
    Coverage,
    DatasetSummary,
    Heatmap,
    ProblemList,
)

COLOURS = {
    "present": "#2e7d32",
    "replaced": "#f9a825",  # present, but Binance republished the file
    "missing": "#9e9e9e",
    "corrupt": "#c62828",
    "drift": "#6a1b9a",
    "pending": "#64b5f6",
    "failed": "#ef6c00",
    "none": "#ffffff",  # outside the series (before its first file, after its last)
}
_CLASS = {k: k[0] for k in COLOURS} | {"pending": "q", "replaced": "r"}  # one letter each
HEADINGS = {
    "missing": "Gaps",
    "corrupt": "Corrupt files",
    "drift": "Schema drift",
    "failed": "Failed transfers",
    "pending": "Pending (verified, not yet in silver)",
}
MAX_DAYS = 100  # day columns per heatmap; longer datasets get month columns
MAX_SYMBOLS = 60  # symbols per heatmap at most
CELL_BUDGET = 60_000  # heatmap cells on the whole page (about 55 bytes each)
LIST_LIMIT = 10  # lines per attention list

_STYLE = (
    "body{font:13px system-ui,sans-serif;margin:24px;color:#222}"
    "h1{font-size:20px}h2{font-size:15px;margin:28px 0 4px}h3{font-size:13px;margin:14px 0 4px}"
    "p.note{margin:2px 0 6px;color:#555}"
    "table.grid{border-collapse:collapse}"
    "table.grid td{width:11px;height:13px;padding:0;border:1px solid #fff}"
    "table.gm td{width:15px}"
    "table.grid th{font-weight:normal;text-align:right;padding-right:6px;white-space:nowrap}"
    "table.grid th.hd{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;"
    "font-size:10px;height:64px;padding:0}"
    ".legend span{display:inline-block;margin-right:14px}"
    "i{display:inline-block;width:11px;height:11px;margin-right:5px;vertical-align:-1px;"
    "border:1px solid #999}"
    "ul.att{margin:2px 0;padding-left:18px;list-style:none}ul.att li{margin:1px 0}"
    "table.sum{border-collapse:collapse;margin-top:8px}"
    "table.sum td,table.sum th{border:1px solid #ddd;padding:3px 8px;text-align:right}"
    "table.sum td:first-child,table.sum th:first-child{text-align:left}"
    "table.sum td.bad{color:#c62828;font-weight:600}"
    + "".join(f".{_CLASS[k]}{{background:{c}}}" for k, c in COLOURS.items())
)


@dataclass
class CoverageReport:
    """What the page shows, every part bounded: summaries, capped lists, capped heatmaps."""

    summaries: list[DatasetSummary]
    attention: list[ProblemList]
    heatmaps: list[Heatmap]
    made: datetime


def columns_needed(summary: DatasetSummary, max_days: int = MAX_DAYS) -> int:
    """Heatmap columns of a dataset: its periods, or its months when days do not fit."""
    assert summary.first is not None and summary.last is not None
    first, last = summary.first, summary.last
    months = (last.year - first.year) * 12 + last.month - first.month + 1
    if summary.dataset.monthly:
        return months
    days = (last - first).days + 1
    return days if days <= max_days else months


def symbol_caps(
    summaries: list[DatasetSummary],
    *,
    budget: int = CELL_BUDGET,
    max_symbols: int = MAX_SYMBOLS,
    max_days: int = MAX_DAYS,
) -> dict[str, int]:
    """Symbols shown per dataset (by label) so that all heatmaps share `budget` cells.

    Water-filling: datasets that need few rows get all of them, the rest share what is
    left evenly; every dataset shows at least one symbol.
    """
    wanted = {s.dataset.label: (min(s.symbols, max_symbols), columns_needed(s, max_days))
              for s in summaries}  # fmt: skip
    caps: dict[str, int] = {}
    left, columns_left = budget, sum(c for _, c in wanted.values())
    for label, (rows, columns) in sorted(wanted.items(), key=lambda kv: kv[1][0]):
        share = left // columns_left if columns_left else 0
        caps[label] = max(1, min(rows, share))
        left -= caps[label] * columns
        columns_left -= columns
    return caps


def collect(
    coverage: Coverage,
    *,
    budget: int = CELL_BUDGET,
    max_symbols: int = MAX_SYMBOLS,
    max_days: int = MAX_DAYS,
    limit: int = LIST_LIMIT,
) -> CoverageReport:
    """Run the report's queries: two per dataset plus a few over the whole manifest."""
    summaries = coverage.summaries()
    caps = symbol_caps(summaries, budget=budget, max_symbols=max_symbols, max_days=max_days)
    heatmaps = [
        coverage.heatmap(s, max_symbols=caps[s.dataset.label], max_days=max_days) for s in summaries
    ]
    return CoverageReport(summaries, coverage.attention(limit), heatmaps, datetime.now(UTC))


def _title(symbol: str, column: date, cell: Cell, by_month: bool) -> str:
    if by_month:
        label = column.strftime("%Y-%m")
        parts = [", ".join(f"{cell.counts[s]} {s}" for s in STATUSES if cell.counts.get(s))]
        if cell.replaced:
            parts.append(f"{cell.replaced} replaced")
    else:
        label = column.isoformat()
        parts = [cell.worst]
        if cell.replaced:
            parts.append(f"version {cell.versions}")
    if cell.rows is not None:
        parts.append(f"{cell.rows:,} rows")
    if cell.detail:
        parts.append(cell.detail[:160])
    return escape(f"{symbol} {label}: " + ", ".join(parts), quote=True)


def _heatmap(index: int, heatmap: Heatmap, monthly_label: bool) -> str:
    summary = heatmap.summary
    label = "%Y-%m" if monthly_label else "%Y-%m-%d"
    head = "".join(f'<th class="hd">{c.strftime(label)}' for c in heatmap.columns)
    body = []
    for symbol in heatmap.symbols:
        cells = []
        for column in heatmap.columns:
            cell = heatmap.cells.get((symbol, column))
            if cell is None:
                cells.append("<td>")  # outside the series: white, nothing to say
            else:
                title = _title(symbol, column, cell, heatmap.by_month)
                cells.append(f'<td class={_CLASS[cell.worst]} title="{title}">')
        body.append(f"<tr><th>{escape(symbol)}{''.join(cells)}")
    unit = "months" if monthly_label else "days"
    note = f"{summary.symbols:,} symbols x {len(heatmap.columns)} {unit}"
    if heatmap.by_month:
        days = (summary.last - summary.first).days + 1 if summary.first and summary.last else 0
        note += f" ({days:,} days, too many for one column each: a month's colour is its worst)"
    if heatmap.hidden:
        note += (
            f"; showing {len(heatmap.symbols)} of {summary.symbols:,} symbols, those with "
            f"problems first ({heatmap.troubled:,} have problems), {heatmap.hidden:,} more"
        )
    grid = "grid gm" if monthly_label else "grid"
    return (
        f'<h2 id="d{index}">{escape(summary.dataset.label)}</h2>'
        f'<p class="note">{escape(note)}</p>'
        f'<table class="{grid}"><tr><th>{head}</tr>{"".join(body)}</table>'
    )


def _attention(report: CoverageReport, anchors: dict[str, int]) -> str:
    parts = []
    for found in report.attention:
        if not found.groups:
            continue
        head = f"{HEADINGS[found.kind]}: {found.headline()}"
        items = []
        for problem in found.items:
            text = escape(problem.text())
            anchor = anchors.get(problem.dataset.label)
            if anchor is not None:
                text = f'<a href="#d{anchor}">{text}</a>'
            items.append(f"<li><i class={_CLASS[found.kind]}></i>{text}")
        if found.more:
            items.append(f"<li>and {found.more:,} more")
        parts.append(f'<h3>{escape(head)}</h3><ul class="att">{"".join(items)}</ul>')
    if not parts:
        return "<p>Nothing needs attention: no gaps, and every file is in silver.</p>"
    return "".join(parts)


def _summary_table(summaries: list[DatasetSummary]) -> str:
    names = ("dataset", "symbols", "periods", "present", "replaced", "missing", "corrupt",
             "drift", "pending", "failed", "rows", "first", "last")  # fmt: skip
    head = "".join(f"<th>{n}</th>" for n in names)
    lines = []
    for s in summaries:
        cells = [f"<td>{escape(s.dataset.label)}</td>", f"<td>{s.symbols:,}</td>",
                 f"<td>{s.periods:,}</td>", f"<td>{s.count('present'):,}</td>",
                 f"<td>{s.replaced:,}</td>"]  # fmt: skip
        for status in ("missing", "corrupt", "drift", "pending", "failed"):
            bad = ' class="bad"' if s.count(status) and status != "pending" else ""
            cells.append(f"<td{bad}>{s.count(status):,}</td>")
        cells += [f"<td>{s.rows:,}</td>", f"<td>{s.first}</td>", f"<td>{s.last}</td>"]
        lines.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table class="sum"><tr>{head}</tr>{"".join(lines)}</table>'


def render_html(report: CoverageReport, *, title: str = "crypto-lakehouse coverage") -> str:
    """The whole report as one HTML string."""
    legend = (
        "".join(f"<span><i class={_CLASS[k]}></i>{k}</span>" for k in COLOURS if k != "none")
        + "<span><i></i>outside the series</span>"
    )
    anchors = {h.summary.dataset.label: i for i, h in enumerate(report.heatmaps)}
    sections = "".join(
        _heatmap(i, h, h.by_month or h.summary.dataset.monthly)
        for i, h in enumerate(report.heatmaps)
    )
    made = report.made.strftime("%Y-%m-%d %H:%M UTC")
    body = (
        f"<h2>Needs attention</h2>{_attention(report, anchors)}"
        f"<h2>Datasets</h2>{_summary_table(report.summaries)}"
        f'<p class="legend">{legend}</p>{sections}'
        if report.summaries
        else "<p>No files in the manifest yet.</p>"
    )
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>Generated {made}. One row per symbol, one column per "
        "day (or month); hover a cell for details.</p>"
        f"{body}</body></html>"
    )


def write_html(report: CoverageReport, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return path
