"""The coverage report as one self-contained HTML file: a heatmap of days x symbols per dataset.

No scripts, no external CSS or fonts: a browser opens it from disk with no server. Every
cell has a tooltip (symbol, period, status, rows, detail); missing, corrupt, replaced,
drift, pending and failed periods have distinct colours, explained in a legend.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from html import escape
from pathlib import Path

from crypto_lakehouse.lake.coverage import CoverageRow, summarise

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
_STYLE = """
body{font:13px system-ui,sans-serif;margin:24px;color:#222}
h1{font-size:20px}h2{font-size:15px;margin:28px 0 6px}
table.grid{border-collapse:collapse}
table.grid td{width:11px;height:13px;padding:0;border:1px solid #fff}
table.grid th{font-weight:normal;text-align:right;padding-right:6px;white-space:nowrap}
table.grid th.day{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;
  font-size:10px;height:64px;padding:0}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px}
table.sum{border-collapse:collapse;margin-top:8px}
table.sum td,table.sum th{border:1px solid #ddd;padding:3px 8px;text-align:right}
table.sum td:first-child,table.sum th:first-child{text-align:left}
"""


def _periods(first: date, last: date, monthly: bool) -> list[date]:
    out, cursor = [], first
    while cursor <= last:
        out.append(cursor)
        if monthly:
            cursor = date(cursor.year + cursor.month // 12, cursor.month % 12 + 1, 1)
        else:
            cursor += timedelta(days=1)
    return out


def _cell(row: CoverageRow | None, symbol: str, period: date) -> str:
    if row is None:
        return f'<td style="background:{COLOURS["none"]}" title="{symbol} {period}: -"></td>'
    kind = "replaced" if row.status == "present" and row.replaced else row.status
    parts = [f"{symbol} {period}: {kind}"]
    if row.rows is not None:
        parts.append(f"{row.rows} rows")
    if row.replaced:
        parts.append(f"version {row.versions}")
    if row.detail:
        parts.append(row.detail[:200])
    title = escape(", ".join(parts), quote=True)
    return f'<td style="background:{COLOURS[kind]}" title="{title}"></td>'


def _dataset_section(dataset: str, rows: list[CoverageRow]) -> str:
    monthly = "/monthly/" in f"/{dataset}/"
    first = min(r.period for r in rows)
    last = max(r.period for r in rows)
    periods = _periods(first, last, monthly)
    by_symbol: dict[str, dict[date, CoverageRow]] = defaultdict(dict)
    for row in rows:
        by_symbol[row.symbol][row.period] = row
    label = "%Y-%m" if monthly else "%Y-%m-%d"
    head = "".join(f'<th class="day">{p.strftime(label)}</th>' for p in periods)
    body = []
    for symbol in sorted(by_symbol):
        cells = "".join(_cell(by_symbol[symbol].get(p), escape(symbol), p) for p in periods)
        body.append(f"<tr><th>{escape(symbol)}</th>{cells}</tr>")
    return (
        f"<h2>{escape(dataset)}</h2>"
        f'<table class="grid"><tr><th></th>{head}</tr>{"".join(body)}</table>'
    )


def _summary_table(rows: list[CoverageRow]) -> str:
    head = "".join(f"<th>{s}</th>" for s in ("dataset", "symbols", "periods", "present",
                                              "replaced", "missing", "corrupt", "drift",
                                              "pending", "failed", "rows"))  # fmt: skip
    lines = []
    for s in summarise(rows):
        values = [
            escape(s.dataset), len(s.symbols), sum(s.counts.values()), s.counts["present"],
            s.replaced, s.counts["missing"], s.counts["corrupt"], s.counts["drift"],
            s.counts["pending"], s.counts["failed"], f"{s.rows:,}",
        ]  # fmt: skip
        lines.append("<tr>" + "".join(f"<td>{v}</td>" for v in values) + "</tr>")
    return f'<table class="sum"><tr>{head}</tr>{"".join(lines)}</table>'


def render_html(rows: list[CoverageRow], *, title: str = "crypto-lakehouse coverage") -> str:
    """The whole report as one HTML string."""
    legend = "".join(
        f'<span><i style="background:{c};border:1px solid #999"></i>{k}</span>'
        for k, c in COLOURS.items()
    )
    datasets: dict[str, list[CoverageRow]] = defaultdict(list)
    for row in rows:
        datasets[row.dataset].append(row)
    sections = "".join(_dataset_section(d, datasets[d]) for d in sorted(datasets))
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1><p>Generated {made}. One row per symbol, one column per "
        "day (or month); hover a cell for details.</p>"
        f'<p class="legend">{legend}</p>{_summary_table(rows)}'
        f"{sections or '<p>No files in the manifest yet.</p>'}</body></html>"
    )


def write_html(rows: list[CoverageRow], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(rows), encoding="utf-8")
    return path
