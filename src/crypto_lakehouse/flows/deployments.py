"""Work pools and deployments, apart from the flow code (they only name flows by module path).

Two work pools, as in the design:

- `s5cmd-optimized-pool`: transfer-heavy flows (ingest); its workers run s5cmd.
- `crypto-data-pool`: general flows (silver/gold builds, reports).

Both are of one type per installation: `process` (local workers, the default) or
`kubernetes` (each flow run a Job, as in deploy/k8s). A new pool gets the base job template
given (`job_templates`, e.g. deploy/k8s/base/prefect/job-templates/POOL.json) or Prefect's
default for its type. A given template is applied to a pool that exists too, so editing a
template and deploying again changes what the next flow run gets; the `env` values an
operator set on the pool (endpoints, keys: never in git) are kept unless the template names
them. A pool's type cannot change in Prefect: another type is refused with what to do.

Deployments use module-path entrypoints (`crypto_lakehouse.flows.ingest.ingest_archive`):
a worker imports the installed package, so nothing is uploaded or cloned and it works
offline. Workers take their settings (endpoints, credentials) from their own environment.
"""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.flows.limits import LimitChange, ensure_transfer_limit

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
        name="daily",
        flow="crypto_lakehouse.flows.update:daily_update",
        pool=TRANSFER_POOL,  # its ingest step runs s5cmd
        description="Yesterday's archive files into bronze, then silver and gold, one run.",
        tags=("ingest", "lakehouse", "daily"),
        cron="0 2 * * *",  # Binance has published the previous UTC day by then
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
    # The fan-out parents. The ingest parent works through pieces like its children, so a
    # worker slot it holds is not wasted, and children no slot took are cancelled once every
    # piece is taken. The silver parent only waits: it runs on the transfer pool so it never
    # holds a slot of the pool its children need.
    DeploymentSpec(
        name="bronze-fanout",
        flow="crypto_lakehouse.flows.fanout:ingest_fanout",
        pool=TRANSFER_POOL,
        description="A large ingest shared by child runs of ingest-part/bronze-part.",
        tags=("ingest", "bronze", "fanout"),
    ),
    DeploymentSpec(
        name="silver-fanout",
        flow="crypto_lakehouse.flows.fanout:silver_fanout",
        pool=TRANSFER_POOL,
        description="A large silver build split by table over runs of silver-part/silver-part.",
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


class PoolType(StrEnum):
    PROCESS = "process"
    KUBERNETES = "kubernetes"


class PoolChange(StrEnum):
    CREATED = "created"
    UPDATED = "updated"  # its base job template (or description) was replaced
    UNCHANGED = "unchanged"


# Flow parameters that set in-run parallelism; `deploy_all(parallel=N)` gives N to each
# deployment whose flow has one (ingest flows: the `request` field). Unset, a run uses the
# CPUs its container may use.
PARALLEL_PARAMETER = "parallel"
REQUEST_PARAMETER = "request"  # an IngestRequest (flows/target.py)
REQUEST_PARALLEL_FIELD = "parallel_batches"


def load_job_templates(directory: Path) -> dict[str, dict[str, Any]]:
    """`POOL.json` of each pool found in `directory` (pools without a file: none).

    Raises ConfigError when the folder is missing, holds no pool's file, or a file is not a
    base job template (JSON with `job_configuration` and `variables`).
    """
    if not directory.is_dir():
        raise ConfigError(f"job template folder {directory} does not exist")
    templates: dict[str, dict[str, Any]] = {}
    for pool in POOLS:
        path = directory / f"{pool}.json"
        if not path.exists():
            continue
        try:
            template = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"job template {path}: {exc}") from exc
        if not isinstance(template, dict) or not {"job_configuration", "variables"} <= set(
            template
        ):
            raise ConfigError(
                f"job template {path}: needs `job_configuration` and `variables` "
                "(a Prefect base job template)"
            )
        templates[pool] = template
    if not templates:
        raise ConfigError(
            f"job template folder {directory} holds none of {', '.join(f'{p}.json' for p in POOLS)}"
        )
    return templates


async def default_job_template(pool_type: PoolType) -> dict[str, Any]:
    """Prefect's own base job template for a pool type (kubernetes: from the server's
    bundled worker metadata, so prefect-kubernetes need not be installed here)."""
    from prefect.workers.process import ProcessWorker
    from prefect.workers.utilities import get_default_base_job_template_for_infrastructure_type

    if pool_type is PoolType.PROCESS:
        return ProcessWorker.get_default_base_job_template()
    template = await get_default_base_job_template_for_infrastructure_type(pool_type.value)
    if not template:
        raise ConfigError(
            f"Prefect has no default job template for {pool_type.value!r} pools here: "
            "pass --job-templates DIR"
        )
    return template


async def ensure_pools(
    pool_type: PoolType | None = None,
    job_templates: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, PoolChange]:
    """Make each pool exist with `pool_type` and its template; what happened to each.

    With a `pool_type` (what `flows deploy` passes), a pool that exists gets its template
    from `job_templates` (keeping the pool's own `env` values the template does not name)
    and the description, when they differ; one of another type is refused with a
    ConfigError (Prefect cannot change a pool's type). Without one (a flow run making sure
    its child deployments exist), missing pools are created as process pools and existing
    ones are left as they are, whatever their type and template.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    declared = pool_type is not None
    kind = pool_type or PoolType.PROCESS
    templates = dict(job_templates or {})
    default: dict[str, Any] | None = None
    changes: dict[str, PoolChange] = {}
    async with get_client() as client:
        for name, description in POOLS.items():
            given = templates.get(name)
            if given is None:
                default = default or await default_job_template(kind)
            template = given if given is not None else default
            assert template is not None
            try:
                pool = await client.read_work_pool(name)
            except ObjectNotFound:
                try:
                    await client.create_work_pool(
                        WorkPoolCreate(
                            name=name,
                            type=kind.value,
                            description=description,
                            base_job_template=template,
                        )
                    )
                    changes[name] = PoolChange.CREATED
                    continue
                except ObjectAlreadyExists:  # another deploy made it meanwhile
                    pool = await client.read_work_pool(name)
            if not declared:
                changes[name] = PoolChange.UNCHANGED
                continue
            if pool.type != kind.value:
                raise ConfigError(
                    f"work pool {name} is of type {pool.type!r}, not {kind.value!r}, and "
                    f"Prefect cannot change a pool's type: deploy with --pool-type {pool.type}, "
                    f"or delete it first (prefect work-pool delete {name})"
                )
            wanted = (
                keep_env_defaults(given, pool.base_job_template)
                if given is not None
                else pool.base_job_template
            )
            if pool.base_job_template == wanted and pool.description == description:
                changes[name] = PoolChange.UNCHANGED
                continue
            await client.update_work_pool(
                name, WorkPoolUpdate(base_job_template=wanted, description=description)
            )
            changes[name] = PoolChange.UPDATED
    return changes


def keep_env_defaults(template: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """`template` with the `env` job-variable values of `current` it does not name itself."""
    kept = _env_variable(current).get("default")
    if not isinstance(kept, dict) or not kept or not _env_variable(template):
        return template
    merged = copy.deepcopy(template)
    env = _env_variable(merged)
    env["default"] = {**kept, **(env.get("default") or {})}
    return merged


def _env_variable(template: dict[str, Any]) -> dict[str, Any]:
    env = template.get("variables", {}).get("properties", {}).get("env")
    return env if isinstance(env, dict) else {}


def with_parallel(spec: DeploymentSpec, flow: Any, parallel: int | None) -> dict[str, Any]:
    """The spec's parameters, plus `parallel` for the flow's in-run parallelism parameter:
    `parallel`, or the `parallel_batches` field of an ingest flow's `request` (a run's own
    `request` keeps it unless it sets the field: `flows.ingest.deployed_request`)."""
    parameters = dict(spec.parameters)
    if parallel is None:
        return parameters
    accepted = flow.parameters.properties
    if PARALLEL_PARAMETER in accepted:
        parameters[PARALLEL_PARAMETER] = parallel
    elif REQUEST_PARAMETER in accepted:
        request = dict(parameters.get(REQUEST_PARAMETER) or {})
        parameters[REQUEST_PARAMETER] = {**request, REQUEST_PARALLEL_FIELD: parallel}
    return parameters


@dataclass(frozen=True)
class Deployed:
    """What `deploy` did: each pool's change, the transfer limit's, the deployments."""

    pools: dict[str, PoolChange]
    limit: LimitChange
    registered: list[Registered]


async def deploy(
    specs: list[DeploymentSpec] | None = None,
    *,
    transfer_slots: int | None = None,
    pool_type: PoolType | None = None,
    job_templates: Mapping[str, dict[str, Any]] | None = None,
    parallel: int | None = None,
) -> Deployed:
    """Pools, the transfer concurrency limit, then every deployment (updated if it exists).

    `transfer_slots` sizes (or resizes) `s5cmd-transfers`; None keeps its size. `parallel`
    becomes each deployment's in-run parallelism parameter; None leaves it to the run
    (capped by its container's CPU quota). See `ensure_pools` for types and templates.
    """
    from prefect.types.entrypoint import EntrypointType

    pools = await ensure_pools(pool_type, job_templates)
    limit = await ensure_transfer_limit(transfer_slots)
    registered = []
    for spec in specs if specs is not None else available_specs():
        flow = spec.load_flow()
        deployment = await flow.ato_deployment(
            name=spec.name,
            work_pool_name=spec.pool,
            parameters=with_parallel(spec, flow, parallel) or None,
            description=spec.description,
            tags=list(spec.tags),
            cron=spec.cron,
            entrypoint_type=EntrypointType.MODULE_PATH,
        )
        deployment_id = await deployment.aapply(work_pool_name=spec.pool)
        registered.append(Registered(f"{flow.name}/{spec.name}", spec.pool, str(deployment_id)))
    return Deployed(pools, limit, registered)


async def deploy_all(specs: list[DeploymentSpec] | None = None, **options: Any) -> list[Registered]:
    """`deploy` (same options), returning only the registered deployments."""
    return (await deploy(specs, **options)).registered
