"""Flow `maintain-lake`: compaction, snapshot expiry and orphan removal on a schedule.

    maintain-lake   every silver and gold table (or the ones named) -> one task per table,
                    one after another (compaction reads and sorts, and two tables at once
                    would only share the same cores) -> `maintenance-summary` artifact.
                    Ends Failed when any table's maintenance failed; the others still ran.

The deployment `maintain` (flows/deployments.py) runs it daily. Credentials come from
settings at flow entry.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from crypto_lakehouse.config import Settings
from crypto_lakehouse.flows.tasks import flow_run_id
from crypto_lakehouse.lake.config import LakeConfig
from crypto_lakehouse.lake.maintenance import (
    DEFAULT_EXPIRE_OLDER_THAN,
    DEFAULT_ORPHANS_OLDER_THAN,
    DEFAULT_RETAIN_LAST,
    MaintenanceOptions,
    MaintenanceReport,
    TableReport,
    lake_tables,
    maintain,
)
from crypto_lakehouse.lake.warehouse import Warehouse
from crypto_lakehouse.observability import tracing

MAINTAIN_FLOW = "maintain-lake"
DAY_SECONDS = 86_400


@task(name="maintain-table", task_run_name="maintain {identifier}", cache_policy=NO_CACHE)
def maintain_table(
    warehouse: Warehouse, identifier: str, options: MaintenanceOptions
) -> TableReport:
    """Compact, expire and remove orphans on one table. A failure is in the report rather
    than raised (no retry: every step is idempotent and the next scheduled run resumes)."""
    with tracing.step(
        "maintenance.table",
        flow_run_id=flow_run_id(),
        table=identifier,
        dry_run=options.dry_run,
        compact=options.compact,
    ) as span:
        report = maintain(warehouse, options, [identifier]).tables[0]
        tracing.note(
            span,
            files_before=report.files_before,
            files_after=report.files_after,
            compaction_jobs=report.jobs,
            files_rewritten=report.files_rewritten,
            snapshots_expired=report.snapshots_expired,
            orphans=len(report.orphans),
            orphan_bytes=report.orphan_bytes,
            failed=bool(report.error),  # the message stays in the report
        )
        return report


@flow(name=MAINTAIN_FLOW, persist_result=False, validate_parameters=True)
def maintain_lake(
    tables: list[str] | None = None,
    dry_run: bool = False,
    compact: bool = True,
    expire_older_than_days: float = DEFAULT_EXPIRE_OLDER_THAN.total_seconds() / DAY_SECONDS,
    retain_last: int = DEFAULT_RETAIN_LAST,
    orphans_older_than_days: float = DEFAULT_ORPHANS_OLDER_THAN.total_seconds() / DAY_SECONDS,
) -> Any:
    """Maintain every silver and gold table (or `tables`); returns the report as a dict."""
    from prefect.artifacts import create_markdown_artifact

    options = MaintenanceOptions(
        compact=compact,
        dry_run=dry_run,
        expire_older_than=timedelta(days=expire_older_than_days),
        retain_last=retain_last,
        orphans_older_than=timedelta(days=orphans_older_than_days),
    )
    warehouse = Warehouse(LakeConfig.from_settings(Settings()))
    try:
        chosen = tables or lake_tables(warehouse)
        reports = [maintain_table(warehouse, identifier, options) for identifier in chosen]
    finally:
        warehouse.catalog.engine.dispose()
    report = MaintenanceReport(reports, dry_run)
    failed = [t.table for t in reports if t.error]
    message = f"{len(reports)} table(s) maintained" + (f", {len(failed)} failed" if failed else "")
    create_markdown_artifact(
        markdown=report.markdown(), key="maintenance-summary", description=message
    )
    if failed:
        return Failed(message=f"maintenance failed on {', '.join(failed)}", data=report.as_dict())
    return report.as_dict()
