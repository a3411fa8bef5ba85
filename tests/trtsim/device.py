"""The simulated GPU behind the TensorRT simulator: device memory with a stated budget,
streams (work runs at once, or is recorded while a graph is captured), and the counters the
tests read (tiles computed, executions, peak memory).

"Device memory" is host memory: torch CPU tensors whose ``data_ptr()`` the simulated
TensorRT reads and writes, exactly as the real one reads and writes the addresses it is
given. The budget is bookkeeping: every allocation made through :class:`SimOps` (the
runner's buffers) or by the simulated TensorRT (an execution context's activation memory)
is counted against ``total_bytes``; one that would exceed it fails as a real allocation
would (``torch.cuda.OutOfMemoryError`` for torch allocations, None for a context).
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

GIB = 1 << 30


@dataclass
class SimGpu:
    """What the simulated cuda-python reports about the GPU."""

    name: str = "NVIDIA Simulated GPU"
    compute_capability: tuple[int, int] = (9, 0)
    multiprocessors: int = 132
    total_bytes: int = 80 * GIB


@dataclass
class Counters:
    executions: int = 0
    tiles_computed: int = 0  # batch rows executed by execute_async_v3 (live or replayed)
    shapes: list[tuple[int, ...]] = field(default_factory=list)
    builds: int = 0
    captures: int = 0
    replays: int = 0


class SimStream:
    def __init__(self, handle: int) -> None:
        self.handle = handle


class SimDevice:
    """The simulated GPU: memory bookkeeping, streams, graph recording, counters."""

    def __init__(self, gpu: SimGpu | None = None) -> None:
        self.gpu = gpu or SimGpu()
        self.used = 0
        self.peak = 0
        self.counters = Counters()
        self._recording: dict[int, list[Callable[[], None]]] = {}
        self._next = 1000
        self._lock = threading.Lock()

    # -- memory ----------------------------------------------------------------------------

    @property
    def free(self) -> int:
        return self.gpu.total_bytes - self.used

    def allocate(self, nbytes: int) -> bool:
        with self._lock:
            if self.used + nbytes > self.gpu.total_bytes:
                return False
            self.used += nbytes
            self.peak = max(self.peak, self.used)
            return True

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.used -= nbytes

    # -- streams and graphs ----------------------------------------------------------------

    def new_stream(self) -> SimStream:
        with self._lock:
            self._next += 1
            return SimStream(self._next)

    def enqueue(self, stream: int, work: Callable[[], None]) -> None:
        """Run ``work`` now (streams are in order and the CPU is synchronous), or record it
        while ``stream`` is capturing a graph."""
        recording = self._recording.get(stream)
        if recording is None:
            work()
        else:
            recording.append(work)

    def capture(self, stream: int, enqueue: Callable[[], None]) -> list[Callable[[], None]]:
        self._recording[stream] = []
        try:
            enqueue()
        finally:
            work = self._recording.pop(stream)
        self.counters.captures += 1
        return work


class SimGraph:
    def __init__(self, device: SimDevice, work: list[Callable[[], None]]) -> None:
        self.device, self.work = device, work

    def launch(self, stream: Any) -> None:
        self.device.counters.replays += 1
        for item in self.work:
            self.device.enqueue(stream.handle, item)


class SimOps:
    """:class:`vdsr_deploy.backends.tensorrt.streams.DeviceOps` on the simulated GPU: the
    stand-in for ``TorchCudaOps`` (torch CPU tensors as device memory, counted)."""

    device = "cpu"

    def __init__(self, sim: SimDevice) -> None:
        self.sim = sim

    def stream_of(self, stream: Any) -> SimStream:
        return SimStream(0)

    def new_stream(self) -> SimStream:
        return self.sim.new_stream()

    def zeros(self, count: int) -> torch.Tensor:
        nbytes = 4 * count
        if not self.sim.allocate(nbytes):
            raise torch.cuda.OutOfMemoryError(
                f"simulated GPU: cannot allocate {nbytes} bytes ({self.sim.free} free of "
                f"{self.sim.gpu.total_bytes})"
            )
        tensor = torch.zeros(count, dtype=torch.float32)
        weakref.finalize(tensor, self.sim.release, nbytes)  # given back when collected
        return tensor

    def empty_like(self, tensor: torch.Tensor, stream: Any) -> torch.Tensor:
        return torch.empty_like(tensor)

    def copy(self, target: torch.Tensor, source: torch.Tensor, stream: Any) -> None:
        self.sim.enqueue(stream.handle, lambda: target.copy_(source))

    def wait(self, stream: Any, other: Any) -> None:
        pass

    def keep_alive(self, tensor: torch.Tensor, stream: Any) -> None:
        pass

    def capture(self, stream: Any, enqueue: Callable[[], None]) -> SimGraph:
        return SimGraph(self.sim, self.sim.capture(stream.handle, enqueue))

    def synchronize(self, stream: Any) -> None:
        pass

    @contextlib.contextmanager
    def on_device(self) -> Iterator[None]:
        yield
