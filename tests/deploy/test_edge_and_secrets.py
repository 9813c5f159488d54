"""The seed components a user touches first: the ingress Gateway (TLS, routes, who logs
in where) and the Secrets, which production takes from AWS Secrets Manager."""

from __future__ import annotations

from typing import Any

import pytest
from _manifests import containers, find, pod_templates


def _secret_keys_needed(docs: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    """{(namespace, Secret name): keys} that pods, CloudNativePG and the Gateway read."""
    needed: dict[tuple[str, str], set[str]] = {}
    for pod in pod_templates(docs):
        namespace, spec = pod["namespace"], pod["spec"]
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                keys = {i["key"] for i in volume["secret"].get("items", [])}
                needed.setdefault((namespace, volume["secret"]["secretName"]), set()).update(keys)
        for container in containers(spec):
            env = container.get("env", [])
            for var in env if isinstance(env, list) else []:
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    needed.setdefault((namespace, ref["name"]), set()).add(ref["key"])
    for cluster in [d for d in docs if d["kind"] == "Cluster"]:
        namespace = cluster["metadata"]["namespace"]
        for role in cluster["spec"].get("managed", {}).get("roles", []):
            name = role["passwordSecret"]["name"]
            needed.setdefault((namespace, name), set()).update({"username", "password"})
    for gateway in [d for d in docs if d["kind"] == "Gateway"]:
        for server in gateway["spec"]["servers"]:
            name = server.get("tls", {}).get("credentialName")
            if name:  # read by the gateway pods, in their namespace
                keys = {"tls.crt", "tls.key"}
                needed.setdefault((gateway["metadata"]["namespace"], name), set()).update(keys)
    return needed


def _made_by_cloudnativepg(docs: list[dict[str, Any]], namespace: str, name: str) -> bool:
    return any(
        d["kind"] == "Cluster"
        and d["metadata"]["namespace"] == namespace
        and name in {f"{d['metadata']['name']}-app", f"{d['metadata']['name']}-superuser"}
        for d in docs
    )


def test_every_secret_production_reads_comes_from_the_secrets_manager(production) -> None:
    """Each Secret a production pod, CloudNativePG role or the Gateway reads is written by
    an ExternalSecret with at least the keys read (or by CloudNativePG itself)."""
    written: dict[tuple[str, str], dict[str, Any]] = {}
    for doc in production:
        if doc["kind"] == "ExternalSecret":
            target = doc["spec"]["target"].get("name", doc["metadata"]["name"])
            written[(doc["metadata"]["namespace"], target)] = doc
    needed = _secret_keys_needed(production)
    assert len(needed) >= 12
    for (namespace, name), keys in sorted(needed.items()):
        if _made_by_cloudnativepg(production, namespace, name):
            continue
        external = written.get((namespace, name))
        assert external is not None, f"{namespace}/{name}: no ExternalSecret writes it"
        template = external["spec"]["target"].get("template", {})
        provided = set(template.get("data", {})) or {
            d["secretKey"] for d in external["spec"].get("data", [])
        }
        assert keys <= provided, f"{namespace}/{name}: missing {sorted(keys - provided)}"
        assert external["spec"]["secretStoreRef"] == {
            "kind": "ClusterSecretStore",
            "name": "aws-secrets-manager",
        }
        for source in external["spec"].get("dataFrom", []):
            assert source["extract"]["key"].startswith("crypto-lakehouse/")
    basic_auth = written[("prefect-prod", "executor-db-credentials")]["spec"]["target"]
    assert basic_auth["template"]["type"] == "kubernetes.io/basic-auth"  # CloudNativePG's ask
    (store,) = [d for d in production if d["kind"] == "ClusterSecretStore"]
    assert store["spec"]["provider"]["aws"]["service"] == "SecretsManager"
    namespaces = {ns for ns, _ in needed}
    assert namespaces <= set(store["spec"]["conditions"][0]["namespaces"])


def test_terraform_gives_the_operator_a_role_for_those_entries_only(terraform_releases) -> None:
    import hcl2
    from _manifests import K8S

    assert "helm_release.external_secrets" in terraform_releases
    text = (K8S.parent / "terraform" / "addons.tf").read_text()
    parsed = hcl2.loads(text)
    modules = {name.strip('"'): body for m in parsed["module"] for name, body in m.items()}
    role = modules["external_secrets_irsa"]
    assert role["attach_external_secrets_policy"] is True
    (arn,) = role["external_secrets_secrets_manager_arns"]
    assert arn.strip('"').endswith(":secret:crypto-lakehouse/*")
    (binding,) = role["oidc_providers"]["main"]["namespace_service_accounts"]
    assert binding.strip('"') == "external-secrets:external-secrets"
    assert "external-secrets" in text and "eks.amazonaws.com/role-arn" in text


# -- the Gateway ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", ["local", "production"])
def test_gateway_serves_tls_and_routes_to_real_services(rendered, overlay: str) -> None:
    docs = rendered[overlay]
    gateway = find(docs, "Gateway", "crypto-lakehouse")
    servers = {s["port"]["protocol"]: s for s in gateway["spec"]["servers"]}
    assert servers["HTTPS"]["tls"]["mode"] == "SIMPLE"
    assert servers["HTTP"]["tls"] == {"httpsRedirect": True}
    services = {
        (d["metadata"]["name"], d["metadata"]["namespace"]): {p["port"] for p in d["spec"]["ports"]}
        for d in docs
        if d["kind"] == "Service"
    }
    routed = {}
    for vs in [d for d in docs if d["kind"] == "VirtualService"]:
        assert vs["spec"]["gateways"] == ["istio-system/crypto-lakehouse"]
        (host,) = vs["spec"]["hosts"]
        for route in vs["spec"]["http"]:
            for target in route["route"]:
                name, namespace = target["destination"]["host"].split(".")[:2]
                port = target["destination"]["port"]["number"]
                assert port in services[(name, namespace)], f"{host}: {name}:{port}"
                routed[host.split(".")[0]] = (name, namespace)
    assert routed == {
        "prefect": ("prefect-server", "prefect-prod"),
        "grafana": ("grafana", "monitoring"),
        "minio": ("minio-console", "minio-prod"),
        "executor": ("s5cmd-executor", "s5cmd-prod"),
    }


def test_every_routed_service_asks_who_is_calling(production) -> None:
    """TLS at the gateway, then a login at each destination: Prefect's basic auth, Grafana
    without anonymous access, the executor's bearer token (the MinIO console has its own)."""

    def env(kind: str, name: str) -> dict[str, Any]:
        spec = find(production, kind, name)["spec"]["template"]["spec"]
        return {e["name"]: e for c in spec["containers"] for e in c.get("env", [])}

    server = env("Deployment", "prefect-server")
    assert "secretKeyRef" in server["PREFECT_SERVER_API_AUTH_STRING"]["valueFrom"]
    for client in ("prefect-worker-general", "prefect-worker-s5cmd", "prefect-exporter"):
        assert "secretKeyRef" in env("Deployment", client)["PREFECT_API_AUTH_STRING"]["valueFrom"]
    grafana = env("Deployment", "grafana")
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"]["value"] == "false"
    assert grafana["GF_SECURITY_COOKIE_SECURE"]["value"] == "true"
    executor = env("Deployment", "s5cmd-executor")
    assert "secretKeyRef" in executor["EXECUTOR_API_TOKEN"]["valueFrom"]
    deny = find(production, "AuthorizationPolicy", "crypto-lakehouse-ingress")["spec"]
    assert deny["action"] == "DENY"
    assert deny["rules"][0]["to"][0]["operation"]["paths"] == ["/metrics"]
