"""Taking and summarising timings: :class:`Timer` (wall clock, plus CUDA events for a
runner on a CUDA device), :func:`latency_stats` (mean, min, percentiles) and
:func:`summarize` (latency and throughput of one timed path per image of a workload)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vdsr_deploy.bench.workload import Workload
from vdsr_deploy.errors import ConfigError


@dataclass
class Timings:
    """The timed runs of one path: wall-clock seconds, and CUDA event milliseconds when taken."""

    seconds: list[float] = field(default_factory=list)
    cuda_ms: list[float] = field(default_factory=list)


class Timer:
    """Wall clock always; CUDA events too when the runner runs on a CUDA device."""

    def __init__(self, cuda: bool) -> None:
        self._cuda = cuda

    def time(self, work: Callable[[], object], into: Timings) -> None:
        if self._cuda:
            import torch

            start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            stop = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            torch.cuda.synchronize()
            began = time.perf_counter()
            start.record()
            work()
            stop.record()
            torch.cuda.synchronize()
            into.seconds.append(time.perf_counter() - began)
            into.cuda_ms.append(float(start.elapsed_time(stop)))
            return
        began = time.perf_counter()
        work()
        into.seconds.append(time.perf_counter() - began)


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """Mean, min and p50/p90/p99 (numpy linear interpolation) in milliseconds."""
    if not seconds:
        raise ConfigError("expected at least one timing")
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "mean": float(ms.mean()),
        "min": float(ms.min()),
        "p50": float(np.percentile(ms, 50)),
        "p90": float(np.percentile(ms, 90)),
        "p99": float(np.percentile(ms, 99)),
    }


def summarize(timings: Timings, workload: Workload, flops: int) -> dict[str, Any]:
    """Latency percentiles and throughput of one path (per image of the workload)."""
    stats = latency_stats(timings.seconds)
    mean_s = stats["mean"] / 1000.0
    return {
        "repeats": len(timings.seconds),
        "latency_ms": stats,
        "images_per_second": 1.0 / mean_s,
        "megapixels_per_second": workload.output_pixels / mean_s / 1e6,
        "network_gflops_per_second": workload.network_pixels * flops / mean_s / 1e9,
        "equivalent_gflops_per_second": workload.output_pixels * flops / mean_s / 1e9,
        "halo_overhead": workload.network_pixels / workload.output_pixels,
        "cuda_event_ms": latency_stats([t / 1000.0 for t in timings.cuda_ms])
        if timings.cuda_ms
        else None,
    }
