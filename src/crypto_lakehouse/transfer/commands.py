"""Writing s5cmd `run` files: quoting, per-key lines, and wildcard lines that cover many keys.

How s5cmd reads a run file (command/run.go, s5cmd v2.3): one command per line (split on
`\\n`), surrounding whitespace trimmed, lines starting with `#` skipped, then each line is
split into words by go-shellquote (POSIX shell rules, no expansion). So a key wrapped in
single quotes, with each `'` written as `'"'"'`, reaches s5cmd byte for byte, whatever it
holds: spaces, `"`, `#`, `%`, `$`, backslashes, unicode, a leading `-`. Only `\\n` cannot
be expressed.

s5cmd then treats `*` and `?` in a URL as globs; `cp --raw` switches that off, so every
per-key line carries `--raw`. Other s5cmd limits found by testing: a URL containing
`://` twice is rejected, a leading `/` in a key is stripped, a trailing `/` makes a
key a prefix (folder markers cannot be copied), and wildcard copies rebuild
destination paths with Go's `path.Join`, which cleans `a//b`, `./` and a trailing `/`.
Keys that would be changed that way never go through a wildcard line.

Why wildcard lines at all: a per-key download line makes s5cmd send a HEAD before each
GET, and every run-file line costs s5cmd about 0.7 ms of CPU; one `cp 's3://b/p/*' dir/`
line lists once and streams. The planner therefore covers runs of consecutive keys with
the shortest prefixes that match nothing else (`cover_prefixes`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

GLOB_CHARS = "*?"
MAX_NAME_BYTES = 255  # longest file name component on common Linux filesystems


def quote(word: str) -> str:
    """Quote `word` for one run-file line (go-shellquote reads it back unchanged).

    Raises ValueError for a newline, which a line-based file cannot carry.
    """
    if "\n" in word:
        raise ValueError("a newline cannot be written into an s5cmd run file")
    return "'" + word.replace("'", "'\"'\"'") + "'"


def s3_url(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def unsupported_reason(key: str) -> str | None:
    """Why s5cmd cannot address `key` at all (None when it can)."""
    if "\n" in key:
        return "key contains a newline, which an s5cmd run file cannot express"
    if "://" in key:
        return "key contains '://', which s5cmd cannot parse in a URL"
    if key.startswith("/"):
        return "key starts with '/', which s5cmd strips"
    if key.endswith("/"):
        return "key ends with '/' (a folder marker), which s5cmd treats as a prefix"
    return None


def is_clean_path(rest: str) -> bool:
    """True when `rest` survives Go's path.Join and a local filesystem unchanged.

    Required for keys handled by wildcard lines (their destination path is rebuilt
    from the relative path) and for files staged under their own name.
    """
    if not rest or rest.startswith("/") or rest.endswith("/"):
        return False
    if posixpath.normpath(rest) != rest or "\r" in rest or "\x00" in rest:
        return False
    return all(len(part.encode()) <= MAX_NAME_BYTES for part in rest.split("/"))


def has_glob(text: str) -> bool:
    return any(ch in text for ch in GLOB_CHARS)


def _common_prefix_len(a: str, b: str) -> int:
    limit = min(len(a), len(b))
    i = 0
    while i < limit and a[i] == b[i]:
        i += 1
    return i


def cover_prefixes(
    members: Sequence[str], before: str | None, after: str | None, floor: str
) -> Iterator[tuple[str | None, list[int]]]:
    """Cover sorted `members` with prefixes that match no listed key outside them.

    `members` is a run of consecutive keys of a sorted listing; `before`/`after` are the
    listed keys just outside the run (None at the ends). Every prefix starts with
    `floor` (the listing's own prefix). Yields `(prefix, member indexes)`; a prefix
    with glob characters is never yielded: those members come back one at a time as
    `(None, [i])` for the caller to write as per-key lines. The empty prefix is a real
    cover (`s3://bucket/*`): a whole bucket listed from its root.
    """
    i = 0
    n = len(members)
    while i < n:
        key = members[i]
        need = len(floor)
        if before is not None:
            need = max(need, _common_prefix_len(key, before) + 1)
        if after is not None:
            need = max(need, _common_prefix_len(key, after) + 1)
        prefix = key[:need]
        if len(prefix) < need or has_glob(prefix):
            # `key` is itself a prefix of a neighbour, or a glob sits in the prefix.
            yield None, [i]
            i += 1
            continue
        j = i + 1
        while j < n and members[j].startswith(prefix):
            j += 1
        yield prefix, list(range(i, j))
        i = j


class CommandFile:
    """A run file written line by line (never held in memory), closed before s5cmd reads it."""

    def __init__(self, path: Path, *, part_size_mib: int, concurrency: int = 5) -> None:
        self.path = path
        self.part_flags = f"--part-size {part_size_mib} --concurrency {concurrency}"
        self.lines = 0
        self._handle: TextIO | None = open(path, "w", encoding="utf-8", newline="\n")  # noqa: SIM115

    def copy(self, source: str, dest: str, *, raw: bool = True) -> None:
        """One `cp` line; `raw` turns off glob matching (always, except for cover lines)."""
        flags = "--raw " if raw else ""
        self._write(f"cp {flags}{self.part_flags} {quote(source)} {quote(dest)}")

    def remove(self, target: str) -> None:
        self._write(f"rm --raw {quote(target)}")

    def _write(self, line: str) -> None:
        if self._handle is None:
            raise RuntimeError("command file already closed")
        self._handle.write(line + "\n")
        self.lines += 1

    def close(self) -> Path:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        return self.path

    def __enter__(self) -> CommandFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def expected_command(source: str, dest: str) -> str:
    """The `command` text s5cmd puts in a JSON error line for one object copy.

    s5cmd joins the command name and its arguments with spaces (flags are dropped),
    so `cp SRC DST` identifies the object without ambiguity as long as neither URL
    contains `://` twice (those keys are refused earlier).
    """
    return f"cp {source} {dest}"
