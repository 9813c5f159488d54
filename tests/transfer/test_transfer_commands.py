"""Run-file quoting and wildcard covers, checked against the real s5cmd parser (`--dry-run`)."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr
from transfer_helpers import SPECIAL_NAMES

from crypto_lakehouse.storage import Endpoint
from crypto_lakehouse.transfer.binary import Invocation, s5cmd_binary
from crypto_lakehouse.transfer.commands import (
    CommandFile,
    cover_prefixes,
    is_clean_path,
    quote,
    unsupported_reason,
)
from crypto_lakehouse.transfer.lines import file_dir_conflicts

NASTY = [
    *SPECIAL_NAMES,
    "back\\slash",
    "double//slash",
    "dot/./seg",
    "'",
    "''",
    '"\'"',
    "line\rbreak",
    "~tilde!bang(paren)<lt>",
]


def _dry_run(lines_file: Path) -> list[dict]:
    """Ask the real s5cmd how it parsed each line (no network: --dry-run)."""
    endpoint = Endpoint(
        url="http://127.0.0.1:9", access_key=SecretStr("k"), secret_key=SecretStr("s")
    )
    inv = Invocation(endpoint)
    proc = subprocess.run(
        inv.argv("--dry-run", "run", str(lines_file)),
        env=inv.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return [p for p in lines if "source" in p]  # not the retries of the unreachable endpoint


def test_binary_is_the_native_s5cmd_not_the_wrapper() -> None:
    path = Path(s5cmd_binary())
    assert path.read_bytes()[:4] == b"\x7fELF"
    assert path.parent.name == "bin"


def test_every_quoted_key_reaches_s5cmd_byte_for_byte(tmp_path: Path) -> None:
    local = tmp_path / "upload.bin"
    local.write_bytes(b"x")
    keys = [f"p/{name}" for name in NASTY]
    run_file = tmp_path / "cmds.run"
    with CommandFile(run_file, part_size_mib=50) as cf:
        for key in keys:
            cf.copy(f"s3://bkt/{key}", str(tmp_path / "dl" / "1"))  # download line
            cf.copy(str(local), f"s3://bkt/{key}")  # upload line
    parsed = _dry_run(run_file)
    sources = {p["source"] for p in parsed}
    destinations = {p["destination"] for p in parsed}
    for key in keys:
        assert f"s3://bkt/{key}" in sources, key
        assert f"s3://bkt/{key}" in destinations, key


def test_quote_refuses_newlines() -> None:
    with pytest.raises(ValueError):
        quote("a\nb")
    assert unsupported_reason("a\nb")
    assert unsupported_reason("a://b")
    assert unsupported_reason("/leading")
    assert unsupported_reason("folder/")
    assert unsupported_reason("fine key*?#%") is None


@pytest.mark.parametrize(
    ("rest", "clean"),
    [
        ("a/b.zip", True),
        ("-dash/x y*?.bin", True),
        ("a//b", False),
        ("a/./b", False),
        ("a/../b", False),
        ("dir/", False),
        ("", False),
        ("/abs", False),
        ("x" * 256, False),
        ("x" * 255, True),
    ],
)
def test_clean_paths_are_the_ones_go_path_join_leaves_alone(rest: str, clean: bool) -> None:
    assert is_clean_path(rest) is clean


def test_covers_match_exactly_the_members() -> None:
    rng = random.Random(7)
    alphabet = "ab/-_.* ?"
    listing = sorted(
        {"p/" + "".join(rng.choices(alphabet, k=rng.randint(1, 7))) for _ in range(400)}
    )
    members = {k for k in listing if rng.random() < 0.7}
    # Runs of consecutive members, as the planner hands them over.
    run: list[int] = []
    runs: list[list[int]] = []
    for i, key in enumerate(listing):
        if key in members:
            run.append(i)
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    covered: set[str] = set()
    for run in runs:
        keys = [listing[i] for i in run]
        before = listing[run[0] - 1] if run[0] > 0 else None
        after = listing[run[-1] + 1] if run[-1] + 1 < len(listing) else None
        for prefix, idxs in cover_prefixes(keys, before, after, "p/"):
            chosen = {keys[i] for i in idxs}
            if prefix is not None:
                assert "*" not in prefix and "?" not in prefix
                matched = {k for k in listing if k.startswith(prefix)}
                assert matched == chosen, prefix
            else:
                assert len(chosen) == 1
            assert not (covered & chosen)
            covered |= chosen
    assert covered == members


def test_cover_of_a_whole_listing_is_one_wildcard() -> None:
    keys = [f"data/f{i:04d}.zip" for i in range(2000)]
    assert list(cover_prefixes(keys, None, None, "data/")) == [("data/", list(range(2000)))]


def test_a_key_that_prefixes_its_neighbour_is_copied_alone() -> None:
    keys = ["p/a", "p/ab"]
    covers = list(cover_prefixes(keys, None, "p/abc", "p/"))
    assert (None, [0]) in covers
    assert all(prefix != "p/a" for prefix, _ in covers)


def test_a_whole_bucket_from_its_root_is_one_wildcard() -> None:
    # Per-key lines would cost a HEAD before every GET (964 objects: 3.42 s against 2.28 s).
    keys = [f"data/f{i:04d}.zip" for i in range(50)] + ["z/last"]
    assert list(cover_prefixes(keys, None, None, "")) == [("", list(range(51)))]


def test_file_dir_conflicts_are_detected() -> None:
    assert file_dir_conflicts({0: "a/b", 1: "a/b/c", 2: "a/bc"}) == {0}


def test_an_empty_key_selection_copies_nothing_without_any_request(tmp_path: Path) -> None:
    from crypto_lakehouse.storage import S3Url
    from crypto_lakehouse.transfer import EngineOptions, TransferEngine, TransferRequest

    dead = Endpoint(url="http://127.0.0.1:9", anonymous=True)
    request = TransferRequest(
        source=dead, source_url=S3Url("src", "p/"), dest=dead, dest_url=S3Url("dst", "q/"), keys=[]
    )
    report = TransferEngine(EngineOptions(staging_root=tmp_path)).run(request)
    assert report.summary.objects == 0 and report.summary.ok
