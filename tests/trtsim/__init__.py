"""The TensorRT simulator for tests (never shipped): a stand-in ``tensorrt`` module
(:mod:`trtsim.tensorrt_sim`), the few cuda-python runtime calls vdsr_deploy makes
(:class:`SimCudart`), and a simulated GPU whose device memory is host memory with a stated
budget (:mod:`trtsim.device`). The rules it keeps, and where TensorRT documents each, are
in ``tests/trtsim/RULES.md``.

:func:`install` puts the simulator in place for this process: ``import tensorrt`` and
``from cuda.bindings import runtime`` get the simulated modules, the TensorRT runner's
device work (``TorchCudaOps``) becomes :class:`trtsim.device.SimOps`, the TensorRT backend
counts as available, and a TensorRT runner takes the device pipeline (as on a GPU, where
its tensors are CUDA tensors). Everything else (builder, engine cache, sidecars, runner,
execution pipeline, device pipeline, CLI) is the real code. :func:`uninstall` undoes it.

In another process: ``python tests/trtsim/vdsr.py ARGS`` is ``vdsr ARGS`` under the
simulator (environment: ``VDSR_TRTSIM_GPU_BYTES``, ``VDSR_TRTSIM_COMPUTE``,
``VDSR_TRTSIM_BUILD_SECONDS``).
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trtsim.device import GIB, SimDevice, SimGpu, SimOps
from trtsim.tensorrt_sim import module as tensorrt_module

__all__ = ["GIB", "SimGpu", "Simulator", "install", "uninstall"]


class Status(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidDevice = 101


@dataclass
class _Properties:
    name: bytes
    major: int
    minor: int
    totalGlobalMem: int
    multiProcessorCount: int


class SimCudart:
    """The ``cuda.bindings.runtime`` calls vdsr_deploy makes, answering for one simulated GPU."""

    cudaError_t = Status

    def __init__(self, sim: SimDevice) -> None:
        self.sim = sim

    def cudaGetErrorName(self, status: Status) -> tuple[Status, bytes]:
        return Status.cudaSuccess, Status(status).name.encode()

    def cudaGetErrorString(self, status: Status) -> tuple[Status, bytes]:
        return Status.cudaSuccess, b"simulated"

    def cudaGetDeviceCount(self) -> tuple[Status, int]:
        return Status.cudaSuccess, 1

    def cudaSetDevice(self, device: int) -> tuple[Status]:
        return (Status.cudaSuccess if device == 0 else Status.cudaErrorInvalidDevice,)

    def cudaRuntimeGetVersion(self) -> tuple[Status, int]:
        return Status.cudaSuccess, 12080

    def cudaDriverGetVersion(self) -> tuple[Status, int]:
        return Status.cudaSuccess, 12080

    def cudaMemGetInfo(self) -> tuple[Status, int, int]:
        return Status.cudaSuccess, self.sim.free, self.sim.gpu.total_bytes

    def cudaGetDeviceProperties(self, device: int) -> tuple[Status, Any]:
        gpu = self.sim.gpu
        return Status.cudaSuccess, _Properties(
            gpu.name.encode() + b"\0",
            gpu.compute_capability[0],
            gpu.compute_capability[1],
            gpu.total_bytes,
            gpu.multiprocessors,
        )


@dataclass
class Simulator:
    """The installed simulator: its GPU (memory, counters) and how to undo it."""

    device: SimDevice
    undo: list[Callable[[], None]] = field(default_factory=list)

    @property
    def counters(self) -> Any:
        return self.device.counters


_CURRENT: list[Simulator] = []


def _set(undo: list[Callable[[], None]], owner: Any, name: str, value: Any) -> None:
    missing = object()
    old = getattr(owner, name, missing)
    setattr(owner, name, value)
    undo.append(lambda: delattr(owner, name) if old is missing else setattr(owner, name, old))


def _set_module(undo: list[Callable[[], None]], name: str, value: types.ModuleType) -> None:
    old = sys.modules.get(name)
    sys.modules[name] = value
    undo.append(lambda: sys.modules.pop(name, None) if old is None else sys.modules.__setitem__(name, old))


def install(gpu: SimGpu | None = None, *, compute: str = "onnxruntime") -> Simulator:
    """Put the simulator in place (see the module docstring); ``compute``: ``onnxruntime``
    (the model's pixels) or ``passthrough`` (output = input, for sizes where pixels do not
    matter and ONNX Runtime on 2 CPU cores would take minutes)."""
    uninstall()
    from vdsr_deploy.backends import registry
    from vdsr_deploy.backends import tensorrt as trt_backend
    from vdsr_deploy.backends.tensorrt import library
    from vdsr_deploy.backends.tensorrt import runner as trt_runner
    from vdsr_deploy.bench import harness as bench_harness
    from vdsr_deploy.job import prepare as job_prepare
    from vdsr_deploy.planes import device_pipeline

    device = SimDevice(gpu)
    sim = Simulator(device)
    undo = sim.undo
    cudart = types.ModuleType("cuda.bindings.runtime")
    fake = SimCudart(device)
    for name in dir(fake):
        if name.startswith("cuda"):
            setattr(cudart, name, getattr(fake, name))
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart  # type: ignore[attr-defined]
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings  # type: ignore[attr-defined]
    cuda.__path__ = []  # a package
    bindings.__path__ = []
    _set_module(undo, "tensorrt", tensorrt_module(device, compute=compute))
    _set_module(undo, "cuda", cuda)
    _set_module(undo, "cuda.bindings", bindings)
    _set_module(undo, "cuda.bindings.runtime", cudart)
    library._SHARED_LOGGER.clear()  # a logger of an earlier (simulated) tensorrt module
    undo.append(library._SHARED_LOGGER.clear)
    _set(undo, trt_runner, "TorchCudaOps", lambda index: SimOps(device))

    def unavailable(device_name: str, precision: str, provider: str) -> str | None:
        return None

    backend = dataclasses.replace(registry.REGISTRY["tensorrt"], unavailable=unavailable)
    _set(undo, trt_backend, "BACKEND", backend)
    old_backend = registry.REGISTRY["tensorrt"]
    registry.REGISTRY["tensorrt"] = backend
    undo.append(lambda: registry.REGISTRY.__setitem__("tensorrt", old_backend))

    original = device_pipeline.use_device_path

    def use_device_path(runner: Any) -> bool:
        return runner.info.backend == "tensorrt" or original(runner)

    _set(undo, device_pipeline, "use_device_path", use_device_path)
    # the benchmark times the simulated device by the wall clock (no CUDA events on the CPU)
    _set(undo, bench_harness, "on_cuda", lambda runner: runner.tensor_device.startswith("cuda"))
    _set(undo, job_prepare, "use_device_path", use_device_path)
    _CURRENT.append(sim)
    return sim


def uninstall() -> None:
    while _CURRENT:
        sim = _CURRENT.pop()
        for step in reversed(sim.undo):
            step()
