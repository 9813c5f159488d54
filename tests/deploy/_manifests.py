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
WORKLOADS = {"Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob"}


def template_of(doc: dict[str, Any]) -> dict[str, Any]:
    """A workload's pod template (a CronJob's sits inside its job template)."""
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]
    return doc["spec"]["template"]


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
            specs[f"{doc['kind']}/{doc['metadata']['name']}"] = template_of(doc)["spec"]
        name = doc["metadata"]["name"]
        if doc["kind"] == "ConfigMap" and name.startswith("prefect-job-templates"):
            for key, text in doc["data"].items():
                manifest = json.loads(text)["job_configuration"]["job_manifest"]
                specs[f"job-template/{key}"] = manifest["spec"]["template"]["spec"]
    return specs


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def pod_templates(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every pod the overlay can create, with where it runs and how it is labelled:
    {"where", "kind", "namespace", "labels", "annotations", "spec"}. Flow-run job templates
    count as Jobs in their template's default namespace."""
    out = []
    for doc in docs:
        kind, meta = doc["kind"], doc["metadata"]
        if kind in WORKLOADS:
            template = template_of(doc)
            runs_as = "Job" if kind == "CronJob" else kind
            out.append(_pod(f"{kind}/{meta['name']}", runs_as, meta.get("namespace"), template))
        if kind == "ConfigMap" and meta["name"].startswith("prefect-job-templates"):
            for key, text in doc["data"].items():
                template = json.loads(text)
                namespace = template["variables"]["properties"]["namespace"]["default"]
                pod = template["job_configuration"]["job_manifest"]["spec"]["template"]
                out.append(_pod(f"job-template/{key}", "Job", namespace, pod))
    return out


def _pod(where: str, kind: str, namespace: str | None, template: dict[str, Any]) -> dict[str, Any]:
    meta = template.get("metadata", {})
    return {
        "where": where,
        "kind": kind,
        "namespace": namespace,
        "labels": meta.get("labels", {}),
        "annotations": meta.get("annotations", {}),
        "spec": template["spec"],
    }


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions In/Exists) matches `labels`."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        present = expr["key"] in labels
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
        if expr["operator"] == "Exists" and not present:
            return False
        if expr["operator"] == "DoesNotExist" and present:
            return False
        if expr["operator"] == "NotIn" and labels.get(expr["key"]) in expr["values"]:
            return False
    return True
