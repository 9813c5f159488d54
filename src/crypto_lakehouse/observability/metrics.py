"""Every Prometheus metric the project exports, defined once.

Alert rules and dashboards in `deploy/monitoring/` may only use names from `REGISTRY`
(a test checks that). Components register against this module's `REGISTRY`, not the
global default, so a process exports exactly the project's series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5)

# -- the s5cmd executor service ----------------------------------------------------------
S5CMD_OPERATIONS = Counter(
    "s5cmd_operations",
    "Executor operations finished, by operation type and final status.",
    ["operation", "status"],
    registry=REGISTRY,
)
S5CMD_OPERATION_DURATION = Histogram(
    "s5cmd_operation_duration_seconds",
    "Wall time of executor operations, from start of run to final status.",
    ["operation"],
    buckets=_DURATION_BUCKETS,
    registry=REGISTRY,
)
S5CMD_BYTES_TRANSFERRED = Counter(
    "s5cmd_bytes_transferred",
    "Bytes copied to a destination by the engine.",
    registry=REGISTRY,
)
S5CMD_OBJECTS_TRANSFERRED = Counter(
    "s5cmd_objects_transferred",
    "Objects copied to a destination by the engine.",
    registry=REGISTRY,
)
S5CMD_RETRIED_REQUESTS = Counter(
    "s5cmd_retried_requests",
    "Requests s5cmd retried after a transient error (SlowDown, connection cut, timeout).",
    ["cause"],
    registry=REGISTRY,
)
S5CMD_ACTIVE_OPERATIONS = Gauge(
    "s5cmd_active_operations",
    "Executor operations running right now in this replica.",
    registry=REGISTRY,
)
S5CMD_QUEUED_OPERATIONS = Gauge(
    "s5cmd_queued_operations",
    "Executor operations waiting to be claimed (as seen by this replica).",
    registry=REGISTRY,
)
S5CMD_STAGING_BYTES = Gauge(
    "s5cmd_staging_bytes",
    "Bytes currently held in the staging directory by staged transfers.",
    registry=REGISTRY,
)
S5CMD_STAGING_CAP_BYTES = Gauge(
    "s5cmd_staging_cap_bytes",
    "The staging directory's configured cap in bytes.",
    registry=REGISTRY,
)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by method, route template and status code.",
    ["method", "route", "status"],
    buckets=_HTTP_BUCKETS,
    registry=REGISTRY,
)

# -- ingest (bronze) ---------------------------------------------------------------------
INGEST_FILES = Counter(
    "lakehouse_ingest_files",
    "Archive files handled by ingest, by outcome (verified, skipped, replaced, corrupt, failed).",
    ["market", "data_type", "outcome"],
    registry=REGISTRY,
)
INGEST_BYTES = Counter(
    "lakehouse_ingest_bytes",
    "Bytes of verified archive files written to bronze.",
    ["market", "data_type"],
    registry=REGISTRY,
)
INGEST_LAST_VERIFIED = Gauge(
    "lakehouse_ingest_last_verified_timestamp_seconds",
    "Unix time of the newest verified file written to bronze.",
    registry=REGISTRY,
)
COVERAGE_MISSING_DAYS = Gauge(
    "lakehouse_coverage_missing_days",
    "Days missing from the archive per market and data type (from the last coverage build).",
    ["market", "data_type"],
    registry=REGISTRY,
)

# -- silver (lake) ---------------------------------------------------------------------------
SILVER_FILES = Counter(
    "lakehouse_silver_files",
    "Bronze files handled by the silver build, by outcome (transformed, drift, corrupt).",
    ["market", "data_type", "outcome"],
    registry=REGISTRY,
)
SILVER_ROWS = Counter(
    "lakehouse_silver_rows",
    "Rows committed to silver tables.",
    ["market", "data_type"],
    registry=REGISTRY,
)
SILVER_REJECTED_LINES = Counter(
    "lakehouse_silver_rejected_lines",
    "CSV lines that did not parse and went to silver.rejects.",
    ["market", "data_type"],
    registry=REGISTRY,
)

# -- the Prefect exporter ------------------------------------------------------------------
PREFECT_WORKFLOW_RUNS = Counter(
    "prefect_workflow_runs",
    "Flow runs that reached a terminal state, by flow and state.",
    ["flow", "state"],
    registry=REGISTRY,
)
PREFECT_WORKFLOW_FAILURES = Counter(
    "prefect_workflow_failures",
    "Flow runs that ended Failed or Crashed, by flow.",
    ["flow"],
    registry=REGISTRY,
)
PREFECT_FLOW_RUNS_BY_STATE = Gauge(
    "prefect_flow_runs",
    "Flow runs currently in each state type (SCHEDULED, PENDING, RUNNING, ...).",
    ["state"],
    registry=REGISTRY,
)
PREFECT_API_UP = Gauge(
    "prefect_api_up",
    "1 when the exporter's last poll of the Prefect API succeeded, else 0.",
    registry=REGISTRY,
)
PREFECT_WORK_POOL_QUEUE = Gauge(
    "prefect_work_pool_late_runs",
    "Late flow runs per work pool.",
    ["pool"],
    registry=REGISTRY,
)


def exported_names() -> set[str]:
    """Every series name a scrape of REGISTRY can show (counters' _total, histograms' parts)."""
    names: set[str] = set()
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            names.add(sample.name)
        base = metric.name
        if metric.type == "counter":
            names.update({f"{base}_total", f"{base}_created"})
        elif metric.type == "histogram":
            names.update({f"{base}_bucket", f"{base}_count", f"{base}_sum", f"{base}_created"})
        else:
            names.add(base)
    return names


# -- what each process serves ----------------------------------------------------------------
# Every metric lives in REGISTRY (so rules can be checked against one list), but a process
# serves only its own component's series: an executor that showed the exporter's
# `prefect_api_up 0` would make PrefectApiDown fire.
EXECUTOR_METRICS = (
    S5CMD_OPERATIONS,
    S5CMD_OPERATION_DURATION,
    S5CMD_BYTES_TRANSFERRED,
    S5CMD_OBJECTS_TRANSFERRED,
    S5CMD_RETRIED_REQUESTS,
    S5CMD_ACTIVE_OPERATIONS,
    S5CMD_QUEUED_OPERATIONS,
    S5CMD_STAGING_BYTES,
    S5CMD_STAGING_CAP_BYTES,
    HTTP_REQUEST_DURATION,
)
EXPORTER_METRICS = (
    PREFECT_WORKFLOW_RUNS,
    PREFECT_WORKFLOW_FAILURES,
    PREFECT_FLOW_RUNS_BY_STATE,
    PREFECT_API_UP,
    PREFECT_WORK_POOL_QUEUE,
)


def component_registry(metrics: tuple) -> CollectorRegistry:
    """A registry that serves just `metrics` (the objects stay registered in REGISTRY too)."""
    registry = CollectorRegistry(auto_describe=True)
    for metric in metrics:
        registry.register(metric)
    return registry
