"""Series names used by a PromQL expression (enough of PromQL for rules and dashboards).

Strings, label matchers, ranges, grouping label lists and Grafana variables are removed
first; what remains is operators, numbers, function calls (an identifier followed by `(`),
keywords and series names.
"""

from __future__ import annotations

import re

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GRAFANA_VARS = re.compile(r"\$\{[^}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_TOKENS = re.compile(
    r"(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+|ms|[smhdwy])*)"
    r"|(?P<ident>[A-Za-z_:][\w:]*)(?P<call>\s*\()?"
)
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
}


def series_names(expr: str) -> set[str]:
    text = _STRINGS.sub(" ", expr)
    text = _GRAFANA_VARS.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names: set[str] = set()
    for match in _TOKENS.finditer(text):
        ident = match.group("ident")
        if ident is None or match.group("call") or ident.lower() in _KEYWORDS:
            continue
        names.add(ident)
    return names
