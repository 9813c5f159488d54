"""deploy/monitoring checked with the real tools: promtool, amtool, and the metric registry."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from _promql import series_names

from crypto_lakehouse.observability.metrics import exported_names

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
RULES = MONITORING / "rules" / "crypto-lakehouse.rules.yml"
RULE_TESTS = MONITORING / "tests" / "crypto-lakehouse.test.yml"
DASHBOARDS = sorted((MONITORING / "dashboards").glob("*.json"))

# Series the project does not export itself but alerts on. Keep this list minimal and
# true: each entry says who exports it, and a test fails when one is no longer used.
EXTERNAL_SERIES = {
    "minio_cluster_capacity_usable_free_bytes": "MinIO, /minio/v2/metrics/cluster",
    "minio_cluster_capacity_usable_total_bytes": "MinIO, /minio/v2/metrics/cluster",
    "kube_node_status_condition": "kube-state-metrics",
    "cnpg_collector_up": "CloudNativePG's instance exporter, :9187/metrics",
    "redis_up": "redis_exporter beside Prefect's Redis, :9121/metrics",
}


def tool(name: str) -> str:
    """A Debian-packaged binary (prometheus, prometheus-alertmanager): `make setup` installs
    them; their absence is a broken set-up, not a reason to skip."""
    found = shutil.which(name)
    if not found:
        pytest.fail(
            f"{name} not found: run `make setup` (Debian packages prometheus, "
            "prometheus-alertmanager)"
        )
    return found


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=120)
    assert result.returncode == 0, f"{' '.join(argv)}\n{result.stdout}\n{result.stderr}"
    return result


def rule_exprs() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_exprs() -> dict[str, str]:
    exprs = {}
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                exprs[f"{path.name}: {panel['title']} {target['refId']}"] = target["expr"]
    return exprs


def test_promtool_check_rules() -> None:
    out = run(tool("promtool"), "check", "rules", str(RULES)).stdout
    assert f"SUCCESS: {len(rule_exprs())} rules found" in out


def test_promtool_unit_tests_pass() -> None:
    run(tool("promtool"), "test", "rules", str(RULE_TESTS))


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    alerts = set(rule_exprs())
    assert alerts - fired == set(), "alerts never made to fire"
    assert alerts - silent == set(), "alerts never checked to stay silent"


def test_the_design_alerts_and_ours_are_all_there() -> None:
    assert set(rule_exprs()) >= {
        # the design's four
        "WorkflowFailureRate",
        "S5cmdOperationLatency",
        "MinioStorageCapacity",
        "KubernetesNodeNotReady",
        # ours
        "ExecutorOperationFailures",
        "StagingDiskNearCap",
        "IngestStale",
        "CorruptFilesFound",
    }


def _offline_config(tmp_path: Path) -> Path:
    """prometheus.yml with each `kubernetes_sd_configs` swapped for `file_sd_configs`.

    Debian's Prometheus 2.42 is built without Kubernetes service discovery (its promtool
    rejects the field), and no other promtool is installable here. Everything else --
    relabelling, rule files, alerting -- is checked by promtool as written; the Kubernetes
    blocks are checked field by field in `test_kubernetes_sd_blocks_are_well_formed`.
    """
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["file_sd_configs"] = [{"files": [str(tmp_path / "targets.json")]}]
    config["rule_files"] = [str(MONITORING / rule) for rule in config["rule_files"]]
    out = tmp_path / "prometheus.yml"
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def test_promtool_check_config(tmp_path: Path) -> None:
    out = run(tool("promtool"), "check", "config", str(_offline_config(tmp_path))).stdout
    assert "SUCCESS" in out
    assert str(RULES) in out  # the rule file was found through rule_files and checked


def test_kubernetes_sd_blocks_are_well_formed() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"s5cmd-executor", "prefect-exporter", "minio", "kubernetes-pods"} <= set(jobs)
    roles = {"node", "service", "pod", "endpoints", "endpointslice", "ingress"}
    for job in jobs.values():
        for sd in job.get("kubernetes_sd_configs", []):
            assert set(sd) <= {"role", "namespaces", "selectors"}, job["job_name"]
            assert sd["role"] in roles
            if "namespaces" in sd:
                assert set(sd["namespaces"]) <= {"names", "own_namespace"}
                assert all(isinstance(n, str) for n in sd["namespaces"]["names"])
    wanted = {
        "s5cmd-executor": "s5cmd-prod",
        "prefect-exporter": "prefect-prod",
        "minio": "minio-prod",
    }
    for job_name, namespace in wanted.items():
        assert jobs[job_name]["kubernetes_sd_configs"][0]["namespaces"]["names"] == [namespace]


def test_amtool_check_config() -> None:
    out = run(tool("amtool"), "check-config", str(MONITORING / "alertmanager.yml")).stdout
    assert "SUCCESS" in out


def test_alertmanager_config_holds_no_secret() -> None:
    config = yaml.safe_load((MONITORING / "alertmanager.yml").read_text())
    for receiver in config["receivers"]:
        for key in ("slack_configs", "pagerduty_configs"):
            for item in receiver.get(key, []):
                assert "api_url" not in item
                assert "routing_key" not in item
                assert "service_key" not in item


@pytest.mark.parametrize("source", ["rules", "dashboards"])
def test_every_series_name_is_exported(source: str) -> None:
    exprs = rule_exprs() if source == "rules" else dashboard_exprs()
    assert exprs
    known = exported_names() | set(EXTERNAL_SERIES)
    unknown = {
        f"{where}: {name}"
        for where, expr in exprs.items()
        for name in series_names(expr)
        if name not in known
    }
    assert unknown == set()


def test_external_series_list_is_minimal() -> None:
    used = set()
    for expr in [*rule_exprs().values(), *dashboard_exprs().values()]:
        used |= series_names(expr)
    assert set(EXTERNAL_SERIES) <= used, "drop external series nothing uses"
    assert not (set(EXTERNAL_SERIES) & exported_names()), "listed as external but ours"


def test_dashboards_have_the_required_panels() -> None:
    titles: set[str] = set()
    for path in DASHBOARDS:
        board: dict[str, Any] = json.loads(path.read_text())
        assert board["uid"] and board["title"]
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in board["panels"]:
            assert panel["targets"], panel["title"]
            assert panel["datasource"]["uid"] == "${datasource}"
            assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
            titles.add(panel["title"])
    assert {
        "Prefect Workflow Execution Rate",
        "s5cmd Operation Throughput",
        "MinIO Storage Utilization",
        "API Response Times",
        "Ingest throughput",
        "Verified files per day",
        "Coverage gaps (missing days)",
    } <= titles


def test_promql_name_parser() -> None:
    expr = 'sum by (le) (rate(a_bucket{x="b c"}[5m])) / on(j) group_left(k) b offset 1h > 1e3'
    assert series_names(expr) == {"a_bucket", "b"}
    assert series_names("time() - max(c) or absent(d)") == {"c", "d"}
    assert series_names("rate(e[$__rate_interval])") == {"e"}
