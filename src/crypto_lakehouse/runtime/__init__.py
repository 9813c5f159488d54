"""Facts about the machine a run executes on (CPU quota), for sizing parallelism.

A lower layer: it knows nothing of Prefect, storage or the CLI.
"""

from crypto_lakehouse.runtime.cpu import available_cpus, cgroup_cpu_limit, usable_cpus

__all__ = ["available_cpus", "cgroup_cpu_limit", "usable_cpus"]
