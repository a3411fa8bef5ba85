"""What the stages hand each other: a :class:`Task` (one image whose output is being written
band by band), a :class:`HostBand` (one row band prepared on the host, waiting for the
runner), and :class:`BandsInFlight`, the host bands between preparation and their write."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.imageio import ImageWriter, OutputLayout
from vdsr_deploy.job.budget import MemoryBudget
from vdsr_deploy.job.config import WorkItem
from vdsr_deploy.job.report import Recorder
from vdsr_deploy.planes.tiling import Span

F32 = NDArray[np.float32]
BandKey = tuple[int, int]  # (image number in the job, band number in the image)


@dataclass
class Task:
    """One image in progress: ``spans`` are its bands' rows; ``waiting`` holds bands finished
    out of order until the rows before them are written (``next_band``)."""

    item: WorkItem
    replace: bool
    layout: OutputLayout
    bit_depth: int
    out_shape: tuple[int, int]
    spans: list[Span]
    writer: ImageWriter
    next_band: int = 0
    waiting: dict[int, list[NDArray[Any]]] = field(default_factory=dict)
    failed: bool = False
    finished: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def megapixels(self) -> float:
        return self.out_shape[0] * self.out_shape[1] / 1e6


def fail_task(task: Task, reason: str, recorder: Recorder) -> None:
    """Give up on ``task``'s output (its writer aborted, no file left) and record why; a task
    already failed or finished is left as it is."""
    with task.lock:
        if task.failed or task.finished:
            return
        task.failed = True
        task.waiting.clear()
        task.writer.abort()
    recorder.fail(task.item.source, reason)


@dataclass
class HostBand:
    """A band's network input (``y``: its window rows), its chroma and alpha (core rows only),
    the core rows within the window, and the bytes it holds of the band budget."""

    task: Task
    index: int
    y: F32
    chroma: F32 | None
    alpha: F32 | None
    core: slice
    reserved: int


class BandsInFlight:
    """Host bands handed to the runner, by key, until their output is written or dropped."""

    def __init__(self, budget: MemoryBudget) -> None:
        self._budget = budget
        self._bands: dict[BandKey, HostBand] = {}
        self._lock = threading.Lock()

    def add(self, key: BandKey, band: HostBand) -> None:
        with self._lock:
            self._bands[key] = band

    def get(self, key: BandKey) -> HostBand | None:
        return self._bands.get(key)

    def take(self, key: BandKey) -> HostBand:
        """The band of ``key``, no longer in flight (its bytes stay held for its write)."""
        with self._lock:
            return self._bands.pop(key)

    def drop(self, key: BandKey) -> None:
        """Forget ``key``'s band, if any, and give its bytes back to the budget."""
        with self._lock:
            band = self._bands.pop(key, None)
        if band is not None:
            self._budget.release(band.reserved)
