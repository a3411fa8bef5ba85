"""Choosing and opening a runner: the load/build step, kept apart from running.

:func:`open_runner` resolves ``auto``, loads the weights, exports the ONNX (verified) or
finds/builds the TensorRT engine when the backend needs one, and returns an *inactive*
runner; use it as ``with open_runner(...) as runner:``.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from vdsr_deploy.errors import BackendUnavailableError, ConfigError
from vdsr_deploy.precision import CHOICES, check_backend_precision, check_precision
from vdsr_deploy.runners.base import Runner
from vdsr_deploy.tiling import TileConfig

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
ENGINES_DIR_ENV = "VDSR_ENGINES_DIR"


def default_engines_dir() -> Path:
    """``$VDSR_ENGINES_DIR``, else ``./engines`` (where built ONNX/engines land)."""
    return Path(os.environ.get(ENGINES_DIR_ENV, "engines"))


@dataclass(frozen=True)
class RunnerSpec:
    """Which runtime to use and how. ``provider`` applies to onnxruntime (cpu, cuda,
    tensorrt). ``onnx``/``engine`` use a given artifact instead of building one."""

    backend: str = "auto"
    device: str = "auto"
    precision: str = "auto"
    provider: str = "cpu"
    weights: Path | None = None
    onnx: Path | None = None
    engine: Path | None = None
    engines_dir: Path | None = None
    threads: int = 0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend: expected one of {BACKENDS}, got {self.backend!r}")
        check_precision(self.precision, CHOICES)
        if self.backend != "auto" and self.precision != "auto":
            check_backend_precision(self.backend, self.precision)
        if self.threads < 0:
            raise ConfigError(f"threads: expected >= 0 (0 = all cores), got {self.threads}")


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def resolve_backend(spec: RunnerSpec) -> str:
    """``auto``: TensorRT when it and a GPU are usable, else PyTorch on CUDA, else ONNX
    Runtime on CPU (faster than PyTorch on CPU, measured in benchmarks/), else PyTorch."""
    if spec.backend != "auto":
        return spec.backend
    from vdsr_deploy.precision import nvidia_driver_present

    if spec.device.startswith("cuda") or (spec.device == "auto" and nvidia_driver_present()):
        from vdsr_deploy.engine import tensorrt_available

        if tensorrt_available() and _cuda_available():
            return "tensorrt"
        if _cuda_available():
            return "torch"
    if spec.precision == "bf16":
        return "torch"
    if spec.precision == "int8":
        return "onnxruntime"
    return "onnxruntime" if onnxruntime_installed() else "torch"


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def open_runner(spec: RunnerSpec, *, tiling: TileConfig, batch: int) -> Runner:
    """An inactive runner for ``spec``, with any artifact it needs built or found
    (``auto`` precision is resolved first: see :func:`vdsr_deploy.fastpath.resolve_spec`)."""
    engines_dir = spec.engines_dir or default_engines_dir()
    if spec.precision == "auto":
        from vdsr_deploy.fastpath import resolve_spec

        spec, _ = resolve_spec(spec, engines_dir)
    backend = resolve_backend(spec)
    check_backend_precision(backend, spec.precision)
    if spec.threads and backend == "torch":
        import torch

        torch.set_num_threads(spec.threads)
    if backend == "torch":
        from vdsr_deploy.runners.torch import TorchRunner
        from vdsr_deploy.weights import load_weights

        model, _ = load_weights(spec.weights)
        return TorchRunner(model, device=spec.device, precision=spec.precision)
    if backend == "onnxruntime":
        from vdsr_deploy.runners.onnxruntime import OnnxRuntimeRunner, OrtOptions

        onnx_path = spec.onnx or _ort_model(spec, engines_dir)
        from vdsr_deploy.io_names import profile_for_tiles

        profile = profile_for_tiles(tiling, batch) if tiling.tile else None
        options = OrtOptions(
            provider=spec.provider,
            threads=spec.threads,
            cache_dir=engines_dir / "ort-trt-cache" if spec.provider == "tensorrt" else None,
            profile=profile,
            fp16=spec.precision == "fp16",
            optimized_dir=engines_dir / "ort-optimized" if spec.provider == "cpu" else None,
        )
        return OnnxRuntimeRunner(onnx_path, options)
    if backend == "tensorrt":
        from vdsr_deploy.engine import create_tensorrt_runner, require_tensorrt

        require_tensorrt()  # before exporting anything for it
        precision = spec.precision if spec.precision in ("fp16", "fp32") else "fp16"
        given_onnx: Path | None = spec.onnx
        if spec.engine is None and given_onnx is None:
            given_onnx = _exported_onnx(spec, engines_dir, precision)
        return create_tensorrt_runner(
            onnx_path=given_onnx,
            engine_path=spec.engine,
            engines_dir=engines_dir,
            tiling=tiling,
            batch=batch,
            precision=precision,
        )
    raise BackendUnavailableError(f"unknown backend {backend!r}")


def _ort_model(spec: RunnerSpec, engines_dir: Path) -> Path:
    """The ONNX that ONNX Runtime runs for ``spec``: the cached INT8 model (built on first
    use), or the exported FP32/FP16 graph (found from the weights file without torch when
    it is already there)."""
    from vdsr_deploy.fastpath import cached_onnx, int8_artifact

    if spec.precision == "int8":
        return int8_artifact(spec, engines_dir).path
    precision = "fp16" if spec.precision == "fp16" else "fp32"
    return cached_onnx(spec.weights, engines_dir, precision) or _exported_onnx(spec, engines_dir, precision)


def _exported_onnx(spec: RunnerSpec, engines_dir: Path, precision: str) -> Path:
    from vdsr_deploy.export import ensure_onnx
    from vdsr_deploy.weights import load_weights

    model, info = load_weights(spec.weights)
    return ensure_onnx(model, info, precision, engines_dir)
