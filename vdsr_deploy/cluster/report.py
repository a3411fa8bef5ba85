"""What a cluster job reports beyond a single-machine one: the ``cluster`` section of its
:class:`~vdsr_deploy.job.ledger.ClusterSummary` (address, worker resources, start-up seconds, retries, per-node and
per-worker throughput), from the figures the driver collected per finished call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vdsr_deploy.cluster.placement import Placement
from vdsr_deploy.job.ledger import NodeStats
from vdsr_deploy.job.worker import WorkerInfo


@dataclass(frozen=True)
class Startup:
    """Where the job ran and what it took to start there."""

    address: str
    resources: dict[str, float]
    placement: Placement
    connect_seconds: float
    ready_seconds: float
    runner: str


def cluster_report(
    startup: Startup,
    seconds: float,
    retried: Sequence[dict[str, Any]],
    nodes: Mapping[str, NodeStats],
    workers: Mapping[int, WorkerInfo],
) -> dict[str, Any]:
    """The ``cluster`` section of a summary; throughput is per ``seconds`` of the job."""
    seconds = seconds or 1e-9
    placement = startup.placement
    return {
        "address": startup.address,
        "resources": startup.resources,
        "runner": startup.runner,
        "workers": placement.actors,
        "worker_resources": {"CPU": placement.cpus, "GPU": placement.gpus},
        "startup_seconds": {
            "connect": round(startup.connect_seconds, 3),
            "workers_ready": round(startup.ready_seconds, 3),
        },
        "retries": list(retried),
        "nodes": [
            {
                "node_id": node_id,
                "node_ip": stats.node_ip,
                "workers": sorted(stats.workers),
                "images": stats.images,
                "megapixels": round(stats.megapixels, 3),
                "busy_seconds": round(stats.busy_seconds, 3),
                "megapixels_per_second": round(stats.megapixels / seconds, 4),
            }
            for node_id, stats in sorted(nodes.items())
        ],
        "worker_placement": [
            {"worker": w.worker, "node_ip": w.node_ip, "pid": w.pid, "gpu_ids": list(w.gpu_ids)}
            for w in sorted(workers.values(), key=lambda w: w.worker)
        ],
    }
