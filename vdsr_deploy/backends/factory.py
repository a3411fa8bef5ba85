"""The one runner factory: backend name -> availability check + opener.

:func:`open_runner` resolves ``auto``, checks the backend can run here, loads the weights,
exports the ONNX (verified) or finds/builds the TensorRT engine when the backend needs one,
and returns an *inactive* runner; use it as ``with open_runner(...) as runner:``.
``vdsr upscale``, ``vdsr validate`` and ``vdsr bench`` all open their runners here.
:func:`unavailable_reason` answers "can this spec run here?" without opening anything (a
sentence, or None), so callers can skip a runtime with the reason instead of failing.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vdsr_deploy.backends.base import Runner
from vdsr_deploy.backends.device import cuda_available, cuda_index
from vdsr_deploy.backends.tensorrt.cache import (
    DEFAULT_CONTEXTS,
    DEFAULT_OPTIMIZATION_LEVEL,
    DEFAULT_WORKSPACE_BYTES,
)
from vdsr_deploy.errors import BackendUnavailableError, ConfigError
from vdsr_deploy.tiling import TileConfig

if TYPE_CHECKING:
    from vdsr_deploy.backends.tensorrt.runner import TensorRTRunner

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16", "bf16")
ENGINES_DIR_ENV = "VDSR_ENGINES_DIR"


def default_engines_dir() -> Path:
    """``$VDSR_ENGINES_DIR``, else ``./engines`` (where built ONNX/engines land)."""
    return Path(os.environ.get(ENGINES_DIR_ENV, "engines"))


@dataclass(frozen=True)
class RunnerSpec:
    """Which runtime to use and how. ``provider`` applies to onnxruntime (cpu, cuda,
    tensorrt). ``onnx``/``engine`` use a given artifact instead of building one.
    ``channels_last``/``allow_tf32`` apply to PyTorch (benchmarks vary them)."""

    backend: str = "auto"
    device: str = "auto"
    precision: str = "fp32"
    provider: str = "cpu"
    weights: Path | None = None
    onnx: Path | None = None
    engine: Path | None = None
    engines_dir: Path | None = None
    threads: int = 0
    channels_last: bool = True
    allow_tf32: bool = False

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend: expected one of {BACKENDS}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision: expected one of {PRECISIONS}, got {self.precision!r}")
        if self.threads < 0:
            raise ConfigError(f"threads: expected >= 0 (0 = all cores), got {self.threads}")


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def _wants_cuda(device: str) -> bool:
    return device in ("auto", "cuda") or device.startswith("cuda:")


def resolve_backend(spec: RunnerSpec) -> str:
    """``auto``: TensorRT when it and a GPU are usable, else PyTorch on CUDA, else ONNX
    Runtime on CPU (faster than PyTorch on CPU, measured in benchmarks/), else PyTorch."""
    if spec.backend != "auto":
        return spec.backend
    if _wants_cuda(spec.device):
        from vdsr_deploy.backends.tensorrt.library import tensorrt_available

        if tensorrt_available() and cuda_available():
            return "tensorrt"
        if cuda_available():
            return "torch"
    if spec.precision == "bf16":
        return "torch"
    return "onnxruntime" if onnxruntime_installed() else "torch"


# ----------------------------------------------------------------------------------------
# Availability: a sentence saying why a spec cannot run here, or None


def _torch_unavailable(spec: RunnerSpec) -> str | None:
    from vdsr_deploy.backends.device import resolve_device

    try:
        device = resolve_device(spec.device)
    except BackendUnavailableError as error:
        return str(error)
    if spec.precision == "fp16" and device.type != "cuda":
        return "PyTorch fp16 needs a CUDA device (bf16 is the CPU half-precision path)"
    return None


def _onnxruntime_unavailable(spec: RunnerSpec) -> str | None:
    if not onnxruntime_installed():
        return "onnxruntime is not installed: pip install 'vdsr-deploy[cpu]' (or [gpu] for CUDA)"
    return None


def _tensorrt_unavailable(spec: RunnerSpec) -> str | None:
    from vdsr_deploy.backends.tensorrt.library import tensorrt_available, tensorrt_status

    if not tensorrt_available():
        return f"TensorRT is not usable here: {tensorrt_status()}"
    if not cuda_available():
        return "TensorRT needs a CUDA GPU; PyTorch sees none"
    return None


# ----------------------------------------------------------------------------------------
# Openers: an inactive runner, with any artifact it needs built or found


def _open_torch(spec: RunnerSpec, tiling: TileConfig, batch: int) -> Runner:
    from vdsr_deploy.backends.torch import TorchRunner
    from vdsr_deploy.weights import load_weights

    model, _ = load_weights(spec.weights)
    return TorchRunner(
        model,
        device=spec.device,
        precision=spec.precision,
        channels_last=spec.channels_last,
        allow_tf32=spec.allow_tf32,
    )


def _open_onnxruntime(spec: RunnerSpec, tiling: TileConfig, batch: int) -> Runner:
    from vdsr_deploy.backends.onnxruntime import OnnxRuntimeRunner, OrtOptions
    from vdsr_deploy.io_names import profile_for_tiles

    engines_dir = spec.engines_dir or default_engines_dir()
    onnx_path = spec.onnx or _exported_onnx(
        spec, engines_dir, "fp16" if spec.precision == "fp16" else "fp32"
    )
    profile = profile_for_tiles(tiling, batch) if tiling.tile else None
    options = OrtOptions(
        provider=spec.provider,
        threads=spec.threads,
        cache_dir=engines_dir / "ort-trt-cache" if spec.provider == "tensorrt" else None,
        profile=profile,
        fp16=spec.precision == "fp16",
    )
    return OnnxRuntimeRunner(onnx_path, options)


def _open_tensorrt(spec: RunnerSpec, tiling: TileConfig, batch: int) -> Runner:
    from vdsr_deploy.backends.tensorrt.library import require_tensorrt

    require_tensorrt()  # before exporting anything for it
    engines_dir = spec.engines_dir or default_engines_dir()
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
        device=cuda_index(spec.device),
    )


@dataclass(frozen=True)
class Backend:
    """One runtime as the factory sees it: why it cannot run a spec (None: it can), and
    how to open an inactive runner for a spec."""

    name: str
    unavailable: Callable[[RunnerSpec], str | None]
    open: Callable[[RunnerSpec, TileConfig, int], Runner]


REGISTRY: dict[str, Backend] = {
    "torch": Backend("torch", _torch_unavailable, _open_torch),
    "onnxruntime": Backend("onnxruntime", _onnxruntime_unavailable, _open_onnxruntime),
    "tensorrt": Backend("tensorrt", _tensorrt_unavailable, _open_tensorrt),
}


def unavailable_reason(spec: RunnerSpec) -> str | None:
    """Why ``spec`` (``auto`` resolved) cannot run on this machine, or None when it can."""
    backend = resolve_backend(spec)
    return REGISTRY[backend].unavailable(replace(spec, backend=backend))


def open_runner(spec: RunnerSpec, *, tiling: TileConfig, batch: int) -> Runner:
    """An inactive runner for ``spec``, with any artifact it needs built or found;
    BackendUnavailableError (the reason) when the runtime cannot run here."""
    backend = resolve_backend(spec)
    spec = replace(spec, backend=backend)
    reason = REGISTRY[backend].unavailable(spec)
    if reason is not None:
        raise BackendUnavailableError(reason)
    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    return REGISTRY[backend].open(spec, tiling, batch)


def _exported_onnx(spec: RunnerSpec, engines_dir: Path, precision: str) -> Path:
    from vdsr_deploy.export import ensure_onnx
    from vdsr_deploy.weights import load_weights

    model, info = load_weights(spec.weights)
    return ensure_onnx(model, info, precision, engines_dir)


def create_tensorrt_runner(
    *,
    onnx_path: Path | None,
    engines_dir: Path,
    tiling: TileConfig,
    batch: int,
    engine_path: Path | None = None,
    precision: str = "fp16",
    device: int = 0,
    contexts: int = DEFAULT_CONTEXTS,
    cuda_graphs: bool = True,
    max_side: int | None = None,
    rebuild_on_mismatch: bool = False,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL,
) -> TensorRTRunner:
    """An inactive :class:`~vdsr_deploy.backends.tensorrt.runner.TensorRTRunner` for this tiling.

    With ``engine_path`` that engine is used (its sidecar is checked on activation);
    otherwise the engine for ``onnx_path`` is found in ``engines_dir`` or built there
    (:func:`find_or_build_engine`) before the runner exists. ``max_side`` bounds the image
    side when ``tiling.tile`` is 0 (whole images)."""
    from vdsr_deploy.backends.tensorrt.builder import find_or_build_engine
    from vdsr_deploy.backends.tensorrt.cache import EngineBuildConfig, check_profile_covers
    from vdsr_deploy.backends.tensorrt.runner import TensorRTRunner
    from vdsr_deploy.io_names import profile_for_tiles

    wanted = (
        profile_for_tiles(tiling, batch, max_side=max_side) if (tiling.tile or max_side) else None
    )
    if engine_path is None:
        if onnx_path is None:
            raise ConfigError(
                "a TensorRT runner needs an ONNX file to build from or a built engine"
            )
        if wanted is None:
            wanted = profile_for_tiles(
                tiling, batch, max_side=max_side
            )  # raises: tile 0 needs max_side
        config = EngineBuildConfig(
            profile=wanted,
            precision=precision,
            contexts=contexts,
            workspace_bytes=workspace_bytes,
            optimization_level=optimization_level,
        )
        record = find_or_build_engine(
            onnx_path, config, engines_dir, device=device, rebuild_on_mismatch=rebuild_on_mismatch
        )
        engine_path = record.path
    runner = TensorRTRunner(engine_path, device=device, cuda_graphs=cuda_graphs)
    if wanted is not None:
        check_profile_covers(runner.engine_profile, wanted, Path(engine_path).name)
    return runner
