"""What a cluster does at run time that no schema checks: sidecars that outlive Jobs,
NetworkPolicies that cut pods off the API server, HPAs without metrics, Argo CD hooks
that wait for objects created after them. Each test reads the rendered overlays."""

from __future__ import annotations

from typing import Any

import pytest
from _manifests import OVERLAYS, pod_templates, selects

NATIVE = "sidecar.istio.io/nativeSidecar"
INJECT = "sidecar.istio.io/inject"
API_SERVER_PORTS = {443, 6443}  # EKS, kind/kubeadm


def _injected_namespaces(docs: list[dict[str, Any]]) -> set[str]:
    return {
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == "Namespace"
        and d["metadata"].get("labels", {}).get("istio-injection") == "enabled"
    }


def _opted_out(pod: dict[str, Any]) -> bool:
    return "false" in (pod["labels"].get(INJECT), pod["annotations"].get(INJECT))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_job_under_injection_uses_a_native_sidecar(rendered, overlay: str) -> None:
    """A classic istio-proxy container never exits, so a Job's pod never completes: every
    Job (and flow-run job template) in an injected namespace must either stay out of the
    mesh or ask for the proxy as a native sidecar, which stops with the Job's container."""
    docs = rendered[overlay]
    meshed = _injected_namespaces(docs)
    assert meshed
    jobs = [p for p in pod_templates(docs) if p["kind"] == "Job" and p["namespace"] in meshed]
    assert any(p["where"].startswith("job-template/") for p in jobs)
    for pod in jobs:
        if _opted_out(pod):
            continue
        assert pod["annotations"].get(NATIVE) == "true", f"{overlay} {pod['where']}"


def _token_mounted(pod: dict[str, Any], accounts: dict[tuple[str, str], dict[str, Any]]) -> bool:
    spec = pod["spec"]
    if "automountServiceAccountToken" in spec:
        return bool(spec["automountServiceAccountToken"])
    account = accounts.get((pod["namespace"], spec.get("serviceAccountName", "default")), {})
    return account.get("automountServiceAccountToken", True)


def _cnpg_instances(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """CloudNativePG's instance pods, as the operator makes them (its service account, a
    mounted token: the instance manager watches its Cluster through the API)."""
    return [
        {
            "where": f"Cluster/{d['metadata']['name']}",
            "namespace": d["metadata"]["namespace"],
            "labels": {
                **d["spec"].get("inheritedMetadata", {}).get("labels", {}),
                "cnpg.io/cluster": d["metadata"]["name"],
            },
            "spec": {"automountServiceAccountToken": True},
        }
        for d in docs
        if d["kind"] == "Cluster"
    ]


def _policies(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    return [
        d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["namespace"] == namespace
    ]


def _egress_anywhere_ports(policy: dict[str, Any]) -> set[int]:
    """Ports a policy lets its pods reach at any address (the API server has no pod labels)."""
    return {
        port["port"]
        for rule in policy["spec"].get("egress", [])
        if any("ipBlock" in peer for peer in rule.get("to", []))
        for port in rule.get("ports", [])
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_with_an_api_token_may_reach_the_api_server(rendered, overlay: str) -> None:
    """Under default-deny, a pod that talks to the Kubernetes API (workers starting Jobs,
    Prometheus discovering targets, CloudNativePG instances) needs egress to the API
    server on 443 (EKS) and 6443 (kind, kubeadm); policies see the endpoint's port, not
    the `kubernetes` Service's 443."""
    docs = rendered[overlay]
    accounts = {
        (d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for d in docs
        if d["kind"] == "ServiceAccount"
    }
    pods = [p for p in pod_templates(docs) if _token_mounted(p, accounts)] + _cnpg_instances(docs)
    wheres = {p["where"] for p in pods}
    assert {"Deployment/prefect-worker-general", "StatefulSet/prometheus"} <= wheres
    assert "Cluster/prefect-postgres" in wheres
    for pod in pods:
        allowed: set[int] = set()
        for policy in _policies(docs, pod["namespace"]):
            if selects(policy["spec"]["podSelector"], pod["labels"]):
                allowed |= _egress_anywhere_ports(policy)
        assert allowed >= API_SERVER_PORTS, f"{overlay} {pod['where']}: {sorted(allowed)}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_policy_namespace_has_an_api_server_egress_policy(rendered, overlay: str) -> None:
    docs = rendered[overlay]
    namespaces = {d["metadata"]["namespace"] for d in docs if d["kind"] == "NetworkPolicy"}
    assert len(namespaces) == 4
    for namespace in namespaces:
        named = {p["metadata"]["name"]: p for p in _policies(docs, namespace)}
        assert _egress_anywhere_ports(named["allow-kube-apiserver"]) == API_SERVER_PORTS


def test_cloudnativepg_operator_reaches_status_and_postgres_ports(production) -> None:
    """CloudNativePG's NetworkPolicy sample: the operator needs 8000 (instance status) and
    5432 on every instance."""
    (policy,) = [
        p
        for p in _policies(production, "prefect-prod")
        if p["spec"]["podSelector"] == {"matchLabels": {"cnpg.io/cluster": "prefect-postgres"}}
    ]
    from_operator = {
        port["port"]
        for rule in policy["spec"]["ingress"]
        for peer in rule["from"]
        if peer.get("namespaceSelector", {})
        .get("matchLabels", {})
        .get("kubernetes.io/metadata.name")
        == "cnpg-system"
        for port in rule["ports"]
    }
    assert from_operator == {8000, 5432}
