"""The one list of runtimes, and what a user's request (:class:`RunnerSpec`) means for them.

Adding a runtime is one module that declares a :class:`~vdsr_deploy.backends.descriptor.Backend`
plus one line in :data:`REGISTRY`; the CLI's ``--backend`` choices, the precisions each
backend accepts, "does this spec compute on CUDA?", availability, versions for reports,
validate's candidates and bench cases all read it. :func:`choose_backend` is ``--backend
auto`` as a decision with its reason (:class:`BackendChoice`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from vdsr_deploy.backends import onnxruntime, openvino, tensorrt, torch
from vdsr_deploy.backends.descriptor import Backend
from vdsr_deploy.backends.device import cuda_available, may_be_cuda
from vdsr_deploy.backends.onnxruntime.options import PROVIDERS
from vdsr_deploy.errors import ConfigError
from vdsr_deploy.model.identity import model_identity
from vdsr_deploy.precision.names import AUTO, CHOICES, check_precision

REGISTRY: dict[str, Backend] = {
    backend.name: backend
    for backend in (
        onnxruntime.BACKEND,
        torch.BACKEND,
        tensorrt.BACKEND,
        openvino.BACKEND,
    )
}
"""Every runtime, by ``--backend`` name."""
BACKEND_CHOICES = (AUTO, *REGISTRY)
"""What ``--backend`` accepts."""
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
"""What ``--device`` accepts (resolved by :func:`~vdsr_deploy.backends.device.resolve_device`)."""


def check_backend_precision(backend: str, precision: str) -> None:
    """A :class:`ConfigError` when ``backend`` has no ``precision`` path."""
    supported = REGISTRY[backend].precisions
    if precision not in supported:
        raise ConfigError(f"{backend} has no {precision} path (it has {', '.join(supported)})")


@dataclass(frozen=True)
class RunnerSpec:
    """Which runtime to use and how, as the user asked (``auto`` allowed for backend, device
    and precision). ``provider`` applies to onnxruntime (cpu, cuda, tensorrt).
    ``onnx``/``engine`` use a given artifact instead of building one.
    ``channels_last``/``allow_tf32`` apply to PyTorch, ``cuda_graphs`` to PyTorch on CUDA
    and TensorRT (benchmarks vary them)."""

    backend: str = AUTO
    device: str = AUTO
    precision: str = "fp32"
    provider: str = "cpu"
    weights: Path | None = None
    onnx: Path | None = None
    engine: Path | None = None
    engines_dir: Path | None = None
    threads: int = 0
    channels_last: bool = True
    allow_tf32: bool = False
    cuda_graphs: bool = True
    foreign_model: bool = False
    """Run a given ONNX file that is not a vdsr-deploy export (its I/O is checked still)."""

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_CHOICES:
            raise ConfigError(f"backend: expected one of {', '.join(BACKEND_CHOICES)}, got {self.backend!r}")
        check_precision(self.precision, CHOICES)
        if self.provider not in PROVIDERS:  # checked for every backend: a typo is never ignored
            raise ConfigError(f"provider: expected one of {', '.join(PROVIDERS)}, got {self.provider!r}")
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.backend != AUTO and self.precision != AUTO:
            check_backend_precision(self.backend, self.precision)
        if self.threads < 0:
            raise ConfigError(f"threads: expected >= 0 (0 = all cores), got {self.threads}")

    def model_identity(self) -> str:
        """:func:`~vdsr_deploy.model.identity.model_identity` of the files this spec names."""
        return model_identity(self.weights, self.onnx, self.engine)


@dataclass(frozen=True)
class BackendChoice:
    """Which backend a spec runs on, and why (for ``auto``, the CLI prints the reason)."""

    backend: str
    reason: str


def choose_backend(spec: RunnerSpec) -> BackendChoice:
    """``auto``: TensorRT when it is usable (TensorRT, cuda-python and a CUDA GPU), else
    PyTorch on CUDA, else the CPU path: ONNX Runtime (faster than PyTorch on the CPU,
    measured in benchmarks/) or PyTorch for bf16 or without onnxruntime."""
    if spec.backend != AUTO:
        return BackendChoice(spec.backend, "asked for")
    if may_be_cuda(spec.device) and cuda_available():
        blocked = REGISTRY["tensorrt"].unavailable(spec.device, spec.precision, spec.provider)
        if blocked is None:
            return BackendChoice("tensorrt", "TensorRT, cuda-python and a CUDA GPU are usable")
        return BackendChoice("torch", f"PyTorch on CUDA, not TensorRT: {blocked}")
    if spec.device.startswith("cuda"):
        return BackendChoice("torch", f"{spec.device} asked for, so PyTorch (it checks the GPU)")
    where = "no CUDA GPU" if spec.device == AUTO else f"device {spec.device}"
    if spec.precision == "bf16":
        return BackendChoice("torch", f"{where}: bf16 runs on PyTorch on the CPU")
    if spec.precision == "int8":
        return BackendChoice("onnxruntime", f"{where}: INT8 runs on ONNX Runtime on the CPU")
    if onnxruntime.installed():
        return BackendChoice("onnxruntime", f"{where}: ONNX Runtime on the CPU (faster than PyTorch there)")
    return BackendChoice("torch", f"{where} and onnxruntime is not installed: PyTorch on the CPU")


def backend_of(spec: RunnerSpec) -> Backend:
    """The descriptor of the backend ``spec`` runs on (``auto`` resolved)."""
    return REGISTRY[choose_backend(spec).backend]


def compute_device(spec: RunnerSpec) -> str:
    """Where ``spec`` computes (``cpu`` or a CUDA device string): the one answer to "does this
    spec run on CUDA?", from its backend's descriptor."""
    return backend_of(spec).compute_device(spec.device, spec.provider)


def runs_on_cuda(spec: RunnerSpec) -> bool:
    """Whether ``spec`` computes on a CUDA device."""
    return compute_device(spec).startswith("cuda")


def unavailable_reason(spec: RunnerSpec) -> str | None:
    """Why ``spec`` (``auto`` resolved) cannot run on this machine, or None when it can."""
    if spec.precision == AUTO:
        return None  # resolving auto picks a path this machine runs
    backend = backend_of(spec)
    return backend.unavailable(spec.device, spec.precision, spec.provider)


def resolved(spec: RunnerSpec) -> RunnerSpec:
    """``spec`` with ``auto`` backend replaced by the chosen one."""
    return replace(spec, backend=choose_backend(spec).backend)


def backend_versions() -> dict[str, str | None]:
    """Every runtime's packages and versions (None: not installed), importing nothing heavy."""
    versions: dict[str, str | None] = {}
    for backend in REGISTRY.values():
        versions.update(backend.versions())
    return versions
