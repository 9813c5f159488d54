"""eksctl, Terraform, Argo CD, Istio and Dockerfiles: parsed and checked field by field.

None of these tools (eksctl, terraform, argocd, istioctl, docker build) can run here, and
their schemas do not ship offline: the tests parse the files with real parsers (PyYAML,
python-hcl2) and assert the fields that matter, and only fields those APIs have.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from _manifests import ROOT, find, pod_specs

DEPLOY = ROOT / "deploy"
TAINT_EFFECTS = {"NoSchedule", "PreferNoSchedule", "NoExecute"}


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_yamllint_passes_on_every_yaml_file() -> None:
    files = sorted(str(p) for p in DEPLOY.rglob("*.y*ml"))
    assert len(files) > 20
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "-c", str(ROOT / ".yamllint"), "--strict", *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- eksctl ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def eks() -> dict[str, Any]:
    (config,) = load(DEPLOY / "eks" / "cluster.yaml")
    return config


def test_eksctl_config_fields(eks: dict[str, Any]) -> None:
    assert eks["apiVersion"] == "eksctl.io/v1alpha5"
    assert eks["kind"] == "ClusterConfig"
    top = {"apiVersion", "kind", "metadata", "vpc", "iam", "managedNodeGroups", "addons"}
    assert set(eks) <= top | {"cloudWatch"}
    major, minor = (int(x) for x in eks["metadata"]["version"].split("."))
    assert (major, minor) >= (1, 28)
    assert set(eks["vpc"]) <= {"cidr", "clusterEndpoints", "nat", "id", "subnets"}
    assert set(eks["cloudWatch"]["clusterLogging"]) <= {"enableTypes", "logRetentionInDays"}
    known = {
        "name", "instanceType", "amiFamily", "desiredCapacity", "minSize", "maxSize",
        "volumeSize", "volumeType", "privateNetworking", "labels", "taints",
        "preBootstrapCommands", "iam", "tags", "ssh",
    }  # fmt: skip
    for group in eks["managedNodeGroups"]:
        assert set(group) <= known, group["name"]
        assert group["minSize"] <= group["desiredCapacity"] <= group["maxSize"]
        assert "ssh" not in group, "no SSH into nodes"
        for taint in group.get("taints", []):
            assert set(taint) == {"key", "value", "effect"}
            assert taint["effect"] in TAINT_EFFECTS
    for account in eks["iam"]["serviceAccounts"]:
        assert account.get("roleOnly") is True
        assert account["metadata"]["namespace"] == "prefect-prod"


def test_four_node_groups_match_the_manifests(eks: dict[str, Any], production) -> None:
    groups = {g["name"]: g for g in eks["managedNodeGroups"]}
    assert len(groups) == 4
    assert groups["general-workload"]["instanceType"] == "m5.xlarge"
    assert groups["data-intensive"]["instanceType"] == "c5n.2xlarge"
    assert groups["storage-nodes"]["instanceType"] == "i3.xlarge"
    assert groups["storage-nodes"]["desiredCapacity"] == 4
    labels = {g["labels"]["workload"]: g for g in groups.values()}
    for where, spec in pod_specs(production).items():
        wanted = spec.get("nodeSelector", {}).get("workload")
        assert wanted in labels, f"{where}: no node group labelled workload={wanted}"
        for taint in labels[wanted].get("taints", []):
            tolerated = {
                (t["key"], t.get("value"), t["effect"]) for t in spec.get("tolerations", [])
            }
            assert (taint["key"], taint["value"], taint["effect"]) in tolerated, where
    minio = find(production, "StatefulSet", "minio")
    assert minio["spec"]["replicas"] == groups["storage-nodes"]["desiredCapacity"]


def test_eksctl_vpc_cni_enforces_network_policies(eks: dict[str, Any]) -> None:
    """The VPC CNI ignores NetworkPolicies unless its policy agent is turned on."""
    addons = {a["name"]: a for a in eks["addons"]}
    assert json.loads(addons["vpc-cni"]["configurationValues"]) == {"enableNetworkPolicy": "true"}
    major, minor = (int(x) for x in eks["metadata"]["version"].split("."))
    assert (major, minor) >= (1, 29), "native sidecars need Kubernetes 1.29"


# -- Terraform ---------------------------------------------------------------------------


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps HCL string quotes (`'"eks"'`); drop them and its own markers."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if not k.startswith("__")}
    return value


@pytest.fixture(scope="module")
def terraform() -> dict[str, list[Any]]:
    merged: dict[str, list[Any]] = {}
    files = sorted((DEPLOY / "terraform").glob("*.tf"))
    assert files
    for path in files:
        with path.open() as handle:
            for key, value in _unquote(hcl2.load(handle)).items():
                merged.setdefault(key, []).extend(value)
    return merged


def _blocks(terraform: dict[str, list[Any]], kind: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for block in terraform.get(kind, []):
        for type_name, by_name in block.items():
            for name, body in by_name.items():
                out[f"{type_name}.{name}"] = body
    return out


def test_terraform_pins_providers_modules_and_charts(terraform) -> None:
    (settings,) = terraform["terraform"]
    providers = settings["required_providers"][0]
    assert {"aws", "kubernetes", "helm"} <= set(providers)
    for module in terraform["module"]:
        for name, body in module.items():
            assert body.get("version"), f"module {name} has no version"
    releases = _blocks(terraform, "resource")
    charts = {k: v for k, v in releases.items() if k.startswith("helm_release.")}
    assert {
        "helm_release.istio_base",
        "helm_release.istiod",
        "helm_release.cloudnative_pg",
        "helm_release.kube_state_metrics",
        "helm_release.lvm_localpv",
    } <= set(charts)
    for name, body in charts.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", body["version"]), name


def test_terraform_node_groups_match_eksctl(terraform, eks: dict[str, Any]) -> None:
    (eks_module,) = [m["eks"] for m in terraform["module"] if "eks" in m]
    groups = eks_module["eks_managed_node_groups"]
    assert set(groups) == {"system", "general_workload", "data_intensive", "storage_nodes"}
    by_name = {g["name"].replace("-", "_"): g for g in eks["managedNodeGroups"]}
    for name, group in groups.items():
        assert group["labels"] == by_name[name]["labels"], name
        assert group["min_size"] == by_name[name]["minSize"], name
        assert group["max_size"] == by_name[name]["maxSize"], name
    variables = _blocks({"v": [{"var": v} for v in terraform["variable"]]}, "v")
    assert variables["var.storage_instance_type"]["default"] == "i3.xlarge"


def _eks_module(terraform: dict[str, list[Any]]) -> dict[str, Any]:
    (eks_module,) = [m["eks"] for m in terraform["module"] if "eks" in m]
    return eks_module


def test_terraform_vpc_cni_enforces_network_policies(terraform) -> None:
    vpc_cni = _eks_module(terraform)["cluster_addons"]["vpc-cni"]
    assert re.search(r"enableNetworkPolicy\s*=\s*\"true\"", vpc_cni["configuration_values"])
    assert vpc_cni["before_compute"] is True
    variables = _blocks({"v": [{"var": v} for v in terraform["variable"]]}, "v")
    assert ">= 29" in str(variables["var.kubernetes_version"]["validation"])


def test_mesh_injects_native_sidecars(terraform) -> None:
    """Istio 1.24 injects a classic proxy container unless told otherwise; both installs
    (istioctl and Terraform's Helm release) turn native sidecars on."""
    (operator,) = load(DEPLOY / "istio" / "istio-operator.yaml")
    assert operator["spec"]["values"]["pilot"]["env"]["ENABLE_NATIVE_SIDECARS"] == "true"
    istiod = _blocks(terraform, "resource")["helm_release.istiod"]
    assert re.search(r"ENABLE_NATIVE_SIDECARS\s*=\s*\"true\"", str(istiod["values"]))


# -- Argo CD -----------------------------------------------------------------------------


def test_argocd_objects_use_valid_fields_and_point_at_a_real_overlay() -> None:
    docs = {d["kind"]: d for d in load(DEPLOY / "argocd" / "crypto-lakehouse.yaml")}
    app, project = docs["Application"], docs["AppProject"]
    assert app["apiVersion"] == project["apiVersion"] == "argoproj.io/v1alpha1"
    spec = app["spec"]
    assert set(spec) <= {
        "project", "source", "sources", "destination", "syncPolicy", "ignoreDifferences",
        "info", "revisionHistoryLimit",
    }  # fmt: skip
    assert spec["project"] == project["metadata"]["name"]
    assert set(spec["source"]) <= {"repoURL", "path", "targetRevision", "kustomize"}
    assert (ROOT / spec["source"]["path"] / "kustomization.yaml").exists()
    policy = spec["syncPolicy"]
    assert set(policy) <= {"automated", "syncOptions", "retry", "managedNamespaceMetadata"}
    assert set(policy["automated"]) <= {"prune", "selfHeal", "allowEmpty"}
    assert set(policy["retry"]) <= {"limit", "backoff"}
    assert set(policy["retry"]["backoff"]) <= {"duration", "factor", "maxDuration"}
    known_options = {
        "Validate", "CreateNamespace", "PrunePropagationPolicy", "PruneLast", "ApplyOutOfSyncOnly",
        "RespectIgnoreDifferences", "ServerSideApply", "Replace", "FailOnSharedResource",
    }  # fmt: skip
    for option in policy["syncOptions"]:
        assert option.split("=")[0] in known_options, option
    for ignore in spec["ignoreDifferences"]:
        assert set(ignore) <= {"group", "kind", "name", "namespace", "jsonPointers"}
    assert set(project["spec"]) <= {
        "description", "sourceRepos", "destinations", "clusterResourceWhitelist",
        "namespaceResourceWhitelist", "namespaceResourceBlacklist", "roles",
    }  # fmt: skip
    allowed = {d["namespace"] for d in project["spec"]["destinations"]}
    assert allowed == {"prefect-prod", "minio-prod", "s5cmd-prod", "monitoring", "istio-system"}


def test_argocd_project_allows_every_cluster_scoped_kind(production) -> None:
    (project,) = [
        d for d in load(DEPLOY / "argocd" / "crypto-lakehouse.yaml") if d["kind"] == "AppProject"
    ]
    allowed = {(k["group"], k["kind"]) for k in project["spec"]["clusterResourceWhitelist"]}
    for doc in production:
        if "namespace" not in doc["metadata"]:
            group = doc["apiVersion"].rpartition("/")[0]
            assert (group, doc["kind"]) in allowed, doc["kind"]


# -- Istio -------------------------------------------------------------------------------


def test_istio_operator_enables_cni_and_metrics_merging() -> None:
    (operator,) = load(DEPLOY / "istio" / "istio-operator.yaml")
    assert operator["apiVersion"] == "install.istio.io/v1alpha1"
    assert operator["kind"] == "IstioOperator"
    spec = operator["spec"]
    assert set(spec) <= {"profile", "meshConfig", "values", "components", "hub", "tag", "revision"}
    assert spec["components"]["cni"]["enabled"] is True
    assert spec["meshConfig"]["enablePrometheusMerge"] is True
    assert set(spec["components"]) <= {"base", "pilot", "cni", "ingressGateways", "egressGateways"}


# -- Dockerfiles -------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


DOCKERFILES = sorted((DEPLOY / "docker").glob("*/Dockerfile"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_references_files_that_exist(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    # The build context: the repository root, or the Dockerfile's own folder when the
    # usage line in its header says so.
    header = dockerfile.read_text()
    context = (
        dockerfile.parent if header.count(f" {dockerfile.parent.relative_to(ROOT)}\n") else ROOT
    )
    for word, rest in instructions:
        if word in {"COPY", "ADD"}:
            args = [a for a in rest.split() if not a.startswith("--")]
            if "--from=" in rest:
                continue
            for source in args[:-1]:
                assert (context / source).exists(), f"{dockerfile}: {source}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_pins_bases_and_runs_as_non_root(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    for word, rest in instructions:
        if word == "FROM":
            image = rest.split()[0]
            assert ":" in image and not image.endswith(":latest"), image
        assert not (word == "RUN" and re.search(r"\b(curl|wget)\b", rest)), "download in build"
    users = [rest for word, rest in instructions if word == "USER"]
    assert users, "no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


# -- Terraform: what the EKS module v20 actually reads --------------------------------------


def _gib(quantity: str) -> float:
    units = {"Gi": 1, "Ti": 1024, "Mi": 1 / 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_terraform_creator_is_cluster_admin(terraform) -> None:
    """Module v20 uses EKS access entries; without this the Helm releases are Unauthorized."""
    assert _eks_module(terraform)["enable_cluster_creator_admin_permissions"] is True


def test_terraform_root_volumes_fit_the_pods(terraform, production) -> None:
    """Each node group has a launch template, so EKS ignores `disk_size`: root volumes
    come from block_device_mappings, and the data-intensive nodes' must hold the
    executor's ephemeral-storage request."""
    module = _eks_module(terraform)
    groups = module["eks_managed_node_groups"]
    for name, group in groups.items():
        assert "disk_size" not in group, f"{name}: disk_size is ignored with a launch template"
        assert "pre_bootstrap_user_data" not in group, f"{name}: ignored on AL2023 (nodeadm)"
    default = module["eks_managed_node_group_defaults"]
    assert default["ami_type"].startswith("AL2023")

    def root_gib(group: dict[str, Any]) -> int:
        mappings = group.get("block_device_mappings") or default["block_device_mappings"]
        (root,) = mappings.values()
        assert root["device_name"] == "/dev/xvda"
        return root["ebs"]["volume_size"]

    executor = find(production, "Deployment", "s5cmd-executor")
    requests = executor["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
    assert root_gib(groups["data_intensive"]) >= 3 * _gib(requests["ephemeral-storage"])
    assert all(root_gib(g) >= 20 for g in groups.values())


def test_storage_nodes_build_their_volume_group_from_instance_store_only(terraform) -> None:
    storage = _eks_module(terraform)["eks_managed_node_groups"]["storage_nodes"]
    (part,) = storage["cloudinit_pre_nodeadm"]
    assert part["content_type"].startswith("text/x-shellscript")
    script = (DEPLOY / "terraform" / "files" / "minio-nvme-vg.sh").read_text()
    assert "${path.module}/files/minio-nvme-vg.sh" in part["content"]
    assert "Instance Storage" in script and "/dev/nvme0n1" not in script
    assert "vgcreate minio-nvme" in script
    result = subprocess.run(
        ["bash", "-n", str(DEPLOY / "terraform" / "files" / "minio-nvme-vg.sh")]
    )
    assert result.returncode == 0
    (eks_config,) = load(DEPLOY / "eks" / "cluster.yaml")
    (group,) = [g for g in eks_config["managedNodeGroups"] if g["name"] == "storage-nodes"]
    commands = " ".join(group["preBootstrapCommands"])
    assert "Instance Storage" in commands and "/dev/nvme0n1" not in commands
    result = subprocess.run(["bash", "-n", "-c", commands])
    assert result.returncode == 0


def test_terraform_installs_what_the_manifests_rely_on(terraform_releases) -> None:
    """The ingress gateway the Gateway binds to, metrics-server for the HPAs."""
    assert {"helm_release.istio_ingressgateway", "helm_release.metrics_server"} <= (
        terraform_releases
    )


# -- Argo CD: what a sync does -----------------------------------------------------------


def test_argocd_respects_ignored_replicas_and_knows_cnpg_health(terraform) -> None:
    (app,) = [
        d for d in load(DEPLOY / "argocd" / "crypto-lakehouse.yaml") if d["kind"] == "Application"
    ]
    if app["spec"].get("ignoreDifferences"):
        assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
    argocd = _blocks(terraform, "resource")["helm_release.argocd"]
    values = str(argocd["values"])
    assert "resource.customizations.health.postgresql.cnpg.io_Cluster" in values
    assert "Cluster in healthy state" in values
