"""Schemathesis hooks for the fuzz test (loaded through SCHEMATHESIS_HOOKS).

The fuzzed replica runs nothing, so every operation stays pending and a long-poll
(`?wait=` up to 60 s) would hold the fuzzer for its whole wait. The value is capped here;
its range is still checked by the fuzzer's own out-of-range cases and by
test_validation.py.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Every phase's requests pass here (the coverage phase skips the `map_*` hooks)."""
    query = case.query
    if not query or "wait" not in query:
        return
    try:
        seconds = float(query["wait"])
    except (TypeError, ValueError):
        return
    if 0.2 < seconds <= 60:
        query["wait"] = 0.2
