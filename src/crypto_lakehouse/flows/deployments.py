"""Work pools and deployments, apart from the flow code (they only name flows by module path).

Two process work pools, as in the design:

- `s5cmd-optimized-pool`: transfer-heavy flows (ingest); its workers run s5cmd.
- `crypto-data-pool`: general flows (silver/gold builds, reports).

Deployments use module-path entrypoints (`crypto_lakehouse.flows.ingest.ingest_archive`):
a worker imports the installed package, so nothing is uploaded or cloned and it works
offline. Workers take their settings (endpoints, credentials) from their own environment.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from crypto_lakehouse.flows.limits import DEFAULT_TRANSFER_SLOTS, ensure_transfer_limit

GENERAL_POOL = "crypto-data-pool"
TRANSFER_POOL = "s5cmd-optimized-pool"
POOLS = {
    GENERAL_POOL: "General flows: lakehouse builds, reports.",
    TRANSFER_POOL: "Transfer-heavy flows: archive ingest with s5cmd.",
}


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: which flow (module:function), on which pool, with which defaults."""

    name: str
    flow: str  # "package.module:function"
    pool: str
    description: str
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    optional: bool = False  # skipped when its module is not there (a flow still to come)
    cron: str | None = None  # a schedule (UTC), e.g. "30 3 * * *"; None: runs on demand

    def load_flow(self) -> Any:
        module_name, _, attribute = self.flow.partition(":")
        return getattr(importlib.import_module(module_name), attribute)


SPECS: list[DeploymentSpec] = [
    DeploymentSpec(
        name="bronze",
        flow="crypto_lakehouse.flows.ingest:ingest_archive",
        pool=TRANSFER_POOL,
        description="Copy the archive into bronze, verified and incremental.",
        tags=("ingest", "bronze"),
    ),
    DeploymentSpec(
        name="silver",
        flow="crypto_lakehouse.flows.silver:build_silver",
        pool=GENERAL_POOL,
        description="Turn verified bronze files into silver tables.",
        tags=("lakehouse", "silver"),
        optional=True,
    ),
    DeploymentSpec(
        name="maintain",
        flow="crypto_lakehouse.flows.maintenance:maintain_lake",
        pool=GENERAL_POOL,
        description="Daily table maintenance: compact small files, expire snapshots, "
        "remove orphan files on every silver and gold table.",
        tags=("lakehouse", "maintenance"),
        cron="30 3 * * *",
    ),
    DeploymentSpec(
        name="bronze-part",
        flow="crypto_lakehouse.flows.fanout:ingest_part",
        pool=TRANSFER_POOL,
        description="One share of a fanned-out ingest (started by flow ingest-fanout).",
        tags=("ingest", "bronze", "fanout"),
    ),
    DeploymentSpec(
        name="silver-part",
        flow="crypto_lakehouse.flows.fanout:silver_part",
        pool=GENERAL_POOL,
        description="One share of a fanned-out silver build (started by flow silver-fanout).",
        tags=("lakehouse", "silver", "fanout"),
    ),
]


@dataclass(frozen=True)
class Registered:
    name: str  # "flow-name/deployment-name"
    pool: str
    deployment_id: str


def available_specs() -> list[DeploymentSpec]:
    """Every spec whose flow imports; a missing optional flow is left out."""
    found = []
    for spec in SPECS:
        try:
            spec.load_flow()
        except (ImportError, AttributeError):
            if spec.optional:
                continue
            raise
        found.append(spec)
    return found


async def ensure_pools() -> list[str]:
    """Create the process work pools that do not exist yet; returns the ones created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    created = []
    async with get_client() as client:
        for name, description in POOLS.items():
            try:
                await client.read_work_pool(name)
                continue
            except ObjectNotFound:
                pass
            try:
                await client.create_work_pool(
                    WorkPoolCreate(
                        name=name,
                        type="process",
                        description=description,
                        base_job_template=ProcessWorker.get_default_base_job_template(),
                    )
                )
                created.append(name)
            except ObjectAlreadyExists:
                pass
    return created


async def deploy_all(
    specs: list[DeploymentSpec] | None = None, *, transfer_slots: int = DEFAULT_TRANSFER_SLOTS
) -> list[Registered]:
    """Pools, the transfer concurrency limit, then every deployment (updated if it exists)."""
    from prefect.deployments.runner import EntrypointType

    await ensure_pools()
    await ensure_transfer_limit(transfer_slots)
    registered = []
    for spec in specs if specs is not None else available_specs():
        flow = spec.load_flow()
        deployment = await flow.ato_deployment(
            name=spec.name,
            work_pool_name=spec.pool,
            parameters=spec.parameters or None,
            description=spec.description,
            tags=list(spec.tags),
            cron=spec.cron,
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        deployment_id = await deployment.aapply(work_pool_name=spec.pool)
        registered.append(Registered(f"{flow.name}/{spec.name}", spec.pool, str(deployment_id)))
    return registered
