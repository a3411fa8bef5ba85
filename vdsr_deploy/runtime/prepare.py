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

from vdsr_deploy.backends.device import cuda_available, cuda_index
from vdsr_deploy.backends.tensorrt.build_config import (
    DEFAULT_CONTEXTS,
    DEFAULT_OPTIMIZATION_LEVEL,
    DEFAULT_WORKSPACE_BYTES,
)
from vdsr_deploy.errors import BackendUnavailableError, ConfigError
from vdsr_deploy.io_names import ShapeProfile
from vdsr_deploy.model.identity import spec_identity
from vdsr_deploy.planes.tiling import TileConfig
from vdsr_deploy.precision.decision import CHOICES, check_backend_precision, check_precision
from vdsr_deploy.runner import Runner

if TYPE_CHECKING:
    from vdsr_deploy.backends.tensorrt.runner import TensorRTRunner

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
ENGINES_DIR_ENV = "VDSR_ENGINES_DIR"


def default_engines_dir() -> Path:
    """``$VDSR_ENGINES_DIR``, else ``./engines`` (where built ONNX/engines land)."""
    return Path(os.environ.get(ENGINES_DIR_ENV, "engines"))


@dataclass(frozen=True)
class RunnerSpec:
    """Which runtime to use and how. ``provider`` applies to onnxruntime (cpu, cuda,
    tensorrt). ``onnx``/``engine`` use a given artifact instead of building one.
    ``channels_last``/``allow_tf32`` apply to PyTorch, ``cuda_graphs`` to PyTorch on CUDA
    and TensorRT (benchmarks vary them)."""

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
    cuda_graphs: bool = True

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


def _wants_cuda(device: str) -> bool:
    """Whether ``device`` may be a CUDA device (``auto`` only when an NVIDIA driver is
    loaded: a CPU machine never imports torch just to ask)."""
    from vdsr_deploy.precision.decision import nvidia_driver_present

    return device == "cuda" or device.startswith("cuda:") or (device == "auto" and nvidia_driver_present())


@dataclass(frozen=True)
class BackendChoice:
    """Which backend a spec runs on, and why (for ``auto``, the CLI prints the reason)."""

    backend: str
    reason: str


def choose_backend(spec: RunnerSpec) -> BackendChoice:
    """``auto``: TensorRT when it is usable (TensorRT, cuda-python and a CUDA GPU), else
    PyTorch on CUDA, else the CPU path: ONNX Runtime (faster than PyTorch on the CPU,
    measured in benchmarks/) or PyTorch for bf16 or without onnxruntime."""
    if spec.backend != "auto":
        return BackendChoice(spec.backend, "asked for")
    if _wants_cuda(spec.device) and cuda_available():
        blocked = _tensorrt_unavailable(spec)
        if blocked is None:
            return BackendChoice("tensorrt", "TensorRT, cuda-python and a CUDA GPU are usable")
        return BackendChoice("torch", f"PyTorch on CUDA, not TensorRT: {blocked}")
    if spec.device.startswith("cuda"):
        return BackendChoice("torch", f"{spec.device} asked for, so PyTorch (it checks the GPU)")
    where = "no CUDA GPU" if spec.device == "auto" else f"device {spec.device}"
    if spec.precision == "bf16":
        return BackendChoice("torch", f"{where}: bf16 runs on PyTorch on the CPU")
    if spec.precision == "int8":
        return BackendChoice("onnxruntime", f"{where}: INT8 runs on ONNX Runtime on the CPU")
    if onnxruntime_installed():
        return BackendChoice(
            "onnxruntime", f"{where}: ONNX Runtime on the CPU (faster than PyTorch there)"
        )
    return BackendChoice("torch", f"{where} and onnxruntime is not installed: PyTorch on the CPU")


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
    from vdsr_deploy.backends.tensorrt.cuda import INSTALL_HINT, cuda_python_available
    from vdsr_deploy.backends.tensorrt.library import require_tensorrt

    try:
        require_tensorrt()
    except BackendUnavailableError as error:
        return str(error)
    if not cuda_python_available():
        return INSTALL_HINT
    if not cuda_available():
        return "TensorRT needs a CUDA GPU; PyTorch sees none"
    return None


# ----------------------------------------------------------------------------------------
# Openers: an inactive runner, with any artifact it needs built or found


def _open_torch(spec: RunnerSpec, tiling: TileConfig, batch: int) -> Runner:
    from vdsr_deploy.backends.torch.runner import TorchRunner
    from vdsr_deploy.model.weights import load_weights

    model, _ = load_weights(spec.weights)
    return TorchRunner(
        model,
        device=spec.device,
        precision=spec.precision,
        channels_last=spec.channels_last,
        allow_tf32=spec.allow_tf32,
        cuda_graphs=spec.cuda_graphs,
    )


def _open_onnxruntime(spec: RunnerSpec, tiling: TileConfig, batch: int) -> Runner:
    from vdsr_deploy.backends.onnxruntime.runner import OnnxRuntimeRunner, OrtOptions
    from vdsr_deploy.io_names import profile_for_tiles

    device_id = ort_device_id(spec)  # before exporting anything for it
    engines_dir = spec.engines_dir or default_engines_dir()
    onnx_path = spec.onnx or _ort_model(spec, engines_dir)
    profile = profile_for_tiles(tiling, batch) if tiling.tile else None
    options = OrtOptions(
        provider=spec.provider,
        threads=spec.threads,
        device_id=device_id,
        cache_dir=ort_tensorrt_cache_dir(engines_dir, spec.precision, profile)
        if spec.provider == "tensorrt"
        else None,
        profile=profile,
        fp16=spec.precision == "fp16",
        optimized_dir=engines_dir / "ort-optimized" if spec.provider == "cpu" else None,
    )
    return OnnxRuntimeRunner(onnx_path, options)


def _ort_model(spec: RunnerSpec, engines_dir: Path) -> Path:
    """The ONNX that ONNX Runtime runs for ``spec``: the cached INT8 model (built on first
    use), or the exported FP32/FP16 graph (found from the weights file without torch when
    it is already there)."""
    from vdsr_deploy.runtime.resolve import cached_onnx, int8_artifact

    if spec.precision == "int8":
        return int8_artifact(spec, engines_dir).path
    precision = "fp16" if spec.precision == "fp16" else "fp32"
    return cached_onnx(spec.weights, engines_dir, precision) or _exported_onnx(spec, engines_dir, precision)


def ort_device_id(spec: RunnerSpec) -> int:
    """The CUDA device index ONNX Runtime gets from ``--device``, or a ConfigError when the
    device contradicts the provider (ONNX Runtime runs where its provider runs)."""
    if spec.device == "auto":
        return 0
    if spec.device == "cpu":
        if spec.provider != "cpu":
            raise ConfigError(
                f"--device cpu contradicts --provider {spec.provider}: ONNX Runtime runs on the "
                "provider's device (use --provider cpu)"
            )
        return 0
    index = cuda_index(spec.device)
    if spec.provider == "cpu":
        raise ConfigError(
            f"--device {spec.device}: ONNX Runtime was chosen with --provider cpu, which runs "
            "on the CPU; use --provider cuda or tensorrt for a GPU, or --device cpu"
        )
    return index


def ort_tensorrt_cache_dir(
    engines_dir: Path, precision: str, profile: ShapeProfile | None
) -> Path:
    """Where ONNX Runtime's TensorRT provider keeps its engines and timing cache: one folder
    per precision and profile, so an engine built for one tile size or precision is never
    picked up for another (the provider keys its cache on the graph, not on the profile)."""
    from vdsr_deploy.backends.tensorrt.keys import profile_token

    shapes = profile_token(profile) if profile is not None else "dynamic"
    return engines_dir / "ort-trt-cache" / f"{precision}_{shapes}"


def _open_tensorrt(spec: RunnerSpec, tiling: TileConfig, batch: int) -> Runner:
    from vdsr_deploy.backends.tensorrt.library import require_tensorrt

    require_tensorrt()  # before exporting anything for it
    engines_dir = spec.engines_dir or default_engines_dir()
    precision = spec.precision if spec.precision in ("fp16", "fp32") else "fp16"
    given_onnx: Path | None = spec.onnx
    if spec.engine is None and given_onnx is None:
        given_onnx = _exported_onnx(spec, engines_dir, precision)
    weights_sha256 = None
    if spec.engine is not None and spec.weights is not None:
        from vdsr_deploy.model.weights import load_weights

        weights_sha256 = load_weights(spec.weights)[1].sha256
    return create_tensorrt_runner(
        onnx_path=given_onnx,
        engine_path=spec.engine,
        engines_dir=engines_dir,
        tiling=tiling,
        batch=batch,
        precision=precision,
        device=cuda_index(spec.device),
        cuda_graphs=spec.cuda_graphs,
        weights_sha256=weights_sha256,
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
    if spec.precision == "auto":
        return None  # resolve_spec picks a path this machine runs
    backend = choose_backend(spec).backend
    return REGISTRY[backend].unavailable(replace(spec, backend=backend))


def open_runner(spec: RunnerSpec, *, tiling: TileConfig, batch: int) -> Runner:
    """An inactive runner for ``spec``, with any artifact it needs built or found;
    BackendUnavailableError (the reason) when the runtime cannot run here. ``auto``
    precision is resolved first (:func:`vdsr_deploy.runtime.resolve.resolve_spec`). The runner's
    :attr:`~vdsr_deploy.runner.Runner.model_identity` names the files ``spec`` gives."""
    given = spec
    if spec.precision == "auto":
        from vdsr_deploy.runtime.resolve import resolve_spec

        spec, _ = resolve_spec(spec, spec.engines_dir or default_engines_dir())
    backend = choose_backend(spec).backend
    check_artifacts_used(spec, backend)
    spec = replace(spec, backend=backend)
    check_backend_precision(backend, spec.precision)
    reason = REGISTRY[backend].unavailable(spec)
    if reason is not None:
        raise BackendUnavailableError(reason)
    if spec.threads and backend == "torch":
        import torch

        torch.set_num_threads(spec.threads)
    runner = REGISTRY[backend].open(spec, tiling, batch)
    runner.model_identity = spec_identity(given)
    return runner


def check_artifacts_used(spec: RunnerSpec, backend: str) -> None:
    """A ConfigError when ``backend`` (``spec``'s, ``auto`` resolved) would not run a file
    ``spec`` names: PyTorch runs the weights, and only TensorRT runs an engine. A given file
    that is silently ignored would make the user believe it ran."""
    picked = " (what --backend auto picked here)" if spec.backend == "auto" else ""
    if spec.onnx is not None and backend == "torch":
        raise ConfigError(
            f"--onnx {spec.onnx}: the torch backend{picked} runs the weights, not an ONNX file; "
            "use --backend onnxruntime or tensorrt to run it, or leave --onnx out"
        )
    if spec.engine is not None and backend != "tensorrt":
        raise ConfigError(
            f"--engine {spec.engine}: the {backend} backend{picked} does not run TensorRT engines; "
            "use --backend tensorrt to run it, or leave --engine out"
        )


def _exported_onnx(spec: RunnerSpec, engines_dir: Path, precision: str) -> Path:
    from vdsr_deploy.export.onnx import ensure_onnx
    from vdsr_deploy.model.weights import load_weights

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
    weights_sha256: str | None = None,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL,
) -> TensorRTRunner:
    """An inactive :class:`~vdsr_deploy.backends.tensorrt.runner.TensorRTRunner` for this tiling.

    Without ``engine_path``, the engine for ``onnx_path`` is found in ``engines_dir`` or
    built there (:func:`~vdsr_deploy.backends.tensorrt.builder.find_or_build_engine`)
    before the runner exists; engines for other precisions, batches and tiles stay cached.
    With ``tiling.tile`` 0 (whole images) the profile goes up to ``max_side`` (default
    :data:`~vdsr_deploy.backends.tensorrt.build_config.DEFAULT_WHOLE_IMAGE_MAX_SIDE`) at batch 1.
    An ``engine_path`` the user named is used only if it fits this run
    (:func:`~vdsr_deploy.backends.tensorrt.matching.explicit_engine_reasons`: precision,
    tiles, and weights when ``weights_sha256`` is given); otherwise EngineMismatchError
    says every reason. Its GPU, TensorRT and CUDA are checked on activation."""
    from vdsr_deploy.backends.tensorrt.build_config import (
        DEFAULT_WHOLE_IMAGE_MAX_SIDE,
        EngineBuildConfig,
    )
    from vdsr_deploy.backends.tensorrt.builder import find_or_build_engine
    from vdsr_deploy.backends.tensorrt.matching import explicit_engine_reasons
    from vdsr_deploy.backends.tensorrt.runner import TensorRTRunner
    from vdsr_deploy.errors import EngineMismatchError
    from vdsr_deploy.io_names import profile_for_tiles

    if engine_path is not None:
        runner = TensorRTRunner(engine_path, device=device, cuda_graphs=cuda_graphs)
        wanted = (
            profile_for_tiles(tiling, batch, max_side=max_side)
            if (tiling.tile or max_side)
            else None  # whole images of unknown size: the runner checks each input
        )
        reasons = explicit_engine_reasons(
            runner.sidecar, precision=precision, profile=wanted, weights_sha256=weights_sha256
        )
        if reasons:
            raise EngineMismatchError(
                f"{Path(engine_path).name} does not fit this run: {'; '.join(reasons)}; leave "
                "out --engine to let the engine cache find or build one"
            )
        return runner
    if onnx_path is None:
        raise ConfigError("a TensorRT runner needs an ONNX file to build from or a built engine")
    if tiling.tile:
        profile = profile_for_tiles(tiling, batch)
    elif max_side:
        profile = profile_for_tiles(tiling, batch, max_side=max_side)
    else:
        profile = profile_for_tiles(tiling, 1, max_side=DEFAULT_WHOLE_IMAGE_MAX_SIDE)
    config = EngineBuildConfig(
        profile=profile,
        precision=precision,
        contexts=contexts,
        workspace_bytes=workspace_bytes,
        optimization_level=optimization_level,
    )
    record = find_or_build_engine(onnx_path, config, engines_dir, device=device)
    return TensorRTRunner(record.path, device=device, cuda_graphs=cuda_graphs)
