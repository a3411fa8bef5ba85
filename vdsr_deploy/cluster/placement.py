"""Where a cluster job runs and how wide: its :class:`ClusterConfig`, joining (or starting)
Ray, and planning how many workers to place and what each asks for.

Ray is imported only inside :func:`connect`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vdsr_deploy.errors import ConfigError, VdsrError


class ClusterError(VdsrError):
    """The cluster cannot be reached, or cannot place or start the workers."""


@dataclass(frozen=True)
class ClusterConfig:
    """Where and how wide a job runs.

    ``address``: ``local`` (start Ray on this machine), ``auto`` (the cluster this machine
    belongs to), ``ray://host:port`` or ``host:port``. ``actors``: workers (0: one per GPU,
    else one per two CPUs). ``gpus_per_actor``/``cpus_per_actor``: what each asks Ray for
    (None: 1 GPU + 1 CPU on GPU clusters; half its share of the CPUs on CPU-only ones, so
    Ray's own tasks keep a core). ``retries``: times an image is retried after its worker
    died or failed. ``chunk``: images per call (0: about a quarter of a worker's share, at
    most 8). ``start_timeout``: seconds for the workers to be placed (Ray waits forever for
    resources a cluster lacks). ``stop_timeout``: seconds stopped workers get to finish.
    ``local_cpus``/``local_gpus``: resources declared by a ``local`` start (None: detected).
    """

    address: str = "local"
    actors: int = 0
    cpus_per_actor: float | None = None
    gpus_per_actor: float | None = None
    retries: int = 2
    chunk: int = 0
    start_timeout: float = 120.0
    stop_timeout: float = 30.0
    local_cpus: int | None = None
    local_gpus: int | None = None

    def __post_init__(self) -> None:
        if not self.address:
            raise ConfigError("cluster address: expected local, auto, ray://host:port or host:port")
        for name in ("actors", "retries", "chunk"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: expected >= 0, got {getattr(self, name)}")
        for name in ("cpus_per_actor", "gpus_per_actor"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name}: expected >= 0, got {value}")
        if self.start_timeout <= 0 or self.stop_timeout < 0:
            raise ConfigError("start_timeout must be > 0 and stop_timeout >= 0")


def connect(config: ClusterConfig) -> float:
    """Join or start Ray (reusing an instance this process already holds); returns seconds."""
    import logging

    import ray

    started = time.perf_counter()
    if ray.is_initialized():
        return 0.0
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if config.address == "local":
            ray.init(
                address="local",
                runtime_env=local_runtime_env(),
                num_cpus=config.local_cpus,
                num_gpus=config.local_gpus,
                include_dashboard=False,
                **options,
            )
        else:
            ray.init(address=config.address, **options)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise ClusterError(f"cannot reach the Ray cluster at {config.address}: {error}") from error
    return time.perf_counter() - started


def local_runtime_env() -> dict[str, Any]:
    """Workers of a ``local`` instance import the same vdsr_deploy as this process (so a
    checkout runs without being installed): its folder leads their PYTHONPATH."""
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [package_root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


@dataclass(frozen=True)
class Placement:
    """``actors`` workers, each asking Ray for ``cpus`` and ``gpus``; ``threads``: the CPU
    threads each worker's runner uses (0: its own default, on GPU workers)."""

    actors: int
    cpus: float
    gpus: float
    threads: int


def plan_placement(config: ClusterConfig, resources: dict[str, float], device: str) -> Placement:
    """How many workers, and what each asks for, given the cluster's total resources."""
    total_cpus = float(resources.get("CPU", 0.0))
    total_gpus = float(resources.get("GPU", 0.0)) if device != "cpu" else 0.0
    if total_gpus >= 1 and (config.gpus_per_actor is None or config.gpus_per_actor > 0):
        gpus = config.gpus_per_actor or 1.0
        actors = config.actors or max(1, int(total_gpus // gpus))
        share = total_cpus / actors if actors else 1.0
        cpus = config.cpus_per_actor if config.cpus_per_actor is not None else min(1.0, share)
        return Placement(actors, cpus, gpus, 0)
    actors = config.actors or max(1, int(total_cpus // 2))
    share = total_cpus / actors if total_cpus else 1.0
    cpus = config.cpus_per_actor if config.cpus_per_actor is not None else round(share / 2, 3)
    return Placement(actors, cpus, 0.0, max(1, round(share)))


def check_fits(placement: Placement, resources: dict[str, float]) -> None:
    """ClusterError when ``placement`` asks for more than ``resources`` hold (for a ``local``
    instance: no autoscaler, so what is missing never comes)."""
    for name, each in (("CPU", placement.cpus), ("GPU", placement.gpus)):
        need, have = placement.actors * each, resources.get(name, 0.0)
        if need > have + 1e-9:
            raise ClusterError(
                f"{placement.actors} workers asking for {each:g} {name} each need {need:g} {name}; "
                f"this Ray instance has {have:g} (lower --actors)"
            )


def describe_resources(resources: dict[str, float]) -> str:
    return f"{resources.get('CPU', 0):g} CPU, {resources.get('GPU', 0):g} GPU"
