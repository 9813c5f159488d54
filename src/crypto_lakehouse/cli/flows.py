"""`crypto-lakehouse flows deploy` and `crypto-lakehouse worker --pool P`.

Both talk to the Prefect server in `PREFECT_API_URL`; when it (or any other setting) is
missing and the local stack has been started, the stack's values fill the gaps.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from crypto_lakehouse.cli._common import console, handle_errors, load_settings
from crypto_lakehouse.config import Settings
from crypto_lakehouse.errors import ConfigError
from crypto_lakehouse.flows.deployments import PoolType  # no Prefect import
from crypto_lakehouse.stack.manager import LocalStack

app = typer.Typer(help="Prefect deployments and work pools for the lakehouse flows.")


def use_stack_environment() -> Settings:
    """Settings from the environment, with the local stack's values where env has none.

    Writes the filled-in values into `os.environ` (this is the process edge) so Prefect and
    child processes (workers, flow runs) see the same server and endpoints.
    """
    settings = load_settings()
    stack = LocalStack.from_settings(settings)
    if stack.initialised:
        filled = [key for key in stack.env() if key not in os.environ]
        for key, value in stack.env().items():
            os.environ.setdefault(key, value)
        if filled:
            stack.require_running()  # StackError naming what is down, not a timeout later
        settings = load_settings()
    if not os.environ.get("PREFECT_API_URL"):
        raise ConfigError(
            "PREFECT_API_URL is not set and no local stack was found: "
            "run `crypto-lakehouse stack up`"
        )
    return settings


@app.command()
@handle_errors
def deploy(
    transfer_slots: int | None = typer.Option(
        None,
        min=1,
        max=1024,
        help="Size of the s5cmd-transfers concurrency limit, set even when it exists "
        "(default: TRANSFER_SLOTS, 4).",
    ),
    pool_type: Annotated[
        PoolType,
        typer.Option(
            "--pool-type", help="Type of the work pools: local process workers or Kubernetes Jobs."
        ),
    ] = PoolType.PROCESS,
    job_templates: Annotated[
        Path | None,
        typer.Option(
            "--job-templates",
            help="Folder with POOL.json base job templates (e.g. deploy/k8s/base/prefect/"
            "job-templates); applied to existing pools too. Default: Prefect's for the type.",
        ),
    ] = None,
    parallel: int | None = typer.Option(
        None,
        min=1,
        max=64,
        help="In-run parallelism of each deployment (default: the flow run's CPU quota).",
    ),
) -> None:
    """Create or update the work pools, the transfer concurrency limit and every deployment."""
    settings = use_stack_environment()
    from crypto_lakehouse.flows.deployments import deploy, load_job_templates

    slots = transfer_slots or settings.transfer_slots
    templates = load_job_templates(job_templates) if job_templates is not None else None
    done = asyncio.run(
        deploy(
            transfer_slots=slots,
            pool_type=pool_type,
            job_templates=templates,
            parallel=parallel,
        )
    )
    pools = Table("work pool", "type", "template")
    for name, change in done.pools.items():
        pools.add_row(name, pool_type.value, change.value)
    console.print(pools)
    console.print(f"limit s5cmd-transfers: {slots} slots ({done.limit.value})")
    table = Table("deployment", "work pool", "id")
    for item in done.registered:
        table.add_row(item.name, item.pool, item.deployment_id)
    console.print(table)
    console.print("Start a worker per pool: [bold]crypto-lakehouse worker --pool POOL[/]")


@handle_errors
def worker(
    pool: str = typer.Option(..., "--pool", help="Work pool to take flow runs from."),
    poll_seconds: int = typer.Option(5, min=1, help="How often the worker asks for runs."),
    limit: int | None = typer.Option(None, help="Most flow runs at once in this worker."),
) -> None:
    """Run a Prefect process worker for POOL in the foreground (stop it with Ctrl-C).

    The worker replaces this process, so its PID is this command's PID; its flow runs
    inherit this environment (endpoints and credentials).
    """
    from crypto_lakehouse.flows.deployments import POOLS
    from crypto_lakehouse.stack.prefect_server import prefect_binary

    if pool not in POOLS:
        raise ConfigError(f"unknown pool {pool!r}; the pools are {', '.join(POOLS)}")
    use_stack_environment()
    env = dict(os.environ)
    env["PREFECT_WORKER_QUERY_SECONDS"] = str(poll_seconds)
    argv = [prefect_binary(), "worker", "start", "--pool", pool, "--type", "process"]
    if limit is not None:
        argv += ["--limit", str(limit)]
    console.print(f"worker for [bold]{pool}[/] at {env['PREFECT_API_URL']}")
    os.execve(argv[0], argv, env)  # noqa: S606 - fixed argv, no shell
