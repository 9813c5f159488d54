"""The Kubernetes manifests, rendered by kustomize and checked offline.

Core objects go through kubernetes-validate's bundled OpenAPI schemas (strict: unknown
fields fail). Custom resources (CloudNativePG, Istio) ship no schema offline, so the fields
that matter are asserted here.
"""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate
import pytest
from _manifests import K8S, OVERLAYS, containers, find, pod_specs

CORE_GROUPS = {"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2", "storage.k8s.io/v1"}
CORE_GROUPS |= {"networking.k8s.io/v1", "rbac.authorization.k8s.io/v1"}
NS_LABEL = "kubernetes.io/metadata.name"
APP_NAMESPACES = {"prefect-prod", "minio-prod", "s5cmd-prod"}
NAMESPACES = APP_NAMESPACES | {"monitoring"}
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|DATABASE_URL|DOCKET_URL")


@pytest.mark.parametrize("version", ["1.28.0", kubernetes_validate.latest_version()])
def test_core_objects_pass_strict_schema(rendered, version: str) -> None:
    """Both overlays' core objects (each distinct object once) against the schemas."""
    unique = {}
    for overlay, docs in rendered.items():
        for doc in docs:
            if doc["apiVersion"] in CORE_GROUPS:
                unique.setdefault(json.dumps(doc, sort_keys=True), (overlay, doc))
    assert len(unique) > 80
    for overlay, doc in unique.values():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_only_known_api_groups(rendered, overlay: str) -> None:
    custom = {"postgresql.cnpg.io/v1", "security.istio.io/v1", "networking.istio.io/v1"}
    if overlay == "production":  # secrets from AWS Secrets Manager
        custom.add("external-secrets.io/v1beta1")
    groups = {d["apiVersion"] for d in rendered[overlay]}
    assert groups <= CORE_GROUPS | custom, groups - CORE_GROUPS - custom


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespaces_enforce_restricted(rendered, overlay: str) -> None:
    namespaces = {d["metadata"]["name"]: d for d in rendered[overlay] if d["kind"] == "Namespace"}
    assert set(namespaces) == NAMESPACES
    for name, ns in namespaces.items():
        labels = ns["metadata"]["labels"]
        for mode in ("enforce", "audit", "warn"):
            assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted", name
        assert (labels.get("istio-injection") == "enabled") == (name in APP_NAMESPACES)
    # Beside the ingress gateway's pods: its Gateway, its policy, its TLS certificate.
    at_gateway = {"Gateway", "AuthorizationPolicy", "ExternalSecret"}
    for doc in rendered[overlay]:
        namespace = doc["metadata"].get("namespace")
        if namespace == "istio-system" and doc["kind"] in at_gateway:
            continue
        assert namespace is None or namespace in NAMESPACES, doc["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_passes_restricted_pod_security(rendered, overlay: str) -> None:
    """The `restricted` profile's checks, plus our own: read-only root and a seccomp profile."""
    specs = pod_specs(rendered[overlay])
    assert len(specs) >= 12
    for where, spec in specs.items():
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, where
        assert pod.get("runAsUser", 1) != 0, where
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        for volume in spec.get("volumes", []):
            assert "hostPath" not in volume, where
        for container in containers(spec):
            ctx = container.get("securityContext", {})
            name = f"{where}/{container['name']}"
            assert ctx.get("allowPrivilegeEscalation") is False, name
            assert ctx.get("capabilities", {}).get("drop") == ["ALL"], name
            assert not ctx.get("capabilities", {}).get("add"), name
            assert ctx.get("privileged", False) is False, name
            assert ctx.get("runAsUser", 1) != 0, name
            assert ctx.get("readOnlyRootFilesystem") is True, name
            assert "fsGroup" not in ctx, f"{name}: fsGroup is a pod field"
            assert not any(p.get("hostPort") for p in container.get("ports", [])), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(rendered, overlay: str) -> None:
    for where, spec in pod_specs(rendered[overlay]).items():
        for container in containers(spec):
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), (
                    f"{where}/{container['name']}: {kind}"
                )
    for cluster in [d for d in rendered[overlay] if d["kind"] == "Cluster"]:
        assert {"requests", "limits"} <= set(cluster["spec"]["resources"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_values_in_git(rendered, overlay: str) -> None:
    docs = rendered[overlay]
    assert not [d for d in docs if d["kind"] == "Secret"], "Secrets are created out of band"
    for where, spec in pod_specs(docs).items():
        for container in containers(spec):
            env = container.get("env", [])
            if isinstance(env, str):  # a job template's "{{ env }}" placeholder
                continue
            for var in env:
                if SECRET_WORDS.search(var["name"]):
                    assert "value" not in var, f"{where}: {var['name']} must use secretKeyRef"
                    assert "secretKeyRef" in var["valueFrom"], where


def test_prefect_server_is_ha_with_redis(production) -> None:
    api = find(production, "Deployment", "prefect-server")
    assert api["spec"]["replicas"] == 3
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert "--no-services" in container["args"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/api/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/ready"
    services = find(production, "Deployment", "prefect-background-services")
    args = services["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["prefect", "server", "services", "start"]
    env = next(d for d in production if d["metadata"]["name"].startswith("prefect-server-env"))
    assert env["data"]["PREFECT_MESSAGING_BROKER"] == "prefect_redis.messaging"
    assert env["data"]["PREFECT_MESSAGING_CACHE"] == "prefect_redis.messaging"
    assert env["data"]["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"] == "prefect_redis.lease_storage"
    assert env["data"]["PREFECT_SERVER_DATABASE_MIGRATE_ON_START"] == "false"
    assert find(production, "StatefulSet", "prefect-redis")
    assert env["data"]["PREFECT_SERVER_REGISTER_BLOCKS_ON_START"] == "false"
    migrate = find(production, "Job", "prefect-db-migrate")["spec"]["template"]["spec"]
    assert migrate["containers"][0]["args"] == ["sh", "/etc/prefect-migrate/migrate.sh"]
    script = next(
        d
        for d in production
        if d["metadata"]["name"].startswith("prefect-db-migrate-")
        or (d["kind"] == "ConfigMap" and d["metadata"]["name"] == "prefect-db-migrate")
    )
    assert "prefect server database upgrade --yes" in script["data"]["migrate.sh"]
    hpa = find(production, "HorizontalPodAutoscaler", "prefect-server")
    assert hpa["spec"]["minReplicas"] == 3
    assert find(production, "PodDisruptionBudget", "prefect-server")["spec"]["minAvailable"] == 2


def test_prefect_probe_routes_exist_on_a_real_server(production, prefect_server) -> None:
    """The probe paths in the manifests answer 200 on a running Prefect server."""
    import httpx

    api = find(production, "Deployment", "prefect-server")["spec"]["template"]["spec"]
    paths = {
        api["containers"][0][probe]["httpGet"]["path"]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert paths == {"/api/health", "/api/ready"}
    for path in paths:
        response = httpx.get(prefect_server.url + path, timeout=10)
        assert response.status_code == 200, path


def test_workers_use_kubernetes_pools_with_the_design_placement(production) -> None:
    general = find(production, "Deployment", "prefect-worker-general")["spec"]["template"]["spec"]
    s5cmd = find(production, "Deployment", "prefect-worker-s5cmd")["spec"]["template"]["spec"]
    for spec, pool in ((general, "crypto-data-pool"), (s5cmd, "s5cmd-optimized-pool")):
        args = spec["containers"][0]["args"]
        assert args[args.index("--pool") + 1] == pool
        assert args[args.index("--type") + 1] == "kubernetes"
    assert general["nodeSelector"] == {"workload": "general"}
    assert s5cmd["nodeSelector"] == {"workload": "data-intensive"}
    assert s5cmd["tolerations"] == [
        {"key": "workload", "operator": "Equal", "value": "data-intensive", "effect": "NoSchedule"}
    ]
    templates = pod_specs(production)
    assert templates["job-template/s5cmd-optimized-pool.json"]["nodeSelector"] == {
        "workload": "data-intensive"
    }
    role = find(production, "Role", "prefect-worker")
    assert {"apiGroups": ["batch"], "resources": ["jobs"]}.items() <= role["rules"][0].items()


def test_job_templates_keep_prefect_placeholders() -> None:
    """Prefect fills `{{ name }}`, `{{ env }}` ... from the template's variables."""
    for path in (K8S / "base" / "prefect" / "job-templates").glob("*.json"):
        template = json.loads(path.read_text())
        config = template["job_configuration"]
        for key in ("command", "env", "labels", "name", "namespace"):
            placeholder = config[key].strip("{} ")
            assert placeholder in template["variables"]["properties"], f"{path.name}: {key}"
        local = json.loads((K8S / "overlays" / "local" / "job-templates" / path.name).read_text())
        local_spec = local["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
        base_spec = config["job_manifest"]["spec"]["template"]["spec"]
        assert local_spec["securityContext"] == base_spec["securityContext"]
        assert "nodeSelector" not in local_spec


def test_minio_distributed_erasure_coded_and_sized_for_its_nodes(production) -> None:
    minio = find(production, "StatefulSet", "minio")
    spec = minio["spec"]
    assert spec["replicas"] == 4
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == 1000
    container = pod["containers"][0]
    assert re.fullmatch(
        r"quay\.io/minio/minio:RELEASE\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z", container["image"]
    )
    assert container["args"][1].endswith(":9000/data{1...4}")
    assert "minio-{0...3}" in container["args"][1]
    env = {e["name"]: e for e in container["env"]}
    assert env["MINIO_STORAGE_CLASS_STANDARD"]["value"] == "EC:4"
    parity_mentions = [d for d in production if "EC:" in json.dumps(d)]
    assert len(parity_mentions) == 1, "erasure-coding parity stated once"
    assert container["livenessProbe"]["httpGet"]["path"] == "/minio/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/minio/health/ready"
    # Unready while any drive carries MinIO's healing tracker: the PDB then blocks evictions.
    probe = " ".join(container["readinessProbe"]["exec"]["command"])
    mounts = {m["mountPath"] for m in container["volumeMounts"]} - {"/tmp"}
    assert mounts == {"/data1", "/data2", "/data3", "/data4"}
    assert all(m in probe for m in mounts) and "/.minio.sys/buckets/.healing.bin" in probe
    claims = spec["volumeClaimTemplates"]
    assert len(claims) == 4
    gib = {"Gi": 1, "Ti": 1024}
    per_pod = sum(
        int(c["spec"]["resources"]["requests"]["storage"][:-2])
        * gib[c["spec"]["resources"]["requests"]["storage"][-2:]]
        for c in claims
    )
    i3_xlarge_nvme_gib = 950e9 / 2**30  # one 950 GB NVMe per storage node
    assert per_pod <= i3_xlarge_nvme_gib * 0.95
    assert pod["nodeSelector"] == {"workload": "storage"}
    assert find(production, "Service", "minio-console")["spec"]["ports"][0]["port"] == 9001
    assert find(production, "Service", "minio-headless")["spec"]["clusterIP"] == "None"


def test_executor_replicas_probes_staging_and_secret_refs(production) -> None:
    executor = find(production, "Deployment", "s5cmd-executor")
    assert executor["spec"]["replicas"] == 3
    pod = executor["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["ports"] == [{"name": "http", "containerPort": 8080}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert set(refs) == {
        "EXECUTOR_DATABASE_URL",
        "EXECUTOR_API_TOKEN",
        "MINIO_ACCESS_KEY",
        "MINIO_SECRET_KEY",
    }
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    config = next(d for d in production if d["metadata"]["name"].startswith("s5cmd-executor-env"))
    assert mounts["staging"] == config["data"]["STAGING_DIR"]
    assert pod["nodeSelector"] == {"workload": "data-intensive"}
    annotations = executor["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"


def test_executor_probe_routes_exist_in_the_service(production, tmp_path) -> None:
    """The paths the manifests probe and scrape are routes of the real executor app."""
    from crypto_lakehouse.config import Settings
    from crypto_lakehouse.executor.app import create_app

    settings = Settings(
        executor_api_token="t" * 40,
        executor_database_url=f"sqlite:///{tmp_path / 'ops.db'}",
        lake_endpoint="http://127.0.0.1:9",
        lake_access_key="a",
        lake_secret_key="b",
    )
    routes = set(create_app(settings).openapi()["paths"])
    pod = find(production, "Deployment", "s5cmd-executor")["spec"]["template"]
    container = pod["spec"]["containers"][0]
    used = {
        container["livenessProbe"]["httpGet"]["path"],
        container["readinessProbe"]["httpGet"]["path"],
        pod["metadata"]["annotations"]["prometheus.io/path"],
    }
    assert used == {"/health", "/ready", "/metrics"}
    assert used <= routes


def _policies(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    return [
        d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["namespace"] == namespace
    ]


@pytest.mark.parametrize("namespace", sorted(NAMESPACES))
def test_network_policies_default_deny_then_dns(production, namespace: str) -> None:
    policies = _policies(production, namespace)
    deny = [p for p in policies if p["metadata"]["name"] == "default-deny"]
    assert deny and deny[0]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns_ports = [
        port
        for p in policies
        if not p["spec"]["podSelector"]
        for rule in p["spec"].get("egress", [])
        for port in rule.get("ports", [])
        if port["port"] == 53
    ]
    assert {p["protocol"] for p in dns_ports} == {"UDP", "TCP"}
    for policy in policies:
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            assert rule.get("ports"), f"{policy['metadata']['name']}: a rule without ports"


def _egress_ports(policy: dict[str, Any]) -> set[int]:
    return {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}


def test_network_policies_allow_exactly_the_needed_flows(production) -> None:
    prefect = {p["metadata"]["name"]: p for p in _policies(production, "prefect-prod")}
    # Flow runs read the Binance archive over HTTPS, write the lake and the executor, push
    # metrics (9091) and export their spans to Jaeger (4318).
    assert {443, 4200, 4318, 5432, 8080, 9000, 9091} == _egress_ports(prefect["prefect-flow-run"])
    # Workers reach the API server through allow-kube-apiserver (test_runtime_rules.py).
    assert _egress_ports(prefect["prefect-worker"]) == {4200}
    assert _egress_ports(prefect["prefect-server"]) == {5432, 6379}
    assert prefect["prefect-redis"]["spec"]["egress"] == []
    minio = {p["metadata"]["name"]: p for p in _policies(production, "minio-prod")}
    minio_ingress = minio["minio"]["spec"]["ingress"][0]["from"]
    sources = {
        rule.get("namespaceSelector", {}).get("matchLabels", {}).get(NS_LABEL)
        for rule in minio_ingress
    }
    assert sources == {"prefect-prod", "s5cmd-prod", None}  # None: MinIO's own peers
    s5cmd = {p["metadata"]["name"]: p for p in _policies(production, "s5cmd-prod")}
    assert _egress_ports(s5cmd["s5cmd-executor"]) == {443, 4318, 5432, 9000}  # 4318: Jaeger


def test_istio_strict_mtls_for_app_namespaces(production) -> None:
    peer = [d for d in production if d["kind"] == "PeerAuthentication"]
    assert {p["metadata"]["namespace"] for p in peer} == APP_NAMESPACES
    for policy in peer:
        assert policy["spec"] == {"mtls": {"mode": "STRICT"}}
        assert "selector" not in policy["spec"]


def test_cloudnativepg_cluster_fields(production) -> None:
    """CloudNativePG's CRD is not available offline: the fields that matter, and only
    fields its v1 API has (the design's `monitoring.prometheusRule` and
    `wal.retention` are not among them)."""
    cluster = find(production, "Cluster", "prefect-postgres")["spec"]
    allowed = {
        "instances", "imageName", "primaryUpdateStrategy", "inheritedMetadata", "affinity",
        "postgresql", "bootstrap", "managed", "storage", "resources", "monitoring",
        "serviceAccountTemplate", "backup",
    }  # fmt: skip
    assert set(cluster) <= allowed
    assert cluster["instances"] == 3
    assert cluster["bootstrap"]["initdb"] == {"database": "prefect", "owner": "prefect"}
    backup = cluster["backup"]
    assert re.fullmatch(r"[1-9][0-9]*[dwm]", backup["retentionPolicy"])
    store = backup["barmanObjectStore"]
    assert store["destinationPath"].startswith("s3://")
    assert set(store) <= {"destinationPath", "s3Credentials", "wal", "data", "endpointURL"}
    assert set(store["wal"]) <= {"compression", "encryption", "maxParallel"}
    assert set(store["data"]) <= {"compression", "encryption", "jobs", "immediateCheckpoint"}
    assert store["s3Credentials"] == {"inheritFromIAMRole": True}
    assert set(cluster["monitoring"]) <= {"enablePodMonitor", "customQueriesConfigMap"}
    assert cluster["affinity"]["nodeSelector"] == {"workload": "general"}
    assert cluster["inheritedMetadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    scheduled = find(production, "ScheduledBackup", "prefect-postgres-daily")["spec"]
    assert len(scheduled["schedule"].split()) == 6  # CloudNativePG cron has seconds
    assert scheduled["cluster"]["name"] == "prefect-postgres"
    databases = {d["spec"]["name"]: d["spec"] for d in production if d["kind"] == "Database"}
    roles = {r["name"] for r in cluster["managed"]["roles"]}
    assert set(databases) == {"executor", "catalog"}
    assert {d["owner"] for d in databases.values()} <= roles


def test_local_overlay_fits_one_small_node(rendered) -> None:
    local = rendered["local"]
    for spec in pod_specs(local).values():
        assert "nodeSelector" not in spec
        assert "tolerations" not in spec
    assert find(local, "Cluster", "prefect-postgres")["spec"]["instances"] == 1
    assert "backup" not in find(local, "Cluster", "prefect-postgres")["spec"]
    assert not [d for d in local if d["kind"] == "ScheduledBackup"]
    assert find(local, "Deployment", "prefect-server")["spec"]["replicas"] == 1
    minio = find(local, "StatefulSet", "minio")["spec"]
    assert "affinity" not in minio["template"]["spec"]
    # The cluster's default StorageClass, whatever a laptop cluster calls it.
    for workload in [d for d in local if d["kind"] == "StatefulSet"]:
        for claim in workload["spec"].get("volumeClaimTemplates", []):
            assert "storageClassName" not in claim["spec"], workload["metadata"]["name"]
    assert "storageClass" not in find(local, "Cluster", "prefect-postgres")["spec"]["storage"]


@pytest.mark.parametrize("pool", ["crypto-data-pool", "s5cmd-optimized-pool"])
def test_job_templates_are_accepted_by_a_real_prefect_server(prefect_server, pool: str) -> None:
    """Prefect validates a base job template when a work pool is created with it (every
    `{{ placeholder }}` must be a declared variable): create the pools for real."""
    import uuid

    import httpx

    template = json.loads((K8S / "base" / "prefect" / "job-templates" / f"{pool}.json").read_text())
    body = {"name": f"{pool}-{uuid.uuid4().hex[:6]}", "type": "kubernetes"}
    response = httpx.post(
        f"{prefect_server.api_url}/work_pools/",
        json={**body, "base_job_template": template},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    stored = response.json()["base_job_template"]
    manifest = stored["job_configuration"]["job_manifest"]
    assert manifest["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    # A template with an undeclared placeholder is refused: the check above means something.
    broken = json.loads(json.dumps(template))
    broken["job_configuration"]["name"] = "{{ not_declared }}"
    refused = httpx.post(
        f"{prefect_server.api_url}/work_pools/",
        json={"name": f"{body['name']}-broken", "type": "kubernetes", "base_job_template": broken},
        timeout=30,
    )
    assert refused.status_code == 422, refused.text


def _setting_names(model: type, out: set[str]) -> set[str]:
    """Every environment name a pydantic-settings model (and its nested models) reads."""
    from pydantic import AliasChoices
    from pydantic_settings import BaseSettings

    prefix = (model.model_config.get("env_prefix") or "").upper()
    for name, field in model.model_fields.items():
        out.add(prefix + name.upper())
        if isinstance(field.validation_alias, AliasChoices):
            out |= {c.upper() for c in field.validation_alias.choices if isinstance(c, str)}
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings):
            _setting_names(field.annotation, out)
    return out


def test_every_environment_name_is_a_real_setting(production) -> None:
    """Prefect and pydantic-settings ignore unknown variables: a misspelt name in a
    manifest would silently do nothing. Each one must be read by the program it is for."""
    from prefect.settings.models.root import Settings as PrefectSettings
    from prefect_redis.client import RedisMessagingSettings

    from crypto_lakehouse.config import Settings

    prefect = _setting_names(PrefectSettings, set()) | _setting_names(RedisMessagingSettings, set())
    ours = _setting_names(Settings, set())
    names: set[str] = set()
    for doc in production:
        if doc["kind"] == "ConfigMap" and isinstance(doc.get("data"), dict):
            names |= {key for key in doc["data"] if key.isupper()}
    for spec in pod_specs(production).values():
        for container in containers(spec):
            if isinstance(container.get("env"), list):
                names |= {var["name"] for var in container["env"]}
    third_party = {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_STORAGE_CLASS_STANDARD"}
    third_party |= {"MINIO_PROMETHEUS_AUTH_TYPE", "REDIS_PASSWORD", "REDIS_ADDR", "HOME"}
    third_party |= {n for n in names if n.startswith("GF_")}  # Grafana's own
    third_party |= {"MC_CONFIG_DIR", "MC_HOST_lake", "USER_ACCESS_KEY", "USER_SECRET_KEY"}
    third_party |= {"SPAN_STORAGE_TYPE", "MEMORY_MAX_TRACES", "COLLECTOR_OTLP_ENABLED"}  # Jaeger
    unknown = {
        name
        for name in names - third_party
        if name not in (prefect if name.startswith("PREFECT_") else ours)
    }
    # OpenTelemetry's SDK reads its own variables; ours are the ones tracing.py looks for.
    from crypto_lakehouse.observability.tracing import _ENDPOINT_VARIABLES

    assert unknown - set(_ENDPOINT_VARIABLES) == set()
