"""``vdsr upscale --cluster``: the batch job spread over a Ray cluster (``pip install
'vdsr-deploy[cluster]'``). Ray is imported only when a job runs.

:func:`run_cluster_job` takes the same :class:`~vdsr_deploy.job.JobConfig` as
:func:`~vdsr_deploy.job.run_job` and gives the same outputs, names, resume manifest and
report, plus where the work ran (see ``docs/cluster.md``).
"""

from __future__ import annotations

from vdsr_deploy.cluster.driver import (
    ClusterConfig,
    ClusterError,
    ClusterSummary,
    OpenRunner,
    Placement,
    local_runtime_env,
    plan_placement,
    run_cluster_job,
)

__all__ = [
    "ClusterConfig",
    "ClusterError",
    "ClusterSummary",
    "OpenRunner",
    "Placement",
    "local_runtime_env",
    "plan_placement",
    "run_cluster_job",
]
