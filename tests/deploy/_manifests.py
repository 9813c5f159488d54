"""Paths and helpers shared by the deploy tests (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("local", "production")
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet"}


def build(kubectl: str, path: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def pod_specs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every pod spec the overlay can create: workloads and the flow-run job templates."""
    specs = {}
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            specs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc["spec"]["template"]["spec"]
        name = doc["metadata"]["name"]
        if doc["kind"] == "ConfigMap" and name.startswith("prefect-job-templates"):
            for key, text in doc["data"].items():
                manifest = json.loads(text)["job_configuration"]["job_manifest"]
                specs[f"job-template/{key}"] = manifest["spec"]["template"]["spec"]
    return specs


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]
