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
from vdsr_deploy.runners.base import Runner
from vdsr_deploy.tiling import TileConfig

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16")
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
    precision: str = "fp32"
    provider: str = "cpu"
    weights: Path | None = None
    onnx: Path | None = None
    engine: Path | None = None
    engines_dir: Path | None = None
    threads: int = 0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend: expected one of {BACKENDS}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: expected one of {PRECISIONS}, got {self.precision!r}")
        if self.threads < 0:
            raise ConfigError(f"threads: expected >= 0 (0 = all cores), got {self.threads}")


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def resolve_backend(spec: RunnerSpec) -> str:
    """``auto``: TensorRT when it and a GPU are usable, else PyTorch on CUDA, else ONNX
    Runtime on CPU (faster than PyTorch on CPU, measured in benchmarks/), else PyTorch."""
    if spec.backend != "auto":
        return spec.backend
    if spec.device in ("auto", "cuda") or spec.device.startswith("cuda"):
        from vdsr_deploy.engine import tensorrt_available

        if tensorrt_available() and _cuda_available():
            return "tensorrt"
        if _cuda_available():
            return "torch"
    if spec.precision == "bf16":
        return "torch"
    return "onnxruntime" if onnxruntime_installed() else "torch"


def ort_device_id(spec: RunnerSpec) -> int:
    """The CUDA device index ONNX Runtime gets from ``--device``, or a ConfigError when the
    device contradicts the provider (ONNX Runtime runs where its provider runs)."""
    device = spec.device
    if device == "auto":
        return 0
    if device == "cpu":
        if spec.provider != "cpu":
            raise ConfigError(
                f"--device cpu contradicts --provider {spec.provider}: ONNX Runtime runs on the "
                "provider's device (use --provider cpu)"
            )
        return 0
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ConfigError(f"--device: expected auto, cpu, cuda or cuda:N, got {device!r}")
    if spec.provider == "cpu":
        raise ConfigError(
            f"--device {device}: ONNX Runtime was chosen with --provider cpu, which runs on the "
            "CPU; use --provider cuda or tensorrt for a GPU, or --device cpu"
        )
    return int(index or 0)


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def open_runner(spec: RunnerSpec, *, tiling: TileConfig, batch: int) -> Runner:
    """An inactive runner for ``spec``, with any artifact it needs built or found."""
    backend = resolve_backend(spec)
    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    engines_dir = spec.engines_dir or default_engines_dir()
    if backend == "torch":
        from vdsr_deploy.runners.torch import TorchRunner
        from vdsr_deploy.weights import load_weights

        model, _ = load_weights(spec.weights)
        return TorchRunner(model, device=spec.device, precision=spec.precision)
    if backend == "onnxruntime":
        from vdsr_deploy.runners.onnxruntime import OnnxRuntimeRunner, OrtOptions

        device_id = ort_device_id(spec)  # before exporting anything for it
        onnx_path = spec.onnx or _exported_onnx(
            spec, engines_dir, "fp16" if spec.precision == "fp16" else "fp32"
        )
        from vdsr_deploy.io_names import profile_for_tiles

        profile = profile_for_tiles(tiling, batch) if tiling.tile else None
        options = OrtOptions(
            provider=spec.provider,
            threads=spec.threads,
            cache_dir=engines_dir / "ort-trt-cache" if spec.provider == "tensorrt" else None,
            profile=profile,
            fp16=spec.precision == "fp16",
            device_id=device_id,
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


def _exported_onnx(spec: RunnerSpec, engines_dir: Path, precision: str) -> Path:
    from vdsr_deploy.export import ensure_onnx
    from vdsr_deploy.weights import load_weights

    model, info = load_weights(spec.weights)
    return ensure_onnx(model, info, precision, engines_dir)
