"""``vdsr upscale --cluster``: the batch job spread over a Ray cluster (``pip install
'vdsr-deploy[cluster]'``). Ray is imported only when a job runs.

:func:`run_cluster_job` takes the same :class:`~vdsr_deploy.job.JobConfig` as
:func:`~vdsr_deploy.job.run_job` and gives the same outputs, names, resume manifest and
report, plus where the work ran (see ``docs/cluster.md``).

One job per module: :mod:`.placement` (the config, joining Ray, how many workers and what
each asks for), :mod:`.worker` (one Ray actor: stage, upscale, deliver a temporary),
:mod:`.pool` (the workers as the driver sees them), :mod:`.ledger` (plan, manifest records and
renames, failures and retries), :mod:`.report` (the summary's ``cluster`` section) and
:mod:`.driver` (the job lock and the run loop; the entry points).
"""

from __future__ import annotations

from vdsr_deploy.cluster.driver import OpenRunner, run_cluster_job
from vdsr_deploy.cluster.placement import (
    ClusterConfig,
    ClusterError,
    Placement,
    local_runtime_env,
    plan_placement,
)
from vdsr_deploy.job.ledger import ClusterSummary

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
