"""One benchmark setting while it is timed (:class:`Case`): what the harness fills in and the
record reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vdsr_deploy.bench.config import BenchSetting
from vdsr_deploy.bench.timing import Timer, Timings
from vdsr_deploy.bench.workload import Workload
from vdsr_deploy.planes.pipeline import PipelineConfig
from vdsr_deploy.runner import Runner

EventSink = Callable[[dict[str, Any]], None]


@dataclass
class Case:
    """One setting while it is timed: its pipeline, runner, workload and timings per path,
    and whether it still runs (``status`` ok, skipped or error, with the ``reason``)."""

    setting: BenchSetting
    pipeline_config: PipelineConfig
    runner: Runner | None = None
    workload: Workload | None = None
    timer: Timer | None = None
    runtime: Timings = field(default_factory=Timings)
    pipeline: Timings = field(default_factory=Timings)
    job: Timings = field(default_factory=Timings)
    device: Any = None  # the DeviceUpscaler of a runner that computes on CUDA
    device_batches: list[Any] = field(default_factory=list)  # the workload on that device
    status: str = "ok"
    reason: str = ""
    spent: float = 0.0

    def fail(self, status: str, reason: str, emit: EventSink) -> None:
        self.status, self.reason = status, reason
        emit({"event": status, "setting": self.setting.name, "reason": reason})
