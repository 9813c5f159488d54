"""What a cluster does at run time that no schema checks: sidecars that outlive Jobs,
NetworkPolicies that cut pods off the API server, HPAs without metrics, Argo CD hooks
that wait for objects created after them. Each test reads the rendered overlays."""

from __future__ import annotations

from pathlib import Path
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


# -- Argo CD hooks -----------------------------------------------------------------------

HOOK = "argocd.argoproj.io/hook"
WAVE = "argocd.argoproj.io/sync-wave"
PHASES = {"PreSync": 0, "Sync": 1, "PostSync": 2}


def _order(doc: dict[str, Any]) -> tuple[int, int]:
    """When Argo CD applies an object: (phase, wave). Plain objects are in the Sync phase."""
    annotations = doc["metadata"].get("annotations", {})
    return PHASES[annotations.get(HOOK, "Sync")], int(annotations.get(WAVE, "0"))


def _references(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every ConfigMap and Secret a pod spec needs to start."""
    refs: set[tuple[str, str]] = set()
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            refs.add(("ConfigMap", volume["configMap"]["name"]))
        if "secret" in volume:
            refs.add(("Secret", volume["secret"]["secretName"]))
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                refs.add(("ConfigMap", source["configMapRef"]["name"]))
            if "secretRef" in source:
                refs.add(("Secret", source["secretRef"]["name"]))
        for var in container.get("env", []):
            ref = var.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                refs.add(("ConfigMap", ref["configMapKeyRef"]["name"]))
            if "secretKeyRef" in ref:
                refs.add(("Secret", ref["secretKeyRef"]["name"]))
    return refs


def _makers(docs: list[dict[str, Any]], namespace: str) -> dict[tuple[str, str], dict]:
    """The object in the overlay that brings each ConfigMap or Secret into being: itself,
    an ExternalSecret that writes it, or the CloudNativePG Cluster that owns `<name>-app`."""
    makers: dict[tuple[str, str], dict] = {}
    for doc in docs:
        if doc["metadata"].get("namespace") != namespace:
            continue
        name = doc["metadata"]["name"]
        if doc["kind"] in {"ConfigMap", "Secret"}:
            makers[(doc["kind"], name)] = doc
        if doc["kind"] == "ExternalSecret":
            target = doc["spec"].get("target", {}).get("name", name)
            makers[("Secret", target)] = doc
        if doc["kind"] == "Cluster":
            makers[("Secret", f"{name}-app")] = doc
            makers[("Secret", f"{name}-superuser")] = doc
    return makers


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_hook_job_has_a_deadline_and_needs_nothing_created_later(
    rendered, overlay: str
) -> None:
    """A hook Job that waits for a ConfigMap or Secret Argo CD creates after it never
    starts, and without activeDeadlineSeconds it holds the sync forever."""
    docs = rendered[overlay]
    hooks = [d for d in docs if d["kind"] == "Job" and HOOK in d["metadata"].get("annotations", {})]
    assert {h["metadata"]["name"] for h in hooks} >= {"prefect-db-migrate", "minio-setup"}
    for job in hooks:
        name = job["metadata"]["name"]
        assert job["spec"].get("activeDeadlineSeconds", 0) > 0, f"{name}: no deadline"
        makers = _makers(docs, job["metadata"]["namespace"])
        for ref in _references(job["spec"]["template"]["spec"]):
            maker = makers.get(ref)
            if maker is None:
                continue  # made outside this overlay (deploy/README.md lists them)
            assert _order(maker) < _order(job), f"{name} needs {ref}, created later"


def test_migration_runs_before_the_prefect_servers(production) -> None:
    """The API servers start on a migrated database: their wave comes after the Job's."""
    docs = {(d["kind"], d["metadata"]["name"]): d for d in production}
    job = _order(docs[("Job", "prefect-db-migrate")])
    for name in ("prefect-server", "prefect-background-services"):
        assert _order(docs[("Deployment", name)]) > job, name


# -- autoscaling ---------------------------------------------------------------------------


def test_every_hpa_metric_has_a_source(rendered, terraform_releases) -> None:
    """An HPA whose metrics API has no provider never scales. Resource metrics come from
    metrics-server, which EKS does not install: Terraform does (and deploy/README.md says
    how for eksctl and kind). Pods/Object/External metrics would need an adapter."""
    providers = {"Resource": "helm_release.metrics_server"}
    for overlay, docs in rendered.items():
        hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
        assert hpas
        for hpa in hpas:
            metrics = hpa["spec"].get("metrics", [])
            assert metrics, f"{overlay} {hpa['metadata']['name']}: no metrics"
            for metric in metrics:
                provider = providers.get(metric["type"])
                assert provider, f"{hpa['metadata']['name']}: no source for {metric['type']}"
                assert provider in terraform_releases


# -- MinIO on instance-store NVMe ------------------------------------------------------------


def test_a_replaced_storage_node_gets_new_minio_volumes(production) -> None:
    """Claims pinned to a dead node are released (the reclaimer) and their volumes go
    with them (reclaimPolicy Delete): otherwise the MinIO pod stays Pending forever."""
    classes = {d["metadata"]["name"]: d for d in production if d["kind"] == "StorageClass"}
    assert classes["local-nvme"]["reclaimPolicy"] == "Delete"
    (reclaimer,) = [d for d in production if d["kind"] == "CronJob"]
    pod = reclaimer["spec"]["jobTemplate"]["spec"]["template"]
    assert pod["metadata"]["labels"]["kube-api-client"] == "true"
    script = next(
        d["data"]["reclaim.sh"]
        for d in production
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("minio-volume-reclaimer")
    )
    assert "delete pvc" in script and "get nodes" in script
    roles = {(d["kind"], d["metadata"]["name"]): d for d in production if "Role" in d["kind"]}
    verbs = {
        (resource, verb)
        for role in roles.values()
        if "reclaimer" in role["metadata"]["name"]
        for rule in role.get("rules", [])
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert {("persistentvolumeclaims", "delete"), ("pods", "delete"), ("nodes", "list")} <= verbs


def test_minio_setup_grants_the_lake_buckets_the_code_uses(production) -> None:
    """The s5cmd/flow-run user gets exactly the buckets the settings name by default."""
    import json

    from crypto_lakehouse.config import Settings

    setup = next(
        d
        for d in production
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("minio-setup")
    )
    policy = json.loads(setup["data"]["lakehouse-policy.json"])
    resources = {r for statement in policy["Statement"] for r in statement["Resource"]}
    fields = Settings.model_fields
    buckets = {fields[f"{layer}_bucket"].default for layer in ("bronze", "silver", "gold")}
    assert resources == {f"arn:aws:s3:::{b}{tail}" for b in buckets for tail in ("", "/*")}
    for bucket in buckets:
        assert f"lake/{bucket}" in setup["data"]["setup.sh"]


# -- Redis: the password stays out of the process table --------------------------------------


def test_redis_reads_its_password_from_stdin_not_argv(production, tmp_path) -> None:
    """Run the manifest's own start command with Debian's redis-server (on 127.0.0.1 and a
    free port): clients need the password, and /proc/PID/cmdline does not show it."""
    import os
    import shutil
    import signal
    import subprocess
    import time

    from crypto_lakehouse.stack.process import free_port

    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not server or not cli:
        pytest.fail("redis-server not found: run `make setup` (Debian package redis-server)")
    redis = next(
        c
        for d in production
        if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "prefect-redis"
        for c in d["spec"]["template"]["spec"]["containers"]
        if c["name"] == "redis"
    )
    env = {e["name"]: e for e in redis["env"]}
    assert "secretKeyRef" in env["REDIS_PASSWORD"]["valueFrom"]
    assert redis["command"] == ["sh", "-c"]
    (script,) = redis["args"]
    port = free_port()
    local = f" --port {port} --bind 127.0.0.1 --dir {tmp_path} --save ''"
    password = "s3cret" + os.urandom(4).hex()
    first, *rest = script.splitlines(keepends=True)  # the command, then its here-doc
    proc = subprocess.Popen(
        ["sh", "-c", first.rstrip("\n") + local + "\n" + "".join(rest)],
        env={**os.environ, "REDIS_PASSWORD": password},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # whatever the script starts is stopped with it
    )
    try:

        def ping(*auth: str) -> str:
            done = subprocess.run(
                [cli, "-p", str(port), "--no-auth-warning", *auth, "ping"],
                capture_output=True,
                text=True,
                timeout=5,
            )
            return done.stdout.strip()

        deadline = time.monotonic() + 10
        while ping("-a", password) != "PONG":
            assert time.monotonic() < deadline and proc.poll() is None, "redis did not start"
            time.sleep(0.1)
        assert "NOAUTH" in ping()
        # `exec` made redis-server the shell's own PID (PID 1 in the pod, so it gets the
        # pod's SIGTERM): its arguments are what ps shows.
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "redis-server"
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
        assert password not in cmdline
        proc.terminate()  # redis-server itself: a clean shutdown
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_executor_traces_reach_jaeger(production) -> None:
    """The executor's OTLP endpoint is Jaeger's OTLP/HTTP port, and policies allow it."""
    from urllib.parse import urlsplit

    config = next(
        d
        for d in production
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("s5cmd-executor-env")
    )
    url = urlsplit(config["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"])
    service, namespace = url.hostname.split(".")[:2]
    (jaeger,) = [
        d
        for d in production
        if d["kind"] == "Service"
        and d["metadata"]["name"] == service
        and d["metadata"]["namespace"] == namespace
    ]
    ports = {p["port"]: p["name"] for p in jaeger["spec"]["ports"]}
    assert ports[url.port] == "http-otlp"
    egress = [
        rule
        for p in _policies(production, "s5cmd-prod")
        if p["metadata"]["name"] == "s5cmd-executor"
        for rule in p["spec"]["egress"]
        if any(
            peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
            == "jaeger"
            for peer in rule["to"]
        )
    ]
    assert [port["port"] for rule in egress for port in rule["ports"]] == [url.port]
