"""The job's halt flag, which every stage polls: :class:`Halt` (a stop asked from outside, a
crashed worker thread, or the job ending), queue hand-offs that give up once halted, and
:class:`StopCheckingRunner`, which turns a stop into :class:`Stopped` at the next runner
call (or the one in flight, where the runtime can be interrupted)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from vdsr_deploy.io_names import ShapeProfile
from vdsr_deploy.runner import Runner, RunnerInfo

if TYPE_CHECKING:
    import torch

POLL = 0.05  # seconds between looks at the halt flag while waiting on a queue
END = object()  # the last entry a stage puts on its output queue


class Stopped(Exception):
    """Raised inside the job when a stop was requested."""


class Halt:
    """Whether the job is ending. ``stop``: the caller's stop request; ``error``: the first
    exception that ended a worker thread (a bug: the job ends with it rather than hang)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.error: BaseException | None = None
        self._ending = threading.Event()

    def halted(self) -> bool:
        if self.stop.is_set():
            self._ending.set()
        return self._ending.is_set()

    def end(self) -> None:
        """The job is ending (finished, stopped or failed): every stage winds down."""
        self._ending.set()

    def crash(self, error: BaseException) -> None:
        self.error = error
        self._ending.set()

    def put(self, target: queue.Queue[object], entry: object) -> bool:
        """Put ``entry`` on ``target``, waiting for room; False (not put) once halted."""
        while True:
            if self.halted():
                return False
            try:
                target.put(entry, timeout=POLL)
                return True
            except queue.Full:
                continue

    def get(self, source: queue.Queue[object]) -> object | None:
        """The next entry of ``source``, waiting for one; None once halted."""
        while True:
            if self.halted():
                return None
            try:
                return source.get(timeout=POLL)
            except queue.Empty:
                continue

    def interrupt_on_stop(self, runner: Runner) -> None:
        """Interrupt the runner call in flight when a stop is requested (returns when the
        job ends without one). The body of a thread of its own."""
        while not self.stop.wait(POLL):
            if self._ending.is_set():
                return
        runner.interrupt()


class StopCheckingRunner(Runner):
    """The job's runner, checking for a stop request before every call: the tiles of one
    big image take many calls, and a stopped job drops that image anyway."""

    def __init__(self, runner: Runner, halted: Callable[[], bool]) -> None:
        super().__init__()
        self._runner = runner
        self._halted = halted

    @property
    def info(self) -> RunnerInfo:
        return self._runner.info

    @property
    def profile(self) -> ShapeProfile | None:
        return self._runner.profile

    @property
    def tensor_device(self) -> str:
        return self._runner.tensor_device

    def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        if self._halted():
            raise Stopped
        try:
            return self._runner.infer(batch)
        except Exception:
            if self._halted():  # interrupted by the stop (Runner.interrupt)
                raise Stopped from None
            raise

    def infer_tensor(
        self, batch: torch.Tensor, *, stream: torch.cuda.Stream | None = None
    ) -> torch.Tensor:
        if self._halted():
            raise Stopped
        try:
            return self._runner.infer_tensor(batch, stream=stream)
        except Exception:
            if self._halted():
                raise Stopped from None
            raise

    def _infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        return self._runner.infer(batch)

