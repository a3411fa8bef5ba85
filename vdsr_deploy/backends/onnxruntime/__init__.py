"""The ONNX Runtime runtime: CPU, and the CUDA / TensorRT execution providers with
onnxruntime-gpu (:mod:`~vdsr_deploy.backends.onnxruntime.runner`; session settings in
:mod:`~vdsr_deploy.backends.onnxruntime.options`, the optimised-graph cache in
:mod:`~vdsr_deploy.backends.onnxruntime.session_cache`). It runs an ONNX file. This module is
its descriptor (:data:`BACKEND`) and imports no onnxruntime."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from vdsr_deploy.backends.descriptor import Backend, OpenRequest
from vdsr_deploy.backends.device import cuda_index
from vdsr_deploy.environment import package_version
from vdsr_deploy.errors import ConfigError
from vdsr_deploy.io_names import ShapeProfile
from vdsr_deploy.runner import Runner


def installed() -> bool:
    """Whether the onnxruntime module (CPU or GPU build) is installed."""
    return importlib.util.find_spec("onnxruntime") is not None


def device_id(device: str, provider: str) -> int:
    """The CUDA device index ONNX Runtime gets from ``--device``, or a ConfigError when the
    device contradicts the provider (ONNX Runtime runs where its provider runs)."""
    if device == "auto":
        return 0
    if device == "cpu":
        if provider != "cpu":
            raise ConfigError(
                f"--device cpu contradicts --provider {provider}: ONNX Runtime runs on the "
                "provider's device (use --provider cpu)"
            )
        return 0
    index = cuda_index(device)
    if provider == "cpu":
        raise ConfigError(
            f"--device {device}: ONNX Runtime was chosen with --provider cpu, which runs "
            "on the CPU; use --provider cuda or tensorrt for a GPU, or --device cpu"
        )
    return index


def tensorrt_provider_cache_dir(cache_dir: Path, precision: str, profile: ShapeProfile | None) -> Path:
    """Where ONNX Runtime's TensorRT provider keeps its engines and timing cache: one folder
    per precision and profile, so an engine built for one tile size or precision is never
    picked up for another (the provider keys its cache on the graph, not on the profile)."""
    from vdsr_deploy.backends.tensorrt.keys import profile_token

    shapes = profile_token(profile) if profile is not None else "dynamic"
    return cache_dir / "ort-trt-cache" / f"{precision}_{shapes}"


def _compute_device(device: str, provider: str) -> str:
    if provider == "cpu":
        return "cpu"
    return device if device.startswith("cuda") else "cuda"


def _unavailable(device: str, precision: str, provider: str) -> str | None:
    if not installed():
        return "onnxruntime is not installed: pip install 'vdsr-deploy[cpu]' (or [gpu] for CUDA)"
    return None


def _versions() -> dict[str, str | None]:
    return {"onnxruntime": package_version("onnxruntime", "onnxruntime-gpu")}


def _open(request: OpenRequest) -> Runner:
    from vdsr_deploy.backends.onnxruntime.options import OrtOptions
    from vdsr_deploy.backends.onnxruntime.runner import OnnxRuntimeRunner

    if request.artifact is None:
        raise ConfigError("ONNX Runtime runs an ONNX file: none was given or made")
    cache_dir = request.cache_dir
    options = OrtOptions(
        provider=request.provider,
        threads=request.threads,
        device_id=device_id(request.device, request.provider),
        cache_dir=tensorrt_provider_cache_dir(cache_dir, request.precision, request.profile)
        if cache_dir is not None and request.provider == "tensorrt"
        else None,
        profile=request.profile,
        fp16=request.precision == "fp16",
        optimized_dir=cache_dir / "ort-optimized" if cache_dir is not None and request.provider == "cpu" else None,
    )
    return OnnxRuntimeRunner(request.artifact, options)


BACKEND = Backend(
    name="onnxruntime",
    summary="ONNX Runtime: FP32, FP16 and static INT8 ONNX; CPU, CUDA or TensorRT providers",
    precisions=("fp32", "fp16", "int8"),
    artifact="onnx",
    compute_device=_compute_device,
    unavailable=_unavailable,
    versions=_versions,
    open=_open,
)
